//! The broker role (`[broker] enabled = true`, decision 0014): every known peer's DSP catalogue, crawled with this
//! connector's own identity (so each peer's access policies decide what the broker sees), kept one named graph per
//! peer in an in-memory oxigraph store and replaced in one transaction per crawl, with a search index derived from
//! the same triples.
//!
//! `search` answers keyword search with facets; `http` serves search, read-only SPARQL over all graphs and the
//! federation catalogue (a DSP `Catalog` with one nested `catalog` per peer) on the public listener, and crawl
//! status on the management listener. The broker only points at datasets: consumers negotiate with the dataset's
//! own connector.

pub mod commands;
pub mod index;
pub mod search;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::StreamExt;
use hanse_vocab::ns::{DCAT, DCT, HEALTHDCATAP, RDF};
use oxigraph::model::{GraphName, NamedNode, Quad, Term};
use serde_json::{Value as Json, json};
use tokio::sync::watch;

use crate::catalog::graphs::Graphs;
use crate::dsp::client::DspClient;
use crate::identity::Identity;
use crate::store::PeerRow;
use hanse_core::encode::percent as encode;

/// Whether this build can keep the federation graph on disk (`--features rocksdb`).
pub const GRAPH_ON_DISK: bool = cfg!(feature = "rocksdb");

/// Datasets asked for per catalogue page while crawling (Hanse's largest page).
const CRAWL_PAGE: usize = crate::dsp::catalog::MAX_PAGE;

/// One dataset of a peer's catalogue, as search needs it.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The dataset's `@id` as the peer gave it (what a consumer negotiates for).
    pub id: String,
    pub title: String,
    /// Title, description, keywords and id, lower-cased: what keyword search looks in.
    pub haystack: String,
    /// The DSP `Dataset` object as the peer sent it, as JSON text.
    pub json: Arc<str>,
}

/// One peer's catalogue as last crawled.
#[derive(Debug)]
pub struct PeerCatalog {
    pub did: String,
    /// The peer's versioned DSP base.
    pub address: String,
    pub catalog_id: String,
    /// The peer's `service` array, as it sent it.
    pub service: Json,
    /// ISO 3166-1 country code of the publisher's headquarters, from its verified Gaia-X self-description.
    pub country: Option<String>,
    /// Sorted by `id`.
    pub entries: Vec<Entry>,
    /// Which entries hold which search words.
    pub words: index::WordIndex,
    /// The entries' filter and facet fields, column by column.
    pub columns: search::Columns,
    /// What was crawled (see [`digest`]): a crawl that finds the same leaves the graph and index as they are.
    pub digest: String,
}

impl PeerCatalog {
    /// The entries (indexes into `entries`, ascending) whose text contains every one of `words`. A word may hold
    /// spaces (a DSP catalogue keyword): its parts are looked up, and the whole is then sought in the text.
    pub fn matching(&self, words: &index::Words) -> Vec<u32> {
        let mut matching = self.words.matching(words);
        if !words.phrases.is_empty() {
            matching.retain(|&i| words.phrases.iter().all(|p| self.entries[i as usize].haystack.contains(p.as_str())));
        }
        matching
    }
}

/// The SHA-256 (hex) of what a crawl of a peer read: its address, publisher country and catalogue.
pub fn digest(address: &str, country: Option<&str>, catalog: &Json) -> String {
    let catalog = hanse_core::encode::digest(catalog);
    hanse_core::encode::sha256_hex(format!("{address}\n{}\n{catalog}", country.unwrap_or("")).as_bytes())
}

/// The crawl status of one peer.
#[derive(Debug, Clone, Default, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CrawlStatus {
    pub did: String,
    pub address: String,
    /// Milliseconds (0: never).
    pub last_attempt: i64,
    pub last_success: i64,
    /// Datasets in the last successful crawl.
    pub datasets: usize,
    /// Triples in the peer's graph.
    pub triples: usize,
    /// When a crawl last found the catalogue different from the one before (ms; the first crawl counts).
    pub last_change: i64,
    pub error: Option<String>,
    pub failures: u32,
    /// How long the last successful crawl took fetching the catalogue, and reading it into the graph and index (ms).
    pub fetch_ms: u64,
    pub index_ms: u64,
    /// When the next crawl is due (ms).
    pub next_due: i64,
    /// Why the peer is not crawled now: its status in the peer network (`unreachable`, `incompatible`,
    /// `unverified`) while it is not live; `None` while it is.
    pub skipped: Option<String>,
    /// Since when it has been skipped (ms; 0 while it is not).
    pub skipped_since: i64,
    #[serde(skip)]
    forced: bool,
}

/// The broker: the crawled catalogues, their graph and search index, and what it crawls with.
pub struct Broker {
    graph: Graphs,
    /// Which crawl of each peer a graph on disk holds (decision 0051).
    held: Arc<Mutex<Held>>,
    /// What the last start took back, once it is done.
    restored: std::sync::OnceLock<Restored>,
    /// Copied on write: a search works on one consistent set of catalogues.
    catalogs: RwLock<Arc<BTreeMap<String, Arc<PeerCatalog>>>>,
    status: Mutex<BTreeMap<String, CrawlStatus>>,
    /// One crawl round at a time.
    round: tokio::sync::Mutex<()>,
    /// The peer network's list, which says whom to crawl.
    peers: crate::store::PeerStore,
    /// This connector's identity: the broker sees each catalogue as this connector may.
    identity: Arc<Identity>,
    dsp: DspClient,
    settings: crate::config::BrokerConfig,
    /// `peers.stale_after_seconds`: catalogues not crawled successfully for this long are dropped.
    stale_after_seconds: u64,
    /// Public queries per participant (`broker.queries_per_minute`).
    queries: Option<Arc<crate::transport::listen::RateLimit<String>>>,
}

/// The file beside a broker graph on disk that says which crawl of each peer the graph holds ([`HeldState`]).
pub const STATE_FILE: &str = "hanse-broker-graph-state.json";

/// Bumped whenever what a crawled catalogue becomes in the graph changes form ([`quads_of`]): a graph on disk written
/// in another form is read again from the kept catalogues.
const GRAPH_FORM: u32 = 1;

/// What [`STATE_FILE`] holds: for each peer, the digest of the crawl its named graph holds. It never names a crawl
/// the graph's files do not hold: a peer is taken out (and the file synced) before its graph is rewritten, and put
/// back only after the graph was flushed.
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
struct HeldState {
    form: u32,
    peers: BTreeMap<String, String>,
}

/// Which crawl of each peer a graph on disk holds: as [`STATE_FILE`] says, and as written since.
#[derive(Debug, Default)]
struct Held {
    /// What the file says now.
    recorded: BTreeMap<String, String>,
    /// Peers whose graph was rewritten, and whose crawl the store kept, since the file was last written.
    pending: BTreeMap<String, String>,
}

impl Held {
    fn lock(held: &Mutex<Held>) -> std::sync::MutexGuard<'_, Held> {
        held.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records that `graph` holds every pending crawl (after a flush), if any is pending.
    fn keep(held: &Mutex<Held>, graph: &Graphs) {
        let mut held = Held::lock(held);
        if graph.dir().is_none() {
            // A graph in memory is gone with the process: nothing to record.
            held.pending.clear();
        }
        if held.pending.is_empty() {
            return;
        }
        let mut state = HeldState { form: GRAPH_FORM, peers: held.recorded.clone() };
        state.peers.extend(held.pending.iter().map(|(did, digest)| (did.clone(), digest.clone())));
        match graph.keep_state(STATE_FILE, &state) {
            Ok(()) => {
                held.recorded = state.peers;
                held.pending.clear();
            }
            Err(error) => {
                tracing::warn!(%error, "the broker graph on disk cannot record what it holds; a restart reads the kept catalogues again")
            }
        }
    }

    /// Takes `did` out of what the file says, before its graph is rewritten: the file is synced first.
    fn unclaim(held: &Mutex<Held>, graph: &Graphs, did: &str) {
        let mut held = Held::lock(held);
        held.pending.remove(did);
        if held.recorded.remove(did).is_none() {
            return;
        }
        let narrowed = HeldState { form: GRAPH_FORM, peers: held.recorded.clone() };
        if let Err(error) = graph.narrow_state(STATE_FILE, &narrowed) {
            // The file must not go on naming a crawl the graph is about to lose: without it, every peer is read again.
            tracing::warn!(%error, peer = did, "cannot narrow the broker graph's state file; removing it");
            if let Err(error) = graph.forget_state(STATE_FILE) {
                tracing::error!(%error, "the broker graph's state file can be neither narrowed nor removed");
            }
            held.recorded.clear();
        }
    }

    /// Notes that `did`'s graph holds the crawl `digest`, which the store keeps: recorded with the next [`Held::keep`].
    fn claim(held: &Mutex<Held>, did: &str, digest: &str) {
        let mut held = Held::lock(held);
        held.pending.insert(did.to_owned(), digest.to_owned());
    }

    /// Whether the file says `did`'s graph holds the crawl `digest`.
    fn holds(held: &Mutex<Held>, did: &str, digest: &str) -> bool {
        let held = Held::lock(held);
        held.recorded.get(did).is_some_and(|recorded| recorded == digest)
    }
}

/// What a start took back from the catalogues the store kept.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Restored {
    /// Peers whose graph on disk held their kept crawl: only their index was made, from the graph's quads.
    pub resumed: usize,
    /// Peers whose kept catalogue was read again into graph and index.
    pub read: usize,
    /// Graphs on disk of peers whose catalogue the store no longer keeps, dropped.
    pub dropped: usize,
}

/// What a broker crawls with: the peer list, this connector's identity and client, and when peers go stale.
pub struct Crawler {
    pub peers: crate::store::PeerStore,
    pub identity: Arc<Identity>,
    pub dsp: DspClient,
    pub stale_after_seconds: u64,
}

impl Broker {
    /// Counts a public query of `participant` against `broker.queries_per_minute`: the 429 to answer when it is over.
    pub fn admit_query(&self, participant: &str) -> Result<(), crate::transport::listen::OverQuota> {
        match &self.queries {
            Some(limit) => limit.check(&participant.to_owned()),
            None => Ok(()),
        }
    }

    /// The credential type `broker.require_credential` asks of public callers, if any.
    pub fn required_credential(&self) -> Option<&str> {
        self.settings.require_credential.as_deref()
    }

    /// A broker with its graph in memory, or in `broker.graph_dir` on disk (RocksDB). A graph on disk keeps the
    /// peers' graphs that its state file names ([`STATE_FILE`]), for [`Broker::restore`] to take back without reading
    /// them again; one without a state file in this form starts empty, like one in memory.
    pub fn open(config: &crate::config::BrokerConfig, crawler: Crawler) -> Result<Broker, String> {
        let mut held = Held::default();
        let graph = match &config.graph_dir {
            None => Graphs::in_memory(),
            Some(dir) => {
                let graphs = Graphs::open(dir, "broker.graph_dir")?;
                match graphs.state::<HeldState>(STATE_FILE).filter(|state| state.form == GRAPH_FORM) {
                    Some(state) => held.recorded = state.peers,
                    None => {
                        graphs
                            .forget_state(STATE_FILE)
                            .map_err(|e| format!("broker.graph_dir: cannot remove {STATE_FILE}: {e}"))?;
                        graphs.clear().map_err(|e| format!("broker.graph_dir: cannot clear {}: {e}", dir.display()))?;
                    }
                }
                graphs
            }
        };
        Ok(Broker {
            graph,
            held: Arc::new(Mutex::new(held)),
            restored: std::sync::OnceLock::new(),
            catalogs: RwLock::default(),
            status: Mutex::default(),
            round: tokio::sync::Mutex::const_new(()),
            peers: crawler.peers,
            identity: crawler.identity,
            dsp: crawler.dsp,
            settings: config.clone(),
            stale_after_seconds: crawler.stale_after_seconds,
            queries: crate::transport::listen::RateLimit::per_minute(
                config.queries_per_minute,
                "broker.queries_per_minute",
            ),
        })
    }
}

/// What the names of the peers' graphs start with.
const PEER_GRAPH: &str = "urn:hanse:graph:peer:";

/// The named graph holding a peer's catalogue.
pub fn peer_graph(did: &str) -> NamedNode {
    NamedNode::new_unchecked(format!("{PEER_GRAPH}{}", encode(did)))
}

impl Broker {
    /// The catalogues as crawled now.
    pub fn catalogs(&self) -> Arc<BTreeMap<String, Arc<PeerCatalog>>> {
        self.catalogs.read().expect("never poisoned").clone()
    }

    /// Every peer's crawl status, by DID.
    pub fn status(&self) -> Vec<CrawlStatus> {
        self.status.lock().expect("never poisoned").values().cloned().collect()
    }

    /// Lets go of a graph on disk, so that a broker started next in this process can open it; what it holds is
    /// recorded first, so that a start soon after a stop keeps what this one wrote.
    pub fn close_graph(&self) {
        Held::keep(&self.held, &self.graph);
        self.graph.close();
    }

    /// Quads in the federation graph.
    pub fn triples(&self) -> usize {
        self.graph.len()
    }

    /// Read-only SPARQL over every peer's graph.
    pub fn sparql(
        &self,
        query: &str,
        accept: &str,
        limits: &crate::catalog::rdf::SparqlLimits,
    ) -> Result<(&'static str, Vec<u8>), crate::catalog::rdf::SparqlError> {
        crate::catalog::rdf::query_store(&self.graph.store(), query, accept, limits)
    }

    /// Replaces a peer's index entry (after its graph).
    fn replace(&self, catalog: PeerCatalog) {
        let mut catalogs = self.catalogs.write().expect("never poisoned");
        let mut next = BTreeMap::clone(&catalogs);
        next.insert(catalog.did.clone(), Arc::new(catalog));
        *catalogs = Arc::new(next);
    }

    /// Forgets a peer's catalogue, here and in the store.
    async fn forget(&self, did: &str) {
        if let Err(error) = self.peers.forget_catalog(did).await {
            tracing::error!(%error, peer = did, "cannot forget a peer's kept catalogue");
        }
        Held::unclaim(&self.held, &self.graph, did);
        if let Err(error) = self.graph.replace(&peer_graph(did), &[]) {
            tracing::error!(%error, peer = did, "cannot drop a peer's graph");
        }
        let mut catalogs = self.catalogs.write().expect("never poisoned");
        if catalogs.contains_key(did) {
            let mut next = BTreeMap::clone(&catalogs);
            next.remove(did);
            *catalogs = Arc::new(next);
        }
        self.status.lock().expect("never poisoned").remove(did);
    }

    /// Marks every peer due, so that the next round crawls them all.
    pub fn force(&self) {
        for status in self.status.lock().expect("never poisoned").values_mut() {
            status.forced = true;
        }
    }
}

impl Broker {
    /// Takes back the catalogues the store kept (each peer's last crawl, decision 0042), so that a restarted broker
    /// answers at once; each is crawled again when it is due by its last crawl, not all at once. Reads
    /// `broker.concurrency` of them at a time, as a crawl does (reading one takes far longer than fetching it). A
    /// graph on disk that holds a peer's kept crawl is kept, and only the index made from its quads (decision 0051);
    /// graphs of peers no longer kept are dropped. Crawl rounds wait meanwhile.
    pub async fn restore(&self) {
        let _round = self.round.lock().await;
        let dids = match self.peers.kept_catalogs().await {
            Ok(dids) => dids,
            Err(error) => {
                self.restored.set(Restored::default()).ok();
                return tracing::error!(%error, "cannot read the kept catalogues; every peer is crawled");
            }
        };
        let started = std::time::Instant::now();
        let outcomes: Vec<Option<bool>> = futures_util::stream::iter(dids)
            .map(|did| self.restore_one(did))
            .buffer_unordered(self.settings.concurrency.max(1))
            .collect()
            .await;
        let mut restored = Restored {
            resumed: outcomes.iter().filter(|o| **o == Some(true)).count(),
            read: outcomes.iter().filter(|o| **o == Some(false)).count(),
            dropped: 0,
        };
        restored.dropped = self.drop_unkept();
        self.keep_held().await;
        tracing::info!(
            resumed = restored.resumed,
            read = restored.read,
            dropped = restored.dropped,
            ms = started.elapsed().as_millis() as u64,
            "kept catalogues taken back"
        );
        self.restored.set(restored).ok();
    }

    /// What the start took back, once [`Broker::restore`] is done.
    pub fn restored(&self) -> Option<Restored> {
        self.restored.get().copied()
    }

    /// Drops the graphs on disk of peers that were not taken back (the store no longer keeps their catalogue, or it
    /// could not be read); answers how many.
    fn drop_unkept(&self) -> usize {
        let taken: std::collections::HashSet<NamedNode> = self.catalogs().keys().map(|did| peer_graph(did)).collect();
        let names = match self.graph.names(PEER_GRAPH) {
            Ok(names) => names,
            Err(error) => {
                tracing::error!(%error, "cannot list the peers' graphs on disk");
                return 0;
            }
        };
        let unkept: Vec<String> = {
            let held = Held::lock(&self.held);
            held.recorded.keys().filter(|did| !taken.contains(&peer_graph(did))).cloned().collect()
        };
        for did in unkept {
            Held::unclaim(&self.held, &self.graph, &did);
        }
        let mut dropped = 0;
        for name in names.into_iter().filter(|name| !taken.contains(name)) {
            match self.graph.replace(&name, &[]) {
                Ok(()) => dropped += 1,
                Err(error) => tracing::error!(%error, graph = name.as_str(), "cannot drop a peer's graph"),
            }
        }
        dropped
    }

    /// Takes back one peer's kept catalogue: its graph, index entry and crawl status. Answers whether its graph on
    /// disk was kept (`Some(true)`) or the catalogue read again (`Some(false)`); `None` when nothing was taken back.
    async fn restore_one(&self, did: String) -> Option<bool> {
        let kept = match self.peers.kept_catalog(&did).await {
            Ok(Some(kept)) => kept,
            Ok(None) => return None,
            Err(error) => {
                tracing::error!(%error, peer = did, "cannot read a kept catalogue; the peer is crawled");
                return None;
            }
        };
        let (graphs, held) = (self.graph.clone(), self.held.clone());
        let read = tokio::task::spawn_blocking(move || {
            let json: Json = serde_json::from_str(&kept.catalog).map_err(|e| e.to_string())?;
            if Held::holds(&held, &kept.did, &kept.digest) {
                let name = peer_graph(&kept.did);
                let quads = graphs
                    .store()
                    .quads_for_pattern(None, None, None, Some(name.as_ref().into()))
                    .collect::<Result<Vec<Quad>, _>>()
                    .map_err(|e| e.to_string())?;
                // A crawled catalogue always says something of itself: an empty graph is not the one recorded.
                if !quads.is_empty() {
                    let catalog =
                        index_of(&kept.did, &kept.address, kept.country.clone(), &json, kept.digest.clone(), &quads)?;
                    return Ok::<_, String>((catalog, quads.len(), kept, true));
                }
            }
            Held::unclaim(&held, &graphs, &kept.did);
            let (catalog, triples) =
                read_into(&graphs, &kept.did, &kept.address, kept.country.clone(), &json, kept.digest.clone())?;
            Held::claim(&held, &kept.did, &kept.digest);
            Ok((catalog, triples, kept, false))
        });
        match read.await.map_err(|e| e.to_string()).and_then(|read| read) {
            Ok((catalog, triples, kept, resumed)) => {
                let interval_ms = (self.settings.crawl_interval_seconds * 1000) as i64;
                let status = CrawlStatus {
                    did: kept.did.clone(),
                    address: kept.address.clone(),
                    last_attempt: kept.crawled_at,
                    last_success: kept.crawled_at,
                    datasets: catalog.entries.len(),
                    triples,
                    last_change: kept.changed_at,
                    next_due: kept.crawled_at + interval_ms,
                    ..Default::default()
                };
                self.replace(catalog);
                self.status.lock().expect("never poisoned").insert(kept.did, status);
                Some(resumed)
            }
            Err(error) => {
                tracing::error!(%error, peer = did, "a kept catalogue cannot be read; the peer is crawled");
                None
            }
        }
    }
}

/// Reads a peer's catalogue ([`ingest`]) and replaces the peer's graph with its quads; answers the index entry and
/// how many quads the graph holds now.
fn read_into(
    graphs: &Graphs,
    did: &str,
    address: &str,
    country: Option<String>,
    catalog: &Json,
    digest: String,
) -> Result<(PeerCatalog, usize), String> {
    let (catalog, quads) = ingest(did, address, country, catalog, digest)?;
    graphs.replace(&peer_graph(did), &quads).map_err(|e| e.to_string())?;
    Ok((catalog, quads.len()))
}

/// Reads a crawled DSP `Catalog` into its index entries and quads. `address` is the peer's DSP base: relative
/// dataset ids resolve against its `catalog/datasets/`, where the peer serves each dataset.
pub fn ingest(
    did: &str,
    address: &str,
    country: Option<String>,
    catalog: &Json,
    digest: String,
) -> Result<(PeerCatalog, Vec<Quad>), String> {
    let quads = quads_of(did, address, catalog)?;
    let catalog = index_of(did, address, country, catalog, digest, &quads)?;
    Ok((catalog, quads))
}

/// Where a peer serves each dataset, against which its relative dataset ids resolve.
fn dataset_base(address: &str) -> String {
    format!("{}/catalog/datasets/", address.trim_end_matches('/'))
}

/// A crawled DSP `Catalog` as quads in the peer's named graph (JSON-LD to RDF: what most of a crawl's reading costs).
fn quads_of(did: &str, address: &str, catalog: &Json) -> Result<Vec<Quad>, String> {
    let base = dataset_base(address);
    let mut document = crate::catalog::rdf::offer_for_rdf(catalog);
    if let Json::Object(map) = &mut document {
        // A peer's own nested catalogues are its business: the broker indexes what the peer itself offers.
        map.remove("catalog");
    }
    let graph = GraphName::NamedNode(peer_graph(did));
    Ok(hanse_vocab::jsonld::parse_quads(document.to_string().as_bytes(), &base)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|quad| Quad::new(quad.subject, quad.predicate, quad.object, graph.clone()))
        .collect())
}

/// A crawled DSP `Catalog`'s index entry, with what search needs of each dataset taken from the catalogue's `quads`
/// (as [`quads_of`] made them, or as a graph on disk kept them).
fn index_of(
    did: &str,
    address: &str,
    country: Option<String>,
    catalog: &Json,
    digest: String,
    quads: &[Quad],
) -> Result<PeerCatalog, String> {
    let base = dataset_base(address);
    // What search needs, by subject, from the triples.
    let (rdf_type, dataset_class) = (format!("{RDF}type"), format!("{DCAT}Dataset"));
    let [title, description, keyword, theme, category, min_age, max_age, records] = [
        format!("{DCT}title"),
        format!("{DCT}description"),
        format!("{DCAT}keyword"),
        format!("{DCAT}theme"),
        format!("{HEALTHDCATAP}healthCategory"),
        format!("{HEALTHDCATAP}minTypicalAge"),
        format!("{HEALTHDCATAP}maxTypicalAge"),
        format!("{HEALTHDCATAP}numberOfRecords"),
    ];
    let mut by_subject: HashMap<&str, Vec<(&str, &Term)>> = HashMap::new();
    for quad in quads {
        if let oxigraph::model::NamedOrBlankNode::NamedNode(subject) = &quad.subject {
            by_subject.entry(subject.as_str()).or_default().push((quad.predicate.as_str(), &quad.object));
        }
    }
    let base_iri = oxiri::Iri::parse(base.clone()).map_err(|e| format!("`{base}` is not an IRI: {e}"))?;
    let mut entries = Vec::new();
    for dataset in catalog.get("dataset").and_then(Json::as_array).into_iter().flatten() {
        let Some(id) = dataset.get("@id").and_then(Json::as_str) else { continue };
        let iri = match base_iri.resolve(id) {
            Ok(iri) => iri.into_inner(),
            Err(_) => continue,
        };
        let properties = by_subject.get(iri.as_str()).map(Vec::as_slice).unwrap_or_default();
        if !properties
            .iter()
            .any(|(p, o)| *p == rdf_type && matches!(o, Term::NamedNode(n) if n.as_str() == dataset_class))
        {
            continue;
        }
        // The literal values (`iris` false) or IRI values (`iris` true) of a predicate.
        // Sorted: RDF keeps no order, and a graph read back from disk gives its quads in another one than a parse.
        let values = |predicate: &str, iris: bool| -> Vec<String> {
            let mut values: Vec<String> = properties
                .iter()
                .filter(|(p, _)| *p == predicate)
                .filter_map(|(_, o)| match o {
                    Term::Literal(literal) if !iris => Some(literal.value().to_owned()),
                    Term::NamedNode(node) if iris => Some(node.as_str().to_owned()),
                    _ => None,
                })
                .collect();
            values.sort_unstable();
            values
        };
        let texts = |predicate: &str| values(predicate, false);
        let iris = |predicate: &str| values(predicate, true);
        let number = |predicate: &str| texts(predicate).iter().find_map(|v| v.trim().parse::<i64>().ok());
        let title = texts(&title).join(" / ");
        let haystack =
            format!("{id} {title} {} {}", texts(&description).join(" / "), texts(&keyword).join(" ")).to_lowercase();
        let entry = Entry { id: id.to_owned(), haystack, title, json: Arc::from(dataset.to_string()) };
        let fields = search::Fields {
            themes: iris(&theme),
            health_categories: iris(&category),
            min_age: number(&min_age),
            max_age: number(&max_age),
            records: number(&records),
        };
        entries.push((entry, fields));
    }
    entries.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    entries.dedup_by(|a, b| a.0.id == b.0.id);
    let (entries, fields): (Vec<Entry>, Vec<search::Fields>) = entries.into_iter().unzip();
    let words = index::WordIndex::build(entries.iter().map(|e| e.haystack.as_str()));
    let columns = search::Columns::build(fields);
    let catalog = PeerCatalog {
        did: did.to_owned(),
        address: address.to_owned(),
        catalog_id: catalog.get("@id").and_then(Json::as_str).unwrap_or(did).to_owned(),
        service: catalog.get("service").cloned().unwrap_or_else(|| json!([])),
        country,
        entries,
        words,
        columns,
        digest,
    };
    Ok(catalog)
}

/// What a successful crawl of one peer found, and how long its parts took.
struct Crawled {
    datasets: usize,
    /// Triples in the peer's graph now; `None`: the catalogue was the same as last time, and nothing was replaced.
    triples: Option<usize>,
    /// When it succeeded (ms), as the store keeps it.
    at: i64,
    fetch_ms: u64,
    index_ms: u64,
}

impl Broker {
    /// The country of a peer's headquarters from its Gaia-X self-description, if it publishes one that verifies.
    async fn publisher_country(&self, did: &str) -> Option<String> {
        let document = self.identity.resolver().resolve(did).await.ok()?;
        let url = document.service(crate::identity::gaiax::SERVICE)?.to_owned();
        let response = self.dsp.http().get(&url).send().await.ok()?.error_for_status().ok()?;
        let text = crate::identity::limited::text(response, crate::identity::limited::DOCUMENT).await.ok()?;
        let report = crate::identity::gaiax::verify(self.identity.resolver(), &text, chrono::Utc::now()).await;
        if !report.holds() || report.holder.as_deref() != Some(did) {
            tracing::info!(peer = did, "the peer's Gaia-X self-description does not verify: no publisher country");
            return None;
        }
        report.credentials.iter().find_map(|credential| {
            let subject = credential.payload.get("credentialSubject")?;
            let address = subject.get("gx:headquartersAddress")?;
            address.get("gx:countryCode")?.as_str().map(|code| code.chars().take(2).collect::<String>().to_uppercase())
        })
    }

    /// Crawls one peer: its whole catalogue as this connector may see it, its publisher country, then the swap
    /// (unless the catalogue is the one crawled last time).
    async fn crawl_peer(&self, peer: &PeerRow) -> Result<Crawled, String> {
        let started = std::time::Instant::now();
        let catalog = self
            .dsp
            .catalog_paged(&peer.address, Some(&peer.did), Json::Null, CRAWL_PAGE)
            .await
            .map_err(|e| e.to_string())?;
        let country = self.publisher_country(&peer.did).await;
        let fetched = std::time::Instant::now();
        let previous = self.catalogs().get(&peer.did).cloned();
        let (did, address, graphs, held) =
            (peer.did.clone(), peer.address.clone(), self.graph.clone(), self.held.clone());
        let read = tokio::task::spawn_blocking(move || {
            let digest = digest(&address, country.as_deref(), &catalog);
            if let Some(previous) = previous.filter(|p| p.digest == digest) {
                return Ok((previous.entries.len(), None));
            }
            let kept = crate::store::CrawledCatalog {
                did: did.clone(),
                address: address.clone(),
                country: country.clone(),
                digest: digest.clone(),
                catalog: catalog.to_string(),
                crawled_at: 0,
                changed_at: 0,
            };
            Held::unclaim(&held, &graphs, &did);
            let (catalog, triples) = read_into(&graphs, &did, &address, country, &catalog, digest)?;
            Ok::<_, String>((catalog.entries.len(), Some((catalog, triples, kept))))
        });
        let (datasets, replaced) = read.await.map_err(|e| format!("the crawl task failed: {e}"))??;
        let now = crate::store::now_millis();
        let (triples, kept) = match replaced {
            Some((catalog, triples, mut kept)) => {
                self.replace(catalog);
                (kept.crawled_at, kept.changed_at) = (now, now);
                let stored = self.peers.keep_catalog(&kept).await.map(drop);
                // Only a crawl the store keeps may be named beside the graph: a restart compares the two.
                if stored.is_ok() {
                    Held::claim(&self.held, &kept.did, &kept.digest);
                }
                (Some(triples), stored)
            }
            None => (None, self.peers.catalog_unchanged(&peer.did, now).await),
        };
        // The store's copy only spares a restarted broker a crawl: failing to keep it fails nothing else.
        if let Err(error) = kept {
            tracing::error!(%error, peer = peer.did, "cannot keep the crawled catalogue");
        }
        let millis = |d: std::time::Duration| d.as_millis() as u64;
        let (fetch_ms, index_ms) = (millis(fetched - started), millis(fetched.elapsed()));
        Ok(Crawled { datasets, triples, at: now, fetch_ms, index_ms })
    }

    /// One crawl round: every live peer that is due (all of them after [`Broker::force`]), `broker.concurrency` at a
    /// time; catalogues of peers no longer known, or not crawled successfully within the stale period, are dropped.
    pub async fn crawl_round(&self) -> Vec<CrawlStatus> {
        let broker = self;
        let _round = broker.round.lock().await;
        let config = &self.settings;
        let now = crate::store::now_millis();
        let peers = match self.peers.peers().await {
            Ok(peers) => peers,
            Err(error) => {
                tracing::error!(%error, "cannot read the peers to crawl");
                return broker.status();
            }
        };
        let stale_ms = (self.stale_after_seconds * 1000) as i64;
        let known: std::collections::HashSet<&str> = peers.iter().map(|p| p.did.as_str()).collect();
        let drop: Vec<String> = broker
            .status
            .lock()
            .expect("never poisoned")
            .values()
            .filter(|s| !known.contains(s.did.as_str()) || (s.last_success > 0 && s.last_success < now - stale_ms))
            .map(|s| s.did.clone())
            .collect();
        for did in drop {
            tracing::info!(peer = did, "dropping a peer's catalogue: the peer is gone or silent");
            broker.forget(&did).await;
        }
        let due: Vec<PeerRow> = {
            let mut status = broker.status.lock().expect("never poisoned");
            // A peer the network does not find live is not crawled: its status says so, since when and why, instead of
            // showing its last good crawl as if nothing had happened.
            for peer in peers.iter().filter(|p| p.status != "live" && p.did != self.identity.did()) {
                let entry = status
                    .entry(peer.did.clone())
                    .or_insert_with(|| CrawlStatus { did: peer.did.clone(), ..Default::default() });
                if entry.skipped.as_deref() != Some(peer.status.as_str()) {
                    entry.skipped = Some(peer.status.clone());
                    entry.skipped_since = now;
                }
                entry.address = peer.address.clone();
                if !peer.detail.is_empty() {
                    entry.error = Some(peer.detail.clone());
                }
            }
            peers
                .into_iter()
                .filter(|p| p.status == "live" && !p.address.is_empty() && p.did != self.identity.did())
                .filter(|p| status.get(&p.did).is_none_or(|s| s.forced || s.skipped.is_some() || s.next_due <= now))
                .collect()
        };
        let interval_ms = (config.crawl_interval_seconds * 1000) as i64;
        let max_backoff_ms = (config.max_backoff_seconds * 1000) as i64;
        futures_util::stream::iter(due)
        .for_each_concurrent(config.concurrency, |peer| async move {
            let started = crate::store::now_millis();
            let outcome = broker.crawl_peer(&peer).await;
            let mut all = broker.status.lock().expect("never poisoned");
            let status = all
                .entry(peer.did.clone())
                .or_insert_with(|| CrawlStatus { did: peer.did.clone(), ..Default::default() });
            status.address = peer.address.clone();
            status.last_attempt = started;
            status.forced = false;
            status.skipped = None;
            status.skipped_since = 0;
            let counted = if outcome.is_ok() { "crawled" } else { "failed" };
            broker.peers.meter().count("hanse_broker_crawls_total", &[("outcome", counted)]);
            match outcome {
                Ok(Crawled { datasets, triples, at, fetch_ms, index_ms }) => {
                    status.last_success = at;
                    status.datasets = datasets;
                    if let Some(triples) = triples {
                        status.triples = triples;
                        status.last_change = status.last_success;
                    }
                    status.fetch_ms = fetch_ms;
                    status.index_ms = index_ms;
                    status.error = None;
                    status.failures = 0;
                    status.next_due = started + interval_ms;
                    tracing::info!(peer = peer.did, datasets, "peer catalogue crawled");
                }
                Err(error) => {
                    status.failures = status.failures.saturating_add(1);
                    let wait = interval_ms
                        .saturating_mul(1i64 << status.failures.min(20))
                        .min(max_backoff_ms.max(interval_ms));
                    status.next_due = started + wait;
                    tracing::info!(peer = peer.did, %error, failures = status.failures, "peer catalogue crawl failed");
                    status.error = Some(error);
                }
            }
        })
        .await;
        broker.keep_held().await;
        broker.status()
    }

    /// Records beside a graph on disk which crawls it holds now (after a flush), off the runtime's threads.
    async fn keep_held(&self) {
        let (held, graph) = (self.held.clone(), self.graph.clone());
        if let Err(error) = tokio::task::spawn_blocking(move || Held::keep(&held, &graph)).await {
            tracing::error!(%error, "recording what the broker graph holds stopped");
        }
    }
}

/// A page of the federation catalogue: each peer's nested `Catalog` with the datasets taken from it, and the cursor
/// of the next page (`afterPeer`, `after`), if there is one.
pub struct FederationPage {
    pub catalogs: Vec<Json>,
    pub next: Option<(String, String)>,
}

impl Broker {
    /// Up to `limit` datasets matching every keyword, peer by peer in DID order, after `after` of `after_peer`.
    pub fn federation_page(
        &self,
        keywords: &[String],
        after_peer: Option<&str>,
        after: Option<&str>,
        limit: usize,
    ) -> FederationPage {
        let catalogs = self.catalogs();
        let mut nested = Vec::new();
        let mut taken = 0usize;
        let mut next: Option<(String, String)> = None;
        let start_peer = after_peer.unwrap_or_default().to_owned();
        let keywords = index::Words::new(keywords);
        'peers: for (did, catalog) in catalogs.range(start_peer.clone()..) {
            let start = match (after, did == &start_peer) {
                (Some(after), true) => catalog.entries.partition_point(|e| e.id.as_str() <= after),
                _ => 0,
            };
            let mut datasets = Vec::new();
            let matching = catalog.matching(&keywords);
            for &i in &matching[matching.partition_point(|&i| (i as usize) < start)..] {
                let entry = &catalog.entries[i as usize];
                if taken == limit {
                    next = Some((did.clone(), datasets_last(&datasets, catalog, start)));
                    if !datasets.is_empty() {
                        nested.push(nested_catalog(catalog, &datasets));
                    }
                    break 'peers;
                }
                datasets.push(entry);
                taken += 1;
            }
            if !datasets.is_empty() {
                nested.push(nested_catalog(catalog, &datasets));
            }
        }
        FederationPage { catalogs: nested, next }
    }
}

/// The cursor after the datasets taken so far from a peer: the last one taken, or (none taken yet on this page)
/// the one before where this page started in it.
fn datasets_last(datasets: &[&Entry], catalog: &PeerCatalog, start: usize) -> String {
    match datasets.last() {
        Some(entry) => entry.id.clone(),
        None if start > 0 => catalog.entries[start - 1].id.clone(),
        // Nothing of this peer yet: every dataset of it is after the empty id.
        None => String::new(),
    }
}

/// A peer's nested `Catalog`, with the datasets as the peer described them.
fn nested_catalog(catalog: &PeerCatalog, datasets: &[&Entry]) -> Json {
    let datasets: Vec<Json> = datasets.iter().map(|e| serde_json::from_str(&e.json).unwrap_or(Json::Null)).collect();
    let mut nested = json!({
        "@id": catalog.catalog_id,
        "@type": "Catalog",
        "participantId": catalog.did,
        "dataset": datasets,
    });
    if catalog.service.as_array().is_some_and(|s| !s.is_empty()) {
        nested["service"] = catalog.service.clone();
    }
    nested
}

/// Crawls on schedule until shutdown (only with `[broker] enabled`).
pub fn spawn(state: Arc<Broker>, mut signal: watch::Receiver<bool>) {
    if let Some(queries) = &state.queries {
        queries.clone().sweep_every_minute(signal.clone());
    }
    // Peers become due at different times: look often, crawl only what is due.
    let tick = Duration::from_secs(state.settings.crawl_interval_seconds.clamp(1, 5));
    tokio::spawn(async move {
        state.restore().await;
        loop {
            state.crawl_round().await;
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = signal.changed() => return,
            }
        }
    });
}

#[cfg(all(test, feature = "rocksdb"))]
mod tests {
    use super::*;

    fn recorded(graphs: &Graphs) -> Option<BTreeMap<String, String>> {
        graphs.state::<HeldState>(STATE_FILE).map(|state| state.peers)
    }

    #[test]
    fn the_state_file_names_a_crawl_only_once_flushed_and_no_longer_once_its_graph_is_about_to_change() {
        let dir = tempfile::tempdir().unwrap();
        let graphs = Graphs::open(dir.path(), "broker.graph_dir").unwrap();
        let held = Mutex::new(Held::default());
        let quads =
            |did: &str| quads_of(did, "https://north.example/dsp", &json!({"@id": "urn:c", "@type": "Catalog"}));

        // Written graphs are named only when kept, with the crawl the store keeps.
        graphs.replace(&peer_graph("did:web:north"), &quads("did:web:north").unwrap()).unwrap();
        Held::claim(&held, "did:web:north", "n1");
        assert_eq!(recorded(&graphs), None, "nothing is named before it is kept");
        assert!(!Held::holds(&held, "did:web:north", "n1"));
        Held::keep(&held, &graphs);
        Held::claim(&held, "did:web:east", "e1");
        Held::keep(&held, &graphs);
        let both = BTreeMap::from([
            ("did:web:east".to_owned(), "e1".to_owned()),
            ("did:web:north".to_owned(), "n1".to_owned()),
        ]);
        assert_eq!(recorded(&graphs), Some(both));
        assert!(Held::holds(&held, "did:web:north", "n1") && !Held::holds(&held, "did:web:north", "n2"));

        // Before a graph is rewritten, the file stops naming it at once (no later keep needed).
        Held::unclaim(&held, &graphs, "did:web:north");
        assert_eq!(recorded(&graphs), Some(BTreeMap::from([("did:web:east".to_owned(), "e1".to_owned())])));
        assert!(!Held::holds(&held, "did:web:north", "n1"));
        // A claim that was never kept is forgotten too.
        Held::claim(&held, "did:web:south", "s1");
        Held::unclaim(&held, &graphs, "did:web:south");
        Held::keep(&held, &graphs);
        assert_eq!(recorded(&graphs).map(|peers| peers.len()), Some(1));
    }
}
