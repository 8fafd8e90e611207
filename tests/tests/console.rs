//! The operator console in a real browser (headless Chromium through ChromeDriver) against real connectors: sign
//! in; build policies and see "explain" deny a wrong purpose; add a dataset through the wizard and find it in a
//! peer's DSP catalogue; approve a held negotiation until the consumer reaches FINALIZED; verify the audit log; a
//! screenshot of every screen in `tests/artefacts/console/`. And, over plain HTTP: the session cookie, CSRF and
//! origin checks, screens by role, and a session that ends with its key.

use std::time::Duration;

use hanse_tests::browser::Browser;
use hanse_tests::*;
use serde_json::json;

/// A small synthetic cohort (no real patient data).
fn cohort_csv(rows: usize) -> String {
    let mut csv = String::from("patient,age,sex,hba1c,smoker\n");
    for i in 0..rows {
        let sex = if i % 2 == 0 { "f" } else { "m" };
        csv.push_str(&format!("p{i},{},{sex},{:.1},{}\n", 30 + (i * 7) % 50, 5.0 + (i % 30) as f64 / 10.0, i % 3 == 0));
    }
    csv
}

#[tokio::test(flavor = "multi_thread")]
async fn an_operator_runs_the_connector_from_the_console_in_a_browser() {
    let backends = hanse::testing::backends();
    let federation = Federation::start(&[backends[0], *backends.last().unwrap()]).await;
    let (provider, consumer) = (&federation.connectors[0], federation.management(1));
    let console = format!("{}/console", provider.management_url());
    let browser = Browser::start().await;

    // Sign-in: an unknown key is refused with what to do; the operator's key opens the overview.
    browser.goto(&console).await;
    assert_eq!(browser.current_path().await, "/console/sign-in", "no session: the sign-in page");
    browser.screenshot("00-sign-in").await;
    browser.fill("#key", "not-a-key-of-this-connector").await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("#sign-in-error", "does not know that key").await;
    browser.fill("#key", &provider.api_key).await;
    browser.click("button[type=submit]").await;
    browser.wait_for_text("main h1", "Overview").await;
    assert!(browser.source().await.contains(provider.participant_id()), "the overview names the participant");
    browser.screenshot("01-overview").await;

    // Policies: an open access policy, and research terms built with the builder.
    for (id, purpose) in [("open-access", ""), ("research-terms", RESEARCH)] {
        browser.goto(&format!("{console}/policies/new")).await;
        browser.fill("#id", id).await;
        if !purpose.is_empty() {
            browser.choose("#purpose", purpose).await;
        }
        // The check runs as the operator types: the generated ODRL shows the purpose.
        browser.wait_for_text("#policy-check", "The policy is valid").await;
        if !purpose.is_empty() {
            browser.wait_for_text("#generated", purpose).await;
            browser.screenshot("03-policy-builder").await;
        }
        browser.click("#save-policy").await;
        browser.wait_for_text("main h1", &format!("Policy {id}")).await;
    }
    // Explain: a broader purpose than the terms allow is denied, with the failing constraint; the right one permits.
    browser.choose("#purpose", "DUO:0000042").await;
    browser.fill("#participant", "did:web:research.example").await;
    browser.click("#explain-button").await;
    let denied = browser.wait_for_text("#explanation", "deny").await;
    assert!(denied.contains("purpose"), "the trace names the purpose constraint: {denied}");
    browser.screenshot("04-policy-explain-deny").await;
    browser.choose("#purpose", RESEARCH).await;
    browser.click("#explain-button").await;
    browser.wait_for_text("#explanation", "permit").await;
    browser.goto(&format!("{console}/policies")).await;
    browser.wait_for_text("main table", "research-terms").await;
    browser.screenshot("02-policies").await;

    // The wizard: a CSV upload, its inferred schema, the description, the offer with manual approval.
    let csv = tempfile::Builder::new().suffix(".csv").tempfile().unwrap();
    std::fs::write(csv.path(), cohort_csv(60)).unwrap();
    browser.goto(&format!("{console}/datasets")).await;
    browser.click("#add-source").await;
    browser.fill("#id", "console-cohort").await;
    browser.screenshot("05-wizard-1-kind").await;
    browser.click("#next").await;
    browser.find("#file").await.send_keys(&csv.path().display().to_string()).await.unwrap();
    browser.click("#upload").await;
    let schema = browser.wait_for_text("#schema", "hba1c").await;
    assert!(
        schema.contains("\"integer\"") && schema.contains("\"float\"") && schema.contains("\"boolean\""),
        "{schema}"
    );
    browser.screenshot("06-wizard-2-source").await;
    browser.click("#next").await;
    browser.fill("#title", "Console cohort").await;
    browser.fill("#description", "Adults with type 2 diabetes, uploaded through the console (synthetic)").await;
    browser.fill("#keyword", "diabetes, adults").await;
    browser.choose("#accessRights", "RESTRICTED").await;
    browser.fill("#minTypicalAge", "30").await;
    browser.fill("#maxTypicalAge", "79").await;
    browser.screenshot("07-wizard-3-description").await;
    browser.click("#next").await;
    browser.choose("#access", "open-access").await;
    browser.choose("#terms", "research-terms").await;
    browser.click("#manualApproval").await;
    browser.screenshot("08-wizard-4-offer").await;
    browser.click("#publish").await;
    browser.wait_for_text("main h1", "Dataset console-cohort").await;
    let page = browser.source().await;
    assert!(page.contains("Published"), "the notice says the dataset is published");
    assert!(page.contains("60"), "the DCAT description counts the rows");
    browser.screenshot("09-dataset").await;
    browser.goto(&format!("{console}/datasets")).await;
    browser.wait_for_text("main table", "console-cohort").await;
    browser.screenshot("10-datasets").await;

    // The peer finds it in the provider's DSP catalogue and negotiates; the negotiation waits for an approver.
    let offer = catalogue_offer(&consumer, provider, "console-cohort").await;
    let negotiation = negotiate(&consumer, provider, offer, json!({"purpose": RESEARCH})).await;
    let mut approved = 0;
    for _ in 0..100 {
        let state =
            consumer.get(&format!("/management/v3/contractnegotiations/{negotiation}")).await.body["state"].clone();
        if state == "FINALIZED" {
            break;
        }
        browser.goto(&format!("{console}/approvals")).await;
        let page = browser.source().await;
        if page.contains("article") && page.contains("class=\"actions\"") {
            if approved == 0 {
                assert!(page.contains(consumer_did(&federation)), "the request names the requester");
                browser.screenshot("11-approvals-pending").await;
            }
            browser.fill("article.request input[name=reason]", "checked the research protocol").await;
            browser.click("article.request .actions form button:not(.danger)").await;
            approved += 1;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    wait_for_negotiation(&consumer, &negotiation, "FINALIZED").await;
    assert!(approved >= 1, "the consumer finalized only after an approval in the console");
    browser.goto(&format!("{console}/approvals?tab=history")).await;
    browser.wait_for_text("main table", "checked the research protocol").await;
    browser.screenshot("12-approvals-history").await;

    // Negotiations: the list, and the provider's negotiation with its timeline and trace.
    browser.goto(&format!("{console}/negotiations?state=FINALIZED")).await;
    browser.wait_for_text("main table", "FINALIZED").await;
    browser.screenshot("13-negotiations").await;
    browser.click("main table tbody tr a").await;
    browser.wait_for_text("#timeline", "Timeline").await;
    browser.wait_for_text("#process-state", "FINALIZED").await;
    browser.screenshot("14-negotiation").await;

    // Audit: verify now says intact; the life of the contract lists its entries.
    browser.goto(&format!("{console}/audit")).await;
    browser.click("#verify").await;
    browser.wait_for_text("#verdict", "intact").await;
    browser.screenshot("15-audit").await;

    // An offer's switch: transfers under it now wait for the operator to start them.
    browser.goto(&format!("{console}/offers")).await;
    browser.click("form[action=\"/console/offers/console-cohort-offer/manualStart\"] button").await;
    browser.wait_for_text("main .notice", "manualStart true").await;
    let offer = federation.management(0).get("/management/v3/contractdefinitions/console-cohort-offer").await;
    assert_eq!(offer.body["manualStart"], true, "{:#}", offer.body);
    assert_eq!(offer.body["manualApproval"], true, "the other switch is kept");

    // The remaining screens, each rendered without an error.
    for (name, path) in [
        ("16-offers", "/offers"),
        ("17-transfers", "/transfers"),
        ("18-jobs", "/jobs"),
        ("19-federation", "/federation"),
        ("20-credentials", "/credentials"),
    ] {
        browser.goto(&format!("{console}{path}")).await;
        browser.find("main h1").await;
        assert!(!browser.source().await.contains("class=\"notice error\""), "{path} shows an error");
        browser.screenshot(name).await;
    }

    // Every screen passes axe-core's WCAG 2 A and AA rules (labels, contrast, landmarks, names of controls).
    let dataset = "/datasets/console-cohort".to_owned();
    let mut faults = Vec::new();
    for path in [
        "",
        "/datasets",
        dataset.as_str(),
        "/datasets/new",
        "/policies",
        "/policies/new",
        "/policies/research-terms",
        "/offers",
        "/approvals",
        "/approvals?tab=history",
        "/negotiations",
        "/transfers",
        "/jobs",
        "/audit",
        "/federation",
        "/credentials",
    ] {
        browser.goto(&format!("{console}{path}")).await;
        browser.find("main h1").await;
        faults.extend(browser.accessibility_faults().await.into_iter().map(|f| format!("{path}: {f}")));
    }
    assert!(faults.is_empty(), "accessibility faults:\n{}", faults.join("\n"));

    // Sign-out ends the session.
    browser.click("header form button").await;
    browser.find("#key").await;
    browser.goto(&console).await;
    assert_eq!(browser.current_path().await, "/console/sign-in");
    browser.close().await;
    federation.shutdown().await;
}

fn consumer_did(federation: &Federation) -> &str {
    federation.connectors[1].participant_id()
}

/// A console session over plain HTTP: its cookie, its CSRF token, the page it answers.
struct Session {
    client: reqwest::Client,
    base: String,
    cookie: String,
    csrf: String,
}

fn client() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

async fn sign_in(base: &str, key: &str) -> reqwest::Response {
    form(client().post(format!("{base}/console/sign-in")), &[("key", key)]).send().await.unwrap()
}

/// A request with `fields` as an HTML form's body.
fn form(request: reqwest::RequestBuilder, fields: &[(&str, &str)]) -> reqwest::RequestBuilder {
    let body = serde_urlencoded::to_string(fields).unwrap();
    request.header("content-type", "application/x-www-form-urlencoded").body(body)
}

impl Session {
    async fn open(base: &str, key: &str) -> Session {
        let answer = sign_in(base, key).await;
        assert_eq!(answer.status(), 303, "signed in");
        let cookie = answer.headers()["set-cookie"].to_str().unwrap().to_owned();
        for flag in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
            assert!(cookie.contains(flag), "{cookie} lacks {flag}");
        }
        let cookie = cookie.split(';').next().unwrap().to_owned();
        let mut session = Session { client: client(), base: base.to_owned(), cookie, csrf: String::new() };
        let (_, page) = session.get("/console/credentials").await;
        let marker = "name=\"csrf-token\" content=\"";
        let at = page.find(marker).expect("the page carries the CSRF token") + marker.len();
        session.csrf = page[at..at + 64].to_owned();
        session
    }

    async fn get(&self, path: &str) -> (u16, String) {
        let answer =
            self.client.get(format!("{}{path}", self.base)).header("cookie", &self.cookie).send().await.unwrap();
        let status = answer.status().as_u16();
        let location = answer.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        (status, location.unwrap_or(answer.text().await.unwrap()))
    }

    async fn post(&self, path: &str, fields: &[(&str, &str)], origin: Option<&str>) -> (u16, String) {
        let mut request = form(self.client.post(format!("{}{path}", self.base)).header("cookie", &self.cookie), fields);
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let answer = request.send().await.unwrap();
        let status = answer.status().as_u16();
        let location = answer.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        (status, location.unwrap_or(answer.text().await.unwrap()))
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn console_sessions_refuse_forged_forms_and_follow_the_key_role() {
    for backend in hanse::testing::backends() {
        let connector = TestConnector::start(backend).await;
        let api = management_of(&connector);
        let base = connector.management_url();

        // The pages are framed by nothing, run no inline script and are never cached.
        let operator = Session::open(&base, &connector.api_key).await;
        let answer =
            operator.client.get(format!("{base}/console")).header("cookie", &operator.cookie).send().await.unwrap();
        let headers = answer.headers();
        assert!(headers["content-security-policy"].to_str().unwrap().contains("script-src 'self'"));
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["cache-control"], "no-store");

        // A form without the session's token, or from another origin, changes nothing.
        let offer = [("id", "forged"), ("access", "x"), ("terms", "x")];
        assert_eq!(operator.post("/console/offers", &offer, None).await.0, 403, "no CSRF token");
        let with_token = [("_csrf", operator.csrf.as_str()), ("id", "forged"), ("access", "x"), ("terms", "x")];
        assert_eq!(operator.post("/console/offers", &with_token, Some("http://evil.example")).await.0, 403);
        assert_eq!(api.get("/management/v3/contractdefinitions/forged").await.status, 404, "nothing was made");
        // With the token, the API's own validation speaks.
        let bad_id = [("_csrf", operator.csrf.as_str()), ("id", "not an id!"), ("access", "x"), ("terms", "x")];
        let (status, to) = operator.post("/console/offers", &bad_id, None).await;
        assert_eq!((status, to.as_str()), (303, "/console/offers"));
        let (_, page) = operator.get("/console/offers").await;
        assert!(page.contains("notice error") && page.contains("400"), "the refusal is shown: {page}");

        // Unknown and metrics keys do not sign in.
        assert_eq!(sign_in(&base, "hmk_unknown").await.status(), 401);
        let metrics = api.post("/management/v3/api-keys", &json!({"name": "scraper", "role": "metrics"})).await;
        assert_eq!(sign_in(&base, metrics.body["key"].as_str().unwrap()).await.status(), 403);

        // A reader sees the screens without their forms, and the API refuses what a reader may not do.
        let reader = api.post("/management/v3/api-keys", &json!({"name": "ward reader", "role": "reader"})).await;
        let reader_key = reader.body["key"].as_str().unwrap().to_owned();
        let session = Session::open(&base, &reader_key).await;
        let (status, page) = session.get("/console/policies").await;
        assert_eq!(status, 200);
        assert!(!page.contains("href=\"/console/policies/new\""), "no builder link for a reader");
        assert!(!page.contains(">Audit<"), "no audit screen for a reader");
        let build = [("_csrf", session.csrf.as_str()), ("id", "readers-policy")];
        let (status, page) = session.post("/console/policies/new", &build, None).await;
        assert_eq!(status, 403, "the API refuses a reader's change: {page}");
        assert!(page.contains("reader"), "the refusal names the role");

        // An auditor lands on the audit log and sees nothing else.
        let auditor =
            api.post("/management/v3/api-keys", &json!({"name": "external auditor", "role": "auditor"})).await;
        let answer = sign_in(&base, auditor.body["key"].as_str().unwrap()).await;
        assert_eq!(answer.headers()["location"], "/console/audit");

        // Revoking the key ends its session at the next click.
        let id = reader.body["@id"].as_str().unwrap();
        assert_eq!(api.delete(&format!("/management/v3/api-keys/{id}")).await.status, 204);
        let (status, to) = session.get("/console/policies").await;
        assert_eq!((status, to.as_str()), (303, "/console/sign-in"), "the revoked key's session ended");

        // Sign-out ends the operator's session.
        let (status, _) = operator.post("/console/sign-out", &[("_csrf", operator.csrf.as_str())], None).await;
        assert_eq!(status, 303);
        assert_eq!(operator.get("/console").await, (303, "/console/sign-in".to_owned()));
        connector.running.shutdown().await;
    }
}
