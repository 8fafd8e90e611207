//! The built-in data plane: HTTP pull from the public listener and HTTP push to a consumer's endpoint.
//!
//! **Pull**: `GET`/`HEAD {public}/data/{transferId}` with the access token of the transfer's data address. Every request
//! checks the token (our signature, this transfer, not expired), the stored transfer (provider side, STARTED, the
//! token's epoch) and the agreement ([`Transfers::check_use`](crate::transfer::Transfers::check_use)) before a byte
//! leaves. `POST .../token`, signed by the consumer's own DSP token, hands out a fresh data address. **Push**: the
//! provider streams the data to the consumer's endpoint and completes the transfer.
//!
//! Sources: a `File` under the data root, read through [`Files`](crate::files::Files) from this node's folder or
//! the object storage replicas share (served with one `Range`, `If-Range`, `Content-Length`, `Last-Modified`, and
//! the file's SHA-256 as `ETag`, `Repr-Digest` and `Digest`), or an `HttpData` backend (proxied; the asset's private
//! auth header goes to the backend only). Bodies stream in chunks: memory stays flat whatever the size. Usage (pulls started from
//! byte 0, bytes sent) is added to the agreement's count when a response body ends.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Path as UrlPath, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use serde_json::{Value as Json, json};
use tokio::sync::OnceCell;

use crate::catalog::model::{DataAddress, Proxy};
use crate::store::Processes;
use crate::transfer::access::{self as token, Access};
use crate::transfer::{self, machine::Role, machine::State as TransferState};

/// The data plane: serves and pushes the data of started transfers, with its HTTP client (no overall timeout: bodies
/// may be large) and the digests of the files it serves.
pub struct DataPlane {
    pub http: reqwest::Client,
    /// Where `File` datasets are read from.
    pub files: Arc<crate::files::Files>,
    digests: Mutex<HashMap<PathBuf, CachedDigest>>,
    pub(crate) catalogue: Arc<crate::catalog::Catalogue>,
    /// The transfers whose data this plane serves and pushes.
    pub transfers: transfer::Transfers,
    /// This replica: a push runs on the one replica that holds its lease.
    pub cluster: Arc<crate::cluster::Cluster>,
}

/// A file's digest, valid while its size, modification time and version tag stay the same.
type CachedDigest = (Version, Arc<OnceCell<Digest>>);

/// What tells one version of a stored file from another.
type Version = (u64, chrono::DateTime<chrono::Utc>, Option<String>);

/// A file's SHA-256.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn hex(&self) -> String {
        crate::process::hex(&self.0)
    }

    /// RFC 9530 `Repr-Digest` value.
    pub fn repr_digest(&self) -> String {
        format!("sha-256=:{}:", STANDARD.encode(self.0))
    }

    /// The headers a consumer verifies with.
    fn headers(&self) -> [(HeaderName, String); 3] {
        [
            (header::ETAG, format!("\"{}\"", self.hex())),
            (HeaderName::from_static("repr-digest"), self.repr_digest()),
            (HeaderName::from_static("digest"), format!("SHA-256={}", STANDARD.encode(self.0))),
        ]
    }
}

/// Feeds everything `reader` yields into `hasher`, in 1 MiB chunks; answers the byte count.
pub fn hash_into(mut reader: impl std::io::Read, hasher: &mut openssl::sha::Sha256) -> std::io::Result<u64> {
    let mut buffer = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let read = reader.read(&mut buffer)?;
        if read == 0 {
            return Ok(total);
        }
        hasher.update(&buffer[..read]);
        total += read as u64;
    }
}

impl DataPlane {
    pub fn new(
        http: reqwest::Client,
        files: Arc<crate::files::Files>,
        transfers: transfer::Transfers,
        catalogue: Arc<crate::catalog::Catalogue>,
        cluster: Arc<crate::cluster::Cluster>,
    ) -> DataPlane {
        DataPlane { http, files, digests: Mutex::default(), catalogue, transfers, cluster }
    }

    /// A stored file's SHA-256, computed once per version (size, modification time, version tag); with its
    /// metadata.
    pub async fn digest(&self, path: &Path) -> std::io::Result<(Digest, object_store::ObjectMeta)> {
        let meta = self.files.data_meta(path).await?;
        let version: Version = (meta.size, meta.last_modified, meta.e_tag.clone());
        let cell = {
            let mut digests = self.digests.lock().unwrap_or_else(|p| p.into_inner());
            let entry = digests.entry(path.to_owned()).or_insert_with(|| (version.clone(), Arc::default()));
            if entry.0 != version {
                *entry = (version, Arc::default());
            }
            entry.1.clone()
        };
        let digest = cell
            .get_or_try_init(|| async {
                let mut stream = self.files.read_data(path, None).await?;
                let mut hasher = openssl::sha::Sha256::new();
                while let Some(chunk) = stream.next().await {
                    hasher.update(&chunk?);
                }
                Ok::<_, std::io::Error>(Digest(hasher.finish()))
            })
            .await?
            .clone();
        Ok((digest, meta))
    }
}

/// A data plane refusal: a status and a JSON reason (the token's defect is logged, not told).
pub(crate) fn refuse(status: StatusCode, reason: &str) -> Response {
    crate::problem::PublicError::hanse(status, reason).into_response()
}

/// Adds a response's bytes to the agreement's usage when the body ends, with its audit entry (the pull itself is
/// counted before the first byte, so that a `count` constraint holds under concurrent pulls). While it lives, the
/// stream counts as an active transfer in the measurements; its bytes are added to them when it ends.
struct Meter {
    store: Processes,
    bytes: Arc<AtomicU64>,
    /// The entry recording the bytes sent (`data.bytes`); it names the agreement whose usage grows.
    event: crate::audit::Event,
    /// `served` (a pull) or `pushed`.
    direction: &'static str,
}

impl Meter {
    fn new(store: &Processes, transfer: &transfer::Transfer, direction: &'static str) -> Meter {
        store.meter().gauge("hanse_dataplane_active_transfers", &[]).increment(1.0);
        Meter { store: store.clone(), bytes: Arc::default(), event: usage_event("data.bytes", transfer), direction }
    }

    /// The SHA-256 of the representation sent, when known.
    fn with_digest(mut self, digest: Option<String>) -> Meter {
        if let Some(digest) = digest {
            self.event.details.insert("digest".into(), json!(digest));
        }
        self
    }
}

/// The audit entry of a use of data under a transfer (no personal data: ids, and digests added by the caller).
fn usage_event(kind: &'static str, transfer: &transfer::Transfer) -> crate::audit::Event {
    crate::audit::Event::new(kind, json!({"transfer": transfer.row.id, "format": transfer.details.format}))
        .agreement(Some(transfer.agreement_id()))
        .participant(Some(&transfer.row.counter_party_id))
        .dataset(transfer.details.asset_id.as_deref())
}

impl Drop for Meter {
    fn drop(&mut self) {
        let (store, bytes) = (self.store.clone(), self.bytes.load(Ordering::Relaxed));
        let meter = store.meter();
        meter.gauge("hanse_dataplane_active_transfers", &[]).decrement(1.0);
        meter.counter("hanse_dataplane_bytes_total", &[("direction", self.direction)]).increment(bytes);
        let mut event = self.event.clone();
        event.details.insert("bytes".into(), json!(bytes));
        let agreement = event.agreement.clone().unwrap_or_default();
        tokio::spawn(async move {
            if let Err(error) = store.add_usage(&agreement, 0, bytes as i64, vec![event]).await {
                tracing::error!(%error, agreement, "cannot record the agreement's usage");
            }
        });
    }
}

/// The one byte range a request asks for (`None`: the whole file). `If-Range` with another version, several
/// ranges, or a `Range` that is not a byte range get the whole file (RFC 9110 lets a server ignore them); a range
/// outside the file is `Err` (416).
fn wanted_range(
    headers: &HeaderMap,
    size: u64,
    digest: &Digest,
    modified: &str,
) -> Result<Option<std::ops::Range<u64>>, ()> {
    let Some(asked) = headers.get(header::RANGE).and_then(|v| v.to_str().ok()) else {
        return Ok(None);
    };
    if let Some(condition) = headers.get(header::IF_RANGE).and_then(|v| v.to_str().ok())
        && condition != format!("\"{}\"", digest.hex())
        && condition != modified
    {
        return Ok(None);
    }
    let Ok(parsed) = http_range_header::parse_range_header(asked) else {
        return Ok(None);
    };
    match parsed.validate(size) {
        Ok(ranges) if ranges.len() == 1 => Ok(Some(*ranges[0].start()..ranges[0].end() + 1)),
        Ok(_) => Ok(None),
        Err(_) => Err(()),
    }
}

fn metered<S, E>(stream: S, meter: Meter) -> impl Stream<Item = Result<Bytes, E>> + Send + 'static
where
    S: Stream<Item = Result<Bytes, E>> + Send + 'static,
{
    let counter = meter.bytes.clone();
    stream.map(move |chunk| {
        let _keep = &meter;
        if let Ok(bytes) = &chunk {
            counter.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        }
        chunk
    })
}

/// Whether a request reads from the first byte (a new pull, not the resumption of one).
fn from_start(headers: &HeaderMap) -> bool {
    match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        None => true,
        Some(range) => range.trim().strip_prefix("bytes=").is_some_and(|r| r.trim_start().starts_with("0-")),
    }
}

impl DataPlane {
    /// The started provider transfer `id` a request's bearer access token opens, with what the token grants; otherwise
    /// the refusal to answer (401 for any token problem, 403 once the transfer left STARTED).
    pub async fn authorise(&self, id: &str, headers: &HeaderMap) -> Result<(Access, transfer::Transfer), Response> {
        let token = match crate::identity::token::data_plane_token(
            headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()),
        ) {
            Ok(token) => token.to_owned(),
            Err(reason) => {
                tracing::info!(%reason, transfer = id, "data request without a usable token");
                return Err(refuse(StatusCode::UNAUTHORIZED, "a valid access token is required"));
            }
        };
        let access = match token::verify(&self.transfers.identity.keys(), &token, id, chrono::Utc::now()) {
            Ok(access) => access,
            Err(reason) => {
                tracing::info!(%reason, transfer = id, "data request with a refused token");
                return Err(refuse(StatusCode::UNAUTHORIZED, "a valid access token is required"));
            }
        };
        let transfer = match self.transfers.get(id).await {
            Ok(transfer) if transfer.role == Role::Provider && transfer.row.counter_party_id == access.consumer => {
                transfer
            }
            Ok(_) | Err(crate::process::ProcessError::NotFound(_)) => {
                return Err(refuse(StatusCode::UNAUTHORIZED, "a valid access token is required"));
            }
            Err(error) => {
                tracing::error!(%error, "cannot read a transfer");
                return Err(refuse(StatusCode::SERVICE_UNAVAILABLE, "the transfer cannot be read now"));
            }
        };
        if transfer.state != TransferState::Started {
            return Err(refuse(
                StatusCode::FORBIDDEN,
                &format!("the transfer is {}; its access tokens are void", transfer.state.name()),
            ));
        }
        if transfer.details.epoch != access.epoch || transfer.agreement_id() != access.agreement_id {
            return Err(refuse(StatusCode::UNAUTHORIZED, "the access token was superseded; refresh the data address"));
        }
        Ok((access, transfer))
    }

    /// The agreement no longer permits use (expired, used up, dataset withdrawn): the refusal is logged, the transfer ends
    /// now, and the request gets 403 with the reason.
    pub async fn refuse_use(
        &self,
        transfer_id: &str,
        consumer: &str,
        agreement_id: &str,
        refusal: transfer::Refusal,
        during: &str,
    ) -> Response {
        refusal.record(&self.transfers.audit, consumer, agreement_id, during).await;
        let (transfers, id, reason) = (self.transfers.clone(), transfer_id.to_owned(), refusal.reason.clone());
        tokio::spawn(async move {
            if let Err(error) = transfers.end(&id, "PolicyDenied", &reason, false).await {
                tracing::error!(%error, "cannot terminate a transfer its agreement no longer permits");
            }
        });
        refuse(StatusCode::FORBIDDEN, &refusal.reason)
    }

    /// The data of transfer `id` at `path` below its endpoint: the access token, the transfer and the agreement are
    /// checked first, then what the data address lets through (EDC's `proxyPath`, `proxyQueryParams`, `proxyMethod`,
    /// `proxyBody`); a request asking for more than that is refused, never cut down silently.
    async fn serve_at(&self, id: &str, path: &str, request: Request) -> Response {
        let headers = request.headers().clone();
        let (access, transfer) = match self.authorise(id, &headers).await {
            Ok(granted) => granted,
            Err(refusal) => return refusal,
        };
        if transfer.is_compute() {
            return refuse(StatusCode::CONFLICT, "a compute transfer has no data to pull; submit jobs to its endpoint");
        }
        let get = request.method() == Method::GET;
        let new_pull = get && from_start(&headers);
        let grant = match self.transfers.check_use(&access.consumer, &access.agreement_id, "use", new_pull).await {
            Ok(grant) => grant,
            Err(refusal) => {
                return self.refuse_use(id, &access.consumer, &access.agreement_id, refusal, "data pull").await;
            }
        };
        let Some(asset) = self.catalogue.asset(&grant.agreement.asset_id) else {
            return refuse(StatusCode::GONE, "the dataset is no longer offered");
        };
        let address = &asset.value.data_address;
        let forward = match address {
            DataAddress::Http { base_url, .. } => match Forward::of(base_url, address.proxy(), path, &request) {
                Ok(forward) => Some(forward),
                Err(refusal) => return refusal,
            },
            _ => {
                if request.method() != Method::GET && request.method() != Method::HEAD {
                    return refuse(StatusCode::METHOD_NOT_ALLOWED, "this dataset is read with GET or HEAD");
                }
                if !path.is_empty() || request.uri().query().is_some_and(|q| !q.is_empty()) {
                    return refuse(StatusCode::BAD_REQUEST, "this dataset is one file: it has no sub-paths or query");
                }
                None
            }
        };
        if new_pull
            && let Err(error) = self
                .transfers
                .store
                .add_usage(&access.agreement_id, 1, 0, vec![usage_event("data.pull", &transfer)])
                .await
        {
            tracing::error!(%error, "cannot count a pull");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "the pull cannot be counted now");
        }
        let meter = get.then(|| Meter::new(&self.transfers.store, &transfer, "served"));
        match (address, forward) {
            (DataAddress::Http { fields, .. }, Some(forward)) => self.proxy(forward, fields, request, meter).await,
            (DataAddress::File { path, .. }, _) => self.serve_file(path, request, meter).await,
            _ => refuse(StatusCode::CONFLICT, "the dataset is a table: it is offered for compute only"),
        }
    }

    /// A `File` dataset's bytes as the data plane serves them (ranges, the file's digest headers, `no-store`), outside
    /// any transfer: what the app API sends.
    pub(crate) async fn file(&self, path: &Path, request: Request) -> Response {
        self.serve_file(path, request, None).await
    }

    async fn serve_file(&self, path: &Path, request: Request, meter: Option<Meter>) -> Response {
        let (digest, meta) = match self.digest(path).await {
            Ok(found) => found,
            Err(error) => {
                tracing::error!(%error, path = %path.display(), "cannot read a dataset file");
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "the dataset's file cannot be read now");
            }
        };
        let modified = httpdate::fmt_http_date(meta.last_modified.into());
        let range = match wanted_range(request.headers(), meta.size, &digest, &modified) {
            Ok(range) => range,
            Err(()) => {
                let mut refused = refuse(StatusCode::RANGE_NOT_SATISFIABLE, "the range lies outside the file");
                if let Ok(value) = HeaderValue::from_str(&format!("bytes */{}", meta.size)) {
                    refused.headers_mut().insert(header::CONTENT_RANGE, value);
                }
                return refused;
            }
        };
        let mut response = Response::new(Body::empty());
        let headers = response.headers_mut();
        for (name, value) in digest.headers() {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
        let content_type = mime_guess::from_path(path).first_or_octet_stream();
        if let Ok(value) = HeaderValue::from_str(content_type.essence_str()) {
            headers.insert(header::CONTENT_TYPE, value);
        }
        if let Ok(value) = HeaderValue::from_str(&modified) {
            headers.insert(header::LAST_MODIFIED, value);
        }
        headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        let length = range.as_ref().map_or(meta.size, |r| r.end - r.start);
        headers.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
        if let Some(range) = &range {
            let value = format!("bytes {}-{}/{}", range.start, range.end - 1, meta.size);
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(header::CONTENT_RANGE, value);
            }
            *response.status_mut() = StatusCode::PARTIAL_CONTENT;
        }
        if request.method() == Method::HEAD || length == 0 {
            return response;
        }
        let stream = match self.files.read_data(path, range).await {
            Ok(stream) => stream,
            Err(error) => {
                tracing::error!(%error, path = %path.display(), "cannot read a dataset file");
                return refuse(StatusCode::SERVICE_UNAVAILABLE, "the dataset's file cannot be read now");
            }
        };
        *response.body_mut() = match meter {
            Some(meter) => Body::from_stream(metered(stream, meter.with_digest(Some(digest.hex())))),
            None => Body::from_stream(stream),
        };
        response
    }

    async fn proxy(
        &self,
        forward: Forward,
        fields: &std::collections::BTreeMap<String, String>,
        incoming: Request,
        meter: Option<Meter>,
    ) -> Response {
        let headers = incoming.headers().clone();
        let mut request = crate::telemetry::traced(self.http.request(forward.method, forward.url));
        for name in [header::RANGE, header::IF_RANGE, header::ACCEPT] {
            if let Some(value) = headers.get(&name) {
                request = request.header(name, value);
            }
        }
        if forward.body {
            if let Some(value) = headers.get(header::CONTENT_TYPE) {
                request = request.header(header::CONTENT_TYPE, value);
            }
            request = request.body(reqwest::Body::wrap_stream(incoming.into_body().into_data_stream()));
        }
        if let Some((name, value)) = backend_auth(fields) {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(error = %hanse_core::error_chain(&error), "the dataset's backend cannot be reached");
                return refuse(StatusCode::BAD_GATEWAY, "the dataset's backend cannot be reached");
            }
        };
        let status = response.status();
        if status.is_server_error() {
            tracing::warn!(status = status.as_u16(), "the dataset's backend failed");
            return refuse(StatusCode::BAD_GATEWAY, "the dataset's backend failed");
        }
        let mut out = Response::builder().status(status.as_u16());
        for name in PASSED_BACK {
            if let Some(value) = response.headers().get(&name) {
                out = out.header(name, value);
            }
        }
        out = out.header(header::CACHE_CONTROL, "no-store");
        let body = match meter {
            Some(meter) if status.is_success() => {
                let digest = response.headers().get("repr-digest").and_then(|v| v.to_str().ok()).map(str::to_owned);
                Body::from_stream(metered(response.bytes_stream(), meter.with_digest(digest)))
            }
            _ => Body::from_stream(response.bytes_stream()),
        };
        out.body(body).unwrap_or_else(|_| refuse(StatusCode::BAD_GATEWAY, "the backend's answer cannot be passed on"))
    }
}

/// Runs the pushes the transfer service says are due, until shutdown: each once at a time, registered with the
/// transfer service so that it can stop them, and each on the one replica that holds its lease (`push:{id}`). A push
/// whose lease is lost stops; the replica that takes the lease over delivers again under the same delivery id.
pub fn spawn_pusher(plane: Arc<DataPlane>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    let Some(mut due) = plane.transfers.pushes.take_due() else { return };
    tokio::spawn(async move {
        loop {
            let id = tokio::select! {
                _ = shutdown.wait_for(|stop| *stop) => return,
                id = due.recv() => match id {
                    Some(id) => id,
                    None => return,
                },
            };
            let task_plane = plane.clone();
            plane.transfers.pushes.running(id.clone(), async move {
                // Held until the push's end is recorded: no other replica resumes a push delivered here.
                let mut lease = task_plane.cluster.hold(&format!("push:{id}")).await;
                let outcome = match &mut lease {
                    Some(lease) => tokio::select! {
                        outcome = task_plane.push(&id) => Some(outcome),
                        _ = lease.lost() => {
                            tracing::warn!(transfer = id, "push stopped: its lease was lost to another replica");
                            None
                        }
                    },
                    None => {
                        tracing::debug!(transfer = id, "another replica runs this push");
                        None
                    }
                };
                if let Some(outcome) = outcome {
                    match &outcome {
                        Ok(bytes) => tracing::info!(transfer = id, bytes, "pushed"),
                        Err(reason) => tracing::warn!(transfer = id, %reason, "push failed"),
                    }
                    if let Err(error) = task_plane.transfers.push_finished(&id, outcome).await {
                        tracing::error!(%error, transfer = id, "cannot record the end of a push");
                    }
                }
                // Only now may this replica start the push again: a resume meanwhile would hold the same lease.
                task_plane.transfers.pushes.ended(&id);
            });
        }
    });
}

impl DataPlane {
    /// Opens a dataset's bytes for pushing: the stream, its length and digest when known.
    async fn open_source(&self, address: &DataAddress) -> Result<(ByteStream, Option<u64>, Option<Digest>), String> {
        match address {
            DataAddress::File { path, .. } => {
                let (digest, meta) = self.digest(path).await.map_err(|e| format!("cannot read the dataset: {e}"))?;
                let stream =
                    self.files.read_data(path, None).await.map_err(|e| format!("cannot open the dataset: {e}"))?;
                Ok((stream, Some(meta.size), Some(digest)))
            }
            DataAddress::Http { base_url, fields } => {
                let mut request = self.http.get(base_url);
                if let Some((name, value)) = backend_auth(fields) {
                    request = request.header(name, value);
                }
                let response = request
                    .send()
                    .await
                    .map_err(|e| format!("the dataset's backend cannot be reached: {}", hanse_core::error_chain(&e)))?;
                if !response.status().is_success() {
                    return Err(format!("the dataset's backend answered HTTP {}", response.status().as_u16()));
                }
                let length = response.content_length();
                Ok((Box::pin(response.bytes_stream().map(|c| c.map_err(std::io::Error::other))), length, None))
            }
            DataAddress::Table { .. } => Err("the dataset is a table: it is offered for compute only".into()),
        }
    }

    async fn push(&self, id: &str) -> Result<u64, String> {
        let transfer = self.transfers.get(id).await.map_err(|e| e.to_string())?;
        let grant = self
            .transfers
            .check_use(&transfer.row.counter_party_id, transfer.agreement_id(), "use", true)
            .await
            .map_err(|refusal| refusal.reason)?;
        self.transfers
            .store
            .add_usage(&grant.agreement.id, 1, 0, vec![usage_event("data.push", &transfer)])
            .await
            .map_err(|e| format!("cannot count the push: {e}"))?;
        let destination = transfer.details.destination.clone().unwrap_or(Json::Null);
        let endpoint =
            destination.get("endpoint").and_then(Json::as_str).ok_or("the push destination has no endpoint")?;
        let asset = self.catalogue.asset(&grant.agreement.asset_id).ok_or("the dataset is no longer offered")?;
        let (stream, length, digest) = self.open_source(&asset.value.data_address).await?;
        // Every push states its length and digest, so that a destination can tell a delivery cut short from a whole
        // one: a source that does not say its length is read to a spool file first.
        let (stream, length, digest) = match (length, digest) {
            (Some(length), Some(digest)) => (stream, length, digest),
            _ => spool(stream).await?,
        };
        let attempt = self.transfers.push_begun(id).await.map_err(|e| format!("cannot record the push: {e}"))?;
        let meter = Meter::new(&self.transfers.store, &transfer, "pushed").with_digest(Some(digest.hex()));
        let sent = meter.bytes.clone();
        // The delivery id is the transfer's: the same on every attempt, so that a destination that has the data
        // already can answer a repeated delivery without storing it twice.
        let mut request = crate::telemetry::traced(self.http.post(endpoint))
            .header(header::CONTENT_TYPE, "application/octet-stream")
            .header(header::CONTENT_LENGTH, length)
            .header("repr-digest", digest.repr_digest())
            .header("idempotency-key", &transfer.row.id)
            .header("hanse-delivery-attempt", attempt)
            .body(reqwest::Body::wrap_stream(metered(stream, meter)));
        if let Some(authorization) = transfer::endpoint_property(&destination, "authorization") {
            let name = transfer::endpoint_property(&destination, "authKey").unwrap_or("Authorization");
            let bearer =
                transfer::endpoint_property(&destination, "authType").is_some_and(|t| t.eq_ignore_ascii_case("bearer"));
            let value = if bearer && !authorization.starts_with("Bearer ") {
                format!("Bearer {authorization}")
            } else {
                authorization.to_owned()
            };
            request = request.header(name, value);
        }
        let response = request
            .send()
            .await
            .map_err(|e| format!("the push destination cannot be reached: {}", hanse_core::error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(format!("the push destination answered HTTP {}", response.status().as_u16()));
        }
        Ok(sent.load(Ordering::Relaxed))
    }
}

/// Reads a stream of unknown length to an anonymous spool file (removed when dropped), hashing it on the way; answers
/// the file as a stream, its length and its digest.
async fn spool(mut stream: ByteStream) -> Result<(ByteStream, u64, Digest), String> {
    use sha2::Digest as _;
    use tokio::io::{AsyncSeekExt, AsyncWriteExt};
    let spooled = tempfile::tempfile().map_err(|e| format!("cannot spool the dataset: {e}"))?;
    let mut file = tokio::fs::File::from_std(spooled);
    let (mut hasher, mut length) = (sha2::Sha256::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| format!("the dataset's backend broke off: {e}"))?;
        hasher.update(&chunk);
        length += chunk.len() as u64;
        file.write_all(&chunk).await.map_err(|e| format!("cannot spool the dataset: {e}"))?;
    }
    file.flush().await.map_err(|e| e.to_string())?;
    file.seek(std::io::SeekFrom::Start(0)).await.map_err(|e| e.to_string())?;
    let stream = tokio_util::io::ReaderStream::with_capacity(file, 256 * 1024);
    Ok((Box::pin(stream), length, Digest(hasher.finalize().into())))
}

/// `/data/{transferId}`: the data of a started pull transfer.
pub async fn serve(State(state): State<Arc<DataPlane>>, UrlPath(id): UrlPath<String>, request: Request) -> Response {
    state.serve_at(&id, "", request).await
}

/// `/data/{transferId}/{*path}`: a sub-path of an `HttpData` dataset, when its data address lets paths through.
pub async fn serve_path(
    State(state): State<Arc<DataPlane>>,
    UrlPath((id, path)): UrlPath<(String, String)>,
    request: Request,
) -> Response {
    state.serve_at(&id, &path, request).await
}

/// What a consumer's request passes on to an `HttpData` backend: the URL (the base URL, with the sub-path and query
/// where allowed), the method, and whether the body goes along.
struct Forward {
    url: reqwest::Url,
    method: Method,
    body: bool,
}

impl Forward {
    /// Checks the request against what an `HttpData` address at `base_url` lets through (`allowed`); the refusal
    /// says which switch is off.
    #[allow(clippy::result_large_err)]
    fn of(base_url: &str, allowed: Proxy, path: &str, request: &Request) -> Result<Forward, Response> {
        let method = request.method().clone();
        let query = request.uri().query().filter(|q| !q.is_empty());
        let has_body = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|length| length.trim() != "0")
            || request.headers().contains_key(header::TRANSFER_ENCODING);
        let read_only = method == Method::GET || method == Method::HEAD;
        if !read_only && !allowed.method {
            return Err(refuse(
                StatusCode::METHOD_NOT_ALLOWED,
                "this dataset is read with GET or HEAD (its data address does not set proxyMethod)",
            ));
        }
        if has_body && !read_only && !allowed.body {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "this dataset takes no request body (its data address does not set proxyBody)",
            ));
        }
        if !path.is_empty() && !allowed.path {
            return Err(refuse(
                StatusCode::NOT_FOUND,
                "this dataset has no sub-paths (its data address does not set proxyPath)",
            ));
        }
        if query.is_some() && !allowed.query {
            return Err(refuse(
                StatusCode::BAD_REQUEST,
                "this dataset takes no query parameters (its data address does not set proxyQueryParams)",
            ));
        }
        let url = backend_url(base_url, path, query)
            .ok_or_else(|| refuse(StatusCode::BAD_REQUEST, "the sub-path must stay below the dataset's address"))?;
        Ok(Forward { url, method, body: has_body && !read_only })
    }
}

/// `base` with `path` appended below it and `query` added; `None` when the result would leave the base URL (a `.`
/// or `..` segment, an encoded slash or backslash) — nothing is ever sent to another host or above the base path.
fn backend_url(base: &str, path: &str, query: Option<&str>) -> Option<reqwest::Url> {
    let mut url = reqwest::Url::parse(base).ok()?;
    if !path.is_empty() {
        let segments: Vec<&str> = path.split('/').collect();
        let unsafe_segment = |segment: &&str| {
            let lower = segment.to_ascii_lowercase();
            matches!(*segment, "." | "..") || lower.contains("%2f") || lower.contains("%5c") || segment.contains('\\')
        };
        if segments.iter().any(unsafe_segment) {
            return None;
        }
        let mut joined = url.path().trim_end_matches('/').to_owned();
        for segment in segments {
            joined.push('/');
            joined.push_str(segment);
        }
        url.set_path(&joined);
    }
    if let Some(query) = query {
        let merged = match url.query() {
            Some(own) if !own.is_empty() => format!("{own}&{query}"),
            _ => query.to_owned(),
        };
        url.set_query(Some(&merged));
    }
    let original = reqwest::Url::parse(base).ok()?;
    let same_origin = url.scheme() == original.scheme()
        && url.host_str() == original.host_str()
        && url.port_or_known_default() == original.port_or_known_default();
    (same_origin && url.path().starts_with(original.path().trim_end_matches('/'))).then_some(url)
}

/// The backend's auth header (EDC `authKey` / `authCode`): it goes to the backend and never to the consumer.
fn backend_auth(fields: &std::collections::BTreeMap<String, String>) -> Option<(String, String)> {
    let value = fields.get("authCode")?;
    Some((fields.get("authKey").cloned().unwrap_or_else(|| "Authorization".into()), value.clone()))
}

/// The headers passed back from a backend.
const PASSED_BACK: [HeaderName; 7] = [
    header::CONTENT_TYPE,
    header::CONTENT_LENGTH,
    header::CONTENT_RANGE,
    header::ACCEPT_RANGES,
    header::ETAG,
    header::LAST_MODIFIED,
    HeaderName::from_static("repr-digest"),
];

/// `POST /data/{transferId}/token`: a fresh data address for the consumer of a started pull transfer, which proves
/// who it is with its DSP self-issued token.
pub async fn refresh(
    State(state): State<Arc<DataPlane>>,
    UrlPath(id): UrlPath<String>,
    headers: HeaderMap,
) -> Response {
    let requester = match state.transfers.identity.verify_request(&headers).await {
        Ok(verified) => verified.participant,
        Err(reason) => {
            tracing::info!(%reason, "data address refresh refused");
            return refuse(StatusCode::UNAUTHORIZED, "unauthorized");
        }
    };
    let transfer = match state.transfers.get_for_peer(&requester, &id).await {
        Ok(transfer) if transfer.role == Role::Provider => transfer,
        Ok(_) | Err(crate::process::ProcessError::NotFound(_)) => {
            return refuse(StatusCode::NOT_FOUND, "no such transfer");
        }
        Err(error) => {
            tracing::error!(%error, "cannot read a transfer");
            return refuse(StatusCode::SERVICE_UNAVAILABLE, "the transfer cannot be read now");
        }
    };
    let pulled = matches!(transfer.details.format.as_deref(), Some(transfer::PULL | transfer::COMPUTE));
    if transfer.state != TransferState::Started || !pulled {
        return refuse(StatusCode::CONFLICT, &format!("the transfer is {}, not a started pull", transfer.state.name()));
    }
    if let Err(refusal) = state.transfers.check_use(&requester, transfer.agreement_id(), transfer.action(), false).await
    {
        return refuse(StatusCode::FORBIDDEN, &refusal.reason);
    }
    axum::Json(state.transfers.data_address(&transfer)).into_response()
}

use crate::files::ByteStream;

/// The data plane's routes on the public listener.
pub fn routes(plane: Arc<DataPlane>) -> axum::Router {
    axum::Router::new()
        .route("/data/{id}", axum::routing::any(serve))
        .route("/data/{id}/", axum::routing::any(serve))
        .route("/data/{id}/token", axum::routing::post(refresh))
        .route("/data/{id}/{*path}", axum::routing::any(serve_path))
        .with_state(plane)
}

/// The JSON a consumer's tools read a data address from (EDC EDR shape).
pub fn edr_json(transfer_id: &str, address: &Json) -> Json {
    let property = |name| transfer::endpoint_property(address, name).map(str::to_owned);
    json!({
        "@context": hanse_self_descriptions::dcat::management_context(),
        "@type": "DataAddress",
        "type": transfer::HTTP_ENDPOINT,
        "endpointType": transfer::HTTP_ENDPOINT,
        "endpoint": address.get("endpoint"),
        "authorization": property("authorization"),
        "authType": property("authType"),
        "expiresAt": property("expiresAt"),
        "refreshEndpoint": property("refreshEndpoint"),
        "transferProcessId": transfer_id,
    })
}

#[cfg(test)]
mod proxy_tests {
    use super::backend_url;

    #[test]
    fn a_consumer_path_stays_below_the_base_url_on_its_host() {
        let url =
            |path, query| backend_url("https://ehr.example/api/v1/records?token=a", path, query).map(|u| u.to_string());
        assert_eq!(url("", None).as_deref(), Some("https://ehr.example/api/v1/records?token=a"));
        assert_eq!(url("a/b", Some("x=1")).as_deref(), Some("https://ehr.example/api/v1/records/a/b?token=a&x=1"));
        assert_eq!(url("a b/ü", None).as_deref(), Some("https://ehr.example/api/v1/records/a%20b/%C3%BC?token=a"));
        assert_eq!(url("what?x#y", None).as_deref(), Some("https://ehr.example/api/v1/records/what%3Fx%23y?token=a"));
        for escape in ["..", "a/../../admin", ".", "a/%2e%2e", "a%2Fb", "a\\b", "//other.example/x"] {
            let escaped = url(escape, None);
            assert!(
                escaped.as_ref().is_none_or(|u| u.starts_with("https://ehr.example/api/v1/records/")),
                "{escape} → {escaped:?}"
            );
        }
        assert_eq!(url("..", None), None);
        assert_eq!(url("a/../../admin", None), None);
    }
}
