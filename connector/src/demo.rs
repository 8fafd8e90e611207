//! `hanse demo`: a connector with embedded defaults (SQLite in a temporary folder, generated identity and keys),
//! started and checked over real HTTP, narrated step by step.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::net::TcpListener;

use crate::config::Config;
use crate::init::{InitOptions, did_web_for, init};
use crate::server;

/// Runs the demo; any failed step is an error naming the step.
pub async fn run(keep_running: bool) -> anyhow::Result<()> {
    let started = Instant::now();
    let dir = tempfile::Builder::new().prefix("hanse-demo-").tempdir().context("creating a temporary folder")?;
    let public = TcpListener::bind("127.0.0.1:0").await.context("binding the public listener")?;
    let management = TcpListener::bind("127.0.0.1:0").await.context("binding the management listener")?;
    let public_addr = public.local_addr()?;
    let done = init(&InitOptions {
        dir: dir.path().to_owned(),
        participant_id: Some(did_web_for(&public_addr)),
        public_bind: public_addr,
        management_bind: management.local_addr()?,
        development: true,
    })?;
    let config = Config::load(&done.config_file)?;
    println!("Hanse demo — one connector with embedded defaults");
    println!("  folder       {}", dir.path().display());
    println!("  participant  {}", done.participant_id);

    let step = Instant::now();
    let running = server::start_on(config, public, management).await.context("step 'start the connector'")?;
    println!("  public       {}  (DSP protocol, health)", running.public_url());
    println!("  management   {}  (X-Api-Key: {})", running.management_url(), done.api_key);
    println!("[1] connector started ({} store) in {} ms", running.state.store.dialect(), step.elapsed().as_millis());

    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let check = |name: &'static str, request: reqwest::RequestBuilder, expected: u16| async move {
        let step = Instant::now();
        let response = request.send().await.with_context(|| format!("step '{name}'"))?;
        let status = response.status().as_u16();
        if status != expected {
            bail!("step '{name}': expected HTTP {expected}, got {status}");
        }
        println!("[✓] {name}: HTTP {status} in {} ms", step.elapsed().as_millis());
        anyhow::Ok(response)
    };
    let public_url = running.public_url();
    let management_url = running.management_url();
    check("public listener ready", client.get(format!("{public_url}/health/ready")), 200).await?;
    check("management listener ready", client.get(format!("{management_url}/health/ready")), 200).await?;
    check(
        "management refuses a request without X-Api-Key",
        client.get(format!("{management_url}/management/connector")),
        401,
    )
    .await?;
    let about: serde_json::Value = check(
        "management answers with the API key",
        client.get(format!("{management_url}/management/connector")).header("X-Api-Key", &done.api_key),
        200,
    )
    .await?
    .json()
    .await?;
    if about["participantId"] != done.participant_id.as_str() {
        bail!("step 'management answers with the API key': participant {} is not ours", about["participantId"]);
    }

    if keep_running {
        println!("Running; press Ctrl-C to stop.");
        running.run_until_signal().await;
    } else {
        running.shutdown().await;
    }
    println!(
        "Demo finished in {} ms: the connector started, answered on both listeners and stopped cleanly.",
        started.elapsed().as_millis()
    );
    Ok(())
}
