//! What the routers serve from: the services of one running connector, built and started by the server module.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use crate::catalog::Catalogue;
use crate::config::Config;
use crate::negotiation;
use crate::store::Store;

/// The services of one running connector, as its two routers reach them: each handler takes the service it serves
/// (`state.negotiations`, `state.transfers`, `state.audit`, ...); the services themselves hold only the handles they
/// need and never this.
pub struct Connector {
    pub config: Config,
    pub store: Store,
    pub catalogue: Arc<Catalogue>,
    /// The HTTP client for peers (one per connector: building one parses the system certificate store).
    pub dsp: crate::dsp::client::DspClient,
    /// Our keys and DID document; verification of peers' tokens and credentials.
    pub identity: Arc<crate::identity::Identity>,
    /// Takes the messages each commit queues.
    pub dispatcher: Arc<crate::dispatch::Dispatcher>,
    /// Both roles' negotiations.
    pub negotiations: negotiation::Negotiations,
    /// Both roles' transfer processes.
    pub transfers: crate::transfer::Transfers,
    /// The data plane: its client for backends and push destinations, file digests.
    pub dataplane: Arc<crate::dataplane::DataPlane>,
    /// Compute-to-data: ingested tables in memory and the job workers.
    pub compute: Arc<crate::compute::Compute>,
    /// The app API: apps' tokens at work.
    pub apps: Arc<crate::apps::Apps>,
    /// Where data went, as PROV-O, folded from the audit log.
    pub lineage: Arc<crate::lineage::Lineage>,
    /// The audit log: heads, proofs, receipts, witnessing.
    pub audit: crate::audit::AuditLog,
    /// This connector's measurements (`/metrics`).
    pub metrics: crate::measure::Registry,
    /// The public listener's externally visible base URL (from the config, or the bound address).
    pub public_url: String,
    /// Our Gaia-X self-description, when `[gaiax]` is configured.
    pub self_description: Option<crate::identity::gaiax::SelfDescription>,
    /// The broker role's crawled catalogues, when `[broker] enabled`.
    pub broker: Option<Arc<crate::broker::Broker>>,
    /// The peer network.
    pub peers: crate::peers::Peers,
    /// This replica among the connector's replicas: its leases.
    pub cluster: Arc<crate::cluster::Cluster>,
    pub(crate) ready: AtomicBool,
    pub(crate) started: Instant,
}

impl Connector {
    /// Whether the store is open and the catalogue index loaded.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Where this connector's layers record.
    pub fn meter(&self) -> crate::measure::Meter {
        self.metrics.meter()
    }

    /// Seconds since start.
    pub fn uptime_seconds(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}

/// Shared handle to the connector state.
pub type Shared = Arc<Connector>;
