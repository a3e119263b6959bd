//! The `chat4all client` command line, on the typed [`Client`].

pub mod credentials;
pub mod output;

use crate::realtime::{Event, WatchOptions};
use crate::types::*;
use crate::{Client, Error};
use clap::Subcommand;
use credentials::Credentials;
use futures::StreamExt;
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

/// `chat4all client groups …`.
#[derive(Subcommand, Debug)]
pub enum GroupsCommand {
    /// Create a group; you are its first admin.
    Create {
        /// Its name.
        name: String,
        /// A description.
        #[arg(long)]
        description: Option<String>,
        /// Members to add (user ids), repeatable.
        #[arg(long = "member", short)]
        members: Vec<String>,
    },
    /// Show a group.
    Show {
        /// The group id.
        group: String,
    },
    /// Add a member (admins only).
    Add {
        /// The group id.
        group: String,
        /// The user id.
        user: String,
    },
    /// Remove a member (admins), or leave (your own user id).
    Remove {
        /// The group id.
        group: String,
        /// The user id.
        user: String,
    },
    /// Make a member admin (admins only).
    Promote {
        /// The group id.
        group: String,
        /// The user id.
        user: String,
    },
}

/// `chat4all client identities …`.
#[derive(Subcommand, Debug)]
pub enum IdentitiesCommand {
    /// Link an identity: `whatsapp +5511999990000` or `instagram @handle`.
    Link {
        /// whatsapp or instagram.
        platform: String,
        /// E.164 number or @handle.
        value: String,
        /// Also deliver your messages there.
        #[arg(long)]
        preferred: bool,
    },
    /// List your identities.
    List,
    /// Unlink an identity.
    Unlink {
        /// whatsapp or instagram.
        platform: String,
        /// E.164 number or @handle.
        value: String,
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

fn progress_bar(total: u64, json: bool) -> indicatif::ProgressBar {
    if json {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    let style = indicatif::ProgressStyle::with_template(
        "{spinner} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar
}

impl Cli {
    /// The client with the saved token, when it belongs to this URL and has not expired.
    fn authed(self) -> crate::Result<Self> {
        let url = self.client.base_url().as_str().to_owned();
        match &self.saved {
            Some(c) if same_url(&c.url, &url) && c.expires_at > now_ms() => {
                self.client.set_token(Some(c.token.clone()));
                Ok(self)
            }
            Some(c) if same_url(&c.url, &url) => Err(Error::Api {
                status: 401,
                detail: format!("the token of {} has expired", c.username),
                problem: None,
                retry_after: None,
            }),
            _ => Err(Error::NotLoggedIn),
        }
    }

    async fn register(
        &self,
        username: &str,
        password_arg: Option<String>,
        email: Option<&str>,
    ) -> crate::Result<()> {
        let password = password(password_arg)?;
        let user = self.client.register(username, &password, email).await?;
        if self.json {
            print_json(&user);
        } else {
            println!("registered {} (user id {})", user.username, user.user_id);
        }
        Ok(())
    }

    async fn login(&self, username: &str, password_arg: Option<String>) -> crate::Result<()> {
        let password = password(password_arg)?;
        let token = self.client.login(username, &password).await?;
        let credentials = Credentials {
            url: self
                .client
                .base_url()
                .as_str()
                .trim_end_matches('/')
                .to_owned(),
            token: token.access_token.clone(),
            user_id: token.user_id.clone(),
            username: username.to_owned(),
            expires_at: now_ms() + (token.expires_in as i64) * 1000,
        };
        let path = credentials::save(&credentials)?;
        if self.json {
            print_json(&serde_json::json!({
                "user_id": token.user_id,
                "username": username,
                "url": credentials.url,
                "expires_in": token.expires_in,
                "credentials": path,
            }));
        } else {
            println!(
                "logged in to {} as {username} (user id {}); token saved in {} for {} s",
                credentials.url,
                token.user_id,
                path.display(),
                token.expires_in
            );
        }
        Ok(())
    }

    fn logout(&self) -> crate::Result<()> {
        let removed = credentials::remove()?;
        if self.json {
            print_json(&serde_json::json!({"logged_out": removed}));
        } else if removed {
            println!("logged out");
        } else {
            println!("not logged in");
        }
        Ok(())
    }

    async fn send(
        &self,
        mut message: NewMessage,
        file: Option<&Path>,
        key: Option<String>,
    ) -> crate::Result<()> {
        if let Some(path) = file {
            let stored = self.upload_with_bar(path, &message.conversation_id).await?;
            message.file_id = Some(stored.file_id);
        }
        let key = key.unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let accepted = self.client.send_message_with_key(&message, &key).await?;
        if self.json {
            print_json(&accepted);
        } else {
            println!(
                "{} {} in {}",
                accepted.status, accepted.message_id, accepted.conversation_id
            );
        }
        Ok(())
    }

    async fn history(
        &self,
        conversation: &str,
        limit: u32,
        after: Option<u64>,
        before: Option<u64>,
        all: bool,
    ) -> crate::Result<()> {
        let messages: Vec<Message> = if all {
            let stream = self.client.messages_after(conversation, 0, 100);
            futures::pin_mut!(stream);
            let mut all = Vec::new();
            while let Some(m) = stream.next().await {
                all.push(m?);
            }
            all
        } else if after.is_some() {
            let query = HistoryQuery {
                limit: Some(limit),
                after,
                ..HistoryQuery::default()
            };
            self.client.history(conversation, &query).await?.messages
        } else {
            // The latest ones: newest first from the server, shown oldest first.
            let query = HistoryQuery {
                limit: Some(limit),
                before,
                order: Some(Order::Desc),
                ..HistoryQuery::default()
            };
            let mut page = self.client.history(conversation, &query).await?.messages;
            page.reverse();
            page
        };
        if self.json {
            print_json(&serde_json::json!({"conversation_id": conversation, "messages": messages}));
            return Ok(());
        }
        let rows: Vec<Vec<String>> = messages
            .iter()
            .map(|m| {
                let mut text = one_line(&m.content, 80);
                if let Some(meta) = &m.file_metadata {
                    text.push_str(&format!(
                        " [file {} {} ({} B)]",
                        m.file_id.as_deref().unwrap_or(""),
                        meta.filename,
                        meta.size_bytes
                    ));
                }
                vec![
                    m.seq.to_string(),
                    time(m.timestamp),
                    m.sender_id.clone(),
                    m.status.to_string(),
                    text,
                ]
            })
            .collect();
        if rows.is_empty() {
            println!("no messages");
        } else {
            table(&["SEQ", "TIME (UTC)", "SENDER", "STATUS", "TEXT"], &rows);
        }
        Ok(())
    }

    async fn show(&self, message_id: &str) -> crate::Result<()> {
        let detail = self.client.message(message_id).await?;
        if self.json {
            print_json(&detail);
            return Ok(());
        }
        let m = &detail.message;
        println!("message   {}", m.message_id);
        println!("in        {} (seq {})", m.conversation_id, m.seq);
        println!("from      {}", m.sender_id);
        if let Some(to) = &m.recipient_id {
            println!("to        {to}");
        }
        println!("status    {}", m.status);
        if let Some(reason) = &m.failure_reason {
            println!("failure   {reason}");
        }
        if !detail.read_by.is_empty() {
            println!("read by   {}", detail.read_by.join(", "));
        }
        println!("text      {}", m.content);
        let rows: Vec<Vec<String>> = detail
            .status_history
            .iter()
            .map(|s| {
                vec![
                    time(s.at),
                    s.status.to_string(),
                    s.detail.clone().unwrap_or_default(),
                ]
            })
            .collect();
        table(&["AT (UTC)", "STATUS", "DETAIL"], &rows);
        Ok(())
    }

    async fn read(&self, conversation: &str, up_to: Option<u64>) -> crate::Result<()> {
        let up_to = match up_to {
            Some(seq) => seq,
            None => {
                let newest = HistoryQuery {
                    limit: Some(1),
                    order: Some(Order::Desc),
                    ..HistoryQuery::default()
                };
                let page = self.client.history(conversation, &newest).await?;
                match page.messages.first() {
                    Some(m) => m.seq,
                    None => {
                        println!("no messages");
                        return Ok(());
                    }
                }
            }
        };
        let receipt = self.client.read_up_to(conversation, up_to).await?;
        if self.json {
            print_json(&receipt);
        } else {
            println!(
                "read {} up to seq {}",
                receipt.conversation_id, receipt.up_to_seq
            );
        }
        Ok(())
    }

    async fn conversations(&self, limit: u32, cursor: Option<&str>) -> crate::Result<()> {
        let page = self.client.conversations(Some(limit), cursor).await?;
        if self.json {
            print_json(&page);
            return Ok(());
        }
        let rows: Vec<Vec<String>> = page
            .conversations
            .iter()
            .map(|c| {
                vec![
                    c.conversation_id.clone(),
                    c.kind.clone(),
                    c.members.len().to_string(),
                    time(c.created_at),
                    c.name.clone().unwrap_or_default(),
                ]
            })
            .collect();
        if rows.is_empty() {
            println!("no conversations");
        } else {
            table(
                &["CONVERSATION", "TYPE", "MEMBERS", "CREATED (UTC)", "NAME"],
                &rows,
            );
        }
        if let Some(next) = page.next_cursor {
            println!("more: --cursor {next}");
        }
        Ok(())
    }

    async fn watch(&self, catch_up: bool) -> crate::Result<()> {
        let options = WatchOptions {
            catch_up,
            ..WatchOptions::default()
        };
        let mut watch = self.client.watch(options).await?;
        let ctrl_c = tokio::signal::ctrl_c();
        tokio::pin!(ctrl_c);
        loop {
            let event = tokio::select! {
                _ = &mut ctrl_c => return Ok(()),
                event = watch.next() => event,
            };
            let Some(event) = event else { return Ok(()) };
            self.print_event(event?);
        }
    }

    fn print_event(&self, event: Event) {
        if self.json {
            let value = match event {
                Event::Connected {
                    user_id,
                    reconnected,
                } => {
                    serde_json::json!({"event": "connected", "user_id": user_id, "reconnected": reconnected})
                }
                Event::Message { message, caught_up } => {
                    serde_json::json!({"event": "message", "caught_up": caught_up, "message": message})
                }
                Event::Status(update) => serde_json::json!({"event": "status", "update": update}),
                Event::Disconnected { reason, retry_in } => {
                    serde_json::json!({"event": "disconnected", "reason": reason, "retry_in_ms": retry_in.as_millis() as u64})
                }
            };
            print_json(&value);
            return;
        }
        match event {
            Event::Connected {
                user_id,
                reconnected,
            } => {
                let what = if reconnected {
                    "reconnected"
                } else {
                    "connected"
                };
                eprintln!("-- {what} as {user_id}; Ctrl-C to stop");
            }
            Event::Message {
                message: m,
                caught_up,
            } => {
                let mark = if caught_up { " (missed)" } else { "" };
                let file = m
                    .file_id
                    .as_ref()
                    .map(|f| format!(" [file {f}]"))
                    .unwrap_or_default();
                println!(
                    "{} {} #{} {}: {}{file}{mark}",
                    time(m.timestamp),
                    m.conversation_id,
                    m.seq,
                    m.sender_id,
                    one_line(&m.content, 200)
                );
            }
            Event::Status(u) => {
                let seq = u.seq.map(|s| format!("#{s} ")).unwrap_or_default();
                let detail = u.detail.map(|d| format!(" ({d})")).unwrap_or_default();
                println!(
                    "{} {} {seq}{} -> {}{detail}",
                    time(u.at),
                    u.conversation_id,
                    u.message_id,
                    u.status
                );
            }
            Event::Disconnected { reason, retry_in } => {
                eprintln!(
                    "-- disconnected: {reason}; retrying in {:.1} s",
                    retry_in.as_secs_f64()
                );
            }
        }
    }

    async fn upload_with_bar(&self, path: &Path, conversation: &str) -> crate::Result<FileInfo> {
        let size = tokio::fs::metadata(path).await?.len();
        let bar = progress_bar(size, self.json);
        let progress = bar.clone();
        let stored = self
            .client
            .upload_file(path, conversation, move |sent, _| {
                progress.set_position(sent)
            })
            .await;
        bar.finish_and_clear();
        stored
    }

    async fn upload(
        &self,
        path: &Path,
        conversation: &str,
        resumable: bool,
        resume: Option<String>,
    ) -> crate::Result<()> {
        let stored = if resumable {
            let size = tokio::fs::metadata(path).await?.len();
            let bar = progress_bar(size, self.json);
            let json = self.json;
            let stored = self
                .client
                .upload_resumable(
                    path,
                    conversation,
                    resume.as_deref(),
                    None,
                    |id| {
                        if !json {
                            eprintln!("upload session {id} (continue with --resume {id})");
                        }
                    },
                    |held, _| bar.set_position(held),
                )
                .await;
            bar.finish_and_clear();
            stored?
        } else {
            self.upload_with_bar(path, conversation).await?
        };
        if self.json {
            print_json(&stored);
        } else {
            println!(
                "uploaded {} ({} B, {}) as file {}",
                stored.filename, stored.size_bytes, stored.checksum, stored.file_id
            );
        }
        Ok(())
    }

    async fn download(&self, file_id: &str, output: Option<&Path>) -> crate::Result<()> {
        let link = self.client.download_link(file_id).await?;
        if output == Some(Path::new("-")) {
            let mut stdout = tokio::io::stdout();
            self.client
                .download_to(file_id, &mut stdout, |_, _| {})
                .await?;
            return Ok(());
        }
        let target = match output {
            Some(path) => path.to_path_buf(),
            None => {
                // Only the last component of the server's name, never a path it could smuggle.
                let name = Path::new(&link.filename)
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .unwrap_or_else(|| file_id.to_owned());
                PathBuf::from(name)
            }
        };
        let bar = progress_bar(link.size_bytes, self.json);
        let received = self
            .client
            .download_file(file_id, &target, |got, _| bar.set_position(got))
            .await;
        bar.finish_and_clear();
        let received = received?;
        if self.json {
            print_json(
                &serde_json::json!({"file_id": file_id, "path": target, "size_bytes": received, "checksum": link.checksum}),
            );
        } else {
            println!("downloaded {} B into {}", received, target.display());
        }
        Ok(())
    }

    fn print_group(&self, group: &Group) {
        if self.json {
            print_json(group);
            return;
        }
        println!("group     {}", group.group_id);
        println!("name      {}", group.name.as_deref().unwrap_or(""));
        if let Some(d) = &group.description {
            println!("about     {d}");
        }
        println!(
            "created   {} by {}",
            time(group.created_at),
            group.created_by
        );
        println!("members   {}/{}", group.member_ids.len(), group.max_members);
        let rows: Vec<Vec<String>> = group
            .member_ids
            .iter()
            .map(|m| {
                let role = if group.admin_ids.contains(m) {
                    "admin"
                } else {
                    "member"
                };
                vec![m.clone(), role.to_owned()]
            })
            .collect();
        table(&["MEMBER", "ROLE"], &rows);
    }

    async fn groups(&self, command: GroupsCommand) -> crate::Result<()> {
        let group = match command {
            GroupsCommand::Create {
                name,
                description,
                members,
            } => {
                let group = NewGroup {
                    name,
                    description,
                    initial_members: members,
                };
                self.client.create_group(&group).await?
            }
            GroupsCommand::Show { group } => self.client.group(&group).await?,
            GroupsCommand::Add { group, user } => self.client.add_member(&group, &user).await?,
            GroupsCommand::Promote { group, user } => {
                self.client.promote_admin(&group, &user).await?
            }
            GroupsCommand::Remove { group, user } => {
                self.client.remove_member(&group, &user).await?;
                if self.json {
                    print_json(&serde_json::json!({"group_id": group, "removed": user}));
                } else {
                    println!("removed {user} from {group}");
                }
                return Ok(());
            }
        };
        self.print_group(&group);
        Ok(())
    }

    async fn identities(&self, command: IdentitiesCommand) -> crate::Result<()> {
        match command {
            IdentitiesCommand::Link {
                platform,
                value,
                preferred,
            } => {
                let identity = self
                    .client
                    .link_identity(&platform, &value, preferred.then_some(true))
                    .await?;
                if self.json {
                    print_json(&identity);
                } else {
                    let preferred = if identity.preferred {
                        " (preferred)"
                    } else {
                        ""
                    };
                    println!("linked {} {}{preferred}", identity.platform, identity.value);
                }
            }
            IdentitiesCommand::List => {
                let identities = self.client.identities().await?;
                if self.json {
                    print_json(&serde_json::json!({"identities": identities}));
                } else if identities.is_empty() {
                    println!("no identities");
                } else {
                    let rows: Vec<Vec<String>> = identities
                        .iter()
                        .map(|i| {
                            vec![
                                i.platform.clone(),
                                i.value.clone(),
                                if i.preferred { "yes" } else { "no" }.to_owned(),
                                time(i.linked_at),
                            ]
                        })
                        .collect();
                    table(&["PLATFORM", "VALUE", "PREFERRED", "LINKED (UTC)"], &rows);
                }
            }
            IdentitiesCommand::Unlink { platform, value } => {
                let unlinked = self.client.unlink_identity(&platform, &value).await?;
                if self.json {
                    print_json(&unlinked);
                } else {
                    println!("unlinked {} {}", unlinked.platform, unlinked.value);
                }
            }
        }
        Ok(())
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
