//! The `chat4all loadtest` command line: capacity ramps against a running server, and reports from k6 results.

use crate::report::{RunReport, write_summary};
use clap::Subcommand;
use std::path::PathBuf;

/// Runs a `chat4all loadtest` command.
pub fn run(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Report { runs, summary_dir } => report(&runs, summary_dir.as_deref()),
        Command::Capacity(args) => capacity(args),
    }
}

/// A `chat4all loadtest` subcommand.
#[derive(Subcommand)]
pub enum Command {
    /// Ramps an open-model arrival rate of sends until p99 passes the SLO or errors pass the limit; reports the knee.
    Capacity(CapacityArgs),
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

/// Options of `chat4all loadtest capacity`.
#[derive(clap::Args)]
pub struct CapacityArgs {
    /// Base URL of the server.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    url: String,
    /// First arrival rate (requests per second).
    #[arg(long, default_value_t = 250)]
    start_rate: u32,
    /// Rate added per step; 0 keeps the first rate for --steps steps (a soak).
    #[arg(long, default_value_t = 250)]
    step_rate: u32,
    /// Most steps run (at most 1,440) [default: until --max-rate or the SLO].
    #[arg(long)]
    steps: Option<u32>,
    /// Seconds per step.
    #[arg(long, default_value_t = 5)]
    step_secs: u64,
    /// Seconds sent at the first rate before the first step, not counted (connections opened, conversations
    /// created); 0 measures from a cold start.
    #[arg(long, default_value_t = 3)]
    warmup_secs: u64,
    /// Highest rate tried.
    #[arg(long, default_value_t = 20_000)]
    max_rate: u32,
    /// p99 objective in ms.
    #[arg(long, default_value_t = 200.0)]
    slo_p99_ms: f64,
    /// Users the load is spread over.
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Also ramp GET /health/live and print the efficiency ratio of the send path to it.
    #[arg(long)]
    compare_bare: bool,
    /// Allow a target outside the loopback range.
    #[arg(long)]
    allow_remote: bool,
    /// Where capacity.md and capacity.svg go.
    #[arg(long, default_value = "results/capacity")]
    out: PathBuf,
}

fn capacity(args: CapacityArgs) -> anyhow::Result<()> {
    use crate::capacity::{self, CapacityOptions, Target};
    anyhow::ensure!(
        args.step_rate > 0 || args.steps.is_some(),
        "--step-rate 0 keeps one rate: give --steps to say for how many steps"
    );
    let options = CapacityOptions {
        url: args.url.trim_end_matches('/').to_owned(),
        start_rate: args.start_rate,
        step_rate: args.step_rate,
        steps: args.steps.map(|n| n.clamp(1, 1440)),
        step_secs: args.step_secs.clamp(1, 60),
        warmup_secs: args.warmup_secs.min(60),
        max_rate: args.max_rate.min(100_000),
        slo_p99_ms: args.slo_p99_ms,
        max_error_rate: 0.01,
        users: args.users.clamp(1, 1000),
        e2e_sample_every: 100,
        allow_remote: args.allow_remote,
    };
    capacity::check_target(&options.url, options.allow_remote)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let client = std::sync::Arc::new(capacity::Client::new(&options.url)?);
        let senders = std::sync::Arc::new(capacity::senders(&client, options.users).await?);
        let send = capacity::ramp(&client, &options, &Target::Send(senders), "send").await;
        let bare = if args.compare_bare {
            Some(
                capacity::ramp(
                    &client,
                    &options,
                    &Target::Get(capacity::Prepared::get("/health/live")?),
                    "bare",
                )
                .await,
            )
        } else {
            None
        };
        let path = capacity::write_report(&args.out, &options, &send, bare.as_deref())?;
        let send_knee = capacity::knee(&send, &options);
        println!(
            "knee (p99 <= {} ms, errors <= 1 %): {}",
            options.slo_p99_ms,
            send_knee.map_or("below the first step".into(), |k| format!("{k} msg/s"))
        );
        if let (Some(s), Some(b)) = (
            send_knee,
            bare.as_deref().and_then(|b| capacity::knee(b, &options)),
        ) {
            println!(
                "bare endpoint knee: {b} req/s; efficiency ratio {:.2}",
                f64::from(s) / f64::from(b)
            );
        }
        println!("report -> {}", path.display());
        Ok(())
    })
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
