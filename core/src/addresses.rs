//! Which addresses outgoing requests may reach. Peers name many of the addresses a connector fetches: their did:web
//! host, status lists in their credentials, peer lists, callback and push addresses, HttpData sources. Outside
//! development mode none of these may be an address that is not on the public internet (loopback, private,
//! link-local, shared, unspecified, multicast) unless the operator allows it (`trust.allow_addresses`): a peer must
//! not use a connector to reach the hospital's internal network. The connector's HTTP clients apply this policy to
//! every resolved name and every connection.

use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

/// Which addresses outgoing requests may reach.
#[derive(Debug, Clone, Default)]
pub struct Addresses {
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

impl Addresses {
    /// The policy of a connector: `development` lets everything through; otherwise only public addresses and the
    /// `allowed` blocks (entries that do not read are left out: the configuration check names them).
    pub fn new(development: bool, allowed: &[String]) -> Addresses {
        let allowed = allowed.iter().filter_map(|entry| parse_allowed(entry)).collect();
        Addresses { development, allowed: Arc::new(allowed) }
    }

    /// Whether a request may reach `ip`.
    pub fn permits(&self, ip: IpAddr) -> bool {
        self.development || kind(ip).is_none() || self.allowed.iter().any(|net| net.contains(&ip))
    }

    /// Whether every address is permitted (development mode).
    pub fn permits_all(&self) -> bool {
        self.development
    }

    /// `Ok` when a request may reach `ip`; `target` names it in the refusal.
    pub fn check(&self, target: &str, ip: IpAddr) -> Result<(), Refused> {
        match self.permits(ip) {
            true => Ok(()),
            false => Err(Refused { target: target.to_owned(), address: ip }),
        }
    }

    /// `Ok` unless `host` (a URL's host) is an IP address a request may not reach; names are checked when they are
    /// resolved.
    pub fn check_host(&self, host: &str) -> Result<(), Refused> {
        match host.trim_start_matches('[').trim_end_matches(']').parse::<IpAddr>() {
            Ok(ip) => self.check(host, ip),
            Err(_) => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_public_addresses_pass_unless_allowed() {
        let policy = Addresses::new(false, &["10.20.0.0/16".into(), "192.168.1.7".into()]);
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
        assert!(Addresses::new(true, &[]).permits("127.0.0.1".parse().unwrap()));
        assert!(parse_allowed("10.0.0.0/8").is_some() && parse_allowed("::1").is_some());
        assert!(parse_allowed("intranet").is_none() && parse_allowed("10.0.0.0/33").is_none());
        assert!(policy.check_host("[::1]").is_err() && policy.check_host("hospital.example").is_ok());
        let refusal = policy.check_host("127.0.0.1").unwrap_err().to_string();
        assert!(refusal.contains("a loopback address") && refusal.contains("trust.allow_addresses"), "{refusal}");
    }
}
