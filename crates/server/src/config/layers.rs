//! The layers of the configuration, merged by figment: built-in defaults, then the TOML file (`--config`), then
//! the `CHAT4ALL_*` environment variables, then the flags of `chat4all serve`. Every flag has the variable of the
//! same name (`--http-addr`, `CHAT4ALL_HTTP_ADDR`) and one key of the file (`http.addr`), listed once in [`KEYS`];
//! the file alone also reaches keys without a flag (`[channels.<name>]` of a new channel, `[delivery]` retries).

use super::Config;
use anyhow::Context;
use clap::{Arg, ArgMatches, Command};
use figment::providers::{Data, Format, Toml};
use figment::value::{Dict, Map, Value};
use figment::{Figment, Metadata, Profile, Provider};
use std::path::Path;

/// A setting with a flag and an environment variable.
#[derive(Debug)]
pub(super) struct Key {
    /// Flag name, without `--`; the variable is `CHAT4ALL_` and this in upper snake case.
    pub(super) flag: &'static str,
    /// Dotted key in the file.
    pub(super) key: &'static str,
    /// Value placeholder in `--help`; `BOOL` makes a switch (`--seed-demo-users` alone means true).
    value: &'static str,
    /// Help line.
    help: &'static str,
}

const fn key(
    flag: &'static str,
    key: &'static str,
    value: &'static str,
    help: &'static str,
) -> Key {
    Key {
        flag,
        key,
        value,
        help,
    }
}

/// Every flag, its file key and its help (defaults in brackets).
#[rustfmt::skip]
pub(super) const KEYS: &[Key] = &[
    key("http-addr", "http.addr", "ADDR", "Address the HTTP api listens on [default: 127.0.0.1:8080]"),
    key("public-url", "http.public-url", "URL", "Base of the links in responses, such as https://chat.example.com [default: http://<listen address>]"),
    key("max-connections", "http.max-connections", "N", "HTTP connections open at once; more are answered 503 [default: the descriptor limit less 1024, at most 50000]"),
    key("header-read-timeout-secs", "http.header-read-timeout-secs", "SECS", "Seconds to receive a request's headers, and the longest pause inside a file upload's body [default: 30]"),
    key("keep-alive-timeout-secs", "http.keep-alive-timeout-secs", "SECS", "Seconds a kept-alive connection may stay idle between requests [default: 15]"),
    key("request-timeout-secs", "http.request-timeout-secs", "SECS", "Seconds a request that does not stream a file may take before it is answered 408 [default: 30]"),
    key("bench-endpoints", "http.bench-endpoints", "BOOL", "Serve POST /bench/messages: a send parsed and authorized like POST /v1/messages, answered 202 without storing, as the reference of performance runs (scripts/perf/goals.py); never in production [default: false]"),
    key("data-dir", "storage.data-dir", "DIR", "Directory of the embedded backends and generated secrets [default: ./data]"),
    key("event-log", "storage.event-log", "URL", "Event log backend, log://DIR (relative to the data dir) [default: log://events; `embedded` means the default]"),
    key("store", "storage.store", "URL", "Store backend, sqlite://PATH [default: sqlite://store.db; `embedded` means the default]"),
    key("objects", "storage.objects", "URL", "Object storage of files, file://DIR [default: file://objects]"),
    key("partitions", "storage.partitions", "N", "Partitions per topic; fixed when the event log is created [default: 2 on the embedded log, 8 on Kafka]"),
    key("commit-delay-us", "storage.commit-delay-us", "MICROS", "Microseconds the embedded event log waits for more appends before a commit when several are arriving (0-10000): fewer disk writes a message for up to this much more latency; durability unchanged [default: 0, commit at once]"),
    key("jwt-secret", "auth.jwt-secret", "SECRET", "HS256 secret of access tokens, at least 32 bytes [default: generated once into <data-dir>/jwt-secret]"),
    key("token-ttl-secs", "auth.token-ttl-secs", "SECS", "Lifetime of access tokens in seconds [default: 3600]"),
    key("admin-token", "auth.admin-token", "TOKEN", "Token of the /admin endpoints and `chat4all admin` [default: generated once into <data-dir>/admin-token]"),
    key("rate-limit-per-sec", "auth.rate-limit-per-sec", "N", "Requests per second each user may make (bursts of twice that); 0 turns it off [default: 500]"),
    key("login-failures-per-user-per-min", "auth.login-failures-per-user-per-min", "N", "Failed logins allowed per username per minute (bursts of twice that), then 429; 0 = off [default: 5]"),
    key("login-failures-per-address-per-min", "auth.login-failures-per-address-per-min", "N", "Failed logins allowed per client address per minute (bursts of twice that), then 429; 0 = off [default: 30]"),
    key("seed-demo-users", "auth.seed-demo-users", "BOOL", "Create the demo users user_a/pass_a, user_b/pass_b, user_c/pass_c (never in production) [default: false]"),
    key("max-file-bytes", "files.max-bytes", "BYTES", "Largest file accepted, in bytes [default: 2147483648 (2 GiB)]"),
    key("download-link-ttl-secs", "files.download-link-ttl-secs", "SECS", "How long a download link stays valid, in seconds [default: 3600]"),
    key("max-group-members", "groups.max-members", "N", "Largest group, in members, the creator included (2-10000) [default: 256]"),
    key("default-validity-secs", "delivery.default-validity-secs", "SECS", "How long a channel message may wait for delivery before it fails as expired, unless it says otherwise [default: 36000]"),
    key("breaker-cool-down-secs", "delivery.breaker-cool-down-secs", "SECS", "How long a channel's circuit breaker stays open before a probe [default: 30]"),
    key("log-format", "telemetry.log-format", "json|pretty", "Log line format [default: json when stdout is not a terminal, else pretty]"),
    key("heartbeat-secs", "telemetry.heartbeat-secs", "SECS", "Seconds between heartbeat log lines of each role [default: 30]"),
    key("lag-threshold", "telemetry.lag-threshold", "N", "Consumer lag (records) above which /health reports the consumers as lagging [default: 1000]"),
    key("whatsapp-rate-per-sec", "channels.whatsapp.rate-per-sec", "N", "Outbound pace of WhatsApp, messages per second; excess waits [default: 80]"),
    key("whatsapp-latency-ms", "channels.whatsapp.latency-ms", "MIN-MAX", "Simulated WhatsApp answer time in ms [default: 200-500]"),
    key("whatsapp-failure-rate", "channels.whatsapp.failure-rate", "0-1", "Share of simulated WhatsApp calls that fail [default: 0]"),
    key("instagram-rate-per-sec", "channels.instagram.rate-per-sec", "N", "Outbound pace of Instagram, messages per second [default: 80]"),
    key("instagram-latency-ms", "channels.instagram.latency-ms", "MIN-MAX", "Simulated Instagram answer time in ms [default: 300-700]"),
    key("instagram-failure-rate", "channels.instagram.failure-rate", "0-1", "Share of simulated Instagram calls that fail [default: 0]"),
];

impl Key {
    fn env(&self) -> String {
        format!(
            "CHAT4ALL_{}",
            self.flag.to_ascii_uppercase().replace('-', "_")
        )
    }
}

/// The flags of `chat4all serve` given on the command line, as written (figment checks the values).
#[derive(Debug, Clone, Default)]
pub struct Flags(Vec<(&'static Key, String)>);

impl Flags {
    /// Flags from `(name, value)` pairs, names without `--` (for tests and tools); an unknown name is an error.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = (&'a str, &'a str)>,
    ) -> anyhow::Result<Self> {
        let flag = |(name, value): (&str, &str)| {
            let key = KEYS.iter().find(|k| k.flag == name);
            let key = key.with_context(|| format!("chat4all serve has no flag --{name}"))?;
            Ok((key, value.to_owned()))
        };
        pairs
            .into_iter()
            .map(flag)
            .collect::<anyhow::Result<_>>()
            .map(Self)
    }
}

impl clap::FromArgMatches for Flags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let given = |k: &'static Key| Some((k, matches.get_one::<String>(k.flag)?.clone()));
        Ok(Self(KEYS.iter().filter_map(given).collect()))
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        *self = Self::from_arg_matches(matches)?;
        Ok(())
    }
}

impl clap::Args for Flags {
    fn augment_args(command: Command) -> Command {
        KEYS.iter().fold(command, |command, key| {
            let arg = Arg::new(key.flag)
                .long(key.flag)
                .value_name(key.value)
                .help(format!("{} [env: {}]", key.help, key.env()));
            command.arg(match key.value {
                "BOOL" => arg.num_args(0..=1).default_missing_value("true"),
                _ => arg,
            })
        })
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
}

/// Builds the configuration from its layers and checks it: the TOML file at `file`, the variables in `env`
/// (pass `std::env::vars()`; only `CHAT4ALL_*` names of [`KEYS`] are read), then `flags`. Errors name the setting
/// and the layer its value came from.
pub fn load(
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &Flags,
) -> anyhow::Result<Config> {
    load_over(Config::default(), file, env, flags)
}

/// [`load`] over other built-in defaults: a role process's own listen address.
pub fn load_over(
    defaults: Config,
    file: Option<&Path>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &Flags,
) -> anyhow::Result<Config> {
    if let Some(path) = file {
        anyhow::ensure!(path.is_file(), "cannot read config file {}", path.display());
    }
    resolve(defaults, file.map(Toml::file_exact), env, flags)
}

/// [`load_over`] with the file's layer given (a string in tests).
pub(super) fn resolve(
    defaults: Config,
    file: Option<Data<Toml>>,
    env: impl IntoIterator<Item = (String, String)>,
    flags: &Flags,
) -> anyhow::Result<Config> {
    let env: Vec<_> = env.into_iter().collect();
    let from_env = KEYS.iter().filter_map(|key| {
        let name = key.env();
        let (_, value) = env.iter().find(|(n, _)| *n == name)?;
        Some((key, value.clone()))
    });
    let mut figment = Figment::from(Layer::defaults(defaults)?);
    if let Some(file) = file {
        figment = figment.merge(FileLayer(file));
    }
    let figment = figment
        .merge(Layer::settings("the environment", |k| k.env(), from_env))
        .merge(Layer::settings(
            "the command line",
            |k| format!("--{}", k.flag),
            flags.0.iter().cloned(),
        ));
    let mut config: Config = figment.extract_lossy().context("invalid configuration")?;
    config.check().map_err(|invalid| {
        let path: Vec<&str> = invalid.key.split('.').collect();
        let origin = match figment.find_metadata(&invalid.key) {
            Some(md) => {
                let shown = md.interpolate(&Profile::Default, &path);
                match &md.source {
                    Some(source) => format!("{shown} in {source} {}", md.name),
                    None => format!("{shown} in {}", md.name),
                }
            }
            None => invalid.key.clone(),
        };
        anyhow::anyhow!(
            "invalid configuration: {} {} (set by {origin})",
            invalid.key,
            invalid.problem
        )
    })?;
    Ok(config)
}

/// A layer of values keyed like the file, named in errors by `show` (the variable or flag of a key).
struct Layer {
    name: &'static str,
    show: fn(&Key) -> String,
    dict: Dict,
}

impl Layer {
    fn defaults(defaults: Config) -> anyhow::Result<Self> {
        let dict = match Value::serialize(defaults)? {
            Value::Dict(_, dict) => dict,
            _ => anyhow::bail!("the defaults serialise to a table"),
        };
        Ok(Self {
            name: "built-in defaults",
            show: |k| k.key.to_owned(),
            dict,
        })
    }

    fn settings(
        name: &'static str,
        show: fn(&Key) -> String,
        values: impl Iterator<Item = (&'static Key, String)>,
    ) -> Self {
        let mut dict = Dict::new();
        for (key, value) in values {
            insert(&mut dict, key.key, Value::from(value));
        }
        Self { name, show, dict }
    }
}

fn insert(dict: &mut Dict, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            dict.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let entry = dict
                .entry(head.to_owned())
                .or_insert_with(|| Dict::new().into());
            if let Value::Dict(_, inner) = entry {
                insert(inner, rest, value);
            }
        }
    }
}

/// The TOML file, its keys shown as written (figment's own names prefix them with the profile).
struct FileLayer(Data<Toml>);

impl Provider for FileLayer {
    fn metadata(&self) -> Metadata {
        let plain = |_: &Profile, path: &[&str]| path.join(".");
        self.0.metadata().interpolater(plain)
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        self.0.data()
    }
}

impl Provider for Layer {
    fn metadata(&self) -> Metadata {
        let show = self.show;
        Metadata::named(self.name).interpolater(move |_: &Profile, path: &[&str]| {
            let dotted = path.join(".");
            KEYS.iter().find(|k| k.key == dotted).map_or(dotted, show)
        })
    }

    fn data(&self) -> Result<Map<Profile, Dict>, figment::Error> {
        Ok(Profile::Default.collect(self.dict.clone()))
    }
}
