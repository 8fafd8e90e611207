//! Datasets: the list, each dataset's DCAT description, offers and where its data went (its lineage), and the
//! four-step "add a data source" wizard — 1 kind of source, 2 the file or the HTTP source, 3 the DCAT /
//! HealthDCAT-AP description, 4 the offer. The answers wait in the session until the last step publishes them
//! through the API: the table upload (or the asset) first, then the offer.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Multipart, Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Map, Value as Json, json};

use super::api::{Problem, criterion, encode};
use super::pages::{ListQuery, failed, offer_body};
use super::texts::Texts;
use super::view::{self, Section, csrf, json_block, problem, state, table, text};
use super::{Ctx, Fields, Posted, one};
use crate::management::access::Need;
use hanse_vocab::ns::EDC;

/// What the wizard has gathered.
#[derive(Clone, Default)]
pub struct Draft {
    /// `csv` or `http`.
    pub kind: String,
    pub id: String,
    /// The uploaded CSV file, removed when the draft ends.
    pub upload: Option<Arc<tempfile::TempPath>>,
    pub file_name: String,
    /// The schema (JSON), inferred from the upload and checked by the operator.
    pub schema: String,
    /// The HTTP source: its address, the header the backend wants and its value.
    pub base_url: String,
    pub auth_key: String,
    pub auth_code: String,
    /// The step-3 answers (DCAT property names).
    pub description: Fields,
}

/// The DCAT / HealthDCAT-AP fields of step 3: name, whether required, and whether a number.
const DESCRIPTION: &[(&str, bool, bool)] = &[
    ("title", true, false),
    ("description", true, false),
    ("keyword", false, false),
    ("theme", false, false),
    ("publisher", false, false),
    ("license", false, false),
    ("accessRights", false, false),
    ("spatial", false, false),
    ("language", false, false),
    ("healthCategory", false, false),
    ("healthTheme", false, false),
    ("populationCoverage", false, false),
    ("minTypicalAge", false, true),
    ("maxTypicalAge", false, true),
    ("numberOfUniqueIndividuals", false, true),
    ("hdab", false, false),
    ("contactPoint", false, false),
];

/// EU data themes a health catalogue uses most.
const THEMES: &[(&str, &str)] = &[
    ("http://publications.europa.eu/resource/authority/data-theme/HEAL", "Health"),
    ("http://publications.europa.eu/resource/authority/data-theme/SOCI", "Population and society"),
    ("http://publications.europa.eu/resource/authority/data-theme/TECH", "Science and technology"),
    ("http://publications.europa.eu/resource/authority/data-theme/GOVE", "Government and public sector"),
];

// ---- the list and a dataset ----

pub async fn datasets(ctx: Ctx, Query(query): Query<ListQuery>) -> Response {
    let t = ctx.t;
    let paging = query.paging();
    let q = ListQuery::given(&query.q).unwrap_or("").to_owned();
    let mut filters = Vec::new();
    if !q.is_empty() {
        filters.push(criterion("id", "ilike", format!("%{q}%")));
    }
    let api = ctx.api();
    let (listed, pending) = tokio::join!(
        api.page(&ctx.session, "/management/v3/assets/request", &paging, filters, None),
        api.get(&ctx.session, "/management/v3/approvals?status=pending&kind=publication&limit=1000"),
    );
    let (items, more) = match listed {
        Ok(listed) => listed,
        Err(p) => return failed(&ctx, Section::Datasets, t.datasets, &p),
    };
    let held: Vec<String> =
        pending.ok().and_then(|p| p.as_array().cloned()).unwrap_or_default().iter().map(|p| text(&p["id"])).collect();
    let catalogue = &ctx.state().catalogue;
    let rows = items
        .iter()
        .map(|asset| {
            let id = text(&asset["@id"]);
            html! {
                tr {
                    td { a href=(format!("/console/datasets/{}", encode(&id))) { code { (id) } } }
                    td { (text(property(&asset["properties"], "title"))) }
                    td { (text(&asset["dataAddress"]["type"])) }
                    td { (text(property(&asset["properties"], "numberOfRecords"))) }
                    td { (catalogue.offers_for(&id).len()) }
                    td { @if held.contains(&id) { (state(t.held_for_approval)) } @else { (state(t.published)) } }
                }
            }
        })
        .collect();
    let content = html! {
        @if ctx.may(Need::Catalogue) { p { a.button #add-source href="/console/datasets/new" { (t.add_data_source) } } }
        form.filters method="get" role="search" {
            (view::field(t.search_by_id, "q", &q, "", false))
            button type="submit" { (t.filter) }
        }
        (table(&[t.id, t.title, t.source, t.records, t.offers, t.publication], rows, t.no_datasets))
        (view::pager(t, "/console/datasets", &format!("q={}", encode(&q)), paging, more))
    };
    ctx.page(Section::Datasets, t.datasets, content)
}

pub async fn dataset(ctx: Ctx, Path(id): Path<String>) -> Response {
    let t = ctx.t;
    let title = format!("{} {id}", t.dataset);
    let api = ctx.api();
    let lineage_query = format!(
        "PREFIX prov: <http://www.w3.org/ns/prov#> \
         SELECT ?activity ?type ?agent ?plan ?time WHERE {{ GRAPH <{graph}> {{ \
           ?version prov:specializationOf <{dataset}> . ?activity prov:used ?version . \
           OPTIONAL {{ ?activity a ?type }} \
           OPTIONAL {{ ?activity prov:qualifiedAssociation ?q . ?q prov:agent ?agent . OPTIONAL {{ ?q prov:hadPlan ?plan }} }} \
           OPTIONAL {{ ?activity prov:startedAtTime ?time }} }} }} ORDER BY DESC(?time) LIMIT 50",
        graph = crate::lineage::GRAPH,
        dataset = crate::catalog::rdf::dataset_iri(&id),
    );
    let (asset_uri, lineage_body) = (format!("/management/v3/assets/{}", encode(&id)), json!({"query": lineage_query}));
    let (asset, pending, lineage) = tokio::join!(
        api.get(&ctx.session, &asset_uri),
        api.get(&ctx.session, "/management/v3/approvals?status=pending&kind=publication&limit=1000"),
        api.post(&ctx.session, "/management/v3/lineage/sparql", &lineage_body),
    );
    let asset = match asset {
        Ok(asset) => asset,
        Err(p) => return failed(&ctx, Section::Datasets, &title, &p),
    };
    let held =
        pending.ok().and_then(|p| p.as_array().cloned()).unwrap_or_default().iter().any(|p| p["id"] == json!(id));
    let offers = ctx.state().catalogue.offers_for(&id);
    let properties = asset["properties"].as_object().cloned().unwrap_or_default();
    let address = &asset["dataAddress"];
    let uses: Vec<Json> =
        lineage.as_ref().ok().and_then(|l| l["results"]["bindings"].as_array().cloned()).unwrap_or_default();
    let content = html! {
        @if held {
            div.notice role="status" {
                (t.held_for_approval) " "
                @if ctx.may(Need::Decide) {
                    (view::action_button(&ctx, &format!("/console/datasets/{}/publication/approve", encode(&id)), t.approve, Some(t.reason), false))
                    (view::action_button(&ctx, &format!("/console/datasets/{}/publication/reject", encode(&id)), t.reject, Some(t.reason), true))
                }
            }
        }
        section aria-labelledby="description" {
            h2 #description { (t.dcat_description) }
            dl.facts {
                @for (name, value) in &properties {
                    dt { (name) } dd { (text(value)) }
                }
            }
        }
        section aria-labelledby="distribution" {
            h2 #distribution { (t.distribution) }
            dl.facts {
                dt { (t.source) } dd { (text(&address["type"])) }
                @if let Some(url) = address["baseUrl"].as_str() { dt { (t.base_url) } dd { code { (url) } } }
                @if let Some(path) = address["path"].as_str().or(address["file"].as_str()) { dt { (t.file) } dd { code { (path) } } }
            }
        }
        section aria-labelledby="offers" {
            h2 #offers { (t.offers) }
            (table(&[t.offer, t.terms], offers.iter().map(|offer| html! {
                tr { td { code { (offer.definition_id) } } td { (crate::catalog::commands::terms_line(&offer.json)) } }
            }).collect(), t.no_offers_for_dataset))
        }
        section aria-labelledby="went" {
            h2 #went { (t.where_data_went) }
            @match &lineage {
                Err(p) => { (problem(t, p)) }
                Ok(_) => {
                    (table(&[t.time, t.activity, t.who, t.under], uses.iter().map(|row| html! {
                        tr {
                            td { (binding(&row["time"])) }
                            td { (short(&binding(&row["type"]))) " " code { (short(&binding(&row["activity"]))) } }
                            td { code { (binding(&row["agent"])) } }
                            td { code { (short(&binding(&row["plan"]))) } }
                        }
                    }).collect(), t.no_uses))
                    p { a href=(format!("/management/v3/lineage?dataset={}", encode(&id))) { (t.lineage_export) } }
                }
            }
        }
        (json_block(t.raw_json, &asset, false))
    };
    ctx.page(Section::Datasets, &title, content)
}

/// A DCAT property of an asset's management JSON by its local name, however it is prefixed (`dct:title`).
fn property<'a>(properties: &'a Json, local: &str) -> &'a Json {
    properties
        .as_object()
        .and_then(|map| map.iter().find(|(key, _)| key.rsplit([':', '/', '#']).next() == Some(local)))
        .map_or(&Json::Null, |(_, value)| value)
}

fn binding(value: &Json) -> String {
    value["value"].as_str().unwrap_or("–").to_owned()
}

fn short(iri: &str) -> String {
    iri.rsplit(['#', '/', ':']).next().unwrap_or(iri).to_owned()
}

// ---- the wizard ----

#[derive(Deserialize)]
pub struct StepQuery {
    step: Option<u8>,
}

pub async fn step(ctx: Ctx, Query(query): Query<StepQuery>) -> Response {
    let draft = ctx.session.draft.clone().unwrap_or_default();
    let step = query.step.unwrap_or(1).clamp(1, 4);
    // A later step needs the earlier ones' answers.
    let reached = reached(&draft);
    if step > reached {
        return Redirect::to(&format!("/console/datasets/new?step={reached}")).into_response();
    }
    render(&ctx, step, &draft, None, StatusCode::OK)
}

/// The furthest step the draft's answers open.
fn reached(draft: &Draft) -> u8 {
    let source = match draft.kind.as_str() {
        "csv" => draft.upload.is_some() && !draft.schema.is_empty(),
        "http" => !draft.base_url.is_empty(),
        _ => return 1,
    };
    match (source, !draft.description.is_empty()) {
        (false, _) => 2,
        (true, false) => 3,
        (true, true) => 4,
    }
}

fn render(ctx: &Ctx, step: u8, draft: &Draft, refused: Option<&Problem>, status: StatusCode) -> Response {
    let t = ctx.t;
    let steps = [t.step_kind, t.step_source, t.step_description, t.step_offer];
    let body = match step {
        1 => step_kind(ctx, draft),
        2 => step_source(ctx, draft),
        3 => step_description(ctx, draft),
        _ => step_offer(ctx, draft),
    };
    let content = html! {
        ol.steps aria-label=(t.add_data_source) {
            @for (i, name) in steps.iter().enumerate() {
                @let number = i as u8 + 1;
                li aria-current=[(number == step).then_some("step")] class=(if number < step { "done" } else { "" }) {
                    @if number < step { a href=(format!("/console/datasets/new?step={number}")) { (number) ". " (name) } }
                    @else { (number) ". " (name) }
                }
            }
        }
        @if let Some(refused) = refused { (problem(t, refused)) }
        (body)
    };
    let mut response = ctx.page(Section::Datasets, t.add_data_source, content);
    *response.status_mut() = status;
    response
}

fn step_kind(ctx: &Ctx, draft: &Draft) -> Markup {
    let t = ctx.t;
    html! {
        form method="post" action="/console/datasets/new" {
            (csrf(ctx))
            input type="hidden" name="step" value="1";
            (view::field(t.dataset_id, "id", &draft.id, t.dataset_id_hint, true))
            fieldset {
                legend { (t.kind_of_source) }
                label.choice { input type="radio" name="kind" value="csv" checked[draft.kind != "http"]; " " strong { (t.source_csv) } " — " (t.source_csv_hint) }
                label.choice { input type="radio" name="kind" value="http" checked[draft.kind == "http"]; " " strong { (t.source_http) } " — " (t.source_http_hint) }
            }
            button #next type="submit" { (t.next_step) }
        }
    }
}

fn step_source(ctx: &Ctx, draft: &Draft) -> Markup {
    let t = ctx.t;
    if draft.kind == "http" {
        return html! {
            form method="post" action="/console/datasets/new" {
                (csrf(ctx))
                input type="hidden" name="step" value="2";
                (view::field(t.base_url, "baseUrl", &draft.base_url, t.base_url_hint, true))
                (view::field(t.auth_header, "authKey", &draft.auth_key, t.auth_header_hint, false))
                div.field {
                    label for="authCode" { (t.auth_value) }
                    input #authCode type="password" name="authCode" autocomplete="off" value=(draft.auth_code);
                    small { (t.auth_value_hint) }
                }
                button #next type="submit" { (t.next_step) }
            }
        };
    }
    html! {
        form method="post" action="/console/datasets/new/upload" enctype="multipart/form-data" {
            (csrf(ctx))
            div.field {
                label for="file" { (t.csv_file) }
                input #file type="file" name="file" accept=".csv,text/csv" required;
                small { (t.csv_file_hint) }
            }
            button #upload type="submit" { (t.upload) }
        }
        @if draft.upload.is_some() {
            form method="post" action="/console/datasets/new" {
                (csrf(ctx))
                input type="hidden" name="step" value="2";
                p { (t.uploaded) " " code { (draft.file_name) } }
                div.field {
                    label for="schema" { (t.schema) }
                    textarea #schema name="schema" rows="14" spellcheck="false" { (draft.schema) }
                    small { (t.schema_hint) }
                }
                button #next type="submit" { (t.next_step) }
            }
        }
    }
}

fn step_description(ctx: &Ctx, draft: &Draft) -> Markup {
    let t = ctx.t;
    let value = |name: &str| one(&draft.description, name).to_owned();
    let themes: Vec<(String, String)> = THEMES.iter().map(|(iri, name)| (iri.to_string(), name.to_string())).collect();
    let rights: Vec<(String, String)> = std::iter::once((String::new(), t.not_stated.to_owned()))
        .chain(hanse_self_descriptions::dcat::ACCESS_RIGHT_CONCEPTS.iter().map(|c| (c.to_string(), c.to_string())))
        .collect();
    html! {
        form method="post" action="/console/datasets/new" {
            (csrf(ctx))
            input type="hidden" name="step" value="3";
            p { (t.description_hint) }
            @for (name, required, number) in DESCRIPTION {
                @match *name {
                    "theme" => { (view::select(t.field_label(name), name, &themes, &value(name))) }
                    "accessRights" => { (view::select(t.field_label(name), name, &rights, &value(name))) }
                    "description" => {
                        div.field {
                            label for="description" { (t.field_label(name)) " *" }
                            textarea #description name="description" rows="4" required { (value(name)) }
                        }
                    }
                    _ => {
                        div.field {
                            label for=(name) { (t.field_label(name)) @if *required { " *" } }
                            input #(name) name=(name) value=(value(name)) required[*required]
                                type=(if *number { "number" } else { "text" }) min=[number.then_some("0")];
                        }
                    }
                }
            }
            button #next type="submit" { (t.next_step) }
        }
    }
}

fn step_offer(ctx: &Ctx, draft: &Draft) -> Markup {
    let t = ctx.t;
    let policies = ctx.policy_choices();
    html! {
        @if policies.is_empty() {
            p.empty { (t.offer_needs_policy) " " a href="/console/policies/new" { (t.new_policy) } }
        } @else {
            form method="post" action="/console/datasets/new" {
                (csrf(ctx))
                input type="hidden" name="step" value="4";
                (view::field(t.offer_id, "offer", &format!("{}-offer", draft.id), t.offer_id_hint, true))
                (view::select(t.access_policy, "access", &policies, ""))
                (view::select(t.contract_policy, "terms", &policies, ""))
                (view::check(t.manual_approval_switch, "manualApproval", false))
                (view::check(t.manual_start_switch, "manualStart", false))
                button #publish type="submit" { (t.publish) }
            }
        }
    }
}

/// A step's answers: kept in the draft, then the next step (or, after step 4, the dataset published).
pub async fn answer(Posted { ctx, fields }: Posted) -> Response {
    let t = ctx.t;
    let mut draft = ctx.session.draft.clone().unwrap_or_default();
    let refuse = |ctx: &Ctx, step: u8, draft: &Draft, message: String| {
        render(
            ctx,
            step,
            draft,
            Some(&Problem { status: StatusCode::UNPROCESSABLE_ENTITY, message }),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
    };
    match one(&fields, "step") {
        "1" => {
            let id = one(&fields, "id");
            if let Err(message) = hanse_core::ids::check_id(id) {
                draft.id = id.to_owned();
                return refuse(&ctx, 1, &draft, format!("{}: {message}", t.dataset_id));
            }
            let kind = if one(&fields, "kind") == "http" { "http" } else { "csv" };
            if kind != draft.kind || id != draft.id {
                draft = Draft { kind: kind.into(), id: id.into(), ..Draft::default() };
            }
            ctx.keep_draft(Some(draft));
            Redirect::to("/console/datasets/new?step=2").into_response()
        }
        "2" if draft.kind == "http" => {
            let url = one(&fields, "baseUrl");
            if !reqwest::Url::parse(url).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.has_host()) {
                return refuse(&ctx, 2, &draft, format!("{}: `{url}` {}", t.base_url, t.not_http_url));
            }
            draft.base_url = url.into();
            draft.auth_key = one(&fields, "authKey").into();
            draft.auth_code = one(&fields, "authCode").into();
            ctx.keep_draft(Some(draft));
            Redirect::to("/console/datasets/new?step=3").into_response()
        }
        "2" => {
            let schema = one(&fields, "schema");
            let checked = serde_json::from_str::<Json>(schema)
                .map_err(|e| e.to_string())
                .and_then(|json| hanse_compute::table::Schema::from_json(&json));
            draft.schema = schema.into();
            if let Err(message) = checked {
                return refuse(&ctx, 2, &draft, message);
            }
            ctx.keep_draft(Some(draft));
            Redirect::to("/console/datasets/new?step=3").into_response()
        }
        "3" => {
            draft.description =
                DESCRIPTION.iter().map(|(name, ..)| (name.to_string(), one(&fields, name).to_owned())).collect();
            if let Err(message) = described(&draft.description, t) {
                return refuse(&ctx, 3, &draft, message);
            }
            ctx.keep_draft(Some(draft));
            Redirect::to("/console/datasets/new?step=4").into_response()
        }
        "4" if reached(&draft) == 4 => publish(ctx, draft, &fields).await,
        _ => Redirect::to("/console/datasets/new").into_response(),
    }
}

/// Checks step 3: required fields given, numbers whole and not negative, ages in order.
fn described(description: &Fields, t: &Texts) -> Result<Map<String, Json>, String> {
    let mut properties = Map::new();
    for (name, required, number) in DESCRIPTION {
        let value = one(description, name);
        if value.is_empty() {
            if *required {
                return Err(format!("{}: {}", t.field_label(name), t.is_required));
            }
            continue;
        }
        let value = if *number {
            match value.parse::<u64>() {
                Ok(n) => json!(n),
                Err(_) => return Err(format!("{}: `{value}` {}", t.field_label(name), t.not_a_count)),
            }
        } else if *name == "keyword" {
            json!(super::listed(value))
        } else {
            json!(value)
        };
        properties.insert(name.to_string(), value);
    }
    if let (Some(low), Some(high)) = (properties.get("minTypicalAge"), properties.get("maxTypicalAge"))
        && low.as_u64() > high.as_u64()
    {
        return Err(t.ages_in_order.to_owned());
    }
    Ok(properties)
}

/// Step 4: the table (or the asset), then the offer; the dataset's page follows. A refusal returns to the step
/// it concerns, with the answers kept.
async fn publish(ctx: Ctx, draft: Draft, fields: &Fields) -> Response {
    let t = ctx.t;
    let Ok(properties) = described(&draft.description, t) else { return render(&ctx, 3, &draft, None, StatusCode::OK) };
    let stored = match draft.kind.as_str() {
        "csv" => upload_table(&ctx, &draft, &properties).await,
        _ => {
            let mut address = json!({"type": "HttpData", "baseUrl": draft.base_url});
            if !draft.auth_code.is_empty() {
                address["authKey"] = json!(if draft.auth_key.is_empty() { "Authorization" } else { &draft.auth_key });
                address["authCode"] = json!(draft.auth_code);
            }
            let body =
                json!({"@context": {"@vocab": EDC}, "@id": draft.id, "properties": properties, "dataAddress": address});
            ctx.api().post(&ctx.session, "/management/v3/assets", &body).await
        }
    };
    if let Err(refused) = stored {
        return render(
            &ctx,
            if refused.message.contains("line ") { 2 } else { 3 },
            &draft,
            Some(&refused),
            refused.status,
        );
    }
    let offer = offer_body(
        one(fields, "offer"),
        one(fields, "access"),
        one(fields, "terms"),
        &[draft.id.as_str()],
        one(fields, "manualApproval") == "true",
        one(fields, "manualStart") == "true",
    );
    let offered = ctx.api().post(&ctx.session, "/management/v3/contractdefinitions", &offer).await;
    let id = draft.id.clone();
    ctx.keep_draft(None);
    let back = format!("/console/datasets/{}", encode(&id));
    match offered {
        Ok(_) => ctx.back(&back, Ok(format!("{} {id}", t.dataset_published))),
        // The dataset is stored; only its offer was refused: say so on its page.
        Err(refused) => ctx.back(
            &back,
            Err(Problem { status: refused.status, message: format!("{}: {}", t.offer_refused, refused.message) }),
        ),
    }
}

/// `POST /management/v3/tables` with the uploaded file, the schema and the description, as one multipart body.
async fn upload_table(ctx: &Ctx, draft: &Draft, properties: &Map<String, Json>) -> Result<Json, Problem> {
    let internal = |e: std::io::Error| Problem { status: StatusCode::INTERNAL_SERVER_ERROR, message: e.to_string() };
    let Some(upload) = &draft.upload else {
        return Err(Problem { status: StatusCode::BAD_REQUEST, message: ctx.t.upload_missing.into() });
    };
    let boundary = format!("hanse-console-{}", uuid::Uuid::new_v4().simple());
    let part = |name: &str, value: &str| {
        format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}\r\n")
    };
    let mut head = String::new();
    head.push_str(&part("id", &draft.id));
    head.push_str(&part("schema", &draft.schema));
    head.push_str(&part("properties", &Json::Object(properties.clone()).to_string()));
    head.push_str(&format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"data\"; filename=\"data.csv\"\r\nContent-Type: text/csv\r\n\r\n"
    ));
    let file = tokio::fs::File::open(upload.as_ref() as &std::path::Path).await.map_err(internal)?;
    let tail = format!("\r\n--{boundary}--\r\n");
    use futures_util::StreamExt;
    let stream = futures_util::stream::once(async move { Ok::<_, std::io::Error>(bytes::Bytes::from(head)) })
        .chain(tokio_util::io::ReaderStream::new(file))
        .chain(futures_util::stream::once(async move { Ok(bytes::Bytes::from(tail)) }));
    let content_type = format!("multipart/form-data; boundary={boundary}");
    ctx.api()
        .call(&ctx.session, axum::http::Method::POST, "/management/v3/tables", &content_type, Body::from_stream(stream))
        .await
}

/// Step 2 of a CSV source: the file streams to a temporary file (at most `[compute] max_upload_mb`), its schema is
/// inferred from every row, and the step shows both for the operator to check.
pub async fn upload(ctx: Ctx, mut form: Multipart) -> Response {
    let t = ctx.t;
    let mut draft = ctx.session.draft.clone().unwrap_or_default();
    if draft.kind != "csv" {
        return Redirect::to("/console/datasets/new").into_response();
    }
    let refuse = |ctx: &Ctx, draft: &Draft, status: StatusCode, message: String| {
        render(ctx, 2, draft, Some(&Problem { status, message }), status)
    };
    let mut csrf_ok = false;
    loop {
        let field = match form.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => break,
            Err(e) => return refuse(&ctx, &draft, StatusCode::BAD_REQUEST, e.body_text()),
        };
        match field.name() {
            Some("_csrf") => {
                let given = field.text().await.unwrap_or_default();
                csrf_ok = super::session::csrf_ok(&ctx.session, Some(&given));
            }
            Some("file") if csrf_ok => {
                let name = field.file_name().unwrap_or("data.csv").to_owned();
                match receive(&ctx, field).await {
                    Ok(path) => {
                        draft.file_name = name;
                        draft.upload = Some(Arc::new(path));
                    }
                    Err(problem) => return refuse(&ctx, &draft, problem.status, problem.message),
                }
            }
            _ => {}
        }
    }
    if !csrf_ok {
        return (StatusCode::FORBIDDEN, super::html_response(super::refused(t))).into_response();
    }
    let Some(path) = draft.upload.clone() else {
        return refuse(&ctx, &draft, StatusCode::BAD_REQUEST, t.upload_missing.into());
    };
    let inferred = tokio::task::spawn_blocking(move || {
        let file = std::fs::File::open(path.as_ref() as &std::path::Path).map_err(|e| e.to_string())?;
        hanse_compute::table::Schema::infer(std::io::BufReader::new(file))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    match inferred {
        Ok(schema) => {
            draft.schema = serde_json::to_string_pretty(&schema).unwrap_or_default();
            ctx.keep_draft(Some(draft));
            Redirect::to("/console/datasets/new?step=2").into_response()
        }
        Err(message) => {
            draft.upload = None;
            ctx.keep_draft(Some(draft.clone()));
            refuse(&ctx, &draft, StatusCode::UNPROCESSABLE_ENTITY, format!("{}: {message}", t.csv_unreadable))
        }
    }
}

/// Where the wizard keeps uploads until they are published or the draft ends.
pub fn uploads(config: &crate::config::Config) -> std::path::PathBuf {
    config.store.data_dir.join("console-uploads")
}

/// Streams an uploaded file beside the connector's data as the table upload does, refusing it past the upload limit.
async fn receive(ctx: &Ctx, mut field: axum::extract::multipart::Field<'_>) -> Result<tempfile::TempPath, Problem> {
    let config = &ctx.state().config;
    let file = crate::management::part_to_file(&uploads(config), &mut field, config.compute.max_upload_mb).await?;
    Ok(file.into_temp_path())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_description_is_checked_before_it_is_sent() {
        let t = &super::super::texts::EN;
        let fields =
            |pairs: &[(&str, &str)]| -> Fields { pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect() };
        assert!(described(&fields(&[("title", "Register")]), t).unwrap_err().contains(t.is_required));
        let ages = fields(&[("title", "R"), ("description", "D"), ("minTypicalAge", "70"), ("maxTypicalAge", "18")]);
        assert_eq!(described(&ages, t).unwrap_err(), t.ages_in_order);
        let fine = described(
            &fields(&[("title", "R"), ("description", "D"), ("keyword", "diabetes, adults"), ("minTypicalAge", "18")]),
            t,
        )
        .unwrap();
        assert_eq!(fine["keyword"], json!(["diabetes", "adults"]));
        assert_eq!(fine["minTypicalAge"], json!(18));
        assert!(described(&fields(&[("title", "R"), ("description", "D"), ("minTypicalAge", "-1")]), t).is_err());
    }
}
