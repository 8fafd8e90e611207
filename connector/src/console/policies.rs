//! Policies: the list, each policy's ODRL with its validation and an "explain" for a hypothetical requester, and a
//! builder for the common health terms beside the raw ODRL, checked as the operator types.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Value as Json, json};

use super::api::{Problem, criterion, encode};
use super::pages::{ListQuery, failed};
use super::texts::Texts;
use super::view::{self, Section, csrf, json_block, problem, table, text};
use super::{Ctx, Fields, Posted, all, one};
use crate::management::access::Need;
use hanse_vocab::ns::EDC;

/// The job templates a compute policy may allow.
use crate::compute::analysis::TEMPLATES;
/// Prohibitions offered as switches (ODRL actions).
const PROHIBITIONS: [&str; 3] = ["distribute", "commercialize", "reproduce"];

pub async fn list(ctx: Ctx, Query(query): Query<ListQuery>) -> Response {
    let t = ctx.t;
    let paging = query.paging();
    let mut filters = Vec::new();
    let q = ListQuery::given(&query.q).unwrap_or("").to_owned();
    if !q.is_empty() {
        filters.push(criterion("id", "ilike", format!("%{q}%")));
    }
    let listed = ctx.api().page(&ctx.session, "/management/v3/policydefinitions/request", &paging, filters, None).await;
    let (items, more) = match listed {
        Ok(listed) => listed,
        Err(p) => return failed(&ctx, Section::Policies, t.policies, &p),
    };
    let rows = items
        .iter()
        .map(|item| {
            let id = text(&item["@id"]);
            let terms = crate::catalog::commands::terms_line(&item["policy"]);
            html! {
                tr {
                    td { a href=(format!("/console/policies/{}", encode(&id))) { code { (id) } } }
                    td { (terms) }
                }
            }
        })
        .collect();
    let content = html! {
        form.filters method="get" role="search" {
            (view::field(t.search_by_id, "q", &q, "", false))
            button type="submit" { (t.filter) }
        }
        @if ctx.may(Need::Catalogue) { p { a.button href="/console/policies/new" { (t.new_policy) } } }
        (table(&[t.id, t.terms], rows, t.no_policies))
        (view::pager(t, "/console/policies", &format!("q={}", encode(&q)), paging, more))
    };
    ctx.page(Section::Policies, t.policies, content)
}

pub async fn detail(ctx: Ctx, Path(id): Path<String>) -> Response {
    render_detail(ctx, id, None).await
}

/// Explains how the policy decides for the requester the form describes; the policy's page with the trace.
pub async fn explain(Path(id): Path<String>, Posted { ctx, fields }: Posted) -> Response {
    let mut context = json!({});
    if !one(&fields, "participant").is_empty() {
        context["participant"] = json!(one(&fields, "participant"));
    }
    if !one(&fields, "purpose").is_empty() {
        context["purpose"] = json!(one(&fields, "purpose"));
    }
    if one(&fields, "membership") == "true" {
        context["claims"] = json!({"membership": "active"});
    }
    let types = super::listed(one(&fields, "credentialTypes"));
    if !types.is_empty() {
        context["credentialTypes"] = json!(types);
    }
    let action = match one(&fields, "action") {
        "" => "use",
        action => action,
    };
    let uri = format!("/management/v3/policydefinitions/{}/explain", encode(&id));
    let answer = ctx.api().post(&ctx.session, &uri, &json!({"action": action, "context": context})).await;
    render_detail(ctx, id, Some((fields, answer))).await
}

async fn render_detail(ctx: Ctx, id: String, explained: Option<(Fields, Result<Json, Problem>)>) -> Response {
    let t = ctx.t;
    let title = format!("{} {id}", t.policy);
    let path = encode(&id);
    let (stored_uri, validate_uri, empty) = (
        format!("/management/v3/policydefinitions/{path}"),
        format!("/management/v3/policydefinitions/{path}/validate"),
        json!({}),
    );
    let (stored, validation) =
        tokio::join!(ctx.api().get(&ctx.session, &stored_uri), ctx.api().post(&ctx.session, &validate_uri, &empty),);
    let stored = match stored {
        Ok(stored) => stored,
        Err(p) => return failed(&ctx, Section::Policies, &title, &p),
    };
    let (fields, answer) = match explained {
        Some((fields, answer)) => (fields, Some(answer)),
        None => (Vec::new(), None),
    };
    let content = html! {
        p { (crate::catalog::commands::terms_line(&stored["policy"])) }
        @match &validation {
            Ok(report) => { (issues(t, report)) }
            Err(p) => { (problem(t, p)) }
        }
        (json_block(t.raw_odrl, &without_context(&stored["policy"]), true))
        section aria-labelledby="explain" {
            h2 #explain { (t.explain) }
            p { (t.explain_hint) }
            form method="post" action=(format!("/console/policies/{path}/explain"))
                hx-post=(format!("/console/policies/{path}/explain")) hx-target="#explanation" hx-select="#explanation" hx-swap="outerHTML" {
                (csrf(&ctx))
                (view::select(t.action, "action", &[("use".into(), "use".into()), ("compute".into(), "compute".into())], one(&fields, "action")))
                (view::field(t.requester_did, "participant", one(&fields, "participant"), t.requester_hint, false))
                (purpose_select(t, "purpose", one(&fields, "purpose"), true))
                (view::check(t.holds_membership, "membership", one(&fields, "membership") == "true"))
                (view::field(t.credential_types, "credentialTypes", one(&fields, "credentialTypes"), t.credential_types_hint, false))
                button #explain-button type="submit" { (t.explain) }
            }
            div #explanation aria-live="polite" {
                @match &answer {
                    None => {}
                    Some(Ok(answer)) => { (view::trace(t, &answer["decision"])) }
                    Some(Err(p)) => { (problem(t, p)) }
                }
            }
        }
    };
    ctx.page(Section::Policies, &title, content)
}

/// A policy as an operator reads it: its rules, without the bundled JSON-LD context.
fn without_context(policy: &Json) -> Json {
    let mut shown = policy.clone();
    if let Some(map) = shown.as_object_mut() {
        map.remove("@context");
    }
    shown
}

/// A validation report's errors and warnings.
fn issues(t: &Texts, report: &Json) -> Markup {
    let errors = report["errors"].as_array().cloned().unwrap_or_default();
    let warnings = report["warnings"].as_array().cloned().unwrap_or_default();
    html! {
        div #policy-issues {
            @if errors.is_empty() { p.notice.ok role="status" { (t.policy_valid) } }
            @else { div.notice.error role="alert" { strong { (t.policy_invalid) } ul { @for e in &errors { li { (text(e)) } } } } }
            @if !warnings.is_empty() { div.notice { strong { (t.warnings) } ul { @for w in &warnings { li { (text(w)) } } } } }
        }
    }
}

/// The known purposes as a choice, each indented under the one it narrows; the empty choice is "no purpose declared"
/// for a requester, "any purpose" for a policy.
fn purpose_select(t: &Texts, name: &str, chosen: &str, for_requester: bool) -> Markup {
    let empty = if for_requester { t.no_purpose } else { t.any_purpose };
    let mut options = vec![(String::new(), empty.to_owned())];
    for purpose in hanse_policy::profile::known_purposes() {
        let mut depth = 0;
        let mut current = purpose;
        while let Some(broader) = hanse_policy::profile::broader_purpose(current) {
            depth += 1;
            current = broader;
        }
        let short = hanse_policy::term::short(purpose);
        options.push((short.clone(), format!("{}{short}", "\u{a0}\u{a0}".repeat(depth))));
    }
    view::select(t.purpose, name, &options, chosen)
}

// ---- the builder ----

/// The ODRL policy the builder's fields describe.
fn built(fields: &Fields) -> Json {
    let action = match one(fields, "action") {
        "compute" => "hanse:compute",
        _ => "use",
    };
    let mut constraints = Vec::new();
    let purpose = one(fields, "purpose");
    if !purpose.is_empty() {
        constraints.push(json!({"leftOperand": "purpose", "operator": "isA", "rightOperand": purpose}));
    }
    if one(fields, "membership") == "true" {
        constraints.push(json!({"leftOperand": "membership", "operator": "eq", "rightOperand": "active"}));
    }
    if let Ok(k) = one(fields, "minCellCount").parse::<u64>() {
        constraints.push(json!({"leftOperand": "hanse:minCellCount", "operator": "gteq", "rightOperand": k}));
    }
    let templates = all(fields, "template");
    if !templates.is_empty() {
        constraints.push(json!({"leftOperand": "hanse:jobTemplate", "operator": "isAnyOf", "rightOperand": templates}));
    }
    let expiry = one(fields, "expires");
    if !expiry.is_empty() {
        constraints.push(
            json!({"leftOperand": "dateTime", "operator": "lteq", "rightOperand": format!("{expiry}T23:59:59Z")}),
        );
    }
    let mut permission = json!({"action": action});
    match constraints.len() {
        0 => {}
        1 => permission["constraint"] = json!(constraints),
        _ => permission["constraint"] = json!({"and": constraints}),
    }
    let mut policy =
        json!({"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set", "permission": [permission]});
    let prohibited = all(fields, "prohibit");
    if !prohibited.is_empty() {
        policy["prohibition"] = Json::Array(prohibited.iter().map(|a| json!({"action": a})).collect());
    }
    policy
}

/// The policy the form submits: the raw ODRL when that mode is chosen, or the builder's.
fn submitted(fields: &Fields) -> Result<Json, String> {
    if one(fields, "mode") == "raw" {
        serde_json::from_str(one(fields, "odrl")).map_err(|e| format!("the ODRL is not JSON: {e}"))
    } else {
        Ok(built(fields))
    }
}

/// What is wrong with the submitted policy (pure: the policy engine's own checks, without a call).
fn checked(fields: &Fields) -> (Option<Json>, Vec<(bool, String)>) {
    let policy = match submitted(fields) {
        Ok(policy) => policy,
        Err(message) => return (None, vec![(true, message)]),
    };
    let mut found = Vec::new();
    if one(fields, "id").is_empty() {
        found.push((true, "id: is required".to_owned()));
    }
    match hanse_policy::Policy::from_json(&policy) {
        Err(error) => found.push((true, format!("{}: {}", error.path, error.message))),
        Ok(parsed) => {
            for issue in hanse_policy::validate_at(&parsed, chrono::Utc::now()) {
                found.push((issue.severity == hanse_policy::Severity::Error, issue.to_string()));
            }
        }
    }
    (Some(policy), found)
}

fn check_fragment(t: &Texts, fields: &Fields) -> Markup {
    let (policy, found) = checked(fields);
    let errors = found.iter().filter(|(error, _)| *error).count();
    html! {
        div #policy-check aria-live="polite" {
            @if errors == 0 { p.notice.ok role="status" { (t.policy_valid) } }
            ul.issues {
                @for (error, message) in &found {
                    li class=(if *error { "bad" } else { "warn" }) { (message) }
                }
            }
            @if let Some(policy) = &policy {
                h3 { (t.generated_odrl) }
                pre.json #generated { (serde_json::to_string_pretty(policy).unwrap_or_default()) }
            }
        }
    }
}

pub async fn builder(ctx: Ctx) -> Response {
    builder_page(ctx, Vec::new(), StatusCode::OK, None)
}

fn builder_page(ctx: Ctx, fields: Fields, status: StatusCode, refused: Option<Problem>) -> Response {
    let t = ctx.t;
    let chosen: Vec<&str> = all(&fields, "template");
    let prohibited: Vec<&str> = all(&fields, "prohibit");
    let raw = one(&fields, "mode") == "raw";
    let content = html! {
        @if let Some(refused) = &refused { (problem(t, refused)) }
        form #builder method="post" action="/console/policies/new"
            hx-post="/console/policies/check" hx-trigger="input changed delay:300ms, change" hx-target="#policy-check" hx-swap="outerHTML" {
            (csrf(&ctx))
            div.columns {
                fieldset {
                    legend { (t.builder) }
                    (view::field(t.policy_id, "id", one(&fields, "id"), t.policy_id_hint, true))
                    (view::select(t.mode, "mode", &[("builder".into(), t.mode_builder.into()), ("raw".into(), t.mode_raw.into())], if raw { "raw" } else { "builder" }))
                    (view::select(t.action, "action", &[("use".into(), t.action_use.into()), ("compute".into(), t.action_compute.into())], one(&fields, "action")))
                    (purpose_select(t, "purpose", one(&fields, "purpose"), false))
                    (view::check(t.requires_membership, "membership", one(&fields, "membership") == "true"))
                    (view::field(t.min_cell_count, "minCellCount", one(&fields, "minCellCount"), t.min_cell_count_hint, false))
                    fieldset.inline {
                        legend { (t.job_templates) }
                        @for template in TEMPLATES {
                            label { input type="checkbox" name="template" value=(template) checked[chosen.contains(&template)]; " " (template) }
                        }
                    }
                    div.field {
                        label for="expires" { (t.expires) }
                        input #expires type="date" name="expires" value=(one(&fields, "expires"));
                    }
                    fieldset.inline {
                        legend { (t.prohibitions) }
                        @for action in PROHIBITIONS {
                            label { input type="checkbox" name="prohibit" value=(action) checked[prohibited.contains(&action)]; " " (action) }
                        }
                    }
                }
                fieldset {
                    legend { (t.raw_odrl) }
                    div.field {
                        label for="odrl" { (t.raw_odrl_label) }
                        textarea #odrl name="odrl" rows="18" spellcheck="false" { (one(&fields, "odrl")) }
                    }
                    (check_fragment(t, &fields))
                }
            }
            button #save-policy type="submit" { (t.save_policy) }
        }
    };
    let mut response = ctx.page(Section::Policies, t.new_policy, content);
    *response.status_mut() = status;
    response
}

/// Checks the builder's fields as the operator types: the issues and the ODRL they make (a fragment).
pub async fn check(Posted { ctx, fields }: Posted) -> Response {
    super::html_response(check_fragment(ctx.t, &fields))
}

pub async fn create(Posted { ctx, fields }: Posted) -> Response {
    let (policy, found) = checked(&fields);
    let Some(policy) = policy.filter(|_| !found.iter().any(|(error, _)| *error)) else {
        return builder_page(ctx, fields, StatusCode::UNPROCESSABLE_ENTITY, None);
    };
    let id = one(&fields, "id").to_owned();
    let body = json!({"@context": {"@vocab": EDC}, "@id": id, "policy": policy});
    match ctx.api().post(&ctx.session, "/management/v3/policydefinitions", &body).await {
        Ok(_) => ctx.back(&format!("/console/policies/{}", encode(&id)), Ok(format!("{} {id}", ctx.t.policy_created))),
        Err(p) => builder_page(ctx, fields, p.status, Some(p)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(pairs: &[(&str, &str)]) -> Fields {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn the_builder_writes_the_health_terms_as_odrl() {
        let policy = built(&fields(&[
            ("action", "compute"),
            ("purpose", "DUO:0000042"),
            ("membership", "true"),
            ("minCellCount", "5"),
            ("template", "glm"),
            ("template", "crosstab"),
            ("expires", "2030-01-31"),
            ("prohibit", "distribute"),
        ]));
        let parsed = hanse_policy::Policy::from_json(&policy).expect("the builder writes ODRL the engine reads");
        assert!(hanse_policy::validate(&parsed).iter().all(|i| i.severity != hanse_policy::Severity::Error));
        assert_eq!(
            crate::catalog::commands::terms_line(&policy),
            "hanse:compute if purpose isA DUO:0000042 and claim membership eq \"active\" and hanse:minCellCount gteq 5 \
             and hanse:jobTemplate isAnyOf [\"glm\", \"crosstab\"] and dateTime lteq 2030-01-31T23:59:59+00:00; \
             not distribute"
        );
        let open = built(&fields(&[]));
        assert_eq!(open["permission"], json!([{"action": "use"}]));
    }

    #[test]
    fn a_check_names_what_is_missing_or_wrong() {
        let (_, found) = checked(&fields(&[("mode", "raw"), ("odrl", "{not json")]));
        assert!(found[0].1.contains("not JSON"), "{found:?}");
        let (_, found) = checked(&fields(&[("purpose", "DUO:0000042")]));
        assert!(found.iter().any(|(error, m)| *error && m.contains("id")), "{found:?}");
        let (_, found) = checked(&fields(&[("id", "p"), ("minCellCount", "5")]));
        assert!(!found.iter().any(|(error, _)| *error), "{found:?}");
    }
}
