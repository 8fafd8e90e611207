//! DSP 2025-1 transfer processes and the data plane between real connectors (SQLite and PostgreSQL), over HTTP.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use hanse_tests::*;
use serde_json::{Value, json};

const MIB: usize = 1 << 20;

/// Deterministic, incompressible-looking bytes.
fn synthetic(len: usize, seed: u64) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

fn sha256_hex(bytes: &[u8]) -> String {
    openssl::sha::sha256(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// The provider's side of the consumer's transfer `consumer_pid`.
async fn provider_side(provider: &Management, consumer_pid: &str) -> Value {
    let mut found = Value::Null;
    until(&format!("the provider's side of {consumer_pid}"), async || {
        let all = provider.post("/management/v3/transferprocesses/request", &json!({})).await.body;
        found = all
            .as_array()
            .and_then(|a| a.iter().find(|t| t["correlationId"] == consumer_pid))
            .cloned()
            .unwrap_or_default();
        !found.is_null()
    })
    .await;
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_pull_streams_with_its_digest_and_resumes_after_the_connection_is_cut() {
    let federation = Federation::with_hospitals(2).await;
    let data = synthetic(256 * MIB, 7);
    let expected = sha256_hex(&data);
    let source = file_source(&federation.connectors[0], "cohort.bin", &data);
    drop(data);
    let agreement = agreed(&federation, "cohort", source, research_terms(), false).await;
    let (provider, consumer) = (federation.management(0), federation.management(1));
    let id = start_transfer(&consumer, &agreement, json!({})).await;
    let started = wait_for_transfer(&consumer, &id, "STARTED").await;
    assert_eq!(started["allowedCalls"], json!(["suspend", "complete", "terminate"]));
    assert_eq!(provider_side(&provider, &id).await["state"], "STARTED");
    let address = edr(&consumer, &id).await;
    assert!(address["endpoint"].as_str().unwrap().starts_with(&federation.connectors[0].public_url()));

    // The first attempt is cut after 40 MiB.
    let mut first = pull(&federation.client, &address).send().await.unwrap();
    assert_eq!(first.status(), 200);
    assert_eq!(first.content_length(), Some((256 * MIB) as u64));
    let etag = first.headers()["etag"].to_str().unwrap().trim_matches('"').to_owned();
    assert_eq!(etag, expected, "the ETag is the SHA-256 of the data");
    assert!(first.headers()["repr-digest"].to_str().unwrap().starts_with("sha-256=:"));
    let mut received = openssl::sha::Sha256::new();
    let mut count = 0usize;
    while count < 40 * MIB {
        let chunk = first.chunk().await.unwrap().expect("more data");
        received.update(&chunk);
        count += chunk.len();
    }
    drop(first);

    // The resumption asks for the rest only.
    let mut rest = pull(&federation.client, &address).header("Range", format!("bytes={count}-")).send().await.unwrap();
    assert_eq!(rest.status(), 206);
    assert_eq!(rest.content_length(), Some((256 * MIB - count) as u64));
    while let Some(chunk) = rest.chunk().await.unwrap() {
        received.update(&chunk);
        count += chunk.len();
    }
    assert_eq!(count, 256 * MIB);
    let digest: String = received.finish().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(digest, expected, "the resumed download is the file");

    // One pull (the resumption is not another), and every byte sent, counted on the agreement.
    let store = &federation.connectors[0].running.state.store;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let usage = loop {
        let usage = store.processes.usage(&agreement).await.unwrap();
        if usage.bytes >= (256 * MIB) as i64 || std::time::Instant::now() > deadline {
            break usage;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(usage.pulls, 1);
    assert!(usage.bytes >= (256 * MIB) as i64, "{usage:?}");

    // The consumer completes; the token is void at once.
    let completed = consumer.post(&format!("/management/v3/transferprocesses/{id}/complete"), &json!({})).await;
    assert_eq!((completed.status, &completed.body["state"]), (200, &json!("COMPLETED")), "{:#}", completed.body);
    let provider_pid = wait_for_transfer(
        &provider,
        provider_side(&provider, &id).await["@id"].as_str().unwrap(),
        "COMPLETED",
    )
    .await["@id"]
        .clone();
    let after = pull(&federation.client, &address).header("Range", "bytes=0-9").send().await.unwrap();
    assert_eq!(after.status(), 403);
    assert!(after.bytes().await.unwrap().len() < 200, "no data, only the reason");

    // The DSP view, for the consumer only; it validates against the official schema.
    let url = format!(
        "{}/protocol/2025-1/transfers/{}",
        federation.connectors[0].public_url(),
        provider_pid.as_str().unwrap()
    );
    let seen = dsp_get(&federation.client, &url, Some(&federation.connectors[1])).await;
    assert_eq!((seen.status, &seen.body["state"]), (200, &json!("COMPLETED")));
    assert_valid_dsp(&seen.body);
    let stranger = dsp_get(&federation.client, &url, Some(&TestParticipant::start().await)).await;
    assert_eq!(stranger.status, 404);
    assert_valid_dsp(&stranger.body);
    federation.shutdown().await;
}

/// An HTTP endpoint that hashes what is posted to it and keeps the headers it got.
#[derive(Clone, Default)]
struct Sink {
    received: Arc<Mutex<Vec<(HeaderMap, String, usize)>>>,
}

async fn sink_server(sink: Sink) -> String {
    let app = axum::Router::new()
        .route(
            "/incoming",
            axum::routing::post(move |headers: HeaderMap, body: Bytes| {
                let sink = sink.clone();
                async move {
                    sink.received.lock().unwrap().push((headers, sha256_hex(&body), body.len()));
                    axum::http::StatusCode::NO_CONTENT
                }
            }),
        )
        .layer(axum::extract::DefaultBodyLimit::disable());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/incoming", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_delivers_the_data_to_the_consumers_endpoint_and_completes() {
    let federation = Federation::with_hospitals(2).await;
    let data = synthetic(24 * MIB, 11);
    let source = file_source(&federation.connectors[0], "summary.bin", &data);
    let agreement = agreed(&federation, "summary", source, research_terms(), false).await;
    let consumer = federation.management(1);
    let sink = Sink::default();
    let url = sink_server(sink.clone()).await;
    let id = start_transfer(
        &consumer,
        &agreement,
        json!({"transferType": "HttpData-PUSH",
               "dataDestination": {"type": "HttpData", "baseUrl": url, "authKey": "X-Sink-Key", "authCode": "s3cret"}}),
    )
    .await;
    let completed = wait_for_transfer(&consumer, &id, "COMPLETED").await;
    assert_eq!(completed["dataDestination"]["endpointProperties"][0]["value"], "***", "secrets are masked");
    let received = sink.received.lock().unwrap().clone();
    assert_eq!(received.len(), 1);
    let (headers, digest, len) = &received[0];
    assert_eq!((digest.as_str(), *len), (sha256_hex(&data).as_str(), data.len()));
    assert_eq!(headers["x-sink-key"], "s3cret");
    assert!(headers["repr-digest"].to_str().unwrap().starts_with("sha-256=:"));
    let on_provider = provider_side(&federation.management(0), &id).await;
    assert_eq!(
        (on_provider["state"].as_str(), on_provider["bytesPushed"].as_u64()),
        (Some("COMPLETED"), Some(data.len() as u64))
    );

    // A push that cannot be delivered ends the transfer with the reason.
    let failing = start_transfer(
        &consumer,
        &agreement,
        json!({"transferType": "HttpData-PUSH", "dataDestination": {"type": "HttpData", "baseUrl": "http://127.0.0.1:9/nowhere"}}),
    )
    .await;
    let terminated = wait_for_transfer(&consumer, &failing, "TERMINATED").await;
    assert_eq!(terminated["errorCode"], "PushFailed", "{terminated:#}");

    // A push without a destination is refused on the management API.
    let invalid = consumer
        .post("/management/v3/transferprocesses", &json!({"contractId": agreement, "transferType": "HttpData-PUSH"}))
        .await;
    assert_eq!(invalid.status, 400);
    assert_eq!(invalid.body[0]["path"], "dataDestination");
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_backend_is_proxied_and_its_private_auth_header_never_reaches_the_consumer() {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let recorder = seen.clone();
    let backend = axum::Router::new().route(
        "/extract.csv",
        axum::routing::get(move |headers: HeaderMap| {
            let recorder = recorder.clone();
            async move {
                let key = headers.get("x-backend-key").map(|v| v.to_str().unwrap().to_owned());
                recorder.lock().unwrap().push(key.clone());
                if key.as_deref() == Some("hidden-backend-secret") {
                    (axum::http::StatusCode::OK, "age,hba1c\n54,7.1\n61,6.4\n").into_response()
                } else {
                    (axum::http::StatusCode::UNAUTHORIZED, "").into_response()
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/extract.csv", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, backend).await });

    let federation = Federation::with_hospitals(2).await;
    let source =
        json!({"type": "HttpData", "baseUrl": base, "authKey": "X-Backend-Key", "authCode": "hidden-backend-secret"});
    let agreement = agreed(&federation, "extract", source, research_terms(), false).await;
    let consumer = federation.management(1);
    let id = start_transfer(&consumer, &agreement, json!({})).await;
    wait_for_transfer(&consumer, &id, "STARTED").await;
    let address = edr(&consumer, &id).await;
    let response = pull(&federation.client, &address).send().await.unwrap();
    assert_eq!(response.status(), 200);
    let headers = format!("{:?}", response.headers());
    assert_eq!(response.text().await.unwrap(), "age,hba1c\n54,7.1\n61,6.4\n");
    assert_eq!(seen.lock().unwrap().as_slice(), [Some("hidden-backend-secret".to_owned())]);
    let everything_the_consumer_saw = format!(
        "{headers}{address}{}{}",
        consumer.get(&format!("/management/v3/transferprocesses/{id}")).await.body,
        federation.management(1).post("/management/v3/contractagreements/request", &json!({})).await.body
    );
    assert!(!everything_the_consumer_saw.contains("hidden-backend-secret"));
    // The consumer's catalogue view does not show the data address either.
    let catalog = consumer
        .post(
            "/management/v3/catalog/request",
            &json!({"counterPartyAddress": format!("{}/protocol/2025-1", federation.connectors[0].public_url())}),
        )
        .await;
    assert!(!catalog.body.to_string().contains("hidden-backend-secret"));
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_are_void_after_suspension_and_restart_and_never_open_another_transfer() {
    let federation = Federation::with_hospitals(2).await;
    let source = file_source(&federation.connectors[0], "small.csv", b"id,value\n1,2\n");
    let agreement = agreed(&federation, "small", source, research_terms(), false).await;
    let (provider, consumer) = (federation.management(0), federation.management(1));
    let client = &federation.client.clone();
    let id = start_transfer(&consumer, &agreement, json!({})).await;
    wait_for_transfer(&consumer, &id, "STARTED").await;
    let first = edr(&consumer, &id).await;
    assert_eq!(pull(client, &first).send().await.unwrap().status(), 200);

    // No token, a malformed one, one signed by someone else: 401 and no byte.
    let endpoint = first["endpoint"].as_str().unwrap();
    assert_eq!(client.get(endpoint).send().await.unwrap().status(), 401);
    assert_eq!(client.get(endpoint).bearer_auth("not-a-jwt").send().await.unwrap().status(), 401);
    let stranger = TestParticipant::start().await;
    let provider_pid = provider_side(&provider, &id).await["@id"].as_str().unwrap().to_owned();
    let forged = stranger.sign(
        "at+jwt",
        &json!({"iss": federation.connectors[0].participant_id(), "aud": federation.connectors[0].participant_id(),
                "sub": federation.connectors[1].participant_id(), "transfer": provider_pid, "agreement": agreement,
                "epoch": 1, "iat": chrono::Utc::now().timestamp(), "exp": chrono::Utc::now().timestamp() + 60}),
    );
    let refused = client.get(endpoint).bearer_auth(&forged).send().await.unwrap();
    assert_eq!(refused.status(), 401);
    assert!(refused.text().await.unwrap().len() < 200);

    // A second transfer under the same agreement: the first token does not open it.
    let second = start_transfer(&consumer, &agreement, json!({})).await;
    wait_for_transfer(&consumer, &second, "STARTED").await;
    let second_endpoint = edr(&consumer, &second).await["endpoint"].as_str().unwrap().to_owned();
    let crossed =
        client.get(&second_endpoint).bearer_auth(first["authorization"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(crossed.status(), 401);

    // Suspension voids the token at once; resumption does not revive it; a refreshed one works.
    let suspended = consumer.post(&format!("/management/v3/transferprocesses/{id}/suspend"), &json!({})).await;
    assert_eq!(suspended.body["state"], "SUSPENDED", "{:#}", suspended.body);
    wait_for_transfer(&provider, &provider_pid, "SUSPENDED").await;
    assert_eq!(pull(client, &first).send().await.unwrap().status(), 403);
    let resumed = consumer.post(&format!("/management/v3/transferprocesses/{id}/resume"), &json!({})).await;
    assert_eq!(resumed.body["state"], "STARTED", "{:#}", resumed.body);
    wait_for_transfer(&provider, &provider_pid, "STARTED").await;
    assert_eq!(pull(client, &first).send().await.unwrap().status(), 401, "the old epoch's token is void");
    let refreshed = edr(&consumer, &id).await;
    assert_ne!(refreshed["authorization"], first["authorization"]);
    assert_eq!(pull(client, &refreshed).send().await.unwrap().text().await.unwrap(), "id,value\n1,2\n");

    // The provider's state survives a restart, and so do valid tokens (they are checked against the stored transfer).
    let mut federation = federation;
    let restarted = federation.connectors.remove(0).restart().await;
    let refreshed_endpoint = refreshed["endpoint"].as_str().unwrap().to_owned();
    let after_restart =
        client.get(&refreshed_endpoint).bearer_auth(refreshed["authorization"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(after_restart.status(), 200);
    federation.connectors.insert(0, restarted);

    // The provider terminates: the consumer learns it, and the token is void.
    let provider = federation.management(0);
    let terminated = provider
        .post(&format!("/management/v3/transferprocesses/{provider_pid}/terminate"), &json!({"reason": "audit hold"}))
        .await;
    assert_eq!(terminated.body["state"], "TERMINATED", "{:#}", terminated.body);
    let on_consumer = wait_for_transfer(&consumer, &id, "TERMINATED").await;
    assert_eq!(on_consumer["errorDetail"], "audit hold");
    let void =
        client.get(&refreshed_endpoint).bearer_auth(refreshed["authorization"].as_str().unwrap()).send().await.unwrap();
    assert_eq!(void.status(), 403);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfers_without_a_valid_agreement_are_refused_and_leave_nothing_behind() {
    let federation = Federation::with_hospitals(2).await;
    let source = file_source(&federation.connectors[0], "a.csv", b"a\n");
    let agreement = agreed(&federation, "a", source, research_terms(), false).await;
    let provider_url = format!("{}/protocol/2025-1/transfers/request", federation.connectors[0].public_url());
    let request = |agreement: &str, format: &str| {
        dsp_message(
            "TransferRequestMessage",
            json!({"consumerPid": format!("urn:uuid:{}", uuid::Uuid::new_v4()), "agreementId": agreement,
                   "format": format, "callbackAddress": "http://127.0.0.1:9/callback"}),
        )
    };
    for message in [request(&agreement, "HttpData-PULL"), request("urn:uuid:nothing", "HttpData-PULL")] {
        assert_valid_dsp(&message);
    }

    // No agreement at all; someone else's agreement: the same answer, so that agreements do not leak.
    let stranger = TestParticipant::start().await;
    for (who, agreement_id) in [(&federation.connectors[1] as &dyn Signer, "urn:uuid:nothing"), (&stranger, &agreement)]
    {
        let refused =
            dsp_post(&federation.client, &provider_url, Some(who), &request(agreement_id, "HttpData-PULL")).await;
        assert_eq!((refused.status, &refused.body["code"]), (400, &json!("AgreementNotFound")), "{:#}", refused.body);
        assert_eq!(refused.body["@type"], "TransferError");
        assert_valid_dsp(&refused.body);
    }
    // A format the distributions do not offer.
    let refused =
        dsp_post(&federation.client, &provider_url, Some(&federation.connectors[1]), &request(&agreement, "S3-PUSH"))
            .await;
    assert_eq!((refused.status, &refused.body["code"]), (400, &json!("UnsupportedFormat")));
    // Unsigned: 404, as for every unverifiable DSP request.
    let unsigned = dsp_post(&federation.client, &provider_url, None, &request(&agreement, "HttpData-PULL")).await;
    assert_eq!(unsigned.status, 404);
    assert_valid_dsp(&unsigned.body);
    let provider = federation.management(0);
    assert_eq!(provider.post("/management/v3/transferprocesses/request", &json!({})).await.body, json!([]));

    // Compute-only terms never allow a transfer.
    let compute = json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
                         "permission": [{"action": "https://w3id.org/hanse/ns/compute"}]});
    let compute_source = file_source(&federation.connectors[0], "b.csv", b"b\n");
    let compute_agreement = agreed(&federation, "b", compute_source, compute, false).await;
    let refused = dsp_post(
        &federation.client,
        &provider_url,
        Some(&federation.connectors[1]),
        &request(&compute_agreement, "HttpData-PULL"),
    )
    .await;
    assert_eq!((refused.status, &refused.body["code"]), (400, &json!("PolicyDenied")), "{:#}", refused.body);
    // Through the consumer's management API, the refusal ends the consumer's transfer with the reason.
    let consumer = federation.management(1);
    let id = start_transfer(&consumer, &compute_agreement, json!({})).await;
    let terminated = wait_for_transfer(&consumer, &id, "TERMINATED").await;
    assert!(terminated["errorDetail"].as_str().unwrap().contains("PolicyDenied"), "{terminated:#}");
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn count_and_time_limits_of_the_agreement_are_enforced_on_every_pull() {
    let federation = Federation::with_hospitals(2).await;
    let consumer = federation.management(1);
    let once = json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
                      "permission": [{"action": "use", "constraint": [{"leftOperand": "count", "operator": "lteq", "rightOperand": 1}]}]});
    let source = file_source(&federation.connectors[0], "once.csv", b"x\n");
    let agreement = agreed(&federation, "once", source, once, false).await;
    let id = start_transfer(&consumer, &agreement, json!({})).await;
    wait_for_transfer(&consumer, &id, "STARTED").await;
    let address = edr(&consumer, &id).await;
    assert_eq!(pull(&federation.client, &address).send().await.unwrap().status(), 200);
    let second = pull(&federation.client, &address).send().await.unwrap();
    assert_eq!(second.status(), 403, "the agreement allows one pull");
    assert!(second.text().await.unwrap().contains("count"));
    wait_for_transfer(&consumer, &id, "TERMINATED").await;

    // An agreement valid for two seconds after signing.
    let brief = json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
                       "permission": [{"action": "use", "constraint": [{"leftOperand": "elapsedTime", "operator": "lteq", "rightOperand": "PT2S"}]}]});
    let source = file_source(&federation.connectors[0], "brief.csv", b"y\n");
    let agreement = agreed(&federation, "brief", source, brief, false).await;
    let id = start_transfer(&consumer, &agreement, json!({})).await;
    wait_for_transfer(&consumer, &id, "STARTED").await;
    let address = edr(&consumer, &id).await;
    tokio::time::sleep(std::time::Duration::from_millis(3200)).await;
    assert_eq!(pull(&federation.client, &address).send().await.unwrap().status(), 403, "the agreement has expired");
    let ended = wait_for_transfer(&consumer, &id, "TERMINATED").await;
    assert!(ended["errorDetail"].as_str().unwrap().contains("elapsedTime"), "{ended:#}");
    let late = start_transfer(&consumer, &agreement, json!({})).await;
    wait_for_transfer(&consumer, &late, "TERMINATED").await;
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_start_waits_for_the_operator_and_illegal_messages_change_nothing() {
    let federation = Federation::with_hospitals(2).await;
    let source = file_source(&federation.connectors[0], "held.csv", b"z\n");
    let agreement = agreed(&federation, "held", source, research_terms(), true).await;
    let (provider, consumer) = (federation.management(0), federation.management(1));
    let id = start_transfer(&consumer, &agreement, json!({"autoComplete": false})).await;
    let held = provider_side(&provider, &id).await;
    let provider_pid = held["@id"].as_str().unwrap().to_owned();
    assert_eq!((held["state"].as_str(), &held["waitingForOperator"]), (Some("REQUESTED"), &json!(true)));
    assert_eq!(held["allowedCalls"], json!(["start", "terminate"]));
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let waiting = consumer.get(&format!("/management/v3/transferprocesses/{id}")).await.body;
    assert_eq!((waiting["state"].as_str(), &waiting["allowedCalls"]), (Some("REQUESTED"), &json!(["terminate"])));

    // Calls that do not fit: 409 with the state and the allowed calls.
    let wrong = provider.post(&format!("/management/v3/transferprocesses/{provider_pid}/complete"), &json!({})).await;
    assert_eq!(wrong.status, 409);
    assert_eq!(
        (wrong.body[0]["state"].as_str(), &wrong.body[0]["allowedCalls"]),
        (Some("REQUESTED"), &json!(["start", "terminate"]))
    );
    let wrong = consumer.post(&format!("/management/v3/transferprocesses/{id}/start"), &json!({})).await;
    assert_eq!(wrong.status, 409);

    // Illegal DSP messages from the consumer: 400 TransferError, state unchanged.
    let base = format!("{}/protocol/2025-1/transfers/{provider_pid}", federation.connectors[0].public_url());
    let pids = json!({"providerPid": provider_pid, "consumerPid": id});
    let signer = &federation.connectors[1];
    for (path, kind) in [
        ("start", "TransferStartMessage"),
        ("completion", "TransferCompletionMessage"),
        ("suspension", "TransferSuspensionMessage"),
    ] {
        let message = dsp_message(kind, pids.clone());
        assert_valid_dsp(&message);
        let answer = dsp_post(&federation.client, &format!("{base}/{path}"), Some(signer), &message).await;
        assert_eq!(answer.status, 400, "{kind} in REQUESTED: {:#}", answer.body);
        assert_eq!(answer.body["@type"], "TransferError");
        assert_valid_dsp(&answer.body);
    }
    // The wrong message type for an endpoint, an unknown process, someone else's process.
    let mismatched = dsp_post(
        &federation.client,
        &format!("{base}/completion"),
        Some(signer),
        &dsp_message("TransferStartMessage", pids.clone()),
    )
    .await;
    assert_eq!(mismatched.status, 400);
    let unknown_url =
        format!("{}/protocol/2025-1/transfers/urn:uuid:unknown/termination", federation.connectors[0].public_url());
    let unknown = dsp_post(
        &federation.client,
        &unknown_url,
        Some(signer),
        &dsp_message("TransferTerminationMessage", pids.clone()),
    )
    .await;
    assert_eq!(unknown.status, 404);
    assert_valid_dsp(&unknown.body);
    let stranger = TestParticipant::start().await;
    let foreign = dsp_post(
        &federation.client,
        &format!("{base}/termination"),
        Some(&stranger),
        &dsp_message("TransferTerminationMessage", pids.clone()),
    )
    .await;
    assert_eq!(foreign.status, 404);
    assert_eq!(
        provider.get(&format!("/management/v3/transferprocesses/{provider_pid}")).await.body["state"],
        "REQUESTED"
    );

    // The operator releases the data.
    let started = provider.post(&format!("/management/v3/transferprocesses/{provider_pid}/start"), &json!({})).await;
    assert_eq!(started.body["state"], "STARTED", "{:#}", started.body);
    wait_for_transfer(&consumer, &id, "STARTED").await;
    // A redelivered request is answered as before, and starts nothing new.
    let address = edr(&consumer, &id).await;
    assert_eq!(pull(&federation.client, &address).send().await.unwrap().text().await.unwrap(), "z\n");
    // Completion from the consumer (autoComplete false: only by hand), then nothing more is accepted.
    let completion = dsp_message("TransferCompletionMessage", json!({"providerPid": provider_pid, "consumerPid": id}));
    let done = dsp_post(&federation.client, &format!("{base}/completion"), Some(signer), &completion).await;
    assert_eq!(done.status, 200, "{:#}", done.body);
    let again = dsp_post(&federation.client, &format!("{base}/completion"), Some(signer), &completion).await;
    assert_eq!(again.status, 200, "a redelivery gets the same answer");
    let late = dsp_post(
        &federation.client,
        &format!("{base}/suspension"),
        Some(signer),
        &dsp_message("TransferSuspensionMessage", pids),
    )
    .await;
    assert_eq!(late.status, 400);
    assert_eq!(
        provider.get(&format!("/management/v3/transferprocesses/{provider_pid}")).await.body["state"],
        "COMPLETED"
    );
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hanse_fetch_resumes_a_partial_download_verifies_it_and_refuses_a_corrupted_one() {
    let federation = Federation::with_hospitals(2).await;
    let data = synthetic(8 * MIB, 3);
    let source = file_source(&federation.connectors[0], "fetch.bin", &data);
    let agreement = agreed(&federation, "fetched", source, research_terms(), false).await;
    let consumer = federation.management(1);
    let dir = tempfile::tempdir().unwrap();
    let options = |name: &str| hanse::fetch::FetchOptions {
        management_url: consumer.base.clone(),
        api_key: consumer.api_key.clone(),
        agreement: agreement.clone(),
        out: dir.path().join(name),
        start_timeout: std::time::Duration::from_secs(30),
        progress: false,
    };

    // An earlier run stopped after 3 MiB: the fetch goes on from there.
    std::fs::write(dir.path().join("cohort.bin.part"), &data[..3 * MIB]).unwrap();
    let report = hanse::fetch::fetch(&options("cohort.bin")).await.expect("fetch");
    assert_eq!((report.bytes, report.sha256.as_str()), (data.len() as u64, sha256_hex(&data).as_str()));
    assert_eq!(std::fs::read(dir.path().join("cohort.bin")).unwrap(), data);
    assert!(!dir.path().join("cohort.bin.part").exists());
    wait_for_transfer(&consumer, &report.transfer_id, "COMPLETED").await;

    // A part that is not the provider's data fails the digest check, and nothing is kept.
    std::fs::write(dir.path().join("bad.bin.part"), vec![0u8; 3 * MIB]).unwrap();
    let error = hanse::fetch::fetch(&options("bad.bin")).await.unwrap_err().to_string();
    assert!(error.contains("does not match the provider's digest"), "{error}");
    assert!(!dir.path().join("bad.bin").exists() && !dir.path().join("bad.bin.part").exists());

    // An unknown agreement is refused before anything is written.
    let mut unknown = options("none.bin");
    unknown.agreement = "urn:uuid:unknown".into();
    let error = hanse::fetch::fetch(&unknown).await.unwrap_err().to_string();
    assert!(error.contains("no agreement"), "{error}");
    federation.shutdown().await;
}
