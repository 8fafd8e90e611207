//! The `hanse` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::compute::algorithms;

use crate::config::{Config, LogFormat};
use crate::init::{InitOptions, init};
use crate::{demo, server, telemetry};

const EXAMPLES: &str = "\
Examples:
  hanse demo                              run a connector with embedded defaults and check it end to end
  hanse init --dir ./hospital-a           write hanse.toml, a participant key and development TLS files
  hanse run --config ./hospital-a/hanse.toml
  HANSE_MANAGEMENT_API_KEY=... hanse run  override any key with HANSE_<SECTION>_<KEY>
  hanse --log-format json run             one JSON object per log line
  hanse fetch --agreement ID --out FILE   download an agreement's data through this connector
  hanse synth --rows 5000 --out a.csv     a synthetic cohort to ingest with `hanse dataset ingest`
  hanse catalog --peer URL                what a peer offers this connector
  hanse negotiate --peer URL --offer ID --purpose DUO:0000007
  hanse approvals list                    what waits for this operator
  hanse job run --template glm ...        a federated analysis across sites";

/// Hanse: a sovereign data space connector (DSP 2025-1, ODRL, DCAT / HealthDCAT-AP, Gaia-X).
#[derive(Debug, Parser)]
#[command(name = "hanse", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Log format; overrides `log.format` in the configuration.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented hanse.toml, a participant key pair and development TLS certificates.
    #[command(
        after_help = "Examples:\n  hanse init\n  hanse init --dir ./hospital-a --participant-id did:web:hospital-a.example"
    )]
    Init(InitArgs),
    /// Start the connector.
    #[command(
        after_help = "Examples:\n  hanse run\n  hanse run --config /etc/hanse/hanse.toml\n  HANSE_STORE_DATABASE_URL=postgres://postgres@127.0.0.1/hanse hanse run"
    )]
    Run(RunArgs),
    /// A whole health-data federation on this machine: three hospitals, a federation issuer, a research institute
    /// and a broker, each a connector on loopback with its own identity and SQLite store in a temporary folder. The
    /// researcher finds datasets, negotiates, fetches open data and runs a federated analysis; an auditor verifies
    /// every log. Exits non-zero naming the step that failed.
    #[command(after_help = "Examples:\n  hanse demo\n  hanse demo --seed 7\n  hanse demo --keep-running")]
    Demo(DemoArgs),
    /// Verifiable credentials: issue and revoke them (issuer), import and list them (holder).
    #[command(subcommand)]
    Credentials(CredentialsCommand),
    /// The participant's signing keys.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Providers' algorithms (WebAssembly modules): sign a manifest as its author or as a reviewer.
    #[command(subcommand)]
    Algorithm(AlgorithmCommand),
    /// Download the data of an agreement through this connector: start a pull transfer, show progress, resume after
    /// interruptions, verify the provider's SHA-256, complete the transfer.
    #[command(
        after_help = "Examples:\n  hanse fetch --agreement urn:uuid:5c1e... --out cohort.csv\n  hanse fetch --config consumer/hanse.toml --agreement urn:uuid:5c1e... --out cohort.csv\n  hanse fetch --management-url http://127.0.0.1:19193 --api-key $KEY --agreement urn:uuid:5c1e... --out cohort.csv"
    )]
    Fetch(FetchArgs),
    /// The tamper-evident audit log: verify an export offline, or show the life of one contract.
    #[command(subcommand)]
    Audit(AuditCommand),
    /// Gaia-X self-descriptions: print a participant's credentials, or verify them (signatures through the signers'
    /// DIDs, validity, and conformance to the Gaia-X 2511 shapes).
    #[command(subcommand, name = "self-description")]
    SelfDescription(SelfDescriptionCommand),
    /// Write a synthetic patient cohort (CSV) and its schema (`FILE.schema.json`), or with `--fhir` as a FHIR R4 bulk
    /// export (a folder of NDJSON files and the mapping that reads them); the same seed and site give the same rows.
    /// No real patient data is involved.
    #[command(
        after_help = "Examples:\n  hanse synth --rows 5000 --site 0 --out hospital-a.csv\n  hanse synth --rows 100000 --site 2 --seed 7 --out hospital-c.csv\n  hanse synth --rows 10000 --fhir --out export/"
    )]
    Synth {
        /// Patients.
        #[arg(long, default_value_t = 5000)]
        rows: usize,
        /// Which site's population (sites differ in age, BMI, smoking and diagnoses).
        #[arg(long, default_value_t = 0)]
        site: u32,
        #[arg(long, default_value_t = 42)]
        seed: u64,
        /// Write a FHIR R4 bulk export into the folder OUT instead of a CSV file.
        #[arg(long)]
        fhir: bool,
        #[arg(long)]
        out: PathBuf,
    },
    /// A peer's DSP catalogue as it shows itself to this connector: datasets, offers and their terms.
    #[command(
        after_help = "Examples:\n  hanse catalog --peer https://hospital-b.example\n  hanse catalog --peer http://127.0.0.1:19294 --query diabetes --query adults --json"
    )]
    Catalog {
        #[command(flatten)]
        access: ManagementAccess,
        /// The peer's public URL or DSP address.
        #[arg(long)]
        peer: String,
        /// Words each dataset must contain (title, description or keywords); repeatable.
        #[arg(long)]
        query: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Negotiate a contract for an offer of a peer and follow it to its end; exits non-zero when it is refused,
    /// printing the peer's reason.
    #[command(
        after_help = "Examples:\n  hanse negotiate --peer https://hospital-b.example --offer diabetes-offer:register:1a2b --purpose DUO:0000007\n  hanse negotiate --peer http://127.0.0.1:19294 --offer open-summary --json"
    )]
    Negotiate {
        #[command(flatten)]
        access: ManagementAccess,
        /// The peer's public URL or DSP address.
        #[arg(long)]
        peer: String,
        /// The offer's id (from `hanse catalog`), or a dataset's id when it has one offer.
        #[arg(long)]
        offer: String,
        /// The purpose to declare, e.g. DUO:0000007 (disease-specific research).
        #[arg(long)]
        purpose: Option<String>,
        /// How long to follow the negotiation (a peer's operator may have to approve it).
        #[arg(long, default_value_t = 60)]
        wait_seconds: u64,
        #[arg(long)]
        json: bool,
    },
    /// ODRL policies of this connector: store one, validate it, explain how it decides a request.
    #[command(subcommand)]
    Policy(PolicyCommand),
    /// Offers (contract definitions): which datasets are offered under which policies.
    #[command(subcommand)]
    Offer(OfferCommand),
    /// What waits for this connector's operator: negotiations under manual approval, transfers under manual start.
    #[command(subcommand)]
    Approvals(ApprovalsCommand),
    /// This connector's datasets; tabular ones for compute-to-data are ingested here.
    #[command(subcommand)]
    Dataset(DatasetCommand),
    /// Federated jobs across sites, under agreements that permit `compute`.
    #[command(subcommand)]
    Job(JobCommand),
    /// The peer network: the connectors this one knows, how it learned of them, whether they answer.
    #[command(subcommand)]
    Peers(PeersCommand),
    /// Named management keys with roles (operator, steward, approver, reader, auditor, metrics).
    #[command(subcommand, name = "api-keys")]
    ApiKeys(ApiKeysCommand),
    /// Apps' access tokens: issue, list with their use, revoke.
    #[command(subcommand)]
    Apps(AppsCommand),
    /// The broker role: each peer's crawl status, or a crawl of every peer now.
    #[command(subcommand)]
    Broker(BrokerCommand),
    /// Search the federation's datasets through a broker (this connector if it is one, or `--broker URL`, asked
    /// with this connector's identity). Every word must occur in a dataset's title, description or keywords.
    #[command(
        after_help = "Examples:\n  hanse search diabetes adults\n  hanse search diabetes --min-age 18 --max-age 64 --min-records 1000\n  hanse search --broker https://broker.federation.example diabetes --country DE --json"
    )]
    Search(SearchArgs),
}

#[derive(Debug, Subcommand)]
pub enum PeersCommand {
    /// Every known peer: status (live, unreachable, incompatible), how it was learned, when it last answered.
    #[command(after_help = "Examples:\n  hanse peers list\n  hanse peers list --json")]
    List(Answer),
    /// Add (and pin) a peer by DID or public URL; it is verified first (its DID resolves, its DSP version answers).
    #[command(
        after_help = "Examples:\n  hanse peers add did:web:hospital-b.example\n  hanse peers add https://hospital-b.example"
    )]
    Add {
        #[command(flatten)]
        access: ManagementAccess,
        /// A did:web DID or the peer's public URL.
        peer: String,
        #[arg(long)]
        json: bool,
    },
    /// Forget a peer.
    #[command(after_help = "Examples:\n  hanse peers remove did:web:hospital-b.example")]
    Remove {
        #[command(flatten)]
        access: ManagementAccess,
        did: String,
        #[arg(long)]
        json: bool,
    },
    /// Exchange peer lists now (instead of waiting for the next round).
    #[command(after_help = "Examples:\n  hanse peers exchange")]
    Exchange(Answer),
}

#[derive(Debug, Subcommand)]
pub enum ApiKeysCommand {
    /// Make a named key with a role; the key is shown once.
    #[command(
        after_help = "Examples:\n  hanse api-keys create \"Cardiology data steward\" --role steward\n  hanse api-keys create Prometheus --role metrics --id scraper"
    )]
    Create {
        #[command(flatten)]
        access: ManagementAccess,
        /// What the key is for.
        name: String,
        /// operator, steward, approver, reader, auditor or metrics.
        #[arg(long)]
        role: String,
        /// The key's id (else one is made).
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every named key with its role and state (never the key).
    #[command(after_help = "Examples:\n  hanse api-keys list")]
    List(Answer),
    /// Give a key a new value; the old one stops working at once.
    #[command(after_help = "Examples:\n  hanse api-keys rotate scraper")]
    Rotate(ById),
    /// Revoke a key: its next call is refused.
    #[command(after_help = "Examples:\n  hanse api-keys revoke scraper")]
    Revoke(ById),
}

#[derive(Debug, Subcommand)]
pub enum AppsCommand {
    /// Issue a token for an app, bound to datasets and actions; the token is shown once.
    #[command(
        after_help = "Examples:\n  hanse apps issue \"Diabetes companion\" --dataset t2d-cohort --action read --action compute --rate 120 --expires-in 2592000"
    )]
    Issue {
        #[command(flatten)]
        access: ManagementAccess,
        /// The app's name.
        name: String,
        /// A dataset the token grants (repeat for more).
        #[arg(long = "dataset", required = true)]
        datasets: Vec<String>,
        /// read, query, compute or file (repeat for more).
        #[arg(long = "action", required = true)]
        actions: Vec<String>,
        /// The purpose the app declares (an IRI or a known term such as DUO:0000007).
        #[arg(long)]
        purpose: Option<String>,
        /// Requests a minute (600 if not given).
        #[arg(long)]
        rate: Option<u32>,
        /// Seconds until the token expires (never if not given).
        #[arg(long = "expires-in")]
        expires_in: Option<u64>,
        /// A browser origin allowed to call with the token (repeat for more).
        #[arg(long = "origin")]
        origins: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Every token with what it grants and its use.
    #[command(after_help = "Examples:\n  hanse apps list")]
    List(Answer),
    /// Revoke a token: the app's next call is refused.
    #[command(after_help = "Examples:\n  hanse apps revoke app-3f2a9c1d0b7e")]
    Revoke(ById),
}

#[derive(Debug, Subcommand)]
pub enum BrokerCommand {
    /// Each peer's crawl: datasets, last success, next crawl, the last error.
    #[command(after_help = "Examples:\n  hanse broker status")]
    Status(Answer),
    /// Crawl every live peer now and show the outcome.
    #[command(after_help = "Examples:\n  hanse broker crawl")]
    Crawl(Answer),
}

#[derive(Debug, Args)]
pub struct SearchArgs {
    #[command(flatten)]
    pub access: ManagementAccess,
    /// Words that must all occur.
    pub words: Vec<String>,
    /// Another connector's broker (its public URL); default: this connector.
    #[arg(long)]
    pub broker: Option<String>,
    /// A DCAT theme IRI; repeatable (any of them).
    #[arg(long)]
    pub theme: Vec<String>,
    /// A HealthDCAT-AP health category IRI; repeatable.
    #[arg(long)]
    pub health_category: Vec<String>,
    /// The publisher's country (ISO 3166-1 alpha-2); repeatable.
    #[arg(long)]
    pub country: Vec<String>,
    /// The typical age range must reach this age or above.
    #[arg(long)]
    pub min_age: Option<i64>,
    /// The typical age range must reach this age or below.
    #[arg(long)]
    pub max_age: Option<i64>,
    #[arg(long)]
    pub min_records: Option<i64>,
    #[arg(long)]
    pub max_records: Option<i64>,
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum PolicyCommand {
    /// Store an ODRL policy (a JSON file) under an id, and show what validation says of it.
    #[command(
        after_help = "Examples:\n  hanse policy create research-only research.json\n\nresearch.json:\n  {\"@context\": \"http://www.w3.org/ns/odrl.jsonld\", \"@type\": \"Set\",\n   \"permission\": [{\"action\": \"use\", \"constraint\": [{\"leftOperand\": \"purpose\", \"operator\": \"isA\", \"rightOperand\": \"DUO:0000042\"}]}]}"
    )]
    Create {
        #[command(flatten)]
        access: ManagementAccess,
        id: String,
        /// The ODRL policy (JSON).
        file: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Errors and warnings of a stored policy; exits non-zero when it is not valid.
    #[command(after_help = "Examples:\n  hanse policy validate research-only")]
    Validate(ById),
    /// How a stored policy decides a request: the verdict, then every rule and constraint with what it saw.
    #[command(
        after_help = "Examples:\n  hanse policy explain research-only --purpose dpv:CommercialResearch\n  hanse policy explain members --participant did:web:lab.example --context '{\"claims\": {\"membership\": \"active\"}}'"
    )]
    Explain {
        #[command(flatten)]
        access: ManagementAccess,
        id: String,
        /// The action asked for (default `use`).
        #[arg(long)]
        action: Option<String>,
        /// The requester's DID.
        #[arg(long)]
        participant: Option<String>,
        /// The declared purpose.
        #[arg(long)]
        purpose: Option<String>,
        /// More of the request context as JSON (`claims`, `credentialTypes`, `spatial`, `job`, ...).
        #[arg(long)]
        context: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum OfferCommand {
    /// Offer datasets under a contract policy to whoever the access policy admits.
    #[command(
        after_help = "Examples:\n  hanse offer create diabetes-offer --access members --terms research-only --dataset diabetes-register\n  hanse offer create sensitive --access members --terms research-only --dataset genomes --manual-approval"
    )]
    Create {
        #[command(flatten)]
        answer: Answer,
        #[command(flatten)]
        offer: crate::catalog::commands::OfferSpec,
    },
}

#[derive(Debug, Subcommand)]
pub enum ApprovalsCommand {
    /// Negotiations and transfers that wait for this operator, with the calls each allows.
    #[command(after_help = "Examples:\n  hanse approvals list\n  hanse approvals list --json")]
    List(Answer),
    /// Let one go on: agree (or finalize) a negotiation, accept or verify as consumer, start a transfer.
    #[command(after_help = "Examples:\n  hanse approvals approve 5c1e0b9e-...")]
    Approve(ById),
    /// Refuse one: it is terminated and the peer reads the reason.
    #[command(
        after_help = "Examples:\n  hanse approvals reject 5c1e0b9e-... --reason \"the ethics vote does not cover this cohort\""
    )]
    Reject {
        #[command(flatten)]
        access: ManagementAccess,
        id: String,
        #[arg(long)]
        reason: String,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum DatasetCommand {
    /// Every dataset (asset) of this connector.
    #[command(after_help = "Examples:\n  hanse dataset list\n  hanse dataset list --json")]
    List(Answer),
    /// Import a CSV file with its schema, or a FHIR R4 export with its mapping, as a dataset (created, or replaced with
    /// the new rows). Every bad row or record is reported with its position and nothing is imported.
    #[command(
        after_help = "Examples:\n  hanse synth --rows 5000 --out cohort.csv\n  hanse dataset ingest cohort.csv --id diabetes-register --schema cohort.schema.json \\\n      --title \"Diabetes register\" --keyword diabetes --keyword adults\n  hanse synth --rows 10000 --fhir --out export\n  hanse dataset ingest export/*.ndjson --mapping export/mapping.json --id fhir-register"
    )]
    Ingest {
        #[command(flatten)]
        access: ManagementAccess,
        /// The CSV file (a header row naming every column of the schema), or with `--mapping` the files of a FHIR
        /// export (`*.ndjson`, or Bundles as `*.json`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The mapping of a FHIR export to columns (JSON: `{"columns": [{"name", "type", "resource", "value", ...}]}`).
        #[arg(long, conflicts_with = "schema")]
        mapping: Option<PathBuf>,
        /// The dataset's id.
        #[arg(long)]
        id: String,
        /// The schema (JSON: `{"columns": [{"name", "type", "levels"?, "nullable"?, "analysable"?}]}`); default:
        /// FILE with `.schema.json`.
        #[arg(long)]
        schema: Option<PathBuf>,
        #[arg(long)]
        title: Option<String>,
        #[arg(long)]
        description: Option<String>,
        /// Repeatable.
        #[arg(long)]
        keyword: Vec<String>,
        /// More dataset properties (a JSON object of DCAT / HealthDCAT-AP terms).
        #[arg(long)]
        properties: Option<PathBuf>,
    },
}

#[derive(Debug, Subcommand)]
pub enum JobCommand {
    /// Run a job across sites and print the combined result (coefficients with standard errors, or cells with their
    /// n and what each site suppressed).
    #[command(
        after_help = "Examples:\n  hanse job run --template aggregate --parameters '{\"groupBy\": [\"sex\"], \"metrics\": [{\"column\": \"hba1c\"}]}' \\\n      --agreement urn:uuid:1f0c... --agreement urn:uuid:77aa...\n  hanse job run --template glm --parameters @model.json --agreement urn:uuid:1f0c... --json"
    )]
    Run {
        #[command(flatten)]
        access: ManagementAccess,
        /// `aggregate`, `crosstab`, `glm`, `fedavg` or `module` (a provider's algorithm, named by digest).
        #[arg(long)]
        template: String,
        /// The parameters as JSON, or `@FILE`.
        #[arg(long, default_value = "{}")]
        parameters: String,
        /// An agreement per site (`ID`, or `ID@DSP_ADDRESS`); repeatable.
        #[arg(long = "agreement", required = true)]
        agreements: Vec<String>,
        /// The smallest cell count to release (providers never release below their own floor).
        #[arg(long)]
        min_cell_count: Option<u64>,
        /// fedavg: training rounds; glm: the most Newton rounds.
        #[arg(long)]
        rounds: Option<u32>,
        /// Print the whole job as JSON.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Subcommand)]
pub enum AuditCommand {
    /// Verify an exported log offline: recompute the tree, check every signature, each receipt's inclusion and
    /// agreement with the log, and consistency with heads (or earlier exports) seen before. Exit status 0 only when
    /// everything holds; otherwise the first faulty entry is named.
    #[command(
        after_help = "Examples:\n  curl -H \"X-Api-Key: $KEY\" http://127.0.0.1:19193/management/v3/audit/export > log.jsonl\n  hanse audit verify log.jsonl\n  hanse audit verify log.jsonl --head last-month.jsonl --head head.json --receipt receipt.json\n  hanse audit verify --store --config /etc/hanse/hanse.toml --head head.json"
    )]
    Verify {
        /// The export (JSON Lines from `GET /management/v3/audit/export`).
        #[arg(required_unless_present = "store", conflicts_with = "store")]
        export: Option<PathBuf>,
        /// Check the connector's database itself instead of an export, read only (the connector may be running):
        /// every entry, index column, tree node, the head row and each signed head, with the keys of the
        /// configuration's key folder (retired ones included). `--head` files are checked against it too.
        #[arg(long)]
        store: bool,
        #[command(flatten)]
        config: RunArgs,
        /// A tree head seen before (as `GET .../audit/head` returns it) or an earlier export; repeatable.
        #[arg(long)]
        head: Vec<PathBuf>,
        /// A receipt the log's participant gave a peer (as `GET .../audit/receipts` lists them); repeatable.
        #[arg(long)]
        receipt: Vec<PathBuf>,
    },
    /// Print the life of one contract: its negotiation, the agreement, transfers, data use, denials.
    #[command(after_help = "Examples:\n  hanse audit show --agreement urn:uuid:5c1e...")]
    Show {
        #[command(flatten)]
        access: ManagementAccess,
        /// The contract agreement's id.
        #[arg(long)]
        agreement: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum SelfDescriptionCommand {
    /// Print Gaia-X credentials: each one's type, issuer, validity, key and subject.
    #[command(
        after_help = "Examples:\n  hanse self-description show\n  hanse self-description show https://hospital-b.example/.well-known/gaia-x/credentials\n  hanse self-description show presentation.jwt --json"
    )]
    Show {
        #[command(flatten)]
        config: RunArgs,
        /// A presentation or credential JWTs: a file, or an http(s) URL (default: this connector's own).
        source: Option<String>,
        /// Print the decoded payloads as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Verify Gaia-X credentials; exit status 0 only when every signature, validity window and shape holds.
    #[command(
        after_help = "Examples:\n  hanse self-description verify https://hospital-b.example/.well-known/gaia-x/credentials\n  hanse self-description verify legal-person.jwt\n  hanse self-description verify --development http://127.0.0.1:19194/.well-known/gaia-x/credentials"
    )]
    Verify {
        #[command(flatten)]
        config: RunArgs,
        /// A presentation or credential JWTs: a file, or an http(s) URL.
        source: String,
        /// Resolve the signers' did:web over plain HTTP for loopback hosts, as a connector in development mode does
        /// (the default is the configuration's `participant.development`, or off without a configuration).
        #[arg(long)]
        development: bool,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// A command that asks a connector's management API and prints its answer.
#[derive(Debug, Args)]
pub struct Answer {
    #[command(flatten)]
    pub access: ManagementAccess,
    #[arg(long)]
    pub json: bool,
}

/// A command about one thing of a connector, by its id.
#[derive(Debug, Args)]
pub struct ById {
    #[command(flatten)]
    pub access: ManagementAccess,
    pub id: String,
    #[arg(long)]
    pub json: bool,
}

/// How a command reaches a connector's management API.
#[derive(Debug, Args)]
pub struct ManagementAccess {
    #[command(flatten)]
    pub config: RunArgs,
    /// The connector's management API (default: from the configuration).
    #[arg(long)]
    pub management_url: Option<String>,
    /// The management (or auditor) API key (default: from the configuration).
    #[arg(long, env = "HANSE_MANAGEMENT_API_KEY")]
    pub api_key: Option<String>,
}

impl ManagementAccess {
    /// The URL and key: as given, else from the configuration.
    pub fn resolve(self) -> anyhow::Result<(String, String)> {
        match (self.management_url, self.api_key) {
            (Some(url), Some(key)) => Ok((url, key)),
            (url, key) => {
                let config = Config::load(&self.config.config)?;
                let url = url.unwrap_or_else(|| format!("http://{}", config.management.bind));
                Ok((url, key.unwrap_or(config.management.api_key)))
            }
        }
    }
}

#[derive(Debug, Args)]
pub struct FetchArgs {
    #[command(flatten)]
    pub access: ManagementAccess,
    /// The contract agreement (its id) the data is fetched under.
    #[arg(long)]
    pub agreement: String,
    /// Where to write the data (`FILE.part` while downloading; an interrupted run resumes from it).
    #[arg(long)]
    pub out: PathBuf,
    /// How long to wait for the provider to start the transfer (its operator may have to release it).
    #[arg(long, default_value_t = 600)]
    pub wait_seconds: u64,
}

#[derive(Debug, Subcommand)]
pub enum CredentialsCommand {
    /// Sign a credential (VC 2.0 as JWT) for a subject and print it; its revocation bit is recorded.
    #[command(
        after_help = "Examples:\n  hanse credentials issue --type MembershipCredential --subject did:web:hospital-b.example \\\n      --claims '{\"membership\": \"active\", \"country\": \"DE\"}' --valid-until 2027-12-31T23:59:59Z > member.jwt"
    )]
    Issue {
        #[command(flatten)]
        config: RunArgs,
        /// The credential type, e.g. MembershipCredential.
        #[arg(long = "type")]
        credential_type: String,
        /// The holder's DID.
        #[arg(long)]
        subject: String,
        /// Claims about the subject, as a JSON object.
        #[arg(long, default_value = "{}")]
        claims: String,
        /// End of validity (RFC 3339).
        #[arg(long)]
        valid_until: Option<String>,
    },
    /// Revoke a credential this participant issued (it flips the credential's bit in the served status list).
    #[command(after_help = "Examples:\n  hanse credentials revoke urn:uuid:0b6c...")]
    Revoke {
        #[command(flatten)]
        config: RunArgs,
        /// The credential's id.
        id: String,
    },
    /// Store a credential this participant holds, from a file with the JWT.
    #[command(after_help = "Examples:\n  hanse credentials import member.jwt")]
    Import {
        #[command(flatten)]
        config: RunArgs,
        /// The file holding the credential JWT.
        file: PathBuf,
    },
    /// List held and issued credentials.
    #[command(after_help = "Examples:\n  hanse credentials list")]
    List {
        #[command(flatten)]
        config: RunArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Replace the participant key; the old one stays in the DID document until its tokens expired. Restart the
    /// connector afterwards.
    #[command(after_help = "Examples:\n  hanse keys rotate --config /etc/hanse/hanse.toml")]
    Rotate {
        #[command(flatten)]
        config: RunArgs,
    },
}

#[derive(Debug, Subcommand)]
pub enum AlgorithmCommand {
    /// Sign an algorithm's manifest with this participant's key, as its author (the manifest's `author`) or with
    /// `--reviewer` as one of its `reviewers`; the signature is added to the manifest file. The module beside the
    /// manifest must have the digest the manifest names.
    #[command(after_help = "Examples:
  hanse algorithm sign algorithms/validation.json
  hanse algorithm sign --reviewer --config /etc/hanse/hanse.toml algorithms/validation.json")]
    Sign {
        #[command(flatten)]
        config: RunArgs,
        /// Sign as a reviewer rather than as the author.
        #[arg(long)]
        reviewer: bool,
        manifest: PathBuf,
    },
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder to write into (created if missing).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The participant's did:web (default: did:web:localhost%3A<public port>).
    #[arg(long)]
    pub participant_id: Option<String>,
    /// Address of the public listener.
    #[arg(long, default_value = "127.0.0.1:19194")]
    pub public_bind: SocketAddr,
    /// Address of the management listener.
    #[arg(long, default_value = "127.0.0.1:19193")]
    pub management_bind: SocketAddr,
    /// Write a production configuration (development mode off).
    #[arg(long)]
    pub production: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, short, env = "HANSE_CONFIG", default_value = "hanse.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Leave the federation running and print every listener's URL and API key.
    #[arg(long)]
    pub keep_running: bool,
    /// The seed of the synthetic cohorts: the same seed gives the same data and the same numbers.
    #[arg(long, default_value_t = crate::demo::DEFAULT_SEED)]
    pub seed: u64,
}

/// Parses the command line and runs the command; errors are one line on stderr and a non-zero exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once (many errors already quote their source).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

/// Prints a command's answer: its JSON with `--json`, else the text for people.
fn show((body, text): (serde_json::Value, String), json: bool) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(&body)?);
    } else {
        println!("{text}");
    }
    Ok(())
}

/// Runs a management command of the peer network or the broker and prints its answer.
fn managed<F, Fut>(access: ManagementAccess, json: bool, command: F) -> anyhow::Result<()>
where
    F: FnOnce(crate::client::ManagementClient) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<(serde_json::Value, String)>>,
{
    let (url, key) = access.resolve()?;
    let client = crate::client::ManagementClient::new(&url, &key);
    show(runtime()?.block_on(command(client))?, json)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    use crate::broker::commands as broker;
    match cli.command {
        Command::Peers(PeersCommand::List(Answer { access, json })) => {
            managed(access, json, async |c| broker::peers_list(&c).await)
        }
        Command::Peers(PeersCommand::Add { access, peer, json }) => {
            managed(access, json, async |c| broker::peers_add(&c, &peer).await)
        }
        Command::Peers(PeersCommand::Remove { access, did, json }) => {
            managed(access, json, async |c| broker::peers_remove(&c, &did).await)
        }
        Command::Peers(PeersCommand::Exchange(Answer { access, json })) => {
            managed(access, json, async |c| broker::peers_exchange(&c).await)
        }
        Command::ApiKeys(command) => {
            use crate::apps::commands as access;
            match command {
                ApiKeysCommand::Create { access: to, name, role, id, json } => {
                    managed(to, json, async |c| access::key_create(&c, &name, &role, id.as_deref()).await)
                }
                ApiKeysCommand::List(Answer { access: to, json }) => {
                    managed(to, json, async |c| access::key_list(&c).await)
                }
                ApiKeysCommand::Rotate(ById { access: to, id, json }) => {
                    managed(to, json, async |c| access::key_rotate(&c, &id).await)
                }
                ApiKeysCommand::Revoke(ById { access: to, id, json }) => {
                    managed(to, json, async |c| access::key_revoke(&c, &id).await)
                }
            }
        }
        Command::Apps(command) => {
            use crate::apps::commands as apps;
            match command {
                AppsCommand::Issue { access, name, datasets, actions, purpose, rate, expires_in, origins, json } => {
                    let body = serde_json::json!({
                        "name": name, "datasets": datasets, "actions": actions, "purpose": purpose,
                        "ratePerMinute": rate, "expiresInSeconds": expires_in, "allowedOrigins": origins,
                    });
                    managed(access, json, async |c| apps::token_issue(&c, &body).await)
                }
                AppsCommand::List(Answer { access, json }) => {
                    managed(access, json, async |c| apps::token_list(&c).await)
                }
                AppsCommand::Revoke(ById { access, id, json }) => {
                    managed(access, json, async |c| apps::token_revoke(&c, &id).await)
                }
            }
        }
        Command::Broker(BrokerCommand::Status(Answer { access, json })) => {
            managed(access, json, async |c| broker::broker_status(&c).await)
        }
        Command::Broker(BrokerCommand::Crawl(Answer { access, json })) => {
            managed(access, json, async |c| broker::broker_crawl(&c).await)
        }
        Command::Search(args) => {
            let request = serde_json::json!({
                "q": args.words.join(" "), "theme": args.theme, "healthCategory": args.health_category,
                "country": args.country, "minAge": args.min_age, "maxAge": args.max_age,
                "minRecords": args.min_records, "maxRecords": args.max_records, "limit": args.limit,
            });
            let remote = args.broker.clone();
            managed(args.access, args.json, async move |c| broker::search(&c, remote.as_deref(), &request).await)
        }
        Command::Catalog { access, peer, query, json } => {
            managed(access, json, async |c| crate::catalog::commands::catalog(&c, &peer, &query).await)
        }
        Command::Negotiate { access, peer, offer, purpose, wait_seconds, json } => {
            use crate::negotiation::commands as negotiation;
            let request = negotiation::NegotiateRequest {
                peer,
                offer,
                purpose,
                wait: std::time::Duration::from_secs(wait_seconds),
            };
            managed(access, json, async |c| {
                let negotiation = negotiation::negotiate(&c, &request).await?;
                if negotiation["state"] == "TERMINATED" {
                    anyhow::bail!("{}", negotiation::describe(&negotiation));
                }
                let shown = negotiation::describe(&negotiation);
                Ok((negotiation, shown))
            })
        }
        Command::Policy(PolicyCommand::Create { access, id, file, json }) => {
            let policy: serde_json::Value = serde_json::from_str(&read_file(&file)?)
                .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", file.display()))?;
            managed(access, json, async |c| crate::catalog::commands::policy_create(&c, &id, policy).await)
        }
        Command::Policy(PolicyCommand::Validate(ById { access, id, json })) => managed(access, json, async |c| {
            let (report, shown) = crate::catalog::commands::policy_validate(&c, &id).await?;
            if report["isValid"] != true {
                anyhow::bail!("{}", shown.replace('\n', ";"));
            }
            Ok((report, shown))
        }),
        Command::Policy(PolicyCommand::Explain { access, id, action, participant, purpose, context, json }) => {
            let context = context
                .map(|c| serde_json::from_str(&c).map_err(|e| anyhow::anyhow!("--context is not JSON: {e}")))
                .transpose()?;
            let question = crate::catalog::commands::Question { action, participant, purpose, context };
            managed(access, json, async |c| crate::catalog::commands::policy_explain(&c, &id, &question).await)
        }
        Command::Offer(OfferCommand::Create { answer: Answer { access, json }, offer }) => {
            managed(access, json, async |c| crate::catalog::commands::offer_create(&c, &offer).await)
        }
        Command::Approvals(ApprovalsCommand::List(Answer { access, json })) => {
            managed(access, json, async |c| crate::negotiation::commands::approvals_list(&c).await)
        }
        Command::Approvals(ApprovalsCommand::Approve(ById { access, id, json })) => {
            managed(access, json, async |c| crate::negotiation::commands::approve(&c, &id).await)
        }
        Command::Approvals(ApprovalsCommand::Reject { access, id, reason, json }) => {
            managed(access, json, async |c| crate::negotiation::commands::reject(&c, &id, &reason).await)
        }
        Command::Dataset(DatasetCommand::List(Answer { access, json })) => {
            managed(access, json, async |c| crate::catalog::commands::dataset_list(&c).await)
        }
        Command::Init(args) => {
            let done = init(&InitOptions {
                dir: args.dir,
                participant_id: args.participant_id,
                public_bind: args.public_bind,
                management_bind: args.management_bind,
                development: !args.production,
            })?;
            println!("Initialised {}", done.participant_id);
            for file in &done.files {
                println!("  wrote {}", file.display());
            }
            println!("Start it with: hanse run --config {}", done.config_file.display());
            Ok(())
        }
        Command::Run(args) => {
            let mut config = Config::load(&args.config)?;
            if let Some(format) = cli.log_format {
                config.log.format = format;
            }
            telemetry::init_with_traces(&config.log.level, config.log.format, &config.traces);
            let ran = runtime()?.block_on(async {
                let running = server::start(config).await?;
                running.run_until_signal().await;
                anyhow::Ok(())
            });
            telemetry::flush();
            ran
        }
        Command::Demo(args) => {
            telemetry::init("warn", cli.log_format.unwrap_or_default());
            runtime()?.block_on(async {
                let progress = std::io::IsTerminal::is_terminal(&std::io::stderr());
                let options = demo::Options { seed: args.seed, keep_running: args.keep_running, progress };
                demo::run(&options).await.map(|_| ())
            })
        }
        Command::Credentials(command) => runtime()?.block_on(credentials(command)),
        Command::Fetch(args) => {
            telemetry::init("warn", cli.log_format.unwrap_or_default());
            let (management_url, api_key) = args.access.resolve()?;
            let options = crate::fetch::FetchOptions {
                management_url,
                api_key,
                agreement: args.agreement,
                out: args.out,
                start_timeout: std::time::Duration::from_secs(args.wait_seconds),
                progress: std::io::IsTerminal::is_terminal(&std::io::stderr()),
            };
            let report = runtime()?.block_on(crate::fetch::fetch(&options))?;
            println!(
                "Fetched {} bytes into {} (sha-256 {}, transfer {}{})",
                report.bytes,
                options.out.display(),
                report.sha256,
                report.transfer_id,
                if report.resumptions > 0 { format!(", resumed {} times", report.resumptions) } else { String::new() }
            );
            Ok(())
        }
        Command::Audit(AuditCommand::Verify { export: Some(export), head, receipt, .. }) => {
            audit_verify(&export, &head, &receipt)
        }
        Command::Audit(AuditCommand::Verify { export: None, head, config, .. }) => {
            runtime()?.block_on(audit_verify_store(&Config::load(&config.config)?, &head))
        }
        Command::SelfDescription(command) => runtime()?.block_on(self_description(command)),
        Command::Audit(AuditCommand::Show { access, agreement }) => {
            let (url, key) = access.resolve()?;
            runtime()?.block_on(audit_show(&url, &key, &agreement))
        }
        Command::Synth { rows, site, seed, fhir: true, out } => {
            let files = crate::compute::commands::synth_fhir(rows, site, seed, &out)?;
            println!(
                "Wrote {rows} synthetic patients of site {site} as FHIR to {} ({} files)",
                out.display(),
                files.len()
            );
            Ok(())
        }
        Command::Synth { rows, site, seed, fhir: false, out } => {
            let schema = crate::compute::commands::synth(rows, site, seed, &out)?;
            println!(
                "Wrote {rows} synthetic patients of site {site} to {} and the schema to {}",
                out.display(),
                schema.display()
            );
            Ok(())
        }
        Command::Dataset(DatasetCommand::Ingest {
            access,
            files,
            mapping,
            id,
            schema,
            title,
            description,
            keyword,
            properties,
        }) => {
            let (url, key) = access.resolve()?;
            let mut given = match properties {
                Some(path) => serde_json::from_str(&read_file(&path)?)
                    .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", path.display()))?,
                None => serde_json::json!({}),
            };
            for (name, value) in [("title", title), ("description", description)] {
                if let Some(value) = value {
                    given[name] = serde_json::json!(value);
                }
            }
            if !keyword.is_empty() {
                given["keyword"] = serde_json::json!(keyword);
            }
            let stored = match (mapping, files.as_slice()) {
                (Some(mapping), _) => runtime()?
                    .block_on(crate::compute::commands::ingest_fhir(&url, &key, &id, &files, &mapping, given))?,
                (None, [file]) => {
                    let schema = schema.unwrap_or_else(|| crate::compute::commands::schema_path(file));
                    runtime()?.block_on(crate::compute::commands::ingest(&url, &key, &id, file, &schema, given))?
                }
                (None, _) => anyhow::bail!("one CSV file, or a FHIR export's files with --mapping"),
            };
            println!(
                "Ingested {} rows into dataset {id} ({})",
                stored["numberOfRecords"],
                stored["file"].as_str().unwrap_or("")
            );
            Ok(())
        }
        Command::Job(JobCommand::Run { access, template, parameters, agreements, min_cell_count, rounds, json }) => {
            let (url, key) = access.resolve()?;
            let parameters = match parameters.strip_prefix('@') {
                Some(path) => read_file(std::path::Path::new(path))?,
                None => parameters,
            };
            let parameters: serde_json::Value =
                serde_json::from_str(&parameters).map_err(|e| anyhow::anyhow!("--parameters is not JSON: {e}"))?;
            let request = serde_json::json!({"template": template, "parameters": parameters, "minCellCount": min_cell_count,
                "rounds": rounds, "sites": crate::compute::commands::sites(&agreements)});
            let progress = !json && std::io::IsTerminal::is_terminal(&std::io::stderr());
            let job = runtime()?.block_on(crate::compute::commands::run_job(&url, &key, &request, progress))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&job)?);
            } else {
                print!("{}", crate::compute::commands::render(&job["result"]));
            }
            Ok(())
        }
        Command::Algorithm(AlgorithmCommand::Sign { config, reviewer, manifest }) => {
            let config = Config::load(&config.config)?;
            let keys = crate::identity::keys::KeyRing::load(&config.participant.id, &config.participant.key_file)?;
            let role = if reviewer { algorithms::Role::Reviewer } else { algorithms::Role::Author };
            let signed =
                algorithms::sign_file(&manifest, &keys, &config.participant.id, role).map_err(anyhow::Error::msg)?;
            println!("{} {} signed by {} as {}", signed.name, signed.version, config.participant.id, role.name());
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate { config }) => {
            let config = Config::load(&config.config)?;
            let retired = crate::identity::keys::rotate(&config.participant.key_file)?;
            println!("New key written to {}", config.participant.key_file.display());
            println!(
                "The old key moved to {}; the DID document keeps it as a verification method (what it signed still \
                 verifies) and it signs tokens no more after one token lifetime.",
                retired.display()
            );
            println!("A running connector signs with the new key within two seconds.");
            Ok(())
        }
    }
}

async fn open_store(config: &Config) -> anyhow::Result<crate::store::Store> {
    Ok(crate::store::Store::open(&config.database_url(), &config.store_options()).await?)
}

/// The command-line flag of an issue request member.
fn cli_flag(member: &str) -> &str {
    match member {
        "validUntil" => "valid-until",
        other => other,
    }
}

async fn credentials(command: CredentialsCommand) -> anyhow::Result<()> {
    use crate::identity;
    use crate::store::Principal;
    match command {
        CredentialsCommand::Issue { config, credential_type, subject, claims, valid_until } => {
            let config = Config::load(&config.config)?;
            let claims: serde_json::Value =
                serde_json::from_str(&claims).map_err(|e| anyhow::anyhow!("--claims is not JSON: {e}"))?;
            let body = serde_json::json!({"type": credential_type, "subject": subject, "claims": claims,
                                          "validUntil": valid_until});
            let request = identity::credentials::IssueRequest::from_json(body.as_object().expect("an object"))
                .map_err(|(field, message)| anyhow::anyhow!("--{}: {message}", cli_flag(field)))?;
            let keys = identity::keys::KeyRing::load(&config.participant.id, &config.participant.key_file)?;
            let store = open_store(&config).await?;
            let public_url = config.public_url();
            let issue = identity::issue_credential(&keys, &store.identity, &public_url, &request);
            let issued = Principal::CommandLine("credentials issue".into()).scope(issue).await;
            store.close().await;
            let (id, jwt) = issued?;
            eprintln!("Issued {id}");
            println!("{jwt}");
        }
        CredentialsCommand::Revoke { config, id } => {
            let config = Config::load(&config.config)?;
            let store = open_store(&config).await?;
            let revoke = store.identity.revoke_issued_credential(&id);
            let revoked = Principal::CommandLine("credentials revoke".into()).scope(revoke).await;
            store.close().await;
            let revoked = revoked?;
            println!("Revoked {} (status list bit {})", revoked.id, revoked.status_index);
        }
        CredentialsCommand::Import { config, file } => {
            let config = Config::load(&config.config)?;
            let jwt =
                std::fs::read_to_string(&file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", file.display()))?;
            let store = open_store(&config).await?;
            let imported = identity::import_credential(&store.identity, &config.participant.id, &jwt).await;
            store.close().await;
            let summary = imported?;
            println!("Imported {} ({}) from {}", summary.id, summary.types.join(", "), summary.issuer);
        }
        CredentialsCommand::List { config } => {
            let config = Config::load(&config.config)?;
            let store = open_store(&config).await?;
            let (held, issued) = (store.identity.held_credentials().await, store.identity.issued_credentials().await);
            store.close().await;
            println!("Held:");
            for credential in held? {
                println!("  {}  {}  from {}", credential.id, credential.types, credential.issuer);
            }
            println!("Issued:");
            for credential in issued? {
                let status = if credential.revoked { "revoked" } else { "valid" };
                println!("  {}  {}  to {}  ({status})", credential.id, credential.types, credential.subject);
            }
        }
    }
    Ok(())
}

/// The configuration, if the file exists (commands that can run without one).
fn optional_config(args: &RunArgs) -> anyhow::Result<Option<Config>> {
    if args.config.exists() { Ok(Some(Config::load(&args.config)?)) } else { Ok(None) }
}

/// The text of a file or of an http(s) URL.
async fn read_source(http: &reqwest::Client, source: &str) -> anyhow::Result<String> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let response =
            http.get(source).send().await.map_err(|e| anyhow::anyhow!("{source}: {}", hanse_core::error_chain(&e)))?;
        let status = response.status();
        let text = response.text().await.map_err(|e| anyhow::anyhow!("{source}: {e}"))?;
        if !status.is_success() {
            anyhow::bail!("{source} answered HTTP {}: {}", status.as_u16(), text.trim());
        }
        Ok(text)
    } else {
        read_file(std::path::Path::new(source))
    }
}

async fn self_description(command: SelfDescriptionCommand) -> anyhow::Result<()> {
    use crate::identity::gaiax;
    let (args, source, json, development) = match &command {
        SelfDescriptionCommand::Show { config, source, json } => (config, source.clone(), *json, false),
        SelfDescriptionCommand::Verify { config, source, json, development } => {
            (config, Some(source.clone()), *json, *development)
        }
    };
    let config = optional_config(args)?;
    let http = match &config {
        Some(config) => {
            crate::transport::client_builder(config)?.timeout(std::time::Duration::from_secs(30)).build()?
        }
        None => reqwest::Client::builder().timeout(std::time::Duration::from_secs(30)).build()?,
    };
    let source = match (source, &config) {
        (Some(source), _) => source,
        (None, Some(config)) => format!("{}{}", config.public_url(), gaiax::CREDENTIALS_PATH),
        (None, None) => {
            anyhow::bail!("no source given and no configuration ({}) to find this connector", args.config.display())
        }
    };
    let text = read_source(&http, &source).await?;
    if let SelfDescriptionCommand::Show { .. } = command {
        // Printing needs no check: nothing is resolved or validated.
        let presented = gaiax::presented(&text);
        let payload =
            |jwt: &str| crate::identity::jose::peek(jwt).map(|(_, p)| serde_json::Value::Object(p)).unwrap_or_default();
        if json {
            let payloads: Vec<serde_json::Value> = presented.credentials.iter().map(|jwt| payload(jwt)).collect();
            println!("{}", serde_json::to_string_pretty(&payloads)?);
            return Ok(());
        }
        for (_, holder, _) in &presented.presentations {
            println!("Presentation by {holder}");
        }
        for problem in &presented.unreadable {
            println!("unreadable: {problem}");
        }
        for jwt in &presented.credentials {
            let summary = match crate::identity::credentials::summarise(jwt) {
                Ok(summary) => summary,
                Err(e) => {
                    println!("\nunreadable credential: {e}");
                    continue;
                }
            };
            let time = |t: Option<chrono::DateTime<chrono::Utc>>| t.map_or_else(|| "-".to_owned(), |t| t.to_rfc3339());
            println!("\n{}  {}", summary.types.join(", "), summary.id);
            println!("  issuer: {}", summary.issuer);
            println!("  valid:  {} .. {}", time(summary.valid_from), time(summary.valid_until));
            let subject = payload(jwt).get("credentialSubject").cloned().unwrap_or_default();
            for line in serde_json::to_string_pretty(&subject)?.lines() {
                println!("  {line}");
            }
        }
        return Ok(());
    }
    let development = development || config.as_ref().is_some_and(|c| c.participant.development);
    let allowed = config.as_ref().map(|c| c.trust.allow_addresses.clone()).unwrap_or_default();
    let resolver = crate::identity::did::Resolver::new(http, development, std::time::Duration::from_secs(60))
        .allowing(hanse_core::addresses::Addresses::new(development, &allowed));
    let report = gaiax::verify(&resolver, &text, chrono::Utc::now()).await;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        for problem in &report.presentation_problems {
            println!("presentation: {problem}");
        }
        for credential in &report.credentials {
            let verdict = if credential.problems.is_empty() { "ok".to_owned() } else { credential.problems.join("; ") };
            println!("{}  {}: {verdict}", credential.types.join(", "), credential.id);
        }
        for violation in &report.violations {
            println!("shape: {violation}");
        }
    }
    if !report.holds() {
        let problems = report.presentation_problems.len()
            + report.credentials.iter().map(|c| c.problems.len()).sum::<usize>()
            + report.violations.len();
        anyhow::bail!("the self-description does not hold ({problems} problem(s) above)");
    }
    Ok(())
}

fn read_file(path: &std::path::Path) -> anyhow::Result<String> {
    std::fs::read_to_string(path).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))
}

/// `hanse audit verify`: prints the verdict; an error (exit status 1) names the first fault.
fn audit_verify(export: &std::path::Path, heads: &[PathBuf], receipts: &[PathBuf]) -> anyhow::Result<()> {
    use crate::audit::verify;
    let mut evidence = Vec::new();
    for path in heads {
        let read = verify::read_evidence(&read_file(path)?)
            .map_err(|fault| anyhow::anyhow!("{} is not usable evidence: {fault}", path.display()))?;
        evidence.push(read);
    }
    let mut held = Vec::new();
    for path in receipts {
        let value: serde_json::Value = serde_json::from_str(&read_file(path)?)
            .map_err(|e| anyhow::anyhow!("{} is not JSON: {e}", path.display()))?;
        let value = value.get("receipt").cloned().unwrap_or(value);
        held.push(
            serde_json::from_value(value).map_err(|e| anyhow::anyhow!("{} is not a receipt: {e}", path.display()))?,
        );
    }
    match verify::verify(&read_file(export)?, &evidence, &held) {
        Ok(verdict) => {
            println!(
                "OK: {} entries [{}, {}) of the log of {}, root {}; {} signed heads, {} earlier heads or exports, {} receipts hold",
                verdict.to - verdict.from,
                verdict.from,
                verdict.to,
                verdict.log,
                crate::audit::merkle::to_hex(&verdict.root),
                verdict.heads,
                verdict.evidence,
                verdict.receipts
            );
            Ok(())
        }
        Err(fault) => {
            println!("FAILED: {fault}");
            Err(anyhow::anyhow!("the audit log does not verify: {fault}"))
        }
    }
}

/// `hanse audit verify --store`: the self-check of the connector's database, read only, and the heads given against
/// it; an error (exit status 1) names the first fault.
async fn audit_verify_store(config: &Config, heads: &[PathBuf]) -> anyhow::Result<()> {
    use crate::audit::{head, verify};
    let keys = crate::identity::keys::KeyRing::load(&config.participant.id, &config.participant.key_file)?.all();
    let options = crate::store::StoreOptions { read_only: true, ..config.store_options() };
    let store = crate::store::Store::open(&config.database_url(), &options).await?;
    let checked = store.audit.self_check(&config.participant.id, &keys).await;
    let mut fault = checked.as_ref().ok().and_then(|c| c.fault.clone()).map(|f| f.to_string());
    for path in heads {
        if fault.is_some() {
            break;
        }
        let jws = match verify::read_evidence(&read_file(path)?) {
            Ok(verify::Evidence::Head(jws)) => jws,
            Ok(verify::Evidence::Export(_)) => {
                anyhow::bail!("{}: an earlier export is checked against an export, not against --store", path.display())
            }
            Err(error) => anyhow::bail!("{} is not usable evidence: {error}", path.display()),
        };
        let seen = head::read(&jws).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        let signed = keys.get(&seen.kid).map(|jwk| head::verify(&jws, jwk));
        fault = match (signed, store.audit.audit_root_at(seen.size).await?) {
            (None, _) => Some(format!("{}: the key {} is not one of the log's", path.display(), seen.kid)),
            (Some(Err(error)), _) => Some(format!("{}: {error}", path.display())),
            (Some(Ok(_)), None) => Some(format!(
                "{}: the log holds fewer than its {} entries: it was rolled back",
                path.display(),
                seen.size
            )),
            (Some(Ok(_)), Some(root)) if root != seen.root => Some(format!(
                "{}: the log's first {} entries no longer hash to it: it was rewritten",
                path.display(),
                seen.size
            )),
            (Some(Ok(_)), Some(_)) => None,
        };
    }
    store.close().await;
    let checked = checked?;
    match fault {
        None => {
            println!(
                "OK: the stored log of {} holds {} entries, every part agrees with them; {} earlier heads hold",
                config.participant.id,
                checked.size,
                heads.len()
            );
            Ok(())
        }
        Some(fault) => {
            println!("FAILED: {fault}");
            Err(anyhow::anyhow!("the stored audit log does not verify: {fault}"))
        }
    }
}

/// `hanse audit show`: the entries of one agreement, one line each.
async fn audit_show(url: &str, key: &str, agreement: &str) -> anyhow::Result<()> {
    let client = crate::client::ManagementClient::new(url, key);
    let mut after: Option<i64> = None;
    let mut shown = 0;
    loop {
        // The URL only encodes the query; the client supplies the connector.
        let mut address = reqwest::Url::parse("http://connector/management/v3/audit/entries")?;
        address.query_pairs_mut().append_pair("agreement", agreement).append_pair("limit", "1000");
        if let Some(after) = after {
            address.query_pairs_mut().append_pair("after", &after.to_string());
        }
        let path = format!("{}?{}", address.path(), address.query().unwrap_or_default());
        let request = client.request(reqwest::Method::GET, &path);
        let page: Vec<serde_json::Value> = serde_json::from_value(client.expect(request).await?)?;
        let Some(last) = page.last() else { break };
        after = last["seq"].as_i64();
        for item in &page {
            println!("{}", crate::audit::summary(item));
            shown += 1;
        }
    }
    if shown == 0 {
        anyhow::bail!("the audit log has no entry of agreement {agreement}");
    }
    Ok(())
}
