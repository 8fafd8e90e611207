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

    /// A broker with its graph in memory, or in `broker.graph_dir` on disk (RocksDB). A graph on disk starts empty
    /// like one in memory: it is derived, and filled from the catalogues the store kept ([`Broker::restore`]).
    pub fn open(config: &crate::config::BrokerConfig, crawler: Crawler) -> Result<Broker, String> {
        let graph = match &config.graph_dir {
            None => Graphs::in_memory(),
            Some(dir) => {
                let graphs = Graphs::open(dir, "broker.graph_dir")?;
                graphs.clear().map_err(|e| format!("broker.graph_dir: cannot clear {}: {e}", dir.display()))?;
                graphs
            }
        };
        Ok(Broker {
            graph,
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

/// The named graph holding a peer's catalogue.
pub fn peer_graph(did: &str) -> NamedNode {
    NamedNode::new_unchecked(format!("urn:hanse:graph:peer:{}", encode(did)))
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
    /// `broker.concurrency` of them at a time, as a crawl does (reading one takes far longer than fetching it).
    pub async fn restore(&self) {
        let dids = match self.peers.kept_catalogs().await {
            Ok(dids) => dids,
            Err(error) => return tracing::error!(%error, "cannot read the kept catalogues; every peer is crawled"),
        };
        futures_util::stream::iter(dids)
            .for_each_concurrent(self.settings.concurrency, |did| self.restore_one(did))
            .await;
    }

    /// Takes back one peer's kept catalogue: its graph, index entry and crawl status.
    async fn restore_one(&self, did: String) {
        let kept = match self.peers.kept_catalog(&did).await {
            Ok(Some(kept)) => kept,
            Ok(None) => return,
            Err(error) => {
                return tracing::error!(%error, peer = did, "cannot read a kept catalogue; the peer is crawled");
            }
        };
        let graphs = self.graph.clone();
        let read = tokio::task::spawn_blocking(move || {
            let json: Json = serde_json::from_str(&kept.catalog).map_err(|e| e.to_string())?;
            let (catalog, triples) =
                read_into(&graphs, &kept.did, &kept.address, kept.country.clone(), &json, kept.digest.clone())?;
            Ok::<_, String>((catalog, triples, kept))
        });
        match read.await.map_err(|e| e.to_string()).and_then(|read| read) {
            Ok((catalog, triples, kept)) => {
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
            }
            Err(error) => tracing::error!(%error, peer = did, "a kept catalogue cannot be read; the peer is crawled"),
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
    let base = format!("{}/catalog/datasets/", address.trim_end_matches('/'));
    let mut document = crate::catalog::rdf::offer_for_rdf(catalog);
    if let Json::Object(map) = &mut document {
        // A peer's own nested catalogues are its business: the broker indexes what the peer itself offers.
        map.remove("catalog");
    }
    let graph = GraphName::NamedNode(peer_graph(did));
    let quads: Vec<Quad> = hanse_vocab::jsonld::parse_quads(document.to_string().as_bytes(), &base)
        .map_err(|e| e.to_string())?
        .into_iter()
        .map(|quad| Quad::new(quad.subject, quad.predicate, quad.object, graph.clone()))
        .collect();

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
    for quad in &quads {
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
        let values = |predicate: &str, iris: bool| -> Vec<String> {
            properties
                .iter()
                .filter(|(p, _)| *p == predicate)
                .filter_map(|(_, o)| match o {
                    Term::Literal(literal) if !iris => Some(literal.value().to_owned()),
                    Term::NamedNode(node) if iris => Some(node.as_str().to_owned()),
                    _ => None,
                })
                .collect()
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
    Ok((catalog, quads))
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
        let (did, address, graphs) = (peer.did.clone(), peer.address.clone(), self.graph.clone());
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
            let (catalog, triples) = read_into(&graphs, &did, &address, country, &catalog, digest)?;
            Ok::<_, String>((catalog.entries.len(), Some((catalog, triples, kept))))
        });
        let (datasets, replaced) = read.await.map_err(|e| format!("the crawl task failed: {e}"))??;
        let now = crate::store::now_millis();
        let (triples, kept) = match replaced {
            Some((catalog, triples, mut kept)) => {
                self.replace(catalog);
                (kept.crawled_at, kept.changed_at) = (now, now);
                (Some(triples), self.peers.keep_catalog(&kept).await.map(drop))
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
        broker.status()
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
