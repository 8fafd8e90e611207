//! Self-descriptions between real connectors: a hospital publishes Gaia-X 2511 credentials and a DCAT-AP catalogue;
//! another connector verifies the credentials (signatures through the DID, validity, shapes), and pySHACL, an
//! independent validator, agrees with Hanse's verdicts on the official shapes.

use std::path::{Path, PathBuf};

use chrono::Utc;
use hanse::identity::gaiax::{self, Report};
use hanse_self_descriptions::gaiax::{shapes_text, subjects_nquads};
use hanse_tests::*;
use serde_json::{Value, json};

/// The Gaia-X shapes and class hierarchy the connector bundles, as files for pySHACL.
fn gaiax_shape_files(folder: &Path) -> (PathBuf, PathBuf) {
    let (shapes, hierarchy) = shapes_text();
    let (s, h) = (folder.join("gx.shapes.ttl"), folder.join("gx.hierarchy.ttl"));
    std::fs::write(&s, shapes).unwrap();
    std::fs::write(&h, hierarchy).unwrap();
    (s, h)
}

fn payloads(report: &Report) -> Vec<Value> {
    report.credentials.iter().map(|c| c.payload.clone()).collect()
}

fn pyshacl_on(payloads: &[Value], folder: &Path) -> ShaclReport {
    let (shapes, hierarchy) = gaiax_shape_files(folder);
    pyshacl(&subjects_nquads(payloads).expect("subjects as RDF"), &[&shapes], Some(&hierarchy))
}

/// Signs `payloads` again as `issuer` (a participant whose DID document serves the key).
fn resign(issuer: &TestParticipant, payloads: &[Value]) -> String {
    payloads
        .iter()
        .map(|p| {
            let mut p = p.clone();
            p["issuer"] = json!(issuer.url_did());
            issuer.sign("vc+ld+json+jwt", &p)
        })
        .collect::<Vec<_>>()
        .join("\n")
}

trait UrlDid {
    fn url_did(&self) -> String;
}

impl UrlDid for TestParticipant {
    fn url_did(&self) -> String {
        did_of_url(&self.url)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gaia_x_credentials_verify_at_another_connector_and_conform_to_the_2511_shapes() {
    let backends = hanse::testing::backends();
    let hospital = TestConnector::start_with(backends[0], |config| {
        config.gaiax = Some(gaiax_config(&config.participant.key_file));
    })
    .await;
    let verifier = TestConnector::start(*backends.last().unwrap()).await;
    let client = reqwest::Client::new();
    let api = Management::of(&hospital, &client);

    // Two datasets anyone may see, one only members see: the public presentation lists two resources.
    for (id, title) in
        [("diabetes", "Type 2 diabetes cohort"), ("stroke", "Stroke registry"), ("rare", "Rare diseases")]
    {
        api.create("/management/v3/assets", health_asset(id, title, &["cohort"], 1000)).await;
    }
    api.create("/management/v3/policydefinitions", policy_definition("open", open_policy())).await;
    let members = json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [{"action": "use",
        "constraint": [{"leftOperand": "https://w3id.org/hanse/ns/membership", "operator": "eq", "rightOperand": "active"}]}]});
    api.create("/management/v3/policydefinitions", policy_definition("members", members)).await;
    api.create(
        "/management/v3/contractdefinitions",
        contract_definition("public", "open", "open", &["diabetes", "stroke"]),
    )
    .await;
    api.create("/management/v3/contractdefinitions", contract_definition("closed", "members", "open", &["rare"])).await;

    // The DID document names the presentation; the presentation is fetched over HTTP like any verifier would.
    let did_document: Value = client
        .get(format!("{}/.well-known/did.json", hospital.public_url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let services = did_document["service"].as_array().unwrap();
    let listed = services.iter().find(|s| s["type"] == gaiax::SERVICE).expect("the Gaia-X service entry");
    let presentation_url = listed["serviceEndpoint"].as_str().unwrap().to_owned();
    assert_eq!(presentation_url, format!("{}{}", hospital.public_url(), gaiax::CREDENTIALS_PATH));
    let response = client.get(&presentation_url).send().await.unwrap();
    assert_eq!(response.headers()["content-type"], gaiax::VP_MEDIA);
    let presentation = response.text().await.unwrap();

    let resolver = verifier.running.state.identity.resolver();
    let report = gaiax::verify(resolver, &presentation, Utc::now()).await;
    assert!(report.holds(), "{report:#?}");
    assert_eq!(report.holder.as_deref(), Some(hospital.participant_id()));
    let kinds: Vec<&str> = report.credentials.iter().map(|c| c.types[1].as_str()).collect();
    assert_eq!(
        kinds,
        [
            "gx:VatID",
            "gx:LeiCode",
            "gx:LegalPerson",
            "gx:Issuer",
            "gx:ServiceOffering",
            "gx:VirtualResource",
            "gx:VirtualResource"
        ]
    );
    let resources: Vec<&str> = report
        .credentials
        .iter()
        .filter(|c| c.types[1] == "gx:VirtualResource")
        .map(|c| c.payload["credentialSubject"]["schema:name"].as_str().unwrap())
        .collect();
    assert_eq!(resources, ["Type 2 diabetes cohort", "Stroke registry"], "the members-only dataset stays out");

    // Each credential is served at its id; its x5u chain holds the participant key, signed by the CA.
    let person = report.credentials.iter().find(|c| c.types[1] == "gx:LegalPerson").unwrap();
    let jwt = client.get(&person.id).send().await.unwrap().text().await.unwrap();
    let header: Value = serde_json::from_slice(
        &base64::Engine::decode(&base64::engine::general_purpose::URL_SAFE_NO_PAD, jwt.split('.').next().unwrap())
            .unwrap(),
    )
    .unwrap();
    assert_eq!(header["typ"], "vc+ld+json+jwt");
    assert_eq!(header["cty"], "vc+ld+json");
    let chain = client.get(header["x5u"].as_str().unwrap()).send().await.unwrap().bytes().await.unwrap();
    let chain = openssl::x509::X509::stack_from_pem(&chain).unwrap();
    let key = std::fs::read(hospital.dir.join("keys/participant.pub.pem")).unwrap();
    assert_eq!(chain[0].public_key().unwrap().public_key_to_pem().unwrap(), key);
    assert!(chain[0].verify(&chain[1].public_key().unwrap()).unwrap());

    // pySHACL agrees: the subjects conform to the 2511 shapes.
    let folder = tempfile::tempdir().unwrap();
    let good = payloads(&report);
    let independent = pyshacl_on(&good, folder.path());
    assert!(independent.conforms, "{:#?}", independent.results);

    // A tampered signature is named.
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let flipped = if parts[2].starts_with('A') { "B" } else { "A" };
    parts[2].replace_range(0..1, flipped);
    let tampered = gaiax::verify(resolver, &parts.join("."), Utc::now()).await;
    assert!(!tampered.holds());
    assert!(tampered.credentials[0].problems.iter().any(|p| p.starts_with("signature")), "{tampered:#?}");

    // Broken subjects, validly signed by another participant: Hanse and pySHACL both refuse them, naming the property.
    let other = TestParticipant::start().await;
    let mut no_number = good.clone();
    for p in &mut no_number {
        if p["type"][1] == "gx:LegalPerson" {
            p["credentialSubject"].as_object_mut().unwrap().remove("gx:registrationNumber");
        }
    }
    let mut wrong_country = good.clone();
    for p in &mut wrong_country {
        if p["type"][1] == "gx:LegalPerson" {
            p["credentialSubject"]["gx:legalAddress"]["gx:countryCode"] = json!("XX");
        }
    }
    for (broken, path) in [(no_number, "registrationNumber"), (wrong_country, "countryCode")] {
        let report = gaiax::verify(resolver, &resign(&other, &broken), Utc::now()).await;
        assert!(report.credentials.iter().all(|c| c.problems.is_empty()), "{report:#?}");
        assert!(!report.holds());
        assert!(
            report.violations.iter().any(|v| v.contains(&format!("gx:{path}"))),
            "{path}: {:#?}",
            report.violations
        );
        let independent = pyshacl_on(&broken, folder.path());
        assert!(!independent.conforms, "pySHACL accepted a credential without a valid {path}");
        assert!(
            independent.violated_paths().iter().any(|p| p.ends_with(&format!("#{path}"))),
            "{path}: {:#?}",
            independent.results
        );
    }

    // An expired credential is named.
    let mut expired = good.clone();
    expired[0]["validUntil"] = json!("2020-01-01T00:00:00Z");
    let report = gaiax::verify(resolver, &resign(&other, &expired[..1]), Utc::now()).await;
    assert!(report.credentials[0].problems.iter().any(|p| p.contains("expired")), "{report:#?}");

    verifier.running.shutdown().await;
    hospital.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connector_with_bad_gaia_x_settings_refuses_to_start_and_says_why() {
    let backend = hanse::testing::backends()[0];
    let dir = tempfile::tempdir().unwrap();
    let (_, mut config, public, management) = hanse::testing::initialised(dir.path()).await;
    let mut gaiax = gaiax_config(&config.participant.key_file);
    gaiax.headquarters.country_code = "XX".into();
    config.gaiax = Some(gaiax);
    let database = hanse::testing::TestDatabase::new(backend);
    config.store.database_url = Some(database.url.clone());
    config.store.schema = database.schema.clone();
    let error = hanse::server::start_on(config, public, management).await.err().expect("no start");
    let message = error.to_string();
    assert!(message.contains("gx:countryCode") && message.contains("\"XX\""), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dcat_catalogue_of_health_datasets_conforms_to_dcat_ap_3() {
    let backend = hanse::testing::backends()[0];
    let hospital = TestConnector::start(backend).await;
    let client = reqwest::Client::new();
    let api = Management::of(&hospital, &client);
    for (id, title, records) in
        [("diabetes", "Type 2 diabetes cohort", 5000), ("stroke", "Stroke registry", 1200), ("icu", "ICU stays", 800)]
    {
        api.create("/management/v3/assets", health_asset(id, title, &["cohort", "ehr"], records)).await;
    }
    // EHDS: a dataset reached through a health data access body, its access right from the EU table by name.
    let mut restricted = health_asset("oncology", "Oncology registry", &["cancer"], 2300);
    restricted["properties"]["accessRights"] = json!("restricted");
    restricted["properties"]["hdab"] = json!("did:web:hdab.health.example");
    api.create("/management/v3/assets", restricted).await;
    let mut wrong = health_asset("wrong", "Wrong rights", &["x"], 1);
    wrong["properties"]["accessRights"] = json!("members only");
    let refused = api.post("/management/v3/assets", &wrong).await;
    assert_eq!(refused.status, 400, "{:#}", refused.body);
    assert!(refused.body.to_string().contains("EU access-right table"), "{:#}", refused.body);
    api.create("/management/v3/policydefinitions", policy_definition("open", open_policy())).await;
    api.create("/management/v3/contractdefinitions", contract_definition("all", "open", "open", &[])).await;
    let shapes = Path::new(env!("CARGO_MANIFEST_DIR")).join("shacl/dcat-ap-3.0.0/shapes.ttl");
    let graph = || async {
        let response = client
            .post(format!("{}/management/sparql", hospital.management_url()))
            .header("X-Api-Key", &hospital.api_key)
            .header("Accept", "application/n-triples")
            .header("Content-Type", "application/sparql-query")
            .body("CONSTRUCT { ?s ?p ?o } WHERE { GRAPH ?g { ?s ?p ?o } }")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.text().await.unwrap()
    };

    let triples = graph().await;
    assert!(triples.contains("<http://healthdataportal.eu/ns/health#numberOfRecords> \"5000\""), "{triples}");
    assert!(
        triples.contains("<http://purl.org/dc/terms/accessRights> <http://publications.europa.eu/resource/authority/access-right/RESTRICTED>"),
        "{triples}"
    );
    assert!(triples.contains("<http://healthdataportal.eu/ns/health#hdab> <did:web:hdab.health.example>"), "{triples}");
    let report = pyshacl(&triples, &[&shapes], None);
    assert!(report.conforms, "{:#?}", report.results);

    // A dataset without a description breaks DCAT-AP, and the validator says so for that dataset only.
    let bare = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@id": "bare",
        "properties": {"title": "Untitled extract"}, "dataAddress": {"type": "HttpData", "baseUrl": "https://ehr.example/bare"}});
    api.create("/management/v3/assets", bare).await;
    let report = pyshacl(&graph().await, &[&shapes], None);
    assert!(!report.conforms);
    let faults: Vec<(&str, &str)> =
        report.results.iter().map(|r| (r["focus"].as_str().unwrap(), r["path"].as_str().unwrap_or(""))).collect();
    assert_eq!(faults, [("urn:hanse:dataset:bare", "http://purl.org/dc/terms/description")], "{:#?}", report.results);
    hospital.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_verifier_resolves_a_development_connector_as_the_connector_does_and_names_a_key_it_cannot_fetch() {
    let backends = hanse::testing::backends();
    let hospital = TestConnector::start_with(backends[0], |config| {
        config.gaiax = Some(gaiax_config(&config.participant.key_file));
    })
    .await;
    let client = reqwest::Client::new();
    let presentation =
        client.get(format!("{}{}", hospital.public_url(), gaiax::CREDENTIALS_PATH)).send().await.unwrap();
    let presentation = presentation.text().await.unwrap();
    let ttl = std::time::Duration::from_secs(60);
    // As `hanse self-description verify --development` resolves: plain HTTP for a loopback did:web.
    let development = hanse::identity::did::Resolver::new(client.clone(), true, ttl);
    let report = gaiax::verify(&development, &presentation, Utc::now()).await;
    assert!(report.holds(), "{report:#?}");
    // Without it, every signer's key is looked up over HTTPS, and the report says where and why that failed.
    let strict = hanse::identity::did::Resolver::new(client, false, ttl);
    let report = gaiax::verify(&strict, &presentation, Utc::now()).await;
    assert!(!report.holds());
    let problems = format!("{:?}{:?}", report.presentation_problems, report.credentials);
    assert!(problems.contains("https://localhost"), "names the key's URL: {problems}");
    hospital.running.shutdown().await;
}
