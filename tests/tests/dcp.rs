//! DCP 1.0 conformance, case by case as the DCP TCK checks a credential service and a verifier: Hanse as holder
//! answers presentation queries only with an access token it minted for the verifier asking, and only with what that
//! token grants; the query rules (both scope aliases, empty scope, scope with presentationDefinition,
//! presentationDefinition alone); self-issued tokens signed with a `capabilityInvocation` key only; the Storage API;
//! and Hanse as verifier forwarding the holder's access token. Every message is checked against the official DCP
//! schemas.

use std::sync::{Arc, Mutex};

use hanse::identity::access;
use hanse::identity::jose;
use hanse::testing::{Backend, backends};
use hanse_tests::*;
use hanse_vocab::schema::DcpSchemas;
use serde_json::{Value, json};

const DCP_CONTEXT: &str = "https://w3id.org/dspace-dcp/v1.0/dcp.jsonld";

/// What a test participant's server received: path, `Authorization` and body of each request.
type Seen = Arc<Mutex<Vec<(String, String, Value)>>>;

/// A participant that records every request and answers credential queries with an empty presentation.
async fn recording_participant(edit: fn(&mut Value)) -> (TestParticipant, Seen) {
    let seen: Seen = Arc::default();
    let sink = seen.clone();
    let app =
        axum::Router::new().fallback(move |uri: axum::http::Uri, headers: axum::http::HeaderMap, body: String| {
            let sink = sink.clone();
            async move {
                let authorization =
                    headers.get("authorization").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
                let body = serde_json::from_str(&body).unwrap_or(Value::Null);
                sink.lock().unwrap().push((uri.path().to_owned(), authorization, body));
                axum::Json(
                    json!({"@context": [DCP_CONTEXT], "type": "PresentationResponseMessage", "presentation": []}),
                )
            }
        });
    (TestParticipant::serving_document(app, edit).await, seen)
}

/// The claims of a JWT (unchecked).
fn claims(jwt: &str) -> serde_json::Map<String, Value> {
    jose::peek(jwt.trim_start_matches("Bearer ")).unwrap().1
}

/// A presentation query to `holder` with `authorization` and `body`; answers status and body.
async fn query(holder: &TestConnector, authorization: &str, body: &Value) -> Answer {
    post_authorized(&format!("{}/dcp/v1/presentations/query", holder.public_url()), authorization, body).await
}

fn by_type(kind: &str) -> Value {
    json!({"@context": [DCP_CONTEXT], "type": "PresentationQueryMessage", "scope": [format!("org.eclipse.dspace.dcp.vc.type:{kind}")]})
}

/// The credential types in a presentation response's presentations (each a VP JWT enveloping VC JWTs).
fn presented_types(answer: &Value) -> Vec<String> {
    let mut types = Vec::new();
    for vp in answer["presentation"].as_array().unwrap() {
        for vc in claims(vp.as_str().unwrap())["verifiableCredential"].as_array().unwrap() {
            let jwt = vc["id"].as_str().unwrap().trim_start_matches("data:application/vc+jwt,");
            for kind in claims(jwt)["type"].as_array().unwrap() {
                if kind != "VerifiableCredential" {
                    types.push(kind.as_str().unwrap().to_owned());
                }
            }
        }
    }
    types
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_credential_service_answers_only_what_the_holder_granted_the_verifier_asking() {
    let backend = backends()[0];
    let issuer = TestConnector::start(backend).await;
    // The holder shares its membership with the participants it talks to, not its role.
    let holder = TestConnector::start_with(backend, |config| {
        config.participant.share_credentials = Some(vec!["MembershipCredential".into()]);
    })
    .await;
    let (membership, jwt) =
        issue_membership(&issuer, holder.participant_id(), json!({"membership": "active", "internal": "private"}))
            .await;
    import(&holder, &jwt).await;
    let role = management_of(&issuer)
        .post(
            "/management/v3/credentials/issue",
            &json!({"type": "RoleCredential", "subject": holder.participant_id(), "claims": {"role": "researcher"}}),
        )
        .await;
    import(&holder, role.body["credential"].as_str().unwrap()).await;

    // The holder talks to the verifier (a catalogue request): its token carries an access token for it.
    let (verifier, seen) = recording_participant(|_| {}).await;
    let (stranger, _) = recording_participant(|_| {}).await;
    management_of(&holder)
        .post(
            "/management/v3/catalog/request",
            &json!({"counterPartyAddress": format!("{}/protocol/2025-1", verifier.url), "counterPartyId": verifier.did,
                    "protocol": "dataspace-protocol-http:2025-1"}),
        )
        .await;
    let sent = seen.lock().unwrap().iter().find(|(path, _, _)| path.ends_with("/catalog/request")).cloned();
    let (_, authorization, _) = sent.expect("the holder sent the verifier a catalogue request");
    let granted =
        claims(&authorization)["token"].as_str().expect("the holder's token carries an access token").to_owned();
    let grant = claims(&granted);
    assert_eq!((&grant["iss"], &grant["aud"]), (&json!(holder.participant_id()), &json!(verifier.did)));
    assert_eq!(grant["scope"], "org.eclipse.dspace.dcp.vc.type:MembershipCredential", "only the shared type");
    let holder_did = holder.participant_id().to_owned();
    let with_token = |who: &TestParticipant, token: Option<&str>| {
        let token = token.map_or(Value::Null, |t| json!(t));
        format!("Bearer {}", who.token_with(&holder_did, json!({"token": token}), json!({})))
    };

    // Granted and asked: the membership, in a presentation to the verifier; valid by the official schema.
    let answer = query(&holder, &with_token(&verifier, Some(&granted)), &by_type("MembershipCredential")).await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    DcpSchemas::get().validate(&answer.body).unwrap_or_else(|e| panic!("{e:?}: {:#}", answer.body));
    assert_eq!(presented_types(&answer.body), ["MembershipCredential"]);
    assert_eq!(claims(answer.body["presentation"][0].as_str().unwrap())["aud"], verifier.did.as_str());
    // By id (the second scope alias).
    let by_id = json!({"@context": [DCP_CONTEXT], "type": "PresentationQueryMessage",
                       "scope": [format!("org.eclipse.dspace.dcp.vc.id:{membership}")]});
    let answer = query(&holder, &with_token(&verifier, Some(&granted)), &by_id).await;
    assert_eq!((answer.status, presented_types(&answer.body)), (200, vec!["MembershipCredential".to_owned()]));
    // Asked but not granted: a 2xx with fewer presentations, as DCP says.
    let answer = query(&holder, &with_token(&verifier, Some(&granted)), &by_type("RoleCredential")).await;
    assert_eq!(answer.status, 200, "{:#}", answer.body);
    DcpSchemas::get().validate(&answer.body).unwrap();
    assert!(presented_types(&answer.body).is_empty(), "{:#}", answer.body);

    // No access token, a forged one, another participant's, an expired one: nothing.
    let answer = query(&holder, &with_token(&stranger, None), &by_type("MembershipCredential")).await;
    assert_eq!(answer.status, 401, "a valid self-issued token alone gets nothing: {:#}", answer.body);
    assert!(!answer.body.to_string().contains("private"));
    let now = chrono::Utc::now().timestamp();
    let forged = stranger.sign(
        access::TYP,
        &json!({"iss": holder_did, "sub": holder_did, "aud": stranger.did, "exp": now + 300,
                "scope": "org.eclipse.dspace.dcp.vc.type:MembershipCredential"}),
    );
    let answer = query(&holder, &with_token(&stranger, Some(&forged)), &by_type("MembershipCredential")).await;
    assert_eq!(answer.status, 401, "{:#}", answer.body);
    let answer = query(&holder, &with_token(&stranger, Some(&granted)), &by_type("MembershipCredential")).await;
    assert_eq!(answer.status, 403, "the verifier's token forwarded by another: {:#}", answer.body);
    let keys = hanse::identity::keys::KeyRing::load(&holder_did, &holder.config.participant.key_file).unwrap();
    let expired = access::mint(
        &keys,
        &verifier.did,
        &["org.eclipse.dspace.dcp.vc.type:MembershipCredential".into()],
        chrono::Utc::now() - chrono::Duration::minutes(10),
    );
    let answer = query(&holder, &with_token(&verifier, Some(&expired)), &by_type("MembershipCredential")).await;
    assert_eq!(answer.status, 401, "{:#}", answer.body);
    assert_eq!(query(&holder, "Bearer not-a-token", &by_type("MembershipCredential")).await.status, 401);

    // The query rules.
    let definition = json!({"id": "pd", "input_descriptors": [{"id": "membership", "constraints": {"fields": [{"path": ["$.type"]}]}}]});
    for (body, status) in [
        (json!({"@context": [DCP_CONTEXT], "type": "PresentationQueryMessage", "scope": []}), 400),
        (
            json!({"@context": [DCP_CONTEXT], "type": "PresentationQueryMessage",
                "scope": ["org.eclipse.dspace.dcp.vc.type:MembershipCredential"], "presentationDefinition": definition}),
            400,
        ),
        (
            json!({"@context": [DCP_CONTEXT], "type": "PresentationQueryMessage", "presentationDefinition": definition}),
            501,
        ),
        (json!({"@context": [DCP_CONTEXT], "type": "PresentationQueryMessage"}), 400),
        (json!({"@context": [DCP_CONTEXT], "type": "PresentationQueryMessage", "scope": [7]}), 400),
        (json!({"@context": [DCP_CONTEXT], "type": "CatalogRequestMessage", "scope": ["x:y"]}), 400),
    ] {
        let answer = query(&holder, &with_token(&verifier, Some(&granted)), &body).await;
        assert_eq!(answer.status, status, "{body}: {:#}", answer.body);
    }
    for connector in [issuer, holder] {
        connector.running.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn self_issued_tokens_are_signed_with_a_capability_invocation_key() {
    let provider = TestConnector::start(backends()[0]).await;
    management_of(&provider)
        .create("/management/v3/assets", health_asset(OPEN_DATASET, "Diabetes summary", &["diabetes"], 40))
        .await;
    let catalog = |who: &TestParticipant, header: Value| {
        let token = who.token_with(provider.participant_id(), json!({}), header);
        let url = format!("{}/protocol/2025-1/catalog/request", provider.public_url());
        async move { post_authorized(&url, &format!("Bearer {token}"), &catalog_request(json!([]))).await.status }
    };
    // Hanse's own document lists its keys under capabilityInvocation.
    let document: Value =
        reqwest::get(format!("{}/.well-known/did.json", provider.public_url())).await.unwrap().json().await.unwrap();
    assert_eq!(document["capabilityInvocation"], document["authentication"], "{document:#}");
    let (listed, _) = recording_participant(|_| {}).await;
    assert_eq!(catalog(&listed, json!({})).await, 200);
    // Without a kid, the document's only method serves when it has the relationship.
    assert_eq!(catalog(&listed, json!({"kid": null})).await, 200);
    // A key listed for authentication but not for capabilityInvocation signs no token.
    let (unlisted, _) = recording_participant(|document| {
        document.as_object_mut().unwrap().remove("capabilityInvocation");
    })
    .await;
    assert_eq!(catalog(&unlisted, json!({})).await, 401);
    assert_eq!(catalog(&unlisted, json!({"kid": null})).await, 401);
    provider.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_issuer_delivers_credentials_through_the_storage_api_and_strangers_cannot() {
    for backend in backends() {
        let issuer = TestConnector::start(backend).await;
        let issuer_did = issuer.participant_id().to_owned();
        let holder = TestConnector::start_with(backend, move |config| {
            config.trust.issuers.insert("MembershipCredential".into(), vec![issuer_did]);
        })
        .await;
        let issue = |subject: &str| json!({"type": "MembershipCredential", "subject": subject, "claims": {"membership": "active"}, "deliver": true});
        let issued =
            management_of(&issuer).post("/management/v3/credentials/issue", &issue(holder.participant_id())).await;
        assert_eq!((issued.status, &issued.body["delivered"]), (200, &json!(true)), "{backend:?}: {:#}", issued.body);
        let held = management_of(&holder).get("/management/v3/credentials").await;
        assert_eq!(held.body[0]["@id"], issued.body["@id"], "{backend:?}: {:#}", held.body);

        // What the issuer sends is a CredentialMessage by the official schema, with its token for the holder.
        let (recorder, seen) = recording_participant(|_| {}).await;
        let issued = management_of(&issuer).post("/management/v3/credentials/issue", &issue(&recorder.did)).await;
        assert_eq!(issued.body["delivered"], true, "{:#}", issued.body);
        let (path, authorization, message) = seen.lock().unwrap()[0].clone();
        assert_eq!(path, "/dcp/v1/credentials");
        DcpSchemas::get().validate(&message).unwrap_or_else(|e| panic!("{e:?}: {message:#}"));
        assert_eq!(claims(&authorization)["aud"], recorder.did.as_str());

        // An issuer the holder does not trust, a sender delivering another's credential, no token: refused.
        let stranger = TestConnector::start(backend).await;
        let refused =
            management_of(&stranger).post("/management/v3/credentials/issue", &issue(holder.participant_id())).await;
        assert_eq!(refused.body["delivered"], false, "{:#}", refused.body);
        assert!(refused.body["deliveryError"].as_str().unwrap().contains("403"), "{:#}", refused.body);
        let jwt = issued.body["credential"].as_str().unwrap();
        let message = json!({"@context": [DCP_CONTEXT], "type": "CredentialMessage", "issuerPid": "x", "status": "ISSUED",
                             "credentials": [{"credentialType": "MembershipCredential", "payload": jwt, "format": "jwt"}]});
        let url = format!("{}/dcp/v1/credentials", holder.public_url());
        let client = reqwest::Client::new();
        let relayed = client
            .post(&url)
            .header(
                "Authorization",
                format!("Bearer {}", recorder.token_with(holder.participant_id(), json!({}), json!({}))),
            )
            .json(&message)
            .send()
            .await
            .unwrap();
        assert_eq!(relayed.status(), 403, "{backend:?}");
        assert_eq!(client.post(&url).json(&message).send().await.unwrap().status(), 401);
        assert_eq!(management_of(&holder).get("/management/v3/credentials").await.body.as_array().unwrap().len(), 1);
        for connector in [issuer, holder, stranger] {
            connector.running.shutdown().await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_verifier_forwards_the_holder_s_access_token_in_its_presentation_query() {
    let backend: Backend = *backends().last().unwrap();
    let (holder, seen) = recording_participant(|_| {}).await;
    let provider = provider_trusting(backend, "did:web:issuer.example").await;
    // The holder asks for the catalogue with an access token of its own making in its token.
    let token = holder.token_with(provider.participant_id(), json!({"token": "opaque-access-token-1"}), json!({}));
    let answer = reqwest::Client::new()
        .post(format!("{}/protocol/2025-1/catalog/request", provider.public_url()))
        .header("Authorization", format!("Bearer {token}"))
        .json(&catalog_request(json!([])))
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let queries: Vec<_> =
        seen.lock().unwrap().iter().filter(|(path, _, _)| path == "/dcp/v1/presentations/query").cloned().collect();
    let (_, authorization, body) = queries.first().cloned().expect("the provider asked the holder for credentials");
    DcpSchemas::get().validate(&body).unwrap_or_else(|e| panic!("{e:?}: {body:#}"));
    assert_eq!(body["scope"], json!(["org.eclipse.dspace.dcp.vc.type:MembershipCredential:read"]));
    let ours = claims(&authorization);
    assert_eq!((&ours["iss"], &ours["aud"]), (&json!(provider.participant_id()), &json!(holder.did)));
    assert_eq!(ours["token"], "opaque-access-token-1", "the holder's access token travels in the token claim");
    provider.running.shutdown().await;
}
