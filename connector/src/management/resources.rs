//! Assets, policy definitions and contract definitions: the same five calls on each, in the EDC Management API v3
//! shape — `POST` (create → `IdResponse`), `PUT` (replace → 204), `POST /request` (QuerySpec → array),
//! `GET /{id}`, `DELETE /{id}` (→ 204).

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value as Json, json};

use super::{ManagementError, parse_body};
use crate::catalog::model::{Asset, ContractDefinition, Invalid, PolicyDefinition};
use crate::catalog::{Catalogue, CatalogueError, Stored};
use crate::state::{Connector, Shared};

/// A management resource kept by the catalogue.
pub trait Resource: Sized + Send + Sync + 'static {
    /// `asset`, `policy definition`, `contract definition` (for messages).
    const KIND: &'static str;
    /// The fields a QuerySpec may filter and sort on (`None`: free-form).
    const FIELDS: Option<&'static [&'static str]>;
    fn parse(connector: &Connector, body: &Json) -> Result<Self, Invalid>;
    fn id(&self) -> &str;
    fn to_json(&self, created_at: i64) -> Json;
    fn field(&self, path: &str) -> Vec<Json>;
    fn get(catalogue: &Catalogue, id: &str) -> Option<Stored<Self>>;
    fn all(catalogue: &Catalogue) -> Vec<Stored<Self>>;
    fn create(catalogue: &Catalogue, value: Self) -> impl Future<Output = Result<Stored<Self>, CatalogueError>> + Send;
    fn replace(catalogue: &Catalogue, value: Self) -> impl Future<Output = Result<(), CatalogueError>> + Send;
    fn delete(catalogue: &Catalogue, id: &str) -> impl Future<Output = Result<(), CatalogueError>> + Send;
}

impl Resource for Asset {
    const KIND: &'static str = "asset";
    // Properties are the asset's own: any name may be asked for, as in EDC.
    const FIELDS: Option<&'static [&'static str]> = None;
    fn parse(connector: &Connector, body: &Json) -> Result<Self, Invalid> {
        Asset::from_body(body, &connector.catalogue.service.file_root)
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn to_json(&self, created_at: i64) -> Json {
        self.to_management_json(created_at)
    }
    fn field(&self, path: &str) -> Vec<Json> {
        Asset::field(self, path)
    }
    fn get(catalogue: &Catalogue, id: &str) -> Option<Stored<Self>> {
        catalogue.asset(id)
    }
    fn all(catalogue: &Catalogue) -> Vec<Stored<Self>> {
        catalogue.assets()
    }
    async fn create(catalogue: &Catalogue, value: Self) -> Result<Stored<Self>, CatalogueError> {
        catalogue.create_asset(value).await
    }
    async fn replace(catalogue: &Catalogue, value: Self) -> Result<(), CatalogueError> {
        catalogue.replace_asset(value).await
    }
    async fn delete(catalogue: &Catalogue, id: &str) -> Result<(), CatalogueError> {
        catalogue.delete_asset(id).await
    }
}

impl Resource for PolicyDefinition {
    const KIND: &'static str = "policy definition";
    const FIELDS: Option<&'static [&'static str]> = Some(&["id", "@id", "policy.@type", "policy.type", "createdAt"]);
    fn parse(_: &Connector, body: &Json) -> Result<Self, Invalid> {
        PolicyDefinition::from_body(body, chrono::Utc::now())
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn to_json(&self, created_at: i64) -> Json {
        self.to_management_json(created_at)
    }
    fn field(&self, path: &str) -> Vec<Json> {
        match path.trim_start_matches(hanse_vocab::ns::EDC) {
            "id" | "@id" => vec![json!(self.id)],
            "policy.@type" | "policy.type" => vec![json!(format!("{:?}", self.policy.kind))],
            _ => Vec::new(),
        }
    }
    fn get(catalogue: &Catalogue, id: &str) -> Option<Stored<Self>> {
        catalogue.policy(id)
    }
    fn all(catalogue: &Catalogue) -> Vec<Stored<Self>> {
        catalogue.policies()
    }
    async fn create(catalogue: &Catalogue, value: Self) -> Result<Stored<Self>, CatalogueError> {
        catalogue.create_policy(value).await
    }
    async fn replace(catalogue: &Catalogue, value: Self) -> Result<(), CatalogueError> {
        catalogue.replace_policy(value).await
    }
    async fn delete(catalogue: &Catalogue, id: &str) -> Result<(), CatalogueError> {
        catalogue.delete_policy(id).await
    }
}

impl Resource for ContractDefinition {
    const KIND: &'static str = "contract definition";
    const FIELDS: Option<&'static [&'static str]> =
        Some(&["id", "@id", "accessPolicyId", "contractPolicyId", "assetsSelector.operandRight", "createdAt"]);
    fn parse(_: &Connector, body: &Json) -> Result<Self, Invalid> {
        ContractDefinition::from_body(body)
    }
    fn id(&self) -> &str {
        &self.id
    }
    fn to_json(&self, created_at: i64) -> Json {
        self.to_management_json(created_at)
    }
    fn field(&self, path: &str) -> Vec<Json> {
        ContractDefinition::field(self, path)
    }
    fn get(catalogue: &Catalogue, id: &str) -> Option<Stored<Self>> {
        catalogue.definition(id)
    }
    fn all(catalogue: &Catalogue) -> Vec<Stored<Self>> {
        catalogue.definitions()
    }
    async fn create(catalogue: &Catalogue, value: Self) -> Result<Stored<Self>, CatalogueError> {
        catalogue.create_definition(value).await
    }
    async fn replace(catalogue: &Catalogue, value: Self) -> Result<(), CatalogueError> {
        catalogue.replace_definition(value).await
    }
    async fn delete(catalogue: &Catalogue, id: &str) -> Result<(), CatalogueError> {
        catalogue.delete_definition(id).await
    }
}

/// The five routes of a resource under `base`.
pub fn routes<R: Resource>(base: &str) -> Router<Shared> {
    Router::new()
        .route(base, post(create::<R>).put(replace::<R>))
        .route(&format!("{base}/request"), post(request::<R>))
        .route(&format!("{base}/{{id}}"), get(read::<R>).delete(delete::<R>))
}

/// The EDC `IdResponse`.
pub fn id_response(id: &str, created_at: i64) -> Json {
    json!({"@context": hanse_self_descriptions::dcat::management_context(), "@type": "IdResponse", "@id": id, "createdAt": created_at})
}

async fn create<R: Resource>(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let value = R::parse(&state, &parse_body(&body)?).map_err(ManagementError::Invalid)?;
    let stored = R::create(&state.catalogue, value).await?;
    tracing::info!(kind = R::KIND, id = stored.value.id(), "created");
    Ok(axum::Json(id_response(stored.value.id(), stored.created_at)).into_response())
}

async fn replace<R: Resource>(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let body = parse_body(&body)?;
    if body.get("@id").is_none() {
        return Err(ManagementError::field("@id", format!("is required to name the {} to replace", R::KIND)));
    }
    let value = R::parse(&state, &body).map_err(ManagementError::Invalid)?;
    R::replace(&state.catalogue, value).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn request<R: Resource>(State(state): State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
    let spec = super::query_spec(&body, R::KIND, R::FIELDS.as_ref().map(std::slice::from_ref))?;
    let selected = spec.apply(R::all(&state.catalogue), |stored, field| match field {
        "createdAt" => vec![json!(stored.created_at)],
        other => stored.value.field(other),
    });
    Ok(axum::Json(Json::Array(selected.iter().map(|s| s.value.to_json(s.created_at)).collect())).into_response())
}

async fn read<R: Resource>(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    match R::get(&state.catalogue, &id) {
        Some(stored) => Ok(axum::Json(stored.value.to_json(stored.created_at)).into_response()),
        None => Err(ManagementError::NotFound(format!("{} `{id}` not found", R::KIND))),
    }
}

async fn delete<R: Resource>(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    R::delete(&state.catalogue, &id).await?;
    tracing::info!(kind = R::KIND, id, "deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
