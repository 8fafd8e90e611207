//! The RDF catalogue: an in-memory oxigraph store derived from the SQL state. Each dataset lives in a named graph of
//! its own (so that an update replaces it whole, in one transaction), each offer in another; SPARQL sees their union
//! as the default graph. The store reclaims what rewrites leave behind ([`super::graphs`]).

use std::collections::HashMap;
use std::time::Duration;

use hanse_self_descriptions::dcat::{self, Properties, Term};
use hanse_vocab::ns::{DCAT, DCT, FOAF, HANSE, ODRL, RDF};
use oxigraph::io::{RdfFormat, RdfParser, RdfSerializer};
pub use oxigraph::model::Quad;
use oxigraph::model::{BlankNode, GraphName, Literal, NamedNode, NamedOrBlankNode, Term as RdfTerm};
use oxigraph::sparql::results::{QueryResultsFormat, QueryResultsSerializer};
use oxigraph::sparql::{CancellationToken, QueryResults, SparqlEvaluator};
use oxigraph::store::Store;
use serde_json::Value as Json;

use super::model::Asset;

/// Why a SPARQL request was refused.
#[derive(Debug, thiserror::Error)]
pub enum SparqlError {
    #[error("SPARQL syntax error: {0}")]
    Syntax(String),
    #[error("the endpoint is read-only: SPARQL updates are not allowed")]
    Update,
    #[error("{0}")]
    NotAcceptable(String),
    #[error("the query ran longer than {seconds} s and was cancelled ({setting})")]
    Timeout { seconds: u64, setting: &'static str },
    #[error("the query is {bytes} bytes, more than sparql.max_query_bytes = {limit}")]
    TooLarge { bytes: usize, limit: usize },
    #[error("the query nests brackets deeper than sparql.max_depth = {0}")]
    TooDeep(usize),
    #[error(
        "the query nests negations `!(` deeper than {0} or writes more than three `!` in a row (parsing time doubles \
         with each level)"
    )]
    NegationsTooDeep(usize),
    #[error("the query answers more than sparql.max_rows = {0} results; narrow it or add a LIMIT")]
    TooManyRows(usize),
    #[error("the query needed more memory than sparql.max_memory_mb = {0} and was cancelled")]
    TooMuchMemory(usize),
    #[error("{0} is not supported: this endpoint answers from its own graph only")]
    Unsupported(&'static str),
    #[error("query evaluation failed: {0}")]
    Evaluation(String),
    #[error("the catalogue graph is still being built after the start ({0} s waited); try again in a moment")]
    Building(u64),
}

impl SparqlError {
    /// Whether the request is at fault (a 4xx): its text, its size, or what it asks of the endpoint.
    pub fn is_request_error(&self) -> bool {
        !matches!(self, SparqlError::Evaluation(_) | SparqlError::Building(_))
    }
}

/// What one SPARQL query may take (`[sparql]`; the broker's time limit is its own).
#[derive(Debug, Clone, Copy)]
pub struct SparqlLimits {
    pub max_query_bytes: usize,
    pub max_depth: usize,
    pub max_rows: usize,
    pub max_memory_mb: usize,
    pub timeout: Duration,
    /// The setting that gave `timeout`, named when a query runs past it.
    pub timeout_setting: &'static str,
}

impl SparqlLimits {
    /// The limits of a query on the local catalogue (`[sparql]`).
    pub fn of(config: &crate::config::SparqlConfig) -> SparqlLimits {
        SparqlLimits {
            max_query_bytes: config.max_query_bytes,
            max_depth: config.max_depth,
            max_rows: config.max_rows,
            max_memory_mb: config.max_memory_mb,
            timeout: Duration::from_secs(config.timeout_seconds),
            timeout_setting: "sparql.timeout_seconds",
        }
    }

    /// The limits of a query on a broker's federation graph: `[sparql]` with the broker's time limit.
    pub fn of_broker(config: &crate::config::SparqlConfig, broker: &crate::config::BrokerConfig) -> SparqlLimits {
        SparqlLimits {
            timeout: Duration::from_secs(broker.sparql_timeout_seconds),
            timeout_setting: "broker.sparql_timeout_seconds",
            ..SparqlLimits::of(config)
        }
    }
}

/// Refuses, before parsing, a query that is too large, nests brackets too deep, or asks for `SERVICE`
/// ([`hanse_core::sparql::check`]).
pub fn check_query(text: &str, limits: &SparqlLimits) -> Result<(), SparqlError> {
    use hanse_core::sparql::Refusal;
    hanse_core::sparql::check(text, limits.max_query_bytes, limits.max_depth).map_err(|refusal| match refusal {
        Refusal::TooLarge { bytes, limit } => SparqlError::TooLarge { bytes, limit },
        Refusal::TooDeep(limit) => SparqlError::TooDeep(limit),
        Refusal::NegationsTooDeep(limit) => SparqlError::NegationsTooDeep(limit),
        Refusal::Unsupported(form) => SparqlError::Unsupported(form),
    })
}

pub use hanse_core::encode::percent as encode;

/// The IRI under which a dataset is described: its id when that is an absolute IRI, else a Hanse URN.
pub fn dataset_iri(id: &str) -> String {
    let absolute = id.split_once(':').is_some_and(|(scheme, rest)| {
        !scheme.is_empty() && scheme.chars().all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)) && !rest.is_empty()
    });
    if absolute && NamedNode::new(id).is_ok() { id.to_owned() } else { format!("urn:hanse:dataset:{}", encode(id)) }
}

const DATASET_GRAPH: &str = "urn:hanse:graph:dataset:";
const OFFER_GRAPH: &str = "urn:hanse:graph:offer:";

/// The named graph of one dataset's description.
pub fn dataset_graph(id: &str) -> NamedNode {
    NamedNode::new_unchecked(format!("{DATASET_GRAPH}{}", encode(id)))
}

/// The named graph of one contract definition's offer.
pub fn offer_graph(definition_id: &str) -> NamedNode {
    NamedNode::new_unchecked(format!("{OFFER_GRAPH}{}", encode(definition_id)))
}

fn catalog_graph() -> NamedNode {
    NamedNode::new_unchecked("urn:hanse:graph:catalog")
}

fn iri(value: &str) -> NamedNode {
    NamedNode::new(value).unwrap_or_else(|_| NamedNode::new_unchecked(format!("urn:hanse:invalid:{}", encode(value))))
}

/// Bumped whenever what the graph says of the catalogue, its datasets or its offers changes form: a graph on disk
/// written in another form is built again rather than resumed.
const DESCRIPTION_FORM: u32 = 1;

/// Where a graph on disk stands, kept in a file beside its store ([`STATE_FILE`]).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Followed {
    /// Every catalogue change the audit log holds below this size is in the graph.
    pub size: u64,
    /// The log's root at that size: a graph kept beside another database, or a log that is not the same, is not
    /// resumed.
    pub root: String,
    /// What the graph describes and in which form ([`Graph::built_for`]).
    pub built_for: String,
}

/// The file in a graph's folder that says where the graph stands. It is removed before the graph is cleared and
/// written only after what it claims was flushed to the store's files, so that it never claims more than the store
/// holds.
pub const STATE_FILE: &str = "hanse-graph-state.json";

/// The catalogue graph.
pub struct Graph {
    graphs: super::graphs::Graphs,
    /// Whether every dataset's description is in (set once, by the catalogue's build after its load).
    ready: (std::sync::Mutex<bool>, std::sync::Condvar),
    catalog_iri: String,
    service_iri: String,
    endpoint: String,
    participant: String,
    publisher_name: String,
}

impl Graph {
    /// The graph describing the catalogue `catalog_iri` served by `service_iri` at `endpoint`, in `graphs` (as it
    /// is: a store on disk keeps what an earlier start wrote until [`Graph::describe`] or [`Graph::clear`]).
    pub fn new(
        catalog_iri: &str,
        service_iri: &str,
        endpoint: &str,
        participant: &str,
        publisher_name: &str,
        graphs: super::graphs::Graphs,
    ) -> Graph {
        Graph {
            graphs,
            ready: Default::default(),
            catalog_iri: catalog_iri.to_owned(),
            service_iri: service_iri.to_owned(),
            endpoint: endpoint.to_owned(),
            participant: participant.to_owned(),
            publisher_name: publisher_name.to_owned(),
        }
    }

    /// Writes the catalogue's own description (its graph replaced whole).
    pub fn describe(&self) {
        let graph_name = catalog_graph();
        let graph = GraphName::NamedNode(graph_name.clone());
        let (participant, endpoint) = (&self.participant, &self.endpoint);
        let (catalog, service, publisher) = (iri(&self.catalog_iri), iri(&self.service_iri), iri(participant));
        let rdf_type = iri(&format!("{RDF}type"));
        let text = |value: String| Literal::new_simple_literal(value);
        // What DCAT-AP 3 requires of a catalogue and a data service: titles, a description, a typed publisher.
        let quads = [
            Quad::new(catalog.clone(), rdf_type.clone(), iri(&format!("{DCAT}Catalog")), graph.clone()),
            Quad::new(
                catalog.clone(),
                iri(&format!("{DCT}title")),
                text(format!("Datasets of {participant}")),
                graph.clone(),
            ),
            Quad::new(
                catalog.clone(),
                iri(&format!("{DCT}description")),
                text(format!(
                    "The datasets {participant} offers through its Hanse connector: negotiate access with the Dataspace Protocol 2025-1 at {endpoint}."
                )),
                graph.clone(),
            ),
            Quad::new(catalog.clone(), iri(&format!("{DCAT}service")), service.clone(), graph.clone()),
            Quad::new(catalog, iri(&format!("{DCT}publisher")), publisher.clone(), graph.clone()),
            Quad::new(publisher.clone(), rdf_type.clone(), iri(&format!("{FOAF}Agent")), graph.clone()),
            Quad::new(publisher, iri(&format!("{FOAF}name")), text(self.publisher_name.clone()), graph.clone()),
            Quad::new(service.clone(), rdf_type, iri(&format!("{DCAT}DataService")), graph.clone()),
            Quad::new(
                service.clone(),
                iri(&format!("{DCT}title")),
                text("Dataspace Protocol 2025-1 endpoint".into()),
                graph.clone(),
            ),
            Quad::new(service, iri(&format!("{DCAT}endpointURL")), iri(endpoint), graph),
        ];
        self.write(&graph_name, &quads);
    }

    /// What this graph describes and in which form, as one digest: a graph on disk built for other addresses or
    /// names, or in another form, is built again.
    pub fn built_for(&self) -> String {
        let described = [
            DESCRIPTION_FORM.to_string().as_str(),
            &self.catalog_iri,
            &self.service_iri,
            &self.endpoint,
            &self.participant,
            &self.publisher_name,
        ]
        .join("\n");
        hanse_core::encode::sha256_hex(described.as_bytes())
    }

    /// The folder of a graph on disk (`None` in memory, and once it was let go of).
    pub fn dir(&self) -> Option<&std::path::Path> {
        self.graphs.dir()
    }

    /// Whether the graph is on disk, kept across starts.
    pub fn is_on_disk(&self) -> bool {
        self.dir().is_some()
    }

    /// Where a graph on disk said it stood when it was last told ([`Graph::keep_followed`]).
    pub fn followed(&self) -> Option<Followed> {
        self.graphs.state(STATE_FILE)
    }

    /// Records that every catalogue change below `size` of the audit log (whose root there is `root`) is in the
    /// graph: the store is flushed first, then the file replaced whole. Only a graph on disk keeps it.
    pub fn keep_followed(&self, size: u64, root: &str) {
        let followed = Followed { size, root: root.to_owned(), built_for: self.built_for() };
        if let Err(error) = self.graphs.keep_state(STATE_FILE, &followed) {
            tracing::warn!(%error, "the catalogue graph on disk could not record where it stands; the next start builds it again");
        }
    }

    /// Forgets where a graph on disk stood, before it is changed in a way a later start could not resume from.
    fn forget_followed(&self) {
        if let Err(error) = self.graphs.forget_state(STATE_FILE) {
            tracing::error!(%error, "the catalogue graph's state file cannot be removed");
        }
    }

    /// Removes everything, before the graph is built again (a graph on disk forgets where it stood first).
    pub fn clear(&self) {
        self.forget_followed();
        if let Err(error) = self.graphs.clear() {
            tracing::error!(%error, "the catalogue graph could not be cleared");
        }
    }

    /// The named graphs of datasets and of offers held now.
    pub fn held(&self) -> Result<(Vec<NamedNode>, Vec<NamedNode>), oxigraph::store::StorageError> {
        Ok((self.graphs.names(DATASET_GRAPH)?, self.graphs.names(OFFER_GRAPH)?))
    }

    /// Empties the named graph `name` (a dataset's or an offer's).
    pub fn remove_graph(&self, name: &NamedNode) {
        self.write(name, &[]);
    }

    /// Lets go of the store: a graph on disk is closed, so that a connector started next in this process can open
    /// it.
    pub fn close(&self) {
        self.graphs.close();
    }

    /// The quads describing one dataset (in its own graph): the DCAT description, its distributions and offers.
    pub fn dataset_quads(&self, asset: &Asset, offer_ids: &[&str], formats: &[&str]) -> Vec<Quad> {
        let subject = dataset_iri(&asset.id);
        let graph = GraphName::NamedNode(dataset_graph(&asset.id));
        let mut triples = Vec::new();
        let mut properties: Properties = asset.properties.clone();
        properties.entry(format!("{RDF}type")).or_default().push(Term::Iri(format!("{DCAT}Dataset")));
        properties.entry(format!("{DCT}identifier")).or_default().push(Term::Literal {
            value: asset.id.clone(),
            datatype: None,
            language: None,
        });
        for offer in offer_ids {
            properties.entry(format!("{ODRL}hasPolicy")).or_default().push(Term::Iri((*offer).to_owned()));
        }
        for format in formats {
            let distribution = format!("{subject}#distribution-{format}");
            properties.entry(format!("{DCAT}distribution")).or_default().push(Term::Iri(distribution.clone()));
            let mut d = Properties::new();
            d.insert(format!("{RDF}type"), vec![Term::Iri(format!("{DCAT}Distribution"))]);
            // DCAT-AP takes a format as a resource (`dct:MediaTypeOrExtent`); the DSP name stays its identifier.
            let mut kind = Properties::new();
            kind.insert(format!("{RDF}type"), vec![Term::Iri(format!("{DCT}MediaTypeOrExtent"))]);
            kind.insert(
                format!("{DCT}identifier"),
                vec![Term::Literal { value: (*format).to_owned(), datatype: None, language: None }],
            );
            let format_iri = format!("{HANSE}format/{}", encode(format));
            dcat::triples(&format_iri, &kind, "f", &mut triples);
            d.insert(format!("{DCT}format"), vec![Term::Iri(format_iri)]);
            d.insert(format!("{DCAT}accessService"), vec![Term::Iri(self.service_iri.clone())]);
            d.insert(format!("{DCAT}accessURL"), vec![Term::Iri(self.endpoint.clone())]);
            dcat::triples(&distribution, &d, "d", &mut triples);
        }
        dcat::triples(&subject, &properties, "b", &mut triples);
        triples.push(dcat::Triple {
            subject: self.catalog_iri.clone(),
            predicate: format!("{DCAT}dataset"),
            object: Term::Iri(subject.clone()),
        });
        let mut blanks: HashMap<String, BlankNode> = HashMap::new();
        let mut node = |value: &str| -> NamedOrBlankNode {
            match value.strip_prefix("_:") {
                Some(label) => blanks.entry(label.to_owned()).or_default().clone().into(),
                None => iri(value).into(),
            }
        };
        triples
            .into_iter()
            .map(|t| {
                let subject = node(&t.subject);
                let object: RdfTerm = match &t.object {
                    Term::Iri(value) => node(value).into(),
                    Term::Literal { value, datatype: Some(datatype), .. } => {
                        Literal::new_typed_literal(value.as_str(), iri(datatype)).into()
                    }
                    Term::Literal { value, language: Some(language), .. } => {
                        Literal::new_language_tagged_literal(value.as_str(), language.as_str())
                            .unwrap_or_else(|_| Literal::new_simple_literal(value.as_str()))
                            .into()
                    }
                    Term::Literal { value, .. } => Literal::new_simple_literal(value.as_str()).into(),
                    Term::Node(_) => unreachable!("dcat::triples flattens nested nodes"),
                };
                Quad::new(subject, iri(&t.predicate), object, graph.clone())
            })
            .collect()
    }

    /// Replaces the description of one dataset.
    pub fn put_dataset(&self, asset: &Asset, offer_ids: &[&str], formats: &[&str]) {
        let quads = self.dataset_quads(asset, offer_ids, formats);
        self.write(&dataset_graph(&asset.id), &quads);
    }

    /// Replaces one named graph whole; a store that fails in memory has nothing better to do than say so.
    fn write(&self, graph: &NamedNode, quads: &[Quad]) {
        if let Err(error) = self.graphs.replace(graph, quads) {
            tracing::error!(%error, %graph, "the catalogue graph could not be written");
        }
    }

    /// Loads many dataset descriptions at once (start-up).
    pub fn load_datasets(&self, quads: impl IntoIterator<Item = Quad>) {
        if let Err(error) = self.graphs.load(quads) {
            tracing::error!(%error, "loading the catalogue graph failed");
        }
    }

    pub fn remove_dataset(&self, id: &str) {
        self.remove_graph(&dataset_graph(id));
    }

    /// Replaces the triples of a definition's offer (from its DSP JSON).
    pub fn put_offer(&self, definition_id: &str, offer: &Json) {
        let graph = offer_graph(definition_id);
        let mut document = offer_for_rdf(offer);
        // The DSP context defines the ODRL terms only inside its type-scoped contexts: a standalone offer names the
        // DSP ODRL profile as well.
        if let Json::Object(map) = &mut document {
            map.insert(
                "@context".into(),
                serde_json::json!([
                    hanse_vocab::contexts::DSPACE_2025_1,
                    hanse_vocab::contexts::DSPACE_2025_1_ODRL_PROFILE
                ]),
            );
        }
        match hanse_vocab::jsonld::to_nquads(&document) {
            Ok(nquads) => {
                let quads: Vec<Quad> = RdfParser::from_format(RdfFormat::NQuads)
                    .with_default_graph(graph.clone())
                    .rename_blank_nodes()
                    .for_slice(nquads.as_bytes())
                    .filter_map(Result::ok)
                    .collect();
                self.write(&graph, &quads);
            }
            Err(error) => {
                tracing::warn!(%error, definition = definition_id, "offer could not be written to the RDF catalogue");
                self.write(&graph, &[]);
            }
        }
    }

    pub fn remove_offer(&self, definition_id: &str) {
        self.remove_graph(&offer_graph(definition_id));
    }

    /// Number of quads (for diagnostics and benchmarks).
    pub fn len(&self) -> usize {
        self.graphs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Says that every dataset's description is in.
    pub fn mark_ready(&self) {
        *self.ready.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = true;
        self.ready.1.notify_all();
    }

    /// Waits up to `timeout` until every dataset's description is in; whether it is.
    pub fn wait_ready(&self, timeout: Duration) -> bool {
        let ready = self.ready.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let (ready, _) = self
            .ready
            .1
            .wait_timeout_while(ready, timeout, |ready| !*ready)
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        *ready
    }

    /// Runs a read-only SPARQL query over the union of all graphs and serialises the result as `accept` asks, once
    /// the graph is built (waiting for it up to the query's time limit). Returns the content type and the body.
    pub fn query(
        &self,
        query: &str,
        accept: &str,
        limits: &SparqlLimits,
    ) -> Result<(&'static str, Vec<u8>), SparqlError> {
        check_query(query, limits)?;
        if !self.wait_ready(limits.timeout) {
            return Err(SparqlError::Building(limits.timeout.as_secs()));
        }
        evaluate(&self.graphs.store(), query, accept, limits)
    }
}

/// Runs a read-only SPARQL query over the union of all graphs of `store` within `limits` (its text checked first; its
/// time, the memory it takes and the rows it answers bounded while it runs), and serialises the result as `accept`
/// asks (the local catalogue and the broker's federation graph share it). Answers the content type and the body.
pub fn query_store(
    store: &Store,
    query: &str,
    accept: &str,
    limits: &SparqlLimits,
) -> Result<(&'static str, Vec<u8>), SparqlError> {
    check_query(query, limits)?;
    evaluate(store, query, accept, limits)
}

/// [`query_store`] for a query already checked.
fn evaluate(
    store: &Store,
    query: &str,
    accept: &str,
    limits: &SparqlLimits,
) -> Result<(&'static str, Vec<u8>), SparqlError> {
    let prologue = hanse_vocab::ns::sparql_prologue();
    let text = if query.contains("PREFIX") || query.contains("prefix") {
        query.to_owned()
    } else {
        format!("{prologue}{query}")
    };
    let token = CancellationToken::new();
    let mut prepared = match SparqlEvaluator::new().with_cancellation_token(token.clone()).parse_query(&text) {
        Ok(prepared) => prepared,
        Err(error) => {
            if SparqlEvaluator::new().parse_update(&text).is_ok() {
                return Err(SparqlError::Update);
            }
            return Err(SparqlError::Syntax(error.to_string()));
        }
    };
    prepared.dataset_mut().set_default_graph_as_union();
    // A watchdog cancels the query when it runs past the time limit or its memory passes the limit; finishing first
    // drops the sender and ends it.
    let exceeded = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let timeout = limits.timeout;
    let watchdog = {
        let (token, exceeded) = (token.clone(), exceeded.clone());
        std::thread::spawn(move || {
            let deadline = std::time::Instant::now() + timeout;
            loop {
                let left = deadline.saturating_duration_since(std::time::Instant::now());
                match finished.recv_timeout(left.min(Duration::from_millis(10))) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if exceeded.load(std::sync::atomic::Ordering::Relaxed) || left.is_zero() {
                            token.cancel();
                            return;
                        }
                    }
                    _ => return,
                }
            }
        })
    };
    let memory = limits.max_memory_mb.saturating_mul(1 << 20);
    let output = crate::memory::metered(memory, &exceeded, || {
        let results = prepared.on_store(store).execute();
        serialise(results, accept, limits.max_rows)
    });
    drop(done);
    let _ = watchdog.join();
    if exceeded.load(std::sync::atomic::Ordering::Relaxed) {
        return Err(SparqlError::TooMuchMemory(limits.max_memory_mb));
    }
    output.map_err(|e| match e {
        SparqlError::Evaluation(message) if message.contains("cancel") => {
            SparqlError::Timeout { seconds: timeout.as_secs(), setting: limits.timeout_setting }
        }
        other => other,
    })
}

/// Offers name ODRL terms bare (`"leftOperand": "purpose"`), which the DSP context leaves relative; for RDF they are
/// written as `odrl:` terms so that every constraint becomes triples.
pub fn offer_for_rdf(offer: &Json) -> Json {
    match offer {
        Json::Object(map) => Json::Object(
            map.iter()
                .map(|(k, v)| {
                    let v = match (k.as_str(), v) {
                        ("leftOperand" | "operator" | "action", Json::String(s)) if !s.contains(':') => {
                            Json::String(format!("odrl:{s}"))
                        }
                        _ => offer_for_rdf(v),
                    };
                    (k.clone(), v)
                })
                .collect(),
        ),
        Json::Array(items) => Json::Array(items.iter().map(offer_for_rdf).collect()),
        other => other.clone(),
    }
}

fn serialise(
    results: Result<QueryResults<'_>, oxigraph::sparql::QueryEvaluationError>,
    accept: &str,
    max_rows: usize,
) -> Result<(&'static str, Vec<u8>), SparqlError> {
    let results = results.map_err(|e| SparqlError::Evaluation(e.to_string()))?;
    let wants = |media: &str| accept.split(',').any(|part| part.trim().starts_with(media));
    let any = accept.trim().is_empty() || wants("*/*") || wants("application/*");
    match results {
        QueryResults::Graph(triples) => {
            let (format, content_type) = if wants("application/n-triples") {
                (RdfFormat::NTriples, "application/n-triples")
            } else if wants("application/rdf+xml") {
                (RdfFormat::RdfXml, "application/rdf+xml")
            } else if wants("text/turtle") || any {
                (RdfFormat::Turtle, "text/turtle")
            } else {
                return Err(SparqlError::NotAcceptable(format!(
                    "a graph result is served as text/turtle, application/n-triples or application/rdf+xml, not {accept}"
                )));
            };
            let mut serializer = RdfSerializer::from_format(format);
            for (prefix, namespace) in hanse_vocab::ns::PREFIXES {
                serializer =
                    serializer.with_prefix(*prefix, *namespace).unwrap_or_else(|_| RdfSerializer::from_format(format));
            }
            let mut writer = serializer.for_writer(Vec::new());
            for (n, triple) in triples.enumerate() {
                if n == max_rows {
                    return Err(SparqlError::TooManyRows(max_rows));
                }
                let triple = triple.map_err(|e| SparqlError::Evaluation(e.to_string()))?;
                writer.serialize_triple(&triple).map_err(|e| SparqlError::Evaluation(e.to_string()))?;
            }
            Ok((content_type, writer.finish().map_err(|e| SparqlError::Evaluation(e.to_string()))?))
        }
        other => {
            let (format, content_type) = if wants("application/sparql-results+xml") {
                (QueryResultsFormat::Xml, "application/sparql-results+xml")
            } else if wants("text/csv") {
                (QueryResultsFormat::Csv, "text/csv")
            } else if wants("text/tab-separated-values") {
                (QueryResultsFormat::Tsv, "text/tab-separated-values")
            } else if wants("application/sparql-results+json") || wants("application/json") || any {
                (QueryResultsFormat::Json, "application/sparql-results+json")
            } else {
                return Err(SparqlError::NotAcceptable(format!(
                    "solutions are served as application/sparql-results+json, +xml, text/csv or text/tab-separated-values, not {accept}"
                )));
            };
            let serializer = QueryResultsSerializer::from_format(format);
            match other {
                QueryResults::Boolean(value) => serializer
                    .serialize_boolean_to_writer(Vec::new(), value)
                    .map(|body| (content_type, body))
                    .map_err(|e| SparqlError::Evaluation(e.to_string())),
                QueryResults::Solutions(solutions) => {
                    let mut writer = serializer
                        .serialize_solutions_to_writer(Vec::new(), solutions.variables().to_vec())
                        .map_err(|e| SparqlError::Evaluation(e.to_string()))?;
                    for (n, solution) in solutions.enumerate() {
                        if n == max_rows {
                            return Err(SparqlError::TooManyRows(max_rows));
                        }
                        let solution = solution.map_err(|e| SparqlError::Evaluation(e.to_string()))?;
                        writer.serialize(&solution).map_err(|e| SparqlError::Evaluation(e.to_string()))?;
                    }
                    Ok((content_type, writer.finish().map_err(|e| SparqlError::Evaluation(e.to_string()))?))
                }
                QueryResults::Graph(_) => unreachable!("handled above"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    fn limits() -> SparqlLimits {
        SparqlLimits::of(&crate::config::SparqlConfig { max_depth: 4, ..Default::default() })
    }

    #[test]
    fn a_query_is_refused_for_its_depth_its_size_and_service_but_not_for_what_strings_and_iris_hold() {
        let deep = format!("SELECT * WHERE {{ {} ?s ?p ?o {} }}", "{".repeat(4), "}".repeat(4));
        assert!(matches!(check_query(&deep, &limits()), Err(SparqlError::TooDeep(4))));
        let just = format!("SELECT * WHERE {{ {} ?s ?p ?o {} }}", "{".repeat(3), "}".repeat(3));
        assert!(check_query(&just, &limits()).is_ok());
        let held = "SELECT * WHERE { ?s ?p \"((((\" . ?s ?p '{{{{' . ?s ?p \"\"\"[[[[\n\"\"\" . ?s <http://x/((((> ?o } # ((((";
        assert!(check_query(held, &limits()).is_ok(), "brackets in strings, IRIs and comments do not nest");
        assert!(matches!(
            check_query("SELECT * { SERVICE <http://x> { ?s ?p ?o } }", &limits()),
            Err(SparqlError::Unsupported("SERVICE"))
        ));
        assert!(matches!(
            check_query("select * { service <http://x> { ?s ?p ?o } }", &limits()),
            Err(SparqlError::Unsupported("SERVICE"))
        ));
        for fine in
            ["SELECT ?service { ?service ?p ?o }", "SELECT * { ?s ex:SERVICE ?o }", "SELECT * { ?s ?p \"SERVICE\" }"]
        {
            assert!(check_query(fine, &limits()).is_ok(), "{fine}");
        }
        let long = format!("SELECT * {{ ?s ?p ?o }} # {}", "x".repeat(70_000));
        assert!(matches!(check_query(&long, &limits()), Err(SparqlError::TooLarge { limit: 65_536, .. })));
        // A comparison is no IRI: its brackets still count.
        assert!(matches!(
            check_query("SELECT * { FILTER(?a < ((((?b)))) ) }", &limits()),
            Err(SparqlError::TooDeep(4))
        ));
    }

    use super::*;

    #[test]
    fn an_offer_becomes_triples_with_its_rules() {
        let graph = Graph::new(
            "urn:c",
            "urn:s",
            "http://x/protocol/2025-1",
            "did:web:x",
            "did:web:x",
            super::super::graphs::Graphs::in_memory(),
        );
        graph.describe();
        let offer = serde_json::json!({"@id": "urn:hanse:offer:cd:abc", "@type": "Offer",
            "permission": [{"action": "use", "constraint": [{"leftOperand": "purpose", "operator": "isA", "rightOperand": "http://purl.obolibrary.org/obo/DUO_0000042"}]}],
            "prohibition": [{"action": "distribute"}]});
        // No datasets to build: the graph is complete as it is.
        graph.mark_ready();
        let before = graph.len();
        graph.put_offer("cd", &offer);
        assert!(graph.len() >= before + 8, "{} quads", graph.len() - before);
        let (_, body) = graph
            .query(
                "ASK { <urn:hanse:offer:cd:abc> a odrl:Offer ; odrl:prohibition ?p . ?p odrl:action odrl:distribute }",
                "",
                &SparqlLimits::of(&crate::config::SparqlConfig::default()),
            )
            .unwrap();
        assert_eq!(String::from_utf8(body).unwrap(), "{\"head\":{},\"boolean\":true}");
    }

    #[test]
    fn where_a_kept_graph_stands_is_read_back_kept_after_it_is_let_go_of_and_forgotten_when_it_is_cleared() {
        let dir = tempfile::tempdir().unwrap();
        // A store that is not copied, as one on disk, with its folder.
        let graphs = super::super::graphs::Graphs::on_disk(Store::new().unwrap(), dir.path());
        let graph = Graph::new("urn:c", "urn:s", "http://x/protocol/2025-1", "did:web:x", "Hospital", graphs);
        graph.describe();
        assert_eq!(graph.followed(), None);
        graph.keep_followed(41, "ab12");
        graph.keep_followed(42, "cd34");
        let followed = graph.followed().unwrap();
        assert_eq!((followed.size, followed.root.as_str()), (42, "cd34"));
        assert_eq!(followed.built_for, graph.built_for());
        // A graph let go of (at shutdown) records nothing more: what is written to it afterwards is not on disk.
        graph.close();
        graph.keep_followed(50, "ef56");
        let kept: Followed = serde_json::from_slice(&std::fs::read(dir.path().join(STATE_FILE)).unwrap()).unwrap();
        assert_eq!(kept.size, 42);
        let graphs = super::super::graphs::Graphs::on_disk(Store::new().unwrap(), dir.path());
        let graph = Graph::new("urn:c", "urn:s", "http://x/protocol/2025-1", "did:web:x", "Hospital", graphs);
        assert_eq!(graph.followed().map(|f| f.size), Some(42));
        graph.describe();
        graph.clear();
        assert_eq!(graph.followed(), None, "a cleared graph stands nowhere");
        assert!(graph.is_empty());
        // Another publisher's name is another graph.
        let other = Graph::new(
            "urn:c",
            "urn:s",
            "http://x/protocol/2025-1",
            "did:web:x",
            "Clinic",
            super::super::graphs::Graphs::in_memory(),
        );
        assert_ne!(other.built_for(), graph.built_for());
    }
}
