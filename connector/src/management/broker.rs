//! The peer network's and the broker's management calls: `GET /management/v3/peers`, `POST /management/v3/peers`
//! (`{"did"}` or `{"url"}`), `DELETE /management/v3/peers/{did}`, `POST /management/v3/peers/exchange`;
//! `GET /management/v3/broker/crawls`, `POST /management/v3/broker/crawl`; `GET|POST /management/v3/search` (this
//! broker, or `broker=<URL>` asks that broker with this connector's identity); `GET|POST /management/broker/sparql`.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::Value as Json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::{ManagementError, Path, Query};
use crate::broker::search::SearchRequest;
use crate::problem::PublicError;
use crate::protocol::broker::{SEARCH_PATH, broker, run_search, search_body, search_query, sparql};
use crate::sparql::{QueryParameter, posted_query};
use crate::state::Shared;

/// The peer network's and the broker's routes on the management listener (behind its API key).
pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new()
        .routes(routes!(peers_list, peers_add))
        .routes(routes!(peers_exchange))
        .routes(routes!(peers_remove))
        .routes(routes!(crawls))
        .routes(routes!(crawl_now))
        .routes(routes!(management_search_get, management_search_post))
        .routes(routes!(management_sparql_get, management_sparql_post))
}

#[utoipa::path(get, path = "/management/v3/peers", tag = "Peers and broker", operation_id = "list peers", responses((status = 200, description = "Known peers", body = [crate::management::openapi::Object]), crate::management::openapi::ReadErrors))]
async fn peers_list(State(state): State<Shared>) -> Result<Response, ManagementError> {
    Ok(axum::Json(state.store.peers.peers().await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPeer {
    did: Option<String>,
    url: Option<String>,
}

#[utoipa::path(post, path = "/management/v3/peers", tag = "Peers and broker", operation_id = "add a peer", request_body(content = crate::management::openapi::PeerInput, content_type = "application/json"), responses((status = 201, description = "The peer, added", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors, crate::management::openapi::PeerErrors))]
async fn peers_add(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let body: AddPeer = serde_json::from_slice(&body)
        .map_err(|e| ManagementError::field("", format!("expected {{\"did\": ...}} or {{\"url\": ...}}: {e}")))?;
    let target = match (body.did, body.url) {
        (Some(did), None) if did.starts_with("did:web:") => did,
        (Some(did), None) => return Err(ManagementError::field("did", format!("`{did}` is not a did:web DID"))),
        (None, Some(url)) if url.starts_with("http://") || url.starts_with("https://") => url,
        (None, Some(url)) => return Err(ManagementError::field("url", format!("`{url}` is not an http(s) URL"))),
        _ => return Err(ManagementError::field("did", "give exactly one of did and url")),
    };
    let peer =
        crate::peers::add(&state.peers, &target).await.map_err(|reason| ManagementError::field("did", reason))?;
    Ok((StatusCode::CREATED, axum::Json(peer)).into_response())
}

#[utoipa::path(delete, path = "/management/v3/peers/{did}", tag = "Peers and broker", operation_id = "remove a peer", params(("did" = String, Path)), responses((status = 204, description = "Removed"), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
async fn peers_remove(State(state): State<Shared>, Path(did): Path<String>) -> Result<Response, ManagementError> {
    if state.store.peers.remove_peer(&did).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ManagementError::NotFound(format!("no peer {did}")))
    }
}

#[utoipa::path(post, path = "/management/v3/peers/exchange", tag = "Peers and broker", operation_id = "exchange peer lists now", responses((status = 200, description = "What was learnt", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
async fn peers_exchange(State(state): State<Shared>) -> Result<Response, ManagementError> {
    let round = crate::peers::exchange_round(&state.peers).await?;
    Ok(axum::Json(round).into_response())
}

#[utoipa::path(get, path = "/management/v3/broker/crawls", tag = "Peers and broker", operation_id = "list crawls", responses((status = 200, description = "Each peer's crawl status", body = [crate::management::openapi::Object]), crate::management::openapi::ReadErrors))]
async fn crawls(State(state): State<Shared>) -> Response {
    match broker(&state) {
        Ok(broker) => axum::Json(broker.status()).into_response(),
        Err(problem) => problem.into_response(),
    }
}

#[utoipa::path(post, path = "/management/v3/broker/crawl", tag = "Peers and broker", operation_id = "crawl now", responses((status = 200, description = "Each peer's crawl status", body = [crate::management::openapi::Object]), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
async fn crawl_now(State(state): State<Shared>) -> Response {
    match broker(&state) {
        Ok(broker) => broker.force(),
        Err(problem) => return problem.into_response(),
    }
    axum::Json(state.broker.as_ref().expect("checked above").crawl_round().await).into_response()
}

/// `broker=<URL>` of a management search (whose broker to ask), and the rest of the query string.
fn split_broker(query: Option<&str>) -> (Option<String>, String) {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(query.unwrap_or_default()).unwrap_or_default();
    let (broker, rest): (Vec<_>, Vec<_>) = pairs.into_iter().partition(|(k, _)| k == "broker");
    (broker.into_iter().next_back().map(|(_, v)| v), serde_urlencoded::to_string(rest).unwrap_or_default())
}

#[utoipa::path(get, path = "/management/v3/search", tag = "Peers and broker", operation_id = "search the federation", params(SearchRequest, ("broker" = Option<String>, Query, description = "Ask this broker instead")), responses((status = 200, description = "Datasets with facets", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors, crate::management::openapi::PeerErrors))]
async fn management_search_get(State(state): State<Shared>, uri: axum::http::Uri) -> Response {
    let (remote, rest) = split_broker(uri.query());
    match search_query(Some(&rest)) {
        Ok(request) => management_search(&state, remote, request).await,
        Err(problem) => problem.into_response(),
    }
}

#[utoipa::path(post, path = "/management/v3/search", tag = "Peers and broker", operation_id = "search the federation (body)", params(("broker" = Option<String>, Query, description = "Ask this broker instead")), request_body(content = Option<crate::management::openapi::Object>, content_type = "application/json"), responses((status = 200, description = "Datasets with facets", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors, crate::management::openapi::PeerErrors))]
async fn management_search_post(State(state): State<Shared>, uri: axum::http::Uri, body: Bytes) -> Response {
    let (remote, _) = split_broker(uri.query());
    match search_body(&body) {
        Ok(request) => management_search(&state, remote, request).await,
        Err(problem) => problem.into_response(),
    }
}

async fn management_search(state: &Shared, remote: Option<String>, request: SearchRequest) -> Response {
    let Some(url) = remote else {
        return match broker(state) {
            Ok(broker) => run_search(broker, &request),
            Err(problem) => problem.into_response(),
        };
    };
    if let Err(message) = request.check() {
        return PublicError::listed(StatusCode::BAD_REQUEST, message).into_response();
    }
    if !reqwest::Url::parse(&url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) {
        return ManagementError::field("broker", format!("`{url}` is not an http(s) URL of a broker")).into_response();
    }
    match remote_search(state, &url, &request).await {
        Ok(body) => axum::Json(body).into_response(),
        Err(error) => ManagementError::Upstream(error).into_response(),
    }
}

/// Asks another connector's broker, with this connector's identity.
async fn remote_search(state: &Shared, url: &str, request: &SearchRequest) -> Result<Json, String> {
    let did = crate::peers::did_of(&state.peers, url).await?;
    let origin =
        reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?.origin().ascii_serialization();
    let endpoint = format!("{origin}{SEARCH_PATH}");
    let response = state
        .dsp
        .http()
        .post(&endpoint)
        .header(header::AUTHORIZATION, state.identity.authorization(&did))
        .json(&request.to_json())
        .send()
        .await
        .map_err(|e| format!("cannot reach {endpoint}: {}", hanse_core::error_chain(&e)))?;
    let status = response.status();
    let text = crate::identity::limited::text(response, crate::identity::limited::MESSAGE)
        .await
        .map_err(|e| format!("{endpoint}: {e}"))?;
    if !status.is_success() {
        return Err(format!(
            "{endpoint} answered HTTP {}: {}",
            status.as_u16(),
            text.chars().take(500).collect::<String>()
        ));
    }
    serde_json::from_str(&text).map_err(|e| format!("{endpoint} answered with invalid JSON: {e}"))
}

#[utoipa::path(get, path = "/management/broker/sparql", tag = "SPARQL", operation_id = "SPARQL over the federation", params(QueryParameter), responses((status = 200, description = "Results in the format `Accept` asks for", content((String = "application/sparql-results+json"), (String = "application/sparql-results+xml"), (String = "text/csv"), (String = "text/tab-separated-values"), (String = "text/turtle"), (String = "application/n-triples"), (String = "application/rdf+xml"))), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
async fn management_sparql_get(
    State(state): State<Shared>,
    headers: HeaderMap,
    Query(parameter): Query<QueryParameter>,
) -> Response {
    match broker(&state) {
        Ok(_) => sparql(state, headers, parameter.query).await.unwrap_or_else(IntoResponse::into_response),
        Err(problem) => problem.into_response(),
    }
}

#[utoipa::path(post, path = "/management/broker/sparql", tag = "SPARQL", operation_id = "SPARQL over the federation (body)", request_body(content((String = "application/sparql-query"), (crate::management::openapi::SparqlQuery = "application/x-www-form-urlencoded"), (crate::management::openapi::SparqlQuery = "application/json"))), responses((status = 200, description = "Results in the format `Accept` asks for", content((String = "application/sparql-results+json"), (String = "application/sparql-results+xml"), (String = "text/csv"), (String = "text/tab-separated-values"), (String = "text/turtle"), (String = "application/n-triples"), (String = "application/rdf+xml"))), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
async fn management_sparql_post(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(problem) = broker(&state) {
        return problem.into_response();
    }
    let query = posted_query(&headers, &body);
    sparql(state, headers, query).await.unwrap_or_else(IntoResponse::into_response)
}
