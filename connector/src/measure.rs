//! The connector's measurements in the Prometheus text format (decision 0027): one registry per connector, the
//! families it serves with their help texts, and the HTTP measurement every request passes through.
//!
//! Every layer records through a [`Meter`] taken from the registry ([`Registry::meter`]); values that live in the store
//! (processes by state, the outbox, the audit log's size) are read when `/metrics` is scraped. Label values come from
//! bounded sets — route templates, states, outcomes, message types — never ids.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use metrics::{Recorder, SharedString, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle, PrometheusRecorder};

pub use hanse_core::meter::Meter;

/// What a family is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// Every family the connector itself records, with its kind, unit and help text (the process's own families come
/// from `metrics-process`: CPU seconds, resident and virtual memory, open and maximum file descriptors, threads).
pub const FAMILIES: &[(&str, Kind, &str)] = &[
    (
        "hanse_http_requests_total",
        Kind::Counter,
        "HTTP requests answered, by listener, method, route template and status.",
    ),
    (
        "hanse_http_request_duration_seconds",
        Kind::Histogram,
        "Time to answer an HTTP request, by listener, method and route template.",
    ),
    (
        "hanse_dsp_messages_received_total",
        Kind::Counter,
        "DSP requests from peers, by message type and outcome (accepted, refused, failed).",
    ),
    (
        "hanse_dsp_messages_sent_total",
        Kind::Counter,
        "DSP messages delivered to peers from the outbox, by message type and outcome.",
    ),
    ("hanse_negotiations", Kind::Gauge, "Contract negotiations, by role and state."),
    ("hanse_transfers", Kind::Gauge, "Transfer processes, by role and state."),
    (
        "hanse_negotiation_transitions_total",
        Kind::Counter,
        "Committed negotiation state changes, by role, state left and state reached.",
    ),
    (
        "hanse_transfer_transitions_total",
        Kind::Counter,
        "Committed transfer state changes, by role, state left and state reached.",
    ),
    ("hanse_outbox_messages", Kind::Gauge, "DSP messages waiting to be delivered, by process kind."),
    (
        "hanse_outbox_oldest_age_seconds",
        Kind::Gauge,
        "Age of the longest-waiting DSP message in the outbox (0 when empty).",
    ),
    ("hanse_outbox_retries_total", Kind::Counter, "Deliveries that failed and were scheduled again, by process kind."),
    (
        "hanse_app_requests_total",
        Kind::Counter,
        "App API requests, by action (read, query, compute, file) and outcome (served, refused, limited, unauthorized, invalid, failed).",
    ),
    ("hanse_app_rows_total", Kind::Counter, "Table rows sent to apps, by action."),
    ("hanse_app_bytes_total", Kind::Counter, "Bytes sent to apps, by action."),
    (
        "hanse_reconciliations_total",
        Kind::Counter,
        "Processes a silent peer left behind that convergence settled, by process kind and outcome.",
    ),
    (
        "hanse_policy_decisions_total",
        Kind::Counter,
        "ODRL decisions, by decision point and outcome (permitted, denied).",
    ),
    ("hanse_token_verifications_total", Kind::Counter, "Self-issued tokens of incoming requests checked, by outcome."),
    ("hanse_credential_verifications_total", Kind::Counter, "Verifiable credentials checked, by outcome."),
    (
        "hanse_did_resolutions_total",
        Kind::Counter,
        "DID documents resolved, by source (cache, network, failure_cache) and outcome.",
    ),
    (
        "hanse_did_resolution_duration_seconds",
        Kind::Histogram,
        "Time to fetch a DID document from the network, by outcome.",
    ),
    (
        "hanse_dataplane_bytes_total",
        Kind::Counter,
        "Data bytes moved by the data plane, by direction (served, pushed).",
    ),
    ("hanse_dataplane_active_transfers", Kind::Gauge, "Data plane streams under way (pulls served and pushes)."),
    ("hanse_compute_jobs_total", Kind::Counter, "Compute jobs finished, by template and outcome."),
    ("hanse_compute_job_duration_seconds", Kind::Histogram, "Time a compute job ran, by template."),
    ("hanse_audit_log_entries", Kind::Gauge, "Entries in this connector's audit log."),
    (
        "hanse_audit_inconsistencies_total",
        Kind::Counter,
        "Peers' tree heads found inconsistent with what they showed before.",
    ),
    (
        "hanse_audit_intact",
        Kind::Gauge,
        "1 when the last self-check found the stored audit log intact; 0 when it was altered (the log is sealed).",
    ),
    ("hanse_audit_self_checks_total", Kind::Counter, "Self-checks of the stored audit log, by outcome."),
    ("hanse_audit_self_check_duration_seconds", Kind::Histogram, "Time a self-check of the stored audit log took."),
    (
        "hanse_catalog_resources",
        Kind::Gauge,
        "Resources in the catalogue's views, by kind (dataset, policy_definition, contract_definition).",
    ),
    (
        "hanse_catalog_graph_ready",
        Kind::Gauge,
        "1 once the catalogue's RDF graph holds every dataset (SPARQL answers); 0 while it is built after a start.",
    ),
    ("hanse_store_connections", Kind::Gauge, "Database connections of the store's pools, by state (busy, idle)."),
    (
        "hanse_store_write_batch_size",
        Kind::Histogram,
        "Writes committed together in one transaction by the store's writer.",
    ),
    (
        "hanse_store_commit_duration_seconds",
        Kind::Histogram,
        "Time from a write batch's first statement to the end of its commit.",
    ),
    ("hanse_broker_crawls_total", Kind::Counter, "Broker crawls of peers' catalogues, by outcome."),
    ("hanse_broker_peers", Kind::Gauge, "Peers in the broker's index, by the outcome of their last crawl."),
    ("hanse_metrics_read_failures_total", Kind::Counter, "Values a scrape could not read (the store did not answer)."),
];

/// Counters shown from zero before their first event, so that dashboards and alerts see them (`rate()` of an
/// absent series is no data, not zero).
const FROM_ZERO: &[(&str, &[(&str, &str)])] = &[
    ("hanse_metrics_read_failures_total", &[]),
    ("hanse_outbox_retries_total", &[("kind", "negotiation")]),
    ("hanse_outbox_retries_total", &[("kind", "transfer")]),
    ("hanse_reconciliations_total", &[("kind", "negotiation"), ("outcome", "deadline")]),
    ("hanse_reconciliations_total", &[("kind", "transfer"), ("outcome", "deadline")]),
    ("hanse_credential_verifications_total", &[("outcome", "verified")]),
    ("hanse_dataplane_bytes_total", &[("direction", "served")]),
    ("hanse_app_requests_total", &[("action", "read"), ("outcome", "served")]),
    ("hanse_app_rows_total", &[("action", "read")]),
    ("hanse_app_bytes_total", &[("action", "read")]),
    ("hanse_dataplane_bytes_total", &[("direction", "pushed")]),
];

/// Latency buckets (seconds): from a cached answer to a slow peer.
const SECONDS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Compute jobs run longer.
const JOB_SECONDS: &[f64] = &[0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0];
/// Writes per batch.
const BATCH: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0];

/// One connector's registry.
pub struct Registry {
    recorder: Arc<PrometheusRecorder>,
    handle: PrometheusHandle,
    process: metrics_process::Collector,
}

impl Default for Registry {
    fn default() -> Self {
        Registry::new()
    }
}

/// A recorder with the connector's buckets and every family described.
fn recorder() -> PrometheusRecorder {
    let buckets = |builder: PrometheusBuilder, name: &str, values: &[f64]| {
        builder.set_buckets_for_metric(Matcher::Full(name.to_owned()), values).expect("bucket lists are not empty")
    };
    let mut builder = PrometheusBuilder::new().set_buckets(SECONDS).expect("bucket lists are not empty");
    builder = buckets(builder, "hanse_compute_job_duration_seconds", JOB_SECONDS);
    builder = buckets(builder, "hanse_store_write_batch_size", BATCH);
    let recorder = builder.build_recorder();
    for (name, kind, help) in FAMILIES {
        let unit = name.ends_with("_seconds").then_some(Unit::Seconds);
        let help = SharedString::const_str(help);
        match kind {
            Kind::Counter => recorder.describe_counter((*name).into(), unit, help),
            Kind::Gauge => recorder.describe_gauge((*name).into(), unit, help),
            Kind::Histogram => recorder.describe_histogram((*name).into(), unit, help),
        }
    }
    recorder
}

/// The values one scrape reads from elsewhere (the store, the pools, the process), in a registry of their own that
/// lives for that scrape only: a value that cannot be read now is absent, never its last reading.
pub struct Scrape {
    recorder: Arc<PrometheusRecorder>,
}

impl Scrape {
    /// Where this scrape's values are set.
    pub fn meter(&self) -> Meter {
        Meter::new(self.recorder.clone())
    }
}

impl Registry {
    pub fn new() -> Registry {
        let recorder = Arc::new(recorder());
        let handle = recorder.handle();
        let registry = Registry { recorder, handle, process: metrics_process::Collector::default() };
        let meter = registry.meter();
        for (name, labels) in FROM_ZERO {
            meter.counter(name, labels).increment(0);
        }
        meter.gauge("hanse_dataplane_active_transfers", &[]).set(0.0);
        registry
    }

    /// Where the connector's layers record.
    pub fn meter(&self) -> Meter {
        Meter::new(self.recorder.clone())
    }

    /// Folds the histograms' recorded samples into their buckets every `period` until `stop` turns true. The
    /// exporter keeps each sample until then: without this, a connector nobody scrapes would hold every latency it
    /// ever measured.
    pub fn upkeep_every(&self, period: std::time::Duration, mut stop: tokio::sync::watch::Receiver<bool>) {
        let handle = self.handle.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tokio::select! {
                    _ = tick.tick() => handle.run_upkeep(),
                    _ = stop.changed() => {
                        if *stop.borrow() {
                            return;
                        }
                    }
                }
            }
        });
    }

    /// A scrape: fill its meter, then [`render`](Self::render) it.
    pub fn scrape(&self) -> Scrape {
        let scrape = Scrape { recorder: Arc::new(recorder()) };
        scrape.meter().scope(|| {
            self.process.describe();
            self.process.collect();
        });
        scrape
    }

    /// Every family in the Prometheus text format: what the layers recorded, then what `scrape` read.
    pub fn render(&self, scrape: Scrape) -> String {
        self.handle.run_upkeep();
        let mut text = self.handle.render();
        text.push_str(&scrape.recorder.handle().render());
        text
    }
}

/// Counts and times every request of `listener` by its route template (`unmatched` for a path no route serves, so
/// that scanners cannot grow the label set).
pub async fn http(State((meter, listener)): State<(Meter, &'static str)>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = method_label(request.method());
    let route = request.extensions().get::<MatchedPath>().cloned();
    let response = next.run(request).await;
    let route = route.as_ref().map_or("unmatched", MatchedPath::as_str);
    let status = response.status();
    meter.count(
        "hanse_http_requests_total",
        &[("listener", listener), ("method", method), ("route", route), ("status", status.as_str())],
    );
    meter.observe(
        "hanse_http_request_duration_seconds",
        &[("listener", listener), ("method", method), ("route", route)],
        started.elapsed().as_secs_f64(),
    );
    response
}

/// The method as a label: the standard ones by name, anything else as `other`.
fn method_label(method: &axum::http::Method) -> &'static str {
    use axum::http::Method;
    match *method {
        Method::GET => "GET",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::DELETE => "DELETE",
        Method::HEAD => "HEAD",
        Method::OPTIONS => "OPTIONS",
        Method::PATCH => "PATCH",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_described_once_and_named_by_the_conventions() {
        let mut names: Vec<&str> = FAMILIES.iter().map(|(name, _, _)| *name).collect();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len(), "a family is listed twice");
        for (name, kind, _) in FAMILIES {
            assert!(name.starts_with("hanse_"), "{name}");
            assert_eq!(
                *kind == Kind::Counter,
                name.ends_with("_total"),
                "{name}: counters and only counters end in _total"
            );
        }
        let registry = Registry::new();
        registry.meter().count("hanse_http_requests_total", &[("listener", "public"), ("status", "200")]);
        let scrape = registry.scrape();
        scrape.meter().set("hanse_audit_log_entries", &[], 7.0);
        let text = registry.render(scrape);
        assert!(text.contains("hanse_audit_log_entries 7"), "{text}");
        assert!(text.contains("hanse_metrics_read_failures_total 0"), "{text}");
        let next = registry.render(registry.scrape());
        assert!(!next.contains("hanse_audit_log_entries"), "a value not read again is absent: {next}");
        assert!(text.contains("# TYPE hanse_http_requests_total counter"), "{text}");
        assert!(text.contains("hanse_http_requests_total{listener=\"public\",status=\"200\"} 1"), "{text}");
        assert!(text.contains("process_resident_memory_bytes"), "{text}");
    }

    /// The series `text` names: `hanse_*` and `process_*` words, a histogram's `_bucket`, `_count` and `_sum` read as
    /// its family.
    fn series_named(text: &str) -> std::collections::BTreeSet<String> {
        let mut named = std::collections::BTreeSet::new();
        for prefix in ["hanse_", "process_"] {
            for (at, _) in text.match_indices(prefix) {
                if text[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
                    continue;
                }
                let word: String = text[at..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
                    .collect();
                let family = ["_bucket", "_count", "_sum"]
                    .iter()
                    .find_map(|suffix| {
                        word.strip_suffix(suffix).filter(|f| f.ends_with("_seconds") || f.ends_with("_size"))
                    })
                    .unwrap_or(&word);
                named.insert(family.to_owned());
            }
        }
        named
    }

    #[test]
    fn the_dashboard_and_the_alert_rules_name_only_families_the_connector_serves() {
        let registry = Registry::new();
        let rendered = registry.render(registry.scrape());
        let served: std::collections::BTreeSet<String> = FAMILIES
            .iter()
            .map(|(name, _, _)| (*name).to_owned())
            .chain(
                rendered
                    .lines()
                    .filter_map(|l| l.strip_prefix("# TYPE "))
                    .map(|l| l.split(' ').next().unwrap().to_owned()),
            )
            .collect();
        let deploy = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/observability");
        for file in ["grafana-dashboard.json", "alerts.yaml"] {
            let text = std::fs::read_to_string(deploy.join(file)).unwrap();
            let named = series_named(&text);
            assert!(named.len() >= 10, "{file} names {named:?}");
            let unknown: Vec<&String> = named.iter().filter(|n| !served.contains(*n)).collect();
            assert!(unknown.is_empty(), "{file} names series the connector does not serve: {unknown:?}");
        }
        let dashboard: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(deploy.join("grafana-dashboard.json")).unwrap()).unwrap();
        let panels = dashboard["panels"].as_array().unwrap();
        let covered: std::collections::BTreeSet<String> =
            panels.iter().flat_map(|p| series_named(&p["targets"].to_string())).collect();
        let missing: Vec<&str> = FAMILIES.iter().map(|(n, _, _)| *n).filter(|n| !covered.contains(*n)).collect();
        assert!(missing.is_empty(), "families without a panel: {missing:?}");
    }
}
