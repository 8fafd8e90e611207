//! What the broker serves on the public listener.
//!
//! Public listener (every call carries a self-issued token, like every other public endpoint but the version
//! metadata and the DID document):
//! - `GET|POST /broker/search`: keyword search with facets ([`crate::broker::search`]);
//! - `GET|POST /broker/sparql`: read-only SPARQL over every peer's graph (the default graph is their union);
//! - `POST /broker/catalog/request`: the federation catalogue, a DSP `CatalogRequestMessage` answered with a DSP
//!   `Catalog` holding one nested `catalog` per peer. Keyword filters as on `/catalog/request`; pages of `limit`
//!   datasets (default 50, at most 1000) with a `rel="next"` `Link` (cursor `afterPeer` + `after`).
//!
//! The management side of the broker and the peer network is the management router's `broker` module.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use crate::broker::Broker;
use crate::broker::search::{self, SearchRequest};
use crate::dsp::catalog::{DEFAULT_PAGE, MAX_PAGE, parse_request};
use crate::dsp::error::{DspArea, DspError};
use crate::problem::PublicError;
use crate::sparql::{QueryParameter, answer, missing_query, posted_query};
use crate::state::Shared;

/// Where the federation catalogue is served (named in the DID document as `FederatedCatalogService`).
pub const CATALOG_PATH: &str = "/broker/catalog/request";
/// The federation catalogue's `@id`: a `GET` of it (signed, as every catalogue request) answers its first page.
pub const CATALOG_ID_PATH: &str = "/broker/catalog";
pub const CATALOG_SERVICE: &str = "FederatedCatalogService";
pub const SEARCH_PATH: &str = "/broker/search";
pub const SEARCH_SERVICE: &str = "BrokerSearchService";
pub const SPARQL_PATH: &str = "/broker/sparql";

/// The broker's routes on the public listener.
pub fn public_routes() -> Router<Shared> {
    Router::new()
        .route(SEARCH_PATH, get(search_get).post(search_post))
        .route(SPARQL_PATH, get(sparql_get).post(sparql_post))
        .route(CATALOG_PATH, post(federation_catalog))
        .route(CATALOG_ID_PATH, get(federation_catalog))
}

/// The broker, or the answer that this connector is not one.
pub(crate) fn broker(state: &Shared) -> Result<&Broker, PublicError> {
    state.broker.as_deref().ok_or_else(|| {
        PublicError::listed(StatusCode::NOT_FOUND, "this connector is not a broker ([broker] enabled = false)")
    })
}

/// A verified caller holding the credential `broker.require_credential` names (if it names one), or 401 / 403 (the
/// reason is logged, never returned).
async fn caller(state: &Shared, broker: &Broker, headers: &HeaderMap) -> Result<String, Response> {
    let verified = state.identity.verify_request(headers).await.map_err(|reason| {
        tracing::info!(%reason, "broker request refused");
        PublicError::listed(StatusCode::UNAUTHORIZED, "a valid self-issued token is required").into_response()
    })?;
    if let Some(missing) = missing_credential(state, broker, &verified).await {
        return Err(PublicError::listed(StatusCode::FORBIDDEN, missing).into_response());
    }
    Ok(verified.participant)
}

/// Why the verified caller may not use the broker's public endpoints: it lacks the credential
/// `broker.require_credential` names. `None` when it may.
async fn missing_credential(state: &Shared, broker: &Broker, verified: &crate::identity::Verified) -> Option<String> {
    let kind = broker.required_credential()?;
    if state.identity.holds(verified, kind).await {
        return None;
    }
    tracing::info!(participant = verified.participant, credential = kind, "broker query without the credential");
    Some(format!("this broker answers holders of a {kind} from an issuer it trusts"))
}

/// A verified caller (as [`caller`]) within its query quota (`broker.queries_per_minute`), or the answer to give.
async fn querier(state: &Shared, headers: &HeaderMap) -> Result<(), Response> {
    let broker = broker(state).map_err(IntoResponse::into_response)?;
    let participant = caller(state, broker, headers).await?;
    broker.admit_query(&participant).map_err(IntoResponse::into_response)
}

pub(crate) fn run_search(broker: &Broker, request: &SearchRequest) -> Response {
    if let Err(message) = request.check() {
        return PublicError::listed(StatusCode::BAD_REQUEST, message).into_response();
    }
    axum::Json(search::search(&broker.catalogs(), request)).into_response()
}

pub(crate) fn search_body(body: &[u8]) -> Result<SearchRequest, PublicError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(SearchRequest::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| PublicError::listed(StatusCode::BAD_REQUEST, format!("the search is not valid: {e}")))
}

pub(crate) fn search_query(query: Option<&str>) -> Result<SearchRequest, PublicError> {
    serde_urlencoded::from_str(query.unwrap_or_default())
        .map_err(|e| PublicError::listed(StatusCode::BAD_REQUEST, format!("the search is not valid: {e}")))
}

async fn search_get(State(state): State<Shared>, headers: HeaderMap, uri: axum::http::Uri) -> Response {
    public_search(&state, &headers, search_query(uri.query())).await
}

async fn search_post(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    public_search(&state, &headers, search_body(&body)).await
}

async fn public_search(state: &Shared, headers: &HeaderMap, request: Result<SearchRequest, PublicError>) -> Response {
    if let Err(refusal) = querier(state, headers).await {
        return refusal;
    }
    match (broker(state), request) {
        (Ok(broker), Ok(request)) => run_search(broker, &request),
        (Err(problem), _) | (_, Err(problem)) => problem.into_response(),
    }
}

async fn sparql_get(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(parameter): Query<QueryParameter>,
) -> Response {
    public_sparql(state, headers, parameter.query).await
}

async fn sparql_post(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    let query = posted_query(&headers, &body);
    public_sparql(state, headers, query).await
}

async fn public_sparql(state: Shared, headers: HeaderMap, query: Option<String>) -> Response {
    if let Err(refusal) = querier(&state, &headers).await {
        return refusal;
    }
    sparql(state, headers, query).await.unwrap_or_else(|error| PublicError::from(error).into_response())
}

/// Runs a query over the federation graph (both listeners; each answers the error in its own type).
pub(crate) async fn sparql(
    state: Shared,
    headers: HeaderMap,
    query: Option<String>,
) -> Result<Response, crate::error::ManagementError> {
    let Some(query) = query.filter(|q| !q.trim().is_empty()) else {
        return Err(missing_query());
    };
    let limits = crate::catalog::rdf::SparqlLimits::of_broker(&state.config.sparql, &state.config.broker);
    answer(&headers, move |accept| match state.broker.as_ref() {
        Some(broker) => broker.sparql(&query, accept, &limits),
        None => Err(crate::catalog::rdf::SparqlError::Evaluation("this connector is not a broker".into())),
    })
    .await
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FederationPaging {
    limit: Option<usize>,
    after_peer: Option<String>,
    after: Option<String>,
}

/// `POST /broker/catalog/request`: the federation catalogue.
async fn federation_catalog(
    State(state): State<Shared>,
    Query(paging): Query<FederationPaging>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(broker) = state.broker.as_ref() else {
        return DspError::not_found(DspArea::Catalog, "this connector is not a broker").into_response();
    };
    let verified = match state.identity.verify_request(&headers).await {
        Ok(verified) => verified,
        Err(reason) => {
            tracing::info!(%reason, "federation catalogue request refused");
            return DspError::unauthorized(DspArea::Catalog).into_response();
        }
    };
    if let Some(reason) = missing_credential(&state, broker, &verified).await {
        return DspError::new(DspArea::Catalog, StatusCode::FORBIDDEN, "Forbidden", reason).into_response();
    }
    let filter = match parse_request(&body) {
        Ok(filter) => filter,
        Err(error) => return error.into_response(),
    };
    if !filter.properties.is_empty() {
        return DspError::bad_request(
            DspArea::Catalog,
            vec![format!("the federation catalogue filters by keyword only; {SEARCH_PATH} filters by theme, health category, country, age and records")],
        )
        .into_response();
    }
    let limit = paging.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return DspError::bad_request(DspArea::Catalog, vec![format!("limit must be between 1 and {MAX_PAGE}")])
            .into_response();
    }
    let page = broker.federation_page(&filter.keywords, paging.after_peer.as_deref(), paging.after.as_deref(), limit);
    let service = &state.catalogue.service;
    let mut root = json!({
        "@context": [hanse_vocab::contexts::DSPACE_2025_1],
        "@id": format!("{}{CATALOG_ID_PATH}", state.public_url),
        "@type": "Catalog",
        "participantId": service.participant_id,
        "service": [{"@id": service.service_id(), "@type": "DataService", "endpointURL": service.endpoint_url}],
    });
    if !page.catalogs.is_empty() {
        root["catalog"] = Json::Array(page.catalogs);
    }
    let mut response = axum::Json(root).into_response();
    if let Some((peer, after)) = page.next {
        // A peer none of whose datasets was taken yet starts at its first: no empty `after`.
        let after =
            if after.is_empty() { String::new() } else { format!("&after={}", hanse_core::encode::percent(&after)) };
        let url = format!(
            "<{}{CATALOG_PATH}?limit={limit}&afterPeer={}{after}>; rel=\"next\"",
            state.public_url,
            hanse_core::encode::percent(&peer),
        );
        if let Ok(value) = HeaderValue::from_str(&url) {
            response.headers_mut().insert(header::LINK, value);
        }
    }
    response
}
