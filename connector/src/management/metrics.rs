//! `GET /metrics`: the connector's measurements in the Prometheus text format, for the metrics key only
//! (`management.metrics_api_key`, or a named key with role `metrics`, in `Authorization: Bearer` as Prometheus sends
//! it, or in `X-Api-Key`). The operator's key does not open it: a scraper holds a credential that can read numbers and nothing else.
//!
//! What the layers record as it happens is rendered as is; what the store holds (processes by state, the outbox, the
//! audit log's size) and the pools, the broker's peers and the process are read at each scrape. A value that cannot be
//! read now is left out and counted in `hanse_metrics_read_failures_total`, never shown as zero.

use axum::extract::State;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::state::Shared;
use crate::store::{PROCESS_KINDS, ProcessKind};
use hanse_core::negotiation::Role;

use super::{ManagementError, has_key, is_key};

pub fn routes() -> OpenApiRouter<Shared> {
    OpenApiRouter::new().routes(routes!(metrics))
}

/// Whether the request carries the metrics key, or a named key with role `metrics` (in either header).
async fn is_scraper(state: &Shared, headers: &HeaderMap) -> bool {
    let bearer =
        headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if let Some(key) = &state.config.management.metrics_api_key
        && (bearer.is_some_and(|given| is_key(given.as_bytes(), key)) || has_key(headers, key))
    {
        return true;
    }
    let Some(given) = headers.get("x-api-key").map(|v| v.as_bytes()).or(bearer.map(str::as_bytes)) else {
        return false;
    };
    matches!(super::access::principal_of(state, given).await, Ok(Some(p)) if super::access::role_of(&p) == "metrics")
}

/// The connector's measurements in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "Connector", operation_id = "metrics", security(("metrics_key" = [])),
    responses((status = 200, description = "Prometheus text exposition 0.0.4", content_type = "text/plain", body = String),
        (status = 401, description = "The metrics key is missing or wrong", body = [super::openapi::ApiError])))]
async fn metrics(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if !is_scraper(&state, &headers).await {
        return ManagementError::Unauthorized.into_response();
    }
    let scrape = state.metrics.scrape();
    read_now(&state, &scrape.meter()).await;
    let text = state.metrics.render(scrape);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response()
}

/// Sets the gauges whose values live elsewhere: every role and state of both process kinds (zero included, so that a
/// state left empty does not keep its last count), the outbox, the audit log, the catalogue, the store's pools and the
/// broker.
async fn read_now(state: &Shared, meter: &crate::measure::Meter) {
    let failed = || state.meter().count("hanse_metrics_read_failures_total", &[]);
    let now = crate::store::now_millis();
    let mut oldest: Option<i64> = None;
    let mut read_all = true;
    for kind in PROCESS_KINDS {
        let (family, states): (&'static str, Vec<&'static str>) = match kind {
            ProcessKind::Negotiation => {
                ("hanse_negotiations", hanse_core::negotiation::ALL_STATES.iter().map(|s| s.name()).collect())
            }
            ProcessKind::Transfer => {
                ("hanse_transfers", hanse_core::transfer::ALL_STATES.iter().map(|s| s.name()).collect())
            }
        };
        match state.store.processes.census(kind).await {
            Ok(census) => {
                for role in [Role::Provider, Role::Consumer].map(Role::name) {
                    for name in &states {
                        let count = census
                            .states
                            .iter()
                            .find(|(r, s, _)| r == role && s == name)
                            .map_or(0, |(_, _, count)| *count);
                        meter.set(family, &[("role", role), ("state", name)], count as f64);
                    }
                }
                meter.set("hanse_outbox_messages", &[("kind", kind.name())], census.outbox as f64);
                oldest = match (oldest, census.oldest_queued_at) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            Err(error) => {
                tracing::error!(%error, "metrics: cannot count the processes");
                read_all = false;
                failed();
            }
        }
    }
    if read_all {
        let age = oldest.map_or(0.0, |at| (now - at).max(0) as f64 / 1000.0);
        meter.set("hanse_outbox_oldest_age_seconds", &[], age);
    }
    match state.store.audit.audit_frontier().await {
        Ok(frontier) => meter.set("hanse_audit_log_entries", &[], frontier.size as f64),
        Err(error) => {
            tracing::error!(%error, "metrics: cannot read the audit log's size");
            failed();
        }
    }
    meter.counter("hanse_audit_inconsistencies_total", &[]).absolute(state.audit.inconsistencies());
    let (datasets, policies, definitions) = state.catalogue.counts();
    for (kind, count) in [("dataset", datasets), ("policy_definition", policies), ("contract_definition", definitions)]
    {
        meter.set("hanse_catalog_resources", &[("kind", kind)], count as f64);
    }
    meter.set("hanse_catalog_graph_ready", &[], f64::from(u8::from(state.catalogue.graph_ready())));
    let (open, idle) = state.store.connections();
    meter.set("hanse_store_connections", &[("state", "busy")], f64::from(open.saturating_sub(idle)));
    meter.set("hanse_store_connections", &[("state", "idle")], f64::from(idle));
    if let Some(broker) = &state.broker {
        let mut by_status = [("indexed", 0u32), ("failing", 0), ("skipped", 0), ("pending", 0)];
        for peer in broker.status() {
            let status = if peer.skipped.is_some() {
                "skipped"
            } else if peer.error.is_some() {
                "failing"
            } else if peer.last_success > 0 {
                "indexed"
            } else {
                "pending"
            };
            if let Some(entry) = by_status.iter_mut().find(|(name, _)| *name == status) {
                entry.1 += 1;
            }
        }
        for (status, count) in by_status {
            meter.set("hanse_broker_peers", &[("status", status)], f64::from(count));
        }
    }
}
