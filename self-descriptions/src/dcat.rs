//! DCAT-AP 3 and HealthDCAT-AP dataset descriptions.
//!
//! A description is a set of properties (predicate IRI → terms), read from expanded JSON-LD and written out three
//! ways from the same values: DSP 2025-1 compact JSON (for peers), EDC-style compact JSON (for operators) and RDF
//! triples (for the SPARQL catalogue). EDC clients write properties under `@vocab` `https://w3id.org/edc/v0.0.1/ns/`;
//! the well-known names among them (`title`, `keyword`, `numberOfRecords`, ...) are read as their DCAT, DCT and
//! HealthDCAT-AP terms (see [`KNOWN_TERMS`]).

use std::collections::BTreeMap;

use hanse_vocab::ns::{DCAT, DCATAP, DCT, DSPACE, EDC, FOAF, HEALTHDCATAP, ODRL, RDF, VCARD, XSD};
use serde_json::{Map, Value as Json, json};

/// An RDF object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Term {
    Iri(String),
    Literal {
        value: String,
        datatype: Option<String>,
        language: Option<String>,
    },
    /// A nested node without an IRI (a blank node), e.g. a `dct:PeriodOfTime`.
    Node(Properties),
}

/// Predicate IRI → its values.
pub type Properties = BTreeMap<String, Vec<Term>>;

/// What values a known term takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Range {
    Text,
    Iri,
    Integer,
    Decimal,
    Date,
    Node,
}

/// Short names read as DCAT / DCT / HealthDCAT-AP terms, with the values they take.
pub const KNOWN_TERMS: &[(&str, &str, Range)] = &[
    ("title", "http://purl.org/dc/terms/title", Range::Text),
    ("description", "http://purl.org/dc/terms/description", Range::Text),
    ("keyword", "http://www.w3.org/ns/dcat#keyword", Range::Text),
    ("theme", "http://www.w3.org/ns/dcat#theme", Range::Iri),
    ("publisher", "http://purl.org/dc/terms/publisher", Range::Iri),
    ("creator", "http://purl.org/dc/terms/creator", Range::Iri),
    ("license", "http://purl.org/dc/terms/license", Range::Iri),
    ("accessRights", "http://purl.org/dc/terms/accessRights", Range::Iri),
    ("conformsTo", "http://purl.org/dc/terms/conformsTo", Range::Iri),
    ("language", "http://purl.org/dc/terms/language", Range::Iri),
    ("spatial", "http://purl.org/dc/terms/spatial", Range::Iri),
    ("temporal", "http://purl.org/dc/terms/temporal", Range::Node),
    ("issued", "http://purl.org/dc/terms/issued", Range::Date),
    ("modified", "http://purl.org/dc/terms/modified", Range::Date),
    ("identifier", "http://purl.org/dc/terms/identifier", Range::Text),
    ("landingPage", "http://www.w3.org/ns/dcat#landingPage", Range::Iri),
    ("contactPoint", "http://www.w3.org/ns/dcat#contactPoint", Range::Node),
    ("version", "http://www.w3.org/ns/dcat#version", Range::Text),
    ("startDate", "http://www.w3.org/ns/dcat#startDate", Range::Date),
    ("endDate", "http://www.w3.org/ns/dcat#endDate", Range::Date),
    ("healthCategory", "http://healthdataportal.eu/ns/health#healthCategory", Range::Iri),
    ("healthTheme", "http://healthdataportal.eu/ns/health#healthTheme", Range::Iri),
    ("numberOfRecords", "http://healthdataportal.eu/ns/health#numberOfRecords", Range::Integer),
    ("numberOfUniqueIndividuals", "http://healthdataportal.eu/ns/health#numberOfUniqueIndividuals", Range::Integer),
    ("minTypicalAge", "http://healthdataportal.eu/ns/health#minTypicalAge", Range::Integer),
    ("maxTypicalAge", "http://healthdataportal.eu/ns/health#maxTypicalAge", Range::Integer),
    ("populationCoverage", "http://healthdataportal.eu/ns/health#populationCoverage", Range::Text),
    ("hasCodingSystem", "http://healthdataportal.eu/ns/health#hasCodingSystem", Range::Iri),
    ("hdab", "http://healthdataportal.eu/ns/health#hdab", Range::Iri),
];

/// The EU access-right table (DCAT-AP and HealthDCAT-AP take `dct:accessRights` from it).
pub const ACCESS_RIGHTS: &str = "http://publications.europa.eu/resource/authority/access-right/";
/// Its concepts: public, restricted (e.g. through a health data access body) and non-public.
pub const ACCESS_RIGHT_CONCEPTS: [&str; 3] = ["PUBLIC", "RESTRICTED", "NON_PUBLIC"];

/// `dct:accessRights` as a concept of the EU access-right table: its IRI, or the concept's name (`PUBLIC`,
/// `RESTRICTED`, `NON_PUBLIC`, in any letter case, `-` for `_`).
fn access_right(value: &str) -> Result<Term, String> {
    let name = value.strip_prefix(ACCESS_RIGHTS).unwrap_or(value).trim().to_ascii_uppercase().replace('-', "_");
    if ACCESS_RIGHT_CONCEPTS.contains(&name.as_str()) {
        Ok(Term::Iri(format!("{ACCESS_RIGHTS}{name}")))
    } else {
        Err(format!(
            "accessRights takes a concept of the EU access-right table ({}), not `{value}`",
            ACCESS_RIGHT_CONCEPTS.join(", ")
        ))
    }
}

/// The IRI a known short name stands for.
pub fn known_term(name: &str) -> Option<(&'static str, Range)> {
    KNOWN_TERMS.iter().find(|(n, _, _)| *n == name).map(|(_, iri, range)| (*iri, *range))
}

fn range_of(iri: &str) -> Option<Range> {
    KNOWN_TERMS.iter().find(|(_, i, _)| *i == iri).map(|(_, _, range)| *range)
}

const RDF_TYPE: &str = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type";

/// Reads the properties of an expanded JSON-LD node (an object whose keys are IRIs), mapping EDC-vocabulary short
/// names to their DCAT terms and typing values by the term's range. `@id` and other keywords are skipped.
pub fn properties_from_expanded(node: &Map<String, Json>) -> Result<Properties, String> {
    let mut out = Properties::new();
    for (key, values) in node {
        if key.starts_with('@') {
            if key == "@type" {
                for t in values.as_array().into_iter().flatten().filter_map(Json::as_str) {
                    out.entry(RDF_TYPE.to_owned()).or_default().push(Term::Iri(t.to_owned()));
                }
            }
            continue;
        }
        let predicate = match key.strip_prefix(EDC).and_then(known_term) {
            Some((iri, _)) => iri.to_owned(),
            None => key.clone(),
        };
        let range = range_of(&predicate);
        let list = match values {
            Json::Array(items) => items.as_slice(),
            other => std::slice::from_ref(other),
        };
        for value in list {
            for term in terms_from_expanded(value)? {
                out.entry(predicate.clone()).or_default().push(coerce(term, range, &predicate)?);
            }
        }
    }
    // Most properties hold one value, in a list grown for four: a catalogue keeps hundreds of thousands of these.
    out.values_mut().for_each(Vec::shrink_to_fit);
    Ok(out)
}

fn terms_from_expanded(value: &Json) -> Result<Vec<Term>, String> {
    let Json::Object(object) = value else {
        return Err(format!("unexpected value {value} in expanded JSON-LD"));
    };
    if let Some(list) = object.get("@list").and_then(Json::as_array) {
        let mut out = Vec::new();
        for item in list {
            out.extend(terms_from_expanded(item)?);
        }
        return Ok(out);
    }
    if let Some(v) = object.get("@value") {
        let (value, natural) = match v {
            Json::String(s) => (s.clone(), None),
            Json::Number(n) if n.is_i64() || n.is_u64() => (n.to_string(), Some(format!("{XSD}integer"))),
            Json::Number(n) => (n.to_string(), Some(format!("{XSD}decimal"))),
            Json::Bool(b) => (b.to_string(), Some(format!("{XSD}boolean"))),
            other => (other.to_string(), Some(format!("{RDF}JSON"))),
        };
        let datatype = object.get("@type").and_then(Json::as_str).map(str::to_owned).or(natural);
        let language = object.get("@language").and_then(Json::as_str).map(str::to_owned);
        return Ok(vec![Term::Literal { value, datatype, language }]);
    }
    let has_properties = object.keys().any(|k| !k.starts_with('@') || k == "@type");
    match (object.get("@id").and_then(Json::as_str), has_properties) {
        (Some(id), false) => Ok(vec![Term::Iri(id.to_owned())]),
        (_, true) => Ok(vec![Term::Node(properties_from_expanded(object)?)]),
        (None, false) => Ok(vec![]),
    }
}

fn looks_like_iri(value: &str) -> bool {
    value.split_once(':').is_some_and(|(scheme, rest)| {
        !scheme.is_empty()
            && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
            && !rest.is_empty()
            && !value.contains(char::is_whitespace)
    })
}

/// Types a value by the range of a known term; the error names the term and what it takes.
fn coerce(term: Term, range: Option<Range>, predicate: &str) -> Result<Term, String> {
    let short = compact_key(predicate, PrefixStyle::Management);
    if predicate == format!("{DCT}accessRights") {
        return match term {
            Term::Literal { value, .. } | Term::Iri(value) => access_right(&value),
            Term::Node(_) => Err("accessRights takes a concept of the EU access-right table, not a node".into()),
        };
    }
    match (range, term) {
        (Some(Range::Iri), Term::Literal { value, .. }) => {
            if looks_like_iri(&value) {
                Ok(Term::Iri(value))
            } else {
                Err(format!("{short} takes an IRI, not `{value}`"))
            }
        }
        (Some(Range::Integer), Term::Literal { value, .. }) => match value.trim().parse::<u64>() {
            Ok(n) => {
                // HealthDCAT-AP's counts and ages are `xsd:nonNegativeInteger`.
                Ok(Term::Literal {
                    value: n.to_string(),
                    datatype: Some(format!("{XSD}nonNegativeInteger")),
                    language: None,
                })
            }
            Err(_) => Err(format!("{short} takes a non-negative integer, not `{value}`")),
        },
        (Some(Range::Decimal), Term::Literal { value, .. }) => match value.trim().parse::<f64>() {
            Ok(n) if n.is_finite() => {
                Ok(Term::Literal { value: n.to_string(), datatype: Some(format!("{XSD}decimal")), language: None })
            }
            _ => Err(format!("{short} takes a number, not `{value}`")),
        },
        (Some(Range::Date), Term::Literal { value, datatype, .. }) => {
            let datatype = match datatype.as_deref() {
                Some(dt) if dt == format!("{XSD}dateTime") || dt == format!("{XSD}date") => datatype,
                _ if is_date_time(&value) => Some(format!("{XSD}dateTime")),
                _ if is_date(&value) => Some(format!("{XSD}date")),
                _ => return Err(format!("{short} takes a date (YYYY-MM-DD) or date-time, not `{value}`")),
            };
            Ok(Term::Literal { value, datatype, language: None })
        }
        (Some(Range::Text), Term::Literal { value, datatype, language })
            if datatype.as_deref().is_some_and(|d| d != format!("{XSD}string") && !d.ends_with("langString")) =>
        {
            Ok(Term::Literal { value, datatype: None, language })
        }
        (_, term) => Ok(term),
    }
}

fn is_date(value: &str) -> bool {
    let b = value.as_bytes();
    b.len() == 10 && b[4] == b'-' && b[7] == b'-' && value.chars().filter(char::is_ascii_digit).count() == 8
}

fn is_date_time(value: &str) -> bool {
    value.len() > 10 && is_date(&value[..10]) && value.as_bytes()[10] == b'T'
}

/// How keys are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrefixStyle {
    /// DSP messages: only the prefixes the DSP 2025-1 context defines (`dct`, `dcat`, `odrl`, `xsd`, `dspace`).
    Dsp,
    /// Management answers: EDC vocabulary terms bare, plus the prefixes of [`MANAGEMENT_CONTEXT`].
    Management,
}

const DSP_PREFIXES: &[(&str, &str)] = &[("dct", DCT), ("dcat", DCAT), ("odrl", ODRL), ("xsd", XSD), ("dspace", DSPACE)];
const MANAGEMENT_PREFIXES: &[(&str, &str)] = &[
    ("dct", DCT),
    ("dcat", DCAT),
    ("odrl", ODRL),
    ("xsd", XSD),
    ("dspace", DSPACE),
    ("healthdcatap", HEALTHDCATAP),
    ("dcatap", DCATAP),
    ("foaf", FOAF),
    ("vcard", VCARD),
];

/// The `@context` of management answers: the EDC vocabulary plus the prefixes used in compacted keys.
pub fn management_context() -> Json {
    let mut context = Map::new();
    context.insert("@vocab".into(), json!(EDC));
    context.insert("edc".into(), json!(EDC));
    for (prefix, iri) in MANAGEMENT_PREFIXES {
        context.insert((*prefix).into(), json!(iri));
    }
    Json::Object(context)
}

/// The context of a policy inside a management answer: the DSP ODRL profile's terms, inline, so that the policy reads
/// as its DSP wire form does without fetching anything.
pub fn policy_context() -> Json {
    hanse_vocab::contexts::inline(hanse_vocab::contexts::DSPACE_2025_1_ODRL_PROFILE).cloned().unwrap_or(Json::Null)
}

/// A DSP compact policy (an offer, an agreement) for a management answer: with [`policy_context`] unless it has a
/// context of its own.
pub fn with_policy_context(mut policy: Json) -> Json {
    if let Json::Object(map) = &mut policy
        && !map.contains_key("@context")
    {
        map.insert("@context".into(), policy_context());
    }
    policy
}

/// A predicate IRI as a JSON key in `style`.
pub fn compact_key(iri: &str, style: PrefixStyle) -> String {
    if iri == RDF_TYPE {
        return "@type".into();
    }
    if style == PrefixStyle::Management
        && let Some(local) = iri.strip_prefix(EDC)
        && !local.contains([':', '/', '#'])
    {
        return local.to_owned();
    }
    let prefixes = if style == PrefixStyle::Dsp { DSP_PREFIXES } else { MANAGEMENT_PREFIXES };
    for (prefix, ns) in prefixes {
        if let Some(local) = iri.strip_prefix(ns)
            && !local.is_empty()
            && !local.contains(['/', '#'])
        {
            return format!("{prefix}:{local}");
        }
    }
    iri.to_owned()
}

fn compact_datatype(iri: &str, style: PrefixStyle) -> String {
    match iri.strip_prefix(XSD) {
        Some(local) => format!("xsd:{local}"),
        None => compact_key(iri, style),
    }
}

/// One term as compact JSON: IRIs as `{"@id"}`, plain strings as strings, numbers and booleans natively, other typed
/// and language-tagged literals as value objects.
pub fn term_json(term: &Term, style: PrefixStyle) -> Json {
    match term {
        Term::Iri(iri) => json!({"@id": iri}),
        Term::Literal { value, datatype: None, language: None } => json!(value),
        Term::Literal { value, language: Some(language), .. } => json!({"@value": value, "@language": language}),
        Term::Literal { value, datatype: Some(datatype), .. } => {
            let native = match datatype.strip_prefix(XSD) {
                Some("integer" | "nonNegativeInteger") => value.parse::<i64>().ok().map(Json::from),
                Some("boolean") => value.parse::<bool>().ok().map(Json::from),
                Some("string") => Some(json!(value)),
                _ => None,
            };
            native.unwrap_or_else(|| json!({"@value": value, "@type": compact_datatype(datatype, style)}))
        }
        Term::Node(properties) => Json::Object(properties_json(properties, style)),
    }
}

/// Properties as compact JSON members (one value as itself, several as an array).
pub fn properties_json(properties: &Properties, style: PrefixStyle) -> Map<String, Json> {
    let mut out = Map::new();
    for (predicate, terms) in properties {
        let key = compact_key(predicate, style);
        let values: Vec<Json> = if predicate == RDF_TYPE {
            terms
                .iter()
                .map(|t| match t {
                    Term::Iri(iri) => json!(compact_key(iri, style)),
                    other => term_json(other, style),
                })
                .collect()
        } else {
            terms.iter().map(|t| term_json(t, style)).collect()
        };
        out.insert(
            key,
            if values.len() == 1 { values.into_iter().next().unwrap_or(Json::Null) } else { Json::Array(values) },
        );
    }
    out
}

/// The plain-text values of a property (titles, descriptions, keywords), for search.
pub fn texts<'a>(properties: &'a Properties, predicate: &str) -> impl Iterator<Item = &'a str> {
    properties.get(predicate).into_iter().flatten().filter_map(|t| match t {
        Term::Literal { value, .. } => Some(value.as_str()),
        _ => None,
    })
}

/// A distribution of a dataset: how it can be obtained.
#[derive(Debug, Clone, PartialEq)]
pub struct Distribution {
    /// `HttpData-PULL`, `HttpData-PUSH`, ...
    pub format: String,
    /// The `@id` of the DataService that provides it.
    pub access_service: String,
}

/// A dataset as a DSP catalogue lists it.
#[derive(Debug, Clone)]
pub struct DatasetDescription<'a> {
    pub id: &'a str,
    pub properties: &'a Properties,
    /// Offers in DSP compact form (`@type: Offer`, no `target`).
    pub offers: Vec<Json>,
    pub distributions: &'a [Distribution],
}

impl DatasetDescription<'_> {
    /// The DSP 2025-1 `Dataset` object (without `@context`).
    pub fn to_dsp_json(&self) -> Json {
        let mut out = self.own_members();
        out.insert("hasPolicy".into(), Json::Array(self.offers.clone()));
        out.insert("distribution".into(), self.distributions_json());
        Json::Object(out)
    }

    /// [`Self::to_dsp_json`] as text, in two parts: the dataset's own members (the object left open), and what the
    /// datasets with the same offers and distributions share (`hasPolicy`, `distribution`, the closing brace). The
    /// two together are the text of `to_dsp_json()`, byte for byte.
    pub fn to_dsp_text_parts(&self) -> (String, String) {
        let mut own = Json::Object(self.own_members()).to_string();
        own.pop();
        let shared = format!(
            ",\"hasPolicy\":{},\"distribution\":{}}}",
            Json::Array(self.offers.clone()),
            self.distributions_json()
        );
        (own, shared)
    }

    fn own_members(&self) -> Map<String, Json> {
        let mut out = Map::new();
        out.insert("@id".into(), json!(self.id));
        out.insert("@type".into(), json!("Dataset"));
        for (key, value) in properties_json(self.properties, PrefixStyle::Dsp) {
            // `hasPolicy` and `distribution` are the catalogue's to say.
            if !matches!(key.as_str(), "@type" | "hasPolicy" | "distribution") {
                out.insert(key, value);
            }
        }
        out
    }

    fn distributions_json(&self) -> Json {
        Json::Array(
            self.distributions
                .iter()
                .map(|d| json!({"@type": "Distribution", "format": d.format, "accessService": d.access_service}))
                .collect(),
        )
    }
}

/// An RDF triple as plain values (the connector turns them into its store's types).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Triple {
    /// An IRI, or `_:label` for a blank node.
    pub subject: String,
    pub predicate: String,
    pub object: Term,
}

/// Triples of `properties` about `subject`; nested nodes become blank nodes labelled `<blank_prefix><n>`.
pub fn triples(subject: &str, properties: &Properties, blank_prefix: &str, out: &mut Vec<Triple>) {
    let mut counter = 0usize;
    triples_inner(subject, properties, blank_prefix, &mut counter, out);
}

fn triples_inner(subject: &str, properties: &Properties, prefix: &str, counter: &mut usize, out: &mut Vec<Triple>) {
    for (predicate, terms) in properties {
        for term in terms {
            match term {
                Term::Node(nested) => {
                    let blank = format!("_:{prefix}{counter}");
                    *counter += 1;
                    out.push(Triple {
                        subject: subject.to_owned(),
                        predicate: predicate.clone(),
                        object: Term::Iri(blank.clone()),
                    });
                    triples_inner(&blank, nested, prefix, counter, out);
                }
                other => out.push(Triple {
                    subject: subject.to_owned(),
                    predicate: predicate.clone(),
                    object: other.clone(),
                }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn expanded(json: Json) -> Map<String, Json> {
        json.as_object().unwrap().clone()
    }

    #[test]
    fn edc_short_names_become_dcat_terms_with_typed_values() {
        let props = properties_from_expanded(&expanded(json!({
            "https://w3id.org/edc/v0.0.1/ns/title": [{"@value": "Diabetes cohort"}],
            "https://w3id.org/edc/v0.0.1/ns/numberOfRecords": [{"@value": "1200"}],
            "https://w3id.org/edc/v0.0.1/ns/theme": [{"@value": "http://publications.europa.eu/resource/authority/data-theme/HEAL"}],
            "https://w3id.org/edc/v0.0.1/ns/name": [{"@value": "cohort"}],
            "http://www.w3.org/ns/dcat#keyword": [{"@value": "diabetes"}, {"@value": "adults"}]
        })))
        .unwrap();
        assert_eq!(
            props["http://purl.org/dc/terms/title"],
            vec![Term::Literal { value: "Diabetes cohort".into(), datatype: None, language: None }]
        );
        assert!(
            matches!(&props["http://healthdataportal.eu/ns/health#numberOfRecords"][0], Term::Literal { datatype: Some(d), .. } if d.ends_with("#nonNegativeInteger"))
        );
        assert!(matches!(&props["http://www.w3.org/ns/dcat#theme"][0], Term::Iri(_)));
        assert!(props.contains_key("https://w3id.org/edc/v0.0.1/ns/name"), "unknown EDC names stay EDC terms");
        let dsp = properties_json(&props, PrefixStyle::Dsp);
        assert_eq!(dsp["dct:title"], "Diabetes cohort");
        assert_eq!(dsp["http://healthdataportal.eu/ns/health#numberOfRecords"], 1200);
        assert_eq!(dsp["dcat:keyword"], json!(["diabetes", "adults"]));
        let management = properties_json(&props, PrefixStyle::Management);
        assert_eq!(management["name"], "cohort");
        assert_eq!(management["healthdcatap:numberOfRecords"], 1200);
    }

    #[test]
    fn a_dataset_text_in_two_parts_is_its_json_text() {
        let properties = properties_from_expanded(&expanded(json!({
            "https://w3id.org/edc/v0.0.1/ns/title": [{"@value": "Diabetes \"cohort\" – 2024"}],
            "http://www.w3.org/ns/dcat#keyword": [{"@value": "diabetes"}, {"@value": "adults"}],
            "https://w3id.org/edc/v0.0.1/ns/numberOfRecords": [{"@value": "1200"}]
        })))
        .unwrap();
        let offer = json!({"@id": "urn:offer:1", "@type": "Offer", "permission": [{"action": "use"}]});
        let distribution = Distribution { format: "HttpData-PULL".into(), access_service: "urn:service".into() };
        let empty = Properties::new();
        for (properties, offers, distributions) in
            [(&properties, vec![offer.clone(), offer], std::slice::from_ref(&distribution)), (&empty, vec![], &[][..])]
        {
            let description = DatasetDescription { id: "dataset-1", properties, offers, distributions };
            let (own, shared) = description.to_dsp_text_parts();
            assert_eq!(own + &shared, description.to_dsp_json().to_string());
            assert!(shared.starts_with(",\"hasPolicy\":"), "{shared}");
        }
    }

    #[test]
    fn wrong_values_for_known_terms_are_named() {
        let error = properties_from_expanded(&expanded(json!({
            "https://w3id.org/edc/v0.0.1/ns/numberOfRecords": [{"@value": "many"}]
        })))
        .unwrap_err();
        assert!(error.contains("healthdcatap:numberOfRecords") && error.contains("many"), "{error}");
        let error = properties_from_expanded(&expanded(json!({
            "https://w3id.org/edc/v0.0.1/ns/issued": [{"@value": "last week"}]
        })))
        .unwrap_err();
        assert!(error.contains("dct:issued"), "{error}");
    }

    #[test]
    fn nested_nodes_become_blank_nodes() {
        let props = properties_from_expanded(&expanded(json!({
            "http://purl.org/dc/terms/temporal": [{
                "@type": ["http://purl.org/dc/terms/PeriodOfTime"],
                "http://www.w3.org/ns/dcat#startDate": [{"@value": "2020-01-01"}]
            }]
        })))
        .unwrap();
        let mut out = Vec::new();
        triples("urn:ds:1", &props, "b", &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(out[0].object, Term::Iri("_:b0".into()));
        assert!(out.iter().any(|t| t.subject == "_:b0" && t.predicate.ends_with("startDate")));
    }
}
