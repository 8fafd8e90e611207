//! The public listener: what peers call (DSP endpoints, DID document, `/.well-known/*`, data plane).

pub mod catalog;
pub mod client;
pub mod error;

use axum::Router;
use axum::routing::{get, post};
use tower_http::compression::CompressionLayer;

use crate::server::{Shared, health_routes};

/// The DSP 2025-1 base path.
pub const BASE: &str = "/protocol/2025-1";

/// The public router. Answers are gzip-compressed when the client asks.
pub fn router(state: Shared) -> Router {
    Router::new()
        .merge(health_routes())
        .route("/.well-known/dspace-version", get(catalog::version))
        .route("/protocol/.well-known/dspace-version", get(catalog::version))
        .route(&format!("{BASE}/catalog/request"), post(catalog::request))
        .route(&format!("{BASE}/catalog/datasets/{{id}}"), get(catalog::dataset))
        .layer(CompressionLayer::new().gzip(true))
        .with_state(state)
}
