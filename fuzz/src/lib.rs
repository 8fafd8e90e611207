//! Fuzz targets: each takes any bytes and runs one parser a peer or an operator reaches, as the connector runs it.
//! None may panic, abort or overflow its stack, whatever the input; what a parser accepts must hold the
//! properties stated here (a parsed policy evaluates, a signed payload verifies to itself, a checked query parses
//! without exhausting the stack).
//!
//! `fuzz/run` builds each target as a libFuzzer binary (coverage-instrumented, stable toolchain) and runs it over
//! its corpus in `fuzz/corpus/<target>`; `tests/corpus.rs` replays every corpus file through the same functions in
//! the ordinary test run.

use std::sync::OnceLock;

use hanse_policy::{Policy, RequestContext};
use serde_json::{Value as Json, json};

/// A fuzz target: any bytes in, nothing out; a failure panics or aborts.
pub type Target = fn(&[u8]);

/// The targets by name, for the corpus replay.
pub const TARGETS: &[(&str, Target)] = &[
    ("dsp_message", dsp_message),
    ("odrl_policy", odrl_policy),
    ("jsonld_expand", jsonld_expand),
    ("query_spec", query_spec),
    ("sparql_query", sparql_query),
    ("token", token),
    ("csv_table", csv_table),
];

/// The stack of the threads that run these parsers in the connector (tokio's workers and blocking threads: 2 MiB).
const STACK: usize = 2 * 1024 * 1024;

/// Runs `work` on a thread with the connector's stack size: an input that recurses too deep for it overflows here
/// as it would there (and aborts: a crash), and a panic is carried over.
fn on_connector_stack(work: impl FnOnce() + Send) {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new().stack_size(STACK).spawn_scoped(scope, work).expect("a thread");
        if let Err(panic) = thread.join() {
            std::panic::resume_unwind(panic);
        }
    });
}

fn json(data: &[u8]) -> Option<Json> {
    serde_json::from_slice(data).ok()
}

/// A requester with claims, credentials, a purpose and a place, as a verified peer's context reads.
fn context() -> &'static RequestContext {
    static CONTEXT: OnceLock<RequestContext> = OnceLock::new();
    CONTEXT.get_or_init(|| {
        serde_json::from_value(json!({
            "participant": "did:web:researcher.example",
            "claims": {"membership": "active", "country": "DE", "role": {"name": "researcher"}},
            "credentialTypes": ["MembershipCredential"],
            "purpose": "https://w3id.org/dpv#ResearchAndDevelopment",
            "spatial": "DE",
        }))
        .expect("the context reads")
    })
}

/// A policy as a peer sends one (an offer, an agreement) or an operator defines one: read, validated, evaluated for
/// every action, normalised and compared with itself.
fn policy(value: &Json) {
    let Ok(policy) = Policy::from_json(value) else { return };
    let _ = hanse_policy::validate(&policy);
    for action in ["use", "transfer", "compute", "read", "distribute"] {
        let _ = hanse_policy::evaluate(&policy, action, context());
    }
    let _ = hanse_policy::evaluate_transfer(&policy, context());
    let normal = hanse_policy::normalise(&policy);
    assert!(hanse_policy::same_offer(&normal, &policy), "a policy is the same offer as its normal form");
    assert!(hanse_policy::offer_difference(&policy, &policy).is_none(), "a policy differs from itself");
}

/// A DSP message as the public listener receives it: JSON, expanded as JSON-LD and compacted back to the DSP wire
/// form, and the policy it carries (an offer or an agreement) read.
pub fn dsp_message(data: &[u8]) {
    on_connector_stack(|| dsp_message_(data));
}

fn dsp_message_(data: &[u8]) {
    let Some(message) = json(data) else { return };
    if let Ok(expanded) = hanse_vocab::jsonld::expand(&message) {
        let _ = hanse_vocab::jsonld::compact_dsp(&expanded);
    }
    for member in ["offer", "agreement"] {
        if let Some(value) = message.get(member) {
            policy(value);
        }
    }
}

/// An ODRL policy on its own (a policy definition, an offer in a catalogue).
pub fn odrl_policy(data: &[u8]) {
    on_connector_stack(|| odrl_policy_(data));
}

fn odrl_policy_(data: &[u8]) {
    if let Some(value) = json(data) {
        policy(&value);
    }
}

/// JSON-LD expansion and compaction with the bundled contexts only (nothing is ever fetched), and the streaming
/// parser a broker reads peers' catalogues with.
pub fn jsonld_expand(data: &[u8]) {
    on_connector_stack(|| jsonld_expand_(data));
}

fn jsonld_expand_(data: &[u8]) {
    let Some(document) = json(data) else {
        let _ = hanse_vocab::jsonld::parse_quads(data, "https://hospital.example/protocol/2025-1/catalog/");
        return;
    };
    if let Ok(expanded) = hanse_vocab::jsonld::expand(&document) {
        let _ = hanse_vocab::jsonld::compact_dsp(&expanded);
    }
    let _ = hanse_vocab::jsonld::to_nquads(&document);
    let _ = hanse_vocab::jsonld::parse_quads(data, "https://hospital.example/protocol/2025-1/catalog/");
}

/// An EDC QuerySpec of a management `.../request` body, checked against a resource's fields and applied; the ids an
/// operator gives are checked as the management API checks them.
pub fn query_spec(data: &[u8]) {
    on_connector_stack(|| query_spec_(data));
}

fn query_spec_(data: &[u8]) {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = hanse_core::ids::check_id(text);
    }
    let Some(body) = json(data) else { return };
    let Ok(spec) = hanse_core::query::QuerySpec::from_body(Some(&body)) else { return };
    let _ = spec.check_fields("assets", &[&["id"], &["properties", "title"], &["createdAt"]]);
    let items: Vec<Json> = (0..5).map(|i| json!({"id": format!("a{i}"), "createdAt": i, "title": ["x", i]})).collect();
    let _ = spec.apply(items, |item, field| item.get(field).cloned().into_iter().collect());
}

/// A SPARQL query as every endpoint takes one: checked for size, depth and unsupported forms, then, if the check
/// lets it through, parsed (the parser recurses: a query the check passes must never exhaust the stack).
pub fn sparql_query(data: &[u8]) {
    on_connector_stack(|| sparql_query_(data));
}

fn sparql_query_(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if hanse_core::sparql::check(text, 65_536, 64).is_ok() {
        let _ = spargebra::SparqlParser::new().parse_query(text);
        let _ = spargebra::SparqlParser::new().parse_update(text);
    }
}

fn signing_key() -> &'static hanse_keys::jose::SigningKey {
    static KEY: OnceLock<hanse_keys::jose::SigningKey> = OnceLock::new();
    KEY.get_or_init(|| {
        let group = openssl::ec::EcGroup::from_curve_name(openssl::nid::Nid::X9_62_PRIME256V1).expect("P-256");
        let key =
            openssl::pkey::PKey::from_ec_key(openssl::ec::EcKey::generate(&group).expect("a key")).expect("a key");
        hanse_keys::jose::SigningKey::from_pem(&key.private_key_to_pem_pkcs8().expect("PEM")).expect("the key reads")
    })
}

/// A token as a peer presents one: read without checking, verified with a key (the first line, when it is a JWK
/// as a DID document would hold one, else ours); and a payload we sign verifies to itself.
pub fn token(data: &[u8]) {
    on_connector_stack(|| token_(data));
}

fn token_(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let (jwk, token) = match text.split_once('\n') {
        Some((first, rest)) => match serde_json::from_str::<Json>(first) {
            Ok(Json::Object(jwk)) => (jwk, rest),
            _ => (signing_key().public_jwk().clone(), text),
        },
        None => (signing_key().public_jwk().clone(), text),
    };
    let _ = hanse_keys::jose::peek(token);
    let _ = hanse_keys::jose::verify(token, &jwk);
    if let Ok(Json::Object(payload)) = serde_json::from_str::<Json>(text) {
        let signed = signing_key().sign(&serde_json::Map::new(), &Json::Object(payload.clone()));
        let verified = hanse_keys::jose::verify(&signed, signing_key().public_jwk()).expect("our own token verifies");
        assert_eq!(verified, payload, "a signed payload verifies to itself");
    }
}

/// A CSV table upload against a schema with a column of each kind; a table that reads keeps its row count.
pub fn csv_table(data: &[u8]) {
    on_connector_stack(|| csv_table_(data));
}

fn csv_table_(data: &[u8]) {
    static SCHEMA: OnceLock<hanse_compute::table::Schema> = OnceLock::new();
    let schema = SCHEMA.get_or_init(|| {
        hanse_compute::table::Schema::from_json(&json!({"columns": [
            {"name": "age", "type": "integer"},
            {"name": "weight", "type": "float", "nullable": true},
            {"name": "smoker", "type": "boolean"},
            {"name": "visit", "type": "date"},
            {"name": "sex", "type": "categorical", "levels": ["female", "male"]},
        ]}))
        .expect("the schema reads")
    });
    if let Ok(table) = hanse_compute::table::read_csv(data, schema) {
        assert!(table.rows > 0 && table.values.iter().all(|column| column.len() == table.rows));
    }
}
