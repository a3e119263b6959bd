use super::layers::{KEYS, resolve};
use super::*;
use clap::{Args, FromArgMatches};
use figment::providers::{Format, Toml};

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn load_str(file: &str, vars: &[(&str, &str)], flags: &[(&str, &str)]) -> anyhow::Result<Config> {
    let flags = Flags::from_pairs(flags.iter().copied())?;
    resolve(
        Config::default(),
        Some(Toml::string(file)),
        env(vars),
        &flags,
    )
}

fn error(file: &str, vars: &[(&str, &str)], flags: &[(&str, &str)]) -> String {
    format!("{:#}", load_str(file, vars, flags).unwrap_err())
}

#[test]
fn flags_override_env_which_overrides_the_file_and_defaults_fill_the_rest() {
    let file = r#"
        [http]
        addr = "0.0.0.0:9000"
        [storage]
        data-dir = "/srv/chat"
        partitions = 4
        commit-delay-us = 500
        [channels.whatsapp]
        latency-ms = "10-20"
    "#;
    let vars = [
        ("CHAT4ALL_PARTITIONS", "6"),
        ("CHAT4ALL_HTTP_ADDR", "127.0.0.1:9001"),
        ("CHAT4ALL_UNRELATED", "ignored"),
        ("PARTITIONS", "ignored"),
    ];
    let config = load_str(file, &vars, &[("partitions", "16")]).unwrap();
    assert_eq!(config.storage.partitions, Some(16));
    assert_eq!(config.http.addr.to_string(), "127.0.0.1:9001");
    assert_eq!(config.storage.data_dir, PathBuf::from("/srv/chat"));
    assert_eq!(config.channels["whatsapp"].latency_ms.to_string(), "10-20");
    assert_eq!(
        config.channels["instagram"].latency_ms.to_string(),
        "300-700"
    );
    assert_eq!(config.auth.token_ttl, Duration::from_secs(3600));
    assert_eq!(config.storage.commit_delay, Duration::from_micros(500));
    let config = load_str(file, &vars, &[]).unwrap();
    assert_eq!(config.storage.partitions, Some(6));
    let config = load_str(file, &[], &[]).unwrap();
    assert_eq!(
        (config.storage.partitions, config.http.addr.port()),
        (Some(4), 9000)
    );
}

#[test]
fn sections_read_every_setting() {
    let config = load_str(
        r#"
        [http]
        public-url = "https://chat.example.com/"
        max-connections = 100
        request-timeout-secs = 5
        [storage]
        event-log = "log:///var/lib/chat4all/log"
        store = "embedded"
        [auth]
        admin-token = "0123456789012345"
        seed-demo-users = true
        rate-limit-per-sec = 0
        [files]
        max-bytes = 1024
        [groups]
        max-members = 12
        [delivery]
        default-validity-secs = 60
        retry-base-ms = 50
        [telemetry]
        log-format = "pretty"
        heartbeat-secs = 5
        "#,
        &[],
        &[],
    )
    .unwrap();
    assert_eq!(
        config.http.public_url.as_deref(),
        Some("https://chat.example.com")
    );
    assert_eq!(config.http.max_connections, Some(100));
    assert_eq!(config.http.request_timeout, Duration::from_secs(5));
    let log = PathBuf::from("/var/lib/chat4all/log");
    assert_eq!(
        config.storage.event_log,
        EventLogBackend::Segments(log.clone())
    );
    assert_eq!(
        config.storage.path(&log),
        log,
        "an absolute path stays as it is"
    );
    assert_eq!(config.storage.store, StoreBackend::default());
    assert_eq!(config.auth.admin_token.as_deref(), Some("0123456789012345"));
    assert!(config.auth.seed_demo_users);
    assert_eq!(config.auth.rate_limit_per_sec, 0);
    assert_eq!(config.files.limits().max_bytes, 1024);
    assert_eq!(config.groups.max_members, 12);
    assert_eq!(config.delivery.default_validity, Duration::from_secs(60));
    assert_eq!(
        config.delivery.settings(7).backoff.base,
        Duration::from_millis(50)
    );
    assert_eq!(config.delivery.settings(7).rate_per_sec, 7);
    assert_eq!(config.telemetry.log_format(), LogFormat::Pretty);
    assert_eq!(config.telemetry.heartbeat, Duration::from_secs(5));
}

#[test]
fn channels_are_a_map_merged_key_by_key() {
    let defaults = Config::default();
    assert_eq!(
        defaults.channels.keys().collect::<Vec<_>>(),
        ["instagram", "whatsapp"]
    );
    let whatsapp = defaults.channels["whatsapp"];
    assert_eq!((whatsapp.rate_per_sec, whatsapp.failure_rate), (80, 0.0));
    assert_eq!(whatsapp.latency_ms.to_string(), "200-500");
    let file = "[channels.whatsapp]\nrate-per-sec = 10\n";
    let vars = [("CHAT4ALL_INSTAGRAM_FAILURE_RATE", "0.25")];
    let config = load_str(file, &vars, &[("whatsapp-failure-rate", "0.5")]).unwrap();
    let (whatsapp, instagram) = (config.channels["whatsapp"], config.channels["instagram"]);
    assert_eq!((whatsapp.rate_per_sec, whatsapp.failure_rate), (10, 0.5));
    assert_eq!(whatsapp.latency_ms.to_string(), "200-500");
    assert_eq!((instagram.rate_per_sec, instagram.failure_rate), (80, 0.25));
    let unknown = error("[channels.telegram]\nrate-per-sec = 5\n", &[], &[]);
    assert!(
        unknown.contains("channels.telegram") && unknown.contains("whatsapp, instagram"),
        "{unknown}"
    );
}

#[test]
fn backends_are_urls_and_embedded_still_means_the_default() {
    let flags = [("event-log", "embedded"), ("store", "sqlite://other.db")];
    let config = load_str("", &[("CHAT4ALL_OBJECTS", "file:///srv/files")], &flags).unwrap();
    assert_eq!(config.storage.event_log, EventLogBackend::default());
    let StoreBackend::Sqlite(store) = &config.storage.store else {
        panic!("the store is embedded")
    };
    assert_eq!(config.storage.path(store), PathBuf::from("data/other.db"));
    assert_eq!(
        config.storage.objects,
        ObjectsBackend::Directory("/srv/files".into())
    );
    let misplaced = error("", &[("CHAT4ALL_STORE", "kafka://broker:9092")], &[]);
    assert!(
        misplaced.contains("store cannot be on kafka://") && misplaced.contains("CHAT4ALL_STORE"),
        "{misplaced}"
    );
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    for (file, key) in [
        ("[http]\nadress = \"x\"\n", "http.adress"),
        ("partitions = 8\n", "partitions"),
        ("[channels.whatsapp]\nrate = 1\n", "channels.whatsapp.rate"),
    ] {
        let message = error(file, &[], &[]);
        assert!(
            message.contains("unknown field") && message.contains(key),
            "{message}"
        );
    }
}

#[test]
fn bad_values_name_the_setting_and_where_it_came_from() {
    let from_file = error("[storage]\npartitions = 0\n", &[], &[]);
    assert!(
        from_file.contains("storage.partitions must be between 1 and 1024"),
        "{from_file}"
    );
    assert!(from_file.contains("TOML"), "{from_file}");
    let delay = error("", &[], &[("commit-delay-us", "20000")]);
    assert!(
        delay.contains("storage.commit-delay-us must be between 0 and 10000 microseconds")
            && delay.contains("--commit-delay-us"),
        "{delay}"
    );
    let from_env = error("", &[("CHAT4ALL_PARTITIONS", "0")], &[]);
    assert!(
        from_env.contains("set by CHAT4ALL_PARTITIONS in the environment"),
        "{from_env}"
    );
    let from_flag = error("", &[], &[("jwt-secret", "short")]);
    assert!(
        from_flag.contains("at least 32 bytes") && from_flag.contains("--jwt-secret"),
        "{from_flag}"
    );
    let not_a_number = error("", &[("CHAT4ALL_TOKEN_TTL_SECS", "soon")], &[]);
    assert!(
        not_a_number.contains("CHAT4ALL_TOKEN_TTL_SECS"),
        "{not_a_number}"
    );
    let latency = error("", &[], &[("instagram-latency-ms", "9-1")]);
    assert!(latency.contains("--instagram-latency-ms"), "{latency}");
    let rate = error("[channels.whatsapp]\nfailure-rate = 2.0\n", &[], &[]);
    assert!(rate.contains("channels.whatsapp.failure-rate"), "{rate}");
    let format = error("[telemetry]\nlog-format = \"yaml\"\n", &[], &[]);
    assert!(format.contains("telemetry.log-format"), "{format}");
}

#[test]
fn strings_from_env_and_flags_keep_their_type() {
    let token = "1234567890123456789012";
    let config = load_str(
        "",
        &[("CHAT4ALL_ADMIN_TOKEN", token)],
        &[("whatsapp-latency-ms", "7")],
    )
    .unwrap();
    assert_eq!(config.auth.admin_token.as_deref(), Some(token));
    assert_eq!(config.channels["whatsapp"].latency_ms.to_string(), "7-7");
}

#[test]
fn the_command_line_reads_every_flag_and_switches() {
    let command = Flags::augment_args(clap::Command::new("serve"));
    let args = [
        "serve",
        "--seed-demo-users",
        "--partitions",
        "3",
        "--log-format",
        "json",
    ];
    let flags = Flags::from_arg_matches(&command.get_matches_from(args)).unwrap();
    let config = resolve(Config::default(), None, Vec::new(), &flags).unwrap();
    assert!(config.auth.seed_demo_users);
    assert_eq!(config.storage.partitions, Some(3));
    assert_eq!(config.telemetry.log_format, Some(LogFormat::Json));
}

#[test]
fn every_flag_names_a_key_of_the_file_once() {
    assert!(Flags::from_pairs([("no-such-flag", "1")]).is_err());
    for (i, key) in KEYS.iter().enumerate() {
        assert!(
            KEYS[..i]
                .iter()
                .all(|k| k.flag != key.flag && k.key != key.key)
        );
        // "#" is a valid value of no setting but the data directory.
        match load_str("", &[], &[(key.flag, "#")]) {
            Ok(config) => assert_eq!(config.storage.data_dir, PathBuf::from("#"), "{}", key.flag),
            Err(e) => {
                let message = format!("{e:#}");
                assert!(
                    !message.contains("unknown field"),
                    "{}: {message}",
                    key.flag
                );
                assert!(
                    message.contains(&format!("--{}", key.flag)),
                    "{}: {message}",
                    key.flag
                );
            }
        }
    }
}

#[test]
fn the_example_file_parses_and_shows_the_defaults() {
    let example = include_str!("../../../../docs/chat4all.example.toml");
    let config = load_str(example, &[], &[]).unwrap();
    let defaults = Config::default();
    assert_eq!(format!("{config:?}"), format!("{defaults:?}"));
}
