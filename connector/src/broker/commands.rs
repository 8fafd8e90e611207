//! The command line of the peer network and the broker: `hanse peers`, `hanse broker` and `hanse search`, through a
//! connector's management API. Tables for people, `--json` for scripts.

use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::client::{ManagementClient, table, text, when};

/// `hanse peers list`.
pub async fn peers_list(client: &ManagementClient) -> anyhow::Result<(Json, String)> {
    let peers = client.expect(client.request(Method::GET, "/management/v3/peers")).await?;
    let rows: Vec<Vec<String>> = peers
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| {
            vec![
                text(&p["did"]),
                text(&p["status"]),
                text(&p["source"]),
                when(&p["lastSeen"]),
                text(&p["address"]),
                text(&p["detail"]),
            ]
        })
        .collect();
    let shown = if rows.is_empty() {
        "No peers known yet: add one with `hanse peers add DID|URL` or list seeds in [peers] of hanse.toml.".into()
    } else {
        table(&["DID", "STATUS", "SOURCE", "LAST SEEN", "DSP ENDPOINT", "DETAIL"], &rows)
    };
    Ok((peers, shown))
}

/// `hanse peers add`.
pub async fn peers_add(client: &ManagementClient, did_or_url: &str) -> anyhow::Result<(Json, String)> {
    let body = if did_or_url.starts_with("did:") { json!({"did": did_or_url}) } else { json!({"url": did_or_url}) };
    let peer = client.expect(client.request(Method::POST, "/management/v3/peers").json(&body)).await?;
    let mut shown = format!("Added {} ({})", text(&peer["did"]), text(&peer["status"]));
    if peer["status"] != "live" {
        shown.push_str(&format!(": {}", text(&peer["detail"])));
    }
    Ok((peer, shown))
}

/// `hanse peers remove`.
pub async fn peers_remove(client: &ManagementClient, did: &str) -> anyhow::Result<(Json, String)> {
    let path = format!("/management/v3/peers/{}", hanse_core::encode::percent(did));
    client.expect(client.request(Method::DELETE, &path)).await?;
    Ok((json!({"removed": did}), format!("Removed {did}")))
}

/// `hanse peers exchange`.
pub async fn peers_exchange(client: &ManagementClient) -> anyhow::Result<(Json, String)> {
    let round = client.expect(client.request(Method::POST, "/management/v3/peers/exchange")).await?;
    let count = |name: &str| round[name].as_array().map_or(0, Vec::len);
    let mut shown = format!(
        "Asked {} peers; learned {}, forgot {}, {} did not answer",
        count("contacted"),
        count("learned"),
        count("agedOut"),
        count("failed")
    );
    for failed in round["failed"].as_array().into_iter().flatten() {
        shown.push_str(&format!("\n  {}: {}", text(&failed[0]), text(&failed[1])));
    }
    Ok((round, shown))
}

fn crawl_table(status: &Json) -> String {
    let rows: Vec<Vec<String>> = status
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| {
            vec![
                text(&s["did"]),
                text(&s["datasets"]),
                when(&s["lastSuccess"]),
                when(&s["lastChange"]),
                when(&s["nextDue"]),
                match (s["skipped"].as_str(), s["error"].as_str()) {
                    (Some(skipped), error) => format!(
                        "skipped: {skipped} since {}{}",
                        when(&s["skippedSince"]),
                        error.map(|e| format!(": {e}")).unwrap_or_default()
                    ),
                    (None, Some(error)) => format!("{} failures: {error}", s["failures"]),
                    (None, None) => "ok".into(),
                },
            ]
        })
        .collect();
    if rows.is_empty() {
        "No peer crawled yet.".into()
    } else {
        table(&["PEER", "DATASETS", "LAST SUCCESS", "LAST CHANGE", "NEXT CRAWL", "STATUS"], &rows)
    }
}

/// `hanse broker status`.
pub async fn broker_status(client: &ManagementClient) -> anyhow::Result<(Json, String)> {
    let status = client.expect(client.request(Method::GET, "/management/v3/broker/crawls")).await?;
    let shown = crawl_table(&status);
    Ok((status, shown))
}

/// `hanse broker crawl`: every peer now; answers when the round is done.
pub async fn broker_crawl(client: &ManagementClient) -> anyhow::Result<(Json, String)> {
    let status = client.expect(client.request(Method::POST, "/management/v3/broker/crawl")).await?;
    let shown = crawl_table(&status);
    Ok((status, shown))
}

/// `hanse search`: this connector's broker, or `broker` (a URL) asked with this connector's identity.
pub async fn search(client: &ManagementClient, broker: Option<&str>, request: &Json) -> anyhow::Result<(Json, String)> {
    let path = match broker {
        Some(url) => format!("/management/v3/search?broker={}", hanse_core::encode::percent(url)),
        None => "/management/v3/search".into(),
    };
    let answer = client.expect(client.request(Method::POST, &path).json(request)).await?;
    let rows: Vec<Vec<String>> = answer["results"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|hit| {
            let dataset = &hit["dataset"];
            let records = dataset.get("http://healthdataportal.eu/ns/health#numberOfRecords").map(text);
            vec![
                text(&hit["datasetId"]),
                text(&hit["title"]),
                records.unwrap_or_else(|| "-".into()),
                text(&hit["participantId"]),
            ]
        })
        .collect();
    let mut shown = format!("{} datasets found", answer["total"]);
    if !rows.is_empty() {
        shown.push_str(&format!(" (showing {}):\n", rows.len()));
        shown.push_str(&table(&["DATASET", "TITLE", "RECORDS", "CONNECTOR (negotiate there)"], &rows));
    }
    for (facet, label) in [
        ("theme", "themes"),
        ("healthCategory", "health categories"),
        ("publisherCountry", "publisher countries"),
        ("ageRange", "age ranges"),
        ("numberOfRecords", "records"),
    ] {
        if let Some(counts) = answer["facets"][facet].as_object().filter(|c| !c.is_empty()) {
            let listed: Vec<String> = counts.iter().map(|(k, v)| format!("{k} ({v})")).collect();
            shown.push_str(&format!("\n{label}: {}", listed.join(", ")));
        }
    }
    Ok((answer, shown))
}
