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

pub mod credentials;
pub mod did;
pub mod limited;
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
}

/// The identity services of one connector.
pub struct Identity {
    keys: KeyRing,
    resolver: Resolver,
    http: reqwest::Client,
    store: IdentityStore,
    settings: IdentitySettings,
    claims_cache: Mutex<HashMap<String, CachedClaims>>,
    status_cache: Mutex<HashMap<String, (Instant, Arc<String>)>>,
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
            keys,
            resolver,
            http,
            store,
            settings,
            claims_cache: Mutex::new(HashMap::new()),
            status_cache: Mutex::new(HashMap::new()),
        }
    }

    /// Our DID.
    pub fn did(&self) -> &str {
        self.keys.did()
    }

    /// The signing keys.
    pub fn keys(&self) -> &KeyRing {
        &self.keys
    }

    /// The DID resolver.
    pub fn resolver(&self) -> &Resolver {
        &self.resolver
    }

    /// The `Authorization` header value for a request to the participant `audience`.
    pub fn authorization(&self, audience: &str) -> String {
        token::authorization(&self.keys, audience)
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
        checked
    }

    /// Our DID document as the public listener serves it.
    pub fn did_document(&self) -> Json {
        let mut services =
            vec![("StatusListService".to_owned(), credentials::status_list_url(&self.settings.public_url))];
        services.extend(self.settings.services.iter().cloned());
        let mut keys = self.keys.listed(Utc::now());
        if let Some(url) = &self.settings.certificate_chain_url {
            for (kid, jwk) in &mut keys {
                if kid == self.keys.current_kid() {
                    jwk.insert("x5u".into(), Json::String(url.clone()));
                }
            }
        }
        did::our_document(self.did(), &keys, &self.settings.public_url, &services)
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
        let response = (self.settings.traced)(self.http.post(&url))
            .header("Authorization", self.authorization(participant))
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
        issue_credential(&self.keys, &self.store, &self.settings.public_url, request).await
    }

    /// Our status list credential as it stands.
    pub async fn status_list_credential(&self) -> Result<String, StoreError> {
        let revoked = self.store.revoked_status_indices().await?;
        Ok(credentials::status_list_credential(&self.keys, &self.settings.public_url, &revoked, Utc::now()))
    }

    // ---- holder ----

    /// Answers a DCP presentation query from the verified `verifier` with the held credentials of the asked types.
    pub async fn answer_presentation_query(&self, verifier: &str, query: &Json) -> Result<Json, String> {
        if query.get("type").and_then(Json::as_str) != Some("PresentationQueryMessage") {
            return Err("expected a PresentationQueryMessage".into());
        }
        let scope: Vec<String> = match query.get("scope") {
            Some(Json::Array(items)) => items.iter().filter_map(Json::as_str).map(str::to_owned).collect(),
            _ => return Err("scope is required (presentationDefinition is not supported)".into()),
        };
        let wanted = credentials::scope_types(&scope)?;
        let held = self.store.held_credentials().await.map_err(|e| e.to_string())?;
        let now = Utc::now().timestamp_millis();
        let chosen: Vec<&HeldCredential> = held
            .iter()
            .filter(|c| c.valid_until.is_none_or(|until| until > now))
            .filter(|c| c.types.split(' ').any(|t| wanted.iter().any(|w| w == t)))
            .collect();
        tracing::info!(%verifier, types = ?wanted, shown = chosen.len(), "presentation query answered");
        let vp = credentials::presentation(&self.keys, verifier, &chosen, Utc::now());
        Ok(json!({"@context": [credentials::DCP_CONTEXT], "type": "PresentationResponseMessage", "presentation": [vp]}))
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
