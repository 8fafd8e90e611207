//! What `hanse api-keys` and `hanse apps` do, through the management API: named keys with roles, and apps' tokens.

use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::client::{ManagementClient, table, text, when};

/// `hanse api-keys create NAME --role ROLE`.
pub async fn key_create(
    client: &ManagementClient,
    name: &str,
    role: &str,
    id: Option<&str>,
) -> anyhow::Result<(Json, String)> {
    let mut body = json!({"name": name, "role": role});
    if let Some(id) = id {
        body["@id"] = json!(id);
    }
    let key = client.expect(client.request(Method::POST, "/management/v3/api-keys").json(&body)).await?;
    let shown = format!(
        "Key `{}` ({}), role {}:\n  {}\nIt is shown this once; Hanse keeps only its SHA-256.",
        text(&key["@id"]),
        text(&key["name"]),
        text(&key["role"]),
        text(&key["key"])
    );
    Ok((key, shown))
}

/// `hanse api-keys list`.
pub async fn key_list(client: &ManagementClient) -> anyhow::Result<(Json, String)> {
    let keys = client.expect(client.request(Method::GET, "/management/v3/api-keys")).await?;
    let rows: Vec<Vec<String>> = keys
        .as_array()
        .into_iter()
        .flatten()
        .map(|k| vec![text(&k["@id"]), text(&k["role"]), text(&k["state"]), when(&k["rotatedAt"]), text(&k["name"])])
        .collect();
    let shown = if rows.is_empty() {
        "No named keys: make one with `hanse api-keys create NAME --role ROLE`.".into()
    } else {
        table(&["ID", "ROLE", "STATE", "ROTATED", "NAME"], &rows)
    };
    Ok((keys, shown))
}

/// `hanse api-keys rotate ID`.
pub async fn key_rotate(client: &ManagementClient, id: &str) -> anyhow::Result<(Json, String)> {
    let path = format!("/management/v3/api-keys/{}/rotate", hanse_core::encode::percent(id));
    let key = client.expect(client.request(Method::POST, &path)).await?;
    let shown = format!("Key `{id}` has a new value (the old one no longer works):\n  {}", text(&key["key"]));
    Ok((key, shown))
}

/// `hanse api-keys revoke ID`.
pub async fn key_revoke(client: &ManagementClient, id: &str) -> anyhow::Result<(Json, String)> {
    let path = format!("/management/v3/api-keys/{}", hanse_core::encode::percent(id));
    client.expect(client.request(Method::DELETE, &path)).await?;
    Ok((json!({"revoked": id}), format!("Revoked key `{id}`")))
}

/// `hanse apps issue`: the body as the management API takes it.
pub async fn token_issue(client: &ManagementClient, body: &Json) -> anyhow::Result<(Json, String)> {
    let token = client.expect(client.request(Method::POST, "/management/v3/apps/tokens").json(body)).await?;
    let shown = format!(
        "Token `{}` for {}:\n  {}\nIt is shown this once. The app sends it as `Authorization: Bearer <token>` to \
         /apps/v1/datasets/{{dataset}}/{{action}} on this connector's public URL.",
        text(&token["@id"]),
        text(&token["name"]),
        text(&token["token"])
    );
    Ok((token, shown))
}

/// `hanse apps list`.
pub async fn token_list(client: &ManagementClient) -> anyhow::Result<(Json, String)> {
    let tokens = client.expect(client.request(Method::GET, "/management/v3/apps/tokens")).await?;
    let rows: Vec<Vec<String>> = tokens
        .as_array()
        .into_iter()
        .flatten()
        .map(|t| {
            let datasets: Vec<String> =
                t["datasets"].as_array().into_iter().flatten().map(|d| text(&d["dataset"])).collect();
            vec![
                text(&t["@id"]),
                text(&t["name"]),
                text(&t["state"]),
                datasets.join(", "),
                text(&t["usage"]["requests"]),
                text(&t["usage"]["rows"]),
                when(&t["usage"]["lastUsedAt"]),
            ]
        })
        .collect();
    let shown = if rows.is_empty() {
        "No app tokens: issue one with `hanse apps issue NAME --dataset ID --action read`.".into()
    } else {
        table(&["ID", "APP", "STATE", "DATASETS", "REQUESTS", "ROWS", "LAST USE"], &rows)
    };
    Ok((tokens, shown))
}

/// `hanse apps revoke ID`.
pub async fn token_revoke(client: &ManagementClient, id: &str) -> anyhow::Result<(Json, String)> {
    let path = format!("/management/v3/apps/tokens/{}/revoke", hanse_core::encode::percent(id));
    let token = client.expect(client.request(Method::POST, &path)).await?;
    Ok((token, format!("Revoked app token `{id}`: the app's next call is refused")))
}
