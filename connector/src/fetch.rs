//! `hanse fetch`: a consumer's download under an agreement, through its own connector's management API.
//!
//! It starts a pull transfer (it negotiates nothing), waits until the provider starts it, reads the data address,
//! downloads into `FILE.part` with a progress bar, resumes with `Range` after an interruption (also across runs),
//! refreshes the access token when the provider refuses it, checks the SHA-256 the provider announced, moves the file
//! into place and completes the transfer.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, anyhow, bail};
use base64::Engine;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{Value as Json, json};
use tokio::io::AsyncWriteExt;

use crate::client::{ManagementClient, message_of};

/// Where and how to fetch.
#[derive(Debug, Clone)]
pub struct FetchOptions {
    /// The consumer connector's management base URL.
    pub management_url: String,
    pub api_key: String,
    pub agreement: String,
    pub out: PathBuf,
    /// How long to wait for the provider to start the transfer (it may need its operator).
    pub start_timeout: Duration,
    /// Draw a progress bar on stderr.
    pub progress: bool,
}

/// What a fetch did.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchReport {
    pub transfer_id: String,
    pub bytes: u64,
    pub sha256: String,
    /// How many times the download resumed after an interruption.
    pub resumptions: u32,
}

/// Attempts per download before giving up.
const ATTEMPTS: u32 = 8;

struct Api<'a> {
    client: ManagementClient,
    options: &'a FetchOptions,
}

impl Api<'_> {
    async fn call(&self, method: reqwest::Method, path: &str, body: Option<Json>) -> anyhow::Result<(u16, Json)> {
        self.client.call(method, path, body).await
    }

    async fn transfer(&self, id: &str) -> anyhow::Result<Json> {
        let (status, body) =
            self.call(reqwest::Method::GET, &format!("/management/v3/transferprocesses/{id}"), None).await?;
        if status != 200 {
            bail!("cannot read transfer {id}: HTTP {status} {body}");
        }
        Ok(body)
    }

    async fn data_address(&self, id: &str, refresh: bool) -> anyhow::Result<Json> {
        let path = format!("/management/v3/edrs/{id}/dataaddress{}", if refresh { "?refresh=true" } else { "" });
        let (status, body) = self.call(reqwest::Method::GET, &path, None).await?;
        if status != 200 {
            bail!("no data address for transfer {id}: {}", message_of(&body));
        }
        Ok(body)
    }
}

fn part_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    out.with_file_name(name)
}

/// The SHA-256 (hex) a response announces: `Repr-Digest` (RFC 9530), else a 64-hex `ETag`.
fn announced_digest(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(value) = text("repr-digest").and_then(|v| v.split(',').find_map(|d| d.trim().strip_prefix("sha-256=:")))
        && let Ok(bytes) = base64::engine::general_purpose::STANDARD.decode(value.trim_end_matches(':'))
    {
        return Some(hanse_core::encode::hex(&bytes));
    }
    text("etag").map(|e| e.trim_matches('"').to_ascii_lowercase()).filter(|e| e.len() == 64)
}

/// Runs a fetch to the end.
pub async fn fetch(options: &FetchOptions) -> anyhow::Result<FetchReport> {
    let api = Api { client: ManagementClient::new(&options.management_url, &options.api_key), options };
    let body = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "TransferRequest",
                      "contractId": options.agreement, "transferType": hanse_core::formats::PULL});
    let (status, created) = api.call(reqwest::Method::POST, "/management/v3/transferprocesses", Some(body)).await?;
    if status != 200 {
        bail!("the connector did not start a transfer: {}", message_of(&created));
    }
    let id = created["@id"].as_str().ok_or_else(|| anyhow!("the connector answered no transfer id"))?.to_owned();
    let deadline = tokio::time::Instant::now() + options.start_timeout;
    let mut announced_wait = false;
    loop {
        let transfer = api.transfer(&id).await?;
        match transfer["state"].as_str() {
            Some("STARTED") => break,
            Some("TERMINATED") => {
                bail!("the transfer was terminated: {}", transfer["errorDetail"].as_str().unwrap_or("no reason given"))
            }
            Some(state) if tokio::time::Instant::now() > deadline => {
                bail!("the transfer is still {state} after {:?}", options.start_timeout)
            }
            _ => {}
        }
        if !announced_wait && options.progress {
            eprintln!("Waiting for the provider to start transfer {id} ...");
            announced_wait = true;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let report = download(&api, &id).await?;
    let (status, body) =
        api.call(reqwest::Method::POST, &format!("/management/v3/transferprocesses/{id}/complete"), None).await?;
    if status != 200 && status != 409 {
        bail!("the data is in place, but the transfer could not be completed: {}", message_of(&body));
    }
    Ok(report)
}

async fn download(api: &Api<'_>, id: &str) -> anyhow::Result<FetchReport> {
    let options = api.options;
    let part = part_path(&options.out);
    // A part left by an earlier run is kept and hashed (streamed), and the download goes on from its end.
    let earlier = part.clone();
    let (mut hasher, mut offset) = tokio::task::spawn_blocking(move || {
        let mut hasher = openssl::sha::Sha256::new();
        let offset = match std::fs::File::open(&earlier) {
            Ok(file) => crate::dataplane::hash_into(file, &mut hasher)?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => 0,
            Err(error) => return Err(error),
        };
        Ok::<_, std::io::Error>((hasher, offset))
    })
    .await?
    .with_context(|| format!("cannot read {}", part.display()))?;
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&part)
        .await
        .with_context(|| format!("cannot write {}", part.display()))?;
    let bar = if options.progress { ProgressBar::new(0) } else { ProgressBar::hidden() };
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let (mut resumptions, mut refresh, mut expected) = (0u32, false, None);
    let mut attempt = 0;
    loop {
        attempt += 1;
        if attempt > ATTEMPTS {
            bail!("the download failed {ATTEMPTS} times; run the same command again to resume from {} bytes", offset);
        }
        let address = api.data_address(id, refresh).await?;
        refresh = false;
        let endpoint = address["endpoint"].as_str().ok_or_else(|| anyhow!("the data address has no endpoint"))?;
        let token = address["authorization"].as_str().unwrap_or_default();
        let mut request = api.client.http.get(endpoint).bearer_auth(token);
        if offset > 0 {
            request = request.header("Range", format!("bytes={offset}-"));
        }
        let mut response = match request.send().await {
            Ok(response) => response,
            Err(error) => {
                tracing::warn!(%error, "the provider's data plane cannot be reached; retrying");
                tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                continue;
            }
        };
        match response.status().as_u16() {
            200 if offset > 0 => {
                // The provider ignored the range: start over.
                file.set_len(0).await?;
                hasher = openssl::sha::Sha256::new();
                offset = 0;
            }
            200 | 206 => {}
            416 => {} // nothing left to read: the part is complete
            401 => {
                refresh = true;
                continue;
            }
            status => {
                let reason = response.text().await.unwrap_or_default();
                bail!("the provider refused the data (HTTP {status}): {reason}");
            }
        }
        expected = announced_digest(response.headers()).or(expected);
        if let Some(length) = response.content_length() {
            bar.set_length(offset + length);
        }
        bar.set_position(offset);
        let mut interrupted = false;
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    file.write_all(&chunk).await?;
                    hasher.update(&chunk);
                    offset += chunk.len() as u64;
                    bar.set_position(offset);
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(%error, offset, "the download was interrupted; resuming");
                    interrupted = true;
                    break;
                }
            }
        }
        if interrupted {
            resumptions += 1;
            file.flush().await?;
            continue;
        }
        break;
    }
    file.flush().await?;
    file.sync_all().await?;
    bar.finish_and_clear();
    let sha256 = hanse_core::encode::hex(&hasher.finish());
    match expected {
        Some(expected) if expected != sha256 => {
            let _ = tokio::fs::remove_file(&part).await;
            bail!("the data does not match the provider's digest (got {sha256}, announced {expected}); nothing kept")
        }
        Some(_) => {}
        None => tracing::warn!("the provider announced no digest; the download is not verified"),
    }
    tokio::fs::rename(&part, &options.out).await.with_context(|| format!("cannot write {}", options.out.display()))?;
    Ok(FetchReport { transfer_id: id.to_owned(), bytes: offset, sha256, resumptions })
}
