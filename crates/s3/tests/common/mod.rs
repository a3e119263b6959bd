//! What the S3 tests share: the test server's URL under a fresh prefix, and a minimal SigV4 client for the
//! S3 calls `object_store` does not offer (listing multipart uploads).

#![allow(dead_code)]

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::time::{SystemTime, UNIX_EPOCH};

/// The test server, or `None` when the test is skipped (see `contract::servers::url`).
pub struct Server {
    /// `s3://BUCKET?endpoint=...` as exported by `scripts/servers/seaweedfs.sh`.
    pub url: String,
    /// The bucket.
    pub bucket: String,
    /// `http://host:port`.
    pub endpoint: String,
}

impl Server {
    /// The server named by `CHAT4ALL_TEST_S3_URL`.
    pub fn get() -> Option<Self> {
        let url = chat4all_core::contract::servers::url("CHAT4ALL_TEST_S3_URL")?;
        let rest = url.strip_prefix("s3://").expect("an s3:// URL");
        let (location, query) = rest.split_once('?').expect("an endpoint parameter");
        let bucket = location.split('/').next().unwrap().to_owned();
        let endpoint = query
            .split('&')
            .find_map(|pair| pair.strip_prefix("endpoint="))
            .expect("an endpoint parameter")
            .trim_end_matches('/')
            .to_owned();
        Some(Self {
            url,
            bucket,
            endpoint,
        })
    }

    /// A fresh key prefix, so that tests running at once never see each other's objects.
    pub fn fresh_prefix(name: &str) -> String {
        format!("test-{name}-{}", uuid::Uuid::new_v4().simple())
    }

    /// The store URL with `prefix` and extra `&name=value` parameters.
    pub fn url_with(&self, prefix: &str, extra: &str) -> String {
        let (location, query) = self.url.split_once('?').unwrap();
        format!("{location}/{prefix}?{query}{extra}")
    }

    /// The keys of the multipart uploads in progress under `prefix` (S3 ListMultipartUploads).
    pub async fn pending_multipart_uploads(&self, prefix: &str) -> Vec<String> {
        let (status, body) = self
            .signed_get(&[("prefix", prefix), ("uploads", "")])
            .await;
        assert_eq!(
            status, 200,
            "ListMultipartUploads answered {status}: {body}"
        );
        body.split("<Upload>")
            .skip(1)
            .map(|upload| {
                upload
                    .split_once("<Key>")
                    .and_then(|(_, rest)| rest.split_once("</Key>"))
                    .map(|(key, _)| key.to_owned())
                    .unwrap_or_default()
            })
            .collect()
    }

    /// A SigV4-signed GET on the bucket with `query`: (status, body).
    async fn signed_get(&self, query: &[(&str, &str)]) -> (u16, String) {
        let access = std::env::var("AWS_ACCESS_KEY_ID").expect("AWS_ACCESS_KEY_ID");
        let secret = std::env::var("AWS_SECRET_ACCESS_KEY").expect("AWS_SECRET_ACCESS_KEY");
        let region = "us-east-1";
        let host = self.endpoint.split_once("://").unwrap().1;
        let (amz_date, day) = now_amz();
        let mut pairs: Vec<(String, String)> =
            query.iter().map(|(k, v)| (encode(k), encode(v))).collect();
        pairs.sort();
        let canonical_query = pairs
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("&");
        let payload = hex(&Sha256::digest(b""));
        let canonical = format!(
            "GET\n/{}\n{canonical_query}\nhost:{host}\nx-amz-content-sha256:{payload}\nx-amz-date:{amz_date}\n\n\
             host;x-amz-content-sha256;x-amz-date\n{payload}",
            self.bucket
        );
        let scope = format!("{day}/{region}/s3/aws4_request");
        let to_sign = format!(
            "AWS4-HMAC-SHA256\n{amz_date}\n{scope}\n{}",
            hex(&Sha256::digest(canonical.as_bytes()))
        );
        let mut key = format!("AWS4{secret}").into_bytes();
        for part in [day.as_str(), region, "s3", "aws4_request"] {
            key = hmac(&key, part.as_bytes());
        }
        let signature = hex(&hmac(&key, to_sign.as_bytes()));
        let response = reqwest::Client::new()
            .get(format!(
                "{}/{}?{canonical_query}",
                self.endpoint, self.bucket
            ))
            .header("x-amz-content-sha256", &payload)
            .header("x-amz-date", &amz_date)
            .header(
                "authorization",
                format!(
                    "AWS4-HMAC-SHA256 Credential={access}/{scope}, \
                     SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature={signature}"
                ),
            )
            .send()
            .await
            .expect("S3 request");
        let status = response.status().as_u16();
        (status, response.text().await.unwrap_or_default())
    }
}

fn hmac(key: &[u8], data: &[u8]) -> Vec<u8> {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
    mac.update(data);
    mac.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// (`YYYYMMDDTHHMMSSZ`, `YYYYMMDD`) of now, in UTC.
fn now_amz() -> (String, String) {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let date = format!("{year:04}{month:02}{day:02}");
    (
        format!(
            "{date}T{:02}{:02}{:02}Z",
            rest / 3600,
            rest % 3600 / 60,
            rest % 60
        ),
        date,
    )
}

/// `len` bytes of a pattern that shows a misplaced byte, starting at `offset` of the whole pattern.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|i| (i % 251) as u8 ^ (i / 251 % 256) as u8)
        .collect()
}
