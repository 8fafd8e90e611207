//! `Idempotency-Key` on the management calls that start something: a retry gets the first answer and never a second
//! negotiation, transfer, EDR negotiation or credential; a key reused for another body is refused; concurrent
//! retries make one resource. Both backends.

use hanse::testing::backends;
use hanse_tests::*;
use serde_json::{Value, json};

/// How many negotiations the consumer holds.
async fn negotiations(api: &Management) -> usize {
    api.post("/management/v3/contractnegotiations/request", &json!({"limit": 10000}))
        .await
        .body
        .as_array()
        .unwrap()
        .len()
}

fn replayed(answer: &Answer) -> bool {
    answer.headers.get("idempotent-replayed").is_some_and(|v| v == "true")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_retried_start_gets_the_first_answer_and_never_a_second_process() {
    for backend in backends() {
        let federation = Federation::start(&[backend, backend]).await;
        let agreement = agreed(
            &federation,
            "cohort",
            json!({"type": "HttpData", "baseUrl": "https://ehr.example/x"}),
            research_terms(),
            false,
        )
        .await;
        let consumer = federation.management(1);
        let before = negotiations(&consumer).await;
        let offer = catalogue_offer(&consumer, &federation.connectors[0], "cohort").await;
        let request = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "ContractRequest",
            "counterPartyAddress": format!("{}/protocol/2025-1", federation.connectors[0].public_url()),
            "protocol": "dataspace-protocol-http:2025-1", "policy": offer, "purpose": RESEARCH});

        // Negotiations: the retry is the first answer, marked as a replay; one negotiation.
        let first = consumer.post_keyed("/management/v3/contractnegotiations", "negotiation-1", &request).await;
        assert_eq!(first.status, 200, "{backend:?}: {:#}", first.body);
        assert!(!replayed(&first));
        let again = consumer.post_keyed("/management/v3/contractnegotiations", "negotiation-1", &request).await;
        assert_eq!((again.status, &again.body), (200, &first.body), "{backend:?}");
        assert!(replayed(&again), "{backend:?}: {:?}", again.headers);
        assert_eq!(negotiations(&consumer).await, before + 1, "{backend:?}");
        // The same key under v4 is another call: a key names one call, not every call.
        let v4 = consumer.post_keyed("/management/v4/contractnegotiations", "negotiation-1", &request).await;
        assert_eq!(v4.status, 200, "{backend:?}: {:#}", v4.body);
        assert_ne!(v4.body["@id"], first.body["@id"]);

        // Another body under a used key: refused, nothing made.
        let mut other = request.clone();
        other["purpose"] = json!("DUO:0000042");
        let refused = consumer.post_keyed("/management/v3/contractnegotiations", "negotiation-1", &other).await;
        assert_eq!(refused.status, 422, "{backend:?}: {:#}", refused.body);
        assert_eq!(refused.body[0]["path"], "Idempotency-Key");
        for key in ["", &"k".repeat(256), "two words"] {
            let invalid = consumer.post_keyed("/management/v3/contractnegotiations", key, &request).await;
            assert_eq!(invalid.status, 400, "{backend:?}: key {key:?}: {:#}", invalid.body);
        }
        assert_eq!(negotiations(&consumer).await, before + 2, "{backend:?}");

        // Eight concurrent calls with one key: one negotiation; each answer is it, or "still being answered".
        let calls: Vec<_> = (0..8)
            .map(|_| {
                let (consumer, request) = (consumer.clone(), request.clone());
                tokio::spawn(async move {
                    consumer.post_keyed("/management/v3/contractnegotiations", "together", &request).await
                })
            })
            .collect();
        let mut ids = Vec::new();
        for call in calls {
            let answer = call.await.unwrap();
            match answer.status {
                200 => ids.push(answer.body["@id"].as_str().unwrap().to_owned()),
                409 => assert!(answer.headers.contains_key("retry-after"), "{backend:?}: {:#}", answer.body),
                other => panic!("{backend:?}: {other} {:#}", answer.body),
            }
        }
        ids.dedup();
        assert_eq!(ids.len(), 1, "{backend:?}: {ids:?}");
        assert_eq!(negotiations(&consumer).await, before + 3, "{backend:?}");

        // A first answer that never left (the connector stopped between the commit and the answer): rebuilt from
        // the negotiation the key made.
        let kept = consumer.post_keyed("/management/v3/contractnegotiations", "lost-answer", &request).await;
        federation.connectors[1]
            .database
            .execute("UPDATE idempotency_keys SET status = NULL, answer = NULL, created_at = created_at - 60000 WHERE key = 'lost-answer'")
            .await;
        let rebuilt = consumer.post_keyed("/management/v3/contractnegotiations", "lost-answer", &request).await;
        assert_eq!((rebuilt.status, &rebuilt.body["@id"]), (200, &kept.body["@id"]), "{backend:?}: {:#}", rebuilt.body);
        assert!(replayed(&rebuilt));
        assert_eq!(negotiations(&consumer).await, before + 4, "{backend:?}");

        // Transfers and EDRs: one process per key.
        let transfer = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "TransferRequest",
            "contractId": agreement, "transferType": "HttpData-PULL", "protocol": "dataspace-protocol-http:2025-1"});
        let transfers = async || {
            consumer
                .post("/management/v3/transferprocesses/request", &json!({"limit": 10000}))
                .await
                .body
                .as_array()
                .unwrap()
                .len()
        };
        let transfers_before = transfers().await;
        let first = consumer.post_keyed("/management/v3/transferprocesses", "transfer-1", &transfer).await;
        assert_eq!(first.status, 200, "{backend:?}: {:#}", first.body);
        let again = consumer.post_keyed("/management/v3/transferprocesses", "transfer-1", &transfer).await;
        assert_eq!(again.body, first.body, "{backend:?}");
        assert_eq!(transfers().await, transfers_before + 1, "{backend:?}");
        let first = consumer.post_keyed("/management/v3/edrs", "edr-1", &request).await;
        assert_eq!(first.status, 200, "{backend:?}: {:#}", first.body);
        let again = consumer.post_keyed("/management/v3/edrs", "edr-1", &request).await;
        assert_eq!(again.body, first.body, "{backend:?}");
        assert_eq!(negotiations(&consumer).await, before + 5, "{backend:?}");

        // Credentials: the retry is the same signed credential, and one is issued.
        let provider = federation.management(0);
        let issue = json!({"type": "MembershipCredential", "subject": federation.connectors[1].participant_id(),
                           "claims": {"membership": "active"}});
        let first = provider.post_keyed("/management/v3/credentials/issue", "credential-1", &issue).await;
        assert_eq!(first.status, 200, "{backend:?}: {:#}", first.body);
        let again = provider.post_keyed("/management/v3/credentials/issue", "credential-1", &issue).await;
        assert_eq!(again.body["credential"], first.body["credential"], "{backend:?}");
        let issued: Vec<Value> =
            provider.get("/management/v3/credentials/issued").await.body.as_array().unwrap().clone();
        assert_eq!(issued.len(), 1, "{backend:?}: {issued:#?}");
        federation.shutdown().await;
    }
}
