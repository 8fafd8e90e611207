//! The demo's federation: six connectors on loopback in this process, each with its own folder, did:web identity,
//! keys and SQLite store, set up the way their operators would (`hanse init`, then `hanse.toml`).

use std::path::Path;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::client::ManagementClient;
use crate::config::{AddressConfig, Config, GaiaxConfig, RegistrationConfig, ServiceConfig};
use crate::init::{InitOptions, did_web_for, init};
use crate::server::{self, RunningConnector};

/// A hospital of the demo: who it is, where, and how big and how strict it is.
pub struct Hospital {
    pub name: &'static str,
    pub slug: &'static str,
    pub locality: &'static str,
    pub country: &'static str,
    pub region: &'static str,
    pub postal_code: &'static str,
    pub street: &'static str,
    pub vat_id: &'static str,
    /// Patients in its diabetes register.
    pub rows: usize,
    /// Negotiations of its register wait for its operator at every turn.
    pub manual_approval: bool,
    /// The purpose its register's terms permit (`isA`).
    pub permitted_purpose: &'static str,
}

/// The three hospitals: different sizes and populations (the synthetic cohort of site `i` is hospital `i`'s).
pub const HOSPITALS: [Hospital; 3] = [
    Hospital {
        name: "Universitätsklinikum Nord",
        slug: "klinikum-nord",
        locality: "Hamburg",
        country: "DE",
        region: "DE60",
        postal_code: "20251",
        street: "Martinistraße 52",
        vat_id: "DE118508775",
        rows: 4000,
        manual_approval: false,
        permitted_purpose: "DUO:0000042",
    },
    Hospital {
        name: "Hôpital Universitaire du Sud",
        slug: "hopital-sud",
        locality: "Lyon",
        country: "FR",
        region: "FRK2",
        postal_code: "69003",
        street: "5 place d'Arsonval",
        vat_id: "FR40303265045",
        rows: 3000,
        manual_approval: true,
        permitted_purpose: "DUO:0000042",
    },
    Hospital {
        name: "Ziekenhuis West",
        slug: "ziekenhuis-west",
        locality: "Utrecht",
        country: "NL",
        region: "NL35",
        postal_code: "3584",
        street: "Heidelberglaan 100",
        vat_id: "NL004495445B01",
        rows: 900,
        manual_approval: false,
        // Disease-specific research only: a broader or commercial purpose is refused.
        permitted_purpose: "DUO:0000007",
    },
];

/// One running connector of the demo.
pub struct Node {
    pub name: String,
    pub role: &'static str,
    pub did: String,
    pub api_key: String,
    pub config: Config,
    pub running: RunningConnector,
    pub api: ManagementClient,
}

impl Node {
    pub fn public_url(&self) -> String {
        self.running.public_url()
    }

    pub fn management_url(&self) -> String {
        self.running.management_url()
    }
}

/// The federation's connectors.
pub struct Federation {
    pub issuer: Node,
    pub hospitals: Vec<Node>,
    pub researcher: Node,
    pub broker: Node,
}

impl Federation {
    /// Every node, issuer first.
    pub fn nodes(&self) -> Vec<&Node> {
        let mut all = vec![&self.issuer];
        all.extend(&self.hospitals);
        all.extend([&self.researcher, &self.broker]);
        all
    }

    /// Starts every connector under `root`, each trusting the issuer for membership credentials.
    pub async fn start(root: &Path) -> anyhow::Result<Federation> {
        let issuer = start_node(root, "Federation issuer", "issuer", "federation-issuer", |_| {}).await?;
        let trust = issuer.did.clone();
        let trusting = |config: &mut Config| {
            config.trust.issuers.insert("MembershipCredential".into(), vec![trust.clone()]);
        };
        let mut hospitals = Vec::new();
        for hospital in &HOSPITALS {
            let node = start_node(root, hospital.name, "hospital", hospital.slug, |config| {
                trusting(config);
                config.gaiax = Some(gaiax(hospital, &config.participant.key_file));
            })
            .await?;
            hospitals.push(node);
        }
        let researcher =
            start_node(root, "Institut für Diabetesforschung", "researcher", "research-institute", trusting).await?;
        let broker = start_node(root, "Federation broker", "broker", "broker", |config| {
            trusting(config);
            config.broker.enabled = true;
            // The demo crawls when it needs to; the background rounds would only add noise.
            config.broker.crawl_interval_seconds = 3600;
        })
        .await?;
        Ok(Federation { issuer, hospitals, researcher, broker })
    }

    /// Stops every connector gracefully.
    pub async fn shutdown(self) {
        for node in [self.issuer, self.researcher, self.broker].into_iter().chain(self.hospitals) {
            node.running.shutdown().await;
        }
    }
}

/// `hanse init` in `root/slug` for two free loopback ports, `configure`, then start.
async fn start_node(
    root: &Path,
    name: &str,
    role: &'static str,
    slug: &str,
    configure: impl FnOnce(&mut Config),
) -> anyhow::Result<Node> {
    let public = TcpListener::bind("127.0.0.1:0").await.context("binding a public listener")?;
    let management = TcpListener::bind("127.0.0.1:0").await.context("binding a management listener")?;
    let public_addr = public.local_addr()?;
    let done = init(&InitOptions {
        dir: root.join(slug),
        participant_id: Some(did_web_for(&public_addr)),
        public_bind: public_addr,
        management_bind: management.local_addr()?,
        development: true,
    })
    .with_context(|| format!("setting up {name}"))?;
    let mut config = Config::load(&done.config_file)?;
    // A peer of the demo that is gone is gone for good: give up quickly.
    config.negotiation.retry_attempts = 3;
    config.negotiation.retry_base_ms = 100;
    // All the demo's connectors share one address (127.0.0.1): the per-address quota, made for peers on their own
    // hosts, would count their traffic together.
    config.http.public_requests_per_second = 100_000;
    config.http.public_burst = 100_000;
    configure(&mut config);
    let running =
        server::start_on(config.clone(), public, management).await.with_context(|| format!("starting {name}"))?;
    let api = ManagementClient::new(&running.management_url(), &done.api_key);
    Ok(Node { name: name.to_owned(), role, did: done.participant_id, api_key: done.api_key, config, running, api })
}

/// The SHA-256 of the Gaia-X terms and conditions every participant accepts.
pub const GAIA_X_TERMS: &str = "4bd7554097444c960292b4726c2efa1373485e8a5565d94d41195214c5e0ceb3";

/// A hospital's Gaia-X settings: its legal person, headquarters and VAT number, its connector as a service
/// offering, and the development certificate chain `hanse init` wrote next to its key.
pub fn gaiax(hospital: &Hospital, key_file: &Path) -> GaiaxConfig {
    let home = key_file.parent().and_then(Path::parent).unwrap_or(Path::new("."));
    GaiaxConfig {
        legal_name: hospital.name.into(),
        description: Some(format!("{}, a university hospital sharing research data", hospital.name)),
        terms_and_conditions: GAIA_X_TERMS.into(),
        headquarters: AddressConfig {
            country_code: hospital.country.into(),
            region: Some(hospital.region.into()),
            locality: Some(hospital.locality.into()),
            postal_code: Some(hospital.postal_code.into()),
            street_address: Some(hospital.street.into()),
        },
        legal_address: None,
        registration: RegistrationConfig { vat_id: Some(hospital.vat_id.into()), ..Default::default() },
        registration_credentials: Vec::new(),
        service: ServiceConfig {
            name: format!("Hanse connector of {}", hospital.name),
            description: None,
            terms_url: format!("https://{}.example/connector-terms", hospital.slug),
            terms_hash: hex_of(hospital.slug),
            keywords: vec!["health".into(), "research".into(), "diabetes".into()],
            export_request_type: "API".into(),
            export_access_type: "digital".into(),
            export_format_type: "text/csv".into(),
        },
        default_license: "CC-BY-4.0".into(),
        validity_days: 30,
        certificate_chain: Some(home.join(crate::init::PARTICIPANT_CHAIN_FILE)),
    }
}

/// The SHA-256 (hex) of a text: the demo's stand-in for a terms document's hash.
fn hex_of(text: &str) -> String {
    crate::process::hex(&openssl::sha::sha256(text.as_bytes()))
}
