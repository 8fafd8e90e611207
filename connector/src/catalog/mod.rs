//! The catalogue: datasets (assets), policy definitions and contract definitions.
//!
//! SQL is the system of record. At start-up the whole state is read into memory, where three derived views serve
//! requests: the ordered dataset index (for paged DSP catalogue answers), the offers of every contract definition, and
//! the RDF graph (for SPARQL). Every write goes through one method here that writes SQL first and updates the views
//! only after the transaction committed, with writes serialised so the views follow the order of the store.

pub mod commands;
pub mod graphs;
pub mod kept;
pub mod model;
pub mod packed;
pub use hanse_core::query;
pub mod rdf;

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use hanse_policy::{Policy, RequestContext};
use hanse_self_descriptions::dcat::{DatasetDescription, Distribution};
use oxigraph::model::NamedNode;
use serde_json::{Value as Json, json};

use crate::store::{DocumentKind, Documents, StoreError};
use model::{Asset, AssetFields, ContractDefinition, FieldError, Invalid, PolicyDefinition};
use packed::PackedAsset;
use rdf::Graph;

/// What a catalogue write can run into.
#[derive(Debug, thiserror::Error)]
pub enum CatalogueError {
    #[error("invalid request")]
    Invalid(Invalid),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<Invalid> for CatalogueError {
    fn from(errors: Invalid) -> Self {
        CatalogueError::Invalid(errors)
    }
}

/// A resource with the time it was created (milliseconds since the epoch) and its stored version.
#[derive(Debug, Clone)]
pub struct Stored<T> {
    pub value: Arc<T>,
    pub created_at: i64,
    /// The document's version these views hold: a replica compares it with the store's to tell what changed.
    pub version: i64,
}

impl<T> Stored<T> {
    fn of(value: T, document: &crate::store::Document) -> Stored<T> {
        Stored { value: Arc::new(value), created_at: document.created_at, version: document.version }
    }
}

/// An asset as the views keep it: packed (decision 0052), with when it was created and its stored version.
#[derive(Debug, Clone)]
pub struct StoredAsset {
    pub packed: PackedAsset,
    pub created_at: i64,
    pub version: i64,
}

impl StoredAsset {
    fn pack(stored: &Stored<Asset>) -> StoredAsset {
        StoredAsset { packed: PackedAsset::pack(&stored.value), created_at: stored.created_at, version: stored.version }
    }

    /// The typed asset.
    pub fn unpack(&self) -> Stored<Asset> {
        Stored { value: Arc::new(self.packed.unpack()), created_at: self.created_at, version: self.version }
    }
}

/// The audit entry types that say the catalogue changed (documents, publication decisions).
const CHANGE_KINDS: [&str; 3] = ["management.change", "publication.request", "publication.decision"];

/// A definition's write refused because a policy it names is gone (deleted through another replica meanwhile).
fn policy_gone(error: StoreError) -> CatalogueError {
    match error {
        StoreError::NotFound { kind, id } if kind == DocumentKind::PolicyDefinition.as_str() => {
            CatalogueError::Invalid(vec![FieldError::new(
                "contractPolicyId",
                format!("names no {kind} (`{id}`): it was deleted meanwhile"),
            )])
        }
        other => other.into(),
    }
}

/// The order in which a replica applies changed documents: what is named before what names it.
const KIND_ORDER: [DocumentKind; 3] =
    [DocumentKind::PolicyDefinition, DocumentKind::ContractDefinition, DocumentKind::Asset];

/// Puts a document read back into its view (`None`: it is gone), or leaves it out with the reason.
fn put<V>(view: &mut BTreeMap<String, V>, id: &str, read: Option<Result<V, Invalid>>, kind: DocumentKind) {
    match read {
        Some(Ok(value)) => {
            view.insert(id.to_owned(), value);
        }
        Some(Err(errors)) => tracing::error!(%id, ?errors, "stored {} cannot be read; left out", kind.as_str()),
        None => {
            view.remove(id);
        }
    }
}

/// A stored policy definition read back, or why it cannot be.
fn read_policy(document: &crate::store::Document) -> Result<Stored<PolicyDefinition>, Invalid> {
    serde_json::from_value(document.body.clone())
        .map_err(|e| vec![FieldError::new("", e.to_string())])
        .and_then(PolicyDefinition::from_expanded)
        .map(|policy| Stored::of(policy, document))
}

/// A stored contract definition read back, or why it cannot be.
fn read_definition(document: &crate::store::Document) -> Result<Stored<ContractDefinition>, Invalid> {
    serde_json::from_value(document.body.clone())
        .map_err(|e| vec![FieldError::new("", e.to_string())])
        .and_then(ContractDefinition::from_expanded)
        .map(|definition| Stored::of(definition, document))
}

/// A stored asset read back (memory keeps the typed values, not the expanded form), or why it cannot be.
fn read_asset(document: crate::store::Document, file_root: &std::path::Path) -> Result<Stored<Asset>, Invalid> {
    let (created_at, version) = (document.created_at, document.version);
    let Json::Object(node) = document.body else {
        return Err(vec![FieldError::new("", "the stored body is not a JSON object")]);
    };
    let mut asset = Asset::from_expanded(node, file_root)?;
    asset.expanded = Json::Null;
    Ok(Stored { value: Arc::new(asset), created_at, version })
}

/// A contract definition's offer: what peers see in the catalogue and negotiate.
#[derive(Debug, Clone)]
pub struct Offer {
    /// Stable: derived from the definition and the policy's content, so it changes when the terms change.
    pub id: String,
    pub definition_id: String,
    pub policy: Arc<Policy>,
    /// The DSP compact form (`@type: Offer`, no `target`).
    pub json: Json,
}

#[derive(Default)]
struct State {
    assets: BTreeMap<String, Entry>,
    policies: BTreeMap<String, Stored<PolicyDefinition>>,
    definitions: BTreeMap<String, Stored<ContractDefinition>>,
    /// Offer of each contract definition whose contract policy exists.
    offers: FastMap<String, Arc<Offer>>,
    /// Offer id → definition id.
    offer_ids: FastMap<String, String>,
    /// The lists of definitions that select datasets, one of each.
    selections: KeptOnce<[String]>,
    /// The rendered texts' offers and distributions, one of each (texts are rendered as answers first need them,
    /// under the views' read lock).
    offer_texts: std::sync::Mutex<KeptOnce<str>>,
    /// The DataService the distributions point at.
    service_id: String,
    /// Datasets held back until a second key approves their publication (or rejected): no offers, no graph, not in
    /// any catalogue answer.
    unpublished: std::collections::HashSet<String>,
}

/// A stored asset read at a start: packed, and the definitions that select it.
struct Read {
    kept: StoredAsset,
    selecting: Vec<String>,
}

/// A dataset in the views: packed, the definitions that select it, and its DSP `Dataset` JSON once an answer needed
/// it.
#[derive(Debug, Clone)]
struct Entry {
    kept: StoredAsset,
    /// The definitions whose selector selects it, sorted; one list is kept for all datasets selected alike.
    selecting: Arc<[String]>,
    /// Its DSP `Dataset` JSON with every offer it has (`None` without offers): what most catalogue answers send as
    /// is. Rendered when an answer first needs it, not at a start or a write: a start renders nothing, and a
    /// definition that changes the offers of many datasets renders none of them.
    rendered: std::sync::OnceLock<Option<Rendered>>,
}

impl Entry {
    /// A dataset just read, before [`State::reindex_asset`] finds what selects it.
    fn new(kept: StoredAsset) -> Entry {
        Entry { kept, selecting: Arc::from([]), rendered: std::sync::OnceLock::new() }
    }
}

/// Values many datasets hold alike (the list of definitions that select them, their offers as text), kept once each.
/// Those no dataset holds any more are let go once there are twice as many kept as were in use the last time, so
/// that rewriting definitions again and again does not grow memory.
struct KeptOnce<T: ?Sized> {
    kept: std::collections::HashSet<Arc<T>, foldhash::fast::RandomState>,
    /// How many were in use when unused ones were last let go.
    live: usize,
}

impl<T: ?Sized> Default for KeptOnce<T> {
    fn default() -> Self {
        KeptOnce { kept: Default::default(), live: 0 }
    }
}

impl<T: ?Sized + Eq + std::hash::Hash> KeptOnce<T> {
    /// The one value kept equal to `value`, kept now if there was none.
    fn get(&mut self, value: &T) -> Arc<T>
    where
        for<'a> Arc<T>: From<&'a T>,
    {
        if let Some(kept) = self.kept.get(value) {
            return kept.clone();
        }
        if self.kept.len() >= 2 * self.live + 16 {
            self.kept.retain(|kept| Arc::strong_count(kept) > 1);
            self.live = self.kept.len();
        }
        let value = Arc::from(value);
        self.kept.insert(Arc::clone(&value));
        value
    }
}

/// A dataset's DSP `Dataset` JSON text in two parts: its own members, and its offers and distributions (`hasPolicy`,
/// `distribution`, the closing brace). The views keep one text of the second part for all the datasets with the same
/// offers and distributions.
#[derive(Debug, Clone)]
pub struct Rendered {
    own: Arc<str>,
    shared: Arc<str>,
}

impl Rendered {
    /// How many bytes of text.
    pub fn size(&self) -> usize {
        self.own.len() + self.shared.len()
    }

    /// Appends the text to `out`.
    pub fn push_to(&self, out: &mut String) {
        out.push_str(&self.own);
        out.push_str(&self.shared);
    }

    /// The text whole.
    pub fn text(&self) -> String {
        [&*self.own, &*self.shared].concat()
    }
}

/// Where the catalogue is served from.
#[derive(Debug, Clone)]
pub struct ServiceInfo {
    pub participant_id: String,
    /// The publisher's name in the catalogue (the legal name from `[gaiax]`, else the participant id).
    pub publisher_name: String,
    /// The DSP base URL (`<public>/protocol/2025-1`).
    pub endpoint_url: String,
    pub file_root: PathBuf,
}

impl ServiceInfo {
    pub fn catalog_id(&self) -> String {
        format!("{}/catalog", self.endpoint_url)
    }

    pub fn service_id(&self) -> String {
        format!("{}#dataservice", self.endpoint_url)
    }
}

/// The hot-path maps hash with foldhash (keys are ids we create or the operator chose, not attacker input).
type FastMap<K, V> = HashMap<K, V, foldhash::fast::RandomState>;

/// Properties searched by keyword filters.
const KEYWORD_PROPERTIES: [&str; 4] = [
    "http://purl.org/dc/terms/title",
    "http://purl.org/dc/terms/description",
    "http://www.w3.org/ns/dcat#keyword",
    "https://w3id.org/edc/v0.0.1/ns/name",
];

/// How many stored assets are read at a time at start-up.
const LOAD_PAGE: i64 = 2000;

/// What a catalogue request asks for (the documented DSP filter form; see `protocol::catalog`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogFilter {
    /// Every keyword must occur (case-insensitively) in the title, description, keywords or name.
    pub keywords: Vec<String>,
    /// `(property IRI, value)`: the dataset must have the property with that value.
    pub properties: Vec<(String, Json)>,
}

/// One page of a DSP catalogue answer.
#[derive(Debug, Clone, Default)]
pub struct CatalogPage {
    /// Each dataset as DSP `Dataset` JSON text.
    pub datasets: Vec<Rendered>,
    /// The id to continue after, when there are more datasets.
    pub next_after: Option<String>,
    /// The id to go back before, when there are earlier datasets.
    pub previous_before: Option<String>,
}

/// The catalogue.
pub struct Catalogue {
    state: RwLock<State>,
    writes: Arc<tokio::sync::Mutex<()>>,
    graph: Graph,
    pub service: ServiceInfo,
    /// Where the catalogue's documents are kept: every write goes there first.
    documents: Documents,
    /// Where publications wait for their second key.
    governance: crate::store::Governance,
    /// Whether a new dataset waits for a second key before it is published (`catalog.publication_approval`).
    approval: bool,
    /// The audit log, where this replica learns what other replicas of the connector changed.
    audit: crate::store::AuditStore,
    /// The log size the views follow (decision 0040).
    followed: std::sync::atomic::AtomicU64,
    /// When a graph on disk was last told where it stands.
    followed_kept: std::sync::Mutex<Option<std::time::Instant>>,
    /// How the graph came to be after the start.
    graph_start: std::sync::OnceLock<GraphStart>,
    /// How the datasets came into the views at the start.
    datasets_start: DatasetsStart,
    /// What the datasets kept beside a graph on disk are written for ([`kept::made_for`], taken at the start); `None`:
    /// none are kept.
    kept_for: Option<String>,
    /// The log size the datasets kept beside a graph on disk follow (`None`: none kept, or not known to be current);
    /// held while they are written.
    kept_at: tokio::sync::Mutex<Option<u64>>,
}

/// How the datasets came into the views at a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetsStart {
    /// Every stored asset read and parsed.
    Read,
    /// Read back from the file kept beside a graph on disk, with this many the log says changed since read from the
    /// store (decision 0053).
    Kept { reread: usize },
}

/// Above this many datasets changed since the file kept beside a graph on disk, the store is read whole instead.
const MAX_REREAD: usize = 10_000;

/// How the catalogue graph came to be after a start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphStart {
    /// Built whole from the views.
    Built,
    /// Resumed from disk, with this many datasets written again.
    Resumed { rewritten: usize },
}

/// How often, at most, a graph on disk is told how far it follows the log.
const KEEP_FOLLOWED_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// The catalogue changes an audit log records in a range of entries: the documents by kind, and the datasets whose
/// publication was asked for or decided.
struct Changes {
    documents: HashMap<DocumentKind, Vec<String>>,
    publications: Vec<String>,
}

impl Changes {
    async fn read(audit: &crate::store::AuditStore, from: u64, to: u64) -> Result<Changes, StoreError> {
        const BATCH: i64 = 1000;
        let (mut documents, mut publications) = (HashMap::<DocumentKind, Vec<String>>::new(), Vec::new());
        let mut from = from;
        loop {
            let entries = audit.audit_entries_of(&CHANGE_KINDS, from, to, BATCH).await?;
            for entry in &entries {
                let Ok(fields) = serde_json::from_str::<Json>(&entry.entry) else { continue };
                let text = |name: &str| fields.get(name).and_then(Json::as_str).map(str::to_owned);
                if entry.kind == "management.change" {
                    let kind = text("resource").as_deref().and_then(DocumentKind::named);
                    if let (Some(kind), Some(id)) = (kind, text("id")) {
                        documents.entry(kind).or_default().push(id);
                    }
                } else if let Some(asset) = text("asset") {
                    publications.push(asset);
                }
            }
            match entries.last() {
                Some(last) if entries.len() as i64 == BATCH => from = last.seq as u64 + 1,
                _ => break,
            }
        }
        Ok(Changes { documents, publications })
    }
}

/// The audit log's root at `size`, in hex (`None` when the log is shorter).
async fn log_root(audit: &crate::store::AuditStore, size: u64) -> Result<Option<String>, StoreError> {
    Ok(audit.audit_root_at(size).await?.map(|root| hanse_core::encode::hex(&root)))
}

/// Whether the log, now `size` long, is the one something recorded as `root` at `recorded` (what a graph on disk or
/// the datasets kept beside it followed).
async fn same_log(audit: &crate::store::AuditStore, recorded: u64, root: &str, size: u64) -> Result<bool, StoreError> {
    Ok(recorded <= size && log_root(audit, recorded).await?.as_deref() == Some(root))
}

/// Where a graph on disk can be resumed from: the log size it followed, when it was built for this catalogue and
/// the log there is the one it followed (the same root); `None` when it must be built again.
async fn resumable(graph: &Graph, audit: &crate::store::AuditStore, size: u64) -> Result<Option<u64>, StoreError> {
    let Some(kept) = graph.followed() else { return Ok(None) };
    let resumable = kept.built_for == graph.built_for() && same_log(audit, kept.size, &kept.root, size).await?;
    Ok(resumable.then_some(kept.size))
}

/// Reads every stored asset into `state`'s views. Page by page, so that memory holds the typed catalogue, never every
/// stored body at once; the next page is fetched while the cores read and select this one.
async fn read_whole(mut state: State, documents: &Documents, file_root: &std::path::Path) -> Result<State, StoreError> {
    let fetch = |after: Option<String>| {
        let documents = documents.clone();
        tokio::spawn(
            async move { documents.list_documents_after(DocumentKind::Asset, after.as_deref(), LOAD_PAGE).await },
        )
    };
    let mut next = Some(fetch(None));
    while let Some(fetching) = next.take() {
        let page = fetching.await.map_err(stopped)??;
        let Some(last) = page.last() else { break };
        next = Some(fetch(Some(last.id.clone())));
        let file_root = file_root.to_owned();
        let (returned, read) = tokio::task::spawn_blocking(move || {
            let read = state.read_page(page, &file_root);
            (state, read)
        })
        .await
        .map_err(stopped)?;
        state = returned;
        for read in read {
            state.keep(read);
        }
    }
    Ok(state)
}

fn stopped(error: tokio::task::JoinError) -> StoreError {
    StoreError::Corrupt(format!("loading the catalogue stopped: {error}"))
}

/// Reads the datasets kept in `dir` beside a graph on disk into `state`'s views when the file was written for
/// `made_for` over the log the store holds now (the same root at its size), then the assets the log says changed
/// since, up to `size`. With them: how many were read again, and the size the file follows if nothing changed since.
/// `None` (and the views as they were) when the store must be read whole.
async fn read_kept(
    state: State,
    documents: &Documents,
    audit: &crate::store::AuditStore,
    dir: &std::path::Path,
    made_for: String,
    size: u64,
    file_root: &std::path::Path,
) -> Result<(State, Option<(usize, Option<u64>)>), StoreError> {
    let path = dir.to_owned();
    let read = tokio::task::spawn_blocking(move || kept::read(&path, &made_for)).await.map_err(stopped)?;
    let (header, datasets) = match read {
        Ok(read) => read,
        Err(kept::Unread::Missing) => return Ok((state, None)),
        Err(reason) => {
            tracing::info!(%reason, "the catalogue's datasets kept beside the graph are not read; reading the store");
            return Ok((state, None));
        }
    };
    if !same_log(audit, header.size, &header.root, size).await? {
        tracing::info!("the catalogue's datasets kept beside the graph follow another audit log; reading the store");
        return Ok((state, None));
    }
    let mut changed =
        Changes::read(audit, header.size, size).await?.documents.remove(&DocumentKind::Asset).unwrap_or_default();
    changed.sort();
    changed.dedup();
    if changed.len() > MAX_REREAD {
        tracing::info!(
            changed = changed.len(),
            "many datasets changed since they were kept beside the graph; reading the store"
        );
        return Ok((state, None));
    }
    let (mut state, read) = tokio::task::spawn_blocking(move || {
        let read = on_every_core(datasets, |kept| Some(state.selected(kept)));
        (state, read)
    })
    .await
    .map_err(stopped)?;
    for read in read {
        state.keep(read);
    }
    for id in &changed {
        let read = documents
            .get_document(DocumentKind::Asset, id)
            .await?
            .map(|document| read_asset(document, file_root).map(|stored| state.selected(StoredAsset::pack(&stored))));
        match read {
            Some(Ok(read)) => state.keep(read),
            // Left out, as a start that reads the store whole leaves it out.
            Some(Err(errors)) => {
                tracing::error!(%id, ?errors, "stored asset cannot be read; left out");
                state.assets.remove(id);
            }
            None => {
                state.assets.remove(id);
            }
        }
    }
    let current = changed.is_empty() && header.size == size;
    Ok((state, Some((changed.len(), current.then_some(size)))))
}

/// `work` done on every item, on every core (up to eight), in the items' order; the items it answers `None` for are
/// left out.
fn on_every_core<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> Option<R> + Sync) -> Vec<R> {
    let workers = std::thread::available_parallelism().map_or(1, std::num::NonZero::get).min(8);
    let size = items.len().div_ceil(workers).max(1);
    let mut chunks: Vec<Vec<T>> = Vec::new();
    for (i, item) in items.into_iter().enumerate() {
        if i % size == 0 {
            chunks.push(Vec::with_capacity(size));
        }
        chunks.last_mut().expect("pushed above").push(item);
    }
    let work = &work;
    std::thread::scope(|scope| {
        let running: Vec<_> = chunks
            .into_iter()
            .map(|chunk| scope.spawn(move || chunk.into_iter().filter_map(work).collect::<Vec<R>>()))
            .collect();
        running
            .into_iter()
            .flat_map(|thread| thread.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    })
}

fn offer_for(definition: &ContractDefinition, policy: &PolicyDefinition) -> Offer {
    let mut json = policy.policy.to_dsp_json();
    let digest = openssl::sha::sha256(hanse_policy::normalise(&policy.policy).to_dsp_json().to_string().as_bytes());
    let hash: String = digest[..6].iter().map(|b| format!("{b:02x}")).collect();
    let id = format!("urn:hanse:offer:{}:{hash}", rdf::encode(&definition.id));
    if let Json::Object(map) = &mut json {
        map.insert("@id".into(), json!(id));
        map.insert("@type".into(), json!("Offer"));
        map.remove("target");
        map.remove("assignee");
    }
    Offer { id, definition_id: definition.id.clone(), policy: Arc::new(policy.policy.clone()), json }
}

impl State {
    fn recompute_offer(&mut self, definition_id: &str, graph: &Graph) {
        if let Some(old) = self.offers.remove(definition_id) {
            self.offer_ids.remove(&old.id);
        }
        let Some(definition) = self.definitions.get(definition_id) else {
            graph.remove_offer(definition_id);
            return;
        };
        match self.policies.get(&definition.value.contract_policy_id) {
            Some(policy) => {
                let offer = offer_for(&definition.value, &policy.value);
                graph.put_offer(definition_id, &offer.json);
                self.offer_ids.insert(offer.id.clone(), definition_id.to_owned());
                self.offers.insert(definition_id.to_owned(), Arc::new(offer));
            }
            None => graph.remove_offer(definition_id),
        }
    }

    fn selecting(&self, asset: &impl AssetFields) -> Vec<String> {
        if self.unpublished.contains(asset.asset_id()) {
            return Vec::new();
        }
        self.definitions.values().filter(|d| d.value.selects(asset)).map(|d| d.value.id.clone()).collect()
    }

    fn offer_ids_of(&self, asset_id: &str) -> Vec<&str> {
        self.offers_of(asset_id, None).into_iter().map(|o| o.id.as_str()).collect()
    }

    /// The DSP `Dataset` JSON of `asset` with the given offers.
    fn render(&self, asset: &Asset, offers: &[&Offer]) -> Rendered {
        let distributions: Vec<Distribution> = asset
            .data_address
            .formats()
            .iter()
            .map(|f| Distribution { format: (*f).to_owned(), access_service: self.service_id.clone() })
            .collect();
        let offers = offers.iter().map(|o| o.json.clone()).collect();
        let (own, shared) =
            DatasetDescription { id: &asset.id, properties: &asset.properties, offers, distributions: &distributions }
                .to_dsp_text_parts();
        Rendered { own: Arc::from(own), shared: Arc::from(shared) }
    }

    /// Keeps a dataset read at a start (or from the store), with its selecting list as the one already kept when
    /// there is one.
    fn keep(&mut self, Read { kept, selecting }: Read) {
        let selecting = self.selections.get(&selecting);
        self.assets.insert(kept.packed.id().to_owned(), Entry { selecting, ..Entry::new(kept) });
    }

    /// A packed dataset with the definitions that select it.
    fn selected(&self, kept: StoredAsset) -> Read {
        Read { selecting: self.selecting(&kept.packed), kept }
    }

    /// `rendered` with its offers' text as the one already kept when there is one.
    fn shared(&self, rendered: Rendered) -> Rendered {
        let mut texts = self.offer_texts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        Rendered { shared: texts.get(&rendered.shared), ..rendered }
    }

    /// The offers of `asset_id` (all of them, or those of `permitted` definitions only).
    fn offers_of(&self, asset_id: &str, permitted: Option<&[String]>) -> Vec<&Offer> {
        self.assets
            .get(asset_id)
            .into_iter()
            .flat_map(|entry| entry.selecting.iter())
            .filter(|d| permitted.is_none_or(|p| p.binary_search(d).is_ok()))
            .filter_map(|d| self.offers.get(d).map(Arc::as_ref))
            .collect()
    }

    /// Reads a page of stored assets on every core: each typed, packed, with the definitions that select it, in the
    /// page's order. An asset that cannot be read is left out and logged.
    fn read_page(&self, page: Vec<crate::store::Document>, file_root: &std::path::Path) -> Vec<Read> {
        on_every_core(page, |document| {
            let id = document.id.clone();
            let stored = read_asset(document, file_root)
                .map_err(|errors| tracing::error!(%id, ?errors, "stored asset cannot be read; left out"))
                .ok()?;
            let selecting = self.selecting(&*stored.value);
            Some(Read { kept: StoredAsset::pack(&stored), selecting })
        })
    }

    /// The DSP `Dataset` JSON of the dataset `entry` with the offers of every definition that selects it (its
    /// offers' text the one kept); `None` without offers.
    fn rendering(&self, entry: &Entry) -> Option<Rendered> {
        let offers: Vec<&Offer> = entry.selecting.iter().filter_map(|d| self.offers.get(d).map(Arc::as_ref)).collect();
        (!offers.is_empty()).then(|| self.shared(self.render(&entry.kept.packed.unpack(), &offers)))
    }

    /// The entry's DSP `Dataset` JSON with every offer it has, rendered now if no answer needed it before.
    fn rendered(&self, entry: &Entry) -> Option<Rendered> {
        entry.rendered.get_or_init(|| self.rendering(entry)).clone()
    }

    /// Sets what selects the dataset `id`; its text is rendered again when an answer needs it.
    fn select(&mut self, id: &str, selecting: &[String]) {
        let selecting = self.selections.get(selecting);
        if let Some(entry) = self.assets.get_mut(id) {
            entry.selecting = selecting;
            entry.rendered = std::sync::OnceLock::new();
        }
    }

    fn reindex_asset(&mut self, asset_id: &str, graph: &Graph) {
        let Some(asset) = self.assets.get(asset_id).map(|entry| entry.kept.packed.unpack()) else {
            graph.remove_dataset(asset_id);
            return;
        };
        let selecting = self.selecting(&asset);
        self.select(asset_id, &selecting);
        if self.unpublished.contains(asset_id) {
            graph.remove_dataset(asset_id);
        } else {
            graph.put_dataset(&asset, &self.offer_ids_of(asset_id), asset.data_address.formats());
        }
    }

    /// After a policy change: the offers of the definitions whose contract policy it is.
    fn reindex_users_of(&mut self, policy_id: &str, graph: &Graph) {
        let users: Vec<String> = self
            .definitions
            .values()
            .filter(|d| d.value.contract_policy_id == policy_id)
            .map(|d| d.value.id.clone())
            .collect();
        for definition in users {
            self.reindex_definition(&definition, graph);
        }
    }

    /// After a definition or policy change: who selects what, and the graphs of the datasets concerned.
    fn reindex_definition(&mut self, definition_id: &str, graph: &Graph) {
        self.recompute_offer(definition_id, graph);
        let ids: Vec<String> = self.assets.keys().cloned().collect();
        for id in ids {
            let entry = &self.assets[&id];
            if self.unpublished.contains(&id) {
                continue;
            }
            let selects = self.definitions.get(definition_id).is_some_and(|d| d.value.selects(&entry.kept.packed));
            let had = entry.selecting.iter().any(|d| d == definition_id);
            if selects != had || selects {
                let mut list: Vec<String> = entry.selecting.iter().filter(|d| *d != definition_id).cloned().collect();
                if selects {
                    list.push(definition_id.to_owned());
                    list.sort();
                }
                let asset = entry.kept.packed.unpack();
                self.select(&id, &list);
                graph.put_dataset(&asset, &self.offer_ids_of(&id), asset.data_address.formats());
            }
        }
    }
}

impl Catalogue {
    /// Reads the catalogue from the store and builds every view. A stored resource that can no longer be read (for
    /// example a file outside a changed file root) is kept in the store, left out of the views, and logged.
    pub async fn load(
        documents: Documents,
        governance: crate::store::Governance,
        audit: crate::store::AuditStore,
        approval: bool,
        service: ServiceInfo,
        graphs: graphs::Graphs,
    ) -> Result<Arc<Catalogue>, StoreError> {
        // The log's size before anything is read: the changes after it are followed (decision 0040).
        let size = audit.audit_size().await?;
        let followed = std::sync::atomic::AtomicU64::new(size);
        let graph = Graph::new(
            &service.catalog_id(),
            &service.service_id(),
            &service.endpoint_url,
            &service.participant_id,
            &service.publisher_name,
            graphs,
        );
        // A graph on disk is resumed where it stood when it was built for this catalogue over this log; otherwise it
        // is built again from nothing (decision 0049).
        let resume_from = if graph.is_on_disk() { resumable(&graph, &audit, size).await? } else { None };
        if graph.is_on_disk() && resume_from.is_none() {
            graph.clear();
        }
        graph.describe();
        let unpublished = governance.unpublished().await?.into_iter().collect();
        let mut state = State { service_id: service.service_id(), unpublished, ..State::default() };
        for document in documents.list_documents(DocumentKind::PolicyDefinition).await? {
            put(&mut state.policies, &document.id, Some(read_policy(&document)), DocumentKind::PolicyDefinition);
        }
        for document in documents.list_documents(DocumentKind::ContractDefinition).await? {
            put(
                &mut state.definitions,
                &document.id,
                Some(read_definition(&document)),
                DocumentKind::ContractDefinition,
            );
        }
        // Definitions stored before their references were kept get them now (once: the schema guards their policies
        // from then on).
        let referring = documents.referring(DocumentKind::ContractDefinition).await?;
        for definition in state.definitions.values().filter(|d| !referring.contains(&d.value.id)) {
            let definition = &definition.value;
            if let Err(error) = documents
                .ensure_references(DocumentKind::ContractDefinition, &definition.id, &definition.references())
                .await
            {
                tracing::error!(id = %definition.id, %error, "a contract definition's policies cannot be recorded as used");
            }
        }
        let definition_ids: Vec<String> = state.definitions.keys().cloned().collect();
        for id in &definition_ids {
            state.recompute_offer(id, &graph);
        }
        let started = std::time::Instant::now();
        // What a kept file must have been written for: this build, as it started (an executable replaced meanwhile
        // is another build).
        let kept_for = kept::made_for(&service.file_root);
        let kept = match graph.dir().zip(kept_for.clone()) {
            Some((dir, made_for)) => {
                read_kept(state, &documents, &audit, dir, made_for, size, &service.file_root).await?
            }
            None => (state, None),
        };
        let (state, datasets_start, kept_at) = match kept {
            (state, Some((reread, kept_at))) => (state, DatasetsStart::Kept { reread }, kept_at),
            (state, None) => (read_whole(state, &documents, &service.file_root).await?, DatasetsStart::Read, None),
        };
        tracing::info!(
            assets = state.assets.len(),
            policies = state.policies.len(),
            contract_definitions = state.definitions.len(),
            from = ?datasets_start,
            ms = started.elapsed().as_millis() as u64,
            "catalogue loaded"
        );
        // Writes wait until the graph holds every dataset: the build reads the views, and a write in between would
        // be in the graph twice.
        let writes = Arc::new(tokio::sync::Mutex::new(()));
        let building = writes.clone().try_lock_owned().expect("a new lock is free");
        let catalogue = Arc::new(Catalogue {
            state: RwLock::new(state),
            writes,
            graph,
            service,
            documents,
            governance,
            approval,
            audit,
            followed,
            followed_kept: std::sync::Mutex::new(None),
            graph_start: std::sync::OnceLock::new(),
            datasets_start,
            kept_for,
            kept_at: tokio::sync::Mutex::new(kept_at),
        });
        tokio::spawn(catalogue.clone().build_graph(building, resume_from, size));
        Ok(catalogue)
    }

    /// Fills the RDF graph after the views are loaded: the connector serves meanwhile, SPARQL waits for the graph
    /// (decision 0042), and catalogue writes wait on `_writes`, held since the load. A graph on disk that can be
    /// resumed from `resume_from` only takes the changes since (decision 0049); any other is built whole. Either way
    /// it then follows the log from `size`, the size the views were read at.
    async fn build_graph(
        self: Arc<Self>,
        _writes: tokio::sync::OwnedMutexGuard<()>,
        resume_from: Option<u64>,
        size: u64,
    ) {
        let started = std::time::Instant::now();
        let resumed = match resume_from {
            None => None,
            Some(from) => match self.resume(from, size).await {
                Ok(resumed) => resumed,
                Err(error) => {
                    tracing::warn!(%error, "the catalogue graph on disk cannot be resumed; building it again");
                    None
                }
            },
        };
        match resumed {
            Some(rewritten) => {
                tracing::info!(
                    from = resume_from.unwrap_or_default(),
                    rewritten,
                    ms = started.elapsed().as_millis() as u64,
                    "catalogue graph resumed from disk"
                );
                self.graph_start.set(GraphStart::Resumed { rewritten }).ok();
            }
            None => {
                if resume_from.is_some() {
                    // What the resumption may have written half is built again from nothing.
                    self.graph.clear();
                    self.graph.describe();
                    let state = self.read();
                    for (definition, offer) in &state.offers {
                        self.graph.put_offer(definition, &offer.json);
                    }
                }
                self.build_whole().await;
                self.graph_start.set(GraphStart::Built).ok();
            }
        }
        // Recorded before the graph is called ready: a connector stopped as soon as it is (a benchmark's first start
        // does just that) still resumes it at its next start.
        self.keep_followed(size).await;
        self.graph.mark_ready();
        // Counting a graph on disk reads all of it: only one in memory says its size.
        let triples = (!self.graph.is_on_disk()).then(|| self.graph.len());
        tracing::info!(?triples, ms = started.elapsed().as_millis() as u64, "catalogue graph ready");
        // Datasets read whole are kept beside the graph, for the next start (also one after a crash) to read back.
        drop(_writes);
        if self.datasets_start == DatasetsStart::Read {
            self.keep_datasets().await;
        }
    }

    /// Keeps the views' datasets in a file beside a graph on disk, for the next start to read back (decision 0053),
    /// unless the file kept already follows the log as far as the views do. A file that cannot be written is
    /// removed and logged: the next start reads the store.
    pub async fn keep_datasets(&self) {
        let (Some(dir), Some(made_for)) = (self.graph.dir(), self.kept_for.clone()) else { return };
        let dir = dir.to_owned();
        let mut kept_at = self.kept_at.lock().await;
        // Every change below the size followed is in the views (some after it may be too: a start reads those again).
        let size = self.followed.load(std::sync::atomic::Ordering::Acquire);
        if *kept_at == Some(size) {
            return;
        }
        let root = match log_root(&self.audit, size).await {
            Ok(Some(root)) => root,
            Ok(None) => return,
            Err(error) => {
                tracing::warn!(%error, "cannot read the audit log's root; the catalogue's datasets are not kept");
                return;
            }
        };
        let datasets: Vec<StoredAsset> = self.read().assets.values().map(|entry| entry.kept.clone()).collect();
        let header = kept::Header { size, root, made_for, count: datasets.len() as u64 };
        let started = std::time::Instant::now();
        let written = tokio::task::spawn_blocking(move || {
            let written = kept::write(&dir, &header, &datasets);
            if written.is_err() {
                let _ = kept::forget(&dir);
            }
            written
        })
        .await;
        match written {
            Ok(Ok(())) => {
                *kept_at = Some(size);
                tracing::info!(
                    size,
                    ms = started.elapsed().as_millis() as u64,
                    "catalogue datasets kept beside the graph"
                );
            }
            Ok(Err(error)) => {
                tracing::warn!(%error, "the catalogue's datasets could not be kept beside the graph; the next start reads the store")
            }
            Err(error) => tracing::warn!(%error, "keeping the catalogue's datasets stopped"),
        }
    }

    /// How the datasets came into the views at the start.
    pub fn datasets_start(&self) -> DatasetsStart {
        self.datasets_start
    }

    /// Brings a graph on disk from where it stood (`from`) to the views, read at `size`: the datasets the log says
    /// changed meanwhile are written again, and the named graphs of datasets and offers are made the views' (what a
    /// lost or half-written change could leave). `None` when a policy or contract definition changed meanwhile:
    /// offers of any dataset may differ, and the graph is built whole. Answers how many datasets were written.
    async fn resume(self: &Arc<Self>, from: u64, size: u64) -> Result<Option<usize>, StoreError> {
        let changes = Changes::read(&self.audit, from, size).await?;
        if changes.documents.keys().any(|kind| *kind != DocumentKind::Asset) {
            return Ok(None);
        }
        let mut changed: std::collections::BTreeSet<String> =
            changes.documents.into_values().flatten().chain(changes.publications).collect();
        let catalogue = self.clone();
        let resumed = tokio::task::spawn_blocking(move || -> Result<usize, oxigraph::store::StorageError> {
            let (datasets, offers) = catalogue.graph.held()?;
            let state = catalogue.read();
            let published: std::collections::HashSet<NamedNode> = state
                .assets
                .keys()
                .filter(|id| !state.unpublished.contains(*id))
                .map(|id| rdf::dataset_graph(id))
                .collect();
            let offered: std::collections::HashSet<NamedNode> =
                state.offers.keys().map(|definition| rdf::offer_graph(definition)).collect();
            let datasets: std::collections::HashSet<NamedNode> = datasets.into_iter().collect();
            for name in datasets.difference(&published).chain(offers.iter().filter(|o| !offered.contains(*o))) {
                catalogue.graph.remove_graph(name);
            }
            // Datasets missing from the graph are written too (their ids are found through the views).
            changed.extend(
                state
                    .assets
                    .keys()
                    .filter(|id| !state.unpublished.contains(*id) && !datasets.contains(&rdf::dataset_graph(id)))
                    .cloned(),
            );
            for id in &changed {
                match state.assets.get(id) {
                    Some(asset) if !state.unpublished.contains(id) => {
                        let asset = asset.kept.packed.unpack();
                        catalogue.graph.put_dataset(&asset, &state.offer_ids_of(id), asset.data_address.formats());
                    }
                    _ => catalogue.graph.remove_dataset(id),
                }
            }
            Ok(changed.len())
        })
        .await
        .map_err(|error| StoreError::Corrupt(format!("resuming the catalogue graph stopped: {error}")))?;
        match resumed {
            Ok(rewritten) => Ok(Some(rewritten)),
            Err(error) => {
                tracing::warn!(%error, "the catalogue graph on disk cannot be read; building it again");
                Ok(None)
            }
        }
    }

    /// Tells a graph on disk that every catalogue change below `size` is in it (at most every few seconds while
    /// the follower goes on).
    async fn keep_followed(&self, size: u64) {
        if !self.graph.is_on_disk() {
            return;
        }
        match log_root(&self.audit, size).await {
            Ok(Some(root)) => self.graph.keep_followed(size, &root),
            Ok(None) => {}
            Err(error) => tracing::warn!(%error, "cannot read the audit log's root; the graph records it later"),
        }
    }

    /// How the graph came to be after the start: built whole or resumed from disk (`None` until it is ready).
    pub fn graph_start(&self) -> Option<GraphStart> {
        self.graph_start.get().copied()
    }

    /// Lets go of a graph on disk, so that a connector started next in this process can open it.
    pub fn close_graph(&self) {
        self.graph.close();
    }

    /// Puts every published dataset's description into the RDF graph, a page at a time.
    async fn build_whole(self: &Arc<Self>) {
        let catalogue = self.clone();
        let built = tokio::task::spawn_blocking(move || {
            let mut after: Option<String> = None;
            loop {
                let quads: Vec<rdf::Quad> = {
                    let state = catalogue.read();
                    let from = after.as_ref().map_or(Bound::Unbounded, |id| Bound::Excluded(id.clone()));
                    let page: Vec<(&String, &Entry)> =
                        state.assets.range((from, Bound::Unbounded)).take(LOAD_PAGE as usize).collect();
                    let Some((last, _)) = page.last() else { break };
                    after = Some((*last).clone());
                    page.iter()
                        .filter(|(id, _)| !state.unpublished.contains(*id))
                        .flat_map(|(id, entry)| {
                            let asset = entry.kept.packed.unpack();
                            let offers = state.offer_ids_of(id);
                            catalogue.graph.dataset_quads(&asset, &offers, asset.data_address.formats())
                        })
                        .collect()
                };
                catalogue.graph.load_datasets(quads);
            }
        })
        .await;
        if let Err(error) = built {
            tracing::error!(%error, "building the catalogue graph failed; SPARQL answers from what it holds");
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    // ---- assets ----

    pub async fn create_asset(&self, asset: Asset) -> Result<Stored<Asset>, CatalogueError> {
        let _serial = self.writes.lock().await;
        self.catch_up_serialised().await?;
        if self.approval {
            // Held first: a crash between the two writes leaves a request for a dataset that does not exist, never a
            // dataset published without its second key.
            if self.read().assets.contains_key(&asset.id) {
                return Err(CatalogueError::Conflict(format!("asset `{}` already exists", asset.id)));
            }
            self.governance.request_publication(&asset.id, true).await?;
            self.write().unpublished.insert(asset.id.clone());
        }
        let document = self.documents.insert_document(DocumentKind::Asset, &asset.id, &asset.expanded).await?;
        let stored = Stored::of(asset, &document);
        let mut state = self.write();
        state.assets.insert(stored.value.id.clone(), Entry::new(StoredAsset::pack(&stored)));
        state.reindex_asset(&stored.value.id, &self.graph);
        Ok(stored)
    }

    pub async fn replace_asset(&self, asset: Asset) -> Result<(), CatalogueError> {
        let _serial = self.writes.lock().await;
        self.catch_up_serialised().await?;
        // A rejected dataset that changes is asked for again.
        if self.read().unpublished.contains(&asset.id) {
            self.governance.request_publication(&asset.id, false).await?;
        }
        let document = self.documents.replace_document(DocumentKind::Asset, &asset.id, &asset.expanded).await?;
        let mut state = self.write();
        let id = asset.id.clone();
        state.assets.insert(id.clone(), Entry::new(StoredAsset::pack(&Stored::of(asset, &document))));
        state.reindex_asset(&id, &self.graph);
        Ok(())
    }

    pub async fn delete_asset(&self, id: &str) -> Result<(), CatalogueError> {
        let _serial = self.writes.lock().await;
        self.catch_up_serialised().await?;
        {
            let state = self.read();
            let Some(asset) = state.assets.get(id) else {
                return Err(CatalogueError::NotFound(format!("asset `{id}` not found")));
            };
            let referencing: Vec<&str> = state
                .definitions
                .values()
                .filter(|d| !d.value.assets_selector.is_empty() && d.value.selects(&asset.kept.packed))
                .map(|d| d.value.id.as_str())
                .collect();
            if !referencing.is_empty() {
                return Err(CatalogueError::Conflict(format!(
                    "asset `{id}` is selected by contract definition(s) {}; change or delete them first",
                    referencing.join(", ")
                )));
            }
        }
        self.documents.delete_document(DocumentKind::Asset, id).await?;
        let mut state = self.write();
        state.assets.remove(id);
        state.unpublished.remove(id);
        state.reindex_asset(id, &self.graph);
        Ok(())
    }

    /// Publishes a dataset a second key approved: its offers, graph and catalogue answers appear.
    pub async fn publish(&self, id: &str) {
        let _serial = self.writes.lock().await;
        if let Err(error) = self.catch_up_serialised().await {
            tracing::warn!(%error, "cannot follow the catalogue's changes before publishing; the follower will");
        }
        let mut state = self.write();
        if state.unpublished.remove(id) {
            state.reindex_asset(id, &self.graph);
        }
    }

    // ---- replicas ----

    /// Brings the views up to what the store holds after other replicas of this connector wrote to it (decision
    /// 0040). Every replica calls it a few times a second, and every write
    /// calls it first, so that a write is checked against what any replica wrote before (a contract definition
    /// naming a policy just made through another replica).
    pub async fn catch_up(&self) -> Result<(), StoreError> {
        let _serial = self.writes.lock().await;
        self.catch_up_serialised().await
    }

    /// [`Catalogue::catch_up`] with the write lock held: reads the audit log's catalogue entries after the size
    /// followed, re-reads each document they name whose stored version differs from the one held here, and each
    /// publication decided. Changes this replica made itself are found current and skipped.
    async fn catch_up_serialised(&self) -> Result<(), StoreError> {
        let seen = self.followed.load(std::sync::atomic::Ordering::Acquire);
        let size = self.audit.audit_size().await?;
        if size <= seen {
            return Ok(());
        }
        let Changes { mut documents, mut publications } = Changes::read(&self.audit, seen, size).await?;
        // Policies before the definitions that name them, definitions before the datasets they select.
        for kind in KIND_ORDER {
            let Some(mut ids) = documents.remove(&kind) else { continue };
            ids.sort();
            ids.dedup();
            self.refresh(kind, &ids).await?;
        }
        publications.sort();
        publications.dedup();
        for asset in publications {
            let held = self.governance.publication(&asset).await?.is_some_and(|p| p.state != "approved");
            let mut state = self.write();
            let changed = if held { state.unpublished.insert(asset.clone()) } else { state.unpublished.remove(&asset) };
            if changed {
                state.reindex_asset(&asset, &self.graph);
            }
        }
        self.followed.store(size, std::sync::atomic::Ordering::Release);
        let now = std::time::Instant::now();
        let due = {
            let mut kept = self.followed_kept.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            let due = kept.is_none_or(|at| now.duration_since(at) >= KEEP_FOLLOWED_EVERY);
            if due {
                *kept = Some(now);
            }
            due
        };
        if due {
            self.keep_followed(size).await;
        }
        Ok(())
    }

    /// Re-reads the documents of `kind` among `ids` whose stored version differs from the one held here.
    async fn refresh(&self, kind: DocumentKind, ids: &[String]) -> Result<(), StoreError> {
        let stored = self.documents.versions(kind, ids).await?;
        let held = |state: &State, id: &str| match kind {
            DocumentKind::Asset => state.assets.get(id).map(|entry| entry.kept.version),
            DocumentKind::PolicyDefinition => state.policies.get(id).map(|s| s.version),
            DocumentKind::ContractDefinition => state.definitions.get(id).map(|s| s.version),
        };
        let stale: Vec<&String> = {
            let state = self.read();
            ids.iter().filter(|id| held(&state, id) != stored.get(*id).copied()).collect()
        };
        for id in stale {
            let document = self.documents.get_document(kind, id).await?;
            let mut state = self.write();
            let graph = &self.graph;
            match kind {
                DocumentKind::Asset => {
                    if document.is_none() {
                        state.unpublished.remove(id);
                    }
                    let read = document
                        .map(|d| read_asset(d, &self.service.file_root).map(|s| Entry::new(StoredAsset::pack(&s))));
                    put(&mut state.assets, id, read, kind);
                    state.reindex_asset(id, graph);
                }
                DocumentKind::PolicyDefinition => {
                    put(&mut state.policies, id, document.as_ref().map(read_policy), kind);
                    state.reindex_users_of(id, graph);
                }
                DocumentKind::ContractDefinition => {
                    put(&mut state.definitions, id, document.as_ref().map(read_definition), kind);
                    state.reindex_definition(id, graph);
                }
            }
        }
        Ok(())
    }

    /// The asset with this id, typed.
    pub fn asset(&self, id: &str) -> Option<Stored<Asset>> {
        self.read().assets.get(id).map(|entry| entry.kept.unpack())
    }

    /// Every asset as the views keep it (packed), in id order: filter them, and unpack those needed whole.
    pub fn assets(&self) -> Vec<StoredAsset> {
        self.read().assets.values().map(|entry| entry.kept.clone()).collect()
    }

    /// How many datasets, policy definitions and contract definitions the catalogue holds.
    pub fn counts(&self) -> (usize, usize, usize) {
        let state = self.read();
        (state.assets.len(), state.policies.len(), state.definitions.len())
    }

    // ---- policy definitions ----

    pub async fn create_policy(&self, policy: PolicyDefinition) -> Result<Stored<PolicyDefinition>, CatalogueError> {
        let _serial = self.writes.lock().await;
        self.catch_up_serialised().await?;
        let document =
            self.documents.insert_document(DocumentKind::PolicyDefinition, &policy.id, &policy.expanded).await?;
        let stored = Stored::of(policy, &document);
        let mut state = self.write();
        state.policies.insert(stored.value.id.clone(), stored.clone());
        state.reindex_users_of(&stored.value.id, &self.graph);
        Ok(stored)
    }

    pub async fn replace_policy(&self, policy: PolicyDefinition) -> Result<(), CatalogueError> {
        let _serial = self.writes.lock().await;
        self.catch_up_serialised().await?;
        let document =
            self.documents.replace_document(DocumentKind::PolicyDefinition, &policy.id, &policy.expanded).await?;
        let mut state = self.write();
        let id = policy.id.clone();
        state.policies.insert(id.clone(), Stored::of(policy, &document));
        state.reindex_users_of(&id, &self.graph);
        Ok(())
    }

    pub async fn delete_policy(&self, id: &str) -> Result<(), CatalogueError> {
        let _serial = self.writes.lock().await;
        self.catch_up_serialised().await?;
        {
            let state = self.read();
            if !state.policies.contains_key(id) {
                return Err(CatalogueError::NotFound(format!("policy definition `{id}` not found")));
            }
            let referencing: Vec<&str> = state
                .definitions
                .values()
                .filter(|d| d.value.access_policy_id == id || d.value.contract_policy_id == id)
                .map(|d| d.value.id.as_str())
                .collect();
            if !referencing.is_empty() {
                return Err(CatalogueError::Conflict(format!(
                    "policy definition `{id}` is used by contract definition(s) {}; change or delete them first",
                    referencing.join(", ")
                )));
            }
        }
        // A definition naming it that another replica made a moment ago: the schema keeps it (`InUse`, a 409).
        self.documents.delete_document(DocumentKind::PolicyDefinition, id).await?;
        self.write().policies.remove(id);
        Ok(())
    }

    pub fn policy(&self, id: &str) -> Option<Stored<PolicyDefinition>> {
        self.read().policies.get(id).cloned()
    }

    pub fn policies(&self) -> Vec<Stored<PolicyDefinition>> {
        self.read().policies.values().cloned().collect()
    }

    // ---- contract definitions ----

    fn check_references(&self, definition: &ContractDefinition) -> Result<(), CatalogueError> {
        let state = self.read();
        let mut errors = Vec::new();
        for (field, id) in
            [("accessPolicyId", &definition.access_policy_id), ("contractPolicyId", &definition.contract_policy_id)]
        {
            if !state.policies.contains_key(id) {
                errors.push(FieldError {
                    path: field.into(),
                    message: format!("names no policy definition (`{id}`)"),
                    invalid_value: Some(json!(id)),
                });
            }
        }
        if errors.is_empty() { Ok(()) } else { Err(CatalogueError::Invalid(errors)) }
    }

    pub async fn create_definition(
        &self,
        definition: ContractDefinition,
    ) -> Result<Stored<ContractDefinition>, CatalogueError> {
        let _serial = self.writes.lock().await;
        self.catch_up_serialised().await?;
        self.check_references(&definition)?;
        let document = self
            .documents
            .insert_referring(
                DocumentKind::ContractDefinition,
                &definition.id,
                &definition.expanded,
                &definition.references(),
            )
            .await
            .map_err(policy_gone)?;
        let stored = Stored::of(definition, &document);
        let mut state = self.write();
        state.definitions.insert(stored.value.id.clone(), stored.clone());
        state.reindex_definition(&stored.value.id, &self.graph);
        Ok(stored)
    }

    pub async fn replace_definition(&self, definition: ContractDefinition) -> Result<(), CatalogueError> {
        let _serial = self.writes.lock().await;
        self.catch_up_serialised().await?;
        self.check_references(&definition)?;
        let document = self
            .documents
            .replace_referring(
                DocumentKind::ContractDefinition,
                &definition.id,
                &definition.expanded,
                Some(&definition.references()),
            )
            .await
            .map_err(policy_gone)?;
        let mut state = self.write();
        let id = definition.id.clone();
        state.definitions.insert(id.clone(), Stored::of(definition, &document));
        state.reindex_definition(&id, &self.graph);
        Ok(())
    }

    pub async fn delete_definition(&self, id: &str) -> Result<(), CatalogueError> {
        let _serial = self.writes.lock().await;
        self.catch_up_serialised().await?;
        self.documents.delete_document(DocumentKind::ContractDefinition, id).await.map_err(|e| match e {
            StoreError::NotFound { .. } => CatalogueError::NotFound(format!("contract definition `{id}` not found")),
            other => other.into(),
        })?;
        let mut state = self.write();
        state.definitions.remove(id);
        state.reindex_definition(id, &self.graph);
        Ok(())
    }

    pub fn definition(&self, id: &str) -> Option<Stored<ContractDefinition>> {
        self.read().definitions.get(id).cloned()
    }

    pub fn definitions(&self) -> Vec<Stored<ContractDefinition>> {
        self.read().definitions.values().cloned().collect()
    }

    /// The offers of a dataset: one per contract definition that selects it, by definition id.
    pub fn offers_for(&self, asset_id: &str) -> Vec<Arc<Offer>> {
        let state = self.read();
        let selecting = state.assets.get(asset_id).into_iter().flat_map(|entry| entry.selecting.iter());
        selecting.filter_map(|d| state.offers.get(d).cloned()).collect()
    }

    /// The offer with this id and the definition it comes from.
    pub fn offer(&self, offer_id: &str) -> Option<(Arc<Offer>, Stored<ContractDefinition>)> {
        let state = self.read();
        let definition_id = state.offer_ids.get(offer_id)?;
        Some((state.offers.get(definition_id)?.clone(), state.definitions.get(definition_id)?.clone()))
    }

    /// Whether a contract definition's access policy (and, unless `access_only`, its contract policy) needs the
    /// requester's verified claims.
    pub fn policies_use_claims(&self, access_only: bool) -> bool {
        let state = self.read();
        let uses = |id: &str| state.policies.get(id).is_some_and(|p| p.value.policy.uses_claims());
        state.definitions.values().any(|definition| {
            uses(&definition.value.access_policy_id) || (!access_only && uses(&definition.value.contract_policy_id))
        })
    }

    /// The definitions whose access policy permits `requester`; denials are logged with their reason.
    fn permitted_definitions(&self, state: &State, requester: &RequestContext) -> Vec<String> {
        let mut permitted = Vec::new();
        for definition in state.definitions.values() {
            let definition = &definition.value;
            let Some(access) = state.policies.get(&definition.access_policy_id) else { continue };
            if hanse_policy::permits(&access.value.policy, "use", requester) {
                permitted.push(definition.id.clone());
            } else if tracing::enabled!(tracing::Level::DEBUG) {
                let decision = hanse_policy::evaluate(&access.value.policy, "use", requester);
                tracing::debug!(
                    requester = requester.participant.as_deref().unwrap_or("-"),
                    contract_definition = %definition.id,
                    access_policy = %definition.access_policy_id,
                    reason = %decision.reason,
                    "datasets of this contract definition are hidden from the requester"
                );
            }
        }
        permitted.sort();
        permitted
    }

    /// The dataset as `requester` may see it: with the offers of the permitted definitions, `None` when there are
    /// none. The common case (every offer visible) is the entry's text, rendered once.
    fn dataset_json(&self, state: &State, entry: &Entry, permitted: &[String]) -> Option<Rendered> {
        // The common case: every definition selecting the dataset is permitted, and its text is kept.
        if entry.selecting.iter().all(|d| permitted.binary_search(d).is_ok()) {
            return state.rendered(entry);
        }
        let visible = state.offers_of(entry.kept.packed.id(), Some(permitted));
        if visible.is_empty() {
            return None;
        }
        Some(state.render(&entry.kept.packed.unpack(), &visible))
    }

    fn matches(asset: &PackedAsset, filter: &CatalogFilter) -> bool {
        let keywords_hold = filter.keywords.iter().all(|keyword| {
            KEYWORD_PROPERTIES.iter().flat_map(|p| asset.texts(p)).any(|text| text.to_lowercase().contains(keyword))
        });
        keywords_hold && filter.properties.iter().all(|(iri, value)| query::matches(&asset.field(iri), "=", value))
    }

    /// One page of the datasets `requester` may see, after or before a dataset id, matching `filter`.
    pub fn page(
        &self,
        requester: &RequestContext,
        after: Option<&str>,
        before: Option<&str>,
        limit: usize,
        filter: &CatalogFilter,
    ) -> CatalogPage {
        let state = self.read();
        let permitted = self.permitted_definitions(&state, requester);
        let mut page = CatalogPage::default();
        if permitted.is_empty() {
            return page;
        }
        let visible = |entry: &Entry| {
            Self::matches(&entry.kept.packed, filter).then(|| self.dataset_json(&state, entry, &permitted)).flatten()
        };
        if let Some(before) = before {
            let mut collected: Vec<(String, Rendered)> = Vec::new();
            let mut more = false;
            for (id, asset) in state.assets.range::<str, _>((Bound::Unbounded, Bound::Excluded(before))).rev() {
                if let Some(json) = visible(asset) {
                    if collected.len() == limit {
                        more = true;
                        break;
                    }
                    collected.push((id.clone(), json));
                }
            }
            collected.reverse();
            page.previous_before = if more { collected.first().map(|(id, _)| id.clone()) } else { None };
            page.next_after = collected.last().map(|(id, _)| id.clone());
            page.datasets = collected.into_iter().map(|(_, json)| json).collect();
            return page;
        }
        let start = match after {
            Some(after) => Bound::Excluded(after),
            None => Bound::Unbounded,
        };
        let mut last = None;
        for (id, asset) in state.assets.range::<str, _>((start, Bound::Unbounded)) {
            if let Some(json) = visible(asset) {
                if page.datasets.len() == limit {
                    page.next_after = last;
                    break;
                }
                if page.datasets.is_empty() && after.is_some() {
                    page.previous_before = Some(id.clone());
                }
                last = Some(id.clone());
                page.datasets.push(json);
            }
        }
        page
    }

    /// One dataset, if `requester` may see it (DSP `Dataset` JSON text).
    pub fn dataset(&self, requester: &RequestContext, id: &str) -> Option<Rendered> {
        let state = self.read();
        let permitted = self.permitted_definitions(&state, requester);
        self.dataset_json(&state, state.assets.get(id)?, &permitted)
    }

    /// Every dataset `requester` may see, with its DSP `Dataset` JSON text (offers included), in id order.
    pub fn visible(&self, requester: &RequestContext) -> Vec<(Arc<Asset>, Rendered)> {
        let state = self.read();
        let permitted = self.permitted_definitions(&state, requester);
        state
            .assets
            .values()
            .filter_map(|entry| {
                let json = self.dataset_json(&state, entry, &permitted)?;
                Some((Arc::new(entry.kept.packed.unpack()), json))
            })
            .collect()
    }

    /// A read-only SPARQL query over the catalogue graph.
    pub fn sparql(
        &self,
        query: &str,
        accept: &str,
        limits: &rdf::SparqlLimits,
    ) -> Result<(&'static str, Vec<u8>), rdf::SparqlError> {
        self.graph.query(query, accept, limits)
    }

    /// Whether the graph holds every dataset (and a graph on disk has recorded where it stands): SPARQL answers.
    pub fn graph_ready(&self) -> bool {
        self.graph.wait_ready(std::time::Duration::ZERO)
    }

    /// Waits (up to `timeout`) until the graph holds every dataset; whether it does.
    pub fn graph_built(&self, timeout: std::time::Duration) -> bool {
        self.graph.wait_ready(timeout)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rendered(own: &str, shared: &str) -> Rendered {
        Rendered { own: Arc::from(own), shared: Arc::from(shared) }
    }

    #[test]
    fn datasets_with_the_same_offers_share_one_text_of_them_and_parts_no_longer_used_are_let_go() {
        let mut state = State::default();
        for id in ["a", "b"] {
            let body =
                serde_json::json!({"@id": id, "dataAddress": {"type": "HttpData", "baseUrl": "https://h.example/"}});
            let asset = Asset::from_body(&body, std::path::Path::new("/files")).unwrap();
            let kept = StoredAsset { packed: PackedAsset::pack(&asset), created_at: 0, version: 1 };
            state.keep(Read { kept, selecting: vec!["all".into()] });
        }
        assert!(Arc::ptr_eq(&state.assets["a"].selecting, &state.assets["b"].selecting));
        let render = |state: &mut State, id: &str, own: &str, shared: &str| {
            let text = state.shared(rendered(own, shared));
            state.assets.get_mut(id).unwrap().rendered = std::sync::OnceLock::from(Some(text));
        };
        render(&mut state, "a", r#"{"@id":"a""#, r#","hasPolicy":[1]}"#);
        render(&mut state, "b", r#"{"@id":"b""#, r#","hasPolicy":[1]}"#);
        let text = |state: &State, id: &str| state.rendered(&state.assets[id]).unwrap();
        assert!(Arc::ptr_eq(&text(&state, "a").shared, &text(&state, "b").shared));
        assert_eq!(text(&state, "b").text(), r#"{"@id":"b","hasPolicy":[1]}"#);
        assert_eq!(text(&state, "b").size(), text(&state, "b").text().len());
        // The offers of both datasets change a hundred times: the parts kept stay a few.
        for round in 0..100 {
            for id in ["a", "b"] {
                render(&mut state, id, "{", &format!(r#","hasPolicy":[{round}]}}"#));
            }
        }
        let kept = state.offer_texts.lock().unwrap().kept.len();
        assert!(kept <= 2 + 16, "{kept} parts kept");
        assert_eq!(state.selections.kept.len(), 1);
        assert!(Arc::ptr_eq(&text(&state, "a").shared, &text(&state, "b").shared));
        assert_eq!(text(&state, "a").text(), r#"{,"hasPolicy":[99]}"#);
        // A new selection forgets the text; without an offer for `all`, there is none to render.
        state.select("a", &["all".to_owned()]);
        assert!(state.rendered(&state.assets["a"]).is_none());
    }
}
