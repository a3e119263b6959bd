//! Driver and pool failures turned into the port's `StoreError`: unique violations become `Conflict` naming the
//! field, lost or refused connections `Unavailable`.

use chat4all_core::ids::InvalidValue;
use chat4all_core::ports::StoreError;
use deadpool_postgres::PoolError;
use tokio_postgres::error::SqlState;

/// What a query of this adapter can fail with.
#[derive(Debug)]
pub(crate) enum Error {
    /// The server or the driver refused.
    Db(tokio_postgres::Error),
    /// No connection could be had from the pool.
    Pool(PoolError),
    /// Already a port error (a stored value that no longer validates, a refused uniqueness rule).
    Store(StoreError),
}

impl From<tokio_postgres::Error> for Error {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::Db(e)
    }
}

impl From<PoolError> for Error {
    fn from(e: PoolError) -> Self {
        Self::Pool(e)
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl From<InvalidValue> for Error {
    fn from(e: InvalidValue) -> Self {
        Self::Store(StoreError::Backend(format!(
            "stored value no longer valid: {e}"
        )))
    }
}

impl Error {
    /// A transaction that lost a serialization or deadlock race: running it again may succeed.
    pub(crate) fn is_retryable(&self) -> bool {
        matches!(self, Self::Db(e) if matches!(e.code(), Some(c) if *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED))
    }
}

impl From<Error> for StoreError {
    fn from(e: Error) -> Self {
        match e {
            Error::Store(e) => e,
            Error::Pool(PoolError::Backend(e)) => db(e),
            Error::Pool(e) => StoreError::Unavailable(format!("postgres: {e}")),
            Error::Db(e) => db(e),
        }
    }
}

fn db(e: tokio_postgres::Error) -> StoreError {
    if let Some(db) = e.as_db_error() {
        let code = db.code();
        if *code == SqlState::UNIQUE_VIOLATION {
            return StoreError::Conflict(field(db.constraint().unwrap_or("unique")).to_owned());
        }
        let class = &code.code()[..2];
        if class == "08" || class == "57" || class == "53" || *code == SqlState::CANNOT_CONNECT_NOW
        {
            return StoreError::Unavailable(format!("postgres: {db}"));
        }
        return StoreError::Backend(format!("postgres: {db}"));
    }
    if e.is_closed() || e.code().is_none() && is_io(&e) {
        return StoreError::Unavailable(format!("postgres: {e}"));
    }
    StoreError::Backend(format!("postgres: {e}"))
}

/// Whether the error comes from the socket (a refused or lost connection, a timeout).
fn is_io(e: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if s.is::<std::io::Error>() {
            return true;
        }
        source = s.source();
    }
    // tokio-postgres reports a connect timeout without a source.
    e.to_string().contains("timeout") || e.to_string().contains("connect")
}

/// The field a unique constraint guards, as the port names it.
fn field(constraint: &str) -> &str {
    match constraint {
        "users_username_key" => "username",
        "users_email_key" => "email",
        "users_pkey" => "user_id",
        "identities_pkey" | "identities_one_preferred" => "identity",
        "messages_pkey" => "message_id",
        "messages_conversation_seq_key" => "seq",
        "files_pkey" => "file_id",
        "uploads_pkey" => "upload_id",
        "conversations_pkey" => "conversation_id",
        other => other,
    }
}
