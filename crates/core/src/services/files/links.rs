//! Download links signed by the api: HMAC-SHA256 over file id and expiry, checked in constant time.

use super::hex;
use crate::ids::FileId;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Signs download links (HMAC-SHA256 over file id and expiry) and checks them in constant time.
#[derive(Clone)]
pub struct LinkSigner {
    key: Vec<u8>,
}

impl LinkSigner {
    /// A signer with its own key derived from `secret` (so a download signature is never a valid token part).
    pub fn new(secret: &[u8]) -> Self {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(b"chat4all download links v1");
        Self {
            key: mac.finalize().into_bytes().to_vec(),
        }
    }

    fn mac(&self, file: &FileId, expires: i64) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(file.as_str().as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The hex signature of a link to `file` valid until `expires` (seconds since the epoch).
    pub fn sign(&self, file: &FileId, expires: i64) -> String {
        hex(&self.mac(file, expires).finalize().into_bytes())
    }

    /// Whether `signature` is valid for `file` until `expires`, and `expires` is not past.
    pub fn verify(&self, file: &FileId, expires: i64, signature: &str, now_secs: i64) -> bool {
        let Some(bytes) = unhex(signature) else {
            return false;
        };
        expires >= now_secs && self.mac(file, expires).verify_slice(&bytes).is_ok()
    }
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || text.len() > 128 {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_bind_file_and_expiry() {
        let signer = LinkSigner::new(b"secret");
        let file = FileId::parse("f1").unwrap();
        let sig = signer.sign(&file, 2_000);
        assert!(signer.verify(&file, 2_000, &sig, 1_000));
        assert!(!signer.verify(&file, 2_000, &sig, 2_001), "expired");
        assert!(!signer.verify(&file, 2_001, &sig, 1_000), "expiry changed");
        assert!(
            !signer.verify(&FileId::parse("f2").unwrap(), 2_000, &sig, 1_000),
            "other file"
        );
        assert!(!signer.verify(&file, 2_000, "zz", 1_000));
        assert!(
            !LinkSigner::new(b"other").verify(&file, 2_000, &sig, 1_000),
            "other key"
        );
    }
}
