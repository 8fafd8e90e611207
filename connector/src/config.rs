//! Connector configuration: a TOML file (`hanse.toml`, written by `hanse init`) with every key overridable by an
//! environment variable `HANSE_<SECTION>_<KEY>` (e.g. `HANSE_MANAGEMENT_API_KEY`). Unknown keys and bad values are
//! rejected at start-up with the key's name. Relative paths are resolved against the configuration file's folder.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use figment::Figment;
use figment::providers::{Env, Format, Toml};
use serde::{Deserialize, Serialize};

/// Environment variables with the `HANSE_` prefix that are not configuration keys.
const NOT_CONFIG_ENV: &[&str] = &["CONFIG"];
/// Environment variables of the test suite and benchmarks (`HANSE_TEST_*`, `HANSE_BENCH_*`) are never configuration.
const NOT_CONFIG_PREFIXES: &[&str] = &["TEST_", "BENCH_"];
/// The sections of `hanse.toml`, as `HANSE_<SECTION>_<KEY>` names them.
const SECTIONS: &[&str] = &[
    "participant",
    "public",
    "management",
    "store",
    "log",
    "traces",
    "dataplane",
    "catalog",
    "negotiation",
    "trust",
    "audit",
    "compute",
    "peers",
    "broker",
    "sparql",
    "http",
    "gaiax",
    "console",
    "cluster",
    "storage",
];

/// What a `HANSE_*` environment variable (its name without the prefix) is to the configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
enum EnvUse {
    /// `<SECTION>_<KEY>`: a configuration override (an unknown key in a known section stays an error naming it).
    Config,
    /// Its first word is a near miss of a section name: a typo to report, with the section meant.
    Typo { section: &'static str },
    /// Hanse's own but not configuration (`HANSE_CONFIG`, the suite's `HANSE_TEST_*` and `HANSE_BENCH_*`).
    Own,
    /// Another program's (`HANSE_HOME`, `HANSE_BIN`): left alone, with a warning.
    Foreign,
}

fn env_use(name: &str) -> EnvUse {
    let upper = name.to_ascii_uppercase();
    if NOT_CONFIG_ENV.contains(&upper.as_str()) || NOT_CONFIG_PREFIXES.iter().any(|p| upper.starts_with(p)) {
        return EnvUse::Own;
    }
    let first = upper.split('_').next().unwrap_or_default().to_ascii_lowercase();
    if SECTIONS.contains(&first.as_str()) {
        return EnvUse::Config;
    }
    // A near miss is at most two edits away from a section (one for short names), and not much shorter or longer.
    let near = SECTIONS.iter().copied().find(|section| {
        let allowed = if section.len() <= 4 { 1 } else { 2 };
        first.len() >= 3 && edit_distance(&first, section) <= allowed
    });
    match near {
        Some(section) => EnvUse::Typo { section },
        None => EnvUse::Foreign,
    }
}

/// Levenshtein distance between two short ASCII words.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<u8> = b.bytes().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.bytes().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, &cb) in b.iter().enumerate() {
            let substitution = previous + usize::from(ca != cb);
            previous = row[j + 1];
            row[j + 1] = substitution.min(row[j] + 1).min(previous + 1);
        }
    }
    row[b.len()]
}

/// Checks the `HANSE_*` variables of `vars`: a typo of a section name is an error naming the variable and the section
/// meant; the names of variables that are not configuration are answered, to be told once and otherwise ignored.
fn check_env(vars: impl Iterator<Item = (String, String)>) -> Result<Vec<String>, ConfigError> {
    let mut foreign = Vec::new();
    for (name, _) in vars {
        let Some(rest) = name.strip_prefix("HANSE_") else { continue };
        match env_use(rest) {
            EnvUse::Config => {}
            EnvUse::Typo { section } => {
                let meant = rest.split_once('_').map_or(String::new(), |(_, key)| format!("_{key}"));
                return Err(ConfigError::Key {
                    key: name.clone(),
                    message: format!(
                        "no configuration section `{}`; did you mean HANSE_{}{meant}?",
                        rest.split('_').next().unwrap_or_default().to_ascii_lowercase(),
                        section.to_ascii_uppercase()
                    ),
                });
            }
            EnvUse::Own => {}
            EnvUse::Foreign => foreign.push(name),
        }
    }
    foreign.sort();
    Ok(foreign)
}

/// The whole configuration.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub participant: ParticipantConfig,
    #[serde(default)]
    pub public: PublicConfig,
    pub management: ManagementConfig,
    #[serde(default)]
    pub store: StoreConfig,
    #[serde(default)]
    pub log: LogConfig,
    #[serde(default)]
    pub traces: TracesConfig,
    #[serde(default)]
    pub dataplane: DataplaneConfig,
    #[serde(default)]
    pub catalog: CatalogConfig,
    #[serde(default)]
    pub negotiation: NegotiationConfig,
    #[serde(default)]
    pub trust: TrustConfig,
    #[serde(default)]
    pub audit: AuditConfig,
    #[serde(default)]
    pub compute: ComputeConfig,
    #[serde(default)]
    pub peers: PeersConfig,
    #[serde(default)]
    pub broker: BrokerConfig,
    #[serde(default)]
    pub sparql: SparqlConfig,
    #[serde(default)]
    pub http: HttpConfig,
    #[serde(default)]
    pub console: ConsoleConfig,
    #[serde(default)]
    pub cluster: ClusterConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    /// Gaia-X self-descriptions; none are published without this section.
    #[serde(default)]
    pub gaiax: Option<GaiaxConfig>,
}

/// What the participant says about itself in its Gaia-X credentials (Trust Framework 2511).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct GaiaxConfig {
    /// The registered legal name.
    pub legal_name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The SHA-256 of the Gaia-X terms and conditions this participant accepts as an issuer (`gx:Issuer`).
    pub terms_and_conditions: String,
    pub headquarters: AddressConfig,
    /// The legal address, when it differs from the headquarters.
    #[serde(default)]
    pub legal_address: Option<AddressConfig>,
    #[serde(default)]
    pub registration: RegistrationConfig,
    /// Registration number credentials issued by a notary (VC-JWT files): served instead of self-issued ones.
    #[serde(default)]
    pub registration_credentials: Vec<PathBuf>,
    pub service: ServiceConfig,
    /// The licence of published datasets that name none themselves (an SPDX id or a URL).
    #[serde(default = "default_license")]
    pub default_license: String,
    /// How long a signed self-description is valid (days).
    #[serde(default = "default_validity_days")]
    pub validity_days: u32,
    /// The participant key's certificate chain (PEM, leaf first), served for the credentials' `x5u`.
    #[serde(default)]
    pub certificate_chain: Option<PathBuf>,
}

fn default_license() -> String {
    "https://w3id.org/hanse/license/by-agreement".into()
}

fn default_validity_days() -> u32 {
    90
}

/// A postal address of the participant.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AddressConfig {
    /// ISO 3166-1 alpha-2 country code (`DE`).
    pub country_code: String,
    /// NUTS-2 region code (`DE30`).
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub locality: Option<String>,
    #[serde(default)]
    pub postal_code: Option<String>,
    #[serde(default)]
    pub street_address: Option<String>,
}

/// The participant's registration numbers (at least one, unless a notary's credential is imported).
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    #[serde(default)]
    pub vat_id: Option<String>,
    #[serde(default)]
    pub lei_code: Option<String>,
    /// The ISO 3166-2 subdivision of the LEI record's legal address (`DE-BE`).
    #[serde(default)]
    pub lei_subdivision: Option<String>,
    #[serde(default)]
    pub eori: Option<String>,
    #[serde(default)]
    pub euid: Option<String>,
    #[serde(default)]
    pub tax_id: Option<String>,
    #[serde(default)]
    pub local: Option<String>,
}

/// The connector as a Gaia-X service offering.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceConfig {
    #[serde(default = "default_service_name")]
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Where the service's terms and conditions are published, and the SHA-256 of their text.
    pub terms_url: String,
    pub terms_hash: String,
    #[serde(default)]
    pub keywords: Vec<String>,
    /// How customers request an export of their data: `API`, `email`, `webform`, ...
    #[serde(default = "default_export_request")]
    pub export_request_type: String,
    /// `digital` or `physical`.
    #[serde(default = "default_export_access")]
    pub export_access_type: String,
    /// The media type of exports.
    #[serde(default = "default_export_format")]
    pub export_format_type: String,
}

fn default_service_name() -> String {
    "Hanse dataspace connector".into()
}

fn default_export_request() -> String {
    "API".into()
}

fn default_export_access() -> String {
    "digital".into()
}

fn default_export_format() -> String {
    "application/json".into()
}

/// What one SPARQL query may take, on every SPARQL endpoint (the management listener's, and a broker's on both
/// listeners, whose time limit is `broker.sparql_timeout_seconds`). A query past a limit is refused with a 400
/// naming it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct SparqlConfig {
    /// The longest query text (bytes).
    pub max_query_bytes: usize,
    /// How deep brackets may nest (`(`, `{`, `[`).
    pub max_depth: usize,
    /// The most results (solutions or triples) an answer holds.
    pub max_rows: usize,
    /// The memory a query may take while it runs (MiB).
    pub max_memory_mb: usize,
    /// A query running longer is cancelled (seconds).
    pub timeout_seconds: u64,
}

impl Default for SparqlConfig {
    fn default() -> Self {
        SparqlConfig {
            max_query_bytes: 65_536,
            max_depth: 64,
            max_rows: 100_000,
            max_memory_mb: 256,
            timeout_seconds: 30,
        }
    }
}

/// What the two listeners take from a client: how slow, how many, how large and how often. Peers reach the public
/// listener; its limits hold whatever they send. The management listener has its own connection cap, so that a
/// flood on the public listener never keeps the operator out.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// A request's line and headers must arrive within this time (seconds); a kept-alive HTTP/1 connection that
    /// sends no new request for as long is closed, and so is a TLS handshake that takes longer.
    pub header_timeout_seconds: u64,
    /// The longest pause while a request body arrives (seconds).
    pub body_timeout_seconds: u64,
    /// Connections the public listener serves at once; more wait to be accepted.
    pub public_max_connections: usize,
    /// Connections the management listener serves at once.
    pub management_max_connections: usize,
    /// The largest request body on the public listener: DSP messages, presentation queries, compute rounds (KiB).
    /// The data plane streams and is not bound by it.
    pub public_max_body_kb: usize,
    /// The largest management request body (KiB); table uploads have `compute.max_upload_mb`.
    pub management_max_body_kb: usize,
    /// Requests per second one requester (an IP address) may make to the public listener, sustained; more are
    /// answered 429 with `Retry-After`. 0 turns the limit off.
    pub public_requests_per_second: u32,
    /// How many requests above the sustained rate one requester may make at once.
    pub public_burst: u32,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            header_timeout_seconds: 10,
            body_timeout_seconds: 30,
            public_max_connections: 512,
            management_max_connections: 64,
            public_max_body_kb: 1024,
            management_max_body_kb: 4096,
            public_requests_per_second: 500,
            public_burst: 1000,
        }
    }
}

/// Compute-to-data: what this connector lets jobs release, and what they may cost it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct ComputeConfig {
    /// The smallest cell count k ever released, whatever an agreement or a job asks (the floor).
    pub min_cell_count: u64,
    /// The largest share of a cell's absolute total one record may contribute to a released sum.
    pub dominance: f64,
    /// The most cells a grouping or cross-tabulation may have.
    pub max_cells: usize,
    /// Jobs one agreement may run in all (the budget), whatever its policy says.
    pub max_jobs_per_agreement: u64,
    /// Rounds one model job may take (Newton or federated averaging).
    pub max_rounds: u32,
    /// The fewest sites (this one included) a secure aggregation round may have: the others' updates are what this
    /// site's is hidden among. At least 2.
    pub secure_aggregation_min_sites: usize,
    /// Jobs running at once (the blocking pool's size); 0: the number of cores.
    pub workers: usize,
    /// How long one job step may run (seconds).
    pub time_limit_seconds: u64,
    /// The most memory a job's table and working set may take (MiB).
    pub memory_limit_mb: u64,
    /// The algorithms this connector admits: their manifest files, each naming its WebAssembly module beside it and
    /// the module's SHA-256 digest (decision 0048). A job names an algorithm by digest.
    pub algorithms: Vec<PathBuf>,
    /// The fuel (WebAssembly instructions, about) one algorithm run may use.
    pub algorithm_fuel: u64,
    /// The linear memory one algorithm run may grow to (MiB).
    pub algorithm_memory_mb: u64,
    /// The largest table upload (MiB of CSV). Uploads stream to a file; a larger one is refused with a 413 once
    /// this much has arrived.
    pub max_upload_mb: u64,
}

impl Default for ComputeConfig {
    fn default() -> Self {
        ComputeConfig {
            min_cell_count: 5,
            dominance: 0.5,
            max_cells: 1000,
            max_jobs_per_agreement: 100,
            max_rounds: 100,
            secure_aggregation_min_sites: 2,
            workers: 0,
            time_limit_seconds: 60,
            memory_limit_mb: 1024,
            max_upload_mb: 256,
            algorithms: Vec::new(),
            algorithm_fuel: 10_000_000_000,
            algorithm_memory_mb: 64,
        }
    }
}

/// The peer network: whom this connector knows first, and how it keeps its list of peers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PeersConfig {
    /// Peers to start from: DIDs (`did:web:...`) or public URLs. They are pinned: kept even when silent.
    #[serde(default)]
    pub seeds: Vec<String>,
    /// The most peers this connector keeps.
    #[serde(default = "default_max_peers")]
    pub max: u32,
    /// How often peer lists are exchanged (seconds; 0 turns the exchange off).
    #[serde(default = "default_exchange_interval")]
    pub exchange_interval_seconds: u64,
    /// A learned peer that has not answered for this long is forgotten, and no longer passed on (seconds).
    #[serde(default = "default_stale_after")]
    pub stale_after_seconds: u64,
}

impl Default for PeersConfig {
    fn default() -> Self {
        PeersConfig {
            seeds: Vec::new(),
            max: default_max_peers(),
            exchange_interval_seconds: default_exchange_interval(),
            stale_after_seconds: default_stale_after(),
        }
    }
}

fn default_max_peers() -> u32 {
    1000
}

fn default_exchange_interval() -> u64 {
    60
}

fn default_stale_after() -> u64 {
    3600
}

/// The broker role: crawling every known peer's catalogue and serving search, SPARQL and a federation catalogue.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct BrokerConfig {
    #[serde(default)]
    pub enabled: bool,
    /// How often each peer's catalogue is crawled (seconds).
    #[serde(default = "default_crawl_interval")]
    pub crawl_interval_seconds: u64,
    /// The longest wait before crawling a failing peer again (seconds; waits double from the crawl interval).
    #[serde(default = "default_max_backoff")]
    pub max_backoff_seconds: u64,
    /// Peers crawled at the same time.
    #[serde(default = "default_crawl_concurrency")]
    pub concurrency: usize,
    /// A SPARQL query running longer than this is cancelled (seconds).
    #[serde(default = "default_sparql_timeout")]
    pub sparql_timeout_seconds: u64,
    /// Queries (SPARQL and search) one participant may send to the public broker endpoints per minute; more are
    /// answered 429 with `Retry-After`. 0 turns the limit off.
    #[serde(default = "default_queries_per_minute")]
    pub queries_per_minute: u32,
    /// A credential type (e.g. `MembershipCredential`) a participant must hold, from an issuer trusted for it in
    /// `trust.issuers`, to query the public broker endpoints. Unset: any participant with a valid token may.
    #[serde(default)]
    pub require_credential: Option<String>,
    /// Keep the federation graph on disk in this folder (oxigraph's RocksDB store; needs a build with
    /// `--features rocksdb`). Default: in memory.
    #[serde(default)]
    pub graph_dir: Option<PathBuf>,
}

impl Default for BrokerConfig {
    fn default() -> Self {
        BrokerConfig {
            enabled: false,
            crawl_interval_seconds: default_crawl_interval(),
            max_backoff_seconds: default_max_backoff(),
            concurrency: default_crawl_concurrency(),
            sparql_timeout_seconds: default_sparql_timeout(),
            queries_per_minute: default_queries_per_minute(),
            require_credential: None,
            graph_dir: None,
        }
    }
}

fn default_crawl_interval() -> u64 {
    300
}

fn default_max_backoff() -> u64 {
    3600
}

fn default_crawl_concurrency() -> usize {
    8
}

fn default_sparql_timeout() -> u64 {
    10
}

fn default_queries_per_minute() -> u32 {
    60
}

/// The audit log: who may read it, and whose logs this connector witnesses.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// An API key (`X-Api-Key`) that reads the audit log and nothing else.
    #[serde(default)]
    pub auditor_api_key: Option<String>,
    /// Auditors' DIDs: they read the audit log with a self-issued token (`Authorization: Bearer`).
    #[serde(default)]
    pub auditors: Vec<String>,
    /// A credential type auditors' DIDs must also hold (from a trusted issuer), if set.
    #[serde(default)]
    pub auditor_credential: Option<String>,
    /// More participants (DIDs) to witness, besides every counter-party.
    #[serde(default)]
    pub witness: Vec<String>,
    /// How often peers' tree heads are fetched and countersigned (seconds; 0 turns witnessing off).
    #[serde(default = "default_witness_interval")]
    pub witness_interval_seconds: u64,
    /// How often the stored log is recomputed and checked, besides at start-up (seconds; 0: at start-up only).
    #[serde(default = "default_self_check_interval")]
    pub self_check_interval_seconds: u64,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            auditor_api_key: None,
            auditors: Vec::new(),
            auditor_credential: None,
            witness: Vec::new(),
            witness_interval_seconds: default_witness_interval(),
            self_check_interval_seconds: default_self_check_interval(),
        }
    }
}

fn default_witness_interval() -> u64 {
    300
}

fn default_self_check_interval() -> u64 {
    3600
}

/// Whom this connector trusts: certificate authorities for outgoing HTTPS and credential issuers.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrustConfig {
    /// Extra CA certificates (PEM bundle) trusted for outgoing HTTPS, in addition to the system roots.
    #[serde(default)]
    pub ca_file: Option<PathBuf>,
    /// Trusted issuers (DIDs) per credential type, e.g. `MembershipCredential = ["did:web:federation.example"]`.
    #[serde(default)]
    pub issuers: BTreeMap<String, Vec<String>>,
    /// Seconds a resolved DID document is reused.
    #[serde(default = "default_cache_seconds")]
    pub did_cache_seconds: u64,
    /// Longest time, in seconds, verified claims and revocation lists are reused (never beyond the requester's
    /// token lifetime). 0 checks credentials on every request.
    #[serde(default = "default_cache_seconds")]
    pub claims_cache_seconds: u64,
    /// JSON-LD contexts besides the bundled ones, as files the operator was given: IRI → file, e.g. a data space's
    /// policy context. Read at start-up; never fetched.
    #[serde(default)]
    pub contexts: BTreeMap<String, PathBuf>,
    /// Addresses outgoing requests may reach although they are not public (loopback, private, link-local, shared):
    /// IP addresses or CIDR blocks, e.g. `["10.20.0.0/16"]` for a federation on a private network. Outside
    /// development mode every other such address is refused, after DNS resolution, whoever named it.
    #[serde(default)]
    pub allow_addresses: Vec<String>,
}

impl Default for TrustConfig {
    fn default() -> Self {
        Self {
            ca_file: None,
            issuers: BTreeMap::new(),
            did_cache_seconds: default_cache_seconds(),
            claims_cache_seconds: default_cache_seconds(),
            contexts: BTreeMap::new(),
            allow_addresses: Vec::new(),
        }
    }
}

impl TrustConfig {
    /// Adds the operator's contexts (`trust.contexts`) to those Hanse reads; an unreadable file or one that is no
    /// context document stops start-up naming the IRI.
    pub fn add_contexts(&self) -> Result<(), ConfigError> {
        for (iri, file) in &self.contexts {
            let key = || format!("trust.contexts.\"{iri}\"");
            if !(iri.starts_with("https://") || iri.starts_with("http://")) {
                return Err(ConfigError::Key { key: key(), message: "must be an http(s) IRI".into() });
            }
            let text = std::fs::read_to_string(file).map_err(|e| ConfigError::Key {
                key: key(),
                message: format!("cannot read {}: {e}", file.display()),
            })?;
            hanse_vocab::contexts::add(iri, &text)
                .map_err(|e| ConfigError::Key { key: key(), message: format!("{}: {e}", file.display()) })?;
        }
        Ok(())
    }
}

fn default_cache_seconds() -> u64 {
    300
}

/// Delivery of negotiation messages.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NegotiationConfig {
    /// Attempts to deliver a message before the negotiation is terminated.
    #[serde(default = "default_retry_attempts")]
    pub retry_attempts: u32,
    /// Delay before the first retry, in milliseconds; it doubles with every attempt.
    #[serde(default = "default_retry_base_ms")]
    pub retry_base_ms: u64,
    /// The longest delay between two attempts, in milliseconds.
    #[serde(default = "default_retry_max_delay_ms")]
    pub retry_max_delay_ms: u64,
    /// A negotiation or transfer waiting for its peer this long (seconds) is reconciled: a consumer asks the
    /// provider for the process's state (DSP `GET`) and adopts a final state it missed.
    #[serde(default = "default_peer_silence_seconds")]
    pub peer_silence_seconds: u64,
    /// A process still waiting for its peer this long after its last change (seconds) ends on this side with a
    /// reason, and the peer is told; notices of an end (terminations, FINALIZED, completions) are delivered with
    /// back-off for this long until the peer takes them.
    #[serde(default = "default_convergence_deadline_seconds")]
    pub convergence_deadline_seconds: u64,
}

impl Default for NegotiationConfig {
    fn default() -> Self {
        Self {
            retry_attempts: default_retry_attempts(),
            retry_base_ms: default_retry_base_ms(),
            retry_max_delay_ms: default_retry_max_delay_ms(),
            peer_silence_seconds: default_peer_silence_seconds(),
            convergence_deadline_seconds: default_convergence_deadline_seconds(),
        }
    }
}

fn default_retry_max_delay_ms() -> u64 {
    300_000
}
fn default_peer_silence_seconds() -> u64 {
    600
}
fn default_convergence_deadline_seconds() -> u64 {
    7 * 86_400
}

fn default_retry_attempts() -> u32 {
    7
}
fn default_retry_base_ms() -> u64 {
    1000
}

/// The catalogue.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CatalogConfig {
    /// A new dataset appears in the catalogue only once a second key (role approver or operator, not the one that
    /// made it) approves it (`/management/v3/approvals`).
    #[serde(default)]
    pub publication_approval: bool,
    /// Keep the catalogue's RDF graph on disk in this folder (oxigraph's RocksDB store; needs a build with
    /// `--features rocksdb`): it is resumed at the next start instead of built again, and memory no longer holds
    /// it. The views' datasets are kept beside it, so that a start reads them back instead of every stored asset
    /// (decision 0053). Each replica keeps its own. Default: in memory, built after every start.
    #[serde(default)]
    pub graph_dir: Option<PathBuf>,
}

/// The operator console under `/console` on the management listener (decision 0039).
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ConsoleConfig {
    /// Serve the console.
    #[serde(default = "yes")]
    pub enabled: bool,
    /// A session unused this long (minutes) is signed out.
    #[serde(default = "default_console_idle")]
    pub idle_minutes: u64,
    /// At most this many sessions at once; the least recently used is signed out past it.
    #[serde(default = "default_console_sessions")]
    pub max_sessions: usize,
    /// Mark the session cookie `Secure` (set it when the console is reached over HTTPS, e.g. behind a TLS proxy).
    #[serde(default)]
    pub secure_cookie: bool,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig {
            enabled: true,
            idle_minutes: default_console_idle(),
            max_sessions: default_console_sessions(),
            secure_cookie: false,
        }
    }
}

fn yes() -> bool {
    true
}

fn default_console_idle() -> u64 {
    30
}

fn default_console_sessions() -> usize {
    1000
}

/// Several replicas of one connector on one PostgreSQL database (decision 0040). A single node needs none of it.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// This replica's name in leases and logs (default: the host name, then the process id and a random suffix, so
    /// that a restarted replica never mistakes its previous life's leases for its own).
    #[serde(default)]
    pub replica: Option<String>,
    /// How long a lease lasts without renewal (seconds): after a replica dies, its work is taken over this much later.
    /// Holders renew at a third of it.
    #[serde(default = "default_lease_seconds")]
    pub lease_seconds: u64,
    /// How often a replica looks for catalogue changes other replicas made (milliseconds).
    #[serde(default = "default_follow_ms")]
    pub follow_ms: u64,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig { replica: None, lease_seconds: default_lease_seconds(), follow_ms: default_follow_ms() }
    }
}

fn default_lease_seconds() -> u64 {
    15
}

fn default_follow_ms() -> u64 {
    250
}

/// Where ingested tables and `File` data live (decision 0041): local folders by default, or S3-compatible object
/// storage that every replica of a connector shares.
#[derive(Debug, Clone, Default, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Empty: `<data_dir>/tables` and `dataplane.file_root` on this node's disk. `s3://bucket` or
    /// `s3://bucket/prefix`: tables under `<prefix>/tables/`, `File` data under `<prefix>/files/` (a `File` data
    /// address's path is then the object's name below that, relative to `dataplane.file_root`).
    #[serde(default)]
    pub url: String,
    /// The endpoint of an S3-compatible server other than AWS (MinIO, Ceph, a cloud's S3 API), e.g.
    /// `https://s3.example.org`.
    #[serde(default)]
    pub endpoint: Option<String>,
    /// The bucket's region (`us-east-1` when unset, which S3-compatible servers accept).
    #[serde(default)]
    pub region: Option<String>,
    /// Access keys. When unset, the `AWS_*` environment, a web identity token (Kubernetes) or the instance's role.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// Plain HTTP to `endpoint`: for a development server only.
    #[serde(default)]
    pub allow_http: bool,
}

/// The data plane.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct DataplaneConfig {
    /// Folder that `File` data addresses must lie under (default `<data_dir>/files`).
    #[serde(default)]
    pub file_root: Option<PathBuf>,
    /// How long a pull transfer's access token lives (seconds); consumers refresh it.
    #[serde(default = "default_token_lifetime")]
    pub token_lifetime_seconds: u64,
}

impl Default for DataplaneConfig {
    fn default() -> Self {
        DataplaneConfig { file_root: None, token_lifetime_seconds: default_token_lifetime() }
    }
}

fn default_token_lifetime() -> u64 {
    300
}

/// Who this connector is.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ParticipantConfig {
    /// The participant's `did:web` identifier.
    pub id: String,
    /// The participant's private key (EC P-256, PEM).
    pub key_file: PathBuf,
    /// Development mode: allows plain-HTTP `did:web` resolution for loopback hosts.
    #[serde(default)]
    pub development: bool,
    /// The credential types the participants this connector sends requests to may read from its credential service
    /// (the scopes of the DCP access tokens it grants them). Unset: every type it holds.
    #[serde(default)]
    pub share_credentials: Option<Vec<String>>,
}

/// The public listener: DSP protocol, DID document, `/.well-known/*`, data plane.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PublicConfig {
    /// Address to listen on.
    #[serde(default = "default_public_bind")]
    pub bind: SocketAddr,
    /// The externally visible base URL of this listener (defaults to `http://<bind>`).
    #[serde(default)]
    pub url: Option<String>,
    /// TLS certificate chain (PEM) for the public listener.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// TLS private key (PEM) for the public listener.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// Mutual TLS: when set, every client must present a certificate issued by a CA in this PEM bundle.
    #[serde(default)]
    pub client_ca: Option<PathBuf>,
}

impl Default for PublicConfig {
    fn default() -> Self {
        Self { bind: default_public_bind(), url: None, tls_cert: None, tls_key: None, client_ca: None }
    }
}

/// The management listener: operators' API, every request authenticated by `X-Api-Key`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ManagementConfig {
    /// Address to listen on.
    #[serde(default = "default_management_bind")]
    pub bind: SocketAddr,
    /// The API key every management request must carry in `X-Api-Key`.
    pub api_key: String,
    /// The key `GET /metrics` requires (`Authorization: Bearer`, as Prometheus sends it, or `X-Api-Key`); without
    /// one, `/metrics` answers 401 to everyone. Never the operator's key.
    #[serde(default)]
    pub metrics_api_key: Option<String>,
}

/// Where state is kept.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Folder for the embedded database and data files.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// `sqlite://...` or `postgres://...`; empty means SQLite at `<data_dir>/hanse.db`.
    #[serde(default)]
    pub database_url: Option<String>,
    /// PostgreSQL schema to use (created if missing); lets several connectors share one database.
    #[serde(default)]
    pub schema: Option<String>,
    /// Maximum connections in the pool.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            data_dir: default_data_dir(),
            database_url: None,
            schema: None,
            max_connections: default_max_connections(),
        }
    }
}

/// Logging.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LogConfig {
    /// A tracing filter, e.g. `info` or `hanse=debug,info`.
    #[serde(default = "default_log_level")]
    pub level: String,
    /// `human` or `json`.
    #[serde(default)]
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        Self { level: default_log_level(), format: LogFormat::default() }
    }
}

/// OpenTelemetry traces (decision 0029): off unless `otlp_endpoint` is set.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TracesConfig {
    /// Where spans are sent over OTLP/HTTP, e.g. `http://collector:4318/v1/traces`; unset: no traces.
    #[serde(default)]
    pub otlp_endpoint: Option<String>,
    /// `http/protobuf` (the default) or `http/json`.
    #[serde(default)]
    pub protocol: OtlpProtocol,
    /// The `service.name` of the spans.
    #[serde(default = "default_trace_service")]
    pub service_name: String,
    /// The share of new traces recorded, 0 to 1 (a trace begun by a peer follows the peer's decision).
    #[serde(default = "default_sample_ratio")]
    pub sample_ratio: f64,
}

impl Default for TracesConfig {
    fn default() -> Self {
        Self {
            otlp_endpoint: None,
            protocol: OtlpProtocol::default(),
            service_name: default_trace_service(),
            sample_ratio: default_sample_ratio(),
        }
    }
}

fn default_trace_service() -> String {
    "hanse".into()
}

fn default_sample_ratio() -> f64 {
    1.0
}

/// The OTLP/HTTP encoding.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq)]
pub enum OtlpProtocol {
    #[default]
    #[serde(rename = "http/protobuf")]
    Protobuf,
    #[serde(rename = "http/json")]
    Json,
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, Deserialize, Serialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines (coloured on a terminal).
    #[default]
    Human,
    /// One JSON object a line.
    Json,
}

fn default_public_bind() -> SocketAddr {
    "127.0.0.1:19194".parse().expect("valid")
}
fn default_management_bind() -> SocketAddr {
    "127.0.0.1:19193".parse().expect("valid")
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_max_connections() -> u32 {
    8
}
fn default_log_level() -> String {
    "info".into()
}

/// A configuration that could not be loaded; the message names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("configuration file {0} not found (create one with `hanse init`)")]
    NotFound(PathBuf),
    #[error("configuration key `{key}`: {message}")]
    Key { key: String, message: String },
    #[error("configuration: {0}")]
    Other(String),
}

impl From<figment::Error> for ConfigError {
    fn from(error: figment::Error) -> Self {
        use figment::error::Kind;
        let mut path = error.path.join(".");
        let message = match &error.kind {
            Kind::UnknownField(field, _) => {
                path = with_leaf(&path, field);
                "unknown key".to_owned()
            }
            Kind::MissingField(field) => {
                path = with_leaf(&path, field);
                "missing".to_owned()
            }
            other => other.to_string(),
        };
        let source = error.metadata.as_ref().map(|m| m.name.to_string());
        let message = match source {
            Some(source) => format!("{message} (from {source})"),
            None => message,
        };
        if path.is_empty() { ConfigError::Other(message) } else { ConfigError::Key { key: path, message } }
    }
}

/// `path.leaf`, unless figment already put the leaf at the end of the path.
fn with_leaf(path: &str, leaf: &str) -> String {
    if path.is_empty() {
        leaf.to_owned()
    } else if path == leaf || path.ends_with(&format!(".{leaf}")) {
        path.to_owned()
    } else {
        format!("{path}.{leaf}")
    }
}

impl Config {
    /// Loads `file`, applies `HANSE_*` environment overrides, validates, and resolves relative paths.
    pub fn load(file: &Path) -> Result<Config, ConfigError> {
        if !file.exists() {
            return Err(ConfigError::NotFound(file.to_owned()));
        }
        let foreign = check_env(std::env::vars())?;
        if !foreign.is_empty() {
            eprintln!(
                "warning: ignoring environment variable(s) {} (no configuration section of that name)",
                foreign.join(", ")
            );
        }
        let figment = Figment::new().merge(Toml::file_exact(file)).merge(env_provider());
        let mut config: Config = figment.extract()?;
        let base = file.parent().map(Path::to_path_buf).unwrap_or_default();
        config.resolve_paths(&base);
        config.validate()?;
        Ok(config)
    }

    /// Parses a configuration from TOML text (no environment), relative paths against `base`.
    pub fn from_toml(text: &str, base: &Path) -> Result<Config, ConfigError> {
        let mut config: Config = Figment::new().merge(Toml::string(text)).extract()?;
        config.resolve_paths(base);
        config.validate()?;
        Ok(config)
    }

    fn resolve_paths(&mut self, base: &Path) {
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut self.participant.key_file);
        resolve(&mut self.store.data_dir);
        for p in [&mut self.dataplane.file_root, &mut self.catalog.graph_dir, &mut self.broker.graph_dir] {
            if let Some(p) = p.as_mut() {
                resolve(p);
            }
        }
        if let Some(p) = self.public.tls_cert.as_mut() {
            resolve(p);
        }
        for p in [&mut self.public.tls_key, &mut self.public.client_ca, &mut self.trust.ca_file].into_iter().flatten() {
            resolve(p);
        }
        if let Some(gaiax) = self.gaiax.as_mut() {
            gaiax.certificate_chain.iter_mut().chain(gaiax.registration_credentials.iter_mut()).for_each(resolve);
        }
        self.trust.contexts.values_mut().for_each(resolve);
    }

    /// Which addresses outgoing requests may reach (`participant.development`, `trust.allow_addresses`).
    pub fn addresses(&self) -> hanse_core::addresses::Addresses {
        hanse_core::addresses::Addresses::new(self.participant.development, &self.trust.allow_addresses)
    }

    /// Checks values serde cannot: identifiers, URLs, combinations.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let key = |key: &str, message: String| ConfigError::Key { key: key.into(), message };
        if !self.participant.id.starts_with("did:web:") || self.participant.id.len() <= "did:web:".len() {
            return Err(key("participant.id", format!("`{}` is not a did:web identifier", self.participant.id)));
        }
        if self.management.api_key.trim().len() < 16 {
            return Err(key("management.api_key", "must be at least 16 characters".into()));
        }
        if let Some(metrics) = &self.management.metrics_api_key {
            if metrics.trim().len() < 16 {
                return Err(key("management.metrics_api_key", "must be at least 16 characters".into()));
            }
            if *metrics == self.management.api_key || Some(metrics) == self.audit.auditor_api_key.as_ref() {
                return Err(key(
                    "management.metrics_api_key",
                    "must differ from the operator's and the auditor's keys: it opens /metrics and nothing else".into(),
                ));
            }
        }
        if let Some(endpoint) = &self.traces.otlp_endpoint
            && reqwest::Url::parse(endpoint).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true)
        {
            return Err(key("traces.otlp_endpoint", format!("`{endpoint}` is not an http(s) URL")));
        }
        if !(0.0..=1.0).contains(&self.traces.sample_ratio) {
            return Err(key("traces.sample_ratio", "must lie in [0, 1]".into()));
        }
        if self.public.bind == self.management.bind {
            return Err(key(
                "management.bind",
                format!("{} is already the public listener's address", self.public.bind),
            ));
        }
        if let Some(url) = &self.public.url
            && reqwest::Url::parse(url).map(|u| !matches!(u.scheme(), "http" | "https")).unwrap_or(true)
        {
            return Err(key("public.url", format!("`{url}` is not an http(s) URL")));
        }
        if self.public.tls_cert.is_some() != self.public.tls_key.is_some() {
            return Err(key("public.tls_key", "tls_cert and tls_key must be given together".into()));
        }
        if self.public.client_ca.is_some() && self.public.tls_cert.is_none() {
            return Err(key("public.client_ca", "mutual TLS needs tls_cert and tls_key".into()));
        }
        if self.console.idle_minutes == 0 || self.console.max_sessions == 0 {
            return Err(key("console.idle_minutes", "the idle timeout and the session cap must be at least 1".into()));
        }
        if self.cluster.lease_seconds < 3 || self.cluster.follow_ms == 0 {
            return Err(key(
                "cluster.lease_seconds",
                "leases last at least 3 seconds and follow_ms is at least 1 (a renewal every third of a lease)".into(),
            ));
        }
        if !self.storage.url.is_empty() {
            let bucket = self.storage.url.strip_prefix("s3://").map(|rest| rest.split('/').next().unwrap_or_default());
            if bucket.is_none_or(str::is_empty) {
                return Err(key(
                    "storage.url",
                    format!(
                        "`{}` is not `s3://bucket` or `s3://bucket/prefix` (empty: local folders)",
                        self.storage.url
                    ),
                ));
            }
        }
        if let Some(endpoint) = &self.storage.endpoint {
            match reqwest::Url::parse(endpoint) {
                Ok(url) if url.scheme() == "https" || (url.scheme() == "http" && self.storage.allow_http) => {}
                Ok(url) if url.scheme() == "http" => {
                    return Err(key("storage.endpoint", format!("`{endpoint}` is plain HTTP: set storage.allow_http")));
                }
                _ => return Err(key("storage.endpoint", format!("`{endpoint}` is not an http(s) URL"))),
            }
        }
        if self.storage.access_key_id.is_some() != self.storage.secret_access_key.is_some() {
            return Err(key(
                "storage.secret_access_key",
                "access_key_id and secret_access_key must be given together".into(),
            ));
        }
        if self.compute.min_cell_count < 1 {
            return Err(key("compute.min_cell_count", "must be at least 1".into()));
        }
        if !(0.0..=1.0).contains(&self.compute.dominance) || self.compute.dominance == 0.0 {
            return Err(key("compute.dominance", "must lie in (0, 1]".into()));
        }
        for (kind, issuers) in &self.trust.issuers {
            if let Some(bad) = issuers.iter().find(|did| !did.starts_with("did:")) {
                return Err(key(&format!("trust.issuers.{kind}"), format!("`{bad}` is not a DID")));
            }
        }
        if let Some(url) = &self.store.database_url
            && !(url.starts_with("sqlite:") || url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(key("store.database_url", "must start with sqlite: or postgres://".into()));
        }
        if let Some(schema) = &self.store.schema
            && !crate::store::is_safe_identifier(schema)
        {
            return Err(key("store.schema", format!("`{schema}` is not a plain SQL identifier ([a-z_][a-z0-9_]*)")));
        }
        if self.negotiation.retry_attempts == 0 {
            return Err(key("negotiation.retry_attempts", "must be at least 1".into()));
        }
        for (i, entry) in self.trust.allow_addresses.iter().enumerate() {
            if hanse_core::addresses::parse_allowed(entry).is_none() {
                return Err(key(
                    &format!("trust.allow_addresses[{i}]"),
                    format!("`{entry}` is neither an IP address nor a CIDR block (10.20.0.0/16)"),
                ));
            }
        }
        let http = &self.http;
        for (name, value) in [
            ("http.header_timeout_seconds", http.header_timeout_seconds as usize),
            ("http.body_timeout_seconds", http.body_timeout_seconds as usize),
            ("http.public_max_connections", http.public_max_connections),
            ("http.management_max_connections", http.management_max_connections),
            ("http.public_max_body_kb", http.public_max_body_kb),
            ("http.management_max_body_kb", http.management_max_body_kb),
            ("compute.max_upload_mb", self.compute.max_upload_mb as usize),
        ] {
            if value == 0 {
                return Err(key(name, "must be at least 1".into()));
            }
        }
        if http.public_requests_per_second > 0 && http.public_burst == 0 {
            return Err(key("http.public_burst", "must be at least 1 while public_requests_per_second is set".into()));
        }
        if self.store.max_connections == 0 {
            return Err(key("store.max_connections", "must be at least 1".into()));
        }
        for (i, seed) in self.peers.seeds.iter().enumerate() {
            let url = reqwest::Url::parse(seed).is_ok_and(|u| matches!(u.scheme(), "http" | "https"));
            if !(url || seed.starts_with("did:web:")) {
                return Err(key(
                    &format!("peers.seeds[{i}]"),
                    format!("`{seed}` is neither a did:web DID nor an http(s) URL"),
                ));
            }
        }
        if self.peers.max == 0 {
            return Err(key("peers.max", "must be at least 1".into()));
        }
        if self.peers.stale_after_seconds <= self.peers.exchange_interval_seconds {
            return Err(key("peers.stale_after_seconds", "must be longer than peers.exchange_interval_seconds".into()));
        }
        if self.broker.enabled && (self.broker.crawl_interval_seconds == 0 || self.broker.concurrency == 0) {
            return Err(key(
                "broker.crawl_interval_seconds",
                "a broker crawls at least every so many seconds, with at least one peer at a time (broker.concurrency)"
                    .into(),
            ));
        }
        if let Some(gaiax) = &self.gaiax {
            let sha256 = |text: &str| text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit());
            if !sha256(&gaiax.terms_and_conditions) {
                return Err(key(
                    "gaiax.terms_and_conditions",
                    "must be the SHA-256 (64 hex digits) of the Gaia-X terms and conditions".into(),
                ));
            }
            if !sha256(&gaiax.service.terms_hash) {
                return Err(key("gaiax.service.terms_hash", "must be a SHA-256 (64 hex digits)".into()));
            }
            if reqwest::Url::parse(&gaiax.service.terms_url).is_err() {
                return Err(key("gaiax.service.terms_url", format!("`{}` is not a URL", gaiax.service.terms_url)));
            }
            let r = &gaiax.registration;
            let numbers = [&r.vat_id, &r.lei_code, &r.eori, &r.euid, &r.tax_id, &r.local];
            if numbers.iter().all(|n| n.is_none()) && gaiax.registration_credentials.is_empty() {
                return Err(key("gaiax.registration", "needs at least one registration number (vat_id, lei_code, eori, euid, tax_id or local) or a notary's credential in registration_credentials".into()));
            }
            if gaiax.validity_days == 0 {
                return Err(key("gaiax.validity_days", "must be at least 1".into()));
            }
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(key("log.level", format!("`{}` is not a valid log filter", self.log.level)));
        }
        Ok(())
    }

    /// The externally visible base URL of the public listener.
    pub fn public_url(&self) -> String {
        self.public_url_at(self.public.bind)
    }

    /// The externally visible base URL when the public listener is bound to `addr` (which may differ from
    /// `public.bind` when the caller bound port 0).
    pub fn public_url_at(&self, addr: SocketAddr) -> String {
        match &self.public.url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let scheme = if self.public.tls_cert.is_some() { "https" } else { "http" };
                format!("{scheme}://{addr}")
            }
        }
    }

    /// The folder `File` data addresses must lie under.
    pub fn file_root(&self) -> PathBuf {
        self.dataplane.file_root.clone().unwrap_or_else(|| self.store.data_dir.join("files"))
    }

    /// How the store is opened (schema and pool size).
    pub fn store_options(&self) -> crate::store::StoreOptions {
        crate::store::StoreOptions {
            schema: self.store.schema.clone(),
            max_connections: Some(self.store.max_connections),
            ..Default::default()
        }
    }

    /// The database URL, defaulting to SQLite in the data folder.
    pub fn database_url(&self) -> String {
        match &self.store.database_url {
            Some(url) if !url.is_empty() => url.clone(),
            _ => format!("sqlite://{}", self.store.data_dir.join("hanse.db").display()),
        }
    }
}

/// `HANSE_<SECTION>_<KEY>` → `section.key` (keys keep their underscores: `HANSE_MANAGEMENT_API_KEY` →
/// `management.api_key`).
fn env_provider() -> Env {
    Env::prefixed("HANSE_")
        .filter(|key| env_use(key.as_str()) == EnvUse::Config)
        .map(|key| key.as_str().to_ascii_lowercase().replacen('_', ".", 1).into())
        .lowercase(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn foreign_hanse_variables_are_left_alone_and_typos_are_named() {
        let vars =
            |names: &[&str]| names.iter().map(|n| (n.to_string(), "x".to_owned())).collect::<Vec<_>>().into_iter();
        let foreign =
            check_env(vars(&["HANSE_BIN", "HANSE_HOME", "HANSE_MANAGEMENT_API_KEY", "HANSE_TEST_LOG", "PATH"]))
                .expect("no typo");
        assert_eq!(foreign, ["HANSE_BIN", "HANSE_HOME"]);
        let typo = check_env(vars(&["HANSE_MANAGMENT_API_KEY"])).unwrap_err().to_string();
        assert!(
            typo.contains("HANSE_MANAGMENT_API_KEY") && typo.contains("did you mean HANSE_MANAGEMENT_API_KEY?"),
            "{typo}"
        );
        let typo = check_env(vars(&["HANSE_PARTICIPNT_ID"])).unwrap_err().to_string();
        assert!(typo.contains("HANSE_PARTICIPANT_ID"), "{typo}");
        assert_eq!(env_use("STORE_DATA_DIR"), EnvUse::Config);
        assert_eq!(env_use("LOGS_LEVEL"), EnvUse::Typo { section: "log" });
        assert_eq!(env_use("HOME"), EnvUse::Foreign);
        assert_eq!(env_use("TEST_DATABASE_URL"), EnvUse::Own);
    }

    #[test]
    fn the_sections_named_for_the_environment_are_the_configuration_s() {
        let config = Config::from_toml(MINIMAL, Path::new("/etc/hanse")).unwrap();
        let value = serde_json::to_value(&config).unwrap();
        let mut sections: Vec<&str> = value.as_object().unwrap().keys().map(String::as_str).collect();
        if !sections.contains(&"gaiax") {
            sections.push("gaiax");
        }
        sections.sort();
        let mut known = SECTIONS.to_vec();
        known.sort();
        assert_eq!(sections, known);
    }

    const MINIMAL: &str = r#"
[participant]
id = "did:web:hospital.example"
key_file = "keys/participant.pem"

[management]
api_key = "0123456789abcdef0123"
"#;

    #[test]
    fn defaults_fill_what_the_file_leaves_out() {
        let config = Config::from_toml(MINIMAL, Path::new("/etc/hanse")).unwrap();
        assert_eq!(config.public.bind.to_string(), "127.0.0.1:19194");
        assert_eq!(config.management.bind.to_string(), "127.0.0.1:19193");
        assert_eq!(config.participant.key_file, Path::new("/etc/hanse/keys/participant.pem"));
        assert_eq!(config.database_url(), "sqlite:///etc/hanse/data/hanse.db");
        assert_eq!(config.public_url(), "http://127.0.0.1:19194");
    }

    #[test]
    fn an_unknown_key_is_rejected_by_name() {
        let text = format!("{MINIMAL}\n[public]\nbnid = \"127.0.0.1:1\"\n");
        let error = Config::from_toml(&text, Path::new(".")).unwrap_err().to_string();
        assert!(error.contains("public.bnid") && error.contains("unknown key"), "{error}");
    }

    #[test]
    fn an_invalid_address_is_rejected_by_name() {
        let text = format!("{MINIMAL}\n[public]\nbind = \"localhost:notaport\"\n");
        let error = Config::from_toml(&text, Path::new(".")).unwrap_err().to_string();
        assert!(error.contains("public.bind"), "{error}");
    }

    #[test]
    fn a_participant_that_is_not_a_did_web_is_rejected() {
        let text = MINIMAL.replace("did:web:hospital.example", "hospital");
        let error = Config::from_toml(&text, Path::new(".")).unwrap_err().to_string();
        assert!(error.contains("participant.id"), "{error}");
    }

    #[test]
    fn a_missing_section_is_named() {
        let error = Config::from_toml("[participant]\nid=\"did:web:x\"\nkey_file=\"k\"\n", Path::new("."))
            .unwrap_err()
            .to_string();
        assert!(error.contains("management"), "{error}");
    }
}
