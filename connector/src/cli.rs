//! The `hanse` command line.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use crate::config::{Config, LogFormat};
use crate::init::{InitOptions, init};
use crate::{demo, server, telemetry};

const EXAMPLES: &str = "\
Examples:
  hanse demo                              run a connector with embedded defaults and check it end to end
  hanse init --dir ./hospital-a           write hanse.toml, a participant key and development TLS files
  hanse run --config ./hospital-a/hanse.toml
  HANSE_MANAGEMENT_API_KEY=... hanse run  override any key with HANSE_<SECTION>_<KEY>
  hanse --log-format json run             one JSON object per log line";

/// Hanse: a sovereign data space connector (DSP 2025-1, ODRL, DCAT / HealthDCAT-AP, Gaia-X).
#[derive(Debug, Parser)]
#[command(name = "hanse", version, about, after_help = EXAMPLES)]
pub struct Cli {
    /// Log format; overrides `log.format` in the configuration.
    #[arg(long, global = true, value_enum)]
    pub log_format: Option<LogFormat>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Write a commented hanse.toml, a participant key pair and development TLS certificates.
    #[command(
        after_help = "Examples:\n  hanse init\n  hanse init --dir ./hospital-a --participant-id did:web:hospital-a.example"
    )]
    Init(InitArgs),
    /// Start the connector.
    #[command(
        after_help = "Examples:\n  hanse run\n  hanse run --config /etc/hanse/hanse.toml\n  HANSE_STORE_DATABASE_URL=postgres://postgres@127.0.0.1/hanse hanse run"
    )]
    Run(RunArgs),
    /// Start a connector with embedded defaults in a temporary folder and check it over HTTP.
    #[command(after_help = "Examples:\n  hanse demo\n  hanse demo --keep-running")]
    Demo(DemoArgs),
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Folder to write into (created if missing).
    #[arg(long, default_value = ".")]
    pub dir: PathBuf,
    /// The participant's did:web (default: did:web:localhost%3A<public port>).
    #[arg(long)]
    pub participant_id: Option<String>,
    /// Address of the public listener.
    #[arg(long, default_value = "127.0.0.1:19194")]
    pub public_bind: SocketAddr,
    /// Address of the management listener.
    #[arg(long, default_value = "127.0.0.1:19193")]
    pub management_bind: SocketAddr,
    /// Write a production configuration (development mode off).
    #[arg(long)]
    pub production: bool,
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The configuration file.
    #[arg(long, short, env = "HANSE_CONFIG", default_value = "hanse.toml")]
    pub config: PathBuf,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Leave the connector running and print its URLs and API key.
    #[arg(long)]
    pub keep_running: bool,
}

/// Parses the command line and runs the command; errors are one line on stderr and a non-zero exit status.
pub fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {}", one_line(&error));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, each cause once (many errors already quote their source).
fn one_line(error: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in error.chain() {
        let text = cause.to_string();
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    line.replace('\n', " ")
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread().enable_all().build()?)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init(args) => {
            let done = init(&InitOptions {
                dir: args.dir,
                participant_id: args.participant_id,
                public_bind: args.public_bind,
                management_bind: args.management_bind,
                development: !args.production,
            })?;
            println!("Initialised {}", done.participant_id);
            for file in &done.files {
                println!("  wrote {}", file.display());
            }
            println!("Start it with: hanse run --config {}", done.config_file.display());
            Ok(())
        }
        Command::Run(args) => {
            let mut config = Config::load(&args.config)?;
            if let Some(format) = cli.log_format {
                config.log.format = format;
            }
            telemetry::init(&config.log.level, config.log.format);
            runtime()?.block_on(async {
                let running = server::start(config).await?;
                running.run_until_signal().await;
                anyhow::Ok(())
            })
        }
        Command::Demo(args) => {
            telemetry::init("warn", cli.log_format.unwrap_or_default());
            runtime()?.block_on(demo::run(args.keep_running))
        }
    }
}
