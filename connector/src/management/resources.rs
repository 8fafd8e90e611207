//! Assets, policy definitions and contract definitions: the same five calls on each, in the EDC Management API v3
//! shape — `POST` (create → `IdResponse`), `PUT` (replace → 204), `POST /request` (QuerySpec → array),
//! `GET /{id}`, `DELETE /{id}` (→ 204).

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value as Json, json};
use utoipa_axum::router::OpenApiRouter;

use super::{ManagementError, Path, parse_body};
use crate::catalog::model::AssetFields;
use crate::catalog::model::{Asset, ContractDefinition, Invalid, PolicyDefinition};
use crate::catalog::{Catalogue, CatalogueError, Stored, StoredAsset};
use crate::state::{Connector, Shared};

/// A resource as a listing reads it: filtered and sorted by its fields, then answered.
pub trait Listed: Send {
    fn created_at(&self) -> i64;
    fn field(&self, path: &str) -> Vec<Json>;
    fn to_json(&self) -> Json;
}

impl<R: Resource> Listed for Stored<R> {
    fn created_at(&self) -> i64 {
        self.created_at
    }
    fn field(&self, path: &str) -> Vec<Json> {
        self.value.field(path)
    }
    fn to_json(&self) -> Json {
        self.value.to_json(self.created_at)
    }
}

/// Assets are listed as the catalogue keeps them, packed: only those answered are unpacked.
impl Listed for StoredAsset {
    fn created_at(&self) -> i64 {
        self.created_at
    }
    fn field(&self, path: &str) -> Vec<Json> {
        AssetFields::field(&self.packed, path)
    }
    fn to_json(&self) -> Json {
        self.packed.unpack().to_management_json(self.created_at)
    }
}

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
    /// What a listing filters, sorts and answers.
    type Listed: Listed;
    fn all(catalogue: &Catalogue) -> Vec<Self::Listed>;
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
        AssetFields::field(self, path)
    }
    fn get(catalogue: &Catalogue, id: &str) -> Option<Stored<Self>> {
        catalogue.asset(id)
    }
    type Listed = StoredAsset;
    fn all(catalogue: &Catalogue) -> Vec<StoredAsset> {
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
    type Listed = Stored<Self>;
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
    type Listed = Stored<Self>;
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

/// The five calls of a resource kind, each with its OpenAPI description: `$module::routes()` serves them under
/// `$base`.
macro_rules! resource_calls {
    ($module:ident, $kind:ty, $input:ident, $base:literal, $tag:literal, $what:literal) => {
        pub mod $module {
            use super::*;
            use crate::management::openapi::{IdResponse, QuerySpec, ReadErrors, WriteErrors};

            #[doc = concat!("Creates ", $what, ".")]
            #[utoipa::path(post, path = $base, tag = $tag, operation_id = concat!("create ", $what),
                request_body(content = crate::management::openapi::$input, content_type = "application/json"),
                responses((status = 200, description = "Created", body = IdResponse), ReadErrors, WriteErrors))]
            pub async fn create(state: State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
                super::create::<$kind>(state, body).await
            }

            #[doc = concat!("Replaces ", $what, " (named by `@id`).")]
            #[utoipa::path(put, path = $base, tag = $tag, operation_id = concat!("replace ", $what),
                request_body(content = crate::management::openapi::$input, content_type = "application/json"),
                responses((status = 204, description = "Replaced"), ReadErrors, WriteErrors))]
            pub async fn replace(state: State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
                super::replace::<$kind>(state, body).await
            }

            #[doc = concat!("Lists ", $what, " by an EDC QuerySpec.")]
            #[utoipa::path(post, path = concat!($base, "/request"), tag = $tag, operation_id = concat!("query ", $what),
                request_body(content = Option<QuerySpec>, content_type = "application/json"),
                responses((status = 200, description = "The selected resources", body = [crate::management::openapi::Object]), ReadErrors, WriteErrors))]
            pub async fn request(state: State<Shared>, body: Bytes) -> Result<Response, ManagementError> {
                super::request::<$kind>(state, body).await
            }

            #[doc = concat!("Reads ", $what, ".")]
            #[utoipa::path(get, path = concat!($base, "/{id}"), tag = $tag, operation_id = concat!("read ", $what),
                params(("id" = String, Path, description = "Its `@id`")),
                responses((status = 200, description = "Found", body = crate::management::openapi::Object), ReadErrors))]
            pub async fn read(state: State<Shared>, id: Path<String>) -> Result<Response, ManagementError> {
                super::read::<$kind>(state, id).await
            }

            #[doc = concat!("Deletes ", $what, " (refused while something refers to it).")]
            #[utoipa::path(delete, path = concat!($base, "/{id}"), tag = $tag, operation_id = concat!("delete ", $what),
                params(("id" = String, Path, description = "Its `@id`")),
                responses((status = 204, description = "Deleted"), ReadErrors, WriteErrors))]
            pub async fn delete(state: State<Shared>, id: Path<String>) -> Result<Response, ManagementError> {
                super::delete::<$kind>(state, id).await
            }

            /// The five routes.
            pub fn routes() -> OpenApiRouter<Shared> {
                OpenApiRouter::new()
                    .routes(utoipa_axum::routes!(create, replace))
                    .routes(utoipa_axum::routes!(request))
                    .routes(utoipa_axum::routes!(read, delete))
            }
        }
    };
}

resource_calls!(assets, Asset, AssetInput, "/assets", "Assets", "an asset");
resource_calls!(
    policy_definitions,
    PolicyDefinition,
    PolicyDefinitionInput,
    "/policydefinitions",
    "Policy definitions",
    "a policy definition"
);
resource_calls!(
    contract_definitions,
    ContractDefinition,
    ContractDefinitionInput,
    "/contractdefinitions",
    "Contract definitions",
    "a contract definition"
);

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
    let selected = spec.apply(R::all(&state.catalogue), |listed, field| match field {
        "createdAt" => vec![json!(listed.created_at())],
        other => listed.field(other),
    });
    Ok(axum::Json(Json::Array(selected.iter().map(Listed::to_json).collect())).into_response())
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
