//! `chat4all client …`, the built binary against the real server: login, send, history --json, and the exit codes
//! scripts rely on.

mod common;

use common::spawn_app;
use serde_json::Value;
use std::path::Path;
use std::process::Command;

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs `chat4all client <args>` with its own config directory, off the async runtime.
async fn client(config_home: &Path, url: &str, args: &[&str]) -> Run {
    let mut command = Command::new(env!("CARGO_BIN_EXE_chat4all"));
    command
        .arg("client")
        .args(args)
        .env("XDG_CONFIG_HOME", config_home)
        .env("CHAT4ALL_URL", url)
        .env_remove("CHAT4ALL_PASSWORD");
    let output = tokio::task::spawn_blocking(move || command.output().expect("the binary runs"))
        .await
        .unwrap();
    Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// `chat4all client register|login --username alice --password PASSWORD`.
async fn account(config_home: &Path, url: &str, command: &str, password: &str) -> Run {
    let args = [command, "--username", "alice", "--password", password];
    client(config_home, url, &args).await
}

/// Registers alice and logs her in from the command line.
async fn alice_logs_in(config_home: &Path, url: &str) {
    for command in ["register", "login"] {
        let run = account(config_home, url, command, "alice-password").await;
        assert_eq!(run.code, 0, "{command}: {}", run.stderr);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_send_history_json_and_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let config = tempfile::tempdir().unwrap();
    let home = config.path();
    let url = app.url("");

    // Not logged in: 3.
    let run = client(home, &url, &["history", "general"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);

    let run = account(home, &url, "register", "alice-password").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Taken: another 4xx, 5.
    let run = account(home, &url, "register", "alice-password").await;
    assert_eq!(run.code, 5, "{}", run.stderr);
    // Wrong password: 3.
    let run = account(home, &url, "login", "wrong-password").await;
    assert_eq!(run.code, 3, "{}", run.stderr);

    let run = account(home, &url, "login", "alice-password").await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let saved = home.join("chat4all/credentials.json");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&saved).unwrap().permissions().mode();
        assert_eq!(
            mode & 0o777,
            0o600,
            "the token is readable by its owner only"
        );
    }
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(&saved).unwrap()).unwrap();
    assert_eq!(credentials["url"], url.trim_end_matches('/'));

    let run = client(
        home,
        &url,
        &["send", "--conversation", "general", "hello from the CLI"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("ACCEPTED"), "{}", run.stdout);
    let run = client(home, &url, &["send", "--json", "-c", "general", "second"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let accepted: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(accepted["status"], "ACCEPTED");

    let token = credentials["token"].as_str().unwrap();
    app.wait_for_history(token, "general", |m| m.len() == 2)
        .await;
    let run = client(home, &url, &["history", "general", "--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let history: Value = serde_json::from_str(&run.stdout).unwrap();
    let contents: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    assert_eq!(contents, ["hello from the CLI", "second"]);
    let run = client(home, &url, &["history", "general"]).await;
    assert_eq!(run.code, 0);
    assert!(run.stdout.starts_with("SEQ"), "a table: {}", run.stdout);
    assert!(run.stdout.contains("hello from the CLI"));

    let run = client(home, &url, &["conversations", "--json"]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let list: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(list["conversations"][0]["conversation_id"], "general");
    assert_eq!(
        (
            &list["conversations"][0]["last_seq"],
            &list["conversations"][0]["unread"]
        ),
        (&Value::from(2), &Value::from(0)),
        "the caller's own messages are never unread"
    );
    let run = client(home, &url, &["conversations"]).await;
    assert!(run.stdout.contains("UNREAD"), "{}", run.stdout);

    // Not found: 4.
    let run = client(home, &url, &["show", "no-such-message"]).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    let run = client(home, &url, &["groups", "show", "no-such-group"]).await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    // Validation: 5.
    let run = client(
        home,
        &url,
        &["identities", "link", "whatsapp", "not-a-number"],
    )
    .await;
    assert_eq!(run.code, 5, "{}", run.stderr);
    // Usage: 2.
    let run = client(home, &url, &["send", "--conversation", "general"]).await;
    assert_eq!(run.code, 2, "{}", run.stderr);
    // Errors as JSON on stderr with --json.
    let run = client(home, &url, &["show", "nope", "--json"]).await;
    assert_eq!(run.code, 4);
    let error: Value = serde_json::from_str(run.stderr.trim()).unwrap();
    assert_eq!(error["status"], 404);

    // A token the server refuses (here: signed with another secret): 3.
    let mut forged = credentials.clone();
    forged["token"] = Value::from("eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl");
    std::fs::write(&saved, forged.to_string()).unwrap();
    let run = client(home, &url, &["conversations"]).await;
    assert_eq!(run.code, 3, "{}", run.stderr);

    let run = client(home, &url, &["logout"]).await;
    assert_eq!(run.code, 0);
    assert!(!saved.exists());
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_groups_and_identities_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (bob_id, _) = app.user("bob").await;
    let config = tempfile::tempdir().unwrap();
    let home = config.path();
    let url = app.url("");
    alice_logs_in(home, &url).await;

    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 31 % 251) as u8).collect();
    let file = config.path().join("photo.jpg");
    std::fs::write(&file, &data).unwrap();
    let run = client(
        home,
        &url,
        &[
            "upload",
            file.to_str().unwrap(),
            "--conversation",
            "pics",
            "--json",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let stored: Value = serde_json::from_str(&run.stdout).unwrap();
    let file_id = stored["file_id"].as_str().unwrap();
    let copy = config.path().join("copy.jpg");
    let run = client(
        home,
        &url,
        &["download", file_id, "-o", copy.to_str().unwrap()],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(std::fs::read(&copy).unwrap() == data);
    let run = client(
        home,
        &url,
        &[
            "send",
            "-c",
            "pics",
            "--file",
            file.to_str().unwrap(),
            "look",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let saved = home.join("chat4all/credentials.json");
    let credentials: Value =
        serde_json::from_str(&std::fs::read_to_string(saved).unwrap()).unwrap();
    app.wait_for_history(credentials["token"].as_str().unwrap(), "pics", |m| {
        m.len() == 1
    })
    .await;
    let run = client(home, &url, &["history", "pics", "--json"]).await;
    let history: Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!(
        history["messages"][0]["file_metadata"]["filename"],
        "photo.jpg"
    );

    let run = client(
        home,
        &url,
        &["groups", "create", "Friends", "--member", &bob_id, "--json"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let group: Value = serde_json::from_str(&run.stdout).unwrap();
    let group_id = group["group_id"].as_str().unwrap();
    let run = client(home, &url, &["groups", "promote", group_id, &bob_id]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("admin"));
    let run = client(home, &url, &["groups", "remove", group_id, &bob_id]).await;
    assert_eq!(run.code, 0, "{}", run.stderr);

    let run = client(
        home,
        &url,
        &[
            "identities",
            "link",
            "whatsapp",
            "+5511999990000",
            "--preferred",
        ],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = client(home, &url, &["identities", "list"]).await;
    assert!(run.stdout.contains("+5511999990000"), "{}", run.stdout);
    let run = client(
        home,
        &url,
        &["identities", "unlink", "whatsapp", "+5511999990000"],
    )
    .await;
    assert_eq!(run.code, 0, "{}", run.stderr);
    let run = client(
        home,
        &url,
        &["identities", "unlink", "whatsapp", "+5511999990000"],
    )
    .await;
    assert_eq!(run.code, 4, "{}", run.stderr);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watch_streams_messages_as_json_lines_and_exits_0_on_ctrl_c() {
    use std::io::BufRead;
    use std::time::Duration;
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let (bob_id, bob) = app.user("bob").await;
    let config = tempfile::tempdir().unwrap();
    let home = config.path();
    let url = app.url("");
    alice_logs_in(home, &url).await;

    let mut child = Command::new(env!("CARGO_BIN_EXE_chat4all"))
        .args(["client", "watch", "--json"])
        .env("XDG_CONFIG_HOME", home)
        .env("CHAT4ALL_URL", &url)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (lines_tx, lines) = std::sync::mpsc::channel::<Value>();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Ok(value) = serde_json::from_str(&line) {
                let _ = lines_tx.send(value);
            }
        }
    });
    let next = |lines: &std::sync::mpsc::Receiver<Value>| {
        lines
            .recv_timeout(Duration::from_secs(10))
            .expect("a line within 10 s")
    };
    let connected = tokio::task::block_in_place(|| next(&lines));
    assert_eq!(connected["event"], "connected");

    // bob writes to alice: the watch prints it live.
    let body = serde_json::json!({"conversation_id": "chat", "content": "hi alice", "recipient_id": connected["user_id"]});
    let sent = app.send(&bob, body).await;
    assert_eq!(sent.status, 202, "{}", sent.text);
    let message = tokio::task::block_in_place(|| {
        loop {
            let line = next(&lines);
            if line["event"] == "message" {
                break line;
            }
        }
    });
    assert_eq!(message["message"]["content"], "hi alice");
    assert_eq!(message["message"]["sender_id"], bob_id.as_str());
    assert_eq!(message["caught_up"], false);

    let interrupted = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let status = tokio::task::block_in_place(|| {
        for _ in 0..100 {
            if let Some(status) = child.try_wait().unwrap() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = child.kill();
        None
    });
    assert_eq!(status.expect("exits within 10 s of Ctrl-C").code(), Some(0));
    app.stop().await;
}
