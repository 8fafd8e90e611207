//! Negotiations, transfers and compute jobs: lists by state and counter-party, and each one's timeline, agreement,
//! policy trace and the operator calls its state allows.

use axum::extract::{Path, Query};
use axum::response::Response;
use maud::{Markup, html};
use serde_json::{Value as Json, json};

use super::api::{Paging, criterion, encode};
use super::pages::{ListQuery, failed};
use super::view::{self, Section, action_button, json_block, state, table, text, time};
use super::{Ctx, Posted, one};
use crate::management::access::Need;

/// Negotiations and transfers share their screens; this says which one.
#[derive(Clone, Copy)]
enum Kind {
    Negotiation,
    Transfer,
}

impl Kind {
    fn section(self) -> Section {
        match self {
            Kind::Negotiation => Section::Negotiations,
            Kind::Transfer => Section::Transfers,
        }
    }

    fn api(self) -> &'static str {
        match self {
            Kind::Negotiation => "/management/v3/contractnegotiations",
            Kind::Transfer => "/management/v3/transferprocesses",
        }
    }

    fn console(self) -> &'static str {
        self.section().path()
    }

    /// The state machine's states, by name.
    fn states(self) -> Vec<&'static str> {
        match self {
            Kind::Negotiation => hanse_core::negotiation::ALL_STATES.iter().map(|s| s.name()).collect(),
            Kind::Transfer => hanse_core::transfer::ALL_STATES.iter().map(|s| s.name()).collect(),
        }
    }
}

pub async fn negotiations(ctx: Ctx, query: Query<ListQuery>) -> Response {
    list(ctx, Kind::Negotiation, query.0).await
}

pub async fn transfers(ctx: Ctx, query: Query<ListQuery>) -> Response {
    list(ctx, Kind::Transfer, query.0).await
}

async fn list(ctx: Ctx, kind: Kind, query: ListQuery) -> Response {
    let t = ctx.t;
    let title = kind.section().title(t);
    let paging = query.paging();
    let mut filters = Vec::new();
    let chosen = ListQuery::given(&query.state).unwrap_or("").to_owned();
    if !chosen.is_empty() {
        filters.push(criterion("state", "=", chosen.clone()));
    }
    let counter_party = ListQuery::given(&query.counter_party).unwrap_or("").to_owned();
    if !counter_party.is_empty() {
        filters.push(criterion("counterPartyId", "=", counter_party.clone()));
    }
    let uri = format!("{}/request", kind.api());
    let (items, more) = match ctx.api().page(&ctx.session, &uri, &paging, filters, Some("createdAt")).await {
        Ok(listed) => listed,
        Err(p) => return failed(&ctx, kind.section(), title, &p),
    };
    let rows = items
        .iter()
        .map(|item| {
            let id = text(&item["@id"]);
            html! {
                tr {
                    td { a href=(format!("{}/{}", kind.console(), encode(&id))) { code { (id) } } }
                    td { (text(&item["type"])) }
                    td { (state(&text(&item["state"]))) @if item["waitingForOperator"] == true { " " span.badge.wait { (t.waiting) } } }
                    td { code { (text(&item["counterPartyId"])) } }
                    td { (text(&item["assetId"])) }
                    td { (time(&item["createdAt"])) }
                }
            }
        })
        .collect();
    let mut states: Vec<(String, String)> = vec![(String::new(), t.any_state.to_owned())];
    states.extend(kind.states().iter().map(|s| (s.to_string(), s.to_string())));
    let keep = format!("state={}&counterParty={}", encode(&chosen), encode(&counter_party));
    let content = html! {
        form.filters method="get" role="search" {
            (view::select(t.state, "state", &states, &chosen))
            (view::field(t.counter_party, "counterParty", &counter_party, t.counter_party_hint, false))
            button type="submit" { (t.filter) }
        }
        (table(&[t.id, t.role, t.state, t.counter_party, t.dataset, t.created], rows, t.no_processes))
        (view::pager(t, kind.console(), &keep, paging, more))
    };
    ctx.page(kind.section(), title, content)
}

pub async fn negotiation(ctx: Ctx, Path(id): Path<String>) -> Response {
    detail(ctx, Kind::Negotiation, id).await
}

pub async fn transfer(ctx: Ctx, Path(id): Path<String>) -> Response {
    detail(ctx, Kind::Transfer, id).await
}

async fn detail(ctx: Ctx, kind: Kind, id: String) -> Response {
    let t = ctx.t;
    let title = format!("{} {id}", kind.section().title(t));
    let process = match ctx.api().get(&ctx.session, &format!("{}/{}", kind.api(), encode(&id))).await {
        Ok(process) => process,
        Err(p) => return failed(&ctx, kind.section(), &title, &p),
    };
    let agreement_id = match kind {
        Kind::Negotiation => process["contractAgreementId"].as_str(),
        Kind::Transfer => process["contractId"].as_str(),
    };
    let agreement = match agreement_id {
        Some(agreement) => {
            ctx.api().get(&ctx.session, &format!("/management/v3/contractagreements/{}", encode(agreement))).await.ok()
        }
        None => None,
    };
    let allowed = button_calls(&process["allowedCalls"]);
    let history = process["history"].as_array().cloned().unwrap_or_default();
    let target = format!("{}/{}", kind.console(), encode(&id));
    let content = html! {
        dl.facts {
            dt { (t.state) } dd #process-state { (state(&text(&process["state"]))) @if process["waitingForOperator"] == true { " " span.badge.wait { (t.waiting) } } }
            dt { (t.role) } dd { (text(&process["type"])) }
            dt { (t.counter_party) } dd { code { (text(&process["counterPartyId"])) } " " (text(&process["counterPartyAddress"])) }
            dt { (t.dataset) } dd { (text(&process["assetId"])) }
            @if let Some(agreement) = agreement_id {
                dt { (t.agreement) } dd { code { (agreement) } " " a href=(format!("/console/audit?agreement={}", encode(agreement))) { (t.life_of_contract) } }
            }
            @if let Some(bytes) = process["bytesPushed"].as_u64() { dt { (t.bytes_pushed) } dd { (bytes) } }
            @if !process["errorDetail"].is_null() { dt { (t.error) } dd { (text(&process["errorDetail"])) } }
        }
        @if ctx.may(Need::Decide) && !allowed.is_empty() {
            section aria-labelledby="calls" {
                h2 #calls { (t.operator_calls) }
                p { (t.calls_in_state) }
                div.actions {
                    @for call in &allowed {
                        (action_button(&ctx, &format!("{target}/{call}"), call, Some(t.reason), matches!(*call, "terminate" | "suspend")))
                    }
                }
            }
        }
        section aria-labelledby="timeline" {
            h2 #timeline { (t.timeline) }
            (timeline(t, &history))
        }
        @if !process["decision"].is_null() {
            section aria-labelledby="trace" {
                h2 #trace { (t.policy_trace) }
                (view::trace(t, &process["decision"]))
            }
        }
        @if let Some(agreement) = &agreement { (json_block(t.agreement, agreement, false)) }
        @if !process["offer"].is_null() { (json_block(t.offer, &process["offer"], false)) }
        (json_block(t.raw_json, &process, false))
    };
    ctx.page(kind.section(), &title, content)
}

/// The operator calls a button can make: all allowed now but a counter-offer, whose terms must be written out
/// (through the API).
pub fn button_calls(allowed: &Json) -> Vec<&str> {
    allowed.as_array().into_iter().flatten().filter_map(Json::as_str).filter(|call| *call != "offer").collect()
}

fn timeline(t: &super::texts::Texts, history: &[Json]) -> Markup {
    if history.is_empty() {
        return html! { p.empty { (t.no_history) } };
    }
    html! {
        ol.timeline {
            @for step in history {
                li { time { (text(&step["at"])) } " " (state(&text(&step["state"]))) " " (text(&step["event"])) }
            }
        }
    }
}

pub async fn negotiation_call(path: Path<(String, String)>, posted: Posted) -> Response {
    call(Kind::Negotiation, path.0, posted).await
}

pub async fn transfer_call(path: Path<(String, String)>, posted: Posted) -> Response {
    call(Kind::Transfer, path.0, posted).await
}

/// An operator call (approve, finalize, terminate, ...) with its reason; the process's page follows.
async fn call(kind: Kind, (id, call): (String, String), Posted { ctx, fields }: Posted) -> Response {
    let uri = format!("{}/{}/{}", kind.api(), encode(&id), encode(&call));
    let mut body = json!({});
    if !one(&fields, "reason").is_empty() {
        body["reason"] = json!(one(&fields, "reason"));
    }
    let outcome = ctx.api().post(&ctx.session, &uri, &body).await;
    let back = format!("{}/{}", kind.console(), encode(&id));
    ctx.back(&back, outcome.map(|process| format!("{call}: {id} → {}", text(&process["state"]))))
}

// ---- jobs ----

pub async fn jobs(ctx: Ctx, Query(query): Query<ListQuery>) -> Response {
    let t = ctx.t;
    let role = if query.kind.as_deref() == Some("provider") { "provider" } else { "consumer" };
    let all = match ctx.api().post(&ctx.session, "/management/v3/jobs/request", &json!({"role": role})).await {
        Ok(Json::Array(all)) => all,
        Ok(_) => Vec::new(),
        Err(p) => return failed(&ctx, Section::Jobs, t.jobs, &p),
    };
    let paging = Paging::new(query.page);
    let more = all.len() > paging.offset() + paging.size;
    let rows = all
        .iter()
        .skip(paging.offset())
        .take(paging.size)
        .map(|job| {
            let id = text(&job["@id"]);
            html! {
                tr {
                    td { a href=(format!("/console/jobs/{}", encode(&id))) { code { (id) } } }
                    td { (text(&job["template"])) }
                    td { (state(&text(&job["state"]))) }
                    td { (job["sites"].as_array().map_or(0, Vec::len)) }
                    td { (time(&job["createdAt"])) }
                }
            }
        })
        .collect();
    let content = html! {
        nav.tabs aria-label=(t.jobs) {
            a href="/console/jobs" aria-current=[(role == "consumer").then_some("page")] { (t.jobs_ordered) }
            a href="/console/jobs?kind=provider" aria-current=[(role == "provider").then_some("page")] { (t.jobs_run_here) }
        }
        (table(&[t.id, t.template, t.state, t.sites, t.created], rows, t.no_jobs))
        (view::pager(t, "/console/jobs", &format!("kind={role}"), paging, more))
    };
    ctx.page(Section::Jobs, t.jobs, content)
}

pub async fn job(ctx: Ctx, Path(id): Path<String>) -> Response {
    let t = ctx.t;
    let title = format!("{} {id}", t.job);
    let job = match ctx.api().get(&ctx.session, &format!("/management/v3/jobs/{}", encode(&id))).await {
        Ok(job) => job,
        Err(p) => return failed(&ctx, Section::Jobs, &title, &p),
    };
    let released = job["result"]["sites"].as_array().cloned().unwrap_or_default();
    let sites = job["sites"].as_array().cloned().unwrap_or_default();
    let content = html! {
        dl.facts {
            dt { (t.template) } dd { (text(&job["template"])) }
            dt { (t.state) } dd { (state(&text(&job["state"]))) }
            dt { (t.rounds) } dd { (text(&job["rounds"])) }
            @if !job["error"].is_null() { dt { (t.error) } dd { (text(&job["error"])) } }
        }
        h2 { (t.sites) }
        (table(&[t.provider, t.agreement, t.state, t.n, t.suppressed_cells], sites.iter().enumerate().map(|(i, site)| {
            let out = released.get(i).cloned().unwrap_or(Json::Null);
            html! {
                tr {
                    td { code { (text(&site["provider"])) } }
                    td { code { (text(&site["agreementId"])) } }
                    td { (state(&text(&site["status"]))) @if !site["error"].is_null() { " " (text(&site["error"])) } }
                    td { (text(&out["n"])) }
                    td { (out["suppressed"].as_array().map_or(0, Vec::len)) }
                }
            }
        }).collect(), t.no_sites))
        @if !job["result"].is_null() { (json_block(t.result, &job["result"], true)) }
        (json_block(t.raw_json, &job, false))
    };
    ctx.page(Section::Jobs, &title, content)
}
