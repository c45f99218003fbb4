//! The `xindao` command line: `xindao serve` runs the server, `xindao config` prints the configuration
//! (`--markdown`: the reference of every key, docs/configuration.md).

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;
use xindao::config::{reference_markdown, Flags, LogFormat};
use xindao::obs::otel::Traces;
use xindao::{Config, Server};

/// xindao (信道): real-time chat server for WeChat mini-programs and the web.
///
/// Configuration comes from defaults, then a TOML file (--config), then XINDAO_* environment variables
/// (e.g. XINDAO_LISTEN), then flags.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (zero configuration: SQLite in ./xindao-data, listening on 127.0.0.1:8080).
    Serve(Flags),
    /// Print the effective configuration as TOML (secrets masked) and exit.
    Config(ConfigArgs),
    /// Connect to a deployment as a client would and say which hop holds the time (DNS, TCP, TLS, proxy,
    /// upgrade, server, commit, network). Exit status 1 when a step fails.
    Probe(xindao::probe::ProbeArgs),
    /// Webhook deliveries: `webhooks dead list` shows the dead-letter list, `webhooks dead redrive [--id N]`
    /// puts deliveries back in the outbox.
    Webhooks {
        #[command(subcommand)]
        command: WebhooksCommand,
    },
    /// Manage the server API's keys in the configured store (docs/server-api.md).
    Apikey {
        #[command(subcommand)]
        action: ApikeyAction,
    },
}

#[derive(Subcommand)]
enum WebhooksCommand {
    /// The dead-letter list (deliveries that failed for the whole retry window).
    Dead {
        #[command(subcommand)]
        command: DeadCommand,
    },
}

#[derive(Subcommand)]
enum DeadCommand {
    /// Print the dead deliveries as JSON lines, oldest first.
    List {
        /// Only those of this endpoint (its `name`).
        #[arg(long)]
        endpoint: Option<String>,
        #[command(flatten)]
        flags: Flags,
    },
    /// Put dead deliveries back in the outbox (all, or those given with --id), keeping their delivery ids.
    Redrive {
        /// A delivery id to redrive (repeatable); none: all.
        #[arg(long = "id")]
        ids: Vec<i64>,
        #[command(flatten)]
        flags: Flags,
    },
}

#[derive(Subcommand)]
enum ApikeyAction {
    /// Create a key and print it (the only time it is shown; only its SHA-256 is stored).
    Create {
        /// The key's name, shown in every log line of its calls: 1..=64 of [A-Za-z0-9_.-].
        #[arg(long)]
        name: String,
        /// What it may do, comma-separated: messages, rooms, users, sessions, webhooks, read.
        #[arg(long)]
        scopes: String,
        #[command(flatten)]
        flags: Flags,
    },
    /// List the keys (name, scopes, created, revoked), never the keys themselves.
    List {
        #[command(flatten)]
        flags: Flags,
    },
    /// Revoke the key of this name: its next call answers 401.
    Revoke {
        #[arg(long)]
        name: String,
        #[command(flatten)]
        flags: Flags,
    },
}

#[derive(clap::Args)]
struct ConfigArgs {
    /// Print the reference of every key as Markdown (docs/configuration.md) instead.
    #[arg(long)]
    markdown: bool,
    #[command(flatten)]
    flags: Flags,
}

fn main() -> anyhow::Result<()> {
    match Cli::parse().command {
        Command::Config(ConfigArgs { markdown: true, .. }) => print!("{}", reference_markdown()),
        Command::Config(ConfigArgs { flags, .. }) => print!("{}", flags.load()?.to_toml_masked()),
        Command::Serve(flags) => serve(flags.load()?)?,
        Command::Webhooks {
            command: WebhooksCommand::Dead { command },
        } => dead_letters(command)?,
        Command::Apikey { action } => apikey(action)?,
        Command::Probe(args) => probe(args)?,
    }
    Ok(())
}

/// `xindao probe`: prints the report (text or JSON); exits 1 when a step failed.
fn probe(args: xindao::probe::ProbeArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let report = runtime.block_on(xindao::probe::run(&args));
    let out = if args.json {
        serde_json::to_string_pretty(&report)? + "\n"
    } else {
        report.text()
    };
    // A closed pipe (`| head`) is not an error of the probe.
    let _ = std::io::Write::write_all(&mut std::io::stdout(), out.as_bytes());
    if !report.ok() {
        std::process::exit(1);
    }
    Ok(())
}

fn dead_letters(command: DeadCommand) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        match command {
            DeadCommand::List { endpoint, flags } => {
                for dead in xindao::webhooks::admin::dead_list(&flags.load()?, endpoint).await? {
                    println!("{}", serde_json::to_string(&dead)?);
                }
            }
            DeadCommand::Redrive { ids, flags } => {
                let ids = (!ids.is_empty()).then_some(ids);
                let moved = xindao::webhooks::admin::redrive(&flags.load()?, ids).await?;
                println!("redriven {moved}");
            }
        }
        Ok(())
    })
}

/// Runs an `apikey` command against the configured store (migrating it first, as the server does).
fn apikey(action: ApikeyAction) -> anyhow::Result<()> {
    use xindao::http::server_api::keys;
    let flags = match &action {
        ApikeyAction::Create { flags, .. }
        | ApikeyAction::List { flags }
        | ApikeyAction::Revoke { flags, .. } => flags,
    };
    let config = flags.load()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        // Nothing is appended: the commit sink is never used.
        let (sink, _commits) = tokio::sync::mpsc::channel(1);
        let store = xindao::store::open(&config, sink.into(), Default::default()).await?;
        let outcome: anyhow::Result<()> = async {
            match action {
                ApikeyAction::Create { name, scopes, .. } => {
                    let (key, stored) = keys::create(store.as_ref(), &name, &scopes).await?;
                    eprintln!(
                        "created API key `{}` (scopes {}); it is shown once, store it now:",
                        stored.name, stored.scopes
                    );
                    println!("{key}");
                }
                ApikeyAction::List { .. } => {
                    for key in keys::list(store.as_ref()).await? {
                        let state = match key.revoked_at {
                            Some(at) => format!("revoked_at={at}"),
                            None => "live".to_string(),
                        };
                        println!(
                            "{}\tscopes={}\tcreated_at={}\t{state}",
                            key.name, key.scopes, key.created_at
                        );
                    }
                }
                ApikeyAction::Revoke { name, .. } => {
                    keys::revoke(store.as_ref(), &name).await?;
                    eprintln!("revoked API key `{name}`");
                }
            }
            Ok(())
        }
        .await;
        store.shutdown().await;
        outcome
    })
}

/// Installs the log subscriber: the log lines (text or JSON on stderr, filtered by `log`) and, when
/// `otel_endpoint` is set, the trace exporter (run on the current runtime; flush it with `Traces::shutdown`).
fn init_logging(config: &Config) -> anyhow::Result<Option<Traces>> {
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    use tracing_subscriber::{fmt, Layer};
    let filter = EnvFilter::try_new(&config.log).unwrap_or_else(|_| EnvFilter::new("info"));
    let (traces_layer, traces) = xindao::obs::otel::layer(config)?.unzip();
    let lines = fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let lines = match config.log_format {
        LogFormat::Json => lines.json().with_filter(filter).boxed(),
        LogFormat::Text => lines.with_filter(filter).boxed(),
    };
    tracing_subscriber::registry()
        .with(traces_layer)
        .with(lines)
        .init();
    Ok(traces)
}

fn serve(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let traces = runtime.block_on(async { init_logging(&config) })?;
    if let Some(endpoint) = &config.otel_endpoint {
        tracing::info!(endpoint, "exporting traces (OTLP/HTTP)");
    }
    let served = runtime.block_on(async move {
        let server = Server::bind(config).await?;
        let addr = server.local_addr();
        tracing::info!(%addr, "xindao listening");
        // Machine-readable lines on stdout for scripts and tests that start the binary on port 0: first the
        // public address, then the admin one (/metrics) when there is one.
        println!("listening http://{addr}");
        if let Some(admin) = server.admin_addr() {
            tracing::info!(%admin, "admin listener (/metrics)");
            println!("admin http://{admin}");
        }
        server.run(shutdown_signal()).await?;
        anyhow::Ok(())
    });
    // The last spans (the connections closed at shutdown) are sent before the process ends.
    if let Some(traces) = traces {
        runtime.block_on(traces.shutdown());
    }
    served
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => return ctrl_c.await.unwrap_or(()),
            };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    ctrl_c.await.unwrap_or(());
    tracing::info!("shutdown signal received");
}
