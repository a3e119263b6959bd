//! Registration and login. Passwords are stored as Argon2id hashes and verified in constant time.

use crate::error::ServiceError;
use crate::ids::{Email, Password, UserId, Username};
use crate::model::User;
use crate::ports::Stores;
use crate::time::now_millis;
use argon2::Argon2;
use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Most users one lookup may name.
pub const MAX_LOOKUP: usize = 100;
/// How long a user seen in the store is trusted to exist without asking it again.
const KNOWN_USER_TTL: Duration = Duration::from_secs(60);
/// Most users remembered as existing; beyond it the stale ones are dropped, then all.
const MAX_KNOWN_USERS: usize = 100_000;

/// Registers users and checks their credentials.
#[derive(Clone)]
pub struct Accounts {
    stores: Stores,
    hashing: Arc<HashingPool>,
    known: Arc<RwLock<HashMap<UserId, Instant>>>,
}

impl Accounts {
    /// Accounts backed by `store`, hashing passwords on `hashing`.
    pub fn new(stores: &Stores, hashing: HashingPool) -> Self {
        Self {
            stores: stores.clone(),
            hashing: Arc::new(hashing),
            known: Arc::default(),
        }
    }

    /// The users among `ids` (unknown ids are left out), so that clients can show names instead of ids; at most
    /// [`MAX_LOOKUP`] at once.
    pub async fn users(&self, ids: &[UserId]) -> Result<Vec<User>, ServiceError> {
        if ids.len() > MAX_LOOKUP {
            return Err(ServiceError::Invalid(format!(
                "at most {MAX_LOOKUP} users per lookup"
            )));
        }
        Ok(self.stores.accounts.users(ids).await?)
    }

    /// The user `who` names: a user id, else a username (people add each other by name).
    pub async fn find(&self, who: &str) -> Result<Option<User>, ServiceError> {
        if let Ok(id) = UserId::parse(who)
            && let Some(user) = self.stores.accounts.users(&[id]).await?.pop()
        {
            return Ok(Some(user));
        }
        let Ok(name) = Username::parse(who) else {
            return Ok(None);
        };
        Ok(self
            .stores
            .accounts
            .user_credentials(&name)
            .await?
            .map(|c| c.user))
    }

    /// Whether `user` exists (a token may outlive its user, or come from a server sharing the secret). Answers
    /// from memory for users seen in the last minute, so the check stays off the store on the hot path.
    pub async fn exists(&self, user: &UserId) -> Result<bool, ServiceError> {
        let fresh = |seen: &Instant| seen.elapsed() < KNOWN_USER_TTL;
        if self
            .known
            .read()
            .expect("known users lock")
            .get(user)
            .is_some_and(fresh)
        {
            return Ok(true);
        }
        let exists = !self
            .stores
            .accounts
            .existing_users(std::slice::from_ref(user))
            .await?
            .is_empty();
        if exists {
            let mut known = self.known.write().expect("known users lock");
            if known.len() >= MAX_KNOWN_USERS {
                known.retain(|_, seen| fresh(seen));
                if known.len() >= MAX_KNOWN_USERS {
                    known.clear();
                }
            }
            known.insert(user.clone(), Instant::now());
        }
        Ok(exists)
    }

    /// Creates a user; 409 when the username or e-mail is taken.
    pub async fn register(
        &self,
        username: Username,
        password: Password,
        email: Option<Email>,
    ) -> Result<User, ServiceError> {
        let hash = self.hashing.run(move || hash_password(&password)).await??;
        let user = User {
            user_id: UserId::generate(),
            username,
            email,
            created_at: now_millis(),
        };
        self.stores
            .accounts
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
            Ok(name) => self.stores.accounts.user_credentials(&name).await?,
            Err(_) => None,
        };
        let (user, hash) = match credentials {
            Some(c) => (Some(c.user), Some(c.password_hash)),
            None => (None, None),
        };
        let verified = self
            .hashing
            .run(move || {
                verify_password(&password, hash.as_deref().unwrap_or_else(|| dummy_hash()))
            })
            .await?;
        match user {
            Some(user) if verified => Ok(user),
            _ => Err(denied()),
        }
    }
}

/// Where password hashing runs. Each Argon2 call takes ~19 MiB and tens of milliseconds of CPU, so at most
/// `workers` run at once (off the async workers) and at most `queue` more wait; past that the caller is told to
/// retry (`Unavailable`), so a flood of logins costs bounded memory and threads.
pub struct HashingPool {
    running: Arc<Semaphore>,
    admitted: Semaphore,
}

impl HashingPool {
    /// `workers` hashes at once (at least 1), `queue` more waiting.
    pub fn new(workers: usize, queue: usize) -> Self {
        let workers = workers.max(1);
        Self {
            running: Arc::new(Semaphore::new(workers)),
            admitted: Semaphore::new(workers + queue),
        }
    }

    /// Runs `work` on a blocking thread once a worker is free, or refuses at once when the queue is full.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let _admitted = self.admitted.try_acquire().map_err(|_| {
            ServiceError::Unavailable(
                "too many password checks in progress; retry in a moment".into(),
            )
        })?;
        let running = self
            .running
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ServiceError::Unavailable("the hashing pool is closed".into()))?;
        // The permit moves into the task, so a caller that gives up never lets more than `workers` run.
        tokio::task::spawn_blocking(move || {
            let _running = running;
            work()
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("hashing task failed: {e}")))
    }
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

    #[tokio::test]
    async fn a_full_hashing_pool_refuses_at_once_and_recovers() {
        let pool = Arc::new(HashingPool::new(1, 0));
        let (started, is_running) = tokio::sync::oneshot::channel();
        let (release, released) = std::sync::mpsc::channel::<()>();
        let busy = tokio::spawn({
            let pool = pool.clone();
            async move {
                pool.run(move || {
                    let _ = started.send(());
                    released.recv().ok();
                })
                .await
            }
        });
        is_running.await.unwrap();
        assert!(matches!(
            pool.run(|| ()).await,
            Err(ServiceError::Unavailable(_))
        ));
        release.send(()).unwrap();
        busy.await.unwrap().unwrap();
        assert_eq!(pool.run(|| 7).await.unwrap(), 7);
    }
}
