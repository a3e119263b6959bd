//! Registration and login. Passwords are stored as Argon2id hashes and verified in constant time.

use crate::error::ServiceError;
use crate::ids::{Email, Password, UserId, Username};
use crate::model::User;
use crate::ports::Store;
use crate::time::now_millis;
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::sync::{Arc, OnceLock};

/// Registers users and checks their credentials.
#[derive(Clone)]
pub struct Accounts {
    store: Arc<dyn Store>,
}

impl Accounts {
    /// Accounts backed by `store`.
    pub fn new(store: Arc<dyn Store>) -> Self {
        Self { store }
    }

    /// Creates a user; 409 when the username or e-mail is taken.
    pub async fn register(
        &self,
        username: Username,
        password: Password,
        email: Option<Email>,
    ) -> Result<User, ServiceError> {
        let hash = blocking(move || hash_password(&password)).await??;
        let user = User {
            user_id: UserId::generate(),
            username,
            email,
            created_at: now_millis(),
        };
        self.store
            .insert_user(&user, &hash)
            .await
            .map_err(|e| match e {
                crate::ports::StoreError::Conflict(field) => {
                    ServiceError::Conflict(format!("{field} is already taken"))
                }
                other => other.into(),
            })?;
        Ok(user)
    }

    /// The user whose credentials these are; the same 401 whether the user is unknown or the password wrong, and
    /// about the same time too (an unknown user still costs one hash verification).
    pub async fn authenticate(
        &self,
        username: &str,
        password: Password,
    ) -> Result<User, ServiceError> {
        let denied = || ServiceError::Unauthenticated("invalid username or password".into());
        let credentials = match Username::parse(username) {
            Ok(name) => self.store.user_credentials(&name).await?,
            Err(_) => None,
        };
        let (user, hash) = match credentials {
            Some(c) => (Some(c.user), c.password_hash),
            None => (None, dummy_hash().to_owned()),
        };
        let verified = blocking(move || verify_password(&password, &hash)).await?;
        match user {
            Some(user) if verified => Ok(user),
            _ => Err(denied()),
        }
    }
}

/// Runs CPU-heavy hashing off the async workers.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ServiceError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ServiceError::Internal(format!("hashing task failed: {e}")))
}

/// Argon2id hash in PHC format, with a random salt.
pub fn hash_password(password: &Password) -> Result<String, ServiceError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.expose().as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ServiceError::Internal(format!("password hashing failed: {e}")))
}

/// Whether `password` matches the PHC `hash`.
pub fn verify_password(password: &Password, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.expose().as_bytes(), &parsed)
            .is_ok()
    })
}

/// A valid hash of a random password, verified against when the user does not exist.
fn dummy_hash() -> &'static str {
    static HASH: OnceLock<String> = OnceLock::new();
    HASH.get_or_init(|| {
        hash_password(&Password::unchecked(uuid::Uuid::new_v4().to_string())).expect("argon2 works")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_verify_only_the_right_password() {
        let hash = hash_password(&Password::unchecked("correct horse")).unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(!hash.contains("correct horse"));
        assert!(verify_password(
            &Password::unchecked("correct horse"),
            &hash
        ));
        assert!(!verify_password(&Password::unchecked("wrong horse"), &hash));
        assert!(!verify_password(&Password::unchecked("x"), "not a hash"));
    }
}
