//! The operator console (decision 0039): HTML pages under `/console` on the management listener, written by the
//! server and enhanced by htmx (vendored, never fetched). A session signs in with a management key; every page
//! reads and every form changes through the management API in this process, with that key ([`api`]), so that the
//! console can do exactly what the key's role may, each change is audited under the key, and no rule exists twice.
//!
//! Sessions: an HttpOnly, SameSite=Strict cookie; a CSRF token in every form and script request; sign-out; an idle
//! timeout (`[console] idle_minutes`). The screens follow the key's role; the texts are in [`texts`], one place.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{FromRequest, FromRequestParts, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header, request::Parts};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, html};

use crate::management::access;
use crate::state::Shared;

mod api;
mod pages;
mod policies;
mod processes;
pub mod session;
mod texts;
mod view;
mod wizard;

use api::{Api, Problem};
use session::{Notice, Session, Sessions};
use texts::Texts;

/// One connector's console: its API, its sessions, its texts.
pub struct Console {
    state: Shared,
    api: Api,
    sessions: Sessions,
    t: &'static Texts,
}

type Shell = State<Arc<Console>>;

/// What every page handler knows: the texts, the session, who this connector is, the notice to show.
pub struct Ctx {
    pub t: &'static Texts,
    pub session: Session,
    pub token: String,
    pub notice: Option<Notice>,
    console: Arc<Console>,
}

impl Ctx {
    pub fn api(&self) -> &Api {
        &self.console.api
    }

    pub fn state(&self) -> &Shared {
        &self.console.state
    }

    /// This connector's participant id.
    pub fn participant(&self) -> &str {
        &self.console.state.config.participant.id
    }

    /// The ids of the stored policies, as the choices of a form.
    pub fn policy_choices(&self) -> Vec<(String, String)> {
        self.console.state.catalogue.policies().iter().map(|p| (p.value.id.clone(), p.value.id.clone())).collect()
    }

    /// Whether the session's role may make calls that need `need`.
    pub fn may(&self, need: access::Need) -> bool {
        access::allows(&self.session.role, need)
    }

    /// A whole page in the frame.
    pub fn page(&self, section: view::Section, title: &str, content: Markup) -> Response {
        html_response(view::page(self, section, title, content))
    }

    /// After a form: the outcome as the next page's notice, and a redirect there (303, so a reload does not post
    /// again).
    pub fn back(&self, to: &str, outcome: Result<String, Problem>) -> Response {
        let notice = match outcome {
            Err(problem) if problem.status == StatusCode::UNAUTHORIZED => return self.sign_out_now(),
            Ok(text) => Notice { ok: true, text },
            Err(problem) => Notice { ok: false, text: format!("{} {}", problem.status.as_u16(), problem.message) },
        };
        self.console.sessions.update(&self.token, |s| s.notice = Some(notice));
        Redirect::to(to).into_response()
    }

    /// Ends the session (its key is no longer valid) and sends the browser to the sign-in page.
    pub fn sign_out_now(&self) -> Response {
        tracing::info!(who = self.session.who, "console session ended: its key is no longer valid");
        self.end()
    }

    /// Ends the session: its cookie cleared, the sign-in page next.
    fn end(&self) -> Response {
        self.console.sessions.close(&self.token);
        ([(header::SET_COOKIE, session::clear_cookie())], Redirect::to("/console/sign-in")).into_response()
    }

    /// Keeps the wizard's answers in the session.
    pub fn keep_draft(&self, draft: Option<wizard::Draft>) {
        self.console.sessions.update(&self.token, |s| s.draft = draft);
    }
}

/// A signed-in request: without a live session, a redirect to the sign-in page (a 401 for a script's request).
impl FromRequestParts<Arc<Console>> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, console: &Arc<Console>) -> Result<Ctx, Response> {
        let Some((token, session)) = console.sessions.find(&parts.headers) else {
            if parts.headers.contains_key("hx-request") {
                return Err((StatusCode::UNAUTHORIZED, [("hx-redirect", "/console/sign-in")]).into_response());
            }
            return Err(Redirect::to("/console/sign-in").into_response());
        };
        let notice = console.sessions.take_notice(&token);
        Ok(Ctx { t: console.t, session, token, notice, console: console.clone() })
    }
}

/// A form's fields in order (a name may repeat).
pub type Fields = Vec<(String, String)>;

/// The first value of field `name`, trimmed (empty when absent).
pub fn one<'a>(fields: &'a Fields, name: &str) -> &'a str {
    fields.iter().find(|(n, _)| n == name).map(|(_, v)| v.trim()).unwrap_or("")
}

/// The items of a comma-separated field value, trimmed, empty ones left out.
pub fn listed(value: &str) -> Vec<&str> {
    value.split(',').map(str::trim).filter(|item| !item.is_empty()).collect()
}

/// Every non-empty value of field `name`.
pub fn all<'a>(fields: &'a Fields, name: &str) -> Vec<&'a str> {
    fields.iter().filter(|(n, v)| n == name && !v.trim().is_empty()).map(|(_, v)| v.trim()).collect()
}

/// A posted form from a signed-in session whose CSRF token matches (in the `_csrf` field or the `X-CSRF-Token`
/// header) and whose `Origin`, if sent, is this listener; anything else is refused with 403.
pub struct Posted {
    pub ctx: Ctx,
    pub fields: Fields,
}

impl FromRequest<Arc<Console>> for Posted {
    type Rejection = Response;

    async fn from_request(request: Request, console: &Arc<Console>) -> Result<Posted, Response> {
        let (mut parts, body) = request.into_parts();
        let ctx = Ctx::from_request_parts(&mut parts, console).await?;
        let header_token = parts.headers.get("x-csrf-token").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let cross_origin = !same_origin(&parts.headers);
        let request = Request::from_parts(parts, body);
        let axum::Form(fields) = axum::Form::<Fields>::from_request(request, &())
            .await
            .map_err(|rejection| (StatusCode::BAD_REQUEST, rejection.body_text()).into_response())?;
        let given = header_token.or_else(|| fields.iter().find(|(n, _)| n == "_csrf").map(|(_, v)| v.clone()));
        if cross_origin || !session::csrf_ok(&ctx.session, given.as_deref()) {
            tracing::warn!(who = ctx.session.who, "console form refused: CSRF token or origin does not match");
            return Err((StatusCode::FORBIDDEN, html_response(refused(ctx.t))).into_response());
        }
        Ok(Posted { ctx, fields })
    }
}

/// Whether a request's `Origin` (when sent) is the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok()).unwrap_or_default();
    origin.split_once("://").is_some_and(|(_, rest)| rest == host)
}

fn refused(t: &Texts) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" { (view::head(t, t.form_refused, None))
            body { main { h1 { (t.form_refused) } p { (t.form_refused_hint) } a href="/console" { (t.overview) } } } }
    }
}

/// The console's routes, to be served beside the management API on its listener; `api` is the management router
/// its pages call.
pub fn router(state: Shared, api: Router) -> Router {
    let config = &state.config.console;
    let sessions = Sessions::new(Duration::from_secs(config.idle_minutes * 60), config.max_sessions);
    // Uploads belong to the wizard of a session, and sessions do not outlive the process: what a killed process left
    // is removed.
    let _ = std::fs::remove_dir_all(wizard::uploads(&state.config));
    let console = Arc::new(Console { api: Api::new(api), sessions, t: &texts::EN, state });
    Router::new()
        .route("/console", get(pages::overview))
        .route("/console/", get(|| async { Redirect::permanent("/console") }))
        .route("/console/sign-in", get(sign_in_page).post(sign_in))
        .route("/console/sign-out", post(sign_out))
        .route("/console/assets/{file}", get(asset))
        .route("/console/datasets", get(wizard::datasets))
        .route("/console/datasets/new", get(wizard::step).post(wizard::answer))
        .route("/console/datasets/new/upload", post(wizard::upload).layer(axum::extract::DefaultBodyLimit::disable()))
        .route("/console/datasets/{id}", get(wizard::dataset))
        .route("/console/datasets/{id}/publication/{decision}", post(pages::decide_publication))
        .route("/console/policies", get(policies::list))
        .route("/console/policies/new", get(policies::builder).post(policies::create))
        .route("/console/policies/check", post(policies::check))
        .route("/console/policies/{id}", get(policies::detail))
        .route("/console/policies/{id}/explain", post(policies::explain))
        .route("/console/offers", get(pages::offers).post(pages::create_offer))
        .route("/console/offers/{id}/{switch}", post(pages::offer_switch))
        .route("/console/approvals", get(pages::approvals))
        .route("/console/approvals/publications/{dataset}/{decision}", post(pages::decide_publication_listed))
        .route("/console/negotiations", get(processes::negotiations))
        .route("/console/negotiations/{id}", get(processes::negotiation))
        .route("/console/negotiations/{id}/{call}", post(processes::negotiation_call))
        .route("/console/transfers", get(processes::transfers))
        .route("/console/transfers/{id}", get(processes::transfer))
        .route("/console/transfers/{id}/{call}", post(processes::transfer_call))
        .route("/console/jobs", get(processes::jobs))
        .route("/console/jobs/{id}", get(processes::job))
        .route("/console/audit", get(pages::audit))
        .route("/console/audit/verify", post(pages::verify_audit))
        .route("/console/federation", get(pages::federation))
        .route("/console/federation/negotiate", post(pages::negotiate))
        .route("/console/federation/crawl", post(pages::crawl))
        .route("/console/credentials", get(pages::credentials))
        .route("/console/keys", post(pages::create_key))
        .route("/console/keys/{id}/{call}", post(pages::key_call))
        .layer(middleware::from_fn(guard_headers))
        .with_state(console)
}

/// What every console answer carries: no framing, no inline script, nothing cached, no referrer to other sites.
async fn guard_headers(request: Request, next: Next) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    let set = |headers: &mut HeaderMap, name: &'static str, value: &'static str| {
        headers.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(
        headers,
        "content-security-policy",
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; frame-ancestors 'none'; \
         form-action 'self'; base-uri 'none'",
    );
    set(headers, "x-frame-options", "DENY");
    set(headers, "referrer-policy", "same-origin");
    set(headers, "x-content-type-options", "nosniff");
    set(headers, "cache-control", "no-store");
    response
}

fn html_response(markup: Markup) -> Response {
    ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], markup.into_string()).into_response()
}

const CSS: &str = include_str!("assets/console.css");
const SCRIPT: &str = include_str!("assets/console.js");
/// htmx 2.0.8 from the npm registry (`htmx.org`, BSD Zero-Clause); its SHA-256 is checked by a test below.
const HTMX: &str = include_str!("assets/htmx.min.js");

async fn asset(axum::extract::Path(file): axum::extract::Path<String>) -> Response {
    let (body, kind) = match file.as_str() {
        "console.css" => (CSS, "text/css; charset=utf-8"),
        "console.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "htmx.min.js" => (HTMX, "text/javascript; charset=utf-8"),
        _ => return StatusCode::NOT_FOUND.into_response(),
    };
    ([(header::CONTENT_TYPE, kind), (header::CACHE_CONTROL, "no-cache")], body).into_response()
}

async fn sign_in_page(State(console): Shell, headers: HeaderMap) -> Response {
    if let Some((_, session)) = console.sessions.find(&headers) {
        return Redirect::to(view::home(&session.role)).into_response();
    }
    html_response(sign_in_form(console.t, &console.state.config.participant.id, None))
}

fn sign_in_form(t: &Texts, participant: &str, error: Option<&str>) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            (view::head(t, t.sign_in, None))
            body.sign-in {
                main #main {
                    h1 { (t.product) }
                    p { (participant) }
                    @if let Some(error) = error { div.notice.error role="alert" #sign-in-error { (error) } }
                    form method="post" action="/console/sign-in" {
                        div.field {
                            label for="key" { (t.management_key) }
                            input #key type="password" name="key" autocomplete="off" required autofocus
                                aria-describedby="key-hint";
                            small #key-hint { (t.management_key_hint) }
                        }
                        button type="submit" { (t.sign_in) }
                    }
                }
            }
        }
    }
}

/// Signs in with a management key: the operator's, the auditor's, or a named key of a role with screens.
async fn sign_in(State(console): Shell, headers: HeaderMap, axum::Form(fields): axum::Form<Fields>) -> Response {
    let t = console.t;
    let participant = &console.state.config.participant.id;
    let refuse = |status: StatusCode, text: &str| (status, html_response(sign_in_form(t, participant, Some(text))));
    if !same_origin(&headers) {
        return refuse(StatusCode::FORBIDDEN, t.form_refused).into_response();
    }
    let key = one(&fields, "key").to_owned();
    let auditor = console.state.config.audit.auditor_api_key.as_deref();
    let (who, role) = if auditor.is_some_and(|k| crate::management::is_key(key.as_bytes(), k)) {
        ("auditor".to_owned(), "auditor".to_owned())
    } else {
        match access::principal_of(&console.state, key.as_bytes()).await {
            Ok(Some(crate::store::Principal::ApiKey { id, role, .. })) => (id, role),
            Ok(_) => {
                tracing::info!("console sign-in with an unknown key");
                return refuse(StatusCode::UNAUTHORIZED, t.unknown_key).into_response();
            }
            Err(error) => return refuse(StatusCode::SERVICE_UNAVAILABLE, &error.to_string()).into_response(),
        }
    };
    if !view::Section::ALL.iter().any(|s| s.visible(&role)) {
        return refuse(StatusCode::FORBIDDEN, t.role_without_screens).into_response();
    }
    let token = match console.sessions.open(key, role.clone(), who.clone()) {
        Ok(token) => token,
        Err(error) => return refuse(StatusCode::INTERNAL_SERVER_ERROR, &error.to_string()).into_response(),
    };
    tracing::info!(who, role, "console sign-in");
    let secure = console.state.config.console.secure_cookie
        || headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let cookie = session::set_cookie(&token, console.sessions.idle(), secure);
    ([(header::SET_COOKIE, cookie)], Redirect::to(view::home(&role))).into_response()
}

async fn sign_out(Posted { ctx, .. }: Posted) -> Response {
    tracing::info!(who = ctx.session.who, "console sign-out");
    ctx.end()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendored_htmx_is_the_published_one() {
        // SHA-256 of `package/dist/htmx.min.js` in htmx.org-2.0.8.tgz from the npm registry.
        assert_eq!(
            hanse_core::encode::sha256_hex(HTMX.as_bytes()),
            "22283ef68cb7545914f0a88a1bdedc7256a703d1d580c1d255217d0a50d31313"
        );
    }

    #[test]
    fn only_same_origin_forms_pass() {
        let mut headers = HeaderMap::new();
        assert!(same_origin(&headers), "no Origin: a same-origin form in older browsers");
        headers.insert(header::HOST, "127.0.0.1:9191".parse().unwrap());
        headers.insert(header::ORIGIN, "http://127.0.0.1:9191".parse().unwrap());
        assert!(same_origin(&headers));
        headers.insert(header::ORIGIN, "http://evil.example".parse().unwrap());
        assert!(!same_origin(&headers));
    }
}
