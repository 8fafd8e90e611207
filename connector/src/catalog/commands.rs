//! The command line of the catalogue, for consumers and operators, through a connector's management API:
//! `hanse catalog` (a peer's DSP catalogue), `hanse dataset list`, `hanse policy create|validate|explain` and
//! `hanse offer create`. Each answers the JSON (for `--json`) and the text for people.

use anyhow::bail;
use reqwest::Method;
use serde_json::{Value as Json, json};

use hanse_vocab::ns::EDC;

use crate::client::{ManagementClient, table, text};

/// A peer's DSP address from its public URL or its DSP address.
pub fn dsp_address(peer: &str) -> String {
    let peer = peer.trim_end_matches('/');
    if peer.contains("/protocol/") { peer.to_owned() } else { format!("{peer}{}", hanse_core::paths::DSP_BASE) }
}

/// A member of a JSON-LD object by its compact name, its prefixed name (`dct:title`) or an IRI ending in it.
fn member<'a>(object: &'a Json, name: &str) -> Option<&'a Json> {
    object.get(name).or_else(|| {
        object
            .as_object()?
            .iter()
            .find(|(key, _)| key.strip_suffix(name).is_some_and(|head| head.ends_with(['/', '#', ':'])))
            .map(|(_, v)| v)
    })
}

/// A JSON-LD value as text: strings, `@value`s and `@id`s bare, lists joined.
pub fn plain(value: Option<&Json>) -> String {
    match value {
        None | Some(Json::Null) => "-".into(),
        Some(Json::Array(items)) => items.iter().map(|i| plain(Some(i))).collect::<Vec<_>>().join(", "),
        Some(Json::Object(object)) => {
            plain(object.get("@value").or_else(|| object.get("@id")).or_else(|| object.get("name")))
        }
        Some(other) => text(other),
    }
}

/// An ODRL policy in one line: `use if purpose isA DUO:0000042; not distribute`.
pub fn terms_line(policy: &Json) -> String {
    let Ok(policy) = hanse_policy::Policy::from_json(policy) else {
        return "unreadable terms".into();
    };
    let action = |rule: &hanse_policy::Rule| {
        hanse_policy::term::short(&hanse_policy::action_term(rule.action.as_deref().unwrap_or("use")))
    };
    let mut parts = Vec::new();
    for rule in &policy.permissions {
        let conditions: Vec<String> = rule.conditions().map(ToString::to_string).collect();
        parts.push(if conditions.is_empty() {
            action(rule)
        } else {
            format!("{} if {}", action(rule), conditions.join(" and "))
        });
    }
    parts.extend(policy.prohibitions.iter().map(|rule| format!("not {}", action(rule))));
    if parts.is_empty() { "no permission".into() } else { parts.join("; ") }
}

/// A peer's DSP catalogue as it shows itself to this connector, asked through the connector's management API;
/// `words` must each occur in a dataset.
pub async fn peer_catalog(client: &ManagementClient, peer: &str, words: &[String]) -> anyhow::Result<Json> {
    let mut body = json!({"@context": {"@vocab": EDC}, "counterPartyAddress": dsp_address(peer)});
    if !words.is_empty() {
        body["querySpec"] =
            json!({"filterExpression": [{"operandLeft": "keyword", "operator": "=", "operandRight": words}]});
    }
    client.expect(client.request(Method::POST, "/management/v3/catalog/request").json(&body)).await
}

/// `hanse catalog --peer URL [--query WORDS]`: the datasets a peer offers this connector, with their offers.
pub async fn catalog(client: &ManagementClient, peer: &str, words: &[String]) -> anyhow::Result<(Json, String)> {
    let catalog = peer_catalog(client, peer, words).await?;
    let mut rows = Vec::new();
    for dataset in catalog["dataset"].as_array().into_iter().flatten() {
        for offer in as_list(&dataset["hasPolicy"]) {
            rows.push(vec![
                text(&dataset["@id"]),
                plain(member(dataset, "title")),
                plain(member(dataset, "numberOfRecords")),
                text(&offer["@id"]),
                terms_line(offer),
            ]);
        }
    }
    let shown = if rows.is_empty() {
        format!("{} offers this connector no dataset{}", text(&catalog["participantId"]), query_note(words))
    } else {
        format!(
            "Catalogue of {}{}:\n{}\nNegotiate with: hanse negotiate --peer {peer} --offer OFFER [--purpose ...]",
            text(&catalog["participantId"]),
            query_note(words),
            table(&["DATASET", "TITLE", "RECORDS", "OFFER", "TERMS"], &rows)
        )
    };
    Ok((catalog, shown))
}

fn query_note(words: &[String]) -> String {
    if words.is_empty() { String::new() } else { format!(" matching \"{}\"", words.join(" ")) }
}

/// A JSON value as a list (a single value is a list of one).
pub fn as_list(value: &Json) -> Vec<&Json> {
    match value {
        Json::Array(items) => items.iter().collect(),
        Json::Null => Vec::new(),
        other => vec![other],
    }
}

/// `hanse dataset list`: this connector's assets.
pub async fn dataset_list(client: &ManagementClient) -> anyhow::Result<(Json, String)> {
    let body = json!({"@context": {"@vocab": EDC}, "@type": "QuerySpec", "limit": 1000});
    let assets = client.expect(client.request(Method::POST, "/management/v3/assets/request").json(&body)).await?;
    let rows: Vec<Vec<String>> = assets
        .as_array()
        .into_iter()
        .flatten()
        .map(|asset| {
            let properties = &asset["properties"];
            vec![
                text(&asset["@id"]),
                plain(member(properties, "title")),
                plain(member(properties, "numberOfRecords")),
                plain(member(properties, "keyword")),
                plain(asset["dataAddress"].get("type")),
            ]
        })
        .collect();
    let shown = if rows.is_empty() {
        "No datasets yet: add one with `hanse dataset ingest` or POST /management/v3/assets.".into()
    } else {
        table(&["DATASET", "TITLE", "RECORDS", "KEYWORDS", "DATA ADDRESS"], &rows)
    };
    Ok((assets, shown))
}

/// `hanse policy create ID FILE`: stores an ODRL policy and reports what validation says of it.
pub async fn policy_create(client: &ManagementClient, id: &str, policy: Json) -> anyhow::Result<(Json, String)> {
    let body = json!({"@context": {"@vocab": EDC}, "@id": id, "policy": policy});
    client.expect(client.request(Method::POST, "/management/v3/policydefinitions").json(&body)).await?;
    let (report, shown) = policy_validate(client, id).await?;
    Ok((report, format!("Created policy {id}\n{shown}")))
}

/// `hanse policy validate ID`: errors and warnings of a stored policy (an error when it is not valid).
pub async fn policy_validate(client: &ManagementClient, id: &str) -> anyhow::Result<(Json, String)> {
    let path = format!("/management/v3/policydefinitions/{}/validate", hanse_core::encode::percent(id));
    let report = client.expect(client.request(Method::POST, &path)).await?;
    let mut shown = if report["isValid"] == true { format!("{id} is valid") } else { format!("{id} is NOT valid") };
    for (kind, label) in [("errors", "error"), ("warnings", "warning")] {
        for line in report[kind].as_array().into_iter().flatten() {
            shown.push_str(&format!("\n  {label}: {}", text(line)));
        }
    }
    Ok((report, shown))
}

/// What a policy is asked to decide: an action and the requester's context.
#[derive(Debug, Clone, Default)]
pub struct Question {
    pub action: Option<String>,
    pub participant: Option<String>,
    pub purpose: Option<String>,
    /// More of the request context (claims, credential types, spatial, ...) as JSON.
    pub context: Option<Json>,
}

/// `hanse policy explain ID`: how a stored policy decides a request, rule by rule.
pub async fn policy_explain(
    client: &ManagementClient,
    id: &str,
    question: &Question,
) -> anyhow::Result<(Json, String)> {
    let mut context = question.context.clone().unwrap_or_else(|| json!({}));
    if !context.is_object() {
        bail!("--context must be a JSON object");
    }
    for (name, value) in [("participant", &question.participant), ("purpose", &question.purpose)] {
        if let Some(value) = value {
            context[name] = json!(value);
        }
    }
    let body = json!({"action": question.action.as_deref().unwrap_or("use"), "context": context});
    let path = format!("/management/v3/policydefinitions/{}/explain", hanse_core::encode::percent(id));
    let answer = client.expect(client.request(Method::POST, &path).json(&body)).await?;
    let shown = render_decision(&answer["decision"]);
    Ok((answer, shown))
}

/// A policy decision with its trace, for people: the verdict and reason, then each rule and constraint.
pub fn render_decision(decision: &Json) -> String {
    let verdict = if decision["permitted"] == true { "PERMITTED" } else { "DENIED" };
    let mut out = format!("{verdict}: {}", text(&decision["reason"]));
    fn constraints(out: &mut String, list: &Json, depth: usize) {
        for constraint in list.as_array().into_iter().flatten() {
            let resolved = constraint["resolved"].as_str().map(|r| format!(" (was {r})")).unwrap_or_default();
            out.push_str(&format!(
                "\n{:indent$}{} {}{resolved}: {}",
                "",
                text(&constraint["outcome"]),
                text(&constraint["constraint"]),
                text(&constraint["reason"]),
                indent = depth * 2
            ));
            constraints(out, &constraint["children"], depth + 1);
        }
    }
    for rule in decision["rules"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n  {} {}: {} — {}",
            text(&rule["path"]),
            hanse_policy::term::short(rule["action"].as_str().unwrap_or_default()),
            text(&rule["outcome"]),
            text(&rule["reason"])
        ));
        constraints(&mut out, &rule["constraints"], 2);
    }
    for deferred in decision["deferred"].as_array().into_iter().flatten() {
        out.push_str(&format!("\n  checked when a job runs: {}", text(deferred)));
    }
    out
}

/// What `hanse offer create` publishes.
#[derive(Debug, Clone, clap::Args)]
pub struct OfferSpec {
    /// The offer's (contract definition's) id.
    pub id: String,
    /// The policy deciding who sees the offer.
    #[arg(long = "access")]
    pub access_policy: String,
    /// The policy offered as the contract's terms.
    #[arg(long = "terms")]
    pub contract_policy: String,
    /// A dataset to offer; repeatable (none offers every dataset).
    #[arg(long = "dataset")]
    pub datasets: Vec<String>,
    /// Negotiations wait for the operator at each of this connector's turns.
    #[arg(long)]
    pub manual_approval: bool,
    /// Transfers wait for the operator to start them.
    #[arg(long)]
    pub manual_start: bool,
}

/// `hanse offer create`: a contract definition.
pub async fn offer_create(client: &ManagementClient, offer: &OfferSpec) -> anyhow::Result<(Json, String)> {
    let selector: Vec<Json> = if offer.datasets.is_empty() {
        Vec::new()
    } else {
        vec![json!({"operandLeft": format!("{EDC}id"), "operator": "in", "operandRight": offer.datasets})]
    };
    let body = json!({"@context": {"@vocab": EDC}, "@id": offer.id, "accessPolicyId": offer.access_policy,
                      "contractPolicyId": offer.contract_policy, "assetsSelector": selector,
                      "manualApproval": offer.manual_approval, "manualStart": offer.manual_start});
    let created = client.expect(client.request(Method::POST, "/management/v3/contractdefinitions").json(&body)).await?;
    let datasets = if offer.datasets.is_empty() { "every dataset".to_owned() } else { offer.datasets.join(", ") };
    let mut shown = format!(
        "Offered {datasets} under {} (visible under {}) as {}",
        offer.contract_policy, offer.access_policy, offer.id
    );
    if offer.manual_approval {
        shown.push_str("; negotiations wait for `hanse approvals approve`");
    }
    if offer.manual_start {
        shown.push_str("; transfers wait for the operator to start them");
    }
    Ok((created, shown))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terms_read_as_one_line() {
        let policy = json!({"permission": [{"action": "use", "constraint": {"and": [
            {"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"},
            {"leftOperand": "hanse:minCellCount", "operator": "gteq", "rightOperand": 5}]}}],
            "prohibition": {"action": "distribute"}});
        assert_eq!(terms_line(&policy), "use if purpose isA DUO:0000042 and hanse:minCellCount gteq 5; not distribute");
        assert_eq!(terms_line(&json!({})), "no permission");
    }

    #[test]
    fn a_public_url_becomes_the_dsp_address() {
        assert_eq!(dsp_address("http://h.example/"), "http://h.example/protocol/2025-1");
        assert_eq!(dsp_address("http://h.example/protocol/2025-1"), "http://h.example/protocol/2025-1");
    }
}
