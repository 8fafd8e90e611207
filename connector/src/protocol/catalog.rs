//! DSP 2025-1 catalogue protocol (provider side): `POST /catalog/request` and `GET /catalog/datasets/{id}`.
//!
//! # Filters
//! A `CatalogRequestMessage`'s `filter` is a list of objects, all of which must hold:
//! - `{"keyword": "diabetes"}` (or a list of keywords): each occurs, case-insensitively, in the dataset's title,
//!   description, keywords or name;
//! - `{"property": "dct:spatial", "value": "http://publications.europa.eu/resource/authority/country/DEU"}`: the dataset
//!   has that property (full IRI, `prefix:local` or a known short name) with that value;
//! - EDC's form, a `QuerySpec` whose `filterExpression` criteria use `=` or `in` (`operandLeft` a property as above).
//!
//! The DSP context does not define `keyword`, `property` or `value`, so a provider that processes JSON-LD would drop
//! them: Hanse consumers send the keyword and property forms with Hanse IRIs as keys (`https://w3id.org/hanse/ns/keyword`,
//! `.../property`, `.../value`), which survive expansion, and EDC's QuerySpec with EDC IRIs; Hanse providers read
//! every spelling. Any other filter is refused with a 400 `CatalogError` naming it: a filter is never silently ignored.
//!
//! # Paging
//! `?limit=N` (default 50, at most 1000) and a cursor: `?after=<dataset id>` or `?before=<dataset id>`. Answers carry
//! `Link` headers with `rel="next"` and `rel="previous"`; the client repeats its request (same body) at those URLs.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hanse_policy::RequestContext;
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::error::{DspArea, DspError};
use crate::catalog::model::property_iri;
use crate::catalog::{CatalogFilter, CatalogPage};
use crate::server::Shared;

/// The default and largest page sizes of the DSP catalogue.
pub const DEFAULT_PAGE: usize = 50;
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, Deserialize)]
pub struct Paging {
    limit: Option<usize>,
    after: Option<String>,
    before: Option<String>,
}

/// The verified requester and, when an access policy needs them, its verified claims. An unverifiable request is
/// refused with 401; the reason is logged, never returned.
async fn requester_context(state: &Shared, headers: &HeaderMap) -> Result<RequestContext, DspError> {
    match state.identity.verify_request(headers).await {
        Ok(requester) => {
            Ok(state.identity.request_context(&requester, state.catalogue.policies_use_claims(true)).await)
        }
        Err(reason) => {
            tracing::info!(%reason, "catalogue request refused");
            Err(DspError::unauthorized(DspArea::Catalog))
        }
    }
}

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

/// The DSP `Catalog` message for a page, as JSON text: the datasets are spliced in as rendered.
pub fn catalog_message(state: &Shared, page: &CatalogPage) -> String {
    let service = &state.catalogue.service;
    let head = json!({
        "@context": [hanse_vocab::contexts::DSPACE_2025_1],
        "@id": service.catalog_id(),
        "@type": "Catalog",
        "participantId": service.participant_id,
        "service": [{"@id": service.service_id(), "@type": "DataService", "endpointURL": service.endpoint_url}],
    })
    .to_string();
    if page.datasets.is_empty() {
        return head;
    }
    let size: usize = page.datasets.iter().map(|d| d.len() + 1).sum();
    let mut out = String::with_capacity(head.len() + size + 16);
    out.push_str(&head[..head.len() - 1]);
    out.push_str(",\"dataset\":[");
    for (i, dataset) in page.datasets.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(dataset);
    }
    out.push_str("]}");
    out
}

fn json_response(body: String) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}

fn link(base: &str, limit: usize, cursor: (&str, &str), rel: &str) -> String {
    format!("<{base}?limit={limit}&{}={}>; rel=\"{rel}\"", cursor.0, hanse_core::encode::percent(cursor.1))
}

/// `POST /protocol/2025-1/catalog/request`.
pub async fn request(
    State(state): State<Shared>,
    Query(paging): Query<Paging>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let context = match requester_context(&state, &headers).await {
        Ok(context) => context,
        Err(error) => return error.into_response(),
    };
    let filter = match parse_request(&body) {
        Ok(filter) => filter,
        Err(error) => return error.into_response(),
    };
    let limit = paging.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return DspError::bad_request(DspArea::Catalog, vec![format!("limit must be between 1 and {MAX_PAGE}")])
            .into_response();
    }
    let page = state.catalogue.page(&context, paging.after.as_deref(), paging.before.as_deref(), limit, &filter);
    let base = format!("{}/catalog/request", state.catalogue.service.endpoint_url);
    let mut links = Vec::new();
    if let Some(after) = &page.next_after {
        links.push(link(&base, limit, ("after", after), "next"));
    }
    if let Some(before) = &page.previous_before {
        links.push(link(&base, limit, ("before", before), "previous"));
    }
    let mut response = json_response(catalog_message(&state, &page));
    if !links.is_empty()
        && let Ok(value) = HeaderValue::from_str(&links.join(", "))
    {
        response.headers_mut().insert(header::LINK, value);
    }
    response
}

/// `GET /protocol/2025-1/catalog/datasets/{id}`.
pub async fn dataset(State(state): State<Shared>, Path(id): Path<String>, headers: HeaderMap) -> Response {
    let context = match requester_context(&state, &headers).await {
        Ok(context) => context,
        Err(error) => return error.into_response(),
    };
    match state.catalogue.dataset(&context, &id) {
        Some(dataset) => {
            let context = json!([hanse_vocab::contexts::DSPACE_2025_1]);
            json_response(format!("{{\"@context\":{context},{}", &dataset[1..]))
        }
        // Unknown and not visible to this requester look the same.
        None => DspError::not_found(DspArea::Catalog, format!("no dataset `{id}` in this catalogue")).into_response(),
    }
}

/// `GET /.well-known/dspace-version` (at the origin and under `/protocol`).
pub async fn version(State(state): State<Shared>) -> Response {
    let body = json!({"protocolVersions": [{
        "version": "2025-1",
        "path": "/protocol/2025-1",
        "binding": "HTTPS",
        "identifierType": "did:web",
        "serviceId": state.catalogue.service.service_id(),
    }]});
    (StatusCode::OK, axum::Json(body)).into_response()
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
