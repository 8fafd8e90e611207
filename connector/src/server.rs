//! Starting and stopping a connector: the store, the two listeners, readiness, graceful shutdown.
//!
//! The **public** listener serves peers (DSP, DID document, `/.well-known/*`, data plane); the **management** listener
//! serves the operator and requires `X-Api-Key` on every request but the health probes. Both answer
//! `GET /health/live` (the process is up) and `GET /health/ready` (the store is open and the catalogue index loaded).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use axum::Router;
use axum::extract::Request;
use axum::http::HeaderName;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::TraceLayer;

use crate::catalog::{Catalogue, ServiceInfo};
use crate::config::Config;
use crate::dispatch::Retry;
use crate::negotiation;
use crate::store::{Store, StoreError};
use crate::transport::listen;
use crate::{management, protocol};

pub use crate::state::{Connector, Shared};

/// Why a connector did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("store")]
    Store(#[from] StoreError),
    #[error(transparent)]
    Tls(#[from] crate::transport::TlsError),
    #[error(transparent)]
    Keys(#[from] crate::identity::keys::KeyError),
    #[error("cannot listen on {key} = {addr}: {source}")]
    Bind { key: &'static str, addr: SocketAddr, source: std::io::Error },
    #[error("{0}")]
    SelfDescription(String),
    #[error("{0}")]
    Broker(String),
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("{0}")]
    Algorithms(String),
    #[error("{0}")]
    Graph(String),
    #[error("cannot open the storage ({at}): {source}")]
    Storage { at: String, source: std::io::Error },
}

/// A started connector: its addresses and the means to stop it.
pub struct RunningConnector {
    pub state: Shared,
    pub public_addr: SocketAddr,
    pub management_addr: SocketAddr,
    shutdown: watch::Sender<bool>,
    servers: Vec<JoinHandle<std::io::Result<()>>>,
    dispatcher: JoinHandle<()>,
    /// The loop that follows other replicas' catalogue changes: awaited before the store closes under it.
    follower: JoinHandle<()>,
}

impl RunningConnector {
    /// The management listener's base URL.
    pub fn management_url(&self) -> String {
        format!("http://{}", self.management_addr)
    }

    /// The public listener's base URL.
    pub fn public_url(&self) -> String {
        self.state.public_url.clone()
    }

    /// Stops accepting connections, lets in-flight requests finish, then flushes and closes the store.
    pub async fn shutdown(self) {
        let _ = self.shutdown.send(true);
        self.state.dispatcher.wake();
        let _ = self.dispatcher.await;
        for server in self.servers {
            match server.await {
                Ok(Err(error)) => tracing::error!(%error, "listener failed"),
                Err(error) => tracing::error!(%error, "listener task failed"),
                Ok(Ok(())) => {}
            }
        }
        // A catch-up under way ends before the graph and the store close under it.
        let _ = self.follower.await;
        // What this replica held is free for the others at once, not after the leases expire.
        self.state.cluster.release_all().await;
        self.state.catalogue.keep_datasets().await;
        self.state.catalogue.close_graph();
        if let Some(broker) = &self.state.broker {
            broker.close_graph();
        }
        self.state.store.close().await;
        tracing::info!("connector stopped");
    }

    /// Waits until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) {
        wait_for_signal().await;
        tracing::info!("shutdown requested: finishing in-flight requests");
        self.shutdown().await;
    }
}

async fn wait_for_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {},
        _ = terminate => {},
    }
}

/// Opens the store, binds both listeners, starts serving, loads the catalogue index, and reports ready.
pub async fn start(config: Config) -> Result<RunningConnector, StartError> {
    let bind = |key, addr| async move {
        TcpListener::bind(addr).await.map_err(|source| StartError::Bind { key, addr, source })
    };
    let public = bind("public.bind", config.public.bind).await?;
    let management = bind("management.bind", config.management.bind).await?;
    start_on(config, public, management).await
}

/// Like [`start`], on listeners the caller has bound already (tests and the demo bind port 0 first, so that the
/// configuration can name the real ports).
pub async fn start_on(
    config: Config,
    public: TcpListener,
    management: TcpListener,
) -> Result<RunningConnector, StartError> {
    reserve_descriptors(&config)?;
    let metrics = crate::measure::Registry::new();
    let meter = metrics.meter();
    let mut store_options = config.store_options();
    store_options.meter = meter.clone();
    let store = Store::open(&config.database_url(), &store_options).await?;
    let public_addr = public.local_addr().map_err(|source| StartError::Bind {
        key: "public.bind",
        addr: config.public.bind,
        source,
    })?;
    let management_addr = management.local_addr().map_err(|source| StartError::Bind {
        key: "management.bind",
        addr: config.management.bind,
        source,
    })?;
    config.trust.add_contexts()?;
    let tls = crate::transport::acceptor(&config)?;
    let public_url = config.public_url_at(public_addr);

    let service = ServiceInfo {
        participant_id: config.participant.id.clone(),
        publisher_name: config.gaiax.as_ref().map_or_else(|| config.participant.id.clone(), |g| g.legal_name.clone()),
        endpoint_url: format!("{public_url}{}", protocol::BASE),
        file_root: config.file_root(),
    };
    let cluster = Arc::new(crate::cluster::Cluster::new(
        store.leases.clone(),
        config.cluster.replica.as_deref(),
        std::time::Duration::from_secs(config.cluster.lease_seconds),
    ));
    if store.dialect() == crate::store::Dialect::Sqlite {
        cluster.start_alone().await;
    }
    let graphs = match &config.catalog.graph_dir {
        None => crate::catalog::graphs::Graphs::in_memory(),
        Some(dir) => crate::catalog::graphs::Graphs::open(dir, "catalog.graph_dir").map_err(StartError::Graph)?,
    };
    let catalogue = Catalogue::load(
        store.documents.clone(),
        store.governance.clone(),
        store.audit.clone(),
        config.catalog.publication_approval,
        service,
        graphs,
    )
    .await?;
    let retry = Retry {
        attempts: i64::from(config.negotiation.retry_attempts),
        base: std::time::Duration::from_millis(config.negotiation.retry_base_ms),
        max_delay: std::time::Duration::from_millis(config.negotiation.retry_max_delay_ms),
        deadline: std::time::Duration::from_secs(config.negotiation.convergence_deadline_seconds),
    };
    let self_description = match &config.gaiax {
        None => None,
        Some(gaiax) => {
            let described = crate::identity::gaiax::SelfDescription::load(gaiax, &public_url)
                .map_err(StartError::SelfDescription)?;
            // Compiling the shapes takes a moment: off the async threads.
            let _ = tokio::task::spawn_blocking(hanse_self_descriptions::gaiax::shapes).await;
            let violations = described.violations(&catalogue).map_err(StartError::SelfDescription)?;
            if !violations.is_empty() {
                let listed: Vec<String> = violations.iter().map(ToString::to_string).collect();
                return Err(StartError::SelfDescription(format!(
                    "gaiax: the self-description does not conform to the Gaia-X 2511 shapes: {}",
                    listed.join("; ")
                )));
            }
            Some(described)
        }
    };
    let http = crate::transport::client_builder(&config)?
        .timeout(std::time::Duration::from_secs(30))
        .build()
        .map_err(|e| crate::transport::TlsError { key: "trust.ca_file", reason: e.to_string() })?;
    let keys = crate::identity::keys::KeyRing::load(&config.participant.id, &config.participant.key_file)?;
    let identity = Arc::new(crate::identity::Identity::new(
        keys,
        http.clone(),
        store.identity.clone(),
        crate::identity::IdentitySettings {
            public_url: public_url.clone(),
            development: config.participant.development,
            allow_addresses: config.trust.allow_addresses.clone(),
            trusted_issuers: config.trust.issuers.clone(),
            did_cache: std::time::Duration::from_secs(config.trust.did_cache_seconds),
            claims_cache: std::time::Duration::from_secs(config.trust.claims_cache_seconds),
            certificate_chain_url: self_description.as_ref().and_then(|d| d.chain_url()),
            services: did_services(&public_url, self_description.is_some(), config.broker.enabled),
            meter: meter.clone(),
            traced: crate::telemetry::traced,
            shared_types: config.participant.share_credentials.clone(),
            key_file: Some(config.participant.key_file.clone()),
        },
    ));
    identity.refresh_held().await?;
    // Data bodies may be large: no overall timeout, but connecting and every read are bounded.
    let data_http = crate::transport::client_builder(&config)?
        .connect_timeout(std::time::Duration::from_secs(10))
        .read_timeout(std::time::Duration::from_secs(60))
        .build()
        .map_err(|e| crate::transport::TlsError { key: "trust.ca_file", reason: e.to_string() })?;
    let dsp = crate::dsp::client::DspClient::new(http, identity.clone());
    let state_broker = match config.broker.enabled {
        true => Some(Arc::new(
            crate::broker::Broker::open(
                &config.broker,
                crate::broker::Crawler {
                    peers: store.peers.clone(),
                    identity: identity.clone(),
                    dsp: dsp.clone(),
                    stale_after_seconds: config.peers.stale_after_seconds,
                },
            )
            .map_err(StartError::Broker)?,
        )),
        false => None,
    };
    let dispatcher = Arc::new(crate::dispatch::Dispatcher::default());
    let negotiations = negotiation::Negotiations::new(
        store.processes.clone(),
        config.participant.id.clone(),
        catalogue.clone(),
        identity.clone(),
        dispatcher.clone(),
    );
    let transfers = crate::transfer::Transfers::new(
        store.processes.clone(),
        store.audit.clone(),
        catalogue.clone(),
        identity.clone(),
        dispatcher.clone(),
        dsp.clone(),
        negotiations.clone(),
        crate::transfer::TransferSettings {
            participant: config.participant.id.clone(),
            public_url: public_url.clone(),
            token_lifetime_seconds: config.dataplane.token_lifetime_seconds,
        },
    );
    let files = Arc::new(crate::files::Files::open(&config).map_err(|source| StartError::Storage {
        at: if config.storage.url.is_empty() {
            "the table and file folders".into()
        } else {
            config.storage.url.clone()
        },
        source,
    })?);
    tracing::info!(storage = files.location, "storage for tables and File data");
    let dataplane = Arc::new(crate::dataplane::DataPlane::new(
        data_http,
        files.clone(),
        transfers.clone(),
        catalogue.clone(),
        cluster.clone(),
    ));
    let bounds = crate::compute::sandbox::Bounds {
        fuel: config.compute.algorithm_fuel,
        memory_bytes: usize::try_from(config.compute.algorithm_memory_mb << 20).unwrap_or(usize::MAX),
    };
    let mut algorithms = crate::compute::algorithms::Algorithms::load(&config.compute.algorithms, bounds)
        .map_err(StartError::Algorithms)?;
    algorithms.verify(&identity, config.participant.development).await;
    let compute = Arc::new(crate::compute::Compute::new(
        algorithms,
        &config.store.data_dir,
        files,
        &config.compute,
        config.participant.id.clone(),
        dsp.http().clone(),
        store.jobs.clone(),
        dataplane.clone(),
    ));
    let lineage = Arc::new(crate::lineage::Lineage::new(store.audit.clone(), config.participant.id.clone()));
    let apps = Arc::new(crate::apps::Apps::new(
        store.governance.clone(),
        catalogue.clone(),
        compute.clone(),
        dataplane.clone(),
    ));
    let delivery = crate::dispatch::Delivery {
        store: store.processes.clone(),
        identity: identity.clone(),
        http: dsp.http().clone(),
        retry,
        outcomes: Arc::new(transfers.clone()),
    };
    let peers = crate::peers::Peers::new(
        store.peers.clone(),
        identity.clone(),
        dsp.clone(),
        config.peers.clone(),
        catalogue.service.endpoint_url.clone(),
    );
    let state = Arc::new(Connector {
        audit: crate::audit::AuditLog::new(
            store.audit.clone(),
            store.processes.clone(),
            identity.clone(),
            dsp.http().clone(),
            config.audit.witness.clone(),
        ),
        config,
        store,
        catalogue,
        dsp,
        identity,
        dispatcher,
        negotiations,
        transfers,
        dataplane,
        compute,
        apps,
        lineage,
        metrics,
        public_url,
        self_description,
        broker: state_broker,
        peers,
        cluster,
        ready: AtomicBool::new(false),
        started: Instant::now(),
    });
    // Before anything appends: a log found altered is sealed and never extended. The check runs while the connector
    // serves; every append waits for its outcome.
    let hold = state.store.audit.hold_appends();
    let audit = state.audit.clone();
    tokio::spawn(async move {
        let _ = audit.self_check().await;
        drop(hold);
    });
    let (shutdown, signal) = watch::channel(false);
    state.metrics.upkeep_every(std::time::Duration::from_secs(5), signal.clone());
    let dispatcher = crate::dispatch::spawn(state.dispatcher.clone(), delivery, signal.clone());
    // Every replica: its own pushes (each under its lease), keys, held credentials, EDR pulls, and its catalogue views
    // following the other replicas' changes.
    crate::dataplane::spawn_pusher(state.dataplane.clone(), signal.clone());
    spawn_held_refresh(state.identity.clone(), signal.clone());
    spawn_key_watch(state.identity.clone(), state.config.participant.key_file.clone(), signal.clone());
    crate::transfer::edr::spawn(state.transfers.clone(), state.cluster.clone(), signal.clone());
    let follower = spawn_follower(state.clone(), signal.clone());
    let self_check_interval = std::time::Duration::from_secs(state.config.audit.self_check_interval_seconds);
    crate::audit::spawn_self_check(state.audit.clone(), self_check_interval, signal.clone());
    if let Some(broker) = &state.broker {
        crate::broker::spawn(broker.clone(), signal.clone());
    }
    // Once per cluster, on whichever replica holds the loop's lease.
    spawn_leader_loops(&state, &signal);
    let servers = serve_both(&state, public, management, tls, &signal);
    tracing::info!(
        participant = %state.config.participant.id,
        public = %public_addr,
        management = %management_addr,
        store = %state.store.dialect(),
        "listening"
    );

    // The catalogue index is loaded; readiness also needs a round trip to the store.
    state.store.ping().await?;
    state.ready.store(true, Ordering::Release);
    tracing::info!("ready");

    Ok(RunningConnector { state, public_addr, management_addr, shutdown, servers, dispatcher, follower })
}

/// The loops that run once per cluster: each on the replica that holds its lease, moving to another when it dies.
fn spawn_leader_loops(state: &Shared, signal: &watch::Receiver<bool>) {
    let cluster = &state.cluster;
    let converge = crate::converge::Converge {
        negotiations: state.negotiations.clone(),
        transfers: state.transfers.clone(),
        dsp: state.dsp.clone(),
        settings: crate::converge::Settings {
            peer_silence: std::time::Duration::from_secs(state.config.negotiation.peer_silence_seconds),
            deadline: std::time::Duration::from_secs(state.config.negotiation.convergence_deadline_seconds),
        },
    };
    cluster.leader("converge", signal.clone(), move |stop| crate::converge::spawn(converge.clone(), stop));
    let audit = state.audit.clone();
    cluster.leader("receipts", signal.clone(), move |stop| crate::audit::peer::send_receipts(audit.clone(), stop));
    let (audit, every) =
        (state.audit.clone(), std::time::Duration::from_secs(state.config.audit.witness_interval_seconds));
    cluster.leader("witness", signal.clone(), move |stop| crate::audit::peer::witness(audit.clone(), every, stop));
    let peers = state.peers.clone();
    cluster.leader("peers", signal.clone(), move |stop| crate::peers::spawn(peers.clone(), stop));
    let shared = state.clone();
    cluster.leader("sweeps", signal.clone(), move |stop| {
        crate::management::idempotency::spawn_sweeper(shared.clone(), stop.clone());
        crate::identity::spawn_replay_cache_sweeper(shared.store.identity.clone(), stop.clone());
        spawn_recovery(shared.clone(), stop);
    });
}

/// Work a dead replica left: pushes it did not finish and jobs it was running, once their leases expired. Every lease
/// period, and at once when this replica takes the loop over.
fn spawn_recovery(state: Shared, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            state.transfers.resume_pushes().await;
            crate::compute::orchestrate::fail_interrupted(&state.compute).await;
            state.cluster.sweep().await;
            tokio::select! {
                _ = tokio::time::sleep(state.cluster.ttl) => {}
                _ = stop.changed() => return,
            }
        }
    });
}

/// Keeps this replica's catalogue views current with what other replicas write (every `cluster.follow_ms`).
fn spawn_follower(state: Shared, mut stop: watch::Receiver<bool>) -> JoinHandle<()> {
    let period = std::time::Duration::from_millis(state.config.cluster.follow_ms);
    tokio::spawn(async move {
        loop {
            // A catch-up waits for the write lock, which a graph build holds for as long as it takes: a stop does not
            // wait for it (what is not applied now is read again at the next start).
            tokio::select! {
                caught_up = state.catalogue.catch_up() => {
                    if let Err(error) = caught_up {
                        tracing::warn!(%error, "cannot follow the catalogue's changes; trying again");
                    }
                }
                _ = stop.changed() => return,
            }
            tokio::select! {
                _ = tokio::time::sleep(period) => {}
                _ = stop.changed() => return,
            }
        }
    })
}

/// Watches the key files (`participant.key_file` and its `retired/` folder) every two seconds until shutdown and
/// reloads the keys when they change: a `hanse keys rotate` takes effect without a restart.
fn spawn_key_watch(
    identity: Arc<crate::identity::Identity>,
    key_file: std::path::PathBuf,
    mut stop: watch::Receiver<bool>,
) {
    let stamp = move || {
        let modified = |path: &std::path::Path| std::fs::metadata(path).and_then(|m| m.modified()).ok();
        let retired = key_file.parent().map(|folder| folder.join("retired"));
        (modified(&key_file), retired.as_deref().and_then(modified))
    };
    tokio::spawn(async move {
        let mut seen = stamp();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(2)) => {
                    let now = stamp();
                    if now != seen {
                        match identity.reload_keys() {
                            Ok(_) => seen = now,
                            // A rotation half done (the new file not yet in place): read again next time.
                            Err(error) => tracing::warn!(%error, "cannot reload the signing keys"),
                        }
                    }
                }
                _ = stop.changed() => return,
            }
        }
    });
}

/// Reads the held credentials again every minute until shutdown, so that credentials imported from the command line
/// while the connector runs are granted too (imports through the APIs take effect at once).
fn spawn_held_refresh(identity: Arc<crate::identity::Identity>, mut stop: watch::Receiver<bool>) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(std::time::Duration::from_secs(60)) => {
                    if let Err(error) = identity.refresh_held().await {
                        tracing::warn!(%error, "cannot read the held credentials");
                    }
                }
                _ = stop.changed() => return,
            }
        }
    });
}

/// The DID document's entries for this connector's own services: the audit log, the Gaia-X self-description (when
/// one is served), the peer list, and a broker's federation catalogue and search.
fn did_services(public_url: &str, self_description: bool, broker: bool) -> Vec<(String, String)> {
    let mut services = vec![(crate::audit::peer::SERVICE.to_owned(), crate::audit::peer::service_url(public_url))];
    if self_description {
        let gaiax = crate::identity::gaiax::CREDENTIALS_PATH;
        services.push((crate::identity::gaiax::SERVICE.to_owned(), format!("{public_url}{gaiax}")));
    }
    services.push((crate::peers::SERVICE.to_owned(), format!("{public_url}{}", crate::peers::LIST_PATH)));
    if broker {
        use crate::protocol::broker::{CATALOG_PATH, CATALOG_SERVICE, SEARCH_PATH, SEARCH_SERVICE};
        services.push((CATALOG_SERVICE.to_owned(), format!("{public_url}{CATALOG_PATH}")));
        services.push((SEARCH_SERVICE.to_owned(), format!("{public_url}{SEARCH_PATH}")));
    }
    services
}

/// Starts both listeners with their limits (`[http]`): the public one with its body limit and per-address rate
/// limit, the management one with its own body limit and connection cap.
fn serve_both(
    state: &Shared,
    public: TcpListener,
    management: TcpListener,
    tls: Option<Arc<openssl::ssl::SslAcceptor>>,
    signal: &watch::Receiver<bool>,
) -> Vec<JoinHandle<std::io::Result<()>>> {
    let http = &state.config.http;
    let pause = std::time::Duration::from_secs(http.body_timeout_seconds);
    let mut public_router = listen::bodies(
        protocol::router(state.clone()),
        http.public_max_body_kb * 1024,
        "http.public_max_body_kb",
        pause,
        listen::plain_refusal,
    );
    if let Some(limit) =
        listen::RateLimit::new(http.public_requests_per_second, http.public_burst, "http.public_requests_per_second")
    {
        limit.clone().sweep_every_minute(signal.clone());
        public_router = public_router.layer(axum::middleware::from_fn_with_state(limit, listen::rate_limited));
    }
    let api = management::router(state.clone()).0;
    let management_router =
        if state.config.console.enabled { api.clone().merge(crate::console::router(state.clone(), api)) } else { api };
    let management_router = listen::bodies(
        management_router,
        http.management_max_body_kb * 1024,
        "http.management_max_body_kb",
        pause,
        crate::error::too_large,
    );
    vec![
        listen::serve(
            public,
            with_common_layers(public_router, "public", state.meter()),
            tls,
            listen::Limits::public(http),
            signal.clone(),
        ),
        listen::serve(
            management,
            with_common_layers(management_router, "management", state.meter()),
            None,
            listen::Limits::management(http),
            signal.clone(),
        ),
    ]
}

/// Raises the process's open-file limit to its hard limit when the listeners' connection caps, the store's pool and
/// a reserve for files and outgoing connections need more than the soft limit; refuses to start when even the hard
/// limit is too low (a flood on the public listener must never leave the management listener without a descriptor).
#[cfg(unix)]
fn reserve_descriptors(config: &Config) -> Result<(), StartError> {
    const RESERVE: u64 = 256;
    let needed = (config.http.public_max_connections + config.http.management_max_connections) as u64
        + u64::from(config.store.max_connections)
        + RESERVE;
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 || limit.rlim_cur >= needed {
        return Ok(());
    }
    if limit.rlim_max < needed {
        return Err(StartError::Config(crate::config::ConfigError::Key {
            key: "http.public_max_connections".into(),
            message: format!(
                "the listeners' caps, the store's connections and a reserve of {RESERVE} need {needed} open files; \
                 the process may open {} (raise `ulimit -n` or lower the caps)",
                limit.rlim_max
            ),
        }));
    }
    let raised = libc::rlimit { rlim_cur: needed.max(limit.rlim_cur), rlim_max: limit.rlim_max };
    // SAFETY: as above.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
        tracing::info!(open_files = needed, "raised the open-file limit for the listeners' caps");
    }
    Ok(())
}

#[cfg(not(unix))]
fn reserve_descriptors(_: &Config) -> Result<(), StartError> {
    Ok(())
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Request ids (taken from `X-Request-Id` or generated, and echoed back), one tracing span per request, and the
/// request's measurement by route template.
fn with_common_layers(router: Router, listener: &'static str, meter: crate::measure::Meter) -> Router {
    router
        .layer(axum::middleware::from_fn_with_state((meter, listener), crate::measure::http))
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(TraceLayer::new_for_http().make_span_with(move |request: &Request| {
            let request_id = request.headers().get(&REQUEST_ID).and_then(|v| v.to_str().ok()).unwrap_or("-");
            let span = tracing::info_span!("request", listener, method = %request.method(), path = %request.uri().path(), request_id);
            crate::telemetry::adopt(&span, request.headers());
            span
        }))
        .layer(SetRequestIdLayer::new(REQUEST_ID, MakeRequestUuid))
}
