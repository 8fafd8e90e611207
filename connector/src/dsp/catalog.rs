//! The DSP catalogue request as a peer sends it: the page sizes, and the `CatalogRequestMessage` with its filter
//! (keywords, properties, or EDC's `QuerySpec`), read into a [`CatalogFilter`]; and the filter a Hanse consumer
//! sends.

use serde_json::{Value as Json, json};

use super::error::{DspArea, DspError};
use crate::catalog::CatalogFilter;
use crate::catalog::model::property_iri;

/// The default and largest page sizes of the DSP catalogue.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 1000;

/// Reads a `CatalogRequestMessage` and its filter.
pub fn parse_request(body: &[u8]) -> Result<CatalogFilter, DspError> {
    let bad = |reason: String| DspError::bad_request(DspArea::Catalog, vec![reason]);
    let message: Json = if body.iter().all(u8::is_ascii_whitespace) {
        json!({"@context": [hanse_vocab::contexts::DSPACE_2025_1], "@type": "CatalogRequestMessage"})
    } else {
        serde_json::from_slice(body).map_err(|e| bad(format!("the body is not JSON: {e}")))?
    };
    let message_type = message.get("@type").and_then(Json::as_str);
    if message_type != Some("CatalogRequestMessage") {
        return Err(bad(format!(
            "expected a CatalogRequestMessage, got @type {}",
            message.get("@type").unwrap_or(&Json::Null)
        )));
    }
    let mut filter = CatalogFilter::default();
    let filters = match message.get("filter") {
        None | Some(Json::Null) => return Ok(filter),
        Some(Json::Array(items)) => items.clone(),
        Some(other) => vec![other.clone()],
    };
    let mut reasons = Vec::new();
    for (i, item) in filters.iter().enumerate() {
        let Some(object) = item.as_object() else {
            reasons.push(format!("filter[{i}]: unsupported filter {item}; use {{\"keyword\": ...}} or {{\"property\": ..., \"value\": ...}}"));
            continue;
        };
        let object = &filter_members(object);
        if let Some(expressions) = crate::catalog::query::get(object, "filterExpression") {
            read_query_spec(i, expressions, &mut filter, &mut reasons);
        } else if let Some(keyword) = object.get("keyword").filter(|_| object.len() == 1) {
            let words: Vec<&Json> = match keyword {
                Json::Array(items) => items.iter().collect(),
                other => vec![other],
            };
            for word in words {
                match word.as_str().filter(|w| !w.trim().is_empty()) {
                    Some(word) => filter.keywords.push(word.trim().to_lowercase()),
                    None => reasons.push(format!("filter[{i}].keyword: must be a non-empty string")),
                }
            }
        } else if let (Some(property), Some(value), 2) =
            (object.get("property").and_then(Json::as_str), object.get("value"), object.len())
        {
            filter.properties.push((property_iri(property), value.clone()));
        } else {
            reasons.push(format!(
                "filter[{i}]: unsupported filter {item}; use {{\"keyword\": ...}} or {{\"property\": ..., \"value\": ...}}"
            ));
        }
    }
    if reasons.is_empty() { Ok(filter) } else { Err(DspError::bad_request(DspArea::Catalog, reasons)) }
}

/// A filter object with Hanse IRI keys read as their bare names (`https://w3id.org/hanse/ns/keyword` → `keyword`),
/// values unwrapped from `{"@value": ...}` and `{"@id": ...}`, and `@type` left out.
fn filter_members(object: &serde_json::Map<String, Json>) -> serde_json::Map<String, Json> {
    object
        .iter()
        .filter(|(key, _)| key.as_str() != "@type")
        .map(|(key, value)| {
            let key = key.strip_prefix(hanse_vocab::ns::HANSE).unwrap_or(key).to_owned();
            (key, literal(value))
        })
        .collect()
}

/// A JSON-LD value object or node reference as its plain value (a one-element array as its element).
fn literal(value: &Json) -> Json {
    match value {
        Json::Array(items) if items.len() == 1 => literal(&items[0]),
        Json::Object(map) if map.len() == 1 && (map.contains_key("@value") || map.contains_key("@id")) => {
            map.get("@value").or_else(|| map.get("@id")).cloned().unwrap_or(Json::Null)
        }
        other => other.clone(),
    }
}

/// EDC's filter, a `QuerySpec`: each criterion with `=` (or `in`) on a property becomes a property filter.
fn read_query_spec(i: usize, expressions: &Json, filter: &mut CatalogFilter, reasons: &mut Vec<String>) {
    let criteria = match expressions {
        Json::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    for (j, criterion) in criteria.into_iter().enumerate() {
        let place = format!("filter[{i}].filterExpression[{j}]");
        let Some(criterion) = criterion.as_object() else {
            reasons.push(format!("{place}: a criterion must be an object"));
            continue;
        };
        let get = |name| crate::catalog::query::get(criterion, name).map(literal);
        match (get("operandLeft"), get("operator"), get("operandRight")) {
            (Some(Json::String(left)), Some(Json::String(operator)), Some(right)) if operator == "=" => {
                filter.properties.push((property_iri(&left), right));
            }
            (Some(Json::String(left)), Some(Json::String(operator)), Some(Json::Array(values))) if operator == "in" => {
                // One of several values: a property filter per value would ask for all of them.
                match values.as_slice() {
                    [one] => filter.properties.push((property_iri(&left), literal(one))),
                    _ => reasons.push(format!("{place}: `in` with more than one value is not supported here")),
                }
            }
            (_, Some(Json::String(operator)), _) => {
                reasons.push(format!("{place}: operator `{operator}` is not supported in a catalogue filter; use `=`"))
            }
            _ => reasons.push(format!("{place}: needs operandLeft, operator and operandRight")),
        }
    }
}

/// The `filter` member a Hanse consumer sends for `keywords` and `(property, value)` pairs: Hanse IRIs as keys, so
/// that the filter keeps its meaning through a provider's JSON-LD processing.
pub fn filter_for(keywords: &[Json], properties: &[(String, Json)]) -> Json {
    let mut filter: Vec<Json> =
        keywords.iter().map(|k| json!({format!("{}keyword", hanse_vocab::ns::HANSE): k})).collect();
    filter.extend(properties.iter().map(|(property, value)| {
        json!({format!("{}property", hanse_vocab::ns::HANSE): property, format!("{}value", hanse_vocab::ns::HANSE): value})
    }));
    Json::Array(filter)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(filter: Json) -> Vec<u8> {
        json!({"@context": [hanse_vocab::contexts::DSPACE_2025_1], "@type": "CatalogRequestMessage", "filter": filter})
            .to_string()
            .into_bytes()
    }

    #[test]
    fn the_filter_a_hanse_consumer_sends_survives_json_ld_expansion_and_reads_back() {
        let filter = filter_for(&[json!("diabetes")], &[("dct:spatial".into(), json!("DEU"))]);
        let body = message(filter);
        let expanded = hanse_vocab::jsonld::expand(&serde_json::from_slice(&body).unwrap()).unwrap();
        let kept = expanded[0][format!("{}filter", hanse_vocab::ns::DSPACE)].as_array().expect("the filter is kept");
        assert_eq!(kept.len(), 2, "{expanded:#}");
        assert!(kept[0].get(format!("{}keyword", hanse_vocab::ns::HANSE)).is_some(), "{expanded:#}");
        let read = parse_request(&body).unwrap();
        assert_eq!(read.keywords, ["diabetes"]);
        assert_eq!(read.properties, [(property_iri("dct:spatial"), json!("DEU"))]);
    }

    #[test]
    fn the_first_form_and_edc_query_specs_read_as_the_same_filter() {
        let plain = parse_request(&message(json!([{"property": "dct:spatial", "value": "DEU"}]))).unwrap();
        let edc = "https://w3id.org/edc/v0.0.1/ns/";
        let query_spec = json!({"@type": format!("{edc}QuerySpec"), format!("{edc}filterExpression"): [{
            format!("{edc}operandLeft"): "dct:spatial", format!("{edc}operator"): "=", format!("{edc}operandRight"): {"@value": "DEU"}}]});
        assert_eq!(parse_request(&message(query_spec)).unwrap().properties, plain.properties);
        let unsupported =
            json!({"filterExpression": [{"operandLeft": "dct:title", "operator": "like", "operandRight": "%x%"}]});
        let error = parse_request(&message(unsupported)).unwrap_err();
        assert!(format!("{error:?}").contains("operator `like`"), "{error:?}");
    }
}
