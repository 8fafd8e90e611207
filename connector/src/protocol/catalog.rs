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
use serde_json::json;

use crate::catalog::CatalogPage;
use crate::dsp::catalog::{DEFAULT_PAGE, MAX_PAGE, parse_request};
use crate::dsp::error::{DspArea, DspError};
use crate::state::Shared;

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

/// The DSP `Catalog` message for a page, as JSON text: the datasets are spliced in as rendered.
pub fn catalog_message(state: &Shared, page: &CatalogPage) -> String {
    let service = &state.catalogue.service;
    let mut services =
        vec![json!({"@id": service.service_id(), "@type": "DataService", "endpointURL": service.endpoint_url})];
    // The providers' algorithms this connector runs, each a service of its own (decision 0048).
    services.extend(state.compute.algorithms.catalogue_services(&service.endpoint_url).iter().cloned());
    let head = json!({
        "@context": [hanse_vocab::contexts::DSPACE_2025_1],
        "@id": service.catalog_id(),
        "@type": "Catalog",
        "participantId": service.participant_id,
        "service": services,
    })
    .to_string();
    if page.datasets.is_empty() {
        return head;
    }
    let size: usize = page.datasets.iter().map(|d| d.size() + 1).sum();
    let mut out = String::with_capacity(head.len() + size + 16);
    out.push_str(&head[..head.len() - 1]);
    out.push_str(",\"dataset\":[");
    for (i, dataset) in page.datasets.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        dataset.push_to(&mut out);
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
            json_response(format!("{{\"@context\":{context},{}", &dataset.text()[1..]))
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
