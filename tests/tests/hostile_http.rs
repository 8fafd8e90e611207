//! Requests as an attacker sends them: slow, many, large and often. The listeners close what is too slow, cap what
//! is too many (the management listener keeps answering), refuse what is too large with a 413 naming the setting,
//! and answer what is too often with 429 and `Retry-After`; the broker's public queries follow their own quota and
//! credential switch.

use std::time::{Duration, Instant};

use hanse::testing::backends;
use hanse_tests::*;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Probes the management listener's `/health/ready` `times` times: every answer is 200; the slowest and the median
/// time are answered.
async fn probe_ready(connector: &TestConnector, times: usize) -> (Duration, Duration) {
    let client = reqwest::Client::builder().pool_max_idle_per_host(0).build().unwrap();
    let mut took = Vec::new();
    for _ in 0..times {
        let started = Instant::now();
        let answer = client.get(format!("{}/health/ready", connector.management_url())).send().await.unwrap();
        took.push(started.elapsed());
        assert_eq!(answer.status(), 200);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    took.sort();
    (took[took.len() - 1], took[took.len() / 2])
}

/// Whether the server closed `stream` (end of file or a reset) within `within`.
async fn closed_within(stream: &mut TcpStream, within: Duration) -> bool {
    let mut buffer = [0u8; 1024];
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline.into(), stream.read(&mut buffer)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            // A response (408 or 400): keep reading until the close.
            Ok(Ok(_)) => continue,
        }
    }
}

fn address(url: &str) -> String {
    url.trim_start_matches("http://").trim_end_matches('/').to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_many_connections_are_closed_and_capped_while_the_operator_is_answered() {
    let connector = TestConnector::start_with(Backend::Sqlite, |config| {
        config.http.header_timeout_seconds = 2;
        config.http.public_max_connections = 50;
    })
    .await;
    let public = address(&connector.public_url());

    // 200 connections that send half a request head and then nothing: 50 are served, the rest wait to be accepted.
    let mut slow = Vec::new();
    for _ in 0..200 {
        let mut stream = TcpStream::connect(&public).await.unwrap();
        stream.write_all(b"POST /protocol/2025-1/catalog/request HTTP/1.1\r\nHost: hanse\r\n").await.unwrap();
        slow.push(stream);
    }
    let (slowest, median) = probe_ready(&connector, 10).await;
    assert!(median < Duration::from_millis(100), "the management listener answers at once: median {median:?}");
    assert!(slowest < Duration::from_secs(1), "and never waits for the public flood: slowest {slowest:?}");

    // Each is closed once the header timeout has passed since it was accepted: four rounds of 50 at most.
    for (i, stream) in slow.iter_mut().enumerate() {
        assert!(closed_within(stream, Duration::from_secs(15)).await, "slow connection {i} was closed");
    }
    // The listener serves again, and a kept-alive connection that stays silent is closed as well.
    let mut idle = TcpStream::connect(&public).await.unwrap();
    idle.write_all(b"GET /.well-known/dspace-version HTTP/1.1\r\nHost: hanse\r\n\r\n").await.unwrap();
    let mut head = [0u8; 12];
    idle.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let silent_since = Instant::now();
    assert!(closed_within(&mut idle, Duration::from_secs(6)).await, "an idle kept-alive connection is closed");
    assert!(silent_since.elapsed() >= Duration::from_secs(1), "not before the header timeout");
    connector.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bodies_over_their_limit_are_refused_naming_the_setting_and_a_stalled_body_is_dropped() {
    let connector = TestConnector::start_with(Backend::Sqlite, |config| {
        config.http.public_max_body_kb = 64;
        config.http.management_max_body_kb = 128;
        config.http.body_timeout_seconds = 1;
    })
    .await;
    let client = reqwest::Client::new();
    let padding = "x".repeat(200 * 1024);

    // A DSP message over the public listener's limit.
    let answer = client
        .post(format!("{}/protocol/2025-1/catalog/request", connector.public_url()))
        .header("Authorization", connector.authorization(connector.participant_id()))
        .json(&json!({"@type": "CatalogRequestMessage", "padding": padding}))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 413);
    let body: Value = answer.json().await.unwrap();
    assert!(body["error"].as_str().unwrap().contains("http.public_max_body_kb"), "{body}");

    // A request head over 64 KiB is refused before any handler sees it.
    let answer = client
        .get(format!("{}/.well-known/dspace-version", connector.public_url()))
        .header("X-Pad", "a".repeat(100 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 431);

    // A management body over its limit, in the management API's error shape; nothing is created.
    let api = Management::of(&connector, &client);
    let mut asset = health_asset("padded", "Padded", &[], 1);
    asset["properties"]["padding"] = json!(padding);
    let refused = api.post("/management/v3/assets", &asset).await;
    assert_eq!(refused.status, 413, "{}", refused.body);
    assert!(refused.body[0]["message"].as_str().unwrap().contains("http.management_max_body_kb"), "{}", refused.body);
    assert_eq!(api.get("/management/v3/assets/padded").await.status, 404);
    // Below the limit the same request goes through.
    assert_eq!(api.post("/management/v3/assets", &health_asset("plain", "Plain", &[], 1)).await.status, 200);

    // A body that stops half-way is not waited for.
    let mut stalled = TcpStream::connect(address(&connector.management_url())).await.unwrap();
    let head = format!(
        "POST /management/v3/assets HTTP/1.1\r\nHost: hanse\r\nX-Api-Key: {}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000\r\n\r\n{{\"@id\": ",
        connector.api_key
    );
    stalled.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    assert!(closed_within(&mut stalled, Duration::from_secs(10)).await, "the stalled request ends");
    assert!(started.elapsed() >= Duration::from_millis(900), "after the body timeout, not before");
    connector.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_over_the_upload_limit_is_refused_and_leaves_nothing_behind() {
    let connector = TestConnector::start_with(Backend::Sqlite, |config| config.compute.max_upload_mb = 1).await;
    let mut csv = String::from("age,weight\n");
    while csv.len() < 3 * 1024 * 1024 {
        csv.push_str("42,71.5\n");
    }
    let upload = |data: String| {
        reqwest::multipart::Form::new()
            .text("id", "big-table")
            .text(
                "schema",
                json!({"columns": [{"name": "age", "type": "integer"}, {"name": "weight", "type": "float"}]})
                    .to_string(),
            )
            .part("data", reqwest::multipart::Part::text(data).file_name("rows.csv"))
    };
    let client = reqwest::Client::new();
    let post = |form| {
        client
            .post(format!("{}/management/v3/tables", connector.management_url()))
            .header("X-Api-Key", &connector.api_key)
            .multipart(form)
            .send()
    };
    // The oversized upload goes on while the operator's probes are answered.
    let (answer, (slowest, _)) = tokio::join!(post(upload(csv)), probe_ready(&connector, 5));
    assert!(slowest < Duration::from_secs(1), "probes answered during the upload: slowest {slowest:?}");
    let answer = answer.unwrap();
    assert_eq!(answer.status(), 413);
    let body: Value = answer.json().await.unwrap();
    assert!(body[0]["message"].as_str().unwrap().contains("compute.max_upload_mb"), "{body}");
    let api = Management::of(&connector, &client);
    assert_eq!(api.get("/management/v3/assets/big-table").await.status, 404, "nothing was imported");
    let tables = connector.config.store.data_dir.join("tables");
    let left: Vec<_> = std::fs::read_dir(&tables).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "no partial file is left: {left:?}");
    // A table within the limit is imported.
    let answer = post(upload("age,weight\n42,71.5\n50,80\n".into())).await.unwrap();
    assert_eq!(answer.status(), 200, "{}", answer.text().await.unwrap());
    connector.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_over_its_quota_is_told_when_to_come_back_and_probes_are_never_limited() {
    let connector = TestConnector::start_with(Backend::Sqlite, |config| {
        config.http.public_requests_per_second = 2;
        config.http.public_burst = 5;
    })
    .await;
    let client = reqwest::Client::new();
    let url = format!("{}/.well-known/dspace-version", connector.public_url());
    let mut statuses = Vec::new();
    let mut refusal = None;
    for _ in 0..20 {
        let answer = client.get(&url).send().await.unwrap();
        statuses.push(answer.status().as_u16());
        if answer.status() == 429 && refusal.is_none() {
            let retry: u64 = answer.headers()["retry-after"].to_str().unwrap().parse().unwrap();
            refusal = Some((retry, answer.json::<Value>().await.unwrap()));
        }
    }
    let served = statuses.iter().filter(|s| **s == 200).count();
    assert!((5..=7).contains(&served), "the burst and what the rate adds meanwhile: {statuses:?}");
    assert_eq!(served + statuses.iter().filter(|s| **s == 429).count(), 20, "{statuses:?}");
    let (retry, body) = refusal.expect("a 429");
    assert!(retry >= 1, "Retry-After in whole seconds");
    assert!(body["error"].as_str().unwrap().contains("http.public_requests_per_second"), "{body}");
    // Probes pass whatever the quota says, and the quota fills up again.
    for _ in 0..10 {
        assert_eq!(client.get(format!("{}/health/ready", connector.public_url())).send().await.unwrap().status(), 200);
    }
    tokio::time::sleep(Duration::from_secs(retry)).await;
    assert_eq!(client.get(&url).send().await.unwrap().status(), 200);
    connector.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_answers_only_holders_of_the_required_credential_within_their_query_quota() {
    let all = backends();
    let issuer = TestConnector::start(all[0]).await;
    let issuer_did = issuer.participant_id().to_owned();
    let broker = TestConnector::start_with(*all.last().unwrap(), |config| {
        config.broker.enabled = true;
        config.broker.crawl_interval_seconds = 3600;
        config.broker.require_credential = Some("MembershipCredential".into());
        config.broker.queries_per_minute = 3;
        config.trust.issuers.insert("MembershipCredential".into(), vec![issuer_did]);
    })
    .await;
    let member = TestConnector::start(all[0]).await;
    let stranger = TestParticipant::start().await;
    let client = reqwest::Client::new();
    let issued = Management::of(&issuer, &client)
        .post(
            "/management/v3/credentials/issue",
            &json!({"type": "MembershipCredential", "subject": member.participant_id(), "claims": {}}),
        )
        .await;
    assert_eq!(issued.status, 200, "{}", issued.body);
    let imported = Management::of(&member, &client)
        .post("/management/v3/credentials", &json!({"credential": issued.body["credential"]}))
        .await;
    assert_eq!(imported.status, 200, "{}", imported.body);

    let query = format!("{}/broker/sparql?query=ASK%20%7B%7D", broker.public_url());
    let search = format!("{}/broker/search?q=diabetes", broker.public_url());
    let refused = dsp_get(&client, &query, Some(&stranger)).await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.to_string().contains("MembershipCredential"), "{}", refused.body);
    let catalogue = dsp_post(
        &client,
        &format!("{}/broker/catalog/request", broker.public_url()),
        Some(&stranger),
        &catalog_request(json!([])),
    )
    .await;
    assert_eq!(catalogue.status, 403, "{}", catalogue.body);

    // The member is answered three times a minute, search and SPARQL together; the fourth is told to wait.
    for url in [&query, &search, &query] {
        let answer = dsp_get(&client, url, Some(&member)).await;
        assert_eq!(answer.status, 200, "{url}: {}", answer.body);
    }
    let answer =
        client.get(&query).header("Authorization", member.authorization(broker.participant_id())).send().await.unwrap();
    assert_eq!(answer.status(), 429);
    let retry: u64 = answer.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
    assert!(answer.text().await.unwrap().contains("broker.queries_per_minute"));
    broker.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_iri_whose_percent_encoding_is_not_utf8_is_a_400_naming_it() {
    // The fuzzer's find: the JSON-LD processor panicked on such an IRI, and the request got no answer.
    let connector = TestConnector::start(Backend::Sqlite).await;
    let client = reqwest::Client::new();
    let api = Management::of(&connector, &client);
    let mut asset = health_asset("odd", "Odd", &[], 1);
    asset["@context"] = json!({"@vocab": "https://w3id.org/edc/v0.0.1/ns/", "odd": "https://example.org/%ff/"});
    let refused = api.post("/management/v3/assets", &asset).await;
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(refused.body.to_string().contains("not UTF-8"), "{}", refused.body);
    assert!(probe_ready(&connector, 1).await.0 < Duration::from_secs(1));
    connector.running.shutdown().await;
}
