//! Backends named by URL. The built-in ones are `sqlite://<path>` (event log, store) and `file://<path>` (object
//! storage), a relative path being under the data directory; `postgres://`, `kafka://` and `s3://` are recognised
//! but not built in this version yet. `embedded` stays accepted for the default, as older command lines said.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// The schemes a backend URL may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// SQLite database file (embedded event log, store).
    Sqlite,
    /// Local directory (embedded object storage).
    File,
    /// PostgreSQL (store; not built yet).
    Postgres,
    /// Apache Kafka (event log; not built yet).
    Kafka,
    /// S3 or MinIO (object storage; not built yet).
    S3,
}

impl Scheme {
    const ALL: [Scheme; 5] = [
        Scheme::Sqlite,
        Scheme::File,
        Scheme::Postgres,
        Scheme::Kafka,
        Scheme::S3,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Sqlite => "sqlite",
            Scheme::File => "file",
            Scheme::Postgres => "postgres",
            Scheme::Kafka => "kafka",
            Scheme::S3 => "s3",
        }
    }
}

impl fmt::Display for Scheme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://", self.as_str())
    }
}

/// What takes a backend URL: its name in messages, its default, the scheme built in and the one to come.
struct Port {
    name: &'static str,
    default: &'static str,
    built_in: Scheme,
    later: Scheme,
}

const EVENT_LOG: Port = Port {
    name: "event-log",
    default: "sqlite://events.db",
    built_in: Scheme::Sqlite,
    later: Scheme::Kafka,
};
const STORE: Port = Port {
    name: "store",
    default: "sqlite://store.db",
    built_in: Scheme::Sqlite,
    later: Scheme::Postgres,
};
const OBJECTS: Port = Port {
    name: "objects",
    default: "file://objects",
    built_in: Scheme::File,
    later: Scheme::S3,
};

/// Parses the backend URL of `port` and returns the path of its built-in backend: `<scheme>://<rest>`, or
/// `embedded` for the port's default. A scheme meant for later, or meant for another port, is an error that says
/// what this port takes.
fn parse(port: &Port, url: &str) -> Result<PathBuf, String> {
    let url = if url == "embedded" { port.default } else { url };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!(
            "{url:?} is not a backend URL; {} takes {}<path> (such as {})",
            port.name, port.built_in, port.default
        )
    })?;
    let scheme = Scheme::ALL
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(scheme))
        .ok_or_else(|| format!("unknown backend scheme {scheme}:// in {url:?}"))?;
    if scheme == port.later {
        return Err(format!(
            "{scheme} is not built in this version yet; {} takes {} for now",
            port.name, port.built_in
        ));
    }
    if scheme != port.built_in {
        return Err(format!(
            "{} cannot be on {scheme}; it takes {} ({} later)",
            port.name, port.built_in, port.later
        ));
    }
    if rest.is_empty() {
        return Err(format!("{url:?} names no path"));
    }
    Ok(PathBuf::from(rest))
}

/// The event log backend, by URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EventLogBackend {
    /// The embedded durable partitioned log in this SQLite file.
    Sqlite(PathBuf),
}

/// The store backend, by URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StoreBackend {
    /// The embedded store in this SQLite file.
    Sqlite(PathBuf),
}

/// The object storage backend (files), by URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ObjectsBackend {
    /// A local directory.
    Directory(PathBuf),
}

impl TryFrom<String> for EventLogBackend {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        parse(&EVENT_LOG, &url).map(Self::Sqlite)
    }
}

impl TryFrom<String> for StoreBackend {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        parse(&STORE, &url).map(Self::Sqlite)
    }
}

impl TryFrom<String> for ObjectsBackend {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        parse(&OBJECTS, &url).map(Self::Directory)
    }
}

impl From<EventLogBackend> for String {
    fn from(backend: EventLogBackend) -> Self {
        let EventLogBackend::Sqlite(path) = backend;
        format!("{}{}", Scheme::Sqlite, path.display())
    }
}

impl From<StoreBackend> for String {
    fn from(backend: StoreBackend) -> Self {
        let StoreBackend::Sqlite(path) = backend;
        format!("{}{}", Scheme::Sqlite, path.display())
    }
}

impl From<ObjectsBackend> for String {
    fn from(backend: ObjectsBackend) -> Self {
        let ObjectsBackend::Directory(path) = backend;
        format!("{}{}", Scheme::File, path.display())
    }
}

impl Default for EventLogBackend {
    fn default() -> Self {
        Self::Sqlite(PathBuf::from("events.db"))
    }
}

impl Default for StoreBackend {
    fn default() -> Self {
        Self::Sqlite(PathBuf::from("store.db"))
    }
}

impl Default for ObjectsBackend {
    fn default() -> Self {
        Self::Directory(PathBuf::from("objects"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_urls_name_a_path_and_embedded_is_the_default() {
        let path = |port, url| parse(port, url).map(|p| p.display().to_string());
        assert_eq!(
            path(&EVENT_LOG, "sqlite://events.db"),
            Ok("events.db".into())
        );
        assert_eq!(
            path(&STORE, "SQLITE:///srv/store.db"),
            Ok("/srv/store.db".into())
        );
        assert_eq!(path(&OBJECTS, "file://objects"), Ok("objects".into()));
        for port in [&EVENT_LOG, &STORE, &OBJECTS] {
            assert_eq!(parse(port, "embedded"), parse(port, port.default));
        }
        assert_eq!(
            EventLogBackend::default(),
            "embedded".to_owned().try_into().unwrap()
        );
        assert_eq!(
            StoreBackend::default(),
            "embedded".to_owned().try_into().unwrap()
        );
        assert_eq!(String::from(ObjectsBackend::default()), OBJECTS.default);
    }

    #[test]
    fn other_schemes_are_explained() {
        let error = |port, url| parse(port, url).unwrap_err();
        for (port, url) in [
            (&EVENT_LOG, "kafka://broker:9092"),
            (&STORE, "postgres://db/chat"),
            (&OBJECTS, "s3://bucket"),
        ] {
            assert!(
                error(port, url).contains("not built in this version yet"),
                "{url}"
            );
        }
        assert!(error(&STORE, "kafka://broker").contains("store cannot be on kafka://"));
        assert!(error(&EVENT_LOG, "mysql://db").contains("unknown backend scheme mysql://"));
        assert!(error(&EVENT_LOG, "events.db").contains("not a backend URL"));
        assert!(error(&EVENT_LOG, "sqlite://").contains("names no path"));
    }
}
