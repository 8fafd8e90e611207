//! `POST /management/v3/policydefinitions/{id}/validate` and `/explain`: what is wrong with a stored policy, and how
//! it decides a given request.

use super::Path;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use hanse_policy::{RequestContext, Severity};
use serde_json::{Value as Json, json};

use super::ManagementError;
use crate::catalog::model::{ALLOW_ALL_NOTE, PolicyDefinition};
use crate::state::Shared;

/// `{"isValid": bool, "errors": [...], "warnings": [...]}` in the EDC `PolicyValidationResult` shape.
#[utoipa::path(post, path = "/policydefinitions/{id}/validate", tag = "Policy definitions", operation_id = "validate a policy definition", params(("id" = String, Path, description = "The policy definition id")), responses((status = 200, description = "`isValid`, `errors`, `warnings`", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn validate(State(state): State<Shared>, Path(id): Path<String>) -> Result<Response, ManagementError> {
    let stored = state
        .catalogue
        .policy(&id)
        .ok_or_else(|| ManagementError::NotFound(format!("policy definition `{id}` not found")))?;
    let issues = hanse_policy::validate_at(&stored.value.policy, chrono::Utc::now());
    let text =
        |severity| -> Vec<String> { issues.iter().filter(|i| i.severity == severity).map(|i| i.to_string()).collect() };
    let errors = text(Severity::Error);
    Ok(axum::Json(json!({
        "@context": hanse_self_descriptions::dcat::management_context(),
        "@type": "PolicyValidationResult",
        "isValid": errors.is_empty(),
        "errors": errors,
        "warnings": text(Severity::Warning),
        "issues": issues,
        "notes": notes(&stored.value),
    }))
    .into_response())
}

/// Body: `{"action": "use", "context": {RequestContext}}` (both optional; the time defaults to now). Answers the
/// decision with its full trace.
#[utoipa::path(post, path = "/policydefinitions/{id}/explain", tag = "Policy definitions", operation_id = "explain a decision", params(("id" = String, Path, description = "The policy definition id")), request_body(content = Option<crate::management::openapi::Object>, content_type = "application/json"), responses((status = 200, description = "The decision with its full trace", body = crate::management::openapi::Object), crate::management::openapi::ReadErrors, crate::management::openapi::WriteErrors))]
pub async fn explain(
    State(state): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, ManagementError> {
    let stored = state
        .catalogue
        .policy(&id)
        .ok_or_else(|| ManagementError::NotFound(format!("policy definition `{id}` not found")))?;
    let body = super::optional_body(&body)?;
    let action = body.get("action").and_then(Json::as_str).unwrap_or("use").to_owned();
    let mut context: RequestContext = match body.get("context") {
        None | Some(Json::Null) => RequestContext::default(),
        Some(context) => {
            serde_json::from_value(context.clone()).map_err(|e| ManagementError::field("context", e.to_string()))?
        }
    };
    context.now.get_or_insert_with(chrono::Utc::now);
    let decision = hanse_policy::evaluate(&stored.value.policy, &action, &context);
    Ok(axum::Json(json!({"policyId": id, "decision": decision, "notes": notes(&stored.value)})).into_response())
}

/// What an operator should know about how Hanse reads a stored policy.
fn notes(definition: &PolicyDefinition) -> Vec<&'static str> {
    if definition.allow_all { vec![ALLOW_ALL_NOTE] } else { Vec::new() }
}
