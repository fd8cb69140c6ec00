//! The `switchyard` command: `serve`, `mock-provider`, `policy check|test`.

use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use switchyard::config::{Config, MockSettings};

#[derive(Parser)]
#[command(
    name = "switchyard",
    version,
    about = "An AI gateway: OpenAI/Anthropic-compatible, programmable with Rhai, logs searchable"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the gateway.
    Serve {
        /// The TOML config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Override server.log_format (`text` or `json`).
        #[arg(long)]
        log_format: Option<String>,
    },
    /// Run the mock provider over HTTP (OpenAI, Anthropic and Gemini wire formats).
    MockProvider(MockArgs),
    /// Check or try policy scripts.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
}

#[derive(clap::Args)]
struct MockArgs {
    /// Address to listen on (port 0 picks one; the first stdout line names it).
    #[arg(long, default_value = "127.0.0.1:9090")]
    listen: String,
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    #[arg(long, default_value_t = 16)]
    output_tokens: u32,
    #[arg(long, default_value_t = 8)]
    stream_chunks: u32,
    #[arg(long, default_value_t = 0)]
    chunk_interval_ms: u64,
    /// Fraction of requests answered with --error-status.
    #[arg(long, default_value_t = 0.0)]
    error_rate: f64,
    #[arg(long, default_value_t = 500)]
    error_status: u16,
    /// Accept requests and never answer.
    #[arg(long)]
    hang: bool,
    #[arg(long, default_value_t = 0)]
    first_token_delay_ms: u64,
}

#[derive(Subcommand)]
enum PolicyCommand {
    /// Compile and self-check a policy directory; exits non-zero with file:line:col on error.
    Check {
        dir: PathBuf,
        /// Check returned model names against this config's models.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Print the Decision a request would get, as JSON.
    Test {
        dir: PathBuf,
        /// An OpenAI-style chat request body.
        #[arg(long)]
        request: PathBuf,
        #[arg(long)]
        user: Option<String>,
        #[arg(long)]
        tier: Option<String>,
        #[arg(long)]
        feature: Option<String>,
        #[arg(long)]
        config: Option<PathBuf>,
    },
}

fn init_tracing(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

/// The policy host and known model names for the CLI (from `--config`, or none).
type CliHost = (
    std::sync::Arc<dyn switchyard::policy::HostInfo>,
    Option<std::collections::HashSet<String>>,
);

fn host_for(config: Option<&PathBuf>) -> anyhow::Result<CliHost> {
    match config {
        Some(path) => {
            let config = Config::load(path)?;
            let known = config.models.iter().map(|m| m.name.clone()).collect();
            Ok((
                std::sync::Arc::new(switchyard::policy::ConfigHost::new(&config)),
                Some(known),
            ))
        }
        None => Ok((
            std::sync::Arc::new(switchyard::policy::ConfigHost::from_models(
                std::iter::empty(),
            )),
            None,
        )),
    }
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve { config, log_format } => {
            let config = match Config::load(&config) {
                Ok(config) => config,
                Err(err) => {
                    eprintln!("{err}");
                    std::process::exit(2);
                }
            };
            let json = log_format.as_deref().unwrap_or(&config.server.log_format) == "json";
            init_tracing(json);
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let gateway = switchyard::app::build(config)?;
                switchyard::app::serve(gateway).await
            })
        }
        Command::MockProvider(args) => {
            init_tracing(false);
            let settings = MockSettings {
                latency_ms: args.latency_ms,
                output_tokens: args.output_tokens,
                stream_chunks: args.stream_chunks,
                chunk_interval_ms: args.chunk_interval_ms,
                error_rate: args.error_rate,
                error_status: args.error_status,
                hang: args.hang,
                first_token_delay_ms: args.first_token_delay_ms,
                ..MockSettings::default()
            };
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let listener = tokio::net::TcpListener::bind(&args.listen)
                    .await
                    .with_context(|| format!("cannot listen on {}", args.listen))?;
                println!(
                    "mock-provider listening on http://{}",
                    listener.local_addr()?
                );
                switchyard::mock_server::serve(
                    listener,
                    settings,
                    switchyard::server::shutdown_signal(),
                )
                .await?;
                Ok(())
            })
        }
        Command::Policy { command } => match command {
            PolicyCommand::Check { dir, config } => {
                let (host, known) = host_for(config.as_ref())?;
                match switchyard::policy::cli::check(&dir, known, host) {
                    Ok(summary) => {
                        println!("{summary}");
                        Ok(())
                    }
                    Err(err) => {
                        eprintln!("{err}");
                        std::process::exit(1);
                    }
                }
            }
            PolicyCommand::Test {
                dir,
                request,
                user,
                tier,
                feature,
                config,
            } => {
                let (host, _known) = host_for(config.as_ref())?;
                let text = std::fs::read_to_string(&request)
                    .with_context(|| format!("cannot read {}", request.display()))?;
                let body: serde_json::Value = serde_json::from_str(&text)
                    .with_context(|| format!("{} is not JSON", request.display()))?;
                match switchyard::policy::cli::test(
                    &dir,
                    &body,
                    user.as_deref(),
                    tier.as_deref(),
                    feature.as_deref(),
                    host,
                ) {
                    Ok(decision) => {
                        println!("{}", serde_json::to_string_pretty(&decision)?);
                        Ok(())
                    }
                    Err(err) => {
                        eprintln!("{err}");
                        std::process::exit(1);
                    }
                }
            }
        },
    }
}
