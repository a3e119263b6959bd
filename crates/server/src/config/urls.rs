//! Backends named by URL. The built-in ones are `log://<dir>` (event log), `sqlite://<path>` (store) and
//! `file://<path>` (object storage), a relative path being under the data directory; the shared ones, `kafka://`, `postgres://` and
//! `s3://`, need a binary built with their cargo feature (`distributed` builds all three). `embedded` stays
//! accepted for the default, as older command lines said.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::PathBuf;

/// The schemes a backend URL may have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// Directory of segment files (embedded event log).
    Log,
    /// SQLite database file (embedded store).
    Sqlite,
    /// Local directory (embedded object storage).
    File,
    /// PostgreSQL (shared store).
    Postgres,
    /// Apache Kafka (shared event log).
    Kafka,
    /// S3, MinIO or SeaweedFS (shared object storage).
    S3,
}

impl Scheme {
    const ALL: [Scheme; 6] = [
        Scheme::Log,
        Scheme::Sqlite,
        Scheme::File,
        Scheme::Postgres,
        Scheme::Kafka,
        Scheme::S3,
    ];

    fn as_str(self) -> &'static str {
        match self {
            Scheme::Log => "log",
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

/// What takes a backend URL: its name in messages, its default, its embedded scheme and its shared one.
struct Port {
    name: &'static str,
    default: &'static str,
    embedded: Scheme,
    shared: Scheme,
    /// The cargo feature that builds the shared adapter in, and whether this binary has it.
    feature: (&'static str, bool),
}

const EVENT_LOG: Port = Port {
    name: "event-log",
    default: "log://events",
    embedded: Scheme::Log,
    shared: Scheme::Kafka,
    feature: ("kafka", cfg!(feature = "kafka")),
};
const STORE: Port = Port {
    name: "store",
    default: "sqlite://store.db",
    embedded: Scheme::Sqlite,
    shared: Scheme::Postgres,
    feature: ("postgres", cfg!(feature = "postgres")),
};
const OBJECTS: Port = Port {
    name: "objects",
    default: "file://objects",
    embedded: Scheme::File,
    shared: Scheme::S3,
    feature: ("s3", cfg!(feature = "s3")),
};

/// A parsed backend URL.
#[derive(Debug, PartialEq, Eq)]
enum Parsed {
    /// The embedded backend at this path (relative: under the data directory).
    Embedded(PathBuf),
    /// The shared backend at this URL, as given (its adapter parses the rest).
    Shared(String),
}

/// Parses the backend URL of `port`: `<scheme>://<rest>`, or `embedded` for the port's default. A scheme of
/// another port, or a shared one this binary was built without, is an error that says what this port takes.
fn parse(port: &Port, url: &str) -> Result<Parsed, String> {
    let url = if url == "embedded" { port.default } else { url };
    let (scheme, rest) = url.split_once("://").ok_or_else(|| {
        format!(
            "{url:?} is not a backend URL; {} takes {}<path> (such as {}) or {}…",
            port.name, port.embedded, port.default, port.shared
        )
    })?;
    let scheme = Scheme::ALL
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(scheme))
        .ok_or_else(|| format!("unknown backend scheme {scheme}:// in {url:?}"))?;
    if rest.is_empty() {
        return Err(format!(
            "{url:?} names no {}",
            if scheme == port.shared {
                "address"
            } else {
                "path"
            }
        ));
    }
    if scheme == port.embedded {
        return Ok(Parsed::Embedded(PathBuf::from(rest)));
    }
    if scheme != port.shared {
        return Err(format!(
            "{} cannot be on {scheme}; it takes {} or {}",
            port.name, port.embedded, port.shared
        ));
    }
    let (feature, built) = port.feature;
    if !built {
        return Err(format!(
            "{scheme} needs a chat4all built with the `{feature}` feature (cargo build --release --features distributed)"
        ));
    }
    Ok(Parsed::Shared(url.to_owned()))
}

/// The event log backend, by URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum EventLogBackend {
    /// The embedded durable partitioned log in this directory.
    Segments(PathBuf),
    /// Apache Kafka (or a Kafka-protocol broker) at this `kafka://` URL.
    Kafka(String),
}

/// The store backend, by URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum StoreBackend {
    /// The embedded store in this SQLite file.
    Sqlite(PathBuf),
    /// PostgreSQL at this `postgres://` URL.
    Postgres(String),
}

/// The object storage backend (files), by URL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum ObjectsBackend {
    /// A local directory.
    Directory(PathBuf),
    /// An S3 bucket at this `s3://` URL.
    S3(String),
}

impl TryFrom<String> for EventLogBackend {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        // Earlier builds kept the log in one SQLite file: `sqlite://PATH.db` still names it, as the directory
        // `PATH`, which the log fills from the file when it first opens.
        if let Some((scheme, file)) = url.split_once("://")
            && scheme.eq_ignore_ascii_case("sqlite")
        {
            return match file.strip_suffix(".db") {
                Some(dir) if !dir.is_empty() => Ok(Self::Segments(PathBuf::from(dir))),
                _ => Err(format!(
                    "{url:?}: the event log is a directory now, log://DIR; an earlier build's file DIR.db beside it \
                     is converted when the log first opens"
                )),
            };
        }
        Ok(match parse(&EVENT_LOG, &url)? {
            Parsed::Embedded(path) => Self::Segments(path),
            Parsed::Shared(url) => Self::Kafka(url),
        })
    }
}

impl TryFrom<String> for StoreBackend {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        Ok(match parse(&STORE, &url)? {
            Parsed::Embedded(path) => Self::Sqlite(path),
            Parsed::Shared(url) => Self::Postgres(url),
        })
    }
}

impl TryFrom<String> for ObjectsBackend {
    type Error = String;
    fn try_from(url: String) -> Result<Self, String> {
        Ok(match parse(&OBJECTS, &url)? {
            Parsed::Embedded(path) => Self::Directory(path),
            Parsed::Shared(url) => Self::S3(url),
        })
    }
}

impl From<EventLogBackend> for String {
    fn from(backend: EventLogBackend) -> Self {
        match backend {
            EventLogBackend::Segments(path) => format!("{}{}", Scheme::Log, path.display()),
            EventLogBackend::Kafka(url) => url,
        }
    }
}

impl From<StoreBackend> for String {
    fn from(backend: StoreBackend) -> Self {
        match backend {
            StoreBackend::Sqlite(path) => format!("{}{}", Scheme::Sqlite, path.display()),
            StoreBackend::Postgres(url) => url,
        }
    }
}

impl From<ObjectsBackend> for String {
    fn from(backend: ObjectsBackend) -> Self {
        match backend {
            ObjectsBackend::Directory(path) => format!("{}{}", Scheme::File, path.display()),
            ObjectsBackend::S3(url) => url,
        }
    }
}

impl Default for EventLogBackend {
    fn default() -> Self {
        Self::Segments(PathBuf::from("events"))
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
        let path = |port, url| match parse(port, url) {
            Ok(Parsed::Embedded(p)) => Ok(p.display().to_string()),
            other => Err(format!("{other:?}")),
        };
        assert_eq!(path(&EVENT_LOG, "log://events"), Ok("events".into()));
        assert_eq!(
            EventLogBackend::try_from("sqlite:///srv/chat/events.db".to_owned()),
            Ok(EventLogBackend::Segments("/srv/chat/events".into())),
            "an earlier build's SQLite file names the directory its log moves to"
        );
        assert_eq!(
            EventLogBackend::try_from("sqlite://a.v1.db".to_owned()),
            Ok(EventLogBackend::Segments("a.v1".into()))
        );
        let refused = EventLogBackend::try_from("sqlite://events".to_owned()).unwrap_err();
        assert!(refused.contains("log://DIR"), "{refused}");
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
    fn shared_schemes_are_kept_whole_when_built_in_and_explained_when_not() {
        for (port, url) in [
            (&EVENT_LOG, "kafka://broker:9092"),
            (&STORE, "postgres://db/chat"),
            (&OBJECTS, "s3://bucket"),
        ] {
            match parse(port, url) {
                Ok(parsed) => {
                    assert!(port.feature.1, "{url}");
                    assert_eq!(parsed, Parsed::Shared(url.to_owned()));
                }
                Err(e) => {
                    assert!(!port.feature.1, "{url}: {e}");
                    assert!(e.contains(&format!("`{}` feature", port.feature.0)), "{e}");
                }
            }
        }
    }

    #[test]
    fn other_schemes_are_explained() {
        let error = |port, url| parse(port, url).unwrap_err();
        assert!(error(&STORE, "kafka://broker").contains("store cannot be on kafka://"));
        assert!(error(&EVENT_LOG, "mysql://db").contains("unknown backend scheme mysql://"));
        assert!(error(&EVENT_LOG, "events.db").contains("not a backend URL"));
        assert!(error(&EVENT_LOG, "log://").contains("names no path"));
    }
}
