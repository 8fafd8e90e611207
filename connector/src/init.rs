//! `hanse init`: a commented `hanse.toml`, the participant key pair (EC P-256, PEM), a development CA and a TLS
//! certificate for the host signed by it. Refuses to overwrite anything: if one target exists, nothing is written.

use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use openssl::asn1::Asn1Time;
use openssl::bn::{BigNum, MsbOption};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};
use openssl::x509::extension::{
    AuthorityKeyIdentifier, BasicConstraints, ExtendedKeyUsage, KeyUsage, SubjectAlternativeName, SubjectKeyIdentifier,
};
use openssl::x509::{X509, X509NameBuilder};

/// What `hanse init` needs to know.
#[derive(Debug, Clone)]
pub struct InitOptions {
    pub dir: PathBuf,
    /// Defaults to `did:web:<host>%3A<port>` of the public listener.
    pub participant_id: Option<String>,
    pub public_bind: SocketAddr,
    pub management_bind: SocketAddr,
    /// Development mode (plain-HTTP did:web for loopback peers).
    pub development: bool,
}

/// What was written.
#[derive(Debug, Clone)]
pub struct Initialized {
    pub config_file: PathBuf,
    pub participant_id: String,
    pub api_key: String,
    /// The key `GET /metrics` takes (`management.metrics_api_key`).
    pub metrics_api_key: String,
    pub files: Vec<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("refusing to overwrite existing {}", .0.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Exists(Vec<PathBuf>),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("key generation failed: {0}")]
    Crypto(#[from] openssl::error::ErrorStack),
    #[error("{0}")]
    Invalid(String),
}

pub const CONFIG_FILE: &str = "hanse.toml";
const KEY_FILE: &str = "keys/participant.pem";
const PUBLIC_KEY_FILE: &str = "keys/participant.pub.pem";
const CA_CERT_FILE: &str = "tls/ca.pem";
const CA_KEY_FILE: &str = "tls/ca.key.pem";
const TLS_CERT_FILE: &str = "tls/cert.pem";
const TLS_KEY_FILE: &str = "tls/key.pem";
/// The participant key's certificate (signed by the development CA) and the CA: the `x5u` of Gaia-X credentials.
pub const PARTICIPANT_CHAIN_FILE: &str = "tls/participant-chain.pem";

/// The `did:web` for a host and port: the port's colon is percent-encoded, as did:web requires.
pub fn did_web_for(addr: &SocketAddr) -> String {
    let host = match addr.ip() {
        ip if ip.is_loopback() || ip.is_unspecified() => "localhost".to_owned(),
        ip => ip.to_string(),
    };
    format!("did:web:{host}%3A{}", addr.port())
}

/// Writes the configuration, keys and certificates into `options.dir`.
pub fn init(options: &InitOptions) -> Result<Initialized, InitError> {
    let participant_id = options.participant_id.clone().unwrap_or_else(|| did_web_for(&options.public_bind));
    if !participant_id.starts_with("did:web:") {
        return Err(InitError::Invalid(format!("--participant-id `{participant_id}` is not a did:web identifier")));
    }
    let targets = [
        CONFIG_FILE,
        KEY_FILE,
        PUBLIC_KEY_FILE,
        CA_CERT_FILE,
        CA_KEY_FILE,
        TLS_CERT_FILE,
        TLS_KEY_FILE,
        PARTICIPANT_CHAIN_FILE,
    ]
    .map(|f| options.dir.join(f));
    let existing: Vec<PathBuf> = targets.iter().filter(|p| p.exists()).cloned().collect();
    if !existing.is_empty() {
        return Err(InitError::Exists(existing));
    }

    let participant_key = generate_p256()?;
    let (ca_cert, ca_key) = development_ca()?;
    let (host_cert, host_key) = host_certificate(&ca_cert, &ca_key)?;
    let api_key = random_hex(24)?;
    let metrics_api_key = random_hex(24)?;
    let config = config_text(&participant_id, options, &api_key, &metrics_api_key);

    let mut chain = host_cert.to_pem()?;
    chain.extend(ca_cert.to_pem()?);
    let mut participant_chain =
        participant_certificate(&ca_cert, &ca_key, &participant_key, &participant_id)?.to_pem()?;
    participant_chain.extend(ca_cert.to_pem()?);
    let contents: [(&str, Vec<u8>, bool); 8] = [
        (KEY_FILE, participant_key.private_key_to_pem_pkcs8()?, true),
        (PUBLIC_KEY_FILE, participant_key.public_key_to_pem()?, false),
        (CA_CERT_FILE, ca_cert.to_pem()?, false),
        (CA_KEY_FILE, ca_key.private_key_to_pem_pkcs8()?, true),
        (TLS_CERT_FILE, chain, false),
        (TLS_KEY_FILE, host_key.private_key_to_pem_pkcs8()?, true),
        (PARTICIPANT_CHAIN_FILE, participant_chain, false),
        (CONFIG_FILE, config.into_bytes(), true),
    ];
    let mut files = Vec::new();
    for (name, bytes, secret) in contents {
        let path = options.dir.join(name);
        write_new(&path, &bytes, secret)?;
        files.push(path);
    }
    Ok(Initialized { config_file: options.dir.join(CONFIG_FILE), participant_id, api_key, metrics_api_key, files })
}

fn write_new(path: &Path, bytes: &[u8], secret: bool) -> Result<(), InitError> {
    let error = |source| InitError::Write { path: path.to_owned(), source };
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent).map_err(error)?;
    }
    let mut options = fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    use std::io::Write;
    options.open(path).and_then(|mut f| f.write_all(bytes)).map_err(error)
}

pub use hanse_keys::generate_p256;

/// `bytes` random bytes from OpenSSL's generator, in hex.
pub fn random_hex(bytes: usize) -> Result<String, openssl::error::ErrorStack> {
    let mut buf = vec![0u8; bytes];
    openssl::rand::rand_bytes(&mut buf)?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

fn serial() -> Result<openssl::asn1::Asn1Integer, openssl::error::ErrorStack> {
    let mut serial = BigNum::new()?;
    serial.rand(127, MsbOption::MAYBE_ZERO, false)?;
    serial.to_asn1_integer()
}

fn name(common_name: &str) -> Result<openssl::x509::X509Name, openssl::error::ErrorStack> {
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::ORGANIZATIONNAME, "Hanse development")?;
    name.append_entry_by_nid(Nid::COMMONNAME, common_name)?;
    Ok(name.build())
}

/// A development certificate authority, valid ten years.
pub fn development_ca() -> Result<(X509, PKey<Private>), openssl::error::ErrorStack> {
    let key = generate_p256()?;
    let name = name("Hanse development CA")?;
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    builder.set_serial_number(&*serial()?)?;
    builder.set_subject_name(&name)?;
    builder.set_issuer_name(&name)?;
    builder.set_pubkey(&key)?;
    builder.set_not_before(&*Asn1Time::days_from_now(0)?)?;
    builder.set_not_after(&*Asn1Time::days_from_now(3650)?)?;
    builder.append_extension(BasicConstraints::new().critical().ca().build()?)?;
    builder.append_extension(KeyUsage::new().critical().key_cert_sign().crl_sign().build()?)?;
    let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(None, None))?;
    builder.append_extension(ski)?;
    builder.sign(&key, MessageDigest::sha256())?;
    Ok((builder.build(), key))
}

/// A server and client certificate for `localhost`, `127.0.0.1` and `::1`, signed by the CA, valid one year.
pub fn host_certificate(
    ca: &X509,
    ca_key: &PKey<Private>,
) -> Result<(X509, PKey<Private>), openssl::error::ErrorStack> {
    let key = generate_p256()?;
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    builder.set_serial_number(&*serial()?)?;
    builder.set_subject_name(&*name("localhost")?)?;
    builder.set_issuer_name(ca.subject_name())?;
    builder.set_pubkey(&key)?;
    builder.set_not_before(&*Asn1Time::days_from_now(0)?)?;
    builder.set_not_after(&*Asn1Time::days_from_now(365)?)?;
    builder.append_extension(BasicConstraints::new().build()?)?;
    builder.append_extension(KeyUsage::new().critical().digital_signature().key_agreement().build()?)?;
    builder.append_extension(ExtendedKeyUsage::new().server_auth().client_auth().build()?)?;
    let san = SubjectAlternativeName::new()
        .dns("localhost")
        .ip("127.0.0.1")
        .ip("::1")
        .build(&builder.x509v3_context(Some(ca), None))?;
    builder.append_extension(san)?;
    let ski = SubjectKeyIdentifier::new().build(&builder.x509v3_context(Some(ca), None))?;
    builder.append_extension(ski)?;
    let aki = AuthorityKeyIdentifier::new().keyid(false).build(&builder.x509v3_context(Some(ca), None))?;
    builder.append_extension(aki)?;
    builder.sign(ca_key, MessageDigest::sha256())?;
    Ok((builder.build(), key))
}

/// A certificate for the participant's own signing key (named by its DID), signed by the CA, valid one year: what a
/// Gaia-X verifier follows from a credential's `x5u` to a trust anchor.
pub fn participant_certificate(
    ca: &X509,
    ca_key: &PKey<Private>,
    key: &PKey<Private>,
    did: &str,
) -> Result<X509, openssl::error::ErrorStack> {
    let mut builder = X509::builder()?;
    builder.set_version(2)?;
    builder.set_serial_number(&*serial()?)?;
    let common_name: String = did.chars().take(64).collect();
    builder.set_subject_name(&*name(&common_name)?)?;
    builder.set_issuer_name(ca.subject_name())?;
    builder.set_pubkey(key)?;
    builder.set_not_before(&*Asn1Time::days_from_now(0)?)?;
    builder.set_not_after(&*Asn1Time::days_from_now(365)?)?;
    builder.append_extension(BasicConstraints::new().build()?)?;
    builder.append_extension(KeyUsage::new().critical().digital_signature().non_repudiation().build()?)?;
    let san = SubjectAlternativeName::new().uri(did).build(&builder.x509v3_context(Some(ca), None))?;
    builder.append_extension(san)?;
    let aki = AuthorityKeyIdentifier::new().keyid(false).build(&builder.x509v3_context(Some(ca), None))?;
    builder.append_extension(aki)?;
    builder.sign(ca_key, MessageDigest::sha256())?;
    Ok(builder.build())
}

fn config_text(participant_id: &str, options: &InitOptions, api_key: &str, metrics_api_key: &str) -> String {
    format!(
        r#"# Hanse connector configuration, written by `hanse init`.
# Every key can be overridden by an environment variable HANSE_<SECTION>_<KEY>, e.g. HANSE_MANAGEMENT_API_KEY.
# Relative paths are resolved against this file's folder. Unknown keys are rejected at start-up.

[participant]
# This connector's identity: a did:web (the port's colon is written %3A).
id = "{participant_id}"
# The participant's signing key (EC P-256, PKCS#8 PEM). Keep it secret.
key_file = "{KEY_FILE}"
# Development mode allows plain-HTTP did:web resolution for loopback peers. Never enable it in production.
development = {development}

[public]
# The listener peers talk to: DSP protocol, DID document, /.well-known/*, data plane.
bind = "{public_bind}"
# The URL peers use to reach this listener (defaults to http(s)://<bind>).
# url = "https://connector.hospital.example"
# TLS for the public listener (a development CA and host certificate were written to tls/).
# tls_cert = "{TLS_CERT_FILE}"
# tls_key = "{TLS_KEY_FILE}"
# Mutual TLS: require client certificates issued by this CA bundle.
# client_ca = "{CA_CERT_FILE}"

[management]
# The operator's listener. Keep it on a private interface.
bind = "{management_bind}"
# Every management request must carry this value in the X-Api-Key header.
api_key = "{api_key}"
# GET /metrics takes this key and nothing else does (Prometheus: `authorization: {{credentials: ...}}`, sent as
# Authorization: Bearer; or X-Api-Key).
metrics_api_key = "{metrics_api_key}"

[store]
# Folder for the embedded database and data files.
data_dir = "data"
# Empty: SQLite at <data_dir>/hanse.db. For PostgreSQL: "postgres://user:password@host:5432/database".
# database_url = "postgres://postgres@127.0.0.1:5432/hanse"
# PostgreSQL schema (created if missing), so that several connectors can share one database.
# schema = "hanse"
max_connections = 8

[dataplane]
# Folder that File data addresses must lie under (default: <data_dir>/files).
# file_root = "data/files"

[storage]
# Where ingested tables and File data live. Empty: <data_dir>/tables and file_root on this node's disk. Several
# replicas share S3-compatible object storage: "s3://bucket/prefix" (keys from storage.access_key_id and
# storage.secret_access_key, HANSE_STORAGE_SECRET_ACCESS_KEY, the AWS_* environment or the pod's role).
url = ""
# endpoint = "https://s3.example.org"

[catalog]
# Four eyes: a new dataset appears in the catalogue only once a second key (role approver or operator) approves it.
publication_approval = false
# Keep the RDF graph (SPARQL) on disk in this folder instead of memory, resumed at the next start, with the datasets
# kept beside it so that a start need not read every stored one (a build with `--features rocksdb`; each replica its
# own folder).
# graph_dir = "catalogue-graph"

[negotiation]
# Attempts to deliver a negotiation message before giving up (the negotiation then terminates).
retry_attempts = 7
# First retry after this many milliseconds; the delay doubles with each attempt.
retry_base_ms = 1000

[trust]
# Extra CA certificates (PEM) trusted for outgoing HTTPS, besides the system roots.
# ca_file = "{CA_CERT_FILE}"
# Seconds a resolved DID document is reused.
did_cache_seconds = 300
# Longest reuse of verified claims and revocation lists, in seconds (never beyond the requester's token); 0 checks
# credentials on every request.
claims_cache_seconds = 300
# Addresses outgoing requests may reach though they are not public (loopback, private, link-local): IPs or CIDR
# blocks. Outside development mode every other such address is refused, whoever named it (a peer's did:web host,
# a callback, a push destination, an HttpData source).
# allow_addresses = ["10.20.0.0/16"]

# Trusted credential issuers (DIDs) per credential type.
[trust.issuers]
# MembershipCredential = ["did:web:federation.example"]

# JSON-LD contexts besides those bundled with Hanse, as files you were given (a data space's own, e.g. its policy
# context): the published IRI and the file. Hanse never fetches a context; a body naming any other is refused.
[trust.contexts]
# "https://w3id.org/catenax/2025/9/policy/context.jsonld" = "contexts/cx-policy-2025-9.jsonld"

[compute]
# The smallest cell count ever released (jobs and agreements may ask for more, never less).
min_cell_count = 5
# A released sum may not be dominated by one record (share of the cell's absolute total).
dominance = 0.5
# Jobs one agreement may run in all, whatever its policy says.
max_jobs_per_agreement = 100
# Jobs running at once (0: the number of cores), and each step's time and memory limits.
workers = 0
time_limit_seconds = 60
memory_limit_mb = 1024
# The largest table upload (MiB of CSV).
max_upload_mb = 256

[http]
# A request's head must arrive within this many seconds (kept-alive connections idle as long are closed); the
# longest pause inside a request body.
header_timeout_seconds = 10
body_timeout_seconds = 30
# Connections served at once; the management listener keeps its own, whatever the public one is sent.
public_max_connections = 512
management_max_connections = 64
# The largest request bodies (KiB): DSP messages on the public listener, JSON on the management listener.
public_max_body_kb = 1024
management_max_body_kb = 4096
# Requests per second one address may make to the public listener (and at once above that); 0: no limit.
public_requests_per_second = 500
public_burst = 1000

[audit]
# A key (X-Api-Key) that reads the audit log and nothing else, for an auditor.
# auditor_api_key = "..."
# Auditors' DIDs: they read the audit log with a self-issued token.
# auditors = ["did:web:dpo.hospital-a.example"]
# A credential type those DIDs must also hold (from a trusted issuer).
# auditor_credential = "AuditorCredential"
# Participants to witness besides every counter-party, and how often (seconds; 0: never).
# witness = ["did:web:hospital-b.example"]
witness_interval_seconds = 300

# Gaia-X self-descriptions (Trust Framework 2511), served at /.well-known/gaia-x/credentials. Uncomment and fill in
# to publish them; the connector refuses to start if they do not conform to the Gaia-X shapes, and says why.
# [gaiax]
# legal_name = "Example University Hospital"
# terms_and_conditions = "<SHA-256 of the Gaia-X terms and conditions you accept>"
# certificate_chain = "{PARTICIPANT_CHAIN_FILE}"
# [gaiax.headquarters]
# country_code = "DE"
# region = "DE30"        # NUTS-2
# [gaiax.registration]
# vat_id = "DE123456789"
# [gaiax.service]
# terms_url = "https://hospital.example/connector-terms"
# terms_hash = "<SHA-256 of those terms>"

[log]
# A tracing filter, e.g. "info" or "hanse=debug,info".
level = "info"
# "human" or "json".
format = "human"
"#,
        development = options.development,
        public_bind = options.public_bind,
        management_bind = options.management_bind,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn options(dir: &Path) -> InitOptions {
        InitOptions {
            dir: dir.to_owned(),
            participant_id: None,
            public_bind: "127.0.0.1:19194".parse().unwrap(),
            management_bind: "127.0.0.1:19193".parse().unwrap(),
            development: true,
        }
    }

    #[test]
    fn init_writes_a_loadable_config_and_a_certificate_signed_by_its_ca() {
        let dir = tempfile::tempdir().unwrap();
        let done = init(&options(dir.path())).unwrap();
        assert_eq!(done.participant_id, "did:web:localhost%3A19194");
        let config = Config::from_toml(&fs::read_to_string(&done.config_file).unwrap(), dir.path()).unwrap();
        assert_eq!(config.management.api_key, done.api_key);
        let ca = X509::from_pem(&fs::read(dir.path().join(CA_CERT_FILE)).unwrap()).unwrap();
        let chain = X509::stack_from_pem(&fs::read(dir.path().join(TLS_CERT_FILE)).unwrap()).unwrap();
        assert!(chain[0].verify(&ca.public_key().unwrap()).unwrap());
        let key = PKey::private_key_from_pem(&fs::read(dir.path().join(KEY_FILE)).unwrap()).unwrap();
        assert_eq!(key.ec_key().unwrap().group().curve_name(), Some(Nid::X9_62_PRIME256V1));
    }

    #[test]
    fn init_refuses_to_overwrite_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join(CONFIG_FILE), "keep me").unwrap();
        let error = init(&options(dir.path())).unwrap_err();
        assert!(matches!(error, InitError::Exists(ref paths) if paths.len() == 1), "{error}");
        assert_eq!(fs::read_to_string(dir.path().join(CONFIG_FILE)).unwrap(), "keep me");
        assert!(!dir.path().join(KEY_FILE).exists());
    }
}
