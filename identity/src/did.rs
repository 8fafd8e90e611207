//! `did:web`: from identifier to document URL, our own DID document, and resolving (with a cache) the documents of
//! others.
//!
//! Resolution is HTTPS. Plain HTTP is used only in development mode and only for loopback hosts (`localhost`,
//! `127.0.0.0/8`, `::1`): there HTTPS is tried first and HTTP when no TLS connection can be made.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hanse_vocab::ns::SEC;
use serde_json::{Value as Json, json};

use crate::jose::Object;

/// The JSON-LD context of our DID document: DID 1.0, and the two security terms a `JsonWebKey` method uses, inline
/// (the IRIs `https://w3id.org/security/jwk/v1` gives them), so that the document reads with bundled contexts only.
fn did_context() -> Json {
    json!([
        hanse_vocab::contexts::DID_V1,
        {
            "JsonWebKey": format!("{SEC}JsonWebKey"),
            "publicKeyJwk": {"@id": format!("{SEC}publicKeyJwk"), "@type": "@json"},
        }
    ])
}
/// The DCP credential service type and the path of its endpoint on the public listener.
pub const CREDENTIAL_SERVICE: &str = "CredentialService";
pub const CREDENTIAL_SERVICE_PATH: &str = "/dcp/v1";

/// Why a DID could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum ResolveError {
    #[error("`{0}` is not a did:web identifier")]
    NotDidWeb(String),
    #[error("{did}: plain HTTP resolution is allowed only for loopback hosts in development mode")]
    InsecureHost { did: String },
    #[error("{url}: {reason}")]
    Fetch { url: String, reason: String },
    #[error("{url} holds the document of `{found}`, not of `{did}`")]
    WrongSubject { url: String, did: String, found: String },
}

/// The HTTPS URL of a did:web document: `did:web:host%3Aport:path:seg` → `https://host:port/path/seg/did.json`,
/// `did:web:host` → `https://host/.well-known/did.json`.
pub fn document_url(did: &str) -> Result<reqwest::Url, ResolveError> {
    let rest = did.strip_prefix("did:web:").filter(|r| !r.is_empty()).ok_or_else(|| not_web(did))?;
    if rest.contains(['/', '?', '#']) {
        return Err(not_web(did));
    }
    let mut segments = rest.split(':');
    let host = segments.next().unwrap_or_default().replace("%3A", ":").replace("%3a", ":");
    let path: Vec<&str> = segments.collect();
    if host.is_empty() || path.iter().any(|s| s.is_empty()) {
        return Err(not_web(did));
    }
    let path =
        if path.is_empty() { "/.well-known/did.json".to_owned() } else { format!("/{}/did.json", path.join("/")) };
    reqwest::Url::parse(&format!("https://{host}{path}")).map_err(|_| not_web(did))
}

fn not_web(did: &str) -> ResolveError {
    ResolveError::NotDidWeb(did.chars().take(200).collect())
}

/// The path under which the public listener serves the document of `did` (`/.well-known/did.json` or the path form).
pub fn document_path(did: &str) -> Option<String> {
    document_url(did).ok().map(|url| url.path().to_owned())
}

/// Whether a URL's host is a loopback address or `localhost`.
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host_str() {
        Some(host) if host.eq_ignore_ascii_case("localhost") => true,
        Some(host) => host.trim_matches(['[', ']']).parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// The DID a key id (DID URL) belongs to: `did:web:a#key-1` → `did:web:a`.
pub fn controller_of(kid: &str) -> Option<&str> {
    kid.split_once('#').map(|(did, _)| did)
}

/// Why a key could not be found.
#[derive(Debug, thiserror::Error)]
pub enum KeyLookupError {
    #[error(transparent)]
    Unresolvable(#[from] ResolveError),
    #[error("the DID document does not list the key {0}")]
    NotListed(String),
    #[error("the DID document does not list the key {0} under capabilityInvocation")]
    NotForInvocation(String),
    #[error(
        "the token names no key and the DID document lists {0} verification methods (one with capabilityInvocation would do)"
    )]
    Ambiguous(usize),
}

/// One verification method of a DID document.
#[derive(Debug, Clone)]
pub struct VerificationMethod {
    pub id: String,
    pub jwk: Object,
}

/// The parts of a resolved DID document Hanse uses.
#[derive(Debug, Clone)]
pub struct DidDocument {
    pub id: String,
    pub methods: Vec<VerificationMethod>,
    /// Service entries: `(type, endpoint)`.
    pub services: Vec<(String, String)>,
    /// The ids of the methods with the `capabilityInvocation` relationship: the keys that may sign self-issued tokens.
    pub invocation: Vec<String>,
}

impl DidDocument {
    /// Reads a DID document; verification methods that are not JWKs are left out.
    pub fn from_json(did: &str, document: &Json) -> Option<DidDocument> {
        let id = document.get("id")?.as_str()?.to_owned();
        let absolute = |id: &str| if id.starts_with('#') { format!("{did}{id}") } else { id.to_owned() };
        let method = |method: &Json| {
            let id = absolute(method.get("id")?.as_str()?);
            let jwk = method.get("publicKeyJwk")?.as_object()?.clone();
            Some(VerificationMethod { id, jwk })
        };
        let mut methods: Vec<VerificationMethod> = document
            .get("verificationMethod")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(method)
            .collect();
        // A relationship lists methods by reference, or embeds them.
        let mut invocation = Vec::new();
        for entry in document.get("capabilityInvocation").and_then(Json::as_array).into_iter().flatten() {
            match entry {
                Json::String(reference) => invocation.push(absolute(reference)),
                embedded => {
                    if let Some(embedded) = method(embedded) {
                        invocation.push(embedded.id.clone());
                        methods.push(embedded);
                    }
                }
            }
        }
        let services = document
            .get("service")
            .and_then(Json::as_array)
            .into_iter()
            .flatten()
            .filter_map(|service| {
                let kind = service.get("type")?.as_str()?.to_owned();
                let endpoint = match service.get("serviceEndpoint")? {
                    Json::String(url) => url.clone(),
                    Json::Array(urls) => urls.first()?.as_str()?.to_owned(),
                    _ => return None,
                };
                Some((kind, endpoint))
            })
            .collect();
        Some(DidDocument { id, methods, services, invocation })
    }

    /// The public key with this DID URL.
    pub fn method(&self, kid: &str) -> Option<&VerificationMethod> {
        self.methods.iter().find(|m| m.id == kid)
    }

    /// The key that may sign the holder's self-issued tokens (DCP 1.0 §4.3.3): the method `kid` names, which must
    /// have the `capabilityInvocation` relationship; without a `kid`, the document's only method, if it has it.
    pub fn invocation_method(&self, kid: Option<&str>) -> Result<&VerificationMethod, KeyLookupError> {
        let method = match kid {
            Some(kid) => self.method(kid).ok_or_else(|| KeyLookupError::NotListed(kid.to_owned()))?,
            None if self.methods.len() == 1 => &self.methods[0],
            None => return Err(KeyLookupError::Ambiguous(self.methods.len())),
        };
        if self.invocation.contains(&method.id) {
            Ok(method)
        } else {
            Err(KeyLookupError::NotForInvocation(method.id.clone()))
        }
    }

    /// The endpoint of the first service of this type.
    pub fn service(&self, kind: &str) -> Option<&str> {
        self.services.iter().find(|(k, _)| k == kind).map(|(_, endpoint)| endpoint.as_str())
    }
}

/// Our DID document: every key as a verification method and for assertions (whatever a retired key signed still
/// verifies), the keys in `signing` (current, and retired within a token lifetime) for authentication and
/// capability invocation (self-issued tokens), and the services.
pub fn our_document(
    did: &str,
    keys: &[(String, Object)],
    signing: &[String],
    public_url: &str,
    extra_services: &[(String, String)],
) -> Json {
    let methods: Vec<Json> = keys
        .iter()
        .map(|(kid, jwk)| json!({"id": kid, "type": "JsonWebKey", "controller": did, "publicKeyJwk": jwk}))
        .collect();
    let kids: Vec<&String> = keys.iter().map(|(kid, _)| kid).collect();
    let dsp = format!("{public_url}{}", hanse_core::paths::DSP_BASE);
    let mut services = vec![
        json!({"id": format!("{did}#dsp"), "type": "DataService",
            "serviceEndpoint": format!("{public_url}/.well-known/dspace-version")}),
        json!({"id": format!("{did}#catalog"), "type": "CatalogService", "serviceEndpoint": format!("{dsp}/catalog")}),
        json!({"id": format!("{did}#credentials"), "type": CREDENTIAL_SERVICE,
            "serviceEndpoint": format!("{public_url}{CREDENTIAL_SERVICE_PATH}")}),
    ];
    for (kind, endpoint) in extra_services {
        let fragment = kind.to_ascii_lowercase();
        services.push(json!({"id": format!("{did}#{fragment}"), "type": kind, "serviceEndpoint": endpoint}));
    }
    json!({
        "@context": did_context(),
        "id": did,
        "verificationMethod": methods,
        "authentication": signing,
        "assertionMethod": kids,
        // DCP: the keys that sign self-issued tokens.
        "capabilityInvocation": signing,
        "service": services,
    })
}

/// Resolves did:web identifiers over HTTP(S), caching documents for a while.
pub struct Resolver {
    http: reqwest::Client,
    development: bool,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Arc<DidDocument>)>>,
    /// DIDs whose document could not be fetched lately, with why: asked again only after [`FAILURE_TTL`], so that a
    /// caller naming a host that never answers cannot make every request wait for it.
    failures: Mutex<HashMap<String, (Instant, String, String)>>,
    /// Fetches under way per host: at most [`PER_HOST`] at once, so that callers naming many DIDs of one slow host
    /// cannot tie up the connector's outgoing connections; others wait their turn (within the fetch time limit).
    hosts: Mutex<HashMap<String, Arc<tokio::sync::Semaphore>>>,
    /// Which addresses a document may be fetched from (literal hosts are checked before connecting).
    addresses: hanse_core::addresses::Addresses,
    /// Where resolutions are counted and timed.
    meter: hanse_core::meter::Meter,
}

/// Concurrent document fetches per host.
const PER_HOST: usize = 4;

/// A cached document younger than this is not fetched again even when a key is missing from it.
const REFRESH_FLOOR: Duration = Duration::from_secs(2);
/// The longest a DID document fetch may take, connecting included: a peer's request waits for it.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a failed fetch is remembered.
const FAILURE_TTL: Duration = Duration::from_secs(30);

impl Resolver {
    pub fn new(http: reqwest::Client, development: bool, ttl: Duration) -> Resolver {
        Resolver {
            http,
            development,
            ttl,
            cache: Mutex::new(HashMap::new()),
            failures: Mutex::new(HashMap::new()),
            hosts: Mutex::new(HashMap::new()),
            addresses: hanse_core::addresses::Addresses::new(development, &[]),
            meter: hanse_core::meter::Meter::off(),
        }
    }

    /// The resolver counting its cache hits and timing its fetches in `meter`.
    pub fn metered(mut self, meter: hanse_core::meter::Meter) -> Resolver {
        self.meter = meter;
        self
    }

    /// The resolver with the operator's address policy (`trust.allow_addresses`) instead of the strict default.
    pub fn allowing(mut self, addresses: hanse_core::addresses::Addresses) -> Resolver {
        self.addresses = addresses;
        self
    }

    /// The document of `did`, from the cache when it is fresh.
    pub async fn resolve(&self, did: &str) -> Result<Arc<DidDocument>, ResolveError> {
        if let Some((at, document)) = self.cache.lock().expect("cache lock").get(did)
            && at.elapsed() < self.ttl
        {
            self.meter.count("hanse_did_resolutions_total", &[("source", "cache"), ("outcome", "resolved")]);
            return Ok(document.clone());
        }
        self.fetch(did).await
    }

    /// The document of `did` refreshed unless it was fetched moments ago: for keys the cached copy does not list yet
    /// (the peer rotated its key).
    async fn refresh(&self, did: &str) -> Result<Arc<DidDocument>, ResolveError> {
        if let Some((at, document)) = self.cache.lock().expect("cache lock").get(did)
            && at.elapsed() < REFRESH_FLOOR
        {
            return Ok(document.clone());
        }
        self.fetch(did).await
    }

    /// The verification method `kid` of `did`'s document; a key the cached document does not list yet sends the
    /// resolver back to the source once (the controller rotated its key).
    /// The key that may sign `did`'s self-issued tokens ([`DidDocument::invocation_method`]); the document is fetched
    /// again once when the cached one does not list it (a rotated key).
    pub async fn invocation_key(&self, did: &str, kid: Option<&str>) -> Result<VerificationMethod, KeyLookupError> {
        match self.resolve(did).await?.invocation_method(kid) {
            Ok(method) => Ok(method.clone()),
            Err(KeyLookupError::NotListed(_)) => self.refresh(did).await?.invocation_method(kid).cloned(),
            Err(error) => Err(error),
        }
    }

    pub async fn key(&self, did: &str, kid: &str) -> Result<VerificationMethod, KeyLookupError> {
        if let Some(method) = self.resolve(did).await?.method(kid) {
            return Ok(method.clone());
        }
        self.refresh(did).await?.method(kid).cloned().ok_or_else(|| KeyLookupError::NotListed(kid.to_owned()))
    }

    fn failed_lately(&self, did: &str) -> Option<ResolveError> {
        let failures = self.failures.lock().expect("failures lock");
        let (at, url, reason) = failures.get(did)?;
        (at.elapsed() < FAILURE_TTL)
            .then(|| ResolveError::Fetch { url: url.clone(), reason: format!("{reason} (failed moments ago)") })
    }

    /// The turn of one fetch from `host`, or why there is none within the fetch time limit.
    async fn turn(&self, url: &reqwest::Url) -> Result<tokio::sync::OwnedSemaphorePermit, ResolveError> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let semaphore = {
            let mut hosts = self.hosts.lock().expect("hosts lock");
            if hosts.len() > 10_000 {
                hosts.retain(|_, s| s.available_permits() < PER_HOST);
            }
            hosts.entry(host.clone()).or_insert_with(|| Arc::new(tokio::sync::Semaphore::new(PER_HOST))).clone()
        };
        match tokio::time::timeout(FETCH_TIMEOUT, semaphore.acquire_owned()).await {
            Ok(Ok(permit)) => Ok(permit),
            _ => Err(ResolveError::Fetch {
                url: url.to_string(),
                reason: format!("{PER_HOST} fetches from {host} are under way; try again later"),
            }),
        }
    }

    async fn fetch(&self, did: &str) -> Result<Arc<DidDocument>, ResolveError> {
        if let Some(failed) = self.failed_lately(did) {
            self.meter.count("hanse_did_resolutions_total", &[("source", "failure_cache"), ("outcome", "failed")]);
            return Err(failed);
        }
        let _turn = self.turn(&document_url(did)?).await?;
        // Another caller may have fetched the document, or failed to, while this one waited.
        if let Some(failed) = self.failed_lately(did) {
            return Err(failed);
        }
        if let Some((at, document)) = self.cache.lock().expect("cache lock").get(did)
            && at.elapsed() < REFRESH_FLOOR
        {
            return Ok(document.clone());
        }
        let started = Instant::now();
        let fetched = self.fetch_now(did).await;
        let outcome = if fetched.is_ok() { "resolved" } else { "failed" };
        self.meter.observe(
            "hanse_did_resolution_duration_seconds",
            &[("outcome", outcome)],
            started.elapsed().as_secs_f64(),
        );
        self.meter.count("hanse_did_resolutions_total", &[("source", "network"), ("outcome", outcome)]);
        let mut failures = self.failures.lock().expect("failures lock");
        match &fetched {
            Err(ResolveError::Fetch { url, reason }) => {
                if failures.len() > 10_000 {
                    failures.retain(|_, (at, _, _)| at.elapsed() < FAILURE_TTL);
                }
                failures.insert(did.to_owned(), (Instant::now(), url.clone(), reason.clone()));
            }
            _ => {
                failures.remove(did);
            }
        }
        fetched
    }

    async fn fetch_now(&self, did: &str) -> Result<Arc<DidDocument>, ResolveError> {
        let url = document_url(did)?;
        self.addresses
            .check_host(url.host_str().unwrap_or_default())
            .map_err(|refused| ResolveError::Fetch { url: url.to_string(), reason: refused.to_string() })?;
        let loopback = is_loopback(&url);
        let body = match self.get(&url).await {
            Ok(body) => body,
            Err(error) if self.development && loopback && error.is_connect() => {
                let mut plain = url.clone();
                plain.set_scheme("http").expect("http is a valid scheme");
                self.get(&plain).await.map_err(|e| fetch_error(&plain, e))?
            }
            Err(error) => return Err(fetch_error(&url, error)),
        };
        let document = DidDocument::from_json(did, &body)
            .ok_or_else(|| ResolveError::Fetch { url: url.to_string(), reason: "not a DID document".into() })?;
        if document.id != did {
            return Err(ResolveError::WrongSubject { url: url.to_string(), did: did.into(), found: document.id });
        }
        let document = Arc::new(document);
        let mut cache = self.cache.lock().expect("cache lock");
        if cache.len() > 10_000 {
            let ttl = self.ttl;
            cache.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        cache.insert(did.to_owned(), (Instant::now(), document.clone()));
        Ok(document)
    }

    /// The JSON at `url`, read within [`crate::limited::DOCUMENT`]; a connection that cannot be made is told apart
    /// (development mode then tries plain HTTP on loopback).
    async fn get(&self, url: &reqwest::Url) -> Result<Json, Fetched> {
        let response = self.http.get(url.clone()).timeout(FETCH_TIMEOUT).send().await.map_err(Fetched::Request)?;
        let response = response.error_for_status().map_err(Fetched::Request)?;
        crate::limited::json(response, crate::limited::DOCUMENT).await.map_err(Fetched::Body)
    }
}

/// Why a document fetch failed.
enum Fetched {
    Request(reqwest::Error),
    Body(String),
}

impl Fetched {
    fn is_connect(&self) -> bool {
        matches!(self, Fetched::Request(error) if error.is_connect())
    }
}

fn fetch_error(url: &reqwest::Url, error: Fetched) -> ResolveError {
    let reason = match error {
        Fetched::Request(error) => hanse_core::error_chain(&error),
        Fetched::Body(reason) => reason,
    };
    ResolveError::Fetch { url: url.to_string(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn did_web_identifiers_map_to_https_urls() {
        let url = |did| document_url(did).map(|u| u.to_string());
        assert_eq!(url("did:web:hospital.example").unwrap(), "https://hospital.example/.well-known/did.json");
        assert_eq!(url("did:web:127.0.0.1%3A8443").unwrap(), "https://127.0.0.1:8443/.well-known/did.json");
        assert_eq!(url("did:web:example.org:units:lab").unwrap(), "https://example.org/units/lab/did.json");
        for bad in ["did:key:z6Mk", "did:web:", "did:web:a::b", "did:web:a/b", "hospital"] {
            assert!(url(bad).is_err(), "{bad}");
        }
        assert_eq!(document_path("did:web:example.org:units:lab").unwrap(), "/units/lab/did.json");
    }

    #[test]
    fn only_loopback_hosts_count_as_loopback() {
        let loopback = |u: &str| is_loopback(&reqwest::Url::parse(u).unwrap());
        assert!(loopback("https://localhost:1/") && loopback("https://127.0.0.2/") && loopback("https://[::1]/"));
        assert!(!loopback("https://hospital.example/") && !loopback("https://10.0.0.1/"));
    }

    #[test]
    fn our_document_lists_keys_and_services_and_reads_back() {
        let keys = vec![("did:web:a#k1".to_owned(), Object::new()), ("did:web:a#k0".to_owned(), Object::new())];
        let document = our_document("did:web:a", &keys, &["did:web:a#k1".to_owned()], "https://a", &[]);
        let read = DidDocument::from_json("did:web:a", &document).unwrap();
        assert!(read.method("did:web:a#k1").is_some());
        // A retired key verifies what it signed, but signs no token.
        assert!(read.method("did:web:a#k0").is_some());
        assert!(read.invocation_method(Some("did:web:a#k1")).is_ok());
        assert!(read.invocation_method(Some("did:web:a#k0")).is_err());
        assert_eq!(read.service("CredentialService"), Some("https://a/dcp/v1"));
        assert_eq!(read.service("CatalogService"), Some("https://a/protocol/2025-1/catalog"));
        assert_eq!(read.service("DataService"), Some("https://a/.well-known/dspace-version"));
    }
}
