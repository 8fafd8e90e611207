//! The management API as Hanse's own command line calls it (`hanse fetch`, `dataset ingest`, `job run`, `negotiate`,
//! `audit show`): the base URL and `X-Api-Key` in one place, and the EDC error array read back as one line.

use anyhow::{Context, bail};
use serde_json::Value as Json;

/// A connector's management API.
#[derive(Debug, Clone)]
pub struct ManagementClient {
    pub http: reqwest::Client,
    url: String,
    key: String,
}

impl ManagementClient {
    pub fn new(url: &str, key: &str) -> ManagementClient {
        ManagementClient {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    /// A request to `path` (from `/management/...`) carrying the API key.
    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, format!("{}{path}", self.url)).header("X-Api-Key", &self.key)
    }

    /// Sends a request; answers the status and the JSON body (`null` if there is none).
    pub async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<(u16, Json)> {
        let response = request.send().await.with_context(|| format!("cannot reach the connector at {}", self.url))?;
        let status = response.status().as_u16();
        Ok((status, response.json().await.unwrap_or(Json::Null)))
    }

    /// A call with an optional JSON body; answers the status and the JSON body.
    pub async fn call(&self, method: reqwest::Method, path: &str, body: Option<Json>) -> anyhow::Result<(u16, Json)> {
        let mut request = self.request(method, path);
        if let Some(body) = body {
            request = request.json(&body);
        }
        self.send(request).await
    }

    /// Sends a request that must succeed; answers its JSON body, or the connector's errors as one line.
    pub async fn expect(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Json> {
        let (status, body) = self.send(request).await?;
        if !(200..300).contains(&status) {
            bail!("the connector answered HTTP {status}: {}", message_of(&body));
        }
        Ok(body)
    }
}

/// The messages of a management error body (`[{"message", "path"}, ...]`), each with its path, on one line; any other
/// body as it is.
pub fn message_of(body: &Json) -> String {
    let Some(errors) = body.as_array().filter(|errors| errors.iter().all(|e| e.get("message").is_some())) else {
        return body.to_string();
    };
    let messages: Vec<String> = errors
        .iter()
        .map(|e| {
            let message = e["message"].as_str().unwrap_or_default();
            match e["path"].as_str().filter(|path| !path.is_empty()) {
                Some(path) => format!("{path}: {message}"),
                None => message.to_owned(),
            }
        })
        .collect();
    messages.join("; ")
}

/// A millisecond timestamp as people read it (`-` for never).
pub fn when(millis: &Json) -> String {
    match millis.as_i64().filter(|m| *m > 0).and_then(chrono::DateTime::from_timestamp_millis) {
        Some(time) => time.format("%Y-%m-%d %H:%M:%S").to_string(),
        None => "-".into(),
    }
}

/// Rows as left-aligned columns under a header.
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let padded: Vec<String> =
            cells.iter().enumerate().map(|(i, c)| format!("{c:<width$}", width = widths[i])).collect();
        padded.join("  ").trim_end().to_owned()
    };
    let mut out = vec![line(header.iter().map(|h| (*h).to_owned()).collect())];
    out.extend(rows.iter().map(|row| line(row.clone())));
    out.join("\n")
}

/// A JSON value as a table cell: strings bare, `-` for null.
pub fn text(value: &Json) -> String {
    match value {
        Json::String(s) => s.clone(),
        Json::Null => "-".into(),
        other => other.to_string(),
    }
}
