//! The `chat4all` command line.

use anyhow::Context;
use chat4all_server::cli::admin::{self, AdminCommand, AdminTarget};
use chat4all_server::{Application, Flags, config, telemetry};
use clap::{Parser, Subcommand};
use std::path::PathBuf;

/// A faster allocator than the system one for the many small, short-lived allocations of request handling.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

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

#[derive(Subcommand)]
enum Command {
    /// Run every role in one process on embedded storage in the data directory.
    Serve {
        /// TOML file of settings by section (see README.md, Configuration); CHAT4ALL_* variables and flags override it.
        #[arg(long, env = "CHAT4ALL_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        flags: Flags,
    },
    /// Load testing: capacity ramps, and reports from k6 results.
    Loadtest {
        #[command(subcommand)]
        command: chat4all_loadtest::cli::Command,
    },
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
        Command::Serve { config, flags } => {
            let config = config::load(config.as_deref(), utf8_env(), &flags)?;
            let _flush_logs_on_exit = telemetry::init_logging(config.telemetry.log_format());
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the runtime")?;
            runtime.block_on(async {
                let app = Application::build(config).await?;
                app.run_until(shutdown_signal()).await
            })
        }
    }
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
