"""pySHACL as the test suite's independent SHACL validator.

Usage: validate.py --data FILE [--shapes FILE ...] [--ontology FILE]
Prints one JSON object: {"conforms": bool, "results": [{"focus", "path", "severity", "message"}]}.
No inference, no network: every graph comes from a local file.
"""
import argparse
import json
import sys

import pyshacl
from rdflib import Graph, Namespace
from rdflib.namespace import RDF

SH = Namespace("http://www.w3.org/ns/shacl#")


def load(paths):
    graph = Graph()
    for path in paths:
        graph.parse(path, format="nt" if path.endswith(".nt") else "turtle")
    return graph


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--data", required=True)
    parser.add_argument("--shapes", action="append", required=True)
    parser.add_argument("--ontology")
    args = parser.parse_args()
    data = load([args.data])
    shapes = load(args.shapes)
    ontology = load([args.ontology]) if args.ontology else None
    conforms, report, _ = pyshacl.validate(
        data, shacl_graph=shapes, ont_graph=ontology, inference="none", abort_on_first=False, meta_shacl=False
    )
    results = []
    for result in report.subjects(RDF.type, SH.ValidationResult):
        value = lambda p: str(report.value(result, p)) if report.value(result, p) is not None else None
        results.append(
            {
                "focus": value(SH.focusNode),
                "path": value(SH.resultPath),
                "severity": value(SH.resultSeverity).rsplit("#", 1)[-1] if value(SH.resultSeverity) else None,
                "message": value(SH.resultMessage),
            }
        )
    json.dump({"conforms": bool(conforms), "results": results}, sys.stdout)


if __name__ == "__main__":
    main()
