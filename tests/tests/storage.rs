//! Tables and `File` data in S3-compatible object storage (moto's server from PyPI): a hospital's connector ingests a
//! table and offers a file kept in a bucket, moves to another node with an empty data folder (as another replica
//! would run), and still serves the file with ranges and its digest, runs a job on the table, and removes a replaced
//! table from the bucket.

use futures_util::TryStreamExt;
use hanse::compute::commands;
use hanse::config::StorageConfig;
use hanse_tests::interop::S3Server;
use hanse_tests::*;
use object_store::path::Path as Key;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use serde_json::{Value, json};

fn sha256_hex(bytes: &[u8]) -> String {
    openssl::sha::sha256(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The keys in the bucket under `prefix`.
async fn keys(bucket: &dyn ObjectStore, prefix: &str) -> Vec<String> {
    let listed: Vec<_> = bucket.list(Some(&Key::from(prefix))).try_collect().await.unwrap();
    let mut keys: Vec<String> = listed.into_iter().map(|meta| meta.location.to_string()).collect();
    keys.sort();
    keys
}

/// A CSV file of `rows` rows, different for each `seed`.
fn report(rows: usize, seed: usize) -> Vec<u8> {
    let mut text = String::from("week,admissions\n");
    for week in 0..rows {
        text.push_str(&format!("{week},{}\n", (week * 7 + seed * 13) % 97));
    }
    text.into_bytes()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tables_and_files_live_in_object_storage_that_any_replica_reads() {
    let s3 = S3Server::start("hanse-hospital").await;
    let bucket = s3.client();
    let storage = StorageConfig {
        url: "s3://hanse-hospital/st-mary".into(),
        endpoint: Some(s3.endpoint.clone()),
        region: None,
        access_key_id: Some("hanse-test".into()),
        secret_access_key: Some("hanse-test-secret".into()),
        allow_http: true,
    };
    let backend = *hanse::testing::backends().last().unwrap();
    let configured = storage.clone();
    let provider = TestConnector::start_with(backend, move |config| config.storage = configured).await;
    let consumer = TestConnector::start(hanse::testing::Backend::Sqlite).await;
    let mut federation = Federation { connectors: vec![provider, consumer], client: reqwest::Client::new() };

    // The operator's file is put into the bucket by other tools; the connector offers it by its path.
    let first = report(20_000, 1);
    bucket.put(&Key::from("st-mary/files/reports/admissions.csv"), PutPayload::from(first.clone())).await.unwrap();
    let source = json!({"type": "File", "path": "reports/admissions.csv"});
    let agreement = agreed(
        &federation,
        "admissions",
        source,
        json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [{"action": "use"}]}),
        false,
    )
    .await;

    // A table ingested through the management API goes to the bucket; the node keeps no copy.
    let provider = &federation.connectors[0];
    let csv = provider.dir().join("cohort.csv");
    let schema = commands::synth(600, 0, 7, &csv).unwrap();
    let key = &provider.config.management.api_key;
    let props = json!({"title": "Diabetes register", "keyword": ["diabetes"]});
    let stored =
        commands::ingest(&provider.management_url(), key, "register", &csv, &schema, props.clone()).await.unwrap();
    let table = stored["file"].as_str().unwrap().to_owned();
    assert_eq!(keys(&bucket, "st-mary/tables").await, vec![format!("st-mary/tables/{table}")]);
    let local_tables = provider.config.store.data_dir.join("tables");
    let left: Vec<_> =
        std::fs::read_dir(&local_tables).map(|d| d.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "nothing stays on the node: {left:?}");
    let terms = json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
                       "permission": [{"action": "hanse:compute", "constraint": [
                           {"leftOperand": "hanse:jobTemplate", "operator": "isAnyOf", "rightOperand": ["aggregate"]}]}]});
    offer_stored(&federation.management(0), "register", terms, json!({})).await;
    let consumer = federation.management(1);
    let offer = catalogue_offer(&consumer, &federation.connectors[0], "register").await;
    let id = negotiate(&consumer, &federation.connectors[0], offer, json!({"purpose": RESEARCH})).await;
    let compute_agreement =
        wait_for_negotiation(&consumer, &id, "FINALIZED").await["contractAgreementId"].as_str().unwrap().to_owned();

    // The provider moves to another node: same database and storage, an empty data folder.
    let mut provider = federation.connectors.remove(0);
    let elsewhere = tempfile::tempdir().unwrap();
    provider.config.store.data_dir = elsewhere.path().to_owned();
    provider.config.dataplane.file_root = None;
    let provider = provider.restart().await;
    federation.connectors.insert(0, provider);

    // The file, whole and in part, with its digest.
    let transfer = start_transfer(&consumer, &agreement, json!({})).await;
    wait_for_transfer(&consumer, &transfer, "STARTED").await;
    let address = edr(&consumer, &transfer).await;
    let whole = pull(&federation.client, &address).send().await.unwrap();
    assert_eq!(whole.status(), 200);
    assert_eq!(whole.headers()["etag"].to_str().unwrap(), format!("\"{}\"", sha256_hex(&first)));
    assert_eq!(whole.headers()["content-type"].to_str().unwrap(), "text/csv");
    assert_eq!(&whole.bytes().await.unwrap()[..], &first[..]);
    let part = pull(&federation.client, &address).header("Range", "bytes=100-199").send().await.unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"].to_str().unwrap(), format!("bytes 100-199/{}", first.len()));
    assert_eq!(&part.bytes().await.unwrap()[..], &first[100..200]);
    let tail = pull(&federation.client, &address).header("Range", "bytes=-10").send().await.unwrap();
    assert_eq!(
        (tail.status(), &tail.bytes().await.unwrap()[..]),
        (reqwest::StatusCode::PARTIAL_CONTENT, &first[first.len() - 10..])
    );
    let outside =
        pull(&federation.client, &address).header("Range", format!("bytes={}-", first.len() + 5)).send().await.unwrap();
    assert_eq!(outside.status(), 416);
    assert_eq!(outside.headers()["content-range"].to_str().unwrap(), format!("bytes */{}", first.len()));
    // A resumption against another version of the file gets the whole new file, not a mix.
    let second = report(20_000, 2);
    bucket.put(&Key::from("st-mary/files/reports/admissions.csv"), PutPayload::from(second.clone())).await.unwrap();
    let stale = pull(&federation.client, &address)
        .header("Range", "bytes=100-")
        .header("If-Range", format!("\"{}\"", sha256_hex(&first)))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 200);
    assert_eq!(stale.headers()["etag"].to_str().unwrap(), format!("\"{}\"", sha256_hex(&second)));
    assert_eq!(&stale.bytes().await.unwrap()[..], &second[..]);

    // A job on the table, read from the bucket by this node.
    let count = json!({"metrics": [{"column": "age", "statistics": ["count"]}]});
    let started = consumer
        .post(
            "/management/v3/jobs",
            &json!({"template": "aggregate", "parameters": count, "sites": [{"agreementId": compute_agreement}]}),
        )
        .await;
    assert_eq!(started.status, 200, "{:#}", started.body);
    let job_id = started.body["@id"].as_str().unwrap().to_owned();
    let mut job = Value::Null;
    until("the job to end", async || {
        job = consumer.get(&format!("/management/v3/jobs/{job_id}")).await.body;
        job["state"] != "RUNNING"
    })
    .await;
    assert_eq!(job["state"], "COMPLETED", "{job:#}");
    assert_eq!(job["result"]["sites"][0]["cells"][0]["metrics"]["age"]["count"], 600, "{job:#}");

    // A re-ingested table replaces the old one in the bucket.
    let provider = &federation.connectors[0];
    let csv = provider.dir().join("cohort-2.csv");
    let schema = commands::synth(700, 0, 8, &csv).unwrap();
    let key = &provider.config.management.api_key;
    let again = commands::ingest(&provider.management_url(), key, "register", &csv, &schema, props).await.unwrap();
    let replaced = again["file"].as_str().unwrap();
    assert_ne!(replaced, table);
    assert_eq!(keys(&bucket, "st-mary/tables").await, vec![format!("st-mary/tables/{replaced}")]);
    federation.shutdown().await;
}
