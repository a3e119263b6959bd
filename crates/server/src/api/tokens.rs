//! Access tokens: HS256 JWTs with `sub`, `iat` and `exp`. Only HS256 is accepted, so `alg: none` or a switched
//! algorithm is refused.

use super::problem::Problem;
use chat4all_core::ids::UserId;
use chat4all_core::time::now_millis;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Serialize, Deserialize)]
struct Claims {
    sub: String,
    iat: i64,
    exp: i64,
}

/// Issues and verifies access tokens with one secret.
pub struct Tokens {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

impl Tokens {
    /// Tokens signed with `secret`, valid for `ttl`.
    pub fn new(secret: &[u8], ttl: Duration) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_required_spec_claims(&["exp", "sub", "iat"]);
        Self {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            ttl,
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

    /// The user a valid token names; 401 for anything else (bad signature, expired, other algorithm).
    pub fn verify(&self, token: &str) -> Result<UserId, Problem> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|e| Problem::unauthorized(format!("invalid token: {e}")))?;
        UserId::parse(data.claims.sub).map_err(|_| Problem::unauthorized("invalid token subject"))
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
