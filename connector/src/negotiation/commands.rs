//! The command line of contract negotiation, through a connector's management API: `hanse negotiate` (a consumer
//! asks a peer for an offer and follows the negotiation to its end) and `hanse approvals list|approve|reject` (an
//! operator releases or refuses what waits for them, negotiations and transfers alike).

use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value as Json, json};

use hanse_vocab::ns::EDC;

use crate::catalog::commands::{as_list, dsp_address, peer_catalog, terms_line};
use crate::client::{ManagementClient, table, text};

/// What `hanse negotiate` asks for.
#[derive(Debug, Clone)]
pub struct NegotiateRequest {
    /// The peer's public URL or DSP address.
    pub peer: String,
    /// An offer's id, or a dataset's id when it has one offer.
    pub offer: String,
    /// The declared purpose (e.g. `DUO:0000007`).
    pub purpose: Option<String>,
    /// How long to follow the negotiation before reporting where it stands.
    pub wait: Duration,
}

/// Finds the offer in the peer's catalogue, starts the negotiation and follows it until it is FINALIZED or
/// TERMINATED (or waits for an operator, or `wait` passes). Answers the negotiation as the connector shows it.
pub async fn negotiate(client: &ManagementClient, request: &NegotiateRequest) -> anyhow::Result<Json> {
    let address = dsp_address(&request.peer);
    let catalog = peer_catalog(client, &request.peer, &[]).await?;
    let mut found = Vec::new();
    for dataset in catalog["dataset"].as_array().into_iter().flatten() {
        for offer in as_list(&dataset["hasPolicy"]) {
            if offer["@id"] == request.offer.as_str() || dataset["@id"] == request.offer.as_str() {
                found.push((dataset["@id"].clone(), offer.clone()));
            }
        }
    }
    let (target, mut offer) = match found.len() {
        1 => found.remove(0),
        0 => bail!(
            "{} offers no `{}` to this connector (see `hanse catalog --peer {}`)",
            address,
            request.offer,
            request.peer
        ),
        n => bail!("dataset `{}` has {n} offers; name one with --offer OFFER_ID (see `hanse catalog`)", request.offer),
    };
    offer["target"] = target;
    offer["assigner"] = catalog["participantId"].clone();
    let mut start = json!({"@context": {"@vocab": EDC}, "@type": "ContractRequest", "counterPartyAddress": address,
                           "counterPartyId": catalog["participantId"], "policy": offer});
    if let Some(purpose) = &request.purpose {
        start["purpose"] = json!(purpose);
    }
    let created =
        client.expect(client.request(Method::POST, "/management/v3/contractnegotiations").json(&start)).await?;
    let id = created["@id"].as_str().context("the connector answered no negotiation id")?.to_owned();
    follow(client, &id, request.wait).await
}

/// Reads negotiation `id` until it ends, waits for this operator, or `wait` passes.
pub async fn follow(client: &ManagementClient, id: &str, wait: Duration) -> anyhow::Result<Json> {
    let deadline = tokio::time::Instant::now() + wait;
    let path = format!("/management/v3/contractnegotiations/{}", hanse_core::encode::percent(id));
    loop {
        let negotiation = client.expect(client.request(Method::GET, &path)).await?;
        let ended = matches!(negotiation["state"].as_str(), Some("FINALIZED" | "TERMINATED"));
        if ended || negotiation["waitingForOperator"] == true || tokio::time::Instant::now() >= deadline {
            return Ok(negotiation);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A negotiation's outcome for people.
pub fn describe(negotiation: &Json) -> String {
    let id = text(&negotiation["@id"]);
    match negotiation["state"].as_str() {
        Some("FINALIZED") => format!(
            "Agreed: agreement {} for {} with {}\n  terms: {}",
            text(&negotiation["contractAgreementId"]),
            text(&negotiation["assetId"]),
            text(&negotiation["counterPartyId"]),
            terms_line(&negotiation["offer"])
        ),
        Some("TERMINATED") => format!(
            "Refused: negotiation {id} was terminated ({}): {}",
            text(&negotiation["errorCode"]),
            text(&negotiation["errorDetail"])
        ),
        Some(state) if negotiation["waitingForOperator"] == true => {
            format!("Negotiation {id} is {state} and waits for this connector's operator: hanse approvals approve {id}")
        }
        state => format!(
            "Negotiation {id} is still {} (the peer's operator may have to approve it); follow it with GET \
             /management/v3/contractnegotiations/{id}",
            state.unwrap_or("unknown")
        ),
    }
}

const KINDS: [(&str, &str); 2] =
    [("negotiation", "/management/v3/contractnegotiations"), ("transfer", "/management/v3/transferprocesses")];

/// `hanse approvals list`: every negotiation and transfer waiting for this connector's operator.
pub async fn approvals_list(client: &ManagementClient) -> anyhow::Result<(Json, String)> {
    let query = json!({"@context": {"@vocab": EDC}, "@type": "QuerySpec", "limit": 1000,
                       "filterExpression": [{"operandLeft": "waitingForOperator", "operator": "=", "operandRight": true}]});
    let mut waiting = Vec::new();
    let mut rows = Vec::new();
    for (kind, base) in KINDS {
        let found = client.expect(client.request(Method::POST, &format!("{base}/request")).json(&query)).await?;
        for item in found.as_array().into_iter().flatten() {
            rows.push(vec![
                kind.to_owned(),
                text(&item["@id"]),
                text(&item["type"]),
                text(&item["state"]),
                text(&item["counterPartyId"]),
                text(item.get("assetId").unwrap_or(&item["contractId"])),
                item["allowedCalls"]
                    .as_array()
                    .map_or_else(String::new, |calls| calls.iter().map(text).collect::<Vec<_>>().join(" ")),
            ]);
            let mut item = item.clone();
            item["kind"] = json!(kind);
            waiting.push(item);
        }
    }
    // Datasets waiting for a second key before publication (`[catalog] publication_approval`).
    let publications = client.expect(client.request(Method::GET, "/management/v3/approvals?kind=publication")).await?;
    for item in publications.as_array().into_iter().flatten() {
        let by = &item["requestedBy"];
        rows.push(vec![
            "publication".into(),
            text(&item["id"]),
            "-".into(),
            "PENDING".into(),
            format!("asked by {}", text(by.get("id").unwrap_or(&by["kind"]))),
            text(&item["dataset"]),
            "approve reject".into(),
        ]);
        waiting.push(item.clone());
    }
    let shown = if rows.is_empty() {
        "Nothing waits for the operator.".into()
    } else {
        table(&["KIND", "ID", "ROLE", "STATE", "COUNTERPARTY", "DATASET / AGREEMENT", "CALLS"], &rows)
    };
    Ok((Json::Array(waiting), shown))
}

/// The call that lets a held process go on: the provider's `approve` or `finalize`, the consumer's `accept` or
/// `verify`, a transfer's `start`.
const FORWARD: [&str; 5] = ["approve", "finalize", "accept", "verify", "start"];

/// Negotiation or transfer `id` as this connector holds it, and the management path of its kind.
async fn held(client: &ManagementClient, id: &str) -> anyhow::Result<(Json, &'static str)> {
    for (_, base) in KINDS {
        let (status, item) =
            client.call(Method::GET, &format!("{base}/{}", hanse_core::encode::percent(id)), None).await?;
        if status == 200 {
            return Ok((item, base));
        }
    }
    bail!("this connector has no negotiation or transfer `{id}`")
}

/// A dataset's publication, if `id` names one that waits: the decision taken on it.
async fn decide_publication(
    client: &ManagementClient,
    id: &str,
    decision: &str,
    reason: &str,
) -> anyhow::Result<Option<(Json, String)>> {
    let pending = client.expect(client.request(Method::GET, "/management/v3/approvals?kind=publication")).await?;
    if !pending.as_array().into_iter().flatten().any(|p| p["id"] == id) {
        return Ok(None);
    }
    let path = format!("/management/v3/approvals/publications/{}/{decision}", hanse_core::encode::percent(id));
    let decided = client.expect(client.request(Method::POST, &path).json(&json!({"reason": reason}))).await?;
    let shown = format!("Publication of {id}: {}", text(&decided["state"]));
    Ok(Some((decided, shown)))
}

/// `hanse approvals approve ID`: releases what waits (the next forward call it allows), or publishes a dataset that
/// waits for a second key.
pub async fn approve(client: &ManagementClient, id: &str) -> anyhow::Result<(Json, String)> {
    if let Some(decided) = decide_publication(client, id, "approve", "").await? {
        return Ok(decided);
    }
    let (item, base) = held(client, id).await?;
    if item["waitingForOperator"] != true {
        bail!("{id} does not wait for the operator (it is {})", text(&item["state"]));
    }
    let allowed: Vec<&str> = item["allowedCalls"].as_array().into_iter().flatten().filter_map(Json::as_str).collect();
    let call = FORWARD
        .into_iter()
        .find(|c| allowed.contains(c))
        .with_context(|| format!("{id} is {} and allows only: {}", text(&item["state"]), allowed.join(", ")))?;
    let path = format!("{base}/{}/{call}", hanse_core::encode::percent(id));
    let after = client.expect(client.request(Method::POST, &path).json(&json!({}))).await?;
    Ok((after.clone(), format!("{call}: {id} is now {}", text(&after["state"]))))
}

/// `hanse approvals reject ID --reason ...`: terminates what waits, with the reason the peer reads, or refuses a
/// dataset's publication.
pub async fn reject(client: &ManagementClient, id: &str, reason: &str) -> anyhow::Result<(Json, String)> {
    if let Some(decided) = decide_publication(client, id, "reject", reason).await? {
        return Ok(decided);
    }
    let (item, base) = held(client, id).await?;
    if matches!(item["state"].as_str(), Some("FINALIZED" | "TERMINATED" | "COMPLETED")) {
        bail!("{id} has already ended ({})", text(&item["state"]));
    }
    let path = format!("{base}/{}/terminate", hanse_core::encode::percent(id));
    let after = client.expect(client.request(Method::POST, &path).json(&json!({"reason": reason}))).await?;
    Ok((after.clone(), format!("Rejected {id}: {reason} (now {})", text(&after["state"]))))
}
