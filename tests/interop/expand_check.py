"""Expands documents Hanse serves with pyld, an independent JSON-LD processor, allowed to load only the contexts
Hanse bundles, and reports every term the expansion drops.

Input (stdin): {"contexts": {IRI: file}, "documents": {name: document}}. Output (stdout): {name: {"dropped": [term,
...], "error": message or null}}. A context that is not bundled is an error, never a fetch.
"""

import json
import sys

from pyld import jsonld


def loader_for(contexts):
    def load(url, options=None):
        if url not in contexts:
            raise jsonld.JsonLdError(
                f"{url} is not bundled", "jsonld.LoadDocumentError", code="loading document failed"
            )
        with open(contexts[url], encoding="utf-8") as file:
            return {"contextUrl": None, "documentUrl": url, "document": json.load(file)}

    return load


def main():
    given = json.load(sys.stdin)
    loader = loader_for(given["contexts"])
    report = {}
    for name, document in given["documents"].items():
        # pyld keeps resolved contexts in a process-wide cache; one document's contexts must not change how the next
        # one reads (a cached scoped context once raised KeyError '@propagate' here).
        jsonld._resolved_context_cache.clear()
        jsonld._inverse_context_cache.clear()
        dropped = []
        try:
            jsonld.expand(document, {"documentLoader": loader}, on_property_dropped=lambda term: dropped.append(term))
            report[name] = {"dropped": sorted({str(t) for t in dropped}), "error": None}
        except Exception as error:  # every failure is part of the report
            report[name] = {"dropped": sorted({str(t) for t in dropped}), "error": f"{type(error).__name__}: {error}"}
    json.dump(report, sys.stdout)


if __name__ == "__main__":
    main()
