//! The `chat4all` command line.

use anyhow::Context;
use chat4all_loadtest::report::{RunReport, write_summary};
use chat4all_server::cli::admin::{self, AdminCommand, AdminTarget};
use chat4all_server::{Application, Config, Settings, telemetry};
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
        /// TOML file with settings (keys are the flag names); flags and CHAT4ALL_* variables override it.
        #[arg(long, env = "CHAT4ALL_CONFIG")]
        config: Option<PathBuf>,
        #[command(flatten)]
        settings: Settings,
    },
    /// Load testing: reports from k6 results.
    Loadtest {
        #[command(subcommand)]
        command: LoadtestCommand,
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
        Command::Loadtest {
            command: LoadtestCommand::Report { runs, summary_dir },
        } => report(&runs, summary_dir.as_deref()),
        Command::Serve { config, settings } => {
            let file = config
                .as_deref()
                .map(Settings::from_file)
                .transpose()?
                .unwrap_or_default();
            let config = Config::resolve(settings.over(file))?;
            let _flush_logs_on_exit = telemetry::init_logging(config.log_format);
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

#[derive(Subcommand)]
enum LoadtestCommand {
    /// Writes report.md and SVG charts into each k6 result folder, and SUMMARY.md comparing them; exits 1 when a
    /// threshold failed.
    Report {
        /// Result folders written by scripts/load-tests/run.sh.
        #[arg(required = true)]
        runs: Vec<PathBuf>,
        /// Where SUMMARY.md goes [default: the first run's parent folder].
        #[arg(long)]
        summary_dir: Option<PathBuf>,
    },
}

fn report(runs: &[PathBuf], summary_dir: Option<&std::path::Path>) -> anyhow::Result<()> {
    let mut reports = Vec::new();
    for dir in runs {
        let run = RunReport::analyze(dir)?;
        let path = run.write()?;
        println!(
            "{}: {:.1} messages/s, error rate {:.3} %, thresholds {} -> {}",
            run.name,
            run.messages_per_second(),
            run.error_rate() * 100.0,
            if run.passed() { "passed" } else { "FAILED" },
            path.display()
        );
        reports.push(run);
    }
    let dir = summary_dir
        .map(std::path::Path::to_path_buf)
        .or_else(|| runs[0].parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default();
    println!("summary -> {}", write_summary(&dir, &reports)?.display());
    let failed: Vec<&str> = reports
        .iter()
        .filter(|r| !r.passed())
        .map(|r| r.name.as_str())
        .collect();
    anyhow::ensure!(
        failed.is_empty(),
        "thresholds failed in {}",
        failed.join(", ")
    );
    Ok(())
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
