//! The console's page frame and the pieces every screen is made of: tables with paging, empty and error states,
//! JSON blocks, the policy trace tree, forms with their CSRF token.

use maud::{DOCTYPE, Markup, html};
use serde_json::Value as Json;

use super::Ctx;
use super::api::{Paging, Problem};
use super::texts::Texts;
use crate::management::access::{Need, allows};

/// The screens, in the order the navigation lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Section {
    Overview,
    Datasets,
    Policies,
    Offers,
    Approvals,
    Negotiations,
    Transfers,
    Jobs,
    Audit,
    Federation,
    Credentials,
}

impl Section {
    pub const ALL: [Section; 11] = [
        Section::Overview,
        Section::Datasets,
        Section::Policies,
        Section::Offers,
        Section::Approvals,
        Section::Negotiations,
        Section::Transfers,
        Section::Jobs,
        Section::Audit,
        Section::Federation,
        Section::Credentials,
    ];

    pub fn path(self) -> &'static str {
        match self {
            Section::Overview => "/console",
            Section::Datasets => "/console/datasets",
            Section::Policies => "/console/policies",
            Section::Offers => "/console/offers",
            Section::Approvals => "/console/approvals",
            Section::Negotiations => "/console/negotiations",
            Section::Transfers => "/console/transfers",
            Section::Jobs => "/console/jobs",
            Section::Audit => "/console/audit",
            Section::Federation => "/console/federation",
            Section::Credentials => "/console/credentials",
        }
    }

    pub fn title(self, t: &Texts) -> &'static str {
        match self {
            Section::Overview => t.overview,
            Section::Datasets => t.datasets,
            Section::Policies => t.policies,
            Section::Offers => t.offers,
            Section::Approvals => t.approvals,
            Section::Negotiations => t.negotiations,
            Section::Transfers => t.transfers,
            Section::Jobs => t.jobs,
            Section::Audit => t.audit,
            Section::Federation => t.federation,
            Section::Credentials => t.credentials,
        }
    }

    /// Whether a key of `role` sees this screen: the audit log is for operators and auditors, who see nothing
    /// else; every other screen reads what any reading role may read.
    pub fn visible(self, role: &str) -> bool {
        match self {
            Section::Audit => matches!(role, "operator" | "auditor"),
            _ => allows(role, Need::Read),
        }
    }
}

/// The first screen a role may see.
pub fn home(role: &str) -> &'static str {
    Section::ALL.iter().find(|s| s.visible(role)).map(|s| s.path()).unwrap_or("/console/sign-in")
}

/// The `<head>` of every console page; a signed-in page's carries its CSRF token and the scripts.
pub fn head(t: &Texts, title: &str, csrf: Option<&str>) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · " (t.product) }
            link rel="stylesheet" href="/console/assets/console.css";
            @if let Some(csrf) = csrf {
                meta name="csrf-token" content=(csrf);
                meta name="htmx-config" content=r#"{"includeIndicatorStyles":false,"allowEval":false,"selfRequestsOnly":true}"#;
                script src="/console/assets/htmx.min.js" defer {}
                script src="/console/assets/console.js" defer {}
            }
        }
    }
}

/// A whole page: header with the participant and the key, navigation by role, the notice, the content.
pub fn page(ctx: &Ctx, section: Section, title: &str, content: Markup) -> Markup {
    let t = ctx.t;
    html! {
        (DOCTYPE)
        html lang="en" {
            (head(t, title, Some(&ctx.session.csrf)))
            body {
                a.skip href="#main" { (t.skip_to_content) }
                header.top {
                    span.brand { (t.product) }
                    span.who {
                        (ctx.participant()) " · " (t.signed_in_as) " " code { (ctx.session.who) }
                        " (" (ctx.session.role) ")"
                    }
                    form method="post" action="/console/sign-out" {
                        (csrf(ctx))
                        button.link type="submit" { (t.sign_out) }
                    }
                }
                nav aria-label=(t.navigation) {
                    ul {
                        @for item in Section::ALL.iter().filter(|s| s.visible(&ctx.session.role)) {
                            li {
                                @if *item == section {
                                    a href=(item.path()) aria-current="page" { (item.title(t)) }
                                } @else {
                                    a href=(item.path()) { (item.title(t)) }
                                }
                            }
                        }
                    }
                }
                main #main {
                    h1 { (title) }
                    @if let Some(notice) = &ctx.notice {
                        div class=(if notice.ok { "notice ok" } else { "notice error" }) role=(if notice.ok { "status" } else { "alert" }) {
                            (notice.text)
                        }
                    }
                    (content)
                }
            }
        }
    }
}

/// The hidden CSRF field every form carries.
pub fn csrf(ctx: &Ctx) -> Markup {
    html! { input type="hidden" name="_csrf" value=(ctx.session.csrf); }
}

/// A table with its head, or the empty state saying what to do.
pub fn table(headers: &[&str], rows: Vec<Markup>, empty: &str) -> Markup {
    if rows.is_empty() {
        return html! { p.empty { (empty) } };
    }
    html! {
        table {
            thead { tr { @for header in headers { th scope="col" { (header) } } } }
            tbody { @for row in rows { (row) } }
        }
    }
}

/// Previous / next links that keep the list's other query parameters.
pub fn pager(t: &Texts, base: &str, query: &str, paging: Paging, more: bool) -> Markup {
    let link = |number: usize| {
        let joiner = if query.is_empty() { String::new() } else { format!("&{query}") };
        format!("{base}?page={number}{joiner}")
    };
    html! {
        nav.pager aria-label=(t.pages) {
            @if paging.number > 0 { a href=(link(paging.number - 1)) rel="prev" { "← " (t.previous) } }
            span { (t.page) " " (paging.number + 1) }
            @if more { a href=(link(paging.number + 1)) rel="next" { (t.next) " →" } }
        }
    }
}

/// What a call could not do, with what the operator can do about it.
pub fn problem(t: &Texts, problem: &Problem) -> Markup {
    let hint = match problem.status.as_u16() {
        401 => t.hint_unauthorized,
        403 => t.hint_forbidden,
        404 => t.hint_not_found,
        409 => t.hint_conflict,
        502..=504 => t.hint_upstream,
        _ => "",
    };
    html! {
        div.notice.error role="alert" {
            strong { (problem.status.as_u16()) " " }
            (problem.message)
            @if !hint.is_empty() { p { (hint) } }
        }
    }
}

/// JSON as an indented, escaped block (closed by default).
pub fn json_block(summary: &str, value: &Json, open: bool) -> Markup {
    let text = serde_json::to_string_pretty(value).unwrap_or_default();
    html! {
        details open[open] {
            summary { (summary) }
            pre.json { (text) }
        }
    }
}

/// `value`, or `otherwise` where it is missing: members that one kind of item names differently from another.
pub fn either<'a>(value: &'a Json, otherwise: &'a Json) -> &'a Json {
    if value.is_null() { otherwise } else { value }
}

/// A JSON value as text for a table cell: strings bare, arrays joined, nothing as a dash.
pub fn text(value: &Json) -> String {
    match value {
        Json::Null => "–".into(),
        Json::String(s) => s.clone(),
        Json::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        Json::Object(map) => map
            .get("@value")
            .or_else(|| map.get("@id"))
            .map(text)
            .unwrap_or_else(|| Json::Object(map.clone()).to_string()),
        other => other.to_string(),
    }
}

/// Epoch milliseconds (or seconds) as a UTC time.
pub fn time(value: &Json) -> String {
    let Some(number) = value.as_i64() else { return text(value) };
    let millis = if number < 100_000_000_000 { number * 1000 } else { number };
    chrono::DateTime::from_timestamp_millis(millis)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|| number.to_string())
}

/// A state as a badge whose colour says whether it ended well.
pub fn state(value: &str) -> Markup {
    let class = match value {
        "FINALIZED" | "COMPLETED" | "finished" | "approved" | "active" | "intact" | "ok" | "STARTED" | "satisfied"
        | "permit" | "ready" | "live" | "VALID" | "up" => "badge good",
        "TERMINATED" | "failed" | "rejected" | "revoked" | "fault" | "SUSPENDED" | "violated" | "invalid" | "deny"
        | "unreachable" | "incompatible" | "REVOKED" | "EXPIRED" | "down" => "badge bad",
        _ => "badge",
    };
    html! { span class=(class) { (value) } }
}

/// A decision's trace: each rule and constraint with its outcome and reason, nested as evaluated.
pub fn trace(t: &Texts, decision: &Json) -> Markup {
    if decision.is_null() {
        return html! { p.empty { (t.no_trace) } };
    }
    let outcome = decision["permitted"].as_bool().map(|p| if p { "permit" } else { "deny" });
    html! {
        div.trace {
            p {
                strong { (t.decision) ": " }
                (state(outcome.unwrap_or("–")))
                @if let Some(reason) = decision["reason"].as_str() { " " (reason) }
            }
            @let rules = decision["rules"].as_array().cloned().unwrap_or_default();
            ul.tree {
                @for rule in &rules {
                    li {
                        code { (text(&rule["path"])) } " "
                        (hanse_policy::term::short(rule["action"].as_str().unwrap_or_default())) " "
                        (state(rule["outcome"].as_str().unwrap_or("–")))
                        @if let Some(reason) = rule["reason"].as_str() { " — " (reason) }
                        (constraints(&rule["constraints"]))
                    }
                }
            }
            @if let Some(deferred) = decision["deferred"].as_array().filter(|d| !d.is_empty()) {
                p { (t.deferred) ": " (deferred.iter().map(text).collect::<Vec<_>>().join("; ")) }
            }
        }
    }
}

fn constraints(list: &Json) -> Markup {
    let Some(items) = list.as_array().filter(|items| !items.is_empty()) else { return html! {} };
    html! {
        ul {
            @for item in items {
                li {
                    code { (text(&item["constraint"])) } " "
                    (state(item["outcome"].as_str().unwrap_or("–")))
                    @if let Some(resolved) = item["resolved"].as_str() { " (" (resolved) ")" }
                    @if let Some(reason) = item["reason"].as_str() { " — " (reason) }
                    (constraints(&item["children"]))
                }
            }
        }
    }
}

/// A labelled input: the label names the field, the hint says what to enter.
pub fn field(label: &str, name: &str, value: &str, hint: &str, required: bool) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) @if required { " *" } }
            input #(name) name=(name) value=(value) required[required]
                aria-describedby=[(!hint.is_empty()).then(|| format!("{name}-hint"))];
            @if !hint.is_empty() { small id=(format!("{name}-hint")) { (hint) } }
        }
    }
}

/// A labelled choice.
pub fn select(label: &str, name: &str, options: &[(String, String)], chosen: &str) -> Markup {
    html! {
        div.field {
            label for=(name) { (label) }
            select #(name) name=(name) {
                @for (value, shown) in options {
                    option value=(value) selected[value == chosen] { (shown) }
                }
            }
        }
    }
}

/// A labelled check box.
pub fn check(label: &str, name: &str, checked: bool) -> Markup {
    html! {
        div.field.check {
            input type="checkbox" #(name) name=(name) value="true" checked[checked];
            label for=(name) { (label) }
        }
    }
}

/// A one-button form posting to `action` (with a reason field when `reason` is set).
pub fn action_button(ctx: &Ctx, action: &str, label: &str, reason: Option<&str>, danger: bool) -> Markup {
    html! {
        form.inline method="post" action=(action) {
            (csrf(ctx))
            @if let Some(reason_label) = reason {
                label { span.visually-hidden { (reason_label) } input name="reason" placeholder=(reason_label); }
            }
            button type="submit" class=(if danger { "danger" } else { "" }) { (label) }
        }
    }
}
