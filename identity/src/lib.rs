//! Who is asking, and what the federation says about them.
//!
//! - [`keys`]: the participant's signing keys and their rotation;
//! - [`did`]: `did:web` documents, ours and resolved ones of peers (cached);
//! - [`token`]: the self-issued ID tokens every DSP and DCP request carries;
//! - [`credentials`]: verifiable credentials as issuer, holder and verifier;
//! - [`jose`]: the only module that touches the JOSE library.
//!
//! [`Identity`] ties them together for a running connector: it signs outgoing requests, verifies incoming ones (the
//! verified DID is the only identity the catalogue, policies, negotiation and transfer see), answers presentation
//! queries as holder, and gathers a requester's verified claims as verifier.

pub mod access;
pub mod credentials;
pub mod did;
pub mod limited;
pub use hanse_keys::agree;
pub use hanse_keys::jose;
pub use hanse_keys::ring as keys;
pub mod token;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use hanse_policy::RequestContext;
use http::HeaderMap;
use serde_json::{Value as Json, json};

use self::credentials::{CredentialError, CredentialSummary, IssueRequest};
use self::did::{DidDocument, Resolver};
use self::jose::Object;
use self::keys::KeyRing;
pub use self::token::{TokenError, Verified};
use hanse_store::{HeldCredential, IdentityStore, StoreError, TokenUse};

/// A requester's verified claims and the credential types they were proven with.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Claims {
    pub claims: Object,
    pub credential_types: Vec<String>,
}

/// Claims valid until a moment.
type CachedClaims = (DateTime<Utc>, Arc<Claims>);

/// How the identity services are set up.
#[derive(Debug, Clone)]
pub struct IdentitySettings {
    pub public_url: String,
    pub development: bool,
    /// Non-public addresses DID documents may be fetched from (`trust.allow_addresses`).
    pub allow_addresses: Vec<String>,
    /// Trusted issuers (DIDs) per credential type.
    pub trusted_issuers: BTreeMap<String, Vec<String>>,
    /// How long resolved DID documents are reused.
    pub did_cache: Duration,
    /// The longest time verified claims and fetched status lists are reused (never beyond the token's lifetime).
    pub claims_cache: Duration,
    /// Where the participant key's certificate chain is served, if it is (the `x5u` of the current key).
    pub certificate_chain_url: Option<String>,
    /// The service entries of the DID document besides the status list, as `(type, endpoint)`: the connector's own
    /// services (audit log, self-description, peer list, broker), given as data so that identity imports none of them.
    pub services: Vec<(String, String)>,
    /// Where token and credential verifications and DID resolutions are counted.
    pub meter: hanse_core::meter::Meter,
    /// Adds the caller's trace context to an outgoing DCP request (the connector's tracing; identity knows none).
    pub traced: fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder,
    /// The credential types the participants we send requests to may read from our credential service (`None`:
    /// every type we hold).
    pub shared_types: Option<Vec<String>>,
    /// The participant key's file, read again by [`Identity::reload_keys`] (`None`: the keys never change).
    pub key_file: Option<std::path::PathBuf>,
}

/// A presentation query refused: the HTTP status and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryRefusal {
    pub status: u16,
    pub reason: String,
}

fn refusal(status: u16, reason: impl Into<String>) -> QueryRefusal {
    QueryRefusal { status, reason: reason.into() }
}

/// The identity services of one connector.
pub struct Identity {
    /// The signing keys: replaced whole when the key files change (`hanse keys rotate`, or the management API).
    keys: std::sync::RwLock<Arc<KeyRing>>,
    did: String,
    resolver: Resolver,
    http: reqwest::Client,
    store: IdentityStore,
    settings: IdentitySettings,
    claims_cache: Mutex<HashMap<String, CachedClaims>>,
    status_cache: Mutex<HashMap<String, (Instant, Arc<String>)>>,
    /// The scopes we grant (the credential types we hold and share), kept current by [`Identity::refresh_held`].
    granting: Mutex<Vec<String>>,
    /// Access tokens we minted, per verifier, with their expiry (seconds): reused while most of their life is left.
    minted: Mutex<HashMap<String, (i64, String)>>,
    /// The latest access token each participant granted us, with its token's expiry: what our queries of its
    /// credential service carry.
    granted: Mutex<HashMap<String, (DateTime<Utc>, String)>>,
}

/// Why a management or command-line credential operation failed.
#[derive(Debug, thiserror::Error)]
pub enum CredentialOpError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Credential(#[from] CredentialError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Identity {
    pub fn new(keys: KeyRing, http: reqwest::Client, store: IdentityStore, settings: IdentitySettings) -> Identity {
        let addresses = hanse_core::addresses::Addresses::new(settings.development, &settings.allow_addresses);
        let resolver = Resolver::new(http.clone(), settings.development, settings.did_cache)
            .allowing(addresses)
            .metered(settings.meter.clone());
        Identity {
            did: keys.did().to_owned(),
            keys: std::sync::RwLock::new(Arc::new(keys)),
            resolver,
            http,
            store,
            settings,
            claims_cache: Mutex::new(HashMap::new()),
            status_cache: Mutex::new(HashMap::new()),
            granting: Mutex::new(Vec::new()),
            minted: Mutex::new(HashMap::new()),
            granted: Mutex::new(HashMap::new()),
        }
    }

    /// Our DID.
    pub fn did(&self) -> &str {
        &self.did
    }

    /// The signing keys as they are now.
    pub fn keys(&self) -> Arc<KeyRing> {
        self.keys.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Reads the key files again (`participant.key_file` and its `retired/` folder); a rotation since the last read
    /// takes effect at once: new tokens, credentials, heads and access tokens are signed with the new key, and the
    /// DID document lists it. Answers whether the current key changed.
    pub fn reload_keys(&self) -> Result<bool, keys::KeyError> {
        let Some(file) = &self.settings.key_file else { return Ok(false) };
        let loaded = KeyRing::load(&self.did, file)?;
        let rotated = {
            let mut keys = self.keys.write().unwrap_or_else(|p| p.into_inner());
            let rotated = loaded.current_kid() != keys.current_kid();
            *keys = Arc::new(loaded);
            rotated
        };
        // One lock at a time: `access_token_for` reads the keys while it holds `minted`.
        if rotated {
            tracing::info!(key = self.keys().current_kid(), "signing with a new key");
            self.minted.lock().expect("minted lock").clear();
        }
        Ok(rotated)
    }

    /// The DID resolver.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// The `Authorization` header value for a request to the participant `audience`: our self-issued token, with an
    /// access token granting `audience` the credentials we share when we hold any.
    pub fn authorization(&self, audience: &str) -> String {
        let now = Utc::now();
        let access = self.access_token_for(audience, now);
        format!("Bearer {}", token::issue_with(&self.keys(), audience, now, access.as_deref()))
    }

    /// The access token `verifier` gets from us: reused while more than half its lifetime is left.
    fn access_token_for(&self, verifier: &str, now: DateTime<Utc>) -> Option<String> {
        // Reused first (every request to a peer passes here): the cache is emptied whenever the grant changes.
        let mut minted = self.minted.lock().expect("minted lock");
        if let Some((exp, token)) = minted.get(verifier)
            && *exp - now.timestamp() > token::TOKEN_LIFETIME_SECONDS / 2
        {
            return Some(token.clone());
        }
        let scopes = self.granting.lock().expect("granting lock").clone();
        if scopes.is_empty() {
            return None;
        }
        if minted.len() > 10_000 {
            minted.retain(|_, (exp, _)| *exp > now.timestamp());
        }
        let token = access::mint(&self.keys(), verifier, &scopes, now);
        minted.insert(verifier.to_owned(), (now.timestamp() + token::TOKEN_LIFETIME_SECONDS, token.clone()));
        Some(token)
    }

    /// Reads the credentials we hold again: the scopes our access tokens grant from now on (tokens minted before keep
    /// theirs until they expire).
    pub async fn refresh_held(&self) -> Result<(), StoreError> {
        let held = self.store.held_credentials().await?;
        let now = Utc::now().timestamp_millis();
        let mut types: Vec<String> = held
            .iter()
            .filter(|c| c.valid_until.is_none_or(|until| until > now))
            .flat_map(|c| c.types.split(' ').map(str::to_owned).collect::<Vec<_>>())
            .filter(|t| t != "VerifiableCredential")
            .filter(|t| self.settings.shared_types.as_ref().is_none_or(|shared| shared.contains(t)))
            .collect();
        types.sort();
        types.dedup();
        let scopes: Vec<String> = types.iter().map(|t| format!("{}{t}", credentials::SCOPE_PREFIX)).collect();
        let changed = {
            let mut granting = self.granting.lock().expect("granting lock");
            let changed = *granting != scopes;
            *granting = scopes;
            changed
        };
        // One lock at a time: `access_token_for` takes `minted` before `granting`.
        if changed {
            self.minted.lock().expect("minted lock").clear();
        }
        Ok(())
    }

    /// Verifies the self-issued token of an incoming request. The reason of a failure is for the log only.
    pub async fn verify_request(&self, headers: &HeaderMap) -> Result<Verified, TokenError> {
        let (verified, token_use) = self.check_request(headers).await?;
        token::record(&self.store, &token_use).await?;
        Ok(verified)
    }

    /// [`verify_request`](Self::verify_request) without recording the token's id: the caller records it before it
    /// acts on the request ([`token::check`]).
    pub async fn check_request(&self, headers: &HeaderMap) -> Result<(Verified, TokenUse), TokenError> {
        // A header that is not visible ASCII reads as empty: malformed.
        let header = headers.get(http::header::AUTHORIZATION).map(|v| v.to_str().unwrap_or_default());
        let checked = match token::bearer(header) {
            Ok(bearer) => token::check(bearer, self.did(), &self.resolver, Utc::now()).await,
            Err(error) => Err(error),
        };
        let outcome = checked.as_ref().map_or_else(TokenError::kind, |_| "verified");
        self.settings.meter.count("hanse_token_verifications_total", &[("outcome", outcome)]);
        if let Ok((Verified { participant, expires_at, access_token: Some(access) }, _)) = &checked {
            let mut granted = self.granted.lock().expect("granted lock");
            if granted.len() > 10_000 {
                let now = Utc::now();
                granted.retain(|_, (until, _)| *until > now);
            }
            granted.insert(participant.clone(), (*expires_at, access.clone()));
        }
        checked
    }

    /// Our DID document as the public listener serves it.
    pub fn did_document(&self) -> Json {
        let mut services =
            vec![("StatusListService".to_owned(), credentials::status_list_url(&self.settings.public_url))];
        services.extend(self.settings.services.iter().cloned());
        let ring = self.keys();
        let mut keys = ring.every();
        let signing: Vec<String> = ring.listed(Utc::now()).into_iter().map(|(kid, _)| kid).collect();
        if let Some(url) = &self.settings.certificate_chain_url {
            for (kid, jwk) in &mut keys {
                if kid == ring.current_kid() {
                    jwk.insert("x5u".into(), Json::String(url.clone()));
                }
            }
        }
        did::our_document(self.did(), &keys, &signing, &self.settings.public_url, &services)
    }

    /// The DID of the participant whose connector answers at `address`: its `/.well-known/did.json` names it.
    pub async fn discover(&self, address: &str) -> Option<String> {
        let url = reqwest::Url::parse(address).ok()?;
        let document_url = format!("{}/.well-known/did.json", url.origin().ascii_serialization());
        let response = self.http.get(&document_url).send().await.ok()?.error_for_status().ok()?;
        let document = limited::json(response, limited::DOCUMENT).await.ok()?;
        let did = document.get("id")?.as_str()?.to_owned();
        // The document must be the one the DID itself resolves to.
        self.resolver.resolve(&did).await.ok()?;
        Some(did)
    }

    /// The policy context of a verified requester; claims are gathered only when `with_claims` says a policy needs
    /// them.
    pub async fn request_context(&self, requester: &Verified, with_claims: bool) -> RequestContext {
        let mut context = RequestContext::new(requester.participant.clone(), Utc::now());
        if with_claims {
            let claims = self.claims_of(&requester.participant, requester.expires_at).await;
            context.claims = claims.claims.clone();
            context.credential_types = claims.credential_types.clone();
        }
        context
    }

    /// A participant's verified claims: from the cache while the token that brought it is valid, else from its
    /// credential service. Failures leave the claims empty (and are logged): policies that need claims then deny.
    /// Whether the verified requester holds a credential of type `kind` from an issuer trusted for it.
    pub async fn holds(&self, verified: &token::Verified, kind: &str) -> bool {
        self.claims_of(&verified.participant, verified.expires_at)
            .await
            .credential_types
            .iter()
            .any(|held| held == kind)
    }

    pub async fn claims_of(&self, participant: &str, token_expiry: DateTime<Utc>) -> Arc<Claims> {
        let now = Utc::now();
        if let Some((until, claims)) = self.claims_cache.lock().expect("cache lock").get(participant)
            && *until > now
        {
            return claims.clone();
        }
        let claims = match self.fetch_claims(participant).await {
            Ok(claims) => claims,
            Err(reason) => {
                tracing::info!(%participant, %reason, "no verified claims");
                Claims::default()
            }
        };
        let claims = Arc::new(claims);
        let window = chrono::Duration::from_std(self.settings.claims_cache).unwrap_or(chrono::Duration::zero());
        let cache_until = token_expiry.min(now + window);
        let mut cache = self.claims_cache.lock().expect("cache lock");
        if cache.len() > 10_000 {
            cache.retain(|_, (until, _)| *until > now);
        }
        if cache_until > now {
            cache.insert(participant.to_owned(), (cache_until, claims.clone()));
        }
        claims
    }

    /// Asks `participant`'s credential service for the credential types we trust issuers of, and verifies the answer.
    async fn fetch_claims(&self, participant: &str) -> Result<Claims, String> {
        if self.settings.trusted_issuers.is_empty() {
            return Err("no trusted issuers are configured".into());
        }
        let document = self.resolver.resolve(participant).await.map_err(|e| e.to_string())?;
        let endpoint = document
            .service(did::CREDENTIAL_SERVICE)
            .ok_or_else(|| "its DID document lists no CredentialService".to_owned())?;
        let scope: Vec<String> = self.settings.trusted_issuers.keys().map(|t| credentials::scope_for(t)).collect();
        let query = json!({"@context": [credentials::DCP_CONTEXT], "type": "PresentationQueryMessage", "scope": scope});
        let url = format!("{}/presentations/query", endpoint.trim_end_matches('/'));
        // The holder's access token, forwarded in our own token as DCP requires; without one the holder may refuse.
        let now = Utc::now();
        let access = self
            .granted
            .lock()
            .expect("granted lock")
            .get(participant)
            .filter(|(until, _)| *until > now)
            .map(|(_, t)| t.clone());
        let response = (self.settings.traced)(self.http.post(&url))
            .header(
                "Authorization",
                format!("Bearer {}", token::issue_with(&self.keys(), participant, now, access.as_deref())),
            )
            .json(&query)
            .send()
            .await
            .map_err(|e| format!("{url}: {}", hanse_core::error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("{url} answered HTTP {}", response.status().as_u16()));
        }
        let answer = limited::json(response, limited::DOCUMENT).await.map_err(|e| format!("{url}: {e}"))?;
        let presentations: Vec<&str> = match answer.get("presentation") {
            Some(Json::Array(items)) => items.iter().filter_map(Json::as_str).collect(),
            Some(Json::String(one)) => vec![one.as_str()],
            _ => return Err(format!("{url} answered without a presentation")),
        };
        let now = Utc::now();
        let mut claims = Claims::default();
        for vp in presentations {
            let jwts = self.verify_presentation(vp, participant, &document, now).map_err(|e| e.to_string())?;
            for jwt in jwts {
                match self.verify_credential(&jwt, participant, now).await {
                    Ok((summary, trusted_types)) => {
                        claims.claims.extend(summary.claims);
                        for kind in trusted_types {
                            if !claims.credential_types.contains(&kind) {
                                claims.credential_types.push(kind);
                            }
                        }
                    }
                    Err(reason) => tracing::info!(%participant, %reason, "credential refused"),
                }
            }
        }
        Ok(claims)
    }

    /// Checks a presentation from `holder` to us and answers the credential JWTs in it.
    fn verify_presentation(
        &self,
        vp: &str,
        holder: &str,
        document: &DidDocument,
        now: DateTime<Utc>,
    ) -> Result<Vec<String>, CredentialError> {
        let invalid = |reason: &str| CredentialError::Presentation(reason.to_owned());
        let (header, _) = jose::peek(vp).map_err(|e| CredentialError::Presentation(e.to_string()))?;
        let kid = header.get("kid").and_then(Json::as_str).ok_or_else(|| invalid("no kid"))?;
        let method = document.method(kid).ok_or_else(|| invalid("signed with a key the holder does not list"))?;
        let payload = jose::verify(vp, &method.jwk).map_err(|_| invalid("the signature does not verify"))?;
        let text = |name: &str| payload.get(name).and_then(Json::as_str);
        if text("iss") != Some(holder) {
            return Err(invalid("issued by someone other than the holder"));
        }
        if text("aud") != Some(self.did()) {
            return Err(invalid("addressed to someone else"));
        }
        let exp = payload.get("exp").and_then(Json::as_i64).ok_or_else(|| invalid("no exp"))?;
        if now.timestamp() > exp + token::CLOCK_SKEW_SECONDS {
            return Err(invalid("expired"));
        }
        Ok(credentials::presented_credentials(&payload))
    }

    /// Checks one credential presented by `holder`: trusted issuer, signature, validity window, subject and
    /// revocation status. Answers it with the types its issuer is trusted for.
    pub async fn verify_credential(
        &self,
        jwt: &str,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<(CredentialSummary, Vec<String>), CredentialError> {
        let checked = self.check_credential(jwt, holder, now).await;
        let outcome = checked.as_ref().map_or_else(CredentialError::kind, |_| "verified");
        self.settings.meter.count("hanse_credential_verifications_total", &[("outcome", outcome)]);
        checked
    }

    async fn check_credential(
        &self,
        jwt: &str,
        holder: &str,
        now: DateTime<Utc>,
    ) -> Result<(CredentialSummary, Vec<String>), CredentialError> {
        let summary = credentials::summarise(jwt)?;
        let trusted: Vec<String> = summary
            .specific_types()
            .filter(|kind| self.settings.trusted_issuers.get(*kind).is_some_and(|dids| dids.contains(&summary.issuer)))
            .map(str::to_owned)
            .collect();
        if trusted.is_empty() {
            return Err(CredentialError::Untrusted {
                issuer: summary.issuer.clone(),
                types: summary.specific_types().collect::<Vec<_>>().join(", "),
            });
        }
        if did::controller_of(&summary.kid) != Some(summary.issuer.as_str()) {
            return Err(CredentialError::UnknownKey(summary.kid.clone()));
        }
        self.check_signature(jwt, &summary.issuer, &summary.kid).await?;
        summary.check_window(now)?;
        if summary.subject != holder {
            return Err(CredentialError::WrongSubject { expected: holder.into(), found: summary.subject.clone() });
        }
        if let Some((url, index)) = &summary.revocation
            && credentials::bit_is_set(&self.status_list(url, &summary.issuer).await?, *index)?
        {
            return Err(CredentialError::Revoked);
        }
        Ok((summary, trusted))
    }

    /// Checks a JWT `signer` signed with a key listed in its DID document, of type `typ`; answers its claims.
    pub async fn verify_signed(&self, jwt: &str, typ: &str, signer: &str) -> Result<Object, String> {
        verify_signed_with(&self.resolver, jwt, typ, signer).await
    }

    async fn check_signature(&self, jwt: &str, issuer: &str, kid: &str) -> Result<Object, CredentialError> {
        let method = self.resolver.key(issuer, kid).await.map_err(|e| match e {
            did::KeyLookupError::Unresolvable(e) => CredentialError::Unresolvable(e.to_string()),
            did::KeyLookupError::NotListed(kid) => CredentialError::UnknownKey(kid),
            other => CredentialError::UnknownKey(other.to_string()),
        })?;
        jose::verify(jwt, &method.jwk).map_err(|_| CredentialError::Signature)
    }

    /// The `encodedList` of an issuer's status list credential, verified and cached for a while.
    async fn status_list(&self, url: &str, issuer: &str) -> Result<Arc<String>, CredentialError> {
        if let Some((at, list)) = self.status_cache.lock().expect("cache lock").get(url)
            && at.elapsed() < self.settings.claims_cache
        {
            return Ok(list.clone());
        }
        let status = |reason: String| CredentialError::Status(reason);
        let parsed = reqwest::Url::parse(url).map_err(|_| status(format!("`{url}` is not a URL")))?;
        if parsed.scheme() != "https" && !(self.settings.development && did::is_loopback(&parsed)) {
            return Err(status(format!("{url}: status lists are fetched over HTTPS only")));
        }
        let response = self
            .http
            .get(parsed)
            .send()
            .await
            .map_err(|e| status(format!("{url}: {}", hanse_core::error_chain(&e))))?;
        if !response.status().is_success() {
            return Err(status(format!("{url} answered HTTP {}", response.status().as_u16())));
        }
        let jwt = limited::text(response, limited::DOCUMENT).await.map_err(|e| status(format!("{url}: {e}")))?;
        let jwt = jwt.trim();
        let (header, _) = jose::peek(jwt).map_err(|e| status(e.to_string()))?;
        let kid = header.get("kid").and_then(Json::as_str).unwrap_or_default();
        if did::controller_of(kid) != Some(issuer) {
            return Err(status("the status list is not signed by the credential's issuer".into()));
        }
        let payload = self.check_signature(jwt, issuer, kid).await?;
        let list = payload
            .get("credentialSubject")
            .and_then(|s| s.get("encodedList"))
            .and_then(Json::as_str)
            .ok_or_else(|| status("the status list has no encodedList".into()))?;
        let list = Arc::new(list.to_owned());
        self.status_cache.lock().expect("cache lock").insert(url.to_owned(), (Instant::now(), list.clone()));
        Ok(list)
    }

    // ---- issuer ----

    /// Issues a credential: records it (taking the next status-list bit) and signs it.
    pub async fn issue_credential(&self, request: &IssueRequest) -> Result<(String, String), CredentialOpError> {
        issue_credential(&self.keys(), &self.store, &self.settings.public_url, request).await
    }

    /// Our status list credential as it stands.
    pub async fn status_list_credential(&self) -> Result<String, StoreError> {
        let revoked = self.store.revoked_status_indices().await?;
        Ok(credentials::status_list_credential(&self.keys(), &self.settings.public_url, &revoked, Utc::now()))
    }

    // ---- holder ----

    /// Answers a DCP presentation query from the verified `verifier` who forwarded `access` (the access token we
    /// granted it): with the held credentials both the query's scopes and the token's grant cover.
    pub async fn answer_presentation_query(&self, verifier: &Verified, query: &Json) -> Result<Json, QueryRefusal> {
        if query.get("type").and_then(Json::as_str) != Some("PresentationQueryMessage") {
            return Err(refusal(400, "expected a PresentationQueryMessage"));
        }
        let scope = match (query.get("scope"), query.get("presentationDefinition")) {
            (Some(_), Some(_)) => return Err(refusal(400, "scope and presentationDefinition exclude each other")),
            (None, Some(_)) => return Err(refusal(501, "presentationDefinition is not supported; ask by scope")),
            (None, None) => return Err(refusal(400, "scope is required")),
            (Some(Json::Array(items)), None) if !items.is_empty() => items,
            (Some(_), None) => return Err(refusal(400, "scope must be a non-empty array of strings")),
        };
        if scope.iter().any(|entry| !entry.is_string()) {
            return Err(refusal(400, "scope must be a non-empty array of strings"));
        }
        // Scopes of aliases Hanse does not know grant nothing: the answer holds fewer credentials, as DCP says.
        let asked: Vec<credentials::Scope> =
            scope.iter().filter_map(Json::as_str).filter_map(credentials::Scope::parse).collect();
        let access =
            verifier.access_token.as_deref().ok_or_else(|| refusal(401, access::AccessError::Missing.to_string()))?;
        let grant = access::check(&self.keys(), access, &verifier.participant, Utc::now()).map_err(|error| {
            let status = if matches!(error, access::AccessError::Foreign(_)) { 403 } else { 401 };
            refusal(status, error.to_string())
        })?;
        let grant: Vec<credentials::Scope> = grant.iter().filter_map(|s| credentials::Scope::parse(s)).collect();
        let held = self.store.held_credentials().await.map_err(|e| refusal(500, e.to_string()))?;
        let now = Utc::now().timestamp_millis();
        let chosen: Vec<&HeldCredential> = held
            .iter()
            .filter(|c| c.valid_until.is_none_or(|until| until > now))
            .filter(|c| asked.iter().any(|s| s.covers(c)) && grant.iter().any(|s| s.covers(c)))
            .collect();
        tracing::info!(verifier = %verifier.participant, asked = ?asked, shown = chosen.len(), "presentation query answered");
        let presentations: Vec<String> = if chosen.is_empty() {
            Vec::new()
        } else {
            vec![credentials::presentation(&self.keys(), &verifier.participant, &chosen, Utc::now())]
        };
        Ok(
            json!({"@context": [credentials::DCP_CONTEXT], "type": "PresentationResponseMessage", "presentation": presentations}),
        )
    }

    /// The Storage API (DCP 1.0 issuance protocol): the verified `issuer` delivers credentials it issued to us. Each
    /// must be a JWT issued by the sender about us; the sender must be an issuer we trust for some credential type.
    /// Answers how many were stored.
    pub async fn store_delivered(&self, issuer: &Verified, message: &Json) -> Result<usize, QueryRefusal> {
        if message.get("type").and_then(Json::as_str) != Some("CredentialMessage") {
            return Err(refusal(400, "expected a CredentialMessage"));
        }
        if message.get("issuerPid").and_then(Json::as_str).is_none() {
            return Err(refusal(400, "issuerPid is required"));
        }
        match message.get("status").and_then(Json::as_str) {
            Some("ISSUED") => {}
            Some("REJECTED") => return Ok(0),
            _ => return Err(refusal(400, "status must be ISSUED or REJECTED")),
        }
        if !self.settings.trusted_issuers.values().any(|issuers| issuers.contains(&issuer.participant)) {
            return Err(refusal(403, "credentials are accepted from trusted issuers only (trust.issuers)"));
        }
        let containers = match message.get("credentials") {
            Some(Json::Array(items)) if items.len() <= 100 => items.clone(),
            None => Vec::new(),
            Some(_) => return Err(refusal(400, "credentials must be an array of at most 100 credential containers")),
        };
        let mut jwts = Vec::new();
        for container in &containers {
            let format = container.get("format").and_then(Json::as_str);
            let Some(payload) = container.get("payload").and_then(Json::as_str).filter(|_| format == Some("jwt"))
            else {
                return Err(refusal(400, "each credential must be a container with format jwt and a JWT payload"));
            };
            let summary = credentials::summarise(payload).map_err(|e| refusal(400, e.to_string()))?;
            if summary.issuer != issuer.participant {
                return Err(refusal(
                    403,
                    format!("a credential issued by {} was delivered by {}", summary.issuer, issuer.participant),
                ));
            }
            if did::controller_of(&summary.kid) != Some(summary.issuer.as_str()) {
                return Err(refusal(
                    400,
                    format!("the credential is signed with {}, not a key of its issuer", summary.kid),
                ));
            }
            self.check_signature(payload, &summary.issuer, &summary.kid)
                .await
                .map_err(|e| refusal(400, e.to_string()))?;
            jwts.push(payload);
        }
        for jwt in &jwts {
            import_credential(&self.store, self.did(), jwt).await.map_err(|e| match e {
                CredentialOpError::Store(error) => refusal(500, error.to_string()),
                other => refusal(400, other.to_string()),
            })?;
        }
        self.refresh_held().await.map_err(|e| refusal(500, e.to_string()))?;
        Ok(jwts.len())
    }

    /// Delivers a credential we issued to its subject's credential service (the Storage API).
    pub async fn deliver(&self, subject: &str, id: &str, kind: &str, jwt: &str) -> Result<(), String> {
        let document = self.resolver.resolve(subject).await.map_err(|e| e.to_string())?;
        let endpoint =
            document.service(did::CREDENTIAL_SERVICE).ok_or("the subject's DID document lists no CredentialService")?;
        let url = format!("{}/credentials", endpoint.trim_end_matches('/'));
        let message = json!({"@context": [credentials::DCP_CONTEXT], "type": "CredentialMessage", "issuerPid": id,
            "status": "ISSUED", "credentials": [{"credentialType": kind, "payload": jwt, "format": "jwt"}]});
        let response = (self.settings.traced)(self.http.post(&url))
            .header("Authorization", format!("Bearer {}", token::issue(&self.keys(), subject, Utc::now())))
            .json(&message)
            .send()
            .await
            .map_err(|e| format!("{url}: {}", hanse_core::error_chain(&e)))?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(format!("{url} answered HTTP {}", response.status().as_u16()))
        }
    }
}

/// Checks a JWT `signer` signed with a key listed in its DID document (found with `resolver`), of type `typ`;
/// answers its claims.
pub async fn verify_signed_with(resolver: &Resolver, jwt: &str, typ: &str, signer: &str) -> Result<Object, String> {
    let (header, _) = jose::peek(jwt).map_err(|e| e.to_string())?;
    if header.get("typ").and_then(Json::as_str) != Some(typ) {
        return Err(format!("not a {typ}"));
    }
    let kid = header.get("kid").and_then(Json::as_str).ok_or("the header names no key (kid)")?;
    if did::controller_of(kid) != Some(signer) {
        return Err(format!("key {kid} is not {signer}'s"));
    }
    let method = resolver.key(signer, kid).await.map_err(|e| e.to_string())?;
    jose::verify(jwt, &method.jwk).map_err(|e| e.to_string())
}

/// Issues a credential with `keys` for the issuer at `public_url`, recording it in `store` (used by the management
/// API and by `hanse credentials issue`).
pub async fn issue_credential(
    keys: &KeyRing,
    store: &IdentityStore,
    public_url: &str,
    request: &IssueRequest,
) -> Result<(String, String), CredentialOpError> {
    if !request.subject.starts_with("did:") {
        return Err(CredentialOpError::Invalid(format!("the subject `{}` is not a DID", request.subject)));
    }
    let kind = &request.credential_type;
    if kind.is_empty() || !kind.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
        return Err(CredentialOpError::Invalid(format!("`{kind}` is not a credential type name")));
    }
    let now = Utc::now();
    if request.valid_until.is_some_and(|until| until <= now) {
        return Err(CredentialOpError::Invalid("validUntil lies in the past".into()));
    }
    let id = format!("urn:uuid:{}", uuid::Uuid::new_v4());
    let types = format!("VerifiableCredential {kind}");
    let index = store.record_issued_credential(&id, &request.subject, &types).await?;
    if index >= credentials::STATUS_LIST_BITS as i64 {
        return Err(CredentialOpError::Invalid("the status list is full".into()));
    }
    let jwt = credentials::sign_credential(keys, public_url, &id, index, request, now);
    Ok((id, jwt))
}

/// Stores a credential this participant holds, after checking it is one and is about `holder`.
pub async fn import_credential(
    store: &IdentityStore,
    holder: &str,
    jwt: &str,
) -> Result<CredentialSummary, CredentialOpError> {
    let jwt = jwt.trim();
    let summary = credentials::summarise(jwt)?;
    if summary.subject != holder {
        return Err(CredentialError::WrongSubject { expected: holder.into(), found: summary.subject.clone() }.into());
    }
    if summary.valid_until.is_some_and(|until| until < Utc::now()) {
        return Err(CredentialError::Expired.into());
    }
    let id = if summary.id.is_empty() {
        format!("urn:sha256:{}", hex(&openssl::sha::sha256(jwt.as_bytes())))
    } else {
        summary.id.clone()
    };
    store
        .put_held_credential(&HeldCredential {
            id,
            types: summary.types.join(" "),
            issuer: summary.issuer.clone(),
            jwt: jwt.to_owned(),
            valid_until: summary.valid_until.map(|t| t.timestamp_millis()),
            imported_at: Utc::now().timestamp_millis(),
        })
        .await?;
    Ok(summary)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Drops expired token ids from the replay cache every minute until shutdown.
pub fn spawn_replay_cache_sweeper(
    store: IdentityStore,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {}
                _ = shutdown.changed() => return,
            }
            match store.forget_expired_tokens().await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(forgotten = n, "expired token ids dropped from the replay cache"),
                Err(error) => tracing::warn!(%error, "cannot sweep the replay cache"),
            }
        }
    })
}
