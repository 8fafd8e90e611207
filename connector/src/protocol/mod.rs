//! The public listener: what peers call (DSP endpoints, DID document, `/.well-known/*`, data plane).

pub mod broker;
pub mod catalog;
pub mod identity;
pub mod negotiation;
mod process;
pub mod transfer;

use axum::Router;
use axum::routing::{get, post};
use tower_http::compression::CompressionLayer;
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};

use crate::health::health_routes;
use crate::state::Shared;

/// The DSP 2025-1 base path.
pub const BASE: &str = hanse_core::paths::DSP_BASE;

/// Answers smaller than this go uncompressed: a DSP process message or acknowledgement gains a few hundred bytes from
/// gzip and costs a compressor's set-up on both ends; catalogue pages and credentials are compressed.
const COMPRESS_ABOVE: u16 = 1024;

/// The public router. Answers of more than [`COMPRESS_ABOVE`] bytes are gzip-compressed when the client asks.
pub fn router(state: Shared) -> Router {
    let mut router = Router::new();
    // A DID with path segments (`did:web:host:units:lab`) is served at `/units/lab/did.json` as well.
    if let Some(path) = crate::identity::did::document_path(state.identity.did())
        && path != "/.well-known/did.json"
    {
        router = router.route(&path, get(identity::did_document));
    }
    router
        .merge(health_routes())
        .merge(broker::public_routes())
        .route("/.well-known/did.json", get(identity::did_document))
        .route(crate::identity::credentials::STATUS_LIST_PATH, get(identity::status_list))
        .route(crate::identity::gaiax::CREDENTIALS_PATH, get(identity::gaiax_presentation))
        .route(&format!("{}/{{name}}", crate::identity::gaiax::CREDENTIALS_PATH), get(identity::gaiax_credential))
        .route(crate::identity::gaiax::CHAIN_PATH, get(identity::certificate_chain))
        .route(
            &format!("{}/presentations/query", crate::identity::did::CREDENTIAL_SERVICE_PATH),
            post(identity::presentation_query),
        )
        .route(
            &format!("{}/credentials", crate::identity::did::CREDENTIAL_SERVICE_PATH),
            post(identity::store_credentials),
        )
        .route("/.well-known/dspace-version", get(catalog::version))
        .route("/protocol/.well-known/dspace-version", get(catalog::version))
        .route(&format!("{BASE}/catalog/request"), post(catalog::request))
        .route(&format!("{BASE}/catalog/datasets/{{id}}"), get(catalog::dataset))
        .route(&format!("{BASE}/negotiations/request"), post(negotiation::initial_request))
        .route(&format!("{BASE}/negotiations/offers"), post(negotiation::initial_offer))
        .route(&format!("{BASE}/negotiations/{{pid}}"), get(negotiation::get))
        .route(&format!("{BASE}/negotiations/{{pid}}/request"), post(negotiation::request))
        .route(&format!("{BASE}/negotiations/{{pid}}/offers"), post(negotiation::offers))
        .route(&format!("{BASE}/negotiations/{{pid}}/events"), post(negotiation::events))
        .route(&format!("{BASE}/negotiations/{{pid}}/agreement"), post(negotiation::agreement))
        .route(&format!("{BASE}/negotiations/{{pid}}/agreement/verification"), post(negotiation::verification))
        .route(&format!("{BASE}/negotiations/{{pid}}/termination"), post(negotiation::termination))
        .route(&format!("{BASE}/transfers/request"), post(transfer::request))
        .route(&format!("{BASE}/transfers/{{pid}}"), get(transfer::get))
        .route(&format!("{BASE}/transfers/{{pid}}/start"), post(transfer::start))
        .route(&format!("{BASE}/transfers/{{pid}}/completion"), post(transfer::completion))
        .route(&format!("{BASE}/transfers/{{pid}}/suspension"), post(transfer::suspension))
        .route(&format!("{BASE}/transfers/{{pid}}/termination"), post(transfer::termination))
        .route_layer(axum::middleware::from_fn_with_state(state.meter(), count_dsp))
        .layer(
            CompressionLayer::new().gzip(true).compress_when(
                SizeAbove::new(COMPRESS_ABOVE).and(NotForContentType::IMAGES).and(NotForContentType::SSE),
            ),
        )
        // The data plane streams without compression: lengths, ranges and digests refer to the bytes as stored.
        .with_state(state.clone())
        .merge(crate::dataplane::routes(state.dataplane.clone()))
        .merge(crate::compute::routes(state.compute.clone()))
        .merge(crate::apps::routes(state.apps.clone()))
        .merge(crate::peers::routes(state.peers.clone()))
        .merge(crate::audit::peer::routes(state.audit.clone()))
}

/// Counts each DSP request by its message type (from the route it matched) and outcome: `accepted` (2xx), `refused`
/// (4xx: the DSP error body says why) or `failed` (5xx).
async fn count_dsp(
    axum::extract::State(meter): axum::extract::State<crate::measure::Meter>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let route = request.extensions().get::<axum::extract::MatchedPath>();
    let message = route.and_then(|route| crate::dsp::message_of_route(request.method(), route.as_str()));
    let response = next.run(request).await;
    if let Some(message) = message {
        let status = response.status();
        let outcome = if status.is_success() {
            "accepted"
        } else if status.is_client_error() {
            "refused"
        } else {
            "failed"
        };
        meter.count("hanse_dsp_messages_received_total", &[("type", message), ("outcome", outcome)]);
    }
    response
}
