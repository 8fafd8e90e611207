//! The app API on the public listener (decision 0036): a provider's data, read by apps it issued a token to.
//!
//! An operator or data steward issues a token for one app (`POST /management/v3/apps/tokens`), bound to datasets
//! and actions, with an optional purpose, expiry, rate limit and allowed origins. The token is a local agreement:
//! each dataset's usage policy is fixed in it at issuance, and every use is decided against that policy like a
//! transfer under an agreement. The app calls `/apps/v1/datasets/{dataset}/{action}` with the token in
//! `Authorization: Bearer` — never in the URL, where logs would keep it:
//!
//! | action    | call                                   | answers                                                 |
//! |-----------|----------------------------------------|---------------------------------------------------------|
//! | `read`    | `GET .../rows?offset=&limit=`          | a page of a table's rows                                |
//! | `query`   | `GET .../query?where=col:op:value&...` | a page of the rows that pass the filters, some columns  |
//! | `compute` | `POST .../compute`                     | an `aggregate` or `crosstab`, disclosure-controlled     |
//! | `file`    | `GET .../file`                         | a `File` dataset's bytes (ranges as the data plane)     |
//!
//! Revocation and expiry take effect on the next request: the token is read from the store on every call. Each use
//! is counted on the token (requests, rows, bytes, last use) and appended to the audit log (`app.use`) in one write,
//! before the answer is sent; a use that cannot be recorded is not served.

pub mod commands;

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use chrono::Utc;
use governor::{DefaultDirectRateLimiter, Quota};
use serde::{Deserialize, Serialize};
use serde_json::{Value as Json, json};

use crate::catalog::model::DataAddress;
use crate::problem::PublicError;
use crate::store::{AppTokenRow, AppUse, Governance};
use hanse_compute::analysis::{Deadline, Filter, JobError};

/// The actions a token can grant.
pub const ACTIONS: [&str; 4] = ["read", "query", "compute", "file"];
/// The compute templates an app may run: single-round templates only (a model needs an orchestrator).
pub const APP_TEMPLATES: [&str; 2] = ["aggregate", "crosstab"];
/// Rows per page unless the app asks for fewer, and at most.
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;
/// The prefix of every app token (secret scanners match it).
pub const TOKEN_PREFIX: &str = "hat_";

/// What a token grants, as its body stores it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// Each dataset with the usage policy fixed at issuance.
    pub datasets: BTreeMap<String, DatasetGrant>,
    pub actions: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purpose: Option<String>,
    /// Requests per minute (bursts up to the same number).
    pub rate_per_minute: u32,
    /// Browser origins allowed to call with the token; none: no browser calls.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
}

/// One dataset of a token.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetGrant {
    /// The contract definition whose policy this is, or none for a policy given at issuance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offer: Option<String>,
    /// The ODRL policy (DSP JSON) every use is decided against.
    pub policy: Json,
}

/// The participant id an app's uses are decided and logged under.
pub fn app_participant(token_id: &str) -> String {
    format!("urn:hanse:app:{token_id}")
}

/// The app API service.
pub struct Apps {
    store: Governance,
    catalogue: Arc<crate::catalog::Catalogue>,
    compute: Arc<crate::compute::Compute>,
    /// Serves `File` datasets as it does for transfers.
    plane: Arc<crate::dataplane::DataPlane>,
    /// One rate limiter per token, rebuilt when the token's rate changes.
    limiters: Mutex<HashMap<String, (u32, Arc<DefaultDirectRateLimiter>)>>,
}

/// A use allowed so far: the token and its grant.
struct Allowed {
    token: AppTokenRow,
    grant: Grant,
    origin: Option<HeaderValue>,
}

/// A refusal of the app API: `{"code", "reason"}`, with `Retry-After` when the token's rate is reached.
#[derive(Debug)]
struct Refused {
    error: PublicError,
    retry_after: Option<u64>,
}

impl From<PublicError> for Refused {
    fn from(error: PublicError) -> Refused {
        Refused { error, retry_after: None }
    }
}

impl IntoResponse for Refused {
    fn into_response(self) -> Response {
        let mut response = self.error.into_response();
        if let Some(seconds) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        if response.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

fn refused(status: StatusCode, code: &str, reason: impl Into<String>) -> Refused {
    PublicError::compute(status, code, reason).into()
}

impl Apps {
    pub fn new(
        store: Governance,
        catalogue: Arc<crate::catalog::Catalogue>,
        compute: Arc<crate::compute::Compute>,
        plane: Arc<crate::dataplane::DataPlane>,
    ) -> Apps {
        Apps { store, catalogue, compute, plane, limiters: Mutex::new(HashMap::new()) }
    }

    fn count(&self, action: &str, outcome: &'static str) {
        let action = ACTIONS.iter().find(|a| **a == action).copied().unwrap_or("other");
        self.store.meter().count("hanse_app_requests_total", &[("action", action), ("outcome", outcome)]);
    }

    /// The token of the request, valid now, from an allowed origin, within its rate.
    async fn token(&self, headers: &HeaderMap) -> Result<Allowed, Refused> {
        let unauthorized = |reason: &str| refused(StatusCode::UNAUTHORIZED, "Unauthorized", reason);
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| unauthorized("an app token in `Authorization: Bearer` is required"))?;
        let hash = hanse_core::encode::sha256_hex(bearer.as_bytes());
        let token = match self.store.app_token_by_hash(&hash).await {
            Ok(Some(token)) => token,
            Ok(None) => return Err(unauthorized("the app token is not known")),
            Err(error) => {
                tracing::error!(%error, "cannot read an app token");
                return Err(refused(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", "the token cannot be read now"));
            }
        };
        if token.revoked_at > 0 {
            return Err(unauthorized("the app token was revoked"));
        }
        if token.expires_at > 0 && token.expires_at <= crate::store::now_millis() {
            return Err(unauthorized("the app token has expired"));
        }
        let grant: Grant = serde_json::from_str(&token.body).map_err(|e| {
            tracing::error!(token = token.id, error = %e, "an app token's grant cannot be read");
            refused(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "the token's grant cannot be read")
        })?;
        let origin = headers.get(header::ORIGIN).cloned();
        if let Some(origin) = &origin
            && !grant.allowed_origins.iter().any(|allowed| allowed.as_bytes() == origin.as_bytes())
        {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "OriginNotAllowed",
                "this token is not for calls from this origin",
            ));
        }
        let limiter = self.limiter(&token.id, grant.rate_per_minute);
        if let Err(not_until) = limiter.check() {
            let wait = not_until.wait_time_from(governor::clock::Clock::now(&governor::clock::DefaultClock::default()));
            let seconds = wait.as_secs() + 1;
            let mut error = refused(
                StatusCode::TOO_MANY_REQUESTS,
                "RateLimited",
                format!(
                    "the token's limit of {} requests a minute is reached; retry in {seconds} s",
                    grant.rate_per_minute
                ),
            );
            error.retry_after = Some(seconds);
            return Err(error);
        }
        Ok(Allowed { token, grant, origin })
    }

    fn limiter(&self, token: &str, rate: u32) -> Arc<DefaultDirectRateLimiter> {
        let mut limiters = self.limiters.lock().expect("limiters lock");
        match limiters.get(token) {
            Some((known, limiter)) if *known == rate => limiter.clone(),
            _ => {
                let rate = NonZeroU32::new(rate.max(1)).expect("at least one");
                let limiter = Arc::new(governor::RateLimiter::direct(Quota::per_minute(rate)));
                limiters.insert(token.to_owned(), (rate.get(), limiter.clone()));
                limiter
            }
        }
    }

    /// Whether the token lets this app do `action` on `dataset` now: granted, still offered, and permitted by the
    /// dataset's policy as fixed in the token. Answers the dataset's data address.
    fn decide(
        &self,
        allowed: &Allowed,
        dataset: &str,
        action: &str,
        job: Option<hanse_policy::JobContext>,
    ) -> Result<DataAddress, Refused> {
        if !allowed.grant.actions.iter().any(|a| a == action) {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "ActionNotGranted",
                format!("the token does not grant `{action}`"),
            ));
        }
        let Some(granted) = allowed.grant.datasets.get(dataset) else {
            return Err(refused(
                StatusCode::FORBIDDEN,
                "DatasetNotGranted",
                format!("the token does not grant dataset `{dataset}`"),
            ));
        };
        let asset = self.catalogue.asset(dataset).ok_or_else(|| {
            refused(StatusCode::GONE, "DatasetGone", format!("dataset `{dataset}` is no longer offered"))
        })?;
        let policy = hanse_policy::Policy::from_json(&granted.policy).map_err(|e| {
            refused(
                StatusCode::INTERNAL_SERVER_ERROR,
                "PolicyUnreadable",
                format!("the token's policy cannot be read: {e}"),
            )
        })?;
        let mut context = hanse_policy::RequestContext::new(app_participant(&allowed.token.id), Utc::now());
        context.purpose = allowed.grant.purpose.clone();
        context.agreed_at = chrono::DateTime::from_timestamp_millis(allowed.token.created_at);
        context.usage_count = allowed.token.requests.max(0) as u64 + 1;
        let odrl_action = if job.is_some() { "compute" } else { "use" };
        context.job = job;
        if !hanse_policy::permits(&policy, odrl_action, &context) {
            let decision = hanse_policy::evaluate(&policy, odrl_action, &context);
            return Err(refused(
                StatusCode::FORBIDDEN,
                "PolicyDenied",
                format!("the dataset's policy does not permit this use now: {}", decision.reason),
            ));
        }
        Ok(asset.value.data_address.clone())
    }

    /// Counts and logs a use, then answers `body`; a use that cannot be recorded is not served.
    async fn served(&self, allowed: &Allowed, used: AppUse<'_>, mut response: Response) -> Response {
        match self.store.record_app_use(&used).await {
            Ok(true) => {}
            Ok(false) => {
                self.count(used.action, "unauthorized");
                return refused(StatusCode::UNAUTHORIZED, "Unauthorized", "the app token was revoked").into_response();
            }
            Err(error) => {
                tracing::error!(%error, "an app's use cannot be recorded");
                self.count(used.action, "failed");
                return refused(StatusCode::SERVICE_UNAVAILABLE, "Unavailable", "the use cannot be recorded now")
                    .into_response();
            }
        }
        self.count(used.action, "served");
        let meter = self.store.meter();
        meter.counter("hanse_app_rows_total", &[("action", used.action)]).increment(used.rows);
        meter.counter("hanse_app_bytes_total", &[("action", used.action)]).increment(used.bytes);
        allow_origin(&mut response, allowed.origin.as_ref());
        response
    }

    async fn table(&self, address: &DataAddress, dataset: &str) -> Result<Arc<hanse_compute::table::Table>, Refused> {
        let DataAddress::Table { file, .. } = address else {
            return Err(refused(StatusCode::BAD_REQUEST, "NotATable", format!("dataset `{dataset}` is not a table")));
        };
        self.compute.table(file).await.map_err(|e| {
            tracing::error!(dataset, error = %e, "a table cannot be read");
            refused(StatusCode::INTERNAL_SERVER_ERROR, "InternalError", "the table cannot be read now")
        })
    }
}

fn allow_origin(response: &mut Response, origin: Option<&HeaderValue>) {
    if let Some(origin) = origin {
        response.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin.clone());
        response.headers_mut().insert(header::VARY, HeaderValue::from_static("Origin"));
    }
}

/// What the row calls read from the query string.
#[derive(Debug, Default)]
struct RowQuery {
    offset: usize,
    limit: usize,
    columns: Option<Vec<String>>,
    filters: Vec<Filter>,
}

fn row_query(raw: Option<&str>, filters_allowed: bool) -> Result<RowQuery, Refused> {
    let invalid = |reason: String| refused(StatusCode::BAD_REQUEST, "InvalidQuery", reason);
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(raw.unwrap_or("")).map_err(|e| invalid(format!("the query string: {e}")))?;
    let mut query = RowQuery { limit: DEFAULT_PAGE, ..RowQuery::default() };
    for (name, value) in pairs {
        match name.as_str() {
            "offset" => {
                query.offset = value.parse().map_err(|_| invalid(format!("offset: `{value}` is not a number")))?
            }
            "limit" => {
                query.limit = value
                    .parse()
                    .ok()
                    .filter(|l| (1..=MAX_PAGE).contains(l))
                    .ok_or_else(|| invalid(format!("limit: a number from 1 to {MAX_PAGE}")))?;
            }
            "columns" if filters_allowed => {
                query.columns = Some(value.split(',').map(|c| c.trim().to_owned()).filter(|c| !c.is_empty()).collect());
            }
            "where" if filters_allowed => {
                let mut parts = value.splitn(3, ':');
                let (Some(column), Some(op), Some(operand)) = (parts.next(), parts.next(), parts.next()) else {
                    return Err(invalid(format!("where: `{value}` is not column:op:value")));
                };
                let value = if op == "in" {
                    Json::Array(operand.split(',').map(|v| json!(v)).collect())
                } else {
                    json!(operand)
                };
                query.filters.push(Filter { column: column.to_owned(), op: op.to_owned(), value });
            }
            other if filters_allowed => {
                return Err(invalid(format!("`{other}` is not a parameter (offset, limit, columns, where)")));
            }
            other => {
                return Err(invalid(format!(
                    "`{other}` is not a parameter of `rows` (offset, limit); filters need `query`"
                )));
            }
        }
    }
    if query.filters.len() > 32 {
        return Err(invalid("at most 32 filters".into()));
    }
    Ok(query)
}

/// A page of rows of `table`: the selected rows (all, or those that passed the filters) from `offset`.
fn page(
    table: &hanse_compute::table::Table,
    dataset: &str,
    query: &RowQuery,
    selected: Option<&[u32]>,
) -> Result<(Json, u64), Refused> {
    let columns: Vec<usize> = match &query.columns {
        None => (0..table.schema.columns.len()).collect(),
        Some(names) => names
            .iter()
            .map(|name| {
                table.schema.column(name).map(|(at, _)| at).ok_or_else(|| {
                    refused(StatusCode::BAD_REQUEST, "InvalidQuery", format!("columns: there is no column `{name}`"))
                })
            })
            .collect::<Result<_, _>>()?,
    };
    let total = selected.map_or(table.rows, <[u32]>::len);
    let end = query.offset.saturating_add(query.limit).min(total);
    let rows: Vec<Json> = (query.offset.min(end)..end)
        .map(|i| selected.map_or(i, |s| s[i] as usize))
        .map(|row| Json::Array(columns.iter().map(|&c| table.schema.columns[c].render(table.values[c][row])).collect()))
        .collect();
    let sent = rows.len() as u64;
    let body = json!({
        "dataset": dataset,
        "columns": columns.iter().map(|&c| &table.schema.columns[c].name).collect::<Vec<_>>(),
        "rows": rows,
        "offset": query.offset,
        "limit": query.limit,
        "total": total,
        "nextOffset": (end < total).then_some(end),
    });
    Ok((body, sent))
}

fn json_response(body: &Json) -> (Response, u64) {
    let text = body.to_string();
    let bytes = text.len() as u64;
    (([(header::CONTENT_TYPE, "application/json")], text).into_response(), bytes)
}

async fn rows(
    State(apps): State<Arc<Apps>>,
    Path(dataset): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    read_rows(&apps, &dataset, raw.as_deref(), &headers, "read").await
}

async fn query(
    State(apps): State<Arc<Apps>>,
    Path(dataset): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    read_rows(&apps, &dataset, raw.as_deref(), &headers, "query").await
}

async fn read_rows(
    apps: &Arc<Apps>,
    dataset: &str,
    raw: Option<&str>,
    headers: &HeaderMap,
    action: &'static str,
) -> Response {
    let answer = async {
        let allowed = apps.token(headers).await?;
        let query = row_query(raw, action == "query")?;
        let address = apps.decide(&allowed, dataset, action, None)?;
        let table = apps.table(&address, dataset).await?;
        let selected = if query.filters.is_empty() {
            None
        } else {
            let (table, filters) = (table.clone(), query.filters.clone());
            let rows = apps
                .compute
                .run(move |deadline: &Deadline| hanse_compute::analysis::matching_rows(&table, &filters, deadline))
                .await;
            Some(rows.map_err(job_refusal)?)
        };
        let (body, rows) = page(&table, dataset, &query, selected.as_deref())?;
        let (response, bytes) = json_response(&body);
        let details = json!({"offset": query.offset, "filters": query.filters.len()});
        Ok::<_, Refused>((allowed, rows, bytes, details, response))
    };
    match answer.await {
        Ok((allowed, rows, bytes, details, response)) => {
            let used = AppUse { token: &allowed.token.id, dataset, action, rows, bytes, details };
            apps.served(&allowed, used, response).await
        }
        Err(error) => apps.refusal(action, error),
    }
}

fn job_refusal(error: JobError) -> Refused {
    match error {
        JobError::Invalid(reason) => refused(StatusCode::BAD_REQUEST, "InvalidQuery", reason),
        JobError::Disclosure(reason) => refused(StatusCode::FORBIDDEN, "DisclosureControl", reason),
        JobError::TimeLimit(_) => refused(StatusCode::SERVICE_UNAVAILABLE, "TimeLimit", error.to_string()),
        JobError::MemoryLimit(_) => refused(StatusCode::INSUFFICIENT_STORAGE, "MemoryLimit", error.to_string()),
        JobError::Sandbox(reason) => refused(StatusCode::UNPROCESSABLE_ENTITY, "AlgorithmStopped", reason),
    }
}

impl Apps {
    fn refusal(&self, action: &str, error: Refused) -> Response {
        let outcome = match error.error.status().as_u16() {
            401 => "unauthorized",
            403 => "refused",
            429 => "limited",
            400..=499 => "invalid",
            _ => "failed",
        };
        self.count(action, outcome);
        error.into_response()
    }
}

/// `POST .../compute`: `{"template": "aggregate" | "crosstab", "parameters": {...}, "k"?: n}`.
async fn compute(
    State(apps): State<Arc<Apps>>,
    Path(dataset): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = async {
        let allowed = apps.token(&headers).await?;
        let invalid = |reason: String| refused(StatusCode::BAD_REQUEST, "InvalidJob", reason);
        let job: Json = serde_json::from_slice(&body).map_err(|e| invalid(format!("the body is not JSON: {e}")))?;
        let template = job.get("template").and_then(Json::as_str).unwrap_or_default().to_owned();
        if !APP_TEMPLATES.contains(&template.as_str()) {
            return Err(invalid(format!("template: one of {}", APP_TEMPLATES.join(", "))));
        }
        let parameters = job.get("parameters").cloned().unwrap_or_else(|| json!({}));
        let limits = apps.compute.limits(job.get("k").and_then(Json::as_u64));
        let context = hanse_policy::JobContext {
            template: template.clone(),
            algorithm_digest: None,
            min_cell_count: limits.k,
            disclosure_method: Some("suppress".into()),
            jobs_run: allowed.token.requests.max(0) as u64,
            // An app's job runs at this one site: there is no sum over sites to hide it in.
            secure_aggregation: false,
            privacy_epsilon: None,
        };
        let address = apps.decide(&allowed, &dataset, "compute", Some(context))?;
        let table = apps.table(&address, &dataset).await?;
        let run = {
            let (template, parameters, algorithms) =
                (template.clone(), parameters.clone(), apps.compute.algorithms.clone());
            move |deadline: &Deadline| {
                crate::compute::step(&table, &template, &parameters, &Json::Null, &limits, 1, deadline, &algorithms)
            }
        };
        let result = apps.compute.run(run).await.map_err(job_refusal)?;
        let body = json!({"dataset": dataset, "template": template, "result": result});
        let (response, bytes) = json_response(&body);
        let details = json!({"template": template, "resultDigest": hanse_audit::canonical_digest(&result)});
        Ok::<_, Refused>((allowed, bytes, details, response))
    };
    match answer.await {
        Ok((allowed, bytes, details, response)) => {
            let used =
                AppUse { token: &allowed.token.id, dataset: &dataset, action: "compute", rows: 0, bytes, details };
            apps.served(&allowed, used, response).await
        }
        Err(error) => apps.refusal("compute", error),
    }
}

/// `GET .../file`: a `File` dataset's bytes, with ranges.
async fn file(State(apps): State<Arc<Apps>>, Path(dataset): Path<String>, request: Request) -> Response {
    let headers = request.headers().clone();
    let answer = async {
        let allowed = apps.token(&headers).await?;
        let address = apps.decide(&allowed, &dataset, "file", None)?;
        let DataAddress::File { path, .. } = address else {
            return Err(refused(StatusCode::BAD_REQUEST, "NotAFile", format!("dataset `{dataset}` is not a file")));
        };
        Ok::<_, Refused>((allowed, path))
    };
    let (allowed, path) = match answer.await {
        Ok(found) => found,
        Err(error) => return apps.refusal("file", error),
    };
    let (mut parts, body) = request.into_parts();
    parts.headers.remove(header::AUTHORIZATION);
    let request = Request::from_parts(parts, body);
    let response = apps.plane.file(&path, request).await;
    if !response.status().is_success() {
        return apps.refusal("file", refused(response.status(), "FileUnavailable", "the file cannot be served"));
    }
    let bytes = response
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let used =
        AppUse { token: &allowed.token.id, dataset: &dataset, action: "file", rows: 0, bytes, details: json!({}) };
    apps.served(&allowed, used, response).await
}

/// `GET /apps/v1/datasets`: what the token grants (no use is counted).
async fn datasets(State(apps): State<Arc<Apps>>, headers: HeaderMap) -> Response {
    let allowed = match apps.token(&headers).await {
        Ok(allowed) => allowed,
        Err(error) => return apps.refusal("other", error),
    };
    let mut listed = Vec::new();
    for id in allowed.grant.datasets.keys() {
        let Some(asset) = apps.catalogue.asset(id) else { continue };
        let mut entry =
            json!({"dataset": id, "kind": asset.value.data_address.kind(), "actions": allowed.grant.actions});
        if let DataAddress::Table { file, .. } = &asset.value.data_address
            && let Ok(table) = apps.compute.table(file).await
        {
            entry["rows"] = json!(table.rows);
            entry["columns"] = json!(
                table.schema.columns.iter().map(|c| json!({"name": c.name, "type": c.kind.name()})).collect::<Vec<_>>()
            );
        }
        listed.push(entry);
    }
    let mut response =
        axum::Json(json!({"token": allowed.token.id, "app": allowed.token.name, "datasets": listed})).into_response();
    allow_origin(&mut response, allowed.origin.as_ref());
    response
}

/// A browser's preflight: the actual call is checked against the token's origins.
async fn preflight(request: Request) -> Response {
    let mut response = StatusCode::NO_CONTENT.into_response();
    if let Some(origin) = request.headers().get(header::ORIGIN).cloned() {
        let headers = response.headers_mut();
        headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("authorization, content-type, range"),
        );
        headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
        headers.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

/// The app API's routes (public listener).
pub fn routes(apps: Arc<Apps>) -> axum::Router {
    axum::Router::new()
        .route("/apps/v1/datasets", get(datasets).options(preflight))
        .route("/apps/v1/datasets/{dataset}/rows", get(rows).options(preflight))
        .route("/apps/v1/datasets/{dataset}/query", get(query).options(preflight))
        .route("/apps/v1/datasets/{dataset}/compute", post(compute).options(preflight))
        .route("/apps/v1/datasets/{dataset}/file", get(file).options(preflight))
        .with_state(apps)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn row_queries_read_paging_columns_and_filters() {
        let query =
            row_query(Some("offset=10&limit=5&columns=age,sex&where=age:gte:50&where=sex:in:F,M"), true).unwrap();
        assert_eq!((query.offset, query.limit), (10, 5));
        assert_eq!(query.columns, Some(vec!["age".to_owned(), "sex".to_owned()]));
        assert_eq!(query.filters[1], Filter { column: "sex".into(), op: "in".into(), value: json!(["F", "M"]) });
        assert!(row_query(Some("where=age:gte:50"), false).is_err(), "rows takes no filters");
        assert!(row_query(Some("limit=0"), false).is_err());
        assert!(row_query(Some("limit=1001"), false).is_err());
        assert!(row_query(Some("where=age"), true).is_err());
    }
}
