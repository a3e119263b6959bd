//! Access tokens: HS256 JWTs with `sub`, `iat` and `exp`. Only HS256 is accepted, so `alg: none` or a switched
//! algorithm is refused; so is a token issued (`iat`) or valid from (`nbf`) in the future, or one meant to live
//! longer than this server issues them for. A token that verified is remembered until it expires, so a client's
//! every request does not decode and sign it again.

use super::problem::Problem;
use chat4all_core::ids::UserId;
use chat4all_core::time::now_millis;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::RwLock;
use std::time::Duration;

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

/// Clock difference tolerated between the issuer and this server, in seconds.
const CLOCK_SKEW_SECS: i64 = 5;

/// Most verified tokens remembered (about 3 MiB); past it the memory starts over, and the next requests verify
/// their tokens again. Only tokens that verified get in, so a flood of forged ones adds nothing.
const VERIFIED_CAPACITY: usize = 10_000;

/// Issues and verifies access tokens with one secret.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
    /// Tokens that verified, with their user and `exp` (s). The secret never changes while the process runs, so
    /// a token that verified once is valid until it expires.
    verified: RwLock<HashMap<Box<str>, (UserId, i64)>>,
}

impl Tokens {
    /// Tokens signed with `secret`, valid for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = CLOCK_SKEW_SECS as u64;
        validation.validate_nbf = true;
        // Expiry is checked at each use, remembered token or not (`verify_until`).
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
            verified: RwLock::default(),
        }
    }

    /// Lifetime of a new token.
    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// A fresh token for `user`.
    pub fn issue(&self, user: &UserId) -> Result<String, Problem> {
        let iat = now_millis() / 1000;
        let claims = Claims {
            sub: user.as_str().to_owned(),
            iat,
            exp: iat + self.ttl.as_secs() as i64,
        };
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding).map_err(|e| {
            Problem::from(chat4all_core::ServiceError::Internal(format!(
                "token signing failed: {e}"
            )))
        })
    }

    /// The user a valid token names; 401 for anything else (bad signature, expired, not yet valid, issued in the
    /// future, too long-lived, other algorithm). Whether the user still exists is the caller's check.
    pub fn verify(&self, token: &str) -> Result<UserId, Problem> {
        self.verify_until(token).map(|(user, _)| user)
    }

    /// As [`Tokens::verify`], with the token's expiry (ms): a long-lived connection ends then.
    pub fn verify_until(&self, token: &str) -> Result<(UserId, i64), Problem> {
        let remembered = self
            .verified
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(token)
            .cloned();
        let fresh = remembered.is_none();
        let (user, exp) = match remembered {
            Some(verified) => verified,
            None => self.decode(token)?,
        };
        if exp < now_millis() / 1000 - CLOCK_SKEW_SECS {
            return Err(Problem::unauthorized("invalid token: expired"));
        }
        if fresh {
            let mut verified = self.verified.write().unwrap_or_else(|p| p.into_inner());
            if verified.len() >= VERIFIED_CAPACITY {
                verified.clear();
            }
            verified.insert(token.into(), (user.clone(), exp));
        }
        Ok((user, exp.saturating_mul(1000)))
    }

    /// The user and `exp` (s) of a token that passes every check but its expiry, which is the caller's.
    fn decode(&self, token: &str) -> Result<(UserId, i64), Problem> {
        let claims = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| Problem::unauthorized(format!("invalid token: {e}")))?
            .claims;
        if claims.iat > now_millis() / 1000 + CLOCK_SKEW_SECS {
            return Err(Problem::unauthorized("invalid token: issued in the future"));
        }
        if claims.exp.saturating_sub(claims.iat) > self.ttl.as_secs() as i64 + CLOCK_SKEW_SECS {
            return Err(Problem::unauthorized(
                "invalid token: its lifetime exceeds this server's maximum",
            ));
        }
        let user = UserId::parse(claims.sub)
            .map_err(|_| Problem::unauthorized("invalid token subject"))?;
        Ok((user, claims.exp))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";

    #[test]
    fn issued_tokens_verify_and_tampering_does_not() {
        let tokens = Tokens::new(SECRET, Duration::from_secs(60));
        let user = UserId::generate();
        let token = tokens.issue(&user).unwrap();
        assert_eq!(tokens.verify(&token).unwrap(), user);
        let other = Tokens::new(
            b"another secret of at least 32 bytes!",
            Duration::from_secs(60),
        );
        assert!(other.verify(&token).is_err());
        let mut tampered = token.clone();
        tampered.pop();
        tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
        assert!(tokens.verify(&tampered).is_err());
    }

    #[test]
    fn refuses_alg_none_and_expired_tokens() {
        use base64_url as b64;
        let tokens = Tokens::new(SECRET, Duration::from_secs(60));
        let now = now_millis() / 1000;
        let payload = format!(
            r#"{{"sub":"{}","iat":{now},"exp":{}}}"#,
            UserId::generate(),
            now + 60
        );
        let unsigned = format!(
            "{}.{}.",
            b64(r#"{"alg":"none","typ":"JWT"}"#),
            b64(&payload)
        );
        assert!(tokens.verify(&unsigned).is_err());
        let claims = Claims {
            sub: UserId::generate().to_string(),
            iat: now - 7200,
            exp: now - 3600,
        };
        let expired = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET),
        )
        .unwrap();
        assert!(tokens.verify(&expired).is_err());
    }

    #[test]
    fn refuses_tokens_from_the_future_and_overlong_lifetimes() {
        let tokens = Tokens::new(SECRET, Duration::from_secs(3600));
        let now = now_millis() / 1000;
        let sign = |claims: serde_json::Value| {
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(SECRET),
            )
            .unwrap()
        };
        let user = UserId::generate().to_string();
        let fine = sign(serde_json::json!({"sub": user, "iat": now, "exp": now + 3600}));
        assert!(tokens.verify(&fine).is_ok());
        let skewed = sign(serde_json::json!({"sub": user, "iat": now + 3, "exp": now + 3603}));
        assert!(
            tokens.verify(&skewed).is_ok(),
            "a small clock skew is tolerated"
        );
        for (claims, why) in [
            (
                serde_json::json!({"sub": user, "iat": now + 600, "exp": now + 1200}),
                "issued in the future",
            ),
            (
                serde_json::json!({"sub": user, "iat": now, "nbf": now + 600, "exp": now + 1200}),
                "nbf",
            ),
            (
                serde_json::json!({"sub": user, "iat": now, "exp": now + 10 * 365 * 86400}),
                "lifetime",
            ),
        ] {
            let error = tokens.verify(&sign(claims)).unwrap_err();
            assert_eq!(error.status, axum::http::StatusCode::UNAUTHORIZED);
            assert!(
                error.detail.contains(why) || why == "nbf" && error.detail.contains("Immature"),
                "{why}: {}",
                error.detail
            );
        }
    }

    #[test]
    fn a_remembered_token_is_still_refused_once_expired() {
        let tokens = Tokens::new(SECRET, Duration::from_secs(60));
        let user = UserId::generate();
        let now = now_millis() / 1000;
        let remember = |token: &str, exp: i64| {
            tokens
                .verified
                .write()
                .unwrap()
                .insert(token.into(), (user.clone(), exp));
        };
        // Not a JWT at all: only the memory can vouch for it, which shows the memory is what answers.
        remember("remembered", now + 60);
        assert_eq!(tokens.verify("remembered").unwrap(), user);
        remember("expired", now - CLOCK_SKEW_SECS - 1);
        let error = tokens.verify("expired").unwrap_err();
        assert!(error.detail.contains("expired"), "{}", error.detail);
    }

    #[test]
    fn verified_tokens_are_remembered_within_a_bound_and_forged_ones_never() {
        let tokens = Tokens::new(SECRET, Duration::from_secs(60));
        let remembered = || tokens.verified.read().unwrap().len();
        assert!(tokens.verify("forged.token.here").is_err());
        assert_eq!(remembered(), 0);
        for _ in 0..=VERIFIED_CAPACITY {
            let token = tokens.issue(&UserId::generate()).unwrap();
            tokens.verify(&token).unwrap();
            assert!(remembered() <= VERIFIED_CAPACITY);
        }
        assert_eq!(remembered(), 1, "the memory starts over when full");
    }

    /// Unpadded base64url, enough to forge a token by hand.
    fn base64_url(text: &str) -> String {
        const ALPHABET: &[u8; 64] =
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let bytes = text.as_bytes();
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let n = chunk
                .iter()
                .enumerate()
                .fold(0u32, |acc, (i, b)| acc | (u32::from(*b) << (16 - 8 * i)));
            for i in 0..=chunk.len() {
                out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}
