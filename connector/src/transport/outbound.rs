//! The address policy ([`hanse_core::addresses`]) on the connector's HTTP clients, for every request of a client
//! built by [`super::client_builder`], redirects included: host names are resolved by [`Guarded`], which never hands
//! out a refused address (nothing is connected), and each new connection's remote address is checked before a byte
//! is sent, which covers addresses written as IP literals (those are connected to, then dropped; the DID resolver
//! checks its literals before connecting).

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hanse_core::addresses::{Addresses, Refused};
use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Applies `addresses` to a client: names resolve to permitted addresses only, and every connection is checked.
/// In development mode the client is left as it is.
pub fn apply(addresses: &Addresses, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
    if addresses.permits_all() {
        return builder;
    }
    builder.dns_resolver(Arc::new(Guarded(addresses.clone()))).connector_layer(CheckedLayer(addresses.clone()))
}

/// The system resolver with the refused addresses taken out of every answer.
struct Guarded(Addresses);

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let permitted: Vec<SocketAddr> = found.iter().copied().filter(|a| policy.permits(a.ip())).collect();
            match (permitted.is_empty(), found.first()) {
                (false, _) => Ok(Box::new(permitted.into_iter()) as Addrs),
                (true, Some(first)) => Err(Box::new(Refused { target: host, address: first.ip() }) as BoxError),
                (true, None) => Err(format!("{host} has no address").into()),
            }
        })
    }
}

/// The connector layer that checks each new connection's remote address.
#[derive(Clone)]
struct CheckedLayer(Addresses);

impl<S> tower::Layer<S> for CheckedLayer {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Checked<S> {
        Checked { inner, policy: self.0.clone() }
    }
}

#[derive(Clone)]
struct Checked<S> {
    inner: S,
    policy: Addresses,
}

impl<S, R> tower::Service<R> for Checked<S>
where
    S: tower::Service<R, Error = BoxError>,
    S::Response: Connection,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = BoxError;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, BoxError>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), BoxError>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: R) -> Self::Future {
        let connecting = self.inner.call(request);
        let policy = self.policy.clone();
        Box::pin(async move {
            let connection = connecting.await?;
            let mut extras = axum::http::Extensions::new();
            connection.connected().get_extras(&mut extras);
            if let Some(info) = extras.get::<HttpInfo>() {
                let remote = info.remote_addr();
                policy.check(&remote.to_string(), remote.ip())?;
            }
            Ok(connection)
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test]
    async fn a_refused_address_is_named_and_sent_nothing_by_name_or_literal() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(AtomicUsize::new(0));
        let counted = received.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n @ 1..) = socket.read(&mut buffer).await {
                        counted.fetch_add(n, Ordering::SeqCst);
                    }
                });
            }
        });
        let client = apply(&Addresses::new(false, &[]), reqwest::Client::builder()).build().unwrap();
        for url in [format!("http://localhost:{port}/"), format!("http://127.0.0.1:{port}/")] {
            let error = client.get(&url).send().await.unwrap_err();
            let reason = hanse_core::error_chain(&error);
            assert!(reason.contains("a loopback address") && reason.contains("trust.allow_addresses"), "{reason}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(received.load(Ordering::SeqCst), 0, "no byte reached the refused address");
        // Allowed by the operator, the same address is reached.
        let allowed = apply(&Addresses::new(false, &["127.0.0.0/8".into()]), reqwest::Client::builder());
        let answer = allowed.build().unwrap().get(format!("http://127.0.0.1:{port}/")).send();
        let _ = tokio::time::timeout(std::time::Duration::from_millis(300), answer).await;
        assert!(received.load(Ordering::SeqCst) > 0, "the allowed request arrived");
    }
}
