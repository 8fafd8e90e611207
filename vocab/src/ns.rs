//! Namespace IRIs of every vocabulary Hanse speaks.
//!
//! Constants end with the separator (`#` or `/`) so that `format!("{DCAT}Dataset")` gives a term IRI.

/// Dataspace Protocol 2025-1.
pub const DSPACE: &str = "https://w3id.org/dspace/2025/1/";
/// ODRL 2.2 vocabulary.
pub const ODRL: &str = "http://www.w3.org/ns/odrl/2/";
/// W3C Data Catalog Vocabulary (DCAT 3).
pub const DCAT: &str = "http://www.w3.org/ns/dcat#";
/// Dublin Core terms.
pub const DCT: &str = "http://purl.org/dc/terms/";
/// Friend of a friend.
pub const FOAF: &str = "http://xmlns.com/foaf/0.1/";
/// vCard ontology.
pub const VCARD: &str = "http://www.w3.org/2006/vcard/ns#";
/// XML Schema datatypes.
pub const XSD: &str = "http://www.w3.org/2001/XMLSchema#";
/// RDF.
pub const RDF: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#";
/// RDF Schema.
pub const RDFS: &str = "http://www.w3.org/2000/01/rdf-schema#";
/// SKOS.
pub const SKOS: &str = "http://www.w3.org/2004/02/skos/core#";
/// W3C Provenance ontology.
pub const PROV: &str = "http://www.w3.org/ns/prov#";
/// Data Privacy Vocabulary.
pub const DPV: &str = "https://w3id.org/dpv#";
/// GA4GH Data Use Ontology (OBO PURLs, e.g. `DUO_0000042`).
pub const DUO: &str = "http://purl.obolibrary.org/obo/";
/// HealthDCAT-AP.
pub const HEALTHDCATAP: &str = "http://healthdataportal.eu/ns/health#";
/// DCAT-AP.
pub const DCATAP: &str = "http://data.europa.eu/r5r/";
/// Gaia-X 25.11 (Loire), as published for the development registry.
pub const GX: &str = "https://w3id.org/gaia-x/development#";
/// Gaia-X 25.11 (Loire), the released namespace of Trust Framework 2511: what Hanse's credentials use.
pub const GX_2511: &str = "https://w3id.org/gaia-x/2511#";
/// schema.org (as the Gaia-X shapes write it).
pub const SCHEMA: &str = "https://schema.org/";
/// W3C Verifiable Credentials 2.0 (the `credentials` vocabulary).
pub const CRED: &str = "https://www.w3.org/2018/credentials#";
/// W3C Bitstring Status List.
pub const CRED_STATUS: &str = "https://www.w3.org/ns/credentials/status#";
/// W3C security vocabulary.
pub const SEC: &str = "https://w3id.org/security#";
/// W3C Decentralized Identifiers.
pub const DID: &str = "https://www.w3.org/ns/did#";
/// Eclipse Dataspace Components management namespace.
pub const EDC: &str = "https://w3id.org/edc/v0.0.1/ns/";
/// Hanse's own terms (the health profile and protocol extensions).
pub const HANSE: &str = "https://w3id.org/hanse/ns/";

/// Every namespace with the prefix Hanse writes it with, for SPARQL prologues and Turtle output.
pub const PREFIXES: &[(&str, &str)] = &[
    ("dspace", DSPACE),
    ("odrl", ODRL),
    ("dcat", DCAT),
    ("dct", DCT),
    ("foaf", FOAF),
    ("vcard", VCARD),
    ("xsd", XSD),
    ("rdf", RDF),
    ("rdfs", RDFS),
    ("skos", SKOS),
    ("prov", PROV),
    ("dpv", DPV),
    ("obo", DUO),
    ("healthdcatap", HEALTHDCATAP),
    ("dcatap", DCATAP),
    ("gx", GX),
    ("cred", CRED),
    ("sec", SEC),
    ("did", DID),
    ("edc", EDC),
    ("hanse", HANSE),
];

/// A SPARQL prologue declaring every prefix of [`PREFIXES`].
pub fn sparql_prologue() -> String {
    PREFIXES.iter().map(|(prefix, iri)| format!("PREFIX {prefix}: <{iri}>\n")).collect()
}

/// Expands `prefix:local` with the prefixes Hanse knows; other strings come back unchanged.
pub fn expand_curie(value: &str) -> String {
    if let Some((prefix, local)) = value.split_once(':')
        && !local.starts_with("//")
        && let Some((_, ns)) = PREFIXES.iter().find(|(p, _)| *p == prefix)
    {
        return format!("{ns}{local}");
    }
    value.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn curies_expand_only_for_known_prefixes() {
        assert_eq!(expand_curie("dcat:Dataset"), "http://www.w3.org/ns/dcat#Dataset");
        assert_eq!(expand_curie("https://example.org/x"), "https://example.org/x");
        assert_eq!(expand_curie("unknown:thing"), "unknown:thing");
    }

    #[test]
    fn every_namespace_ends_with_a_separator() {
        for (prefix, iri) in PREFIXES {
            assert!(iri.ends_with('#') || iri.ends_with('/'), "{prefix} = {iri}");
        }
    }
}
