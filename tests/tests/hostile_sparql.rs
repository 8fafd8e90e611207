//! SPARQL from an attacker: queries that crashed or ballooned a connector are refused with a 400 naming the limit, on
//! the management listener and on a broker's public endpoint, and the connector keeps answering while they run.

use std::time::Duration;

use hanse_tests::*;
use serde_json::Value;

/// The meter the `hanse` binary runs its queries under, here too, so that the memory limit holds in this process.
#[global_allocator]
static ALLOCATOR: hanse::memory::Metered<std::alloc::System> = hanse::memory::Metered(std::alloc::System);

/// About 900 nested groups: the nesting that overflowed the parser's stack and aborted the process.
fn deep_query() -> String {
    format!("SELECT * WHERE {{ {} ?s ?p ?o {} }}", "{".repeat(900), "}".repeat(900))
}

/// Five `VALUES` blocks of 100 rows each: 10^10 combinations from 1.5 KB of text, no data needed.
fn cross_product_query() -> String {
    let block = |name: &str| {
        let rows: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        format!("VALUES ?{name} {{ {} }}", rows.join(" "))
    };
    let blocks: Vec<String> = ["a", "b", "c", "d", "e"].iter().map(|n| block(n)).collect();
    format!("SELECT * WHERE {{ {} }}", blocks.join(" "))
}

struct Endpoint<'a> {
    client: reqwest::Client,
    url: String,
    headers: Vec<(&'static str, String)>,
    connector: &'a TestConnector,
}

impl Endpoint<'_> {
    async fn query(&self, query: &str) -> (u16, Value) {
        let mut request = self.client.post(&self.url).header("Content-Type", "application/sparql-query");
        for (name, value) in &self.headers {
            request = request.header(*name, value);
        }
        let response = request.body(query.to_owned()).send().await.expect("the connector answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// The query's answer, with `/health/ready` asked again and again while it runs: every probe must be answered.
    async fn query_while_probing(&self, query: &str) -> (u16, Value) {
        let ready = format!("{}/health/ready", self.connector.management_url());
        let client = self.client.clone();
        let probes = tokio::spawn(async move {
            let mut answered = 0;
            loop {
                let probe = client.get(&ready).timeout(Duration::from_secs(5)).send().await;
                assert_eq!(probe.expect("the readiness probe is answered during the query").status(), 200);
                answered += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                if answered > 10_000 {
                    return answered;
                }
            }
        });
        let answer = self.query(query).await;
        assert!(!probes.is_finished(), "the probe loop ended early: {:?}", probes.await);
        probes.abort();
        answer
    }
}

fn message(body: &Value) -> String {
    body[0]["message"].as_str().unwrap_or_default().to_owned()
}

async fn refusals_hold(endpoint: &Endpoint<'_>) {
    let (status, body) = endpoint.query_while_probing(&deep_query()).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("sparql.max_depth"), "{body}");

    // A long run of prefix operators: the parser recurses on each (the fuzzer found it).
    let (status, body) = endpoint.query_while_probing(&format!("ASK {{ FILTER({}?x) }}", "- ".repeat(30_000))).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("sparql.max_depth"), "{body}");
    let (status, body) = endpoint.query_while_probing(&format!("ASK {{ FILTER({}?x) }}", "!".repeat(30_000))).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("negations"), "{body}");

    // Nested negations: the parser's time doubles or more with each (the fuzzer found 1 KB queries taking 8–12 s).
    let negations = format!("ASK {{ FILTER({}?x{}) }}", "!(".repeat(20), ")".repeat(20));
    let (status, body) = endpoint.query_while_probing(&negations).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("negations"), "{body}");

    let (status, body) = endpoint.query_while_probing(&cross_product_query()).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("sparql.max_memory_mb"), "{body}");

    let (status, body) = endpoint.query("SELECT * WHERE { SERVICE <http://127.0.0.1:9/sparql> { ?s ?p ?o } }").await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("SERVICE is not supported"), "{body}");

    let (status, body) = endpoint.query(&format!("SELECT * WHERE {{ ?s ?p ?o }} # {}", "x".repeat(70_000))).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("sparql.max_query_bytes"), "{body}");

    // What looks like a limit inside strings, IRIs, comments and variable names is no limit.
    let (status, body) =
        endpoint.query("SELECT ?service WHERE { BIND(\"SERVICE ((((\" AS ?service) } # SERVICE {{{{ \n LIMIT 1").await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_queries_are_refused_naming_the_limit_and_the_connector_keeps_answering() {
    let connector = TestConnector::start_with(Backend::Sqlite, |config| {
        config.sparql.max_memory_mb = 64;
        config.broker.enabled = true;
    })
    .await;
    let management = Endpoint {
        client: reqwest::Client::new(),
        url: format!("{}/management/sparql", connector.management_url()),
        headers: vec![("X-Api-Key", connector.api_key.clone())],
        connector: &connector,
    };
    refusals_hold(&management).await;

    // The broker's public endpoint: any participant with a did:web reaches it (here the connector itself signs).
    let public = Endpoint {
        client: reqwest::Client::new(),
        url: format!("{}/broker/sparql", connector.public_url()),
        headers: vec![("Authorization", connector.authorization(connector.participant_id()))],
        connector: &connector,
    };
    let (status, body) = public.query_while_probing(&deep_query()).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("sparql.max_depth"), "{body}");
    let public =
        Endpoint { headers: vec![("Authorization", connector.authorization(connector.participant_id()))], ..public };
    let (status, body) = public.query_while_probing(&cross_product_query()).await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("sparql.max_memory_mb"), "{body}");

    connector.running.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_larger_than_the_row_limit_is_refused_naming_it() {
    let connector = TestConnector::start_with(Backend::Sqlite, |config| config.sparql.max_rows = 3).await;
    let endpoint = Endpoint {
        client: reqwest::Client::new(),
        url: format!("{}/management/sparql", connector.management_url()),
        headers: vec![("X-Api-Key", connector.api_key.clone())],
        connector: &connector,
    };
    let (status, body) = endpoint.query("SELECT ?n WHERE { VALUES ?n { 1 2 3 } }").await;
    assert_eq!(status, 200, "three rows are within the limit: {body}");
    let (status, body) = endpoint.query("SELECT ?n WHERE { VALUES ?n { 1 2 3 4 } }").await;
    assert_eq!(status, 400, "{body}");
    assert!(message(&body).contains("sparql.max_rows = 3"), "{body}");
    connector.running.shutdown().await;
}
