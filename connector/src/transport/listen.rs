//! How a listener serves connections, whatever its clients do: at most so many at once (more wait in the accept
//! queue, costing no file descriptor), a request head within the header timeout (a kept-alive connection that stays
//! silent as long is closed, and so is a TLS handshake that takes longer), a body without long pauses, a body no
//! larger than the listener's limit, and, on the public listener, no more requests per second from one address
//! than its quota (429 with `Retry-After` beyond it).
//!
//! Connections are served by hyper's HTTP/1 and HTTP/2 server, as `axum::serve` does, in an accept loop of our own
//! that holds a permit per connection; shutdown stops accepting, then lets open connections finish (at most
//! [`DRAIN`]).

use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use openssl::ssl::{Ssl, SslAcceptor};
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tower::ServiceExt;

use crate::config::HttpConfig;

/// The largest request head (request line and headers) a listener reads.
pub const MAX_HEAD: usize = 64 * 1024;

/// The longest shutdown waits for open connections to finish their requests.
pub const DRAIN: Duration = Duration::from_secs(30);

/// What one listener allows its connections.
#[derive(Debug, Clone)]
pub struct Limits {
    /// The configuration key of the listener's connection cap (named in logs).
    pub name: &'static str,
    pub max_connections: usize,
    pub header_timeout: Duration,
}

impl Limits {
    pub fn public(http: &HttpConfig) -> Limits {
        Limits {
            name: "http.public_max_connections",
            max_connections: http.public_max_connections,
            header_timeout: Duration::from_secs(http.header_timeout_seconds),
        }
    }

    pub fn management(http: &HttpConfig) -> Limits {
        Limits {
            name: "http.management_max_connections",
            max_connections: http.management_max_connections,
            header_timeout: Duration::from_secs(http.header_timeout_seconds),
        }
    }
}

/// Serves `router` on `listener` (over TLS with `tls`) until `signal` turns true. Every request carries the
/// client's address as [`ConnectInfo`].
pub fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<SslAcceptor>>,
    limits: Limits,
    mut signal: watch::Receiver<bool>,
) -> JoinHandle<std::io::Result<()>> {
    tokio::spawn(async move {
        let permits = Arc::new(Semaphore::new(limits.max_connections));
        let graceful = GracefulShutdown::new();
        let mut builder = auto::Builder::new(TokioExecutor::new());
        // A request head larger than the read buffer (64 KiB) is answered 431 and the connection closed.
        builder.http1().timer(TokioTimer::new()).header_read_timeout(limits.header_timeout).max_buf_size(MAX_HEAD);
        builder
            .http2()
            .timer(TokioTimer::new())
            .keep_alive_interval(Some(Duration::from_secs(30)))
            .keep_alive_timeout(limits.header_timeout)
            .max_concurrent_streams(100);
        let mut full_since: Option<std::time::Instant> = None;
        loop {
            let permit = match permits.clone().try_acquire_owned() {
                Ok(permit) => permit,
                Err(_) => {
                    if full_since.is_none() {
                        tracing::warn!(limit = limits.max_connections, key = limits.name, "connection cap reached");
                        full_since = Some(std::time::Instant::now());
                    }
                    tokio::select! {
                        permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                        _ = signal.wait_for(|stop| *stop) => break,
                    }
                }
            };
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = signal.wait_for(|stop| *stop) => break,
            };
            let (stream, remote) = match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or a connection reset before it was accepted: wait a moment rather
                    // than spin, then go on.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if let Some(since) = full_since.take() {
                tracing::info!(waited_ms = since.elapsed().as_millis() as u64, key = limits.name, "below the cap");
            }
            let _ = stream.set_nodelay(true);
            let service = TowerToHyperService::new(router.clone().map_request(move |mut request: Request<_>| {
                request.extensions_mut().insert(ConnectInfo(remote));
                request
            }));
            let builder = builder.clone();
            let watcher = graceful.watcher();
            let tls = tls.clone();
            let handshake = limits.header_timeout;
            tokio::spawn(async move {
                let _permit = permit;
                let served = match tls {
                    None => {
                        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(connection.into_owned()).await
                    }
                    Some(acceptor) => {
                        let Some(stream) = accept_tls(&acceptor, stream, handshake, remote).await else { return };
                        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                        watcher.watch(connection.into_owned()).await
                    }
                };
                if let Err(error) = served {
                    tracing::debug!(%remote, error = %hanse_core::error_chain(&*error), "connection ended");
                }
            });
        }
        drop(listener);
        tokio::select! {
            _ = graceful.shutdown() => {}
            _ = tokio::time::sleep(DRAIN) => tracing::warn!(key = limits.name, "connections still open after the drain time"),
        }
        Ok(())
    })
}

/// The TLS handshake of one connection, within `timeout`; `None` when it fails (logged).
async fn accept_tls(
    acceptor: &SslAcceptor,
    stream: tokio::net::TcpStream,
    timeout: Duration,
    remote: SocketAddr,
) -> Option<tokio_openssl::SslStream<tokio::net::TcpStream>> {
    let ssl = Ssl::new(acceptor.context()).inspect_err(|error| tracing::error!(%error, "TLS set-up")).ok()?;
    let mut stream = tokio_openssl::SslStream::new(ssl, stream).ok()?;
    match tokio::time::timeout(timeout, std::pin::Pin::new(&mut stream).accept()).await {
        Ok(Ok(())) => Some(stream),
        Ok(Err(error)) => {
            tracing::debug!(%remote, %error, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%remote, "TLS handshake timed out");
            None
        }
    }
}

/// How a listener words a refusal: the status and message into its own error shape.
pub type Refusal = fn(StatusCode, String) -> Response;

/// Applies the body limits of a listener: a body larger than `max_bytes` is refused with a 413 whose message names
/// `key` (a route may set its own `DefaultBodyLimit`), and a body pausing longer than `pause` ends the request.
pub fn bodies(router: Router, max_bytes: usize, key: &'static str, pause: Duration, refusal: Refusal) -> Router {
    router
        .layer(axum::middleware::from_fn(move |request: Request, next: Next| async move {
            let response = next.run(request).await;
            match response.status() == StatusCode::PAYLOAD_TOO_LARGE && !is_json(&response) {
                true => {
                    let message = format!("the request body is larger than {} KiB (`{key}`)", max_bytes / 1024);
                    let mut refused = refusal(StatusCode::PAYLOAD_TOO_LARGE, message);
                    // The rest of the body is not read: the connection cannot carry another request.
                    refused.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
                    refused
                }
                false => response,
            }
        }))
        .layer(axum::extract::DefaultBodyLimit::max(max_bytes))
        .layer(tower_http::timeout::RequestBodyTimeoutLayer::new(pause))
}

fn is_json(response: &Response) -> bool {
    response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("json"))
}

/// The public listener's refusal: `{"error": message}`.
pub fn plain_refusal(status: StatusCode, message: String) -> Response {
    (status, axum::Json(serde_json::json!({"error": message}))).into_response()
}

/// Requests per requester: a GCRA limiter keyed by the requester (an IP address on the public listener, a
/// participant on the broker's query endpoints).
pub struct RateLimit<K: std::hash::Hash + Eq + Clone = IpAddr> {
    limiter: DefaultKeyedRateLimiter<K>,
    /// The setting named in refusals.
    key: &'static str,
}

impl<K: std::hash::Hash + Eq + Clone> RateLimit<K> {
    /// `per_second` sustained with bursts of `burst`; `None` when the rate is 0 (no limit).
    pub fn new(per_second: u32, burst: u32, key: &'static str) -> Option<Arc<RateLimit<K>>> {
        let quota = Quota::per_second(NonZeroU32::new(per_second)?);
        Some(Self::with(quota.allow_burst(NonZeroU32::new(burst.max(1)).expect("at least 1")), key))
    }

    /// `per_minute` sustained, all of them at once at most; `None` when the rate is 0 (no limit).
    pub fn per_minute(per_minute: u32, key: &'static str) -> Option<Arc<RateLimit<K>>> {
        Some(Self::with(Quota::per_minute(NonZeroU32::new(per_minute)?), key))
    }

    fn with(quota: Quota, key: &'static str) -> Arc<RateLimit<K>> {
        Arc::new(RateLimit { limiter: governor::RateLimiter::keyed(quota), key })
    }

    /// `Ok` when `who` may make a request now, else how long it must wait.
    pub fn check(&self, who: &K) -> Result<(), OverQuota> {
        self.limiter.check_key(who).map_err(|not_until| OverQuota {
            wait: not_until.wait_time_from(DefaultClock::default().now()),
            key: self.key,
        })
    }

    /// Forgets requesters whose quota is whole again, every minute until `signal` turns true, so that the table
    /// holds only those seen lately.
    pub fn sweep_every_minute(self: Arc<Self>, mut signal: watch::Receiver<bool>)
    where
        K: Send + Sync + 'static,
    {
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(60));
            loop {
                tokio::select! {
                    _ = every.tick() => {
                        self.limiter.retain_recent();
                        self.limiter.shrink_to_fit();
                    }
                    _ = signal.wait_for(|stop| *stop) => break,
                }
            }
        });
    }
}

/// A requester over its quota: how long it must wait, and the setting of the quota. Its response is the 429 of
/// [`too_many`].
#[derive(Debug, Clone, Copy)]
pub struct OverQuota {
    pub wait: Duration,
    pub key: &'static str,
}

impl IntoResponse for OverQuota {
    fn into_response(self) -> Response {
        too_many(self.wait, self.key)
    }
}

/// Refuses a request over its address's quota: 429, `Retry-After` in whole seconds, and a body naming the setting.
pub async fn rate_limited(State(limit): State<Arc<RateLimit>>, request: Request, next: Next) -> Response {
    // Probes are never limited: an orchestrator's liveness check must not fail because a peer is busy.
    if request.uri().path().starts_with("/health/") {
        return next.run(request).await;
    }
    let Some(ConnectInfo(remote)) = request.extensions().get::<ConnectInfo<SocketAddr>>().copied() else {
        return next.run(request).await;
    };
    match limit.check(&remote.ip()) {
        Ok(()) => next.run(request).await,
        Err(over) => over.into_response(),
    }
}

/// A 429 with `Retry-After` (whole seconds, at least 1) and a body naming the limit's setting.
pub fn too_many(wait: Duration, key: &str) -> Response {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    let message = format!("too many requests: over the limit of `{key}`; try again in {seconds} s");
    let mut response = plain_refusal(StatusCode::TOO_MANY_REQUESTS, message);
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    response
}
