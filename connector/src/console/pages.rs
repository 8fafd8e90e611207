//! The overview, offers, approvals, audit, federation and credentials screens.

use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use maud::{Markup, html};
use serde::Deserialize;
use serde_json::{Value as Json, json};

use super::api::{Paging, Problem, criterion, encode};
use super::view::{self, Section, action_button, csrf, either, problem, state, table, text, time};
use super::{Ctx, Posted, listed, one};
use crate::management::access::Need;
use crate::store::ProcessKind;
use hanse_vocab::ns::EDC;

/// `?page=` and the filters of a list.
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    pub page: Option<usize>,
    pub q: Option<String>,
    pub state: Option<String>,
    pub tab: Option<String>,
    pub kind: Option<String>,
    #[serde(rename = "counterParty")]
    pub counter_party: Option<String>,
    pub agreement: Option<String>,
    pub after: Option<i64>,
    pub broker: Option<String>,
}

impl ListQuery {
    pub fn paging(&self) -> Paging {
        Paging::new(self.page)
    }

    /// A filter's value, `None` when empty.
    pub fn given(value: &Option<String>) -> Option<&str> {
        value.as_deref().map(str::trim).filter(|v| !v.is_empty())
    }
}

/// What a failed call leaves on a screen: the problem, in the frame.
pub fn failed(ctx: &Ctx, section: Section, title: &str, problem: &Problem) -> Response {
    if problem.status == StatusCode::UNAUTHORIZED {
        // The key was revoked or rotated since sign-in: the session ends with it.
        return ctx.sign_out_now();
    }
    let mut response = ctx.page(section, title, view::problem(ctx.t, problem));
    *response.status_mut() = problem.status;
    response
}

// ---- overview ----

pub async fn overview(ctx: Ctx) -> Response {
    let t = ctx.t;
    if !Section::Overview.visible(&ctx.session.role) {
        return axum::response::Redirect::to(view::home(&ctx.session.role)).into_response();
    }
    let api = ctx.api();
    let (about, ready, approvals, peers) = tokio::join!(
        api.get(&ctx.session, "/management/connector"),
        api.answer(&ctx.session, "/health/ready"),
        api.get(&ctx.session, "/management/v3/approvals?status=pending&limit=1000"),
        api.get(&ctx.session, "/management/v3/peers"),
    );
    let about = about.unwrap_or(Json::Null);
    let state_ = ctx.state();
    let (datasets, policies, offers) = state_.catalogue.counts();
    let (negotiations, transfers) = tokio::join!(
        state_.store.processes.census(ProcessKind::Negotiation),
        state_.store.processes.census(ProcessKind::Transfer)
    );
    let count = |census: &Result<crate::store::Census, crate::store::StoreError>, open: fn(&str) -> bool| {
        census.as_ref().map_or((0, 0), |c| {
            let total: i64 = c.states.iter().map(|(_, _, n)| n).sum();
            (total, c.states.iter().filter(|(_, s, _)| open(s)).map(|(_, _, n)| n).sum::<i64>())
        })
    };
    let (negotiations, open_negotiations) =
        count(&negotiations, |s| hanse_core::negotiation::State::parse(s).is_some_and(|s| !s.is_terminal()));
    let (transfers, open_transfers) =
        count(&transfers, |s| hanse_core::transfer::State::parse(s).is_some_and(|s| !s.is_terminal()));
    let waiting = approvals.as_ref().ok().and_then(Json::as_array).map_or(0, Vec::len);
    let peers = peers.ok().and_then(|p| p.as_array().cloned()).unwrap_or_default();
    let failing: Vec<&Json> =
        peers.iter().filter(|p| matches!(p["status"].as_str(), Some("unreachable" | "incompatible"))).collect();
    let (ready_status, components) = match &ready {
        Ok((_, body)) => (body["status"].as_str().unwrap_or("–").to_owned(), body["components"].clone()),
        Err(problem) => (problem.message.clone(), Json::Null),
    };
    let audit_visible = Section::Audit.visible(&ctx.session.role);
    let (recent, witnessed) = if audit_visible {
        let recent = async {
            let head = api.get(&ctx.session, "/management/v3/audit/head").await.ok();
            let size = head.as_ref().and_then(|h| h["size"].as_i64()).unwrap_or(0);
            let uri = format!("/management/v3/audit/entries?after={}&limit=10", (size - 11).max(-1));
            api.get(&ctx.session, &uri).await.ok()
        };
        tokio::join!(recent, api.get(&ctx.session, "/management/v3/audit/witnessed"))
    } else {
        (None, Ok(Json::Null))
    };
    let witnessed = witnessed.unwrap_or(Json::Null);
    let inconsistencies: Vec<&Json> = witnessed["witnessed"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|w| w.get("problem").is_some_and(|p| !p.is_null()))
        .collect();
    let down: Vec<(String, String)> = components
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(_, c)| c["status"] != "up")
        .map(|(name, c)| (name.clone(), text(&c["reason"])))
        .collect();
    let content = html! {
        section.cards aria-label=(t.overview) {
            div.card {
                h2 { (t.participant) }
                p { code { (text(&about["participantId"])) } }
                p { (t.version) " " (text(&about["version"])) " · " (t.store) " " (text(&about["store"])) }
                p { (t.uptime) " " (text(&about["uptimeSeconds"])) " s" }
            }
            div.card {
                h2 { (t.listeners) }
                p { (t.protocol_url) ": " code { (text(&about["protocolUrl"])) } }
                p { (t.management_listener) ": " code { (state_.config.management.bind.to_string()) } }
                p { (t.health) ": " (state(&ready_status)) }
            }
            div.card {
                h2 { (t.counts) }
                ul.plain {
                    li { a href="/console/datasets" { (datasets) " " (t.datasets) } }
                    li { a href="/console/policies" { (policies) " " (t.policies) } }
                    li { a href="/console/offers" { (offers) " " (t.offers) } }
                    li { a href="/console/negotiations" { (negotiations) " " (t.negotiations) } " (" (open_negotiations) " " (t.open) ")" }
                    li { a href="/console/transfers" { (transfers) " " (t.transfers) } " (" (open_transfers) " " (t.open) ")" }
                    li { (peers.len()) " " (t.peers) }
                }
            }
            div.card {
                h2 { (t.waiting_for_you) }
                @if waiting == 0 { p.empty { (t.nothing_waiting) } }
                @else { p { a href="/console/approvals" { (waiting) " " (t.requests_waiting) } } }
            }
        }
        section aria-labelledby="alerts" {
            h2 #alerts { (t.alerts) }
            @if down.is_empty() && failing.is_empty() && inconsistencies.is_empty() {
                p.empty { (t.no_alerts) }
            } @else {
                ul.alerts {
                    @for (name, reason) in &down { li.bad { (t.component_down) " " strong { (name) } ": " (reason) } }
                    @for peer in &failing {
                        li.bad { (t.peer_failing) " " code { (text(&peer["did"])) } ": " (text(&peer["status"])) " — " (text(&peer["detail"])) }
                    }
                    @for witness in &inconsistencies {
                        li.bad { (t.witness_inconsistent) " " code { (text(&witness["peer"])) } ": " (text(&witness["problem"])) }
                    }
                }
            }
        }
        @if audit_visible {
            section aria-labelledby="recent" {
                h2 #recent { (t.recent_activity) }
                @let entries = recent.and_then(|r| r.as_array().cloned()).unwrap_or_default();
                (table(&[t.seq, t.time, t.event, t.summary], entries.iter().rev().map(audit_row).collect(), t.no_entries))
            }
        }
    };
    ctx.page(Section::Overview, t.overview, content)
}

/// One audit entry as a table row.
fn audit_row(entry: &Json) -> Markup {
    let body = &entry["entry"];
    let summary: Vec<String> =
        ["agreementId", "datasetId", "dataset", "participant", "consumer", "provider", "state", "who"]
            .iter()
            .filter_map(|k| body.get(*k).filter(|v| !v.is_null()).map(|v| format!("{k}: {}", compact(v))))
            .collect();
    html! {
        tr {
            td { (text(&entry["seq"])) }
            td { (text(&entry["at"])) }
            td { code { (text(&entry["type"])) } }
            td { (summary.join(" · ")) }
        }
    }
}

fn compact(value: &Json) -> String {
    match value {
        Json::Object(map) => map.get("id").or_else(|| map.get("role")).map(text).unwrap_or_else(|| value.to_string()),
        other => text(other),
    }
}

// ---- offers ----

pub async fn offers(ctx: Ctx, Query(query): Query<ListQuery>) -> Response {
    let t = ctx.t;
    let paging = query.paging();
    let mut filters = Vec::new();
    if let Some(q) = ListQuery::given(&query.q) {
        filters.push(criterion("id", "ilike", format!("%{q}%")));
    }
    let listed =
        ctx.api().page(&ctx.session, "/management/v3/contractdefinitions/request", &paging, filters, None).await;
    let (items, more) = match listed {
        Ok(listed) => listed,
        Err(p) => return failed(&ctx, Section::Offers, t.offers, &p),
    };
    let policies = ctx.policy_choices();
    let rows = items
        .iter()
        .map(|offer| {
            let datasets: Vec<String> = offer["assetsSelector"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|c| text(&c["operandRight"]))
                .collect();
            html! {
                tr {
                    td { code { (text(&offer["@id"])) } }
                    td { a href=(format!("/console/policies/{}", encode(&text(&offer["accessPolicyId"])))) { (text(&offer["accessPolicyId"])) } }
                    td { a href=(format!("/console/policies/{}", encode(&text(&offer["contractPolicyId"])))) { (text(&offer["contractPolicyId"])) } }
                    td { @if datasets.is_empty() { (t.every_dataset) } @else { (datasets.join(", ")) } }
                    td { (switch(&ctx, offer, "manualApproval")) }
                    td { (switch(&ctx, offer, "manualStart")) }
                }
            }
        })
        .collect();
    let q = query.q.clone().unwrap_or_default();
    let content = html! {
        form.filters method="get" role="search" {
            (view::field(t.search_by_id, "q", &q, "", false))
            button type="submit" { (t.filter) }
        }
        (table(&[t.offer, t.access_policy, t.contract_policy, t.datasets, t.manual_approval, t.manual_start], rows, t.no_offers))
        (view::pager(t, "/console/offers", &format!("q={}", encode(&q)), paging, more))
        @if ctx.may(Need::Catalogue) {
            section aria-labelledby="new-offer" {
                h2 #new-offer { (t.new_offer) }
                @if policies.is_empty() {
                    p.empty { (t.offer_needs_policy) " " a href="/console/policies/new" { (t.new_policy) } }
                } @else {
                    form method="post" action="/console/offers" {
                        (csrf(&ctx))
                        (view::field(t.offer_id, "id", "", t.offer_id_hint, true))
                        (view::select(t.access_policy, "access", &policies, ""))
                        (view::select(t.contract_policy, "terms", &policies, ""))
                        (view::field(t.datasets, "datasets", "", t.offer_datasets_hint, false))
                        (view::check(t.manual_approval_switch, "manualApproval", false))
                        (view::check(t.manual_start_switch, "manualStart", false))
                        button type="submit" { (t.create_offer) }
                    }
                }
            }
        }
    };
    ctx.page(Section::Offers, t.offers, content)
}

/// An offer's switch: its state, and for a key that may change the catalogue a button that flips it.
fn switch(ctx: &Ctx, offer: &Json, name: &str) -> Markup {
    let t = ctx.t;
    let on = offer[name].as_bool().unwrap_or(false);
    let shown = if on { t.yes } else { t.no };
    if !ctx.may(Need::Catalogue) {
        return html! { (shown) };
    }
    let action = format!("/console/offers/{}/{name}", encode(&text(&offer["@id"])));
    let label = if on { t.switch_off } else { t.switch_on };
    html! {
        form.inline method="post" action=(action) {
            (csrf(ctx))
            input type="hidden" name="on" value=(if on { "false" } else { "true" });
            (shown) " "
            button type="submit" aria-label=(format!("{label} {name}")) { (label) }
        }
    }
}

/// Flips an offer's manual approval or manual start: the contract definition is read and replaced with the switch
/// changed (the API's `PUT`).
pub async fn offer_switch(Path((id, name)): Path<(String, String)>, Posted { ctx, fields }: Posted) -> Response {
    if !matches!(name.as_str(), "manualApproval" | "manualStart") {
        let unknown = Problem { status: StatusCode::NOT_FOUND, message: format!("no switch `{name}`") };
        return ctx.back("/console/offers", Err(unknown));
    }
    let uri = format!("/management/v3/contractdefinitions/{}", encode(&id));
    let outcome = match ctx.api().get(&ctx.session, &uri).await {
        Ok(mut definition) => {
            definition[&name] = json!(one(&fields, "on") == "true");
            definition["@context"] = json!({"@vocab": EDC});
            let replaced = ctx.api().put(&ctx.session, "/management/v3/contractdefinitions", &definition).await;
            replaced.map(|_| format!("{id}: {name} {}", one(&fields, "on")))
        }
        Err(problem) => Err(problem),
    };
    ctx.back("/console/offers", outcome)
}

/// The body of a new offer (contract definition) for `datasets` (none: every dataset).
pub fn offer_body(
    id: &str,
    access: &str,
    terms: &str,
    datasets: &[&str],
    manual_approval: bool,
    manual_start: bool,
) -> Json {
    let selector: Vec<Json> =
        if datasets.is_empty() { Vec::new() } else { vec![criterion(&format!("{EDC}id"), "in", json!(datasets))] };
    json!({"@context": {"@vocab": EDC}, "@id": id, "accessPolicyId": access, "contractPolicyId": terms,
           "assetsSelector": selector, "manualApproval": manual_approval, "manualStart": manual_start})
}

pub async fn create_offer(Posted { ctx, fields }: Posted) -> Response {
    let datasets = listed(one(&fields, "datasets"));
    let body = offer_body(
        one(&fields, "id"),
        one(&fields, "access"),
        one(&fields, "terms"),
        &datasets,
        one(&fields, "manualApproval") == "true",
        one(&fields, "manualStart") == "true",
    );
    let outcome = ctx.api().post(&ctx.session, "/management/v3/contractdefinitions", &body).await;
    ctx.back("/console/offers", outcome.map(|_| format!("{} {}", ctx.t.offer_created, one(&fields, "id"))))
}

// ---- approvals ----

pub async fn approvals(ctx: Ctx, Query(query): Query<ListQuery>) -> Response {
    let t = ctx.t;
    let history = query.tab.as_deref() == Some("history");
    let mut uri = format!("/management/v3/approvals?status={}&limit=100", if history { "decided" } else { "pending" });
    if let Some(kind) = ListQuery::given(&query.kind) {
        uri.push_str(&format!("&kind={}", encode(kind)));
    }
    if let Some(after) = query.after {
        uri.push_str(&format!("&after={after}"));
    }
    let items = match ctx.api().get(&ctx.session, &uri).await {
        Ok(Json::Array(items)) => items,
        Ok(_) => Vec::new(),
        Err(p) => return failed(&ctx, Section::Approvals, t.approvals, &p),
    };
    let decide = ctx.may(Need::Decide);
    let kinds: Vec<(String, String)> =
        [("", t.any_kind), ("negotiation", t.negotiations), ("transfer", t.transfers), ("publication", t.publication)]
            .iter()
            .map(|(value, shown)| (value.to_string(), shown.to_string()))
            .collect();
    let tabs = html! {
        nav.tabs aria-label=(t.approvals) {
            a href="/console/approvals" aria-current=[(!history).then_some("page")] { (t.pending) }
            a href="/console/approvals?tab=history" aria-current=[history.then_some("page")] { (t.history) }
        }
        form.filters method="get" role="search" {
            @if history { input type="hidden" name="tab" value="history"; }
            (view::select(t.kind, "kind", &kinds, ListQuery::given(&query.kind).unwrap_or("")))
            button type="submit" { (t.filter) }
        }
    };
    let content = if history {
        let rows = items
            .iter()
            .map(|item| {
                html! {
                    tr {
                        td { (text(&item["kind"])) }
                        td { code { (text(&item["id"])) } }
                        td { (state(&text(either(&item["call"], &item["decision"])))) }
                        td { (compact(&item["who"])) }
                        td { (text(&item["at"])) }
                        td { (text(&item["reason"])) }
                    }
                }
            })
            .collect();
        html! {
            (tabs)
            (table(&[t.kind, t.id, t.decision, t.decided_by, t.time, t.reason], rows, t.no_decisions))
        }
    } else {
        let rows: Vec<Markup> = items
            .iter()
            .map(|item| {
                let kind = item["kind"].as_str().unwrap_or_default();
                let id = text(&item["id"]);
                let allowed = super::processes::button_calls(&item["allowedCalls"]);
                let target = match kind {
                    "publication" => format!("/console/approvals/publications/{}", encode(&id)),
                    "transfer" => format!("/console/transfers/{}", encode(&id)),
                    _ => format!("/console/negotiations/{}", encode(&id)),
                };
                html! {
                    article.request {
                        h3 { (kind) " " code { (id) } }
                        dl {
                            dt { (t.requester) } dd { code { (compact(either(&item["requester"], &item["requestedBy"]))) } }
                            dt { (t.dataset) } dd { (text(&item["dataset"])) }
                            dt { (t.purpose) } dd { (text(&item["purpose"])) }
                            dt { (t.waiting_since) } dd { (time(either(&item["waitingSince"], &item["requestedAt"]))) }
                        }
                        @if !item["decision"].is_null() {
                            details { summary { (t.policy_trace) } (view::trace(t, &item["decision"])) }
                        }
                        @if kind != "publication" { p { a href=(target.clone()) { (t.details) } } }
                        @if decide {
                            div.actions {
                                @for call in &allowed {
                                    @let danger = matches!(*call, "reject" | "terminate");
                                    (action_button(&ctx, &format!("{target}/{call}"), call, Some(t.reason), danger))
                                }
                            }
                        }
                    }
                }
            })
            .collect();
        html! {
            (tabs)
            @if rows.is_empty() { p.empty { (t.no_pending) } }
            @for row in rows { (row) }
        }
    };
    ctx.page(Section::Approvals, t.approvals, content)
}

/// Approves or rejects a held publication from the approvals screen.
pub async fn decide_publication_listed(Path((dataset, decision)): Path<(String, String)>, posted: Posted) -> Response {
    publication(posted, &dataset, &decision, "/console/approvals").await
}

/// Approves or rejects a held publication from the dataset's page.
pub async fn decide_publication(Path((dataset, decision)): Path<(String, String)>, posted: Posted) -> Response {
    let back = format!("/console/datasets/{}", encode(&dataset));
    publication(posted, &dataset, &decision, &back).await
}

async fn publication(Posted { ctx, fields }: Posted, dataset: &str, decision: &str, back: &str) -> Response {
    let uri = format!("/management/v3/approvals/publications/{}/{}", encode(dataset), encode(decision));
    let outcome = ctx.api().post(&ctx.session, &uri, &json!({"reason": one(&fields, "reason")})).await;
    ctx.back(back, outcome.map(|_| format!("{dataset}: {decision}")))
}

// ---- audit ----

pub async fn audit(ctx: Ctx, Query(query): Query<ListQuery>) -> Response {
    let t = ctx.t;
    let api = ctx.api();
    let mut uri = format!("/management/v3/audit/entries?limit={}", Paging::SIZE + 1);
    if let Some(after) = query.after {
        uri.push_str(&format!("&after={after}"));
    }
    let agreement = ListQuery::given(&query.agreement).map(str::to_owned);
    if let Some(agreement) = &agreement {
        uri.push_str(&format!("&agreement={}", encode(agreement)));
    }
    if let Some(kind) = ListQuery::given(&query.kind) {
        uri.push_str(&format!("&type={}", encode(kind)));
    }
    let (head, entries, receipts, witnessed) = tokio::join!(
        api.get(&ctx.session, "/management/v3/audit/head"),
        api.get(&ctx.session, &uri),
        api.get(&ctx.session, "/management/v3/audit/receipts?limit=50"),
        api.get(&ctx.session, "/management/v3/audit/witnessed"),
    );
    let head = match head {
        Ok(head) => head,
        Err(p) => return failed(&ctx, Section::Audit, t.audit, &p),
    };
    let mut entries = entries.ok().and_then(|e| e.as_array().cloned()).unwrap_or_default();
    let more = entries.len() > Paging::SIZE;
    entries.truncate(Paging::SIZE);
    let last = entries.last().and_then(|e| e["seq"].as_i64());
    let receipts = receipts.ok().and_then(|r| r.as_array().cloned()).unwrap_or_default();
    let witnessed = witnessed.unwrap_or(Json::Null);
    let seen = witnessed["witnessed"].as_array().cloned().unwrap_or_default();
    let mut keep = Vec::new();
    if let Some(agreement) = &agreement {
        keep.push(format!("agreement={}", encode(agreement)));
    }
    if let Some(kind) = ListQuery::given(&query.kind) {
        keep.push(format!("kind={}", encode(kind)));
    }
    let content = html! {
        section.cards {
            div.card {
                h2 { (t.signed_head) }
                p { (t.entries) ": " strong #audit-size { (text(&head["size"])) } }
                p { (t.root_hash) ": " code.wrap { (text(&head["rootHash"])) } }
                p { (t.signed_at) " " (text(&head["timestamp"])) }
                form method="post" action="/console/audit/verify" hx-post="/console/audit/verify" hx-target="#verdict" hx-swap="innerHTML" {
                    (csrf(&ctx))
                    button #verify type="submit" { (t.verify_now) }
                }
                div #verdict aria-live="polite" {}
            }
            div.card {
                h2 { (t.witnessing) }
                @if seen.is_empty() { p.empty { (t.no_witnessing) } }
                ul.plain {
                    @for w in seen.iter().take(10) {
                        li { code { (text(&w["peer"])) } " " (t.size) " " (text(&w["size"])) " "
                            @if w["problem"].is_null() { (state("ok")) } @else { (state("fault")) " " (text(&w["problem"])) } }
                    }
                }
            }
        }
        section aria-labelledby="life" {
            h2 #life { (t.life_of_contract) }
            form.filters method="get" role="search" {
                (view::field(t.agreement, "agreement", agreement.as_deref().unwrap_or(""), t.agreement_filter_hint, false))
                (view::field(t.event_type, "kind", ListQuery::given(&query.kind).unwrap_or(""), t.event_type_hint, false))
                button type="submit" { (t.filter) }
            }
        }
        (table(&[t.seq, t.time, t.event, t.summary], entries.iter().map(audit_row).collect(), t.no_entries))
        @if let Some(last) = last.filter(|_| more) {
            nav.pager aria-label=(t.pages) {
                a href=(format!("/console/audit?after={last}&{}", keep.join("&"))) rel="next" { (t.next) " →" }
            }
        }
        section aria-labelledby="receipts" {
            h2 #receipts { (t.receipts) }
            (table(&[t.agreement, t.issuer], receipts.iter().map(|r| html! {
                tr { td { code { (text(&r["agreementId"])) } } td { code { (text(&r["issuer"])) } } }
            }).collect(), t.no_receipts))
        }
    };
    ctx.page(Section::Audit, t.audit, content)
}

/// Verifies the stored log now: the verdict as a fragment (htmx) or as the next page's notice.
pub async fn verify_audit(headers: axum::http::HeaderMap, Posted { ctx, .. }: Posted) -> Response {
    let t = ctx.t;
    let outcome = ctx.api().post(&ctx.session, "/management/v3/audit/verify", &json!({})).await;
    if headers.contains_key("hx-request") {
        let fragment = match &outcome {
            Ok(verdict) if verdict["intact"] == true => html! {
                p.notice.ok role="status" #verdict-text { (t.log_intact) " " (text(&verdict["entries"])) " " (t.entries_checked) }
            },
            Ok(verdict) => {
                html! { p.notice.error role="alert" #verdict-text { (t.log_altered) " " (text(&verdict["fault"])) } }
            }
            Err(p) => problem(t, p),
        };
        return super::html_response(fragment);
    }
    let outcome = outcome.and_then(|verdict| match verdict["intact"] == true {
        true => Ok(format!("{} {} {}", t.log_intact, text(&verdict["entries"]), t.entries_checked)),
        false => Err(Problem {
            status: StatusCode::CONFLICT,
            message: format!("{} {}", t.log_altered, text(&verdict["fault"])),
        }),
    });
    ctx.back("/console/audit", outcome)
}

// ---- federation ----

pub async fn federation(ctx: Ctx, Query(query): Query<ListQuery>) -> Response {
    let t = ctx.t;
    let api = ctx.api();
    let q = ListQuery::given(&query.q).map(str::to_owned);
    let broker = ListQuery::given(&query.broker).map(str::to_owned);
    let paging = query.paging();
    let search_uri = q.as_ref().map(|q| {
        let mut uri = format!("/management/v3/search?q={}&limit={}&offset={}", encode(q), paging.size, paging.offset());
        if let Some(broker) = &broker {
            uri.push_str(&format!("&broker={}", encode(broker)));
        }
        uri
    });
    let (peers, crawls, found) = tokio::join!(
        api.get(&ctx.session, "/management/v3/peers"),
        api.get(&ctx.session, "/management/v3/broker/crawls"),
        async {
            match &search_uri {
                Some(uri) => Some(api.get(&ctx.session, uri).await),
                None => None,
            }
        }
    );
    let peers = match peers {
        Ok(peers) => peers.as_array().cloned().unwrap_or_default(),
        Err(p) => return failed(&ctx, Section::Federation, t.federation, &p),
    };
    let crawls = crawls.ok().and_then(|c| c.as_array().cloned());
    let operate = ctx.may(Need::Operate);
    let peer_rows = peers
        .iter()
        .map(|p| {
            html! {
                tr {
                    td { code { (text(&p["did"])) } }
                    td { (state(&text(&p["status"]))) }
                    td { (text(&p["source"])) }
                    td { (time(&p["lastSeen"])) }
                    td { (text(&p["failures"])) }
                    td { (text(&p["detail"])) }
                }
            }
        })
        .collect();
    let content = html! {
        section aria-labelledby="search" {
            h2 #search { (t.search_federation) }
            form.filters method="get" role="search" {
                (view::field(t.keywords, "q", q.as_deref().unwrap_or(""), t.search_hint, false))
                (view::field(t.broker, "broker", broker.as_deref().unwrap_or(""), t.broker_hint, false))
                button type="submit" { (t.search) }
            }
            @match found {
                None => {}
                Some(Err(p)) => { (problem(t, &p)) }
                Some(Ok(found)) => {
                    @let results = found["results"].as_array().cloned().unwrap_or_default();
                    p { (text(&found["total"])) " " (t.datasets_found) }
                    @if results.is_empty() { p.empty { (t.nothing_found) } }
                    @for hit in &results { (search_hit(&ctx, hit)) }
                    (view::pager(t, "/console/federation", &format!("q={}&broker={}", encode(q.as_deref().unwrap_or("")), encode(broker.as_deref().unwrap_or(""))), paging,
                        found["total"].as_u64().unwrap_or(0) as usize > paging.offset() + results.len()))
                }
            }
        }
        section aria-labelledby="peers" {
            h2 #peers { (t.peers) }
            (table(&[t.participant, t.status, t.source, t.last_seen, t.failures, t.detail], peer_rows, t.no_peers))
        }
        section aria-labelledby="crawls" {
            h2 #crawls { (t.broker_crawls) }
            @match &crawls {
                None => { p.empty { (t.not_a_broker) } }
                Some(crawls) => {
                    (table(&[t.participant, t.datasets, t.last_success, t.failures, t.detail], crawls.iter().map(|c| html! {
                        tr {
                            td { code { (text(&c["did"])) } }
                            td { (text(&c["datasets"])) }
                            td { (time(&c["lastSuccess"])) }
                            td { (text(&c["failures"])) }
                            td { (text(either(&c["error"], &c["skipped"]))) }
                        }
                    }).collect(), t.no_crawls))
                    @if operate {
                        form method="post" action="/console/federation/crawl" { (csrf(&ctx)) button type="submit" { (t.crawl_now) } }
                    }
                }
            }
        }
    };
    ctx.page(Section::Federation, t.federation, content)
}

/// The offers a search hit's dataset lists (`hasPolicy`, in any of the spellings a catalogue uses).
fn offers_of(dataset: &Json) -> Vec<String> {
    let policies = ["hasPolicy", "odrl:hasPolicy", "http://www.w3.org/ns/odrl/2/hasPolicy"]
        .iter()
        .find_map(|k| dataset.get(*k))
        .cloned()
        .unwrap_or(Json::Null);
    let list = match policies {
        Json::Array(list) => list,
        Json::Null => Vec::new(),
        one => vec![one],
    };
    list.iter().filter_map(|p| p.get("@id").and_then(Json::as_str).map(str::to_owned)).collect()
}

fn search_hit(ctx: &Ctx, hit: &Json) -> Markup {
    let t = ctx.t;
    let offers = offers_of(&hit["dataset"]);
    let id = text(&hit["datasetId"]);
    html! {
        article.hit {
            h3 { (text(&hit["title"])) }
            p { code { (id) } " · " (t.provider) " " code { (text(&hit["participantId"])) } }
            @if ctx.may(Need::Operate) {
                @for offer in &offers {
                    form.inline method="post" action="/console/federation/negotiate" {
                        (csrf(ctx))
                        input type="hidden" name="offer" value=(offer);
                        input type="hidden" name="dataset" value=(id);
                        input type="hidden" name="provider" value=(text(&hit["participantId"]));
                        input type="hidden" name="address" value=(text(&hit["endpoint"]));
                        label { span { (t.purpose) " " } input name="purpose" placeholder="DUO:0000042"; }
                        button type="submit" { (t.negotiate) " " code { (offer) } }
                    }
                }
            }
        }
    }
}

/// Starts a negotiation for an offer found in the federation; the negotiation's page follows.
pub async fn negotiate(Posted { ctx, fields }: Posted) -> Response {
    let mut body = json!({"@context": {"@vocab": EDC}, "counterPartyAddress": one(&fields, "address"),
        "counterPartyId": one(&fields, "provider"), "protocol": "dataspace-protocol-http:2025-1",
        "policy": {"@id": one(&fields, "offer"), "target": one(&fields, "dataset"), "assigner": one(&fields, "provider")}});
    if !one(&fields, "purpose").is_empty() {
        body["purpose"] = json!(one(&fields, "purpose"));
    }
    match ctx.api().post(&ctx.session, "/management/v3/contractnegotiations", &body).await {
        Ok(started) => {
            let id = text(&started["@id"]);
            ctx.back(
                &format!("/console/negotiations/{}", encode(&id)),
                Ok(format!("{} {id}", ctx.t.negotiation_started)),
            )
        }
        Err(p) => ctx.back("/console/federation", Err(p)),
    }
}

pub async fn crawl(Posted { ctx, .. }: Posted) -> Response {
    let outcome = ctx.api().post(&ctx.session, "/management/v3/broker/crawl", &json!({})).await;
    ctx.back("/console/federation", outcome.map(|_| ctx.t.crawled.to_owned()))
}

// ---- credentials and keys ----

pub async fn credentials(ctx: Ctx) -> Response {
    let t = ctx.t;
    let api = ctx.api();
    let operate = ctx.may(Need::Operate);
    let (held, issued, keys, tokens) = tokio::join!(
        api.get(&ctx.session, "/management/v3/credentials"),
        api.get(&ctx.session, "/management/v3/credentials/issued"),
        async { if operate { Some(api.get(&ctx.session, "/management/v3/api-keys").await) } else { None } },
        api.get(&ctx.session, "/management/v3/apps/tokens"),
    );
    let held = match held {
        Ok(held) => held.as_array().cloned().unwrap_or_default(),
        Err(p) => return failed(&ctx, Section::Credentials, t.credentials, &p),
    };
    let list = |v: Result<Json, Problem>| v.ok().and_then(|v| v.as_array().cloned()).unwrap_or_default();
    let issued = list(issued);
    let tokens = list(tokens);
    let content = html! {
        section aria-labelledby="held" {
            h2 #held { (t.credentials_held) }
            (table(&[t.id, t.kind, t.issuer, t.valid_until], held.iter().map(|c| html! {
                tr { td { code { (text(&c["@id"])) } } td { (text(&c["type"])) }
                     td { code { (text(&c["issuer"])) } } td { (text(&c["validUntil"])) } }
            }).collect(), t.no_credentials))
        }
        section aria-labelledby="issued" {
            h2 #issued { (t.credentials_issued) }
            (table(&[t.id, t.subject, t.status], issued.iter().map(|c| html! {
                tr { td { code { (text(&c["@id"])) } } td { code { (text(&c["subject"])) } }
                     td { (state(if c["revoked"] == true { "revoked" } else { "active" })) } }
            }).collect(), t.no_credentials))
        }
        @if let Some(keys) = keys {
            section aria-labelledby="keys" {
                h2 #keys { (t.management_keys) }
                @match keys {
                    Err(p) => { (problem(t, &p)) }
                    Ok(keys) => {
                        @let keys = keys.as_array().cloned().unwrap_or_default();
                        (table(&[t.id, t.role, t.status, t.created, t.actions], keys.iter().map(|k| {
                            let id = text(&k["@id"]);
                            let active = k["state"] == "VALID";
                            html! {
                                tr {
                                    td { code { (id) } " " (text(&k["name"])) } td { (text(&k["role"])) }
                                    td { (state(if active { "active" } else { "revoked" })) }
                                    td { (time(&k["createdAt"])) }
                                    td { @if active {
                                        (action_button(&ctx, &format!("/console/keys/{}/rotate", encode(&id)), t.rotate, None, false))
                                        (action_button(&ctx, &format!("/console/keys/{}/revoke", encode(&id)), t.revoke, None, true))
                                    } }
                                }
                            }
                        }).collect(), t.no_keys))
                        form method="post" action="/console/keys" {
                            (csrf(&ctx))
                            (view::field(t.key_name, "name", "", t.key_name_hint, true))
                            (view::select(t.role, "role", &crate::management::access::ROLES.iter().map(|r| (r.to_string(), r.to_string())).collect::<Vec<_>>(), "reader"))
                            button type="submit" { (t.create_key) }
                        }
                    }
                }
            }
        }
        section aria-labelledby="tokens" {
            h2 #tokens { (t.app_tokens) }
            (table(&[t.id, t.app, t.datasets, t.status], tokens.iter().map(|k| html! {
                tr { td { code { (text(&k["@id"])) } } td { (text(&k["name"])) }
                     td { (k["datasets"].as_array().into_iter().flatten().map(|d| text(&d["dataset"])).collect::<Vec<_>>().join(", ")) }
                     td { (state(&text(&k["state"]))) } }
            }).collect(), t.no_tokens))
        }
    };
    ctx.page(Section::Credentials, t.credentials, content)
}

/// Makes a named key; its secret is shown once, in the notice.
pub async fn create_key(Posted { ctx, fields }: Posted) -> Response {
    let body = json!({"name": one(&fields, "name"), "role": one(&fields, "role")});
    let outcome = ctx.api().post(&ctx.session, "/management/v3/api-keys", &body).await;
    ctx.back("/console/credentials", outcome.map(|made| shown_once(ctx.t, &made)))
}

fn shown_once(t: &super::texts::Texts, made: &Json) -> String {
    format!(
        "{} {} ({}): {} — {}",
        t.key_made,
        text(&made["@id"]),
        text(&made["role"]),
        text(&made["key"]),
        t.shown_once
    )
}

/// Rotates or revokes a named key.
pub async fn key_call(Path((id, call)): Path<(String, String)>, Posted { ctx, .. }: Posted) -> Response {
    let outcome = match call.as_str() {
        "rotate" => ctx
            .api()
            .post(&ctx.session, &format!("/management/v3/api-keys/{}/rotate", encode(&id)), &json!({}))
            .await
            .map(|made| shown_once(ctx.t, &made)),
        "revoke" => ctx
            .api()
            .delete(&ctx.session, &format!("/management/v3/api-keys/{}", encode(&id)))
            .await
            .map(|_| format!("{} {id}", ctx.t.key_revoked)),
        _ => Err(Problem { status: StatusCode::NOT_FOUND, message: format!("no call `{call}` on a key") }),
    };
    ctx.back("/console/credentials", outcome)
}
