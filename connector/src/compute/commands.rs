//! The command line of compute-to-data: `hanse synth`, `hanse dataset ingest` and `hanse job run`. The last two talk
//! to a connector's management API.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use reqwest::Method;
use serde_json::{Value as Json, json};

use crate::client::ManagementClient;

fn is_parquet(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "parquet")
}

/// `hanse synth`: writes a synthetic cohort as `FILE` (CSV, or Parquet if `FILE` ends in `.parquet`) and its schema as
/// `FILE` with `.schema.json`; answers the schema's path.
pub fn synth(rows: usize, site: u32, seed: u64, out: &Path) -> anyhow::Result<PathBuf> {
    let table = super::synth::cohort(rows, site, seed);
    let file = std::fs::File::create(out).with_context(|| format!("cannot write {}", out.display()))?;
    match is_parquet(out) {
        true => hanse_compute::columnar::write_parquet(&table, std::io::BufWriter::new(file))?,
        false => super::synth::write_csv(&table, std::io::BufWriter::new(file))?,
    }
    let schema_path = schema_path(out);
    std::fs::write(&schema_path, serde_json::to_string_pretty(&table.schema)?)
        .with_context(|| format!("cannot write {}", schema_path.display()))?;
    Ok(schema_path)
}

/// `cohort.csv` → `cohort.schema.json`.
pub fn schema_path(csv: &Path) -> PathBuf {
    csv.with_extension("schema.json")
}

/// `hanse dataset ingest`: uploads a CSV file with its schema and dataset properties.
pub async fn ingest(
    url: &str,
    key: &str,
    id: &str,
    csv: &Path,
    schema: &Path,
    properties: Json,
) -> anyhow::Result<Json> {
    let schema = std::fs::read_to_string(schema).with_context(|| format!("cannot read {}", schema.display()))?;
    let form = reqwest::multipart::Form::new()
        .text("id", id.to_owned())
        .text("schema", schema)
        .text("properties", properties.to_string())
        .part(
            "data",
            file_part(csv, if is_parquet(csv) { "application/vnd.apache.parquet" } else { "text/csv" }).await?,
        );
    let client = ManagementClient::new(url, key);
    client.expect(client.request(Method::POST, "/management/v3/tables").multipart(form)).await
}

/// `hanse dataset ingest --mapping`: uploads a FHIR export (`*.ndjson` files, Bundles as `*.json`) with its mapping
/// and dataset properties.
pub async fn ingest_fhir(
    url: &str,
    key: &str,
    id: &str,
    files: &[PathBuf],
    mapping: &Path,
    properties: Json,
) -> anyhow::Result<Json> {
    let mapping = std::fs::read_to_string(mapping).with_context(|| format!("cannot read {}", mapping.display()))?;
    let mut form = reqwest::multipart::Form::new()
        .text("id", id.to_owned())
        .text("mapping", mapping)
        .text("properties", properties.to_string());
    for file in files {
        let kind = if file.extension().is_some_and(|e| e == "json") {
            "application/fhir+json"
        } else {
            "application/fhir+ndjson"
        };
        form = form.part("data", file_part(file, kind).await?);
    }
    let client = ManagementClient::new(url, key);
    client.expect(client.request(Method::POST, "/management/v3/tables/fhir").multipart(form)).await
}

/// A file as a streamed multipart part, with its name.
async fn file_part(path: &Path, mime: &str) -> anyhow::Result<reqwest::multipart::Part> {
    let data = tokio::fs::File::open(path).await.with_context(|| format!("cannot read {}", path.display()))?;
    let length = data.metadata().await?.len();
    let stream = tokio_util::io::ReaderStream::with_capacity(data, 256 * 1024);
    let part = reqwest::multipart::Part::stream_with_length(reqwest::Body::wrap_stream(stream), length)
        .file_name(path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default())
        .mime_str(mime)?;
    Ok(part)
}

/// `hanse synth --fhir`: writes a synthetic cohort as a FHIR bulk export into the folder `out` (one NDJSON file per
/// resource type) with the mapping that reads it (`mapping.json`); answers the files written.
pub fn synth_fhir(rows: usize, site: u32, seed: u64, out: &Path) -> anyhow::Result<Vec<PathBuf>> {
    std::fs::create_dir_all(out).with_context(|| format!("cannot make {}", out.display()))?;
    let mut written = Vec::new();
    for (name, text) in super::synth::fhir_export(rows, site, seed) {
        let path = out.join(name);
        std::fs::write(&path, text).with_context(|| format!("cannot write {}", path.display()))?;
        written.push(path);
    }
    let mapping = out.join("mapping.json");
    std::fs::write(&mapping, serde_json::to_string_pretty(&super::synth::fhir_mapping())?)
        .with_context(|| format!("cannot write {}", mapping.display()))?;
    written.push(mapping);
    Ok(written)
}

/// `hanse job run`: starts a job and follows it to its end; answers the finished job.
pub async fn run_job(url: &str, key: &str, request: &Json, progress: bool) -> anyhow::Result<Json> {
    let client = ManagementClient::new(url, key);
    let created = client.expect(client.request(Method::POST, "/management/v3/jobs").json(request)).await?;
    let id = created["@id"].as_str().context("the connector answered no job id")?.to_owned();
    let bar = indicatif::ProgressBar::new_spinner();
    if !progress {
        bar.set_draw_target(indicatif::ProgressDrawTarget::hidden());
    }
    bar.enable_steady_tick(Duration::from_millis(120));
    loop {
        let job = client.expect(client.request(Method::GET, &format!("/management/v3/jobs/{id}"))).await?;
        match job["state"].as_str() {
            Some("RUNNING") => {
                let round = job["progress"]["round"].as_u64().unwrap_or(0);
                bar.set_message(format!("job {id}: round {round}"));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some("COMPLETED") => {
                bar.finish_and_clear();
                return Ok(job);
            }
            _ => {
                bar.finish_and_clear();
                bail!("job {id} failed: {}", job["error"].as_str().unwrap_or("no reason given"));
            }
        }
    }
}

/// A finished job's result for people: coefficients with standard errors, or cells with their n.
pub fn render(result: &Json) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let terms = result["terms"].as_array().cloned().unwrap_or_default();
    if !terms.is_empty() {
        let errors = result["standardErrors"].as_array().cloned().unwrap_or_default();
        line(format!("{:<20} {:>12} {:>12}", "term", "estimate", "std. error"));
        for (i, term) in terms.iter().enumerate() {
            let estimate = result["coefficients"][i].as_f64().unwrap_or(f64::NAN);
            let error = errors.get(i).and_then(Json::as_f64).map_or_else(|| "-".into(), |e| format!("{e:.6}"));
            line(format!("{:<20} {estimate:>12.6} {error:>12}", term.as_str().unwrap_or_default()));
        }
        line(format!("n = {}, rounds = {}", result["n"], result["rounds"]));
    } else {
        for cell in result["cells"].as_array().into_iter().flatten() {
            let n = cell["n"].as_u64().map_or_else(|| "suppressed".into(), |n| n.to_string());
            line(format!("{:<50} {n:>10}", cell["group"].to_string()));
        }
        line(format!("total n = {}", result["total"]["n"]));
    }
    for (i, site) in result["sites"].as_array().into_iter().flatten().enumerate() {
        let suppressed = site["suppressed"].as_array().map_or(0, Vec::len);
        line(format!(
            "site {} {}: n = {}, {suppressed} values suppressed",
            i + 1,
            site["provider"].as_str().unwrap_or(""),
            site["n"]
        ));
    }
    out
}

/// The `sites` of a job request from `--agreement ID` or `--agreement ID@DSP_ADDRESS` arguments.
pub fn sites(agreements: &[String]) -> Json {
    Json::Array(
        agreements
            .iter()
            .map(|a| match a.split_once('@') {
                Some((id, address)) => json!({"agreementId": id, "counterPartyAddress": address}),
                None => json!({"agreementId": a}),
            })
            .collect(),
    )
}
