//! The `chat4all client` command line, on the typed [`Client`].

pub mod credentials;
mod files;
mod groups;
mod identities;
mod messages;
pub mod output;
mod session;

use crate::realtime::{Event, WatchOptions};
use crate::types::*;
use crate::{Client, Error};
use clap::Subcommand;
use credentials::Credentials;
use futures::StreamExt;
pub use groups::GroupsCommand;
pub use identities::IdentitiesCommand;
use output::{one_line, table, time};
use serde::Serialize;
use std::path::{Path, PathBuf};

/// The URL used when neither `--url`, `CHAT4ALL_URL` nor a saved login names one.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// The exit codes, as shown in the help.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  success
  1  server error (5xx), network or local I/O error
  2  usage error (bad arguments)
  3  not logged in, or the token was refused (401)
  4  not found (404)
  5  refused by the server (other 4xx: validation, conflict, forbidden, rate limit)

The token saved by `login` lives in $XDG_CONFIG_HOME/chat4all/credentials.json (else
~/.config/chat4all/credentials.json), mode 0600, with the URL it belongs to.";

/// `chat4all client` options and command.
#[derive(clap::Args, Debug)]
#[command(after_help = EXIT_CODES)]
pub struct Args {
    /// Server URL [default: the URL of the saved login, else http://127.0.0.1:8080].
    #[arg(long, env = "CHAT4ALL_URL", global = true)]
    pub url: Option<String>,
    /// Print JSON (one document, or one line per event for `watch`) instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// The command.
    #[command(subcommand)]
    pub command: Command,
}

/// A `chat4all client` command.
#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create an account.
    Register {
        /// Username: 3-50 of [A-Za-z0-9_-].
        #[arg(long)]
        username: String,
        /// Password, 8-128 characters [default: $CHAT4ALL_PASSWORD, else a prompt].
        #[arg(long, env = "CHAT4ALL_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
    },
    /// Log in and save the token (mode 0600) for the next commands.
    Login {
        /// Username.
        #[arg(long)]
        username: String,
        /// Password [default: $CHAT4ALL_PASSWORD, else a prompt without echo].
        #[arg(long, env = "CHAT4ALL_PASSWORD", hide_env_values = true)]
        password: Option<String>,
    },
    /// Forget the saved token.
    Logout,
    /// Send a message (and a file with it).
    Send {
        /// The conversation (created by the first message when new).
        #[arg(long, short)]
        conversation: String,
        /// Recipient: `whatsapp:+5511999990000`, `instagram:@handle`, or a user id [default: the other members].
        #[arg(long)]
        to: Option<String>,
        /// With a user --to: deliver through their identity on this channel.
        #[arg(long, value_parser = ["whatsapp", "instagram"])]
        channel: Option<String>,
        /// Upload this file to the conversation first and attach it.
        #[arg(long)]
        file: Option<PathBuf>,
        /// Idempotency-Key, so that a retried command sends once [default: a fresh one].
        #[arg(long)]
        idempotency_key: Option<String>,
        /// The text.
        text: String,
    },
    /// Show a conversation's messages, oldest first.
    History {
        /// The conversation.
        conversation: String,
        /// How many of the latest messages (1-100; with --after: the first ones after it).
        #[arg(long, short = 'n', default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
        /// Only messages after this seq.
        #[arg(long, conflicts_with = "before")]
        after: Option<u64>,
        /// Only messages before this seq.
        #[arg(long)]
        before: Option<u64>,
        /// Every message, page by page (ignores --limit).
        #[arg(long, conflicts_with_all = ["after", "before"])]
        all: bool,
    },
    /// Show one message with its status history.
    Show {
        /// The message id.
        message_id: String,
    },
    /// Mark a conversation read up to a seq (default: its last message).
    Read {
        /// The conversation.
        conversation: String,
        /// The last seq read.
        #[arg(long)]
        up_to: Option<u64>,
    },
    /// List your conversations, newest first.
    Conversations {
        /// Page size (1-100).
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=100))]
        limit: u32,
        /// The next_cursor of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// Stream new messages and status changes live, reconnecting and catching up; Ctrl-C stops (exit 0).
    Watch {
        /// Live frames only: no catch-up from history after a reconnection.
        #[arg(long)]
        no_catch_up: bool,
    },
    /// Upload a file to a conversation, with a progress bar.
    Upload {
        /// The file.
        path: PathBuf,
        /// The conversation.
        #[arg(long, short)]
        conversation: String,
        /// Use a resumable session (chunks; an interrupted upload continues with --resume).
        #[arg(long)]
        resumable: bool,
        /// Continue this resumable upload session.
        #[arg(long, value_name = "UPLOAD_ID")]
        resume: Option<String>,
    },
    /// Download a file, with a progress bar.
    Download {
        /// The file id.
        file_id: String,
        /// Where to write it [default: its name, in the current directory]; `-` for standard output.
        #[arg(long, short)]
        output: Option<PathBuf>,
    },
    /// Groups: create, show, add/remove members, promote admins.
    Groups {
        /// The groups command.
        #[command(subcommand)]
        command: GroupsCommand,
    },
    /// Channel identities (WhatsApp number, Instagram handle) linked to your account.
    Identities {
        /// The identities command.
        #[command(subcommand)]
        command: IdentitiesCommand,
    },
}

/// Runs a `chat4all client` command; returns the process exit code (see [`EXIT_CODES`]).
pub fn run(args: Args) -> i32 {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return 1;
        }
    };
    let json = args.json;
    match runtime.block_on(run_async(args)) {
        Ok(()) => 0,
        Err(e) => {
            let code = exit_code(&e);
            if json {
                let body = serde_json::json!({"error": e.to_string(), "status": e.status(), "exit_code": code});
                eprintln!("{body}");
            } else {
                eprintln!("error: {e}");
                if code == 3 {
                    eprintln!("hint: chat4all client login --username <name>");
                }
            }
            code
        }
    }
}

/// The exit code of an error: 3 for 401, 4 for 404, 5 for other 4xx, 2 for an unusable argument, else 1.
pub fn exit_code(e: &Error) -> i32 {
    match (e, e.status()) {
        (_, Some(401)) => 3,
        (_, Some(404)) => 4,
        (_, Some(400..=499)) => 5,
        (Error::Invalid(_), _) => 2,
        _ => 1,
    }
}

/// Runs a command on the current runtime.
pub async fn run_async(args: Args) -> crate::Result<()> {
    let saved = credentials::load();
    let url = args
        .url
        .clone()
        .or_else(|| saved.as_ref().map(|c| c.url.clone()))
        .unwrap_or_else(|| DEFAULT_URL.to_owned());
    let client = Client::new(&url)?;
    let json = args.json;
    let cli = Cli {
        client,
        saved,
        json,
    };
    match args.command {
        Command::Register {
            username,
            password,
            email,
        } => cli.register(&username, password, email.as_deref()).await,
        Command::Login { username, password } => cli.login(&username, password).await,
        Command::Logout => cli.logout(),
        Command::Send {
            conversation,
            to,
            channel,
            file,
            idempotency_key,
            text,
        } => {
            let message = NewMessage {
                conversation_id: conversation,
                content: text,
                recipient_id: to,
                channel,
                ..NewMessage::default()
            };
            cli.authed()?
                .send(message, file.as_deref(), idempotency_key)
                .await
        }
        Command::History {
            conversation,
            limit,
            after,
            before,
            all,
        } => {
            cli.authed()?
                .history(&conversation, limit, after, before, all)
                .await
        }
        Command::Show { message_id } => cli.authed()?.show(&message_id).await,
        Command::Read {
            conversation,
            up_to,
        } => cli.authed()?.read(&conversation, up_to).await,
        Command::Conversations { limit, cursor } => {
            cli.authed()?.conversations(limit, cursor.as_deref()).await
        }
        Command::Watch { no_catch_up } => cli.authed()?.watch(!no_catch_up).await,
        Command::Upload {
            path,
            conversation,
            resumable,
            resume,
        } => {
            cli.authed()?
                .upload(&path, &conversation, resumable || resume.is_some(), resume)
                .await
        }
        Command::Download { file_id, output } => {
            cli.authed()?.download(&file_id, output.as_deref()).await
        }
        Command::Groups { command } => cli.authed()?.groups(command).await,
        Command::Identities { command } => cli.authed()?.identities(command).await,
    }
}

struct Cli {
    client: Client,
    saved: Option<Credentials>,
    json: bool,
}

fn same_url(a: &str, b: &str) -> bool {
    a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/')
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as i64)
}

fn print_json(value: &impl Serialize) {
    println!(
        "{}",
        serde_json::to_string(value).unwrap_or_else(|_| "null".into())
    );
}

/// The password from the option or environment, else a prompt without echo.
fn password(given: Option<String>) -> crate::Result<String> {
    match given {
        Some(p) => Ok(p),
        None => rpassword::prompt_password("Password: ").map_err(|e| {
            Error::Invalid(format!(
                "no --password, no CHAT4ALL_PASSWORD and no terminal to ask on: {e}"
            ))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn api(status: u16) -> Error {
        crate::error::api_error(status, b"", None)
    }

    #[test]
    fn exit_codes_follow_the_status() {
        assert_eq!(exit_code(&Error::NotLoggedIn), 3);
        assert_eq!(exit_code(&api(401)), 3);
        assert_eq!(exit_code(&api(404)), 4);
        for status in [400, 403, 409, 413, 422, 429] {
            assert_eq!(exit_code(&api(status)), 5, "{status}");
        }
        assert_eq!(exit_code(&api(500)), 1);
        assert_eq!(exit_code(&api(503)), 1);
        assert_eq!(exit_code(&Error::Invalid("url".into())), 2);
        assert_eq!(exit_code(&Error::Io(std::io::Error::other("disk"))), 1);
    }

    #[test]
    fn urls_compare_without_their_trailing_slash() {
        assert!(same_url("http://h:1/", "http://h:1"));
        assert!(!same_url("http://h:1", "http://h:2"));
    }
}
