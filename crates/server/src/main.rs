//! The `chat4all` command line.

use anyhow::Context;
use chat4all_server::cli::admin::{self, AdminCommand, AdminTarget};
use chat4all_server::{Application, Flags, Role, app, config, telemetry};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// A faster allocator than the system one for the many small, short-lived allocations of request handling.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Threads for blocking work (SQLite, file I/O, password hashing). Each user bounds its own concurrency, but the
/// pool spawns a thread whenever none is idle *right now*, and under load a notified thread may not have run yet:
/// without a cap 64 busy connections had grown it to 260 threads. More blocking tasks than this wait in its queue.
const MAX_BLOCKING_THREADS: usize = 32;

#[derive(Parser)]
#[command(
    name = "chat4all",
    version,
    about = "One HTTP API in front of many messaging channels"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// What every role command takes.
#[derive(clap::Args)]
struct RunArgs {
    /// TOML file of settings by section (see README.md, Configuration); CHAT4ALL_* variables and flags override it.
    #[arg(long, env = "CHAT4ALL_CONFIG")]
    config: Option<PathBuf>,
    /// Validate the configuration and reach every backend the role uses, print what was found, and exit (0 when
    /// all is well); `--check-config=offline` validates the configuration without reaching the backends.
    #[arg(long, value_name = "online|offline", num_args = 0..=1, default_missing_value = "online")]
    check_config: Option<app::CheckDepth>,
    #[command(flatten)]
    flags: Flags,
}

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process (embedded storage in the data directory by default).
    Serve(RunArgs),
    /// Run the HTTP api and real-time gateway against shared backends (default address 127.0.0.1:8080).
    Api(RunArgs),
    /// Run the router against shared backends; serves /health and /metrics (default 127.0.0.1:8082).
    Router(RunArgs),
    /// Run the connector of one channel against shared backends; serves /health and /metrics (default
    /// 127.0.0.1:8083 for whatsapp, 8084 for instagram).
    Connector {
        /// The channel, as named in the configuration (`whatsapp`, `instagram`, or a `[channels.<name>]`).
        channel: String,
        #[command(flatten)]
        run: RunArgs,
    },
    /// Load testing: capacity ramps, and reports from k6 results.
    Loadtest {
        #[command(subcommand)]
        command: chat4all_loadtest::cli::Command,
    },
    /// A command-line client of a running server: login, send, history, watch, files, groups, identities.
    Client(chat4all_client::cli::Args),
    /// Operator commands against a running server (dead letters, channel faults, raw events).
    Admin {
        #[command(flatten)]
        target: AdminTarget,
        #[command(subcommand)]
        command: AdminCommand,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Admin { target, command } => admin::run(target, command),
        Command::Loadtest { command } => chat4all_loadtest::cli::run(command),
        Command::Client(args) => std::process::exit(chat4all_client::cli::run(args)),
        Command::Serve(run) => run_role(Role::All, run),
        Command::Api(run) => run_role(Role::Api, run),
        Command::Router(run) => run_role(Role::Router, run),
        Command::Connector { channel, run } => run_role(Role::Connector(channel), run),
    }
}

/// Loads the role's configuration, then runs the role until a signal, or only checks it.
fn run_role(role: Role, run: RunArgs) -> anyhow::Result<()> {
    let mut defaults = config::Config::default();
    defaults.http.addr = role.default_addr();
    let config = config::load_over(defaults, run.config.as_deref(), utf8_env(), &run.flags)?;
    let _flush_logs_on_exit =
        telemetry::init_logging(config.telemetry.log_format(), role.service());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .max_blocking_threads(MAX_BLOCKING_THREADS)
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(async {
        if let Some(depth) = run.check_config {
            for finding in app::check(&config, &role, depth).await? {
                println!("ok: {finding}");
            }
            return Ok(());
        }
        let app = Application::build(config, role).await?;
        app.run_until(shutdown_signal()).await
    })
}

/// The process environment; a variable whose name or value is not UTF-8 is not a setting and is skipped.
fn utf8_env() -> impl Iterator<Item = (String, String)> {
    std::env::vars_os()
        .filter_map(|(name, value)| Some((name.into_string().ok()?, value.into_string().ok()?)))
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
async fn shutdown_signal() {
    let interrupt = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("SIGINT received"),
        () = terminate => tracing::info!("SIGTERM received"),
    }
}
