//! Identity and trust across real connectors: did:web documents, signed self-issued tokens, membership credentials
//! from an issuer with a revocation list, and TLS / mutual TLS with a development CA.
//!
//! Every refusal is checked from the outside: the caller gets 401 (catalogue) or 404 (negotiation) with a generic
//! body, never the reason.

use hanse::config::Config;
use hanse::testing::{Backend, TestCa, backends};
use hanse_tests::*;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_sees_and_negotiates_the_members_dataset_until_its_credential_is_revoked() {
    let all = backends();
    let issuer = TestConnector::start(all[0]).await;
    let provider = provider_trusting(*all.last().unwrap(), issuer.participant_id()).await;
    let member = TestConnector::start(all[0]).await;
    let stranger = TestConnector::start(*all.last().unwrap()).await;

    // The DID documents name keys and services.
    let document: Value =
        reqwest::get(format!("{}/.well-known/did.json", member.public_url())).await.unwrap().json().await.unwrap();
    assert_eq!(document["id"], member.participant_id());
    assert_eq!(document["verificationMethod"][0]["type"], "JsonWebKey");
    assert_eq!(document["verificationMethod"][0]["publicKeyJwk"]["crv"], "P-256");
    assert!(document["verificationMethod"][0]["publicKeyJwk"].get("d").is_none(), "never the private key");
    let services: Vec<&str> =
        document["service"].as_array().unwrap().iter().map(|s| s["type"].as_str().unwrap()).collect();
    for service in ["DataService", "CatalogService", "CredentialService"] {
        assert!(services.contains(&service), "{service} in {services:?}");
    }

    let (credential_id, jwt) =
        issue_membership(&issuer, member.participant_id(), json!({"membership": "active", "country": "DE"})).await;
    import(&member, &jwt).await;
    // The stranger holds a credential too, but from an issuer the provider does not trust (itself).
    let (_, self_issued) =
        issue_membership(&stranger, stranger.participant_id(), json!({"membership": "active"})).await;
    import(&stranger, &self_issued).await;

    assert_eq!(visible(&member, &provider).await, [OPEN_DATASET, MEMBERS_DATASET]);
    assert_eq!(visible(&stranger, &provider).await, [OPEN_DATASET]);

    // The member negotiates the members' dataset to the end.
    let member_api = management_of(&member);
    let offer = catalogue_offer(&member_api, &provider, MEMBERS_DATASET).await;
    let id = negotiate(&member_api, &provider, offer.clone(), json!({})).await;
    wait_for_negotiation(&member_api, &id, "FINALIZED").await;

    // The stranger, with the member's offer in hand, is refused: to it the offer does not exist.
    let stranger_api = management_of(&stranger);
    let refused = negotiate(&stranger_api, &provider, offer, json!({})).await;
    let ended = wait_for_negotiation(&stranger_api, &refused, "TERMINATED").await;
    assert!(!ended.to_string().contains("membership"), "the reason does not leak: {ended:#}");

    // Revocation: the issuer flips the bit; the next catalogue request no longer shows the dataset.
    let revoked = management_of(&issuer)
        .post(&format!("/management/v3/credentials/issued/{credential_id}/revoke"), &json!({}))
        .await;
    assert_eq!(revoked.status, 200, "{:#}", revoked.body);
    assert_eq!(revoked.body["revoked"], true);
    assert_eq!(visible(&member, &provider).await, [OPEN_DATASET]);
    // The issuer's log holds the issue and the revocation, each under the key that asked for it.
    let logged = management_of(&issuer).get("/management/v3/audit/entries?type=credential.issue").await;
    let issued: Vec<&Value> = logged.body.as_array().unwrap().iter().map(|e| &e["entry"]).collect();
    let ours = issued.iter().find(|e| e["credential"] == credential_id.as_str()).expect("the issue is logged");
    assert_eq!((&ours["participant"], &ours["who"]["kind"]), (&json!(member.participant_id()), &json!("api-key")));
    let logged = management_of(&issuer).get("/management/v3/audit/entries?type=credential.revoke").await;
    assert_eq!(logged.body.as_array().unwrap().len(), 1, "{:#}", logged.body);
    assert_eq!(logged.body[0]["entry"]["credential"], credential_id.as_str());
    let again = management_of(&issuer)
        .post(&format!("/management/v3/credentials/issued/{credential_id}/revoke"), &json!({}))
        .await;
    assert_eq!(again.status, 200, "revoking again is idempotent");
    let logged = management_of(&issuer).get("/management/v3/audit/entries?type=credential.revoke").await;
    assert_eq!(logged.body.as_array().unwrap().len(), 1, "and logged once: {:#}", logged.body);

    for connector in [issuer, provider, member, stranger] {
        connector.running.shutdown().await;
    }
}

// ---- Tokens: every defect is refused, and the caller never learns which ----

/// A provider with an open dataset, and a participant that asks it.
async fn provider_and_participant(backend: Backend) -> (TestConnector, TestParticipant) {
    let provider = TestConnector::start(backend).await;
    let api = management_of(&provider);
    api.create("/management/v3/assets", health_asset(OPEN_DATASET, "Diabetes summary", &["diabetes"], 40)).await;
    api.create("/management/v3/policydefinitions", policy_definition("open", open_policy())).await;
    api.create("/management/v3/contractdefinitions", contract_definition("public", "open", "open", &[OPEN_DATASET]))
        .await;
    (provider, TestParticipant::start().await)
}

/// Sends a catalogue request with `authorization` (or none) and answers status and body.
async fn catalogue_with(provider: &TestConnector, authorization: Option<String>) -> Answer {
    let client = reqwest::Client::new();
    let mut request = client
        .post(format!("{}/protocol/2025-1/catalog/request", provider.public_url()))
        .json(&catalog_request(json!([])));
    if let Some(authorization) = authorization {
        request = request.header("Authorization", authorization);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    Answer { status, headers: response.headers().clone(), body: response.json().await.unwrap_or(Value::Null) }
}

/// The token is refused: 401 on the catalogue and 404 on negotiations, with generic bodies only.
async fn assert_refused(
    provider: &TestConnector,
    authorization: Option<String>,
    negotiation_authorization: Option<String>,
) {
    let answer = catalogue_with(provider, authorization).await;
    assert_eq!(answer.status, 401, "{:#}", answer.body);
    assert_valid_dsp(&answer.body);
    assert_eq!(answer.body["code"], "Unauthorized");
    assert_eq!(answer.body["reason"], json!(["the request is not authorized"]), "no reason leaks");
    let client = reqwest::Client::new();
    let mut request = client.get(format!("{}/protocol/2025-1/negotiations/urn:uuid:any", provider.public_url()));
    if let Some(authorization) = negotiation_authorization {
        request = request.header("Authorization", authorization);
    }
    let response = request.send().await.unwrap();
    assert_eq!(response.status().as_u16(), 404);
    let body: Value = response.json().await.unwrap();
    assert_valid_dsp(&body);
}

/// Runs one defective-token case: `make` builds the token from the participant and the provider's DID.
async fn token_case(make: impl Fn(&TestParticipant, &str) -> String) {
    let (provider, participant) = provider_and_participant(Backend::Sqlite).await;
    let audience = provider.participant_id().to_owned();
    // The same participant with a good token is let in: the refusal is about the defect alone.
    assert_eq!(catalogue_with(&provider, Some(participant.authorization(&audience))).await.status, 200);
    let bearer = |token: String| Some(format!("Bearer {token}"));
    assert_refused(&provider, bearer(make(&participant, &audience)), bearer(make(&participant, &audience))).await;
    provider.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_without_a_token_is_refused() {
    let (provider, _) = provider_and_participant(Backend::Sqlite).await;
    assert_refused(&provider, None, None).await;
    assert_refused(&provider, Some(provider.participant_id().to_owned()), Some("Basic abc".into())).await;
    provider.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_token_is_refused() {
    token_case(|_, _| "not.a.jwt".into()).await;
    token_case(|participant, _| participant.did.clone()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_with_a_wrong_signature_is_refused() {
    let other = TestParticipant::start().await;
    token_case(move |participant, audience| {
        let token = participant.token_with(audience, json!({}), json!({}));
        let forged = other.token_with(audience, json!({}), json!({}));
        let (head, _) = token.rsplit_once('.').unwrap();
        format!("{head}.{}", forged.rsplit_once('.').unwrap().1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_signed_with_a_key_not_in_the_did_document_is_refused() {
    token_case(|participant, audience| {
        participant.token_with(audience, json!({}), json!({"kid": format!("{}#not-listed", participant.did)}))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_is_refused() {
    let now = chrono::Utc::now().timestamp();
    token_case(move |participant, audience| {
        participant.token_with(audience, json!({"iat": now - 400, "nbf": now - 400, "exp": now - 100}), json!({}))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_not_yet_valid_is_refused() {
    let now = chrono::Utc::now().timestamp();
    token_case(move |participant, audience| {
        participant.token_with(audience, json!({"iat": now + 120, "nbf": now + 120, "exp": now + 300}), json!({}))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_living_longer_than_five_minutes_is_refused() {
    let now = chrono::Utc::now().timestamp();
    token_case(move |participant, audience| {
        participant.token_with(audience, json!({"iat": now, "exp": now + 3600}), json!({}))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_for_another_audience_is_refused() {
    token_case(|participant, _| participant.token_with("did:web:someone-else.example", json!({}), json!({}))).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_whose_issuer_is_not_its_subject_is_refused() {
    token_case(|participant, audience| {
        participant.token_with(audience, json!({"sub": "did:web:victim.example"}), json!({}))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_from_a_did_that_does_not_resolve_is_refused() {
    // Nothing listens on port 9: the DID document cannot be fetched.
    let ghost = "did:web:localhost%3A9";
    token_case(move |participant, audience| {
        participant.token_with(audience, json!({"iss": ghost, "sub": ghost}), json!({"kid": format!("{ghost}#key")}))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_token_is_refused_even_after_a_restart() {
    for backend in backends() {
        let (provider, participant) = provider_and_participant(backend).await;
        let token = participant.authorization(provider.participant_id());
        assert_eq!(catalogue_with(&provider, Some(token.clone())).await.status, 200, "{backend:?}");
        assert_refused(&provider, Some(token.clone()), Some(token.clone())).await;
        // The replay cache is in the store, not in memory.
        let provider = provider.restart().await;
        assert_eq!(catalogue_with(&provider, Some(token)).await.status, 401, "{backend:?}");
        provider.running.shutdown().await;
    }
}

/// A DSP message posted to the provider's `path` with `authorization` as it is.
async fn dsp_with(provider: &TestConnector, path: &str, authorization: &str, body: &Value) -> Answer {
    post_authorized(&format!("{}/protocol/2025-1{path}", provider.public_url()), authorization, body).await
}

/// The token of a negotiation message is recorded in the transaction of the change the message makes: a replay of it
/// carrying another message, or the same one, changes nothing and is told 404. A token spent on a refused message
/// is spent too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_that_carried_a_negotiation_message_carries_no_other() {
    for backend in backends() {
        let (provider, participant) = provider_and_participant(backend).await;
        let api = management_of(&provider);
        let catalog = catalogue_with(&provider, Some(participant.authorization(provider.participant_id()))).await;
        let mut offer = catalog.body["dataset"][0]["hasPolicy"][0].clone();
        offer["target"] = json!(OPEN_DATASET);
        let request = |consumer_pid: &str| {
            dsp_message(
                "ContractRequestMessage",
                json!({"consumerPid": consumer_pid, "offer": offer, "callbackAddress": format!("{}/protocol/2025-1", participant.url)}),
            )
        };
        let negotiations = async || api.post("/management/v3/contractnegotiations/request", &json!({})).await.body;

        let token = participant.authorization(provider.participant_id());
        let created = dsp_with(&provider, "/negotiations/request", &token, &request("urn:uuid:c1")).await;
        assert_eq!(created.status, 201, "{backend:?}: {:#}", created.body);
        let replayed = dsp_with(&provider, "/negotiations/request", &token, &request("urn:uuid:c2")).await;
        assert_eq!(replayed.status, 404, "{backend:?}: {:#}", replayed.body);
        assert_valid_dsp(&replayed.body);
        let same_again = dsp_with(&provider, "/negotiations/request", &token, &request("urn:uuid:c1")).await;
        assert_eq!(same_again.status, 404, "{backend:?}: a replay is not a redelivery");
        assert_eq!(negotiations().await.as_array().unwrap().len(), 1, "{backend:?}");
        // A redelivery with a fresh token gets the first answer.
        let fresh = participant.authorization(provider.participant_id());
        let redelivered = dsp_with(&provider, "/negotiations/request", &fresh, &request("urn:uuid:c1")).await;
        assert_eq!((redelivered.status, &redelivered.body), (201, &created.body), "{backend:?}");

        // A token spent on a message that was refused cannot carry a legal one.
        let provider_pid = created.body["providerPid"].as_str().unwrap();
        let termination = dsp_message(
            "ContractNegotiationTerminationMessage",
            json!({"providerPid": provider_pid, "consumerPid": "urn:uuid:c1", "code": "withdrawn"}),
        );
        let spent = participant.authorization(provider.participant_id());
        let path = format!("/negotiations/{provider_pid}/termination");
        let wrong = dsp_with(&provider, &path, &spent, &request("urn:uuid:c1")).await;
        assert_eq!(wrong.status, 400, "{backend:?}: {:#}", wrong.body);
        assert_eq!(dsp_with(&provider, &path, &spent, &termination).await.status, 404, "{backend:?}");
        let state = api.get(&format!("/management/v3/contractnegotiations/{provider_pid}")).await.body["state"].clone();
        assert_ne!(state, "TERMINATED", "{backend:?}");
        let fresh = participant.authorization(provider.participant_id());
        assert_eq!(dsp_with(&provider, &path, &fresh, &termination).await.status, 200, "{backend:?}");
        let state = api.get(&format!("/management/v3/contractnegotiations/{provider_pid}")).await.body["state"].clone();
        assert_eq!(state, "TERMINATED", "{backend:?}");
        provider.running.shutdown().await;
    }
}

// ---- Credentials: only a valid membership from a trusted issuer opens the members' dataset ----

/// An issuer, a provider trusting it, and a holder without credentials.
async fn credential_world() -> (TestConnector, TestConnector, TestConnector) {
    let all = backends();
    let issuer = TestConnector::start(all[0]).await;
    let provider = provider_trusting(*all.last().unwrap(), issuer.participant_id()).await;
    let holder = TestConnector::start(all[0]).await;
    (issuer, provider, holder)
}

/// The holder sees only the open dataset now; with a valid membership added it would see both (so the refusal was
/// about the defect, not the set-up).
async fn assert_only_open_then_valid_opens(issuer: TestConnector, provider: TestConnector, holder: TestConnector) {
    assert_eq!(visible(&holder, &provider).await, [OPEN_DATASET]);
    let (_, valid) = issue_membership(&issuer, holder.participant_id(), json!({"membership": "active"})).await;
    import(&holder, &valid).await;
    assert_eq!(visible(&holder, &provider).await, [OPEN_DATASET, MEMBERS_DATASET]);
    for connector in [issuer, provider, holder] {
        connector.running.shutdown().await;
    }
}

/// Stores a credential in the holder's wallet as is (a holder may present whatever it has).
async fn hold(holder: &TestConnector, id: &str, jwt: &str) {
    holder
        .running
        .state
        .store
        .identity
        .put_held_credential(&hanse::store::HeldCredential {
            id: id.into(),
            types: "VerifiableCredential MembershipCredential".into(),
            issuer: "-".into(),
            jwt: jwt.into(),
            valid_until: None,
            imported_at: chrono::Utc::now().timestamp_millis(),
        })
        .await
        .unwrap();
}

/// A membership credential signed by `issuer` with chosen validity, recorded in its status list.
async fn crafted(
    issuer: &TestConnector,
    subject: &str,
    from: chrono::DateTime<chrono::Utc>,
    until: chrono::DateTime<chrono::Utc>,
) -> (String, String) {
    let id = format!("urn:uuid:{}", uuid_like());
    let state = &issuer.running.state;
    let index = state
        .store
        .identity
        .record_issued_credential(&id, subject, "VerifiableCredential MembershipCredential")
        .await
        .unwrap();
    let request = hanse::identity::credentials::IssueRequest {
        credential_type: "MembershipCredential".into(),
        subject: subject.into(),
        claims: json!({"membership": "active"}).as_object().unwrap().clone(),
        valid_until: Some(until),
    };
    let jwt = hanse::identity::credentials::sign_credential(
        &state.identity.keys(),
        &issuer.public_url(),
        &id,
        index,
        &request,
        from,
    );
    (id, jwt)
}

fn uuid_like() -> String {
    format!("{:x}", chrono::Utc::now().timestamp_nanos_opt().unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_from_an_untrusted_issuer_opens_nothing() {
    let (issuer, provider, holder) = credential_world().await;
    let untrusted = TestConnector::start(Backend::Sqlite).await;
    let (_, jwt) = issue_membership(&untrusted, holder.participant_id(), json!({"membership": "active"})).await;
    import(&holder, &jwt).await;
    assert_only_open_then_valid_opens(issuer, provider, holder).await;
    untrusted.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_credential_opens_nothing() {
    let (issuer, provider, holder) = credential_world().await;
    let (id, jwt) = issue_membership(&issuer, holder.participant_id(), json!({"membership": "active"})).await;
    import(&holder, &jwt).await;
    assert_eq!(visible(&holder, &provider).await, [OPEN_DATASET, MEMBERS_DATASET]);
    management_of(&issuer).post(&format!("/management/v3/credentials/issued/{id}/revoke"), &json!({})).await;
    assert_eq!(visible(&holder, &provider).await, [OPEN_DATASET]);
    // The served status list is a signed Bitstring Status List credential.
    let list = reqwest::get(format!("{}/credentials/status/revocation", issuer.public_url())).await.unwrap();
    let jwt = list.text().await.unwrap();
    let (header, payload) = hanse::identity::jose::peek(&jwt).unwrap();
    assert_eq!(header["typ"], "vc+ld+json+jwt");
    assert_eq!(payload["credentialSubject"]["type"], "BitstringStatusList");
    assert_only_open_then_valid_opens(issuer, provider, holder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_credential_opens_nothing() {
    let (issuer, provider, holder) = credential_world().await;
    let now = chrono::Utc::now();
    let (id, jwt) =
        crafted(&issuer, holder.participant_id(), now - chrono::Duration::days(30), now - chrono::Duration::days(1))
            .await;
    // The holder's import refuses it; a holder presenting it anyway is refused by the verifier.
    let refused = management_of(&holder).post("/management/v3/credentials", &json!({"credential": jwt})).await;
    assert_eq!(refused.status, 400, "{:#}", refused.body);
    hold(&holder, &id, &jwt).await;
    assert_only_open_then_valid_opens(issuer, provider, holder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_about_another_subject_opens_nothing() {
    let (issuer, provider, holder) = credential_world().await;
    let (id, jwt) = issue_membership(&issuer, "did:web:someone-else.example", json!({"membership": "active"})).await;
    let refused = management_of(&holder).post("/management/v3/credentials", &json!({"credential": jwt})).await;
    assert_eq!(refused.status, 400, "{:#}", refused.body);
    hold(&holder, &id, &jwt).await;
    assert_only_open_then_valid_opens(issuer, provider, holder).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_credential_with_a_forged_signature_opens_nothing() {
    let (issuer, provider, holder) = credential_world().await;
    let (id, jwt) = issue_membership(&issuer, holder.participant_id(), json!({"membership": "active"})).await;
    // Raise the claims without the issuer: the payload changes, the signature does not.
    let mut parts: Vec<String> = jwt.split('.').map(str::to_owned).collect();
    let (_, mut payload) = hanse::identity::jose::peek(&jwt).unwrap();
    payload["credentialSubject"]["role"] = json!("admin");
    use base64::Engine;
    parts[1] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(serde_json::to_vec(&payload).unwrap());
    hold(&holder, &id, &parts.join(".")).await;
    assert_only_open_then_valid_opens(issuer, provider, holder).await;
}

// ---- Transport: TLS with the development CA, and mutual TLS ----

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_talk_over_tls_and_a_mutual_tls_provider_turns_away_clients_without_a_certificate() {
    let ca = TestCa::new();
    let tls = |name: &str, mutual: bool| {
        let (cert, key) = ca.host(name);
        let ca_file = ca.ca_file.clone();
        move |config: &mut Config| {
            config.public.tls_cert = Some(cert);
            config.public.tls_key = Some(key);
            config.trust.ca_file = Some(ca_file.clone());
            if mutual {
                config.public.client_ca = Some(ca_file);
            }
        }
    };
    let all = backends();
    let provider = TestConnector::start_with(*all.last().unwrap(), tls("provider", true)).await;
    let consumer = TestConnector::start_with(all[0], tls("consumer", false)).await;
    assert!(provider.public_url().starts_with("https://"), "{}", provider.public_url());
    let api = management_of(&provider);
    api.create("/management/v3/assets", health_asset(OPEN_DATASET, "Diabetes summary", &["diabetes"], 40)).await;
    api.create("/management/v3/policydefinitions", policy_definition("open", open_policy())).await;
    api.create("/management/v3/contractdefinitions", contract_definition("public", "open", "open", &[OPEN_DATASET]))
        .await;

    // Connector to connector: DID resolution, catalogue and negotiation all over (mutual) TLS.
    assert_eq!(visible(&consumer, &provider).await, [OPEN_DATASET]);
    let consumer_api = management_of(&consumer);
    let offer = catalogue_offer(&consumer_api, &provider, OPEN_DATASET).await;
    let id = negotiate(&consumer_api, &provider, offer, json!({})).await;
    wait_for_negotiation(&consumer_api, &id, "FINALIZED").await;

    let ca_certificate = reqwest::Certificate::from_pem(&std::fs::read(&ca.ca_file).unwrap()).unwrap();
    let did_url = format!("{}/.well-known/did.json", provider.public_url());
    // A client that does not trust the development CA refuses the provider's certificate.
    assert!(reqwest::Client::new().get(&did_url).send().await.is_err());
    // A client trusting the CA but showing no certificate is turned away by the mutual-TLS provider ...
    let anonymous = reqwest::Client::builder().add_root_certificate(ca_certificate.clone()).build().unwrap();
    assert!(anonymous.get(&did_url).send().await.is_err());
    // ... and let in with a certificate issued by the CA.
    let (cert, key) = ca.host("client");
    let identity =
        reqwest::Identity::from_pkcs8_pem(&std::fs::read(cert).unwrap(), &std::fs::read(key).unwrap()).unwrap();
    let with_certificate =
        reqwest::Client::builder().add_root_certificate(ca_certificate).identity(identity).build().unwrap();
    let answer = with_certificate.get(&did_url).send().await.unwrap();
    assert_eq!(answer.status(), 200);

    provider.running.shutdown().await;
    consumer.running.shutdown().await;
}
