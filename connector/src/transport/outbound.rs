//! Where outgoing requests may go. Peers name many of the addresses a connector fetches: their did:web host, status
//! lists in their credentials, peer lists, callback and push addresses, HttpData sources. Outside development mode
//! none of these may reach an address that is not on the public internet (loopback, private, link-local, shared,
//! unspecified, multicast) unless the operator allows it in `trust.allow_addresses`: a peer must not use the
//! connector to reach the hospital's internal network.
//!
//! Two checks make that hold for every request of a client built by [`super::client_builder`], redirects included:
//! host names are resolved by [`Destinations`], which never hands out a refused address (so nothing is connected);
//! and each new connection's remote address is checked before a byte is sent, which covers addresses written as IP
//! literals.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::client::legacy::connect::{Connection, HttpInfo};
use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Which addresses outgoing requests may reach.
#[derive(Debug, Clone, Default)]
pub struct Destinations {
    /// Development mode: every address may be reached.
    development: bool,
    /// Non-public blocks the operator allows.
    allowed: Arc<Vec<IpNet>>,
}

/// An address a request may not reach.
#[derive(Debug)]
pub struct Refused {
    pub target: String,
    pub address: IpAddr,
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is {} ({}), which outgoing requests may not reach outside development mode unless \
             `trust.allow_addresses` names it",
            self.target,
            kind(self.address).unwrap_or("not public"),
            self.address
        )
    }
}

impl std::error::Error for Refused {}

/// An IP address or CIDR block of `trust.allow_addresses`.
pub fn parse_allowed(entry: &str) -> Option<IpNet> {
    let entry = entry.trim();
    entry.parse::<IpNet>().ok().or_else(|| entry.parse::<IpAddr>().ok().map(IpNet::from))
}

/// What kind of non-public address `ip` is, or `None` for an address on the public internet.
pub fn kind(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => {
            let [a, b, ..] = v4.octets();
            if v4.is_loopback() {
                Some("a loopback address")
            } else if v4.is_private() {
                Some("a private address")
            } else if v4.is_link_local() {
                Some("a link-local address")
            } else if v4.is_unspecified() || a == 0 {
                Some("an unspecified address")
            } else if a == 100 && (64..128).contains(&b) {
                Some("a shared (carrier-grade NAT) address")
            } else if v4.is_multicast() || v4.is_broadcast() || a >= 240 {
                Some("a multicast or reserved address")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return kind(IpAddr::V4(v4));
            }
            if v6.is_loopback() {
                Some("a loopback address")
            } else if v6.is_unspecified() {
                Some("an unspecified address")
            } else if v6.is_unique_local() {
                Some("a private address")
            } else if v6.is_unicast_link_local() {
                Some("a link-local address")
            } else if v6.is_multicast() {
                Some("a multicast or reserved address")
            } else {
                None
            }
        }
    }
}

impl Destinations {
    /// The policy of a connector: `development` lets everything through; otherwise only public addresses and the
    /// `allowed` blocks (entries that do not read are left out: the configuration check names them).
    pub fn new(development: bool, allowed: &[String]) -> Destinations {
        let allowed = allowed.iter().filter_map(|entry| parse_allowed(entry)).collect();
        Destinations { development, allowed: Arc::new(allowed) }
    }

    /// Whether a request may reach `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.development || kind(ip).is_none() || self.allowed.iter().any(|net| net.contains(&ip))
    }

    fn check(&self, target: &str, ip: IpAddr) -> Result<(), Refused> {
        match self.permits(ip) {
            true => Ok(()),
            false => Err(Refused { target: target.to_owned(), address: ip }),
        }
    }

    /// Applies the policy to a client: names resolve to permitted addresses only, and every connection is checked.
    pub fn apply(&self, builder: reqwest::ClientBuilder) -> reqwest::ClientBuilder {
        if self.development {
            return builder;
        }
        builder.dns_resolver(Arc::new(self.clone())).connector_layer(CheckedLayer(self.clone()))
    }
}

impl Resolve for Destinations {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.clone();
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
struct CheckedLayer(Destinations);

impl<S> tower::Layer<S> for CheckedLayer {
    type Service = Checked<S>;

    fn layer(&self, inner: S) -> Checked<S> {
        Checked { inner, policy: self.0.clone() }
    }
}

#[derive(Clone)]
struct Checked<S> {
    inner: S,
    policy: Destinations,
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
    use super::*;

    #[test]
    fn only_public_addresses_pass_unless_allowed() {
        let policy = Destinations::new(false, &["10.20.0.0/16".into(), "192.168.1.7".into()]);
        for public in ["93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "100.128.0.1"] {
            assert!(policy.permits(public.parse().unwrap()), "{public}");
        }
        for refused in [
            "127.0.0.1",
            "::1",
            "10.0.0.1",
            "172.16.5.4",
            "192.168.1.8",
            "169.254.169.254",
            "0.0.0.0",
            "::",
            "100.64.0.1",
            "fd00::1",
            "fe80::1",
            "::ffff:127.0.0.1",
            "224.0.0.1",
            "255.255.255.255",
        ] {
            assert!(!policy.permits(refused.parse().unwrap()), "{refused}");
        }
        assert!(policy.permits("10.20.3.4".parse().unwrap()) && policy.permits("192.168.1.7".parse().unwrap()));
        assert!(Destinations::new(true, &[]).permits("127.0.0.1".parse().unwrap()));
        assert!(parse_allowed("10.0.0.0/8").is_some() && parse_allowed("::1").is_some());
        assert!(parse_allowed("intranet").is_none() && parse_allowed("10.0.0.0/33").is_none());
    }

    #[tokio::test]
    async fn a_refused_address_is_named_and_sent_nothing_by_name_or_literal() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = received.clone();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut buffer = [0u8; 1024];
                    while let Ok(n @ 1..) = socket.read(&mut buffer).await {
                        counted.fetch_add(n, std::sync::atomic::Ordering::SeqCst);
                    }
                });
            }
        });
        let client = Destinations::new(false, &[]).apply(reqwest::Client::builder()).build().unwrap();
        for url in [format!("http://localhost:{port}/"), format!("http://127.0.0.1:{port}/")] {
            let error = client.get(&url).send().await.unwrap_err();
            let reason = hanse_core::error_chain(&error);
            assert!(reason.contains("a loopback address") && reason.contains("trust.allow_addresses"), "{reason}");
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        assert_eq!(received.load(std::sync::atomic::Ordering::SeqCst), 0, "no byte reached the refused address");
        // Allowed by the operator, the same address is reached.
        let allowed = Destinations::new(false, &["127.0.0.0/8".into()]).apply(reqwest::Client::builder());
        let answer = allowed.build().unwrap().get(format!("http://127.0.0.1:{port}/")).send();
        let _ = tokio::time::timeout(std::time::Duration::from_millis(300), answer).await;
        assert!(received.load(std::sync::atomic::Ordering::SeqCst) > 0, "the allowed request arrived");
    }
}
