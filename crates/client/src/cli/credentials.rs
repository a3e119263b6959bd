//! The saved login: `$XDG_CONFIG_HOME/chat4all/credentials.json` (else `~/.config/…`), mode 0600.

use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::PathBuf;

/// A token and the server it belongs to.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Credentials {
    /// The server's base URL.
    pub url: String,
    /// The bearer token.
    pub token: String,
    /// The user the token is for.
    pub user_id: String,
    /// The username logged in with.
    pub username: String,
    /// When the token expires (ms since the epoch).
    pub expires_at: i64,
}

/// Where the credentials live; `None` when neither `XDG_CONFIG_HOME` nor `HOME` is set.
pub fn path() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|h| !h.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("chat4all").join("credentials.json"))
}

/// The saved credentials, if any (an unreadable file counts as none).
pub fn load() -> Option<Credentials> {
    let text = std::fs::read_to_string(path()?).ok()?;
    serde_json::from_str(&text).ok()
}

/// Saves the credentials, readable by the user only (written aside, then renamed over the old file).
pub fn save(credentials: &Credentials) -> std::io::Result<PathBuf> {
    let path =
        path().ok_or_else(|| std::io::Error::other("neither XDG_CONFIG_HOME nor HOME is set"))?;
    let dir = path.parent().expect("the path has a parent");
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)?;
    let staging = dir.join(".credentials.json.tmp");
    let _ = std::fs::remove_file(&staging);
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(&staging)?;
    file.write_all(serde_json::to_string_pretty(credentials)?.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&staging, &path)?;
    Ok(path)
}

/// Forgets the credentials; true when there were some.
pub fn remove() -> std::io::Result<bool> {
    let Some(path) = path() else { return Ok(false) };
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}
