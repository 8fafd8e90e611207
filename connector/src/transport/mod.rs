//! Transport security (OpenSSL, the one TLS stack of the connector): the public listener's TLS acceptor, with
//! optional mutual TLS, and the HTTP client for peers, which trusts the configured CA bundle besides the system roots
//! and shows our certificate when a peer asks for one; where outgoing requests may go ([`outbound`]); and how the
//! listeners accept and serve connections ([`listen`]).

pub mod listen;
pub mod outbound;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use openssl::ssl::{AlpnError, SslAcceptor, SslFiletype, SslMethod, SslVerifyMode, select_next_proto};

use crate::config::Config;

/// Why the TLS set-up failed; names the configuration key.
#[derive(Debug, thiserror::Error)]
#[error("configuration key `{key}`: {reason}")]
pub struct TlsError {
    pub key: &'static str,
    pub reason: String,
}

fn error(key: &'static str, path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError { key, reason: format!("{}: {reason}", path.display()) }
}

/// The public listener's TLS acceptor, when `public.tls_cert` is set. With `public.client_ca`, clients must present a
/// certificate issued by one of those CAs (mutual TLS).
pub fn acceptor(config: &Config) -> Result<Option<Arc<SslAcceptor>>, TlsError> {
    let (Some(cert), Some(key)) = (&config.public.tls_cert, &config.public.tls_key) else {
        return Ok(None);
    };
    let mut builder = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())
        .map_err(|e| TlsError { key: "public.tls_cert", reason: e.to_string() })?;
    builder.set_certificate_chain_file(cert).map_err(|e| error("public.tls_cert", cert, e))?;
    builder.set_private_key_file(key, SslFiletype::PEM).map_err(|e| error("public.tls_key", key, e))?;
    builder.check_private_key().map_err(|e| error("public.tls_key", key, format!("does not match tls_cert: {e}")))?;
    if let Some(ca) = &config.public.client_ca {
        builder.set_ca_file(ca).map_err(|e| error("public.client_ca", ca, e))?;
        let pem = std::fs::read(ca).map_err(|e| error("public.client_ca", ca, e))?;
        let names = openssl::x509::X509::stack_from_pem(&pem).map_err(|e| error("public.client_ca", ca, e))?;
        let mut list = openssl::stack::Stack::new().map_err(|e| error("public.client_ca", ca, e))?;
        for cert in names {
            list.push(cert.subject_name().to_owned().map_err(|e| error("public.client_ca", ca, e))?)
                .map_err(|e| error("public.client_ca", ca, e))?;
        }
        builder.set_client_ca_list(list);
        builder.set_verify(SslVerifyMode::PEER | SslVerifyMode::FAIL_IF_NO_PEER_CERT);
    }
    builder.set_alpn_select_callback(|_, offered| {
        select_next_proto(b"\x02h2\x08http/1.1", offered).ok_or(AlpnError::NOACK)
    });
    Ok(Some(Arc::new(builder.build())))
}

/// A client builder for talking to peers: the configured CA bundle is trusted in addition to the system roots, the
/// public listener's certificate is shown to peers that require client certificates, and outside development mode
/// only public addresses and `trust.allow_addresses` are reached ([`outbound`]).
pub fn client_builder(config: &Config) -> Result<reqwest::ClientBuilder, TlsError> {
    let mut builder = outbound::apply(
        &config.addresses(),
        reqwest::Client::builder().connect_timeout(Duration::from_secs(5)).gzip(true),
    );
    if let Some(ca) = &config.trust.ca_file {
        let pem = std::fs::read(ca).map_err(|e| error("trust.ca_file", ca, e))?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| error("trust.ca_file", ca, e))?;
        if certificates.is_empty() {
            return Err(error("trust.ca_file", ca, "holds no PEM certificate"));
        }
        for certificate in certificates {
            builder = builder.add_root_certificate(certificate);
        }
    }
    if let (Some(cert), Some(key)) = (&config.public.tls_cert, &config.public.tls_key) {
        let chain = std::fs::read(cert).map_err(|e| error("public.tls_cert", cert, e))?;
        let key_pem = std::fs::read(key).map_err(|e| error("public.tls_key", key, e))?;
        let identity =
            reqwest::Identity::from_pkcs8_pem(&chain, &key_pem).map_err(|e| error("public.tls_key", key, e))?;
        builder = builder.identity(identity);
    }
    Ok(builder)
}
