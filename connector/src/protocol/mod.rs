//! The public listener: what peers call (DSP endpoints, DID document, `/.well-known/*`, data plane).

use axum::Router;

use crate::server::{Shared, health_routes};

/// The public router.
pub fn router(state: Shared) -> Router {
    Router::new().merge(health_routes()).with_state(state)
}
