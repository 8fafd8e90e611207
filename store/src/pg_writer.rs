//! PostgreSQL's hot write path: the writes every DSP message causes (a process's state change with its outgoing
//! message, audit entries and token id, a delivery's completion, data plane usage) are queued to one writer per
//! connector, on a thread of its own, which runs whatever has queued in one transaction (group commit), as the SQLite
//! writer thread does (decision 0019), and sends that transaction's statements to the server pipelined (decision 0043).
//!
//! A batch is sent in one go: `BEGIN`, the audit head row locked (`FOR UPDATE`), every job's statements, the batch's
//! token ids (one insert answering the ids it recorded), idempotency keys and audit entries, the head written back; then, once every
//! answer is as the batch expected, `COMMIT`. While busy, a batch waits up to a millisecond to fill, as SQLite's does. That is two round
//! trips to the server for a batch of any size, where a round trip per statement (some 26 for one negotiation) bounded
//! the rate before.
//! A job's later statements depend on its first one (a token id, an idempotency key and audit entries are recorded
//! only when the job's statement changed a row) and a job that fails must leave the rest of its batch committed, as
//! if each job ran in a savepoint of its own. So the batch is sent with a plan for each job, and what the server
//! answers is held to it:
//! - a job whose statement changed no row is run again without its later statements;
//! - a job whose token id or idempotency key was recorded before, or whose statement failed, is answered with that
//!   failure and left out;
//! - the audit head is assumed to be where the last batch left it, and read again when another writer moved it.
//!
//! Anything other than the plan rolls the transaction back, and the batch is sent again with what was learnt. Only
//! what a job did while every job before it went as planned is learnt as final, so a job's answer is what it would
//! have been with each job in a savepoint of its own, in order. After [`PIPELINED_ATTEMPTS`] the batch runs one job
//! at a time, with a savepoint each, as it always did. Every job is answered after its batch commits, never before.
//!
//! The writer keeps its own connection (tokio-postgres, which pipelines; sqlx does not), opened from the same
//! settings as the pool and opened again after the server dropped it. Other processes on the same database append
//! through the same head row lock, so entries stay gapless and ordered across processes.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use futures_util::future::{MaybeDone, maybe_done};
use openssl::ssl::{SslConnector, SslFiletype, SslMethod, SslVerifyMode};
use sqlx::postgres::{PgConnectOptions, PgSslMode};
use tokio::sync::{mpsc, oneshot};
use tokio_postgres::config::SslMode;
use tokio_postgres::types::{ToSql, Type};

use super::audit::{BatchHead, HEAD_FOR_UPDATE};
use super::statement::{Param, Statement};
use super::writer::{BUSY_BATCH, GATHER, GATHER_TO};
use super::{StoreError, TokenUse, Write};

/// The most jobs one transaction takes.
const MAX_BATCH: usize = 256;

/// How often a batch is sent pipelined before its jobs run one at a time. Each attempt after the first learns at
/// least the first job that did not go as planned; a deadlock's victim is sent again as it was.
const PIPELINED_ATTEMPTS: usize = 4;

/// Prepared statements the writer's connection keeps: a busy connector runs some thirty statement texts (process
/// changes and deliveries of both kinds, token ids) and the audit appends, one text for each number of rows (up to
/// 256 each for entries, receipts and tree nodes).
const STATEMENTS_KEPT: usize = 1024;

/// How long opening the writer's connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

struct Job {
    write: Write,
    outcome: Option<Result<u64, StoreError>>,
    reply: oneshot::Sender<Result<u64, StoreError>>,
}

impl Job {
    fn answer(self, commit: &Result<(), String>) {
        let _ = self.reply.send(super::writer::answer(commit, self.outcome));
    }

    /// Whether the job records anything after its statement (which it does only when the statement changed a row).
    fn follows_up(&self) -> bool {
        self.write.token.is_some() || self.write.claim.is_some() || !self.write.audit.is_empty()
    }
}

/// How to connect the writer: the pool's settings, for tokio-postgres.
pub(crate) struct Connect {
    config: tokio_postgres::Config,
    tls: postgres_openssl::MakeTlsConnector,
}

impl Connect {
    /// The settings sqlx took from `url` and the `PG*` environment variables (`options`), with what it does not hand
    /// back taken the same way: the password (`PGPASSWORD`) and the TLS files (`sslrootcert`, `sslcert`, `sslkey`
    /// or `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY`). TLS modes as sqlx has them: `prefer` and `require` without a
    /// root certificate do not verify the server, `require` with one and `verify-ca` check its chain, `verify-full`
    /// also its name.
    pub(crate) fn new(url: &str, options: &PgConnectOptions) -> Result<Connect, StoreError> {
        let mut config = tokio_postgres::Config::new();
        match options.get_socket() {
            Some(folder) => config.host_path(folder),
            None => config.host(options.get_host()),
        };
        config.port(options.get_port()).user(options.get_username()).connect_timeout(CONNECT_TIMEOUT);
        if let Some(database) = options.get_database() {
            config.dbname(database);
        }
        // The writer's connection is told from the pool's in `pg_stat_activity`.
        config.application_name(&match options.get_application_name() {
            Some(name) => format!("{name} (writer)"),
            None => "hanse writer".to_owned(),
        });
        if let Some(settings) = options.get_options() {
            config.options(settings);
        }
        let url = url::Url::parse(url).ok();
        let setting = |name: &str, variable: &str| {
            url.as_ref()
                .and_then(|url| url.query_pairs().find(|(key, _)| key == name).map(|(_, value)| value.into_owned()))
                .or_else(|| std::env::var(variable).ok())
        };
        let password = url
            .as_ref()
            .and_then(|url| url.password())
            .map(|password| percent_encoding::percent_decode_str(password).decode_utf8_lossy().into_owned())
            .or_else(|| std::env::var("PGPASSWORD").ok());
        if let Some(password) = password {
            config.password(password);
        }
        let tls_error = |error: openssl::error::ErrorStack| StoreError::Writer(format!("TLS settings: {error}"));
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(tls_error)?;
        let root = setting("sslrootcert", "PGSSLROOTCERT");
        if let Some(root) = &root {
            builder.set_ca_file(root).map_err(tls_error)?;
        }
        if let (Some(certificate), Some(key)) = (setting("sslcert", "PGSSLCERT"), setting("sslkey", "PGSSLKEY")) {
            builder.set_certificate_chain_file(certificate).map_err(tls_error)?;
            builder.set_private_key_file(key, SslFiletype::PEM).map_err(tls_error)?;
        }
        // Whether the server's chain is checked, and its name.
        let (mode, chain, name) = match options.get_ssl_mode() {
            PgSslMode::Disable => (SslMode::Disable, false, false),
            PgSslMode::Allow | PgSslMode::Prefer => (SslMode::Prefer, false, false),
            PgSslMode::Require => (SslMode::Require, root.is_some(), false),
            PgSslMode::VerifyCa => (SslMode::Require, true, false),
            PgSslMode::VerifyFull => (SslMode::Require, true, true),
        };
        config.ssl_mode(mode);
        if !chain {
            builder.set_verify(SslVerifyMode::NONE);
        }
        let mut tls = postgres_openssl::MakeTlsConnector::new(builder.build());
        if !name {
            tls.set_callback(|connection, _| {
                connection.set_verify_hostname(false);
                Ok(())
            });
        }
        Ok(Connect { config, tls })
    }
}

/// The handle to the writer task. The task ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub(crate) struct PgWriter {
    jobs: mpsc::UnboundedSender<Job>,
}

impl PgWriter {
    /// Starts the writer on a thread of its own (with a runtime of its own for it and its connection); it connects
    /// with `connect` at its first batch. Its own thread, as SQLite's writer has: on the connector's runtime, each of
    /// the batch's wake-ups (answers arriving, the connection task reading them) waits behind the requests being
    /// served (decision 0043).
    pub(crate) fn start(connect: Connect, batches: super::BatchMeter) -> std::io::Result<PgWriter> {
        let (jobs, queue) = mpsc::unbounded_channel::<Job>();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        std::thread::Builder::new()
            .name("hanse-pg-writer".into())
            .spawn(move || runtime.block_on(serve(connect, batches, queue)))?;
        Ok(PgWriter { jobs })
    }

    /// Runs `write` in the next batch; answers once that batch committed.
    pub(crate) async fn run(&self, write: Write) -> Result<u64, StoreError> {
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { write, outcome: None, reply })
            .map_err(|_| StoreError::Writer("the PostgreSQL writer has stopped".into()))?;
        answer.await.map_err(|_| StoreError::Writer("the PostgreSQL writer stopped before answering".into()))?
    }
}

/// Runs batches of whatever has queued until every handle is dropped.
async fn serve(connect: Connect, batches: super::BatchMeter, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut writer = Writer { connect, session: None, head: None, round_trips: batches.round_trips.clone() };
    let mut last = 0;
    while let Some(first) = queue.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // While busy, a batch waits a moment to fill, as SQLite's does: every batch costs its `BEGIN`, head lock and
        // write-back, `COMMIT` and WAL flush however many jobs it carries.
        if last >= BUSY_BATCH {
            let until = tokio::time::Instant::now() + GATHER;
            while batch.len() < GATHER_TO {
                match tokio::time::timeout_at(until, queue.recv()).await {
                    Ok(Some(job)) => batch.push(job),
                    Ok(None) | Err(_) => break,
                }
            }
        }
        last = batch.len();
        let started = std::time::Instant::now();
        let commit = writer.run(&mut batch).await.map_err(|e| format!("the write batch did not commit: {e}"));
        batches.batch(batch.len(), started);
        for job in batch {
            job.answer(&commit);
        }
    }
}

/// The writer task's state between batches.
struct Writer {
    connect: Connect,
    session: Option<Session>,
    /// The audit head as the last batch that read or moved it left it; checked, never trusted, by the next.
    head: Option<(i64, Vec<u8>)>,
    round_trips: metrics::Counter,
}

impl Writer {
    /// Runs the batch in one transaction and commits it; each job's outcome is set.
    async fn run(&mut self, batch: &mut [Job]) -> Result<(), StoreError> {
        if self.session.as_ref().is_none_or(|s| s.client.is_closed()) {
            self.session = None;
            self.head = None;
            self.session = Some(Session::open(&self.connect, self.round_trips.clone()).await?);
        }
        let session = self.session.as_mut().expect("just opened");
        let result = run_batch(session, batch, &mut self.head).await;
        if result.is_err() || session.client.is_closed() {
            // The transaction's end is unknown, so is the head; a broken connection is opened again next time.
            self.head = None;
            if session.client.is_closed() {
                self.session = None;
            } else {
                let _ = session.simple("ROLLBACK").await;
            }
        }
        result
    }
}

/// What a job is planned to do in the next attempt.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Plan {
    /// Its statement changes a row; its token id, key and audit entries follow.
    Full,
    /// Its statement changes no row, so nothing follows.
    StatementOnly,
    /// It failed (its outcome says how) and is left out.
    Out,
}

/// How an attempt ended.
enum Attempt {
    Committed,
    /// Something did not go as planned; the transaction is still open and must be rolled back.
    Again,
    /// The batch's audit entries could not be added and no job can be told from the others: each job runs on its
    /// own. The transaction is still open.
    OneByOne,
}

async fn run_batch(
    session: &mut Session,
    batch: &mut [Job],
    known_head: &mut Option<(i64, Vec<u8>)>,
) -> Result<(), StoreError> {
    let mut plans = vec![Plan::Full; batch.len()];
    let mut open = false;
    for _ in 0..PIPELINED_ATTEMPTS {
        match attempt(session, batch, &mut plans, known_head, open).await? {
            Attempt::Committed => return Ok(()),
            Attempt::Again => open = true,
            Attempt::OneByOne => break,
        }
    }
    session.simple("ROLLBACK").await?;
    one_by_one(session, batch, known_head).await
}

/// One pipelined attempt at the batch under `plans`; see the module's documentation. `open`: the last attempt's
/// transaction is still open and is rolled back first, in the same round trip.
async fn attempt(
    session: &mut Session,
    batch: &mut [Job],
    plans: &mut [Plan],
    known_head: &mut Option<(i64, Vec<u8>)>,
    open: bool,
) -> Result<Attempt, StoreError> {
    let appends = batch.iter().zip(plans.iter()).any(|(job, plan)| *plan == Plan::Full && job.write.appends());
    let mut requests: Vec<Request> = Vec::new();
    if open {
        requests.push(Request::Simple("ROLLBACK"));
    }
    requests.push(Request::Simple("BEGIN"));
    if appends {
        requests.push(Request::Head);
    }
    // Without a guess at the head, it is read (and locked) in a round trip of its own before anything is appended.
    let mut read = None;
    if appends && known_head.is_none() {
        read = Some(session.begin_with_head(&requests).await?);
        known_head.clone_from(&read);
        requests.clear();
    }
    let before = match known_head {
        Some((size, frontier)) if appends => BatchHead::at(*size, frontier.clone()),
        _ => BatchHead::default(),
    };
    let mut head = before.clone();
    let lead = requests.len();
    let (mut events, mut tokens, mut claims) = (Vec::new(), Vec::new(), Vec::new());
    for (i, (job, plan)) in batch.iter().zip(plans.iter()).enumerate() {
        let write = &job.write;
        if *plan != Plan::Out {
            requests.extend(write.statement.iter().map(Request::Execute));
            if *plan == Plan::Full {
                tokens.extend(write.token.iter().map(|token| (i, token)));
                claims.extend(write.claim.iter().map(|claim| (i, claim)));
                events.extend(&write.audit);
            }
        }
    }
    // The token ids of every job that goes ahead, in one statement: an id a job before it in the batch brought is a
    // replay without asking; the others are replays when the insert does not answer them.
    let mut seen = std::collections::HashSet::new();
    let first_uses: Vec<&TokenUse> = tokens.iter().map(|(_, token)| *token).filter(|t| seen.insert(&t.key)).collect();
    let token_statements = TokenUse::inserts(first_uses);
    let token_requests = token_statements.len();
    let tokens: Vec<(usize, String)> = tokens.into_iter().map(|(i, token)| (i, token.key.clone())).collect();
    requests.extend(token_statements.into_iter().map(Request::Returning));
    // Then the idempotency keys, job by job, after the token ids as a job alone records them.
    requests.extend(claims.iter().map(|(_, claim)| Request::Execute(claim)));
    let claims: Vec<usize> = claims.into_iter().map(|(i, _)| i).collect();
    // The audit entries of every job that goes ahead, in the jobs' order: the same rows as job by job, in a statement
    // or two a table.
    requests.extend(head.append_statements(events.into_iter())?.into_iter().map(Request::Owned));
    requests.extend(head.write_back_statement(&before).map(Request::Owned));
    let mut answers = session.pipeline(&requests).await?.into_iter();
    for answer in answers.by_ref().take(lead) {
        match answer {
            Ok(Answer::Head(row)) => read = Some(row),
            Ok(_) => {}
            Err(error) if is_deadlock(&error) => return Ok(Attempt::Again),
            Err(error) => return Err(error.into()),
        }
    }
    if appends && read != *known_head {
        // Another writer appended since the last batch: the head is read again, first, next time.
        *known_head = None;
        return Ok(Attempt::Again);
    }
    // Held to the plan in order. Until the first job that went otherwise, what each job did is what it would have done
    // in a savepoint of its own, so a failure there is its answer; after it, which statements changed a row is only a
    // guess for the next attempt.
    let mut as_planned = true;
    for (job, plan) in batch.iter_mut().zip(plans.iter_mut()) {
        if *plan == Plan::Out {
            continue;
        }
        let answer = job.write.statement.as_ref().map(|_| answers.next().expect("an answer for each request"));
        match observe(job, *plan, answer) {
            Seen::AsPlanned(changed) => job.outcome = Some(Ok(changed)),
            Seen::Guess(guess) => {
                *plan = guess;
                as_planned = false;
            }
            Seen::Failed(error) => {
                // Everything after a failure was refused unread (the transaction is aborted).
                if as_planned && !error.is_deadlock() {
                    *plan = Plan::Out;
                    job.outcome = Some(Err(error));
                }
                return Ok(Attempt::Again);
            }
        }
    }
    if !as_planned {
        return Ok(Attempt::Again);
    }
    let mut recorded = std::collections::HashSet::new();
    for answer in answers.by_ref().take(token_requests) {
        match answer {
            Ok(Answer::Keys(keys)) => recorded.extend(keys),
            Ok(_) => {}
            Err(error) if is_deadlock(&error) => return Ok(Attempt::Again),
            Err(_) => return Ok(Attempt::OneByOne),
        }
    }
    // Every job before these went as planned, so each replay is the job's answer.
    let mut replayed = false;
    for (i, key) in tokens {
        if !recorded.remove(&key) {
            plans[i] = Plan::Out;
            batch[i].outcome = Some(Err(StoreError::Replayed));
            replayed = true;
        }
    }
    if replayed {
        return Ok(Attempt::Again);
    }
    let mut claimed = false;
    for (i, answer) in claims.into_iter().zip(answers.by_ref()) {
        match answer {
            Ok(Answer::Rows(0)) => {
                plans[i] = Plan::Out;
                batch[i].outcome = Some(Err(StoreError::Claimed));
                claimed = true;
            }
            Ok(_) => {}
            Err(error) if is_deadlock(&error) => return Ok(Attempt::Again),
            Err(error) => {
                // Every key before it went as the job alone would have it; the ones after were refused unread.
                plans[i] = Plan::Out;
                batch[i].outcome = Some(Err(error.into()));
                return Ok(Attempt::Again);
            }
        }
    }
    if claimed {
        return Ok(Attempt::Again);
    }
    for answer in answers {
        match answer {
            Ok(_) => {}
            Err(error) if is_deadlock(&error) => return Ok(Attempt::Again),
            Err(_) => return Ok(Attempt::OneByOne),
        }
    }
    session.simple("COMMIT").await?;
    if let Some(position) = head.position() {
        *known_head = Some(position.clone());
    }
    Ok(Attempt::Committed)
}

/// What a job's statement answered says against its plan.
enum Seen {
    /// It went as planned; its statement changed this many rows.
    AsPlanned(u64),
    /// Its statement changed a row where none was expected, or none where one was: the plan for the next attempt.
    Guess(Plan),
    /// Its statement failed.
    Failed(StoreError),
}

/// `answer`: the job's statement's, `None` when it has none.
fn observe(job: &Job, plan: Plan, answer: Option<Result<Answer, tokio_postgres::Error>>) -> Seen {
    let changed = match answer {
        Some(Ok(Answer::Rows(rows))) => Some(rows),
        Some(Ok(_)) => Some(0),
        Some(Err(error)) => return Seen::Failed(error.into()),
        None => None,
    };
    let follows = changed != Some(0) && job.follows_up();
    match plan {
        Plan::StatementOnly if follows => Seen::Guess(Plan::Full),
        Plan::Full if changed == Some(0) && job.follows_up() => Seen::Guess(Plan::StatementOnly),
        _ => Seen::AsPlanned(changed.unwrap_or(0)),
    }
}

/// The batch one job at a time, each in a savepoint of its own: a round trip per statement.
async fn one_by_one(
    session: &mut Session,
    batch: &mut [Job],
    known_head: &mut Option<(i64, Vec<u8>)>,
) -> Result<(), StoreError> {
    let mut head = BatchHead::default();
    if batch.iter().any(|job| job.write.appends()) {
        let (size, frontier) = session.begin_with_head(&[Request::Simple("BEGIN"), Request::Head]).await?;
        head = BatchHead::at(size, frontier);
    } else {
        session.simple("BEGIN").await?;
    }
    let before = head.clone();
    for job in batch.iter_mut() {
        let saved = head.clone();
        session.simple("SAVEPOINT job").await?;
        let outcome = alone(session, &job.write, &mut head).await;
        if outcome.is_ok() {
            session.simple("RELEASE SAVEPOINT job").await?;
        } else {
            // The head row stays locked (it was taken before the first savepoint); its in-memory state goes back.
            session.simple("ROLLBACK TO SAVEPOINT job").await?;
            head = saved;
        }
        job.outcome = Some(outcome);
    }
    if let Some(statement) = head.write_back_statement(&before) {
        session.execute(&statement).await?;
    }
    session.simple("COMMIT").await?;
    if let Some(position) = head.position() {
        *known_head = Some(position.clone());
    }
    Ok(())
}

/// One job's statements, each awaited before the next.
async fn alone(session: &mut Session, write: &Write, head: &mut BatchHead) -> Result<u64, StoreError> {
    let changed = match &write.statement {
        Some(statement) => Some(session.execute(statement).await?),
        None => None,
    };
    if changed != Some(0) {
        if let Some(token) = &write.token
            && session.execute(&token.statement()).await? == 0
        {
            return Err(StoreError::Replayed);
        }
        if let Some(claim) = &write.claim
            && session.execute(claim).await? == 0
        {
            return Err(StoreError::Claimed);
        }
        for statement in head.append_statements(write.audit.iter())? {
            session.execute(&statement).await?;
        }
    }
    Ok(changed.unwrap_or(0))
}

/// Whether PostgreSQL ended the statement to break a deadlock.
pub(crate) fn is_deadlock(error: &tokio_postgres::Error) -> bool {
    error.code() == Some(&tokio_postgres::error::SqlState::T_R_DEADLOCK_DETECTED)
}

/// One request of a pipeline.
enum Request<'a> {
    /// A statement without parameters or rows (`BEGIN`, `ROLLBACK`), in the simple protocol.
    Simple(&'static str),
    /// [`HEAD_FOR_UPDATE`].
    Head,
    Execute(&'a Statement),
    Owned(Statement),
    /// A statement whose rows' first columns are answered ([`TokenUse::inserts`]).
    Returning(Statement),
}

impl Request<'_> {
    fn statement(&self) -> Option<&Statement> {
        match self {
            Request::Execute(statement) => Some(statement),
            Request::Owned(statement) | Request::Returning(statement) => Some(statement),
            Request::Simple(_) | Request::Head => None,
        }
    }
}

/// A request's answer.
enum Answer {
    Done,
    Head((i64, Vec<u8>)),
    Rows(u64),
    Keys(Vec<String>),
}

/// The writer's connection and the statements prepared on it.
struct Session {
    client: tokio_postgres::Client,
    round_trips: metrics::Counter,
    prepared: HashMap<Key, tokio_postgres::Statement>,
    head: tokio_postgres::Statement,
}

impl Session {
    async fn open(connect: &Connect, round_trips: metrics::Counter) -> Result<Session, StoreError> {
        let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, connect.config.connect(connect.tls.clone()))
            .await
            .map_err(|_| StoreError::Writer("the PostgreSQL writer could not connect in time".into()))??;
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::warn!(%error, "the PostgreSQL writer's connection ended");
            }
        });
        let head = client.prepare(HEAD_FOR_UPDATE).await?;
        Ok(Session { client, round_trips, prepared: HashMap::new(), head })
    }

    /// Sends every request at once, in order, and answers each one's outcome in the same order. Statements not yet
    /// prepared on this connection are prepared first (a round trip, likewise pipelined), after the leading requests
    /// that end or begin a transaction: a statement cannot be prepared in a transaction that failed.
    async fn pipeline(
        &mut self,
        requests: &[Request<'_>],
    ) -> Result<Vec<Result<Answer, tokio_postgres::Error>>, StoreError> {
        let keys: Vec<Option<Key>> = requests.iter().map(|request| request.statement().map(key)).collect();
        let mut missing: Vec<&Key> = Vec::new();
        for key in keys.iter().flatten() {
            if !self.prepared.contains_key(key) && !missing.contains(&key) {
                missing.push(key);
            }
        }
        if missing.is_empty() {
            return Ok(self.send(requests, &keys).await);
        }
        let lead = requests.iter().take_while(|request| matches!(request, Request::Simple(_))).count();
        let mut answers = self.send(&requests[..lead], &keys[..lead]).await;
        if self.prepared.len() + missing.len() > STATEMENTS_KEPT {
            self.prepared.clear();
        }
        let client = &self.client;
        self.round_trips.increment(1);
        let prepared =
            in_order(missing.iter().map(|(sql, types)| Box::pin(client.prepare_typed(sql, types)) as Pending<'_, _>))
                .await;
        for (key, statement) in missing.into_iter().zip(prepared) {
            self.prepared.insert(key.clone(), statement?);
        }
        answers.extend(self.send(&requests[lead..], &keys[lead..]).await);
        Ok(answers)
    }

    /// [`Session::pipeline`] of prepared statements, `keys` those of `requests`.
    async fn send(&self, requests: &[Request<'_>], keys: &[Option<Key>]) -> Vec<Result<Answer, tokio_postgres::Error>> {
        self.round_trips.increment(1);
        let values: Vec<Vec<&(dyn ToSql + Sync)>> = requests
            .iter()
            .map(|request| request.statement().map(|statement| statement.params.iter().map(value).collect()))
            .map(Option::unwrap_or_default)
            .collect();
        let (client, head, prepared) = (&self.client, &self.head, &self.prepared);
        let futures = requests.iter().zip(&values).zip(keys).map(|((request, values), key)| -> Pending<'_, _> {
            let statement = key.as_ref().map(|key| &prepared[key]);
            match (request, statement) {
                (Request::Simple(sql), _) => {
                    Box::pin(async move { client.batch_execute(sql).await.map(|_| Answer::Done) })
                }
                (Request::Head, _) => Box::pin(async move {
                    let row = client.query_one(head, &[]).await?;
                    Ok(Answer::Head((row.try_get(0)?, row.try_get(1)?)))
                }),
                (Request::Returning(_), Some(statement)) => Box::pin(async move {
                    let rows = client.query(statement, values).await?;
                    rows.iter().map(|row| row.try_get(0)).collect::<Result<_, _>>().map(Answer::Keys)
                }),
                (_, statement) => {
                    let statement = statement.expect("a statement's request has its key");
                    Box::pin(async move { client.execute(statement, values).await.map(Answer::Rows) })
                }
            }
        });
        in_order(futures).await
    }

    /// Runs `requests` (which begin a transaction and end in [`Request::Head`]); answers the head read and locked.
    async fn begin_with_head(&mut self, requests: &[Request<'_>]) -> Result<(i64, Vec<u8>), StoreError> {
        let mut head = None;
        for answer in self.pipeline(requests).await? {
            if let Answer::Head(row) = answer? {
                head = Some(row);
            }
        }
        head.ok_or_else(|| StoreError::Corrupt("the audit log has no head row".into()))
    }

    /// A statement without parameters or rows, alone.
    async fn simple(&self, sql: &str) -> Result<(), StoreError> {
        self.round_trips.increment(1);
        Ok(self.client.batch_execute(sql).await?)
    }

    /// Runs one statement; answers the rows it changed.
    async fn execute(&mut self, statement: &Statement) -> Result<u64, StoreError> {
        match self.pipeline(&[Request::Execute(statement)]).await?.pop().expect("one answer")? {
            Answer::Rows(rows) => Ok(rows),
            _ => Ok(0),
        }
    }
}

type Pending<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Drives `futures` to their ends, each first polled in turn: tokio-postgres sends a request when its future is first
/// polled, so the requests go out in this order.
async fn in_order<'a, T>(futures: impl IntoIterator<Item = Pending<'a, T>>) -> Vec<T> {
    let mut pending: Vec<MaybeDone<Pending<'a, T>>> = futures.into_iter().map(maybe_done).collect();
    std::future::poll_fn(|cx| {
        let mut done = true;
        for future in pending.iter_mut() {
            done &= Pin::new(future).poll(cx).is_ready();
        }
        if done { Poll::Ready(()) } else { Poll::Pending }
    })
    .await;
    pending.iter_mut().map(|future| Pin::new(future).take_output().expect("every future is done")).collect()
}

/// A prepared statement's key: its text and its parameters' types as sqlx would bind them.
type Key = (String, Vec<Type>);

fn key(statement: &Statement) -> Key {
    let types = statement
        .params
        .iter()
        .map(|param| match param {
            Param::Text(_) => Type::TEXT,
            Param::Int(_) => Type::INT8,
            Param::Bytes(_) => Type::BYTEA,
        })
        .collect();
    (statement.sql.clone(), types)
}

fn value(param: &Param) -> &(dyn ToSql + Sync) {
    match param {
        Param::Text(text) => text,
        Param::Int(number) => number,
        Param::Bytes(bytes) => bytes,
    }
}

#[cfg(test)]
mod tests {
    use sqlx::Connection;
    use sqlx::postgres::PgConnectOptions;

    use crate::testing::{Backend, TestDatabase, backends};
    use crate::{AuditFilter, Store, StoreOptions};

    /// A fresh PostgreSQL schema, unless this run leaves PostgreSQL out.
    fn postgres() -> Option<TestDatabase> {
        backends().contains(&Backend::Postgres).then(|| TestDatabase::new(Backend::Postgres))
    }

    /// A store on `database` whose connections carry its schema's name, with `settings` added to its URL.
    async fn named(database: &TestDatabase, settings: &str) -> Store {
        let separator = if database.url.contains('?') { '&' } else { '?' };
        let name = database.schema.as_deref().unwrap();
        let url = format!("{}{separator}application_name={name}{settings}", database.url);
        Store::open(&url, &StoreOptions { schema: database.schema.clone(), ..Default::default() }).await.unwrap()
    }

    /// The `pg_stat_activity` condition that picks the writer's connection of a [`named`] store.
    fn its_writer(database: &TestDatabase) -> String {
        format!("application_name = '{} (writer)'", database.schema.as_deref().unwrap())
    }

    /// A query's one value, on a connection of its own.
    async fn ask<T>(database: &TestDatabase, sql: String) -> T
    where
        T: Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        let mut connection = sqlx::PgConnection::connect(&database.url).await.unwrap();
        sqlx::query_scalar(sqlx::AssertSqlSafe(sql)).fetch_one(&mut connection).await.unwrap()
    }

    fn event(i: usize) -> Vec<hanse_audit::Event> {
        vec![hanse_audit::Event::new("test.write", serde_json::json!({"write": i}))]
    }

    /// The server ends the writer's connection (a restart, a fail-over, an administrator): the next write opens a new
    /// one and the log goes on from where it was.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_connection_the_server_ended_is_opened_again() {
        let Some(database) = postgres() else { return };
        let store = named(&database, "").await;
        store.audit.append_audit(event(0)).await.unwrap();
        let ended: i64 = ask(
            &database,
            format!(
                "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE {}) AS ended",
                its_writer(&database)
            ),
        )
        .await;
        assert_eq!(ended, 1, "the writer's connection");
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        store.audit.append_audit(event(1)).await.unwrap();
        let entries = store.audit.audit_entries(&AuditFilter { limit: 10, ..Default::default() }).await.unwrap();
        assert_eq!(entries.iter().map(|e| e.seq).collect::<Vec<_>>(), [0, 1]);
    }

    /// `sslmode=require` holds for the writer's own connection as for the pool's.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_writer_connects_with_tls_when_the_url_requires_it() {
        let Some(database) = postgres() else { return };
        let socket = <PgConnectOptions as std::str::FromStr>::from_str(&database.url).unwrap().get_socket().is_some();
        if socket || ask::<String>(&database, "SHOW ssl".into()).await != "on" {
            eprintln!("the test server is reached over a Unix socket, or offers no TLS: nothing to check");
            return;
        }
        let store = named(&database, "&sslmode=require").await;
        store.audit.append_audit(event(0)).await.unwrap();
        let encrypted: bool = ask(
            &database,
            format!(
                "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity USING (pid) WHERE {}",
                its_writer(&database)
            ),
        )
        .await;
        assert!(encrypted, "the writer's connection is not encrypted");
    }
}
