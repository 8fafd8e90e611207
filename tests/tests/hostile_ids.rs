//! Identifiers an operator gives are checked at the management boundary: one that would read as something else (a NUL,
//! a bidirectional override, a zero-width character, another Unicode form, a fullwidth look-alike) or runs too long is a
//! 400 naming `@id`, and nothing is created.

use hanse_tests::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_that_read_as_something_else_are_refused_naming_the_field() {
    let connector = TestConnector::start(Backend::Sqlite).await;
    let api = Management::of(&connector, &reqwest::Client::new());
    let long = "x".repeat(600);
    let refused = [
        ("a NUL", "cohort\u{0}1"),
        ("a right-to-left override", "cohort\u{202E}txt.exe"),
        ("a zero-width space", "co\u{200B}hort"),
        ("a decomposed umlaut", "Kohorte-Mu\u{0308}ller"),
        ("fullwidth letters", "ｃｏｈｏｒｔ"),
        ("600 bytes", long.as_str()),
    ];
    for (what, id) in refused {
        let asset = health_asset(id, "A cohort", &["diabetes"], 10);
        let answer = api.post("/management/v3/assets", &asset).await;
        assert_eq!(answer.status, 400, "{what}: {:#}", answer.body);
        assert_eq!(answer.body[0]["path"], "@id", "{what}: {:#}", answer.body);
        let policy = policy_definition(id, open_policy());
        let answer = api.post("/management/v3/policydefinitions", &policy).await;
        assert_eq!(answer.status, 400, "{what} as a policy id: {:#}", answer.body);
    }
    let listed = api.post("/management/v3/assets/request", &json!({})).await;
    assert_eq!(listed.body.as_array().map(Vec::len), Some(0), "nothing was created: {:#}", listed.body);
    // The same words, well formed, are taken.
    api.create("/management/v3/assets", health_asset("Kohorte-Müller", "A cohort", &["diabetes"], 10)).await;
    connector.running.shutdown().await;
}
