//! Terms and IRIs: one canonical spelling for every way a policy may name the same thing.
//!
//! A policy may arrive in the DSP compact form (`"use"`, `"eq"`), with prefixes (`"odrl:use"`), with full IRIs
//! (`"http://www.w3.org/ns/odrl/2/use"`), or as expanded JSON-LD (`[{"@id": "..."}]`). [`canonical`] maps all of them
//! to the full IRI where Hanse knows the namespace, so that comparisons are made on meaning, not spelling.

/// ODRL 2.2.
pub const ODRL: &str = "http://www.w3.org/ns/odrl/2/";
/// The Hanse namespace (health profile terms live under it).
pub const HANSE: &str = "https://w3id.org/hanse/ns/";
/// The Hanse claims namespace: `https://w3id.org/hanse/ns/claims/<path>` names a verified claim.
pub const HANSE_CLAIMS: &str = "https://w3id.org/hanse/ns/claims/";
/// GA4GH Data Use Ontology terms are OBO PURLs: `http://purl.obolibrary.org/obo/DUO_0000042`.
pub const OBO: &str = "http://purl.obolibrary.org/obo/";
/// Data Privacy Vocabulary.
pub const DPV: &str = "https://w3id.org/dpv#";
/// XML Schema datatypes.
pub const XSD: &str = "http://www.w3.org/2001/XMLSchema#";
/// IDS information model codes.
pub const IDSC: &str = "https://w3id.org/idsa/code/";

const PREFIXES: &[(&str, &str)] = &[
    ("odrl", ODRL),
    ("hanse", HANSE),
    ("obo", OBO),
    ("dpv", DPV),
    ("xsd", XSD),
    ("idsc", IDSC),
    ("dspace", "https://w3id.org/dspace/2025/1/"),
    ("edc", "https://w3id.org/edc/v0.0.1/ns/"),
];

/// The canonical IRI of a term: prefixes expanded, `DUO:0000042` and `DUO_0000042` as OBO PURLs, anything else as
/// given (bare names stay bare; the caller decides which vocabulary a bare name belongs to).
pub fn canonical(term: &str) -> String {
    let term = term.trim();
    if let Some(code) = term.strip_prefix("DUO:").or_else(|| term.strip_prefix("duo:")) {
        return concat(&[OBO, "DUO_", code]);
    }
    if term.starts_with("DUO_") {
        return concat(&[OBO, term]);
    }
    if let Some((prefix, local)) = term.split_once(':')
        && !local.starts_with("//")
        && let Some((_, ns)) = PREFIXES.iter().find(|(p, _)| *p == prefix)
    {
        return concat(&[ns, local]);
    }
    term.to_owned()
}

/// Joins parts into one string with a single allocation (this runs on every evaluation).
fn concat(parts: &[&str]) -> String {
    let mut out = String::with_capacity(parts.iter().map(|p| p.len()).sum());
    for part in parts {
        out.push_str(part);
    }
    out
}

/// The local name of a term in `namespace`, accepting the bare name, a prefixed name or the full IRI.
pub fn local_in<'a>(term: &'a str, namespace: &str) -> Option<&'a str> {
    if let Some(local) = term.strip_prefix(namespace) {
        return Some(local);
    }
    let prefix = PREFIXES.iter().find(|(_, ns)| *ns == namespace).map(|(p, _)| *p)?;
    term.strip_prefix(prefix).and_then(|rest| rest.strip_prefix(':'))
}

/// The ODRL local name of `term` if it is written as an ODRL term (bare, `odrl:` or full IRI).
pub fn odrl_local(term: &str) -> Option<&str> {
    local_in(term, ODRL).or_else(|| (!term.contains(':') && !term.contains('/')).then_some(term))
}

/// The shortest readable spelling of an IRI, for messages: `odrl:use`, `hanse:compute`, `DUO:0000007`.
pub fn short(iri: &str) -> String {
    if let Some(code) = iri.strip_prefix(OBO).and_then(|l| l.strip_prefix("DUO_")) {
        return format!("DUO:{code}");
    }
    for (prefix, ns) in PREFIXES {
        if let Some(local) = iri.strip_prefix(ns) {
            return format!("{prefix}:{local}");
        }
    }
    iri.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spellings_of_one_term_meet() {
        assert_eq!(canonical("odrl:use"), "http://www.w3.org/ns/odrl/2/use");
        assert_eq!(canonical("DUO:0000007"), "http://purl.obolibrary.org/obo/DUO_0000007");
        assert_eq!(canonical("DUO_0000007"), canonical("obo:DUO_0000007"));
        assert_eq!(canonical("https://example.org/x"), "https://example.org/x");
        assert_eq!(odrl_local("use"), Some("use"));
        assert_eq!(odrl_local("odrl:use"), Some("use"));
        assert_eq!(odrl_local("http://www.w3.org/ns/odrl/2/use"), Some("use"));
        assert_eq!(odrl_local("hanse:compute"), None);
        assert_eq!(short("http://purl.obolibrary.org/obo/DUO_0000042"), "DUO:0000042");
    }
}
