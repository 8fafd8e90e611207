//! Measurement helpers shared by the benchmarks.
// Each benchmark compiles this module on its own and uses a part of it.
#![allow(dead_code)]

use std::time::Duration;

/// A memory figure of this process from `/proc/self/status` (`VmRSS:` now, `VmHWM:` peak), in MB.
pub fn rss_mb(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// The `p` percentile of sorted durations, in milliseconds.
pub fn percentile(sorted: &[Duration], p: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize].as_secs_f64() * 1000.0
}

/// The provider offers `asset` (an EDC asset body) to everyone under an open policy (`manual_start` as given); answers
/// the offer as `consumer` sees it in the catalogue, ready for a contract request.
pub async fn offer(
    p: &hanse::server::Shared,
    consumer: &str,
    asset: serde_json::Value,
    manual_start: bool,
) -> serde_json::Value {
    let asset = hanse::catalog::model::Asset::from_body(&asset, &p.catalogue.service.file_root).unwrap();
    let id = asset.id.clone();
    p.catalogue.create_asset(&p.store, asset).await.unwrap();
    offer_dataset(p, consumer, &id, manual_start).await
}

/// The provider offers its dataset `id` to everyone under an open policy; answers the offer as `consumer` sees it.
pub async fn offer_dataset(
    p: &hanse::server::Shared,
    consumer: &str,
    id: &str,
    manual_start: bool,
) -> serde_json::Value {
    use hanse::catalog::model::{ContractDefinition, PolicyDefinition};
    use serde_json::json;
    let policy = PolicyDefinition::from_body(&json!({"@id": "open", "policy": {"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [{"action": "use"}]}}), chrono::Utc::now()).unwrap();
    p.catalogue.create_policy(&p.store, policy).await.unwrap();
    let definition = ContractDefinition::from_body(
        &json!({"@id": "cd", "accessPolicyId": "open", "contractPolicyId": "open", "manualStart": manual_start}),
    )
    .unwrap();
    p.catalogue.create_definition(&p.store, definition).await.unwrap();
    let page = p.catalogue.page(
        &hanse_policy::RequestContext::new(consumer.to_owned(), chrono::Utc::now()),
        None,
        None,
        1,
        &Default::default(),
    );
    let dataset: serde_json::Value = serde_json::from_str(&page.datasets[0]).unwrap();
    let mut offer = dataset["hasPolicy"][0].clone();
    offer["target"] = json!(id);
    offer["assigner"] = json!(p.config.participant.id);
    offer
}

/// The consumer negotiates `offer` with the provider at `provider_url` until FINALIZED; answers the agreement.
pub async fn agree(
    c: &hanse::server::Shared,
    provider_url: &str,
    provider_id: &str,
    offer: serde_json::Value,
) -> hanse::store::AgreementRow {
    use hanse::negotiation::machine::State;
    let mut events = c.negotiation_events.subscribe();
    let start = hanse::negotiation::Start {
        provider_address: format!("{provider_url}/protocol/2025-1"),
        provider_id: provider_id.to_owned(),
        offer,
        auto_accept: true,
        purpose: None,
    };
    let id = hanse::negotiation::start(c, start).await.unwrap().row.id;
    loop {
        match events.recv().await {
            Ok((finished, State::Finalized)) if finished == id => break,
            Ok(_) => {}
            Err(error) => panic!("negotiation events: {error}"),
        }
    }
    c.store.agreements().await.unwrap().into_iter().find(|a| a.negotiation_id == id).expect("the agreement")
}
