//! Negotiation benchmark: N complete DSP negotiations (request → agreement → verification → finalized) between two
//! real connectors on loopback with SQLite, K in flight; against a "bare bound" in the same run: a minimal axum + sqlx
//! pair doing the same four HTTP round trips per negotiation with comparable commits (one per message received, one
//! per message delivered, one to start). Prints negotiations per second, latency p50/p99, peak RSS, and for each side
//! its writer: batches, writes per batch and how busy it was (a writer busy most of the run is what limits the rate).
//! On PostgreSQL also the CPU time the server's processes used per negotiation (when the server runs on this machine)
//! and the writers' round trips to it per negotiation.
//!
//! `cargo bench -p hanse --bench negotiation`; `HANSE_BENCH_NEGOTIATIONS` (default 2000), `HANSE_BENCH_IN_FLIGHT`
//! (default 64). The connectors run on SQLite and then on PostgreSQL (`HANSE_TEST_DATABASE_URL`, a fresh schema each),
//! with the ratio of the two; `HANSE_BENCH_BACKEND=sqlite` or `postgres` runs one. The bare bound always uses SQLite.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::{Path, State};
use axum::routing::post;
use hanse::negotiation::Start;
use hanse::negotiation::machine::State as NegotiationState;
use hanse::server::RunningConnector;
use hanse::store::DocumentKind;
use hanse::testing::{Backend, TestDatabase};
use serde_json::json;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use tokio::net::TcpListener;

mod support;
use support::{cpu_seconds, percentile, postgres_cpu_seconds, rss_mb};
use tokio::sync::Semaphore;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// A connector in `dir`, on `database`.
async fn connector(dir: &std::path::Path, database: &TestDatabase) -> RunningConnector {
    let (_, mut config, public, management) = hanse::testing::initialised(dir).await;
    config.store.database_url = Some(database.url.clone());
    config.store.schema = database.schema.clone();
    hanse::server::start_on(config, public, management).await.unwrap()
}

/// Prints a run's figures; `cpu` is the process's CPU time (both sides, all threads) the run used, in seconds.
fn report(name: &str, n: usize, elapsed: Duration, cpu: f64, mut latencies: Vec<Duration>) -> f64 {
    latencies.sort();
    let rate = n as f64 / elapsed.as_secs_f64();
    println!(
        "{name:<28} {n} in {:.2} s: {rate:>7.0} negotiations/s, latency p50 {:.1} ms, p99 {:.1} ms, CPU {:.2} ms per negotiation",
        elapsed.as_secs_f64(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        cpu * 1000.0 / n as f64
    );
    rate
}

async fn hanse_run(n: usize, in_flight: usize, backend: Backend) -> f64 {
    let (provider_dir, consumer_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (provider_db, consumer_db) = (TestDatabase::new(backend), TestDatabase::new(backend));
    let provider = connector(provider_dir.path(), &provider_db).await;
    let consumer = connector(consumer_dir.path(), &consumer_db).await;
    let (p, c) = (provider.state.clone(), consumer.state.clone());
    let asset = json!({"@id": "cohort", "properties": {"title": "Cohort"},
                       "dataAddress": {"type": "HttpData", "baseUrl": "https://ehr.example/c"}});
    let offer = support::offer(&p, &c.config.participant.id, asset, false).await;
    let mut events = c.negotiations.events();
    let permits = Arc::new(Semaphore::new(in_flight));
    let started_at: Arc<std::sync::Mutex<HashMap<String, Instant>>> = Default::default();
    let server_cpu = postgres_cpu_seconds().filter(|_| backend == Backend::Postgres);
    let (begin, cpu) = (Instant::now(), cpu_seconds());
    let starter = {
        let (c, permits, started_at, offer) = (c.clone(), permits.clone(), started_at.clone(), offer.clone());
        let provider_address = format!("{}/protocol/2025-1", provider.public_url());
        let provider_id = p.config.participant.id.clone();
        tokio::spawn(async move {
            // Requests arrive concurrently, as from many researchers' tools: each start runs in its own task. Finished
            // starts are reaped as the loop goes, so that their tasks' memory does not count as the connectors'.
            let mut starts = tokio::task::JoinSet::new();
            for _ in 0..n {
                permits.acquire().await.unwrap().forget();
                while let Some(start) = starts.try_join_next() {
                    start.unwrap();
                }
                let (c, started_at, offer) = (c.clone(), started_at.clone(), offer.clone());
                let (provider_address, provider_id) = (provider_address.clone(), provider_id.clone());
                starts.spawn(async move {
                    let start = Instant::now();
                    let negotiation = c
                        .negotiations
                        .start(Start {
                            provider_address,
                            provider_id,
                            offer,
                            auto_accept: true,
                            purpose: None,
                            pull_on_agreement: false,
                        })
                        .await
                        .unwrap();
                    started_at.lock().unwrap().insert(negotiation.row.id.clone(), start);
                });
            }
            while let Some(start) = starts.join_next().await {
                start.unwrap();
            }
        })
    };
    // An operator registering datasets while the negotiations run: one asset every 10 ms, each write timed.
    let (operator_done, mut operator_stop) = tokio::sync::watch::channel(false);
    let operator = {
        let store = p.store.clone();
        tokio::spawn(async move {
            let mut writes = Vec::new();
            let mut tick = tokio::time::interval(Duration::from_millis(10));
            // A write that waited long is not followed by a burst of the ones its wait skipped.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !*operator_stop.borrow_and_update() {
                tokio::select! {
                    _ = tick.tick() => {}
                    _ = operator_stop.changed() => break,
                }
                let (id, start) = (format!("registered-{}", writes.len()), Instant::now());
                store.documents.insert_document(DocumentKind::Asset, &id, &json!({"@id": id})).await.unwrap();
                writes.push(start.elapsed());
            }
            writes
        })
    };
    let mut latencies = Vec::with_capacity(n);
    let mut terminated = 0;
    while latencies.len() + terminated < n {
        match events.recv().await {
            Ok((id, state @ (NegotiationState::Finalized | NegotiationState::Terminated))) => {
                let start = loop {
                    if let Some(start) = started_at.lock().unwrap().remove(&id) {
                        break start;
                    }
                    tokio::task::yield_now().await;
                };
                if state == NegotiationState::Finalized {
                    latencies.push(start.elapsed())
                } else {
                    terminated += 1
                }
                permits.add_permits(1);
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(missed)) => panic!("missed {missed} events"),
            Err(error) => panic!("{error}"),
        }
    }
    starter.await.unwrap();
    let elapsed = begin.elapsed();
    assert_eq!(terminated, 0, "negotiations terminated during the benchmark");
    let name = match backend {
        Backend::Sqlite => "hanse (DSP, SQLite)",
        Backend::Postgres => "hanse (DSP, PostgreSQL)",
    };
    let rate = report(name, n, elapsed, cpu_seconds() - cpu, latencies);
    if let (Some(before), Some(after)) = (server_cpu, postgres_cpu_seconds()) {
        println!("{:<28} PostgreSQL server: CPU {:.2} ms per negotiation", "", (after - before) * 1000.0 / n as f64);
    }
    let mut round_trips = 0.0;
    for (side, state) in [("provider", &p), ("consumer", &c)] {
        let text = state.metrics.render(state.metrics.scrape());
        let sum = |name: &str| -> f64 {
            text.lines().filter(|l| l.starts_with(name)).filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok()).sum()
        };
        let (batches, writes) = (sum("hanse_store_write_batch_size_count"), sum("hanse_store_write_batch_size_sum"));
        round_trips += sum("hanse_store_writer_round_trips_total");
        println!(
            "{:<28} {side}'s writer: {batches:.0} batches of {:.1} writes on average, busy {:.0} % of the run",
            "",
            writes / batches.max(1.0),
            100.0 * sum("hanse_store_commit_duration_seconds_sum") / elapsed.as_secs_f64()
        );
    }
    if backend == Backend::Postgres {
        println!("{:<28} writers' round trips per negotiation (both sides): {:.2}", "", round_trips / n as f64);
    }
    operator_done.send(true).unwrap();
    let mut writes = operator.await.unwrap();
    writes.sort();
    println!(
        "{:<28} {} asset registrations meanwhile: p50 {:.1} ms, p99 {:.1} ms, longest {:.1} ms",
        "",
        writes.len(),
        percentile(&writes, 0.5),
        percentile(&writes, 0.99),
        writes.last().map_or(0.0, |w| w.as_secs_f64() * 1000.0)
    );
    provider.shutdown().await;
    consumer.shutdown().await;
    rate
}

/// The bare bound: two axum servers, each with its own SQLite (WAL, same settings as Hanse), exchanging the four
/// messages of a negotiation as plain POSTs with one commit per received message and one per delivered message.
async fn bare_run(n: usize, in_flight: usize) -> f64 {
    async fn side() -> (sqlx::SqlitePool, String, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("bare.db"))
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new().max_connections(8).connect_with(options).await.unwrap();
        sqlx::query("CREATE TABLE t (id TEXT PRIMARY KEY, state TEXT NOT NULL, body TEXT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        sqlx::query("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, body TEXT NOT NULL)")
            .execute(&pool)
            .await
            .unwrap();
        let app = axum::Router::new()
            .route("/{state}/{id}", post(|State(pool): State<sqlx::SqlitePool>, Path((state, id)): Path<(String, String)>, body: String| async move {
                sqlx::query("INSERT INTO t (id, state, body) VALUES ($1, $2, $3) ON CONFLICT (id) DO UPDATE SET state = $2, body = $3")
                    .bind(id).bind(state).bind(body).execute(&pool).await.unwrap();
                "ok"
            }))
            .with_state(pool.clone());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (pool, url, dir)
    }
    let (a, a_url, _a_dir) = side().await;
    let (b, b_url, _b_dir) = side().await;
    let client = reqwest::Client::new();
    let body = json!({"@context": ["https://w3id.org/dspace/2025/1/context.jsonld"], "@type": "ContractRequestMessage", "offer": {"@id": "x", "permission": [{"action": "use"}]}}).to_string();
    let permits = Arc::new(Semaphore::new(in_flight));
    let (begin, cpu) = (Instant::now(), cpu_seconds());
    let mut tasks = Vec::with_capacity(n);
    for i in 0..n {
        let permit = permits.clone().acquire_owned().await.unwrap();
        let (a, b, a_url, b_url, client, body) =
            (a.clone(), b.clone(), a_url.clone(), b_url.clone(), client.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let start = Instant::now();
            let id = format!("n{i}");
            sqlx::query("INSERT INTO t (id, state, body) VALUES ($1, 'REQUESTED', $2)")
                .bind(&id)
                .bind(&body)
                .execute(&a)
                .await
                .unwrap();
            for (step, (url, sender)) in
                [(&b_url, &a), (&a_url, &b), (&b_url, &a), (&a_url, &b)].into_iter().enumerate()
            {
                client
                    .post(format!("{url}/{step}/{id}"))
                    .body(body.clone())
                    .send()
                    .await
                    .unwrap()
                    .error_for_status()
                    .unwrap();
                sqlx::query("INSERT INTO outbox (body) VALUES ('delivered')").execute(sender).await.unwrap();
            }
            drop(permit);
            start.elapsed()
        }));
    }
    let mut latencies = Vec::with_capacity(n);
    for task in tasks {
        latencies.push(task.await.unwrap());
    }
    let elapsed = begin.elapsed();
    report("bare bound (axum + sqlx)", n, elapsed, cpu_seconds() - cpu, latencies)
}

/// PostgreSQL's count of committed transactions in the test database (both connectors' schemas), when it answers.
async fn pg_commits() -> Option<i64> {
    let database = hanse::testing::TestDatabase::new(Backend::Postgres);
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect(&database.url).await.ok()?;
    // Statistics are flushed when a backend goes idle: take a fresh snapshot.
    sqlx::query("SELECT pg_stat_clear_snapshot()").execute(&mut connection).await.ok()?;
    sqlx::query_scalar("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
        .fetch_one(&mut connection)
        .await
        .ok()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let n = env("HANSE_BENCH_NEGOTIATIONS", 2000);
    let in_flight = env("HANSE_BENCH_IN_FLIGHT", 64);
    let backends = match std::env::var("HANSE_BENCH_BACKEND").as_deref() {
        Ok("postgres") => vec![Backend::Postgres],
        Ok("sqlite") => vec![Backend::Sqlite],
        Err(_) => vec![Backend::Sqlite, Backend::Postgres],
        Ok(other) => panic!("HANSE_BENCH_BACKEND is sqlite or postgres, not {other}"),
    };
    println!("{n} negotiations, {in_flight} in flight, provider and consumer in this process, 2 cores");
    let bare = bare_run(n, in_flight).await;
    let mut rates = Vec::new();
    for backend in backends {
        let commits = if backend == Backend::Postgres { pg_commits().await } else { None };
        let rate = hanse_run(n, in_flight, backend).await;
        println!("hanse on {backend:?} / bare bound: {:.2}", rate / bare);
        if let (Some(before), Some(after)) = (commits, pg_commits().await) {
            println!(
                "  PostgreSQL transactions committed per negotiation (both sides): {:.1}",
                (after - before) as f64 / n as f64
            );
        }
        rates.push((backend, rate));
    }
    if let [(_, sqlite), (_, postgres)] = rates[..] {
        println!("PostgreSQL / SQLite: {:.2}", postgres / sqlite);
    }
    println!("peak RSS of the process {:.0} MB", rss_mb("VmHWM:"));
}
