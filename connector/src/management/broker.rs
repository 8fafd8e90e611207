//! The peer network's and the broker's management calls: `GET /management/v3/peers`, `POST /management/v3/peers`
//! (`{"did"}` or `{"url"}`), `DELETE /management/v3/peers/{did}`, `POST /management/v3/peers/exchange`;
//! `GET /management/v3/broker/crawls`, `POST /management/v3/broker/crawl`; `GET|POST /management/v3/search` (this
//! broker, or `broker=<URL>` asks that broker with this connector's identity); `GET|POST /management/broker/sparql`.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::Value as Json;

use super::ManagementError;
use crate::broker::search::SearchRequest;
use crate::problem::PublicError;
use crate::protocol::broker::{SEARCH_PATH, broker, run_search, search_body, search_query, sparql};
use crate::sparql::{QueryParameter, posted_query};
use crate::state::Shared;

/// The peer network's and the broker's routes on the management listener (behind its API key).
pub fn routes() -> Router<Shared> {
    Router::new()
        .route("/management/v3/peers", get(peers_list).post(peers_add))
        .route("/management/v3/peers/exchange", post(peers_exchange))
        .route("/management/v3/peers/{did}", axum::routing::delete(peers_remove))
        .route("/management/v3/broker/crawls", get(crawls))
        .route("/management/v3/broker/crawl", post(crawl_now))
        .route("/management/v3/search", get(management_search_get).post(management_search_post))
        .route("/management/broker/sparql", get(management_sparql_get).post(management_sparql_post))
}

async fn peers_list(State(state): State<Shared>) -> Result<Response, ManagementError> {
    Ok(axum::Json(state.store.peers.peers().await?).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AddPeer {
    did: Option<String>,
    url: Option<String>,
}

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

async fn peers_remove(State(state): State<Shared>, Path(did): Path<String>) -> Result<Response, ManagementError> {
    if state.store.peers.remove_peer(&did).await? {
        Ok(StatusCode::NO_CONTENT.into_response())
    } else {
        Err(ManagementError::NotFound(format!("no peer {did}")))
    }
}

async fn peers_exchange(State(state): State<Shared>) -> Result<Response, ManagementError> {
    let round = crate::peers::exchange_round(&state.peers).await?;
    Ok(axum::Json(round).into_response())
}

async fn crawls(State(state): State<Shared>) -> Response {
    match broker(&state) {
        Ok(broker) => axum::Json(broker.status()).into_response(),
        Err(problem) => problem.into_response(),
    }
}

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

async fn management_search_get(State(state): State<Shared>, uri: axum::http::Uri) -> Response {
    let (remote, rest) = split_broker(uri.query());
    match search_query(Some(&rest)) {
        Ok(request) => management_search(&state, remote, request).await,
        Err(problem) => problem.into_response(),
    }
}

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

async fn management_sparql_post(State(state): State<Shared>, headers: HeaderMap, body: Bytes) -> Response {
    if let Err(problem) = broker(&state) {
        return problem.into_response();
    }
    let query = posted_query(&headers, &body);
    sparql(state, headers, query).await.unwrap_or_else(IntoResponse::into_response)
}
