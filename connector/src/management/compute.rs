//! Compute-to-data on the management listener: ingesting tables (`POST /management/v3/tables`, multipart) and jobs
//! across sites (`/management/v3/jobs`).

use super::Path;
use axum::body::Bytes;
use axum::extract::{Multipart, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value as Json, json};
use tokio::io::AsyncWriteExt;

use super::resources::id_response;
use super::{FieldError, ManagementError, parse_body};
use crate::catalog::model::{Asset, AssetFields, DataAddress, TABLE};
use crate::compute::orchestrate::{self, JobRequest, SiteRequest};
use crate::compute::table::{self, Schema, Table};
use crate::state::Shared;

fn internal(error: impl std::fmt::Display) -> ManagementError {
    ManagementError::Internal(error.to_string())
}

/// `POST /management/v3/tables` (multipart): `id`, `schema` (JSON: `{"columns": [...]}`), `data` (the CSV or Parquet
/// file) and
/// optionally `properties` (a JSON object of dataset properties: title, description, keywords, ...). Every row is
/// checked; a bad file is reported with line numbers and nothing is imported. The dataset is created, or replaced
/// with the new rows, with a `HanseTable` data address and its DCAT properties derived from the rows
/// (`numberOfRecords`, columns, age range) over the given ones.
#[utoipa::path(post, path = "/management/v3/tables", tag = "Compute", operation_id = "ingest a table", request_body(content_type = "multipart/form-data", description = "Parts `id`, `schema` (JSON `{\"columns\": [...]}`), `data` (the CSV or Parquet file) and optional `properties` (JSON)"), responses((status = 200, description = "The table: its schema and row count", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn ingest(
    State(state): State<Shared>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ManagementError> {
    let form = form.map_err(|rejection| ManagementError::field("", rejection.body_text()))?;
    let mut upload = read_upload(state.compute.folder(), form, state.config.compute.max_upload_mb, "schema").await?;
    let schema = Schema::from_json(&upload.described).map_err(|e| ManagementError::field("schema", e))?;
    if upload.data.len() != 1 {
        return Err(ManagementError::field("data", "one CSV file"));
    }
    let (_, data) = upload.data.remove(0);
    let table = parse_table(data, schema, state.config.compute.max_upload_mb).await?;
    let stored = store_table(&state, &upload.id, table, upload.properties).await?;
    Ok(axum::Json(stored).into_response())
}

/// `POST /management/v3/tables/fhir` (multipart): `id`, `mapping` (JSON: `{"columns": [...]}`, each column's type and
/// the FHIR resources and codes it is read from), one or more `data` files (a bulk export's `*.ndjson` files or
/// Bundles as `*.json`, by their file names) and optional `properties`. Every record is checked; a bad export is
/// reported with each record's file and line (or Bundle entry) and nothing is imported. The dataset is a table of
/// patients, as for CSV; its description also lists the FHIR profiles and code systems it holds.
#[utoipa::path(post, path = "/management/v3/tables/fhir", tag = "Compute", operation_id = "ingest a FHIR export", request_body(content_type = "multipart/form-data", description = "Parts `id`, `mapping` (JSON `{\"columns\": [...]}`), one or more `data` files (`*.ndjson` or Bundle `*.json`) and optional `properties` (JSON)"), responses((status = 200, description = "The table: its row count", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn ingest_fhir(
    State(state): State<Shared>,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ManagementError> {
    let form = form.map_err(|rejection| ManagementError::field("", rejection.body_text()))?;
    let upload = read_upload(state.compute.folder(), form, state.config.compute.max_upload_mb, "mapping").await?;
    let mapping =
        hanse_compute::fhir::Mapping::from_json(&upload.described).map_err(|e| ManagementError::field("mapping", e))?;
    let ingested = tokio::task::spawn_blocking(move || {
        let mut files = Vec::with_capacity(upload.data.len());
        for (name, file) in &upload.data {
            files.push((name.clone(), std::io::BufReader::new(std::fs::File::open(file.path())?)));
        }
        Ok::<_, std::io::Error>(hanse_compute::fhir::read_export(files, &mapping))
    })
    .await
    .map_err(internal)?
    .map_err(internal)?
    .map_err(invalid_data)?;
    let mut properties = upload.properties;
    properties.extend(hanse_compute::fhir::derived_properties(&ingested));
    let stored = store_table(&state, &upload.id, ingested.table, properties).await?;
    Ok(axum::Json(stored).into_response())
}

/// The parts of a table upload: the data files streamed to temporary files in the table folder, by the names
/// they were sent with.
struct Upload {
    id: String,
    /// The `schema` (CSV) or `mapping` (FHIR) part.
    described: Json,
    properties: Map<String, Json>,
    data: Vec<(String, tempfile::NamedTempFile)>,
}

/// The largest `id`, `schema` or `properties` part of a table upload.
const SMALL_PART: usize = 1024 * 1024;

/// Reads the multipart form of a table upload (`described`: the name of its `schema` or `mapping` part), naming
/// the part at fault. Data files stream to disk; past `max_mb` MiB in all the upload is refused (413) and the
/// partial files removed.
async fn read_upload(
    folder: &std::path::Path,
    mut form: Multipart,
    max_mb: u64,
    described: &str,
) -> Result<Upload, ManagementError> {
    tokio::fs::create_dir_all(folder).await.map_err(internal)?;
    let (mut id, mut schema, mut properties, mut data) = (None, None, Map::new(), Vec::new());
    let bad = |part: &str, e: &dyn std::fmt::Display| ManagementError::field(part, e.to_string());
    let mut size = 0u64;
    while let Some(mut field) = form.next_field().await.map_err(|e| bad("", &e))? {
        let name = field.name().unwrap_or_default().to_owned();
        match name.as_str() {
            "data" => {
                let file_name = field.file_name().unwrap_or("data.csv").to_owned();
                let file = part_to_file(folder, &mut field, max_mb).await?;
                size += file.as_file().metadata().map_err(internal)?.len();
                if size > max_mb * 1024 * 1024 {
                    return Err(ManagementError::TooLarge(format!(
                        "the upload is larger than {max_mb} MiB (`compute.max_upload_mb`); nothing was imported"
                    )));
                }
                data.push((file_name, file));
            }
            part if part == "id" || part == described || part == "properties" => {
                let mut text = Vec::new();
                while let Some(chunk) = field.chunk().await.map_err(|e| bad(&name, &e))? {
                    text.extend_from_slice(&chunk);
                    if text.len() > SMALL_PART {
                        return Err(ManagementError::TooLarge(format!("the part `{name}` is larger than 1 MiB")));
                    }
                }
                let text = String::from_utf8(text).map_err(|e| bad(&name, &e))?;
                match name.as_str() {
                    "id" => id = Some(text.trim().to_owned()),
                    "properties" => match serde_json::from_str(&text) {
                        Ok(Json::Object(given)) => properties = given,
                        _ => return Err(ManagementError::field("properties", "must be a JSON object")),
                    },
                    _ => schema = Some(serde_json::from_str::<Json>(&text).map_err(|e| bad(described, &e))?),
                }
            }
            other => {
                return Err(ManagementError::field(other, format!("unknown part (id, {described}, data, properties)")));
            }
        }
    }
    if data.is_empty() {
        return Err(ManagementError::field("data", "is required: the data file"));
    }
    Ok(Upload {
        id: id.filter(|id| !id.is_empty()).ok_or_else(|| ManagementError::field("id", "is required"))?,
        described: schema.ok_or_else(|| ManagementError::field(described, "is required"))?,
        properties,
        data,
    })
}

/// Streams a table file's multipart part to a new temporary file in `folder` (made if missing); past `max_mb` MiB it
/// is refused (413) and the partial file removed. The table upload and the console's wizard take files so.
pub async fn part_to_file(
    folder: &std::path::Path,
    field: &mut axum::extract::multipart::Field<'_>,
    max_mb: u64,
) -> Result<tempfile::NamedTempFile, ManagementError> {
    tokio::fs::create_dir_all(folder).await.map_err(internal)?;
    let temp = tempfile::NamedTempFile::new_in(folder).map_err(internal)?;
    let mut file = tokio::fs::File::from_std(temp.reopen().map_err(internal)?);
    let mut written = 0u64;
    while let Some(chunk) = field.chunk().await.map_err(|e| ManagementError::field("data", e.to_string()))? {
        written += chunk.len() as u64;
        if written > max_mb * 1024 * 1024 {
            return Err(ManagementError::TooLarge(format!(
                "the table is larger than {max_mb} MiB (`compute.max_upload_mb`); nothing was imported"
            )));
        }
        file.write_all(&chunk).await.map_err(internal)?;
    }
    file.flush().await.map_err(internal)?;
    Ok(temp)
}

/// Reads every row of the uploaded CSV or Parquet file (known by its first bytes) against `schema` off the async
/// threads; each bad row is named by its line (or row).
async fn parse_table(data: tempfile::NamedTempFile, schema: Schema, max_mb: u64) -> Result<Table, ManagementError> {
    // A CSV file of this size holds at most half as many values as bytes ("1,"): a Parquet file may hold no more.
    let most_cells = (max_mb << 20) / 2;
    tokio::task::spawn_blocking(move || {
        use std::io::{Read, Seek};
        let mut file = std::fs::File::open(data.path())?;
        let mut head = [0u8; 4];
        let read = file.read(&mut head)?;
        file.rewind()?;
        match hanse_compute::columnar::is_parquet(&head[..read]) {
            true => Ok::<_, std::io::Error>(hanse_compute::columnar::read_parquet(file, &schema, most_cells)),
            false => Ok(table::read_csv(std::io::BufReader::new(file), &schema)),
        }
    })
    .await
    .map_err(internal)?
    .map_err(internal)?
    .map_err(invalid_data)
}

/// A file that was not imported, with each problem as a field error of `data`.
fn invalid_data(error: table::IngestError) -> ManagementError {
    let mut fields: Vec<FieldError> = error
        .problems
        .iter()
        .map(|p| FieldError::new("data", format!("{}: {} (nothing was imported)", p.position(), p.message)))
        .collect();
    if error.more > 0 {
        fields.push(FieldError::new("data", format!("and {} more problems", error.more)));
    }
    ManagementError::Invalid(fields)
}

/// Writes the table file and creates or replaces the dataset; a replaced table's file is removed once no dataset
/// names it.
async fn store_table(
    state: &Shared,
    id: &str,
    table: Table,
    given: Map<String, Json>,
) -> Result<Json, ManagementError> {
    let mut properties = given;
    properties.extend(table.derived_properties());
    let rows = table.rows;
    let file = state.compute.write_table(table).await.map_err(internal)?;
    let body = json!({"@id": id, "properties": properties, "dataAddress": DataAddress::table(&file)});
    let asset = Asset::from_body(&body, &state.config.file_root()).map_err(ManagementError::Invalid)?;
    let previous = state.catalogue.asset(id).map(|a| a.value.data_address.clone());
    match previous {
        Some(_) => state.catalogue.replace_asset(asset).await?,
        None => {
            state.catalogue.create_asset(asset).await?;
        }
    }
    if let Some(DataAddress::Table { file: old, .. }) = previous
        && old != file
        && !state.catalogue.assets().iter().any(|a| {
            a.packed.address_field("type") == Some(TABLE) && a.packed.address_field("file") == Some(old.as_str())
        })
        && let Err(error) = state.compute.remove_table(&old).await
    {
        tracing::warn!(%error, file = old, "cannot remove a replaced table");
    }
    tracing::info!(dataset = id, rows, file, "table ingested");
    Ok(json!({"@id": id, "numberOfRecords": rows, "file": file}))
}

/// `POST /management/v3/jobs`: `{"template", "parameters", "sites": [{"agreementId", "counterPartyAddress"?}],
/// "minCellCount"?, "rounds"?}` → `IdResponse`; the job runs in the background (`GET /management/v3/jobs/{id}`).
#[utoipa::path(post, path = "/management/v3/jobs", tag = "Compute", operation_id = "start a job", request_body(content = crate::management::openapi::JobInput, content_type = "application/json"), responses((status = 200, description = "The job started", body = crate::management::openapi::IdResponse), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors, crate::management::openapi::PeerErrors))]
pub async fn start(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let body = parse_body(&body)?;
    let text = |value: &Json, name: &str| value.get(name).and_then(Json::as_str).map(str::to_owned);
    let template = text(&body, "template").ok_or_else(|| ManagementError::field("template", "is required"))?;
    let mut sites = Vec::new();
    for (i, site) in body.get("sites").and_then(Json::as_array).into_iter().flatten().enumerate() {
        let agreement_id = text(site, "agreementId")
            .ok_or_else(|| ManagementError::field(&format!("sites[{i}].agreementId"), "is required"))?;
        sites.push(SiteRequest { agreement_id, address: text(site, "counterPartyAddress") });
    }
    let number = |name: &str| -> Result<Option<u64>, ManagementError> {
        match body.get(name) {
            None | Some(Json::Null) => Ok(None),
            Some(value) => {
                value.as_u64().map(Some).ok_or_else(|| ManagementError::field(name, "must be a whole number"))
            }
        }
    };
    let request = JobRequest {
        template,
        parameters: body.get("parameters").cloned().unwrap_or_else(|| json!({})),
        min_cell_count: number("minCellCount")?,
        sites,
        rounds: number("rounds")?.map(|r| r.min(u64::from(u32::MAX)) as u32),
    };
    let job = orchestrate::create(&state.compute, request).await.map_err(|r| ManagementError::field(&r.0, r.1))?;
    Ok(axum::Json(id_response(&job.id, job.created_at)).into_response())
}

/// `GET /management/v3/algorithms`: the providers' algorithms this connector admits (their signed manifests, which a
/// provider may publish for consumers to find) and those it refused, with the reason.
#[utoipa::path(get, path = "/management/v3/algorithms", tag = "Compute", operation_id = "list algorithms", responses((status = 200, description = "`admitted`: the manifests admitted; `refused`: manifests not admitted, each with its `reason`", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
pub async fn algorithms(State(state): State<Shared>) -> Response {
    let algorithms = &state.compute.algorithms;
    let refused: Vec<Json> = algorithms
        .refused
        .iter()
        .map(|(manifest, reason)| {
            let mut entry = serde_json::to_value(manifest).unwrap_or_default();
            entry["reason"] = Json::String(reason.clone());
            entry
        })
        .collect();
    axum::Json(serde_json::json!({"admitted": algorithms.manifests(), "refused": refused})).into_response()
}

/// `GET /management/v3/jobs/{id}`: state, per-site progress and, once done, the combined result.
#[utoipa::path(get, path = "/management/v3/jobs/{id}", tag = "Compute", operation_id = "read a job", params(("id" = String, Path, description = "The job id")), responses((status = 200, description = "The job with its progress and result", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors))]
pub async fn read(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    let job =
        state.store.jobs.job(&id).await?.ok_or_else(|| ManagementError::NotFound(format!("job `{id}` not found")))?;
    Ok(axum::Json(orchestrate::management_json(&job)).into_response())
}

/// `POST /management/v3/jobs/request`: every job, newest first — the consumer's and, with `{"role": "provider"}`,
/// those this connector ran for others.
#[utoipa::path(post, path = "/management/v3/jobs/request", tag = "Compute", operation_id = "query jobs", request_body(content = Option<crate::management::openapi::JobQuery>, content_type = "application/json"), responses((status = 200, description = "Jobs, newest first", body = [crate::management::openapi::Object]), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn query(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let body = super::optional_body(&body)?;
    if !body.is_object() {
        return Err(ManagementError::field("", "the body must be a JSON object"));
    }
    let role = match body.get("role") {
        None | Some(Json::Null) => "consumer",
        Some(role) => role
            .as_str()
            .filter(|r| matches!(*r, "consumer" | "provider"))
            .ok_or_else(|| ManagementError::field("role", "must be consumer or provider"))?,
    };
    let jobs = state.store.jobs.jobs(role).await?;
    Ok(axum::Json(jobs.iter().map(orchestrate::management_json).collect::<Vec<_>>()).into_response())
}
