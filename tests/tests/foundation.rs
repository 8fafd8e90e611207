//! A federation of real connectors comes up, each ready on both listeners, each guarding its management API.

use hanse_tests::Federation;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_hospitals_come_up_ready_on_both_listeners() {
    let federation = Federation::with_hospitals(3).await;
    let mut participants = std::collections::HashSet::new();
    for connector in &federation.connectors {
        for base in [connector.public_url(), connector.management_url()] {
            let response = federation.client.get(format!("{base}/health/ready")).send().await.unwrap();
            assert_eq!(response.status(), 200, "{base}");
            let ready: serde_json::Value = response.json().await.unwrap();
            for component in ["store", "catalogue", "audit"] {
                assert_eq!(ready["components"][component]["status"], "up", "{base}: {ready}");
            }
        }
        let about: serde_json::Value = federation
            .client
            .get(format!("{}/management/connector", connector.management_url()))
            .header("X-Api-Key", &connector.api_key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert!(participants.insert(about["participantId"].as_str().unwrap().to_owned()), "identities are distinct");
    }
    if hanse::testing::backends().len() == 2 {
        let stores: Vec<_> =
            federation.connectors.iter().map(|c| c.running.state.store.dialect().to_string()).collect();
        assert!(stores.contains(&"sqlite".into()) && stores.contains(&"postgres".into()), "{stores:?}");
    }
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_hospitals_api_key_does_not_open_another_hospitals_management() {
    let federation = Federation::with_hospitals(2).await;
    let (a, b) = (&federation.connectors[0], &federation.connectors[1]);
    let url = format!("{}/management/connector", b.management_url());
    let with_a_key = federation.client.get(&url).header("X-Api-Key", &a.api_key).send().await.unwrap();
    assert_eq!(with_a_key.status(), 401);
    let body: serde_json::Value = with_a_key.json().await.unwrap();
    assert_eq!(body[0]["type"], "AuthenticationFailed");
    let without = federation.client.get(&url).send().await.unwrap();
    assert_eq!(without.status(), 401);
    federation.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_response_carries_a_request_id_and_echoes_the_callers() {
    let federation = Federation::with_hospitals(1).await;
    let connector = &federation.connectors[0];
    let generated = federation.client.get(format!("{}/health/live", connector.public_url())).send().await.unwrap();
    assert!(generated.headers().get("x-request-id").is_some());
    let echoed = federation
        .client
        .get(format!("{}/health/live", connector.public_url()))
        .header("x-request-id", "trace-me-42")
        .send()
        .await
        .unwrap();
    assert_eq!(echoed.headers()["x-request-id"], "trace-me-42");
    federation.shutdown().await;
}
