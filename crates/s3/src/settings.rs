//! The `s3://` URL: its parts, checked, and the S3 clients they make.

use super::*;

/// The parts of an `s3://` URL.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Settings {
    bucket: String,
    pub(crate) prefix: Option<String>,
    pub(crate) endpoint: Option<String>,
    pub(crate) public_endpoint: Option<String>,
    region: Option<String>,
    access_key_id: Option<String>,
    secret_access_key: Option<String>,
}

fn invalid(message: impl std::fmt::Display) -> ObjectError {
    ObjectError::Backend(format!("invalid S3 URL: {message}"))
}

/// Decodes `%XX` escapes and `+` of a query value.
fn decode(value: &str) -> Result<String, ObjectError> {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => {
                let hex = value
                    .get(i + 1..i + 3)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                    .ok_or_else(|| invalid(format!("bad %-escape in {value:?}")))?;
                out.push(hex);
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8(out).map_err(|_| invalid("a query value is not UTF-8"))
}

fn check_endpoint(name: &str, endpoint: &str) -> Result<(), ObjectError> {
    let rest = endpoint
        .strip_prefix("http://")
        .or_else(|| endpoint.strip_prefix("https://"))
        .ok_or_else(|| invalid(format!("{name} must start with http:// or https://")))?;
    if rest.is_empty() || rest.contains(['?', '#', '@']) {
        return Err(invalid(format!(
            "{name} must be scheme://host[:port], got {endpoint:?}"
        )));
    }
    Ok(())
}

impl Settings {
    pub(crate) fn parse(url: &str) -> Result<Self, ObjectError> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("it must start with s3://"))?;
        let (location, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(invalid(format!(
                "the bucket {bucket:?} must be 3-63 lowercase letters, digits, '-' or '.'"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if !prefix.is_empty()
            && prefix
                .split('/')
                .any(|s| s.is_empty() || s.starts_with('.'))
        {
            return Err(invalid(format!(
                "the prefix {prefix:?} has an empty segment or one starting with '.'"
            )));
        }
        let mut settings = Settings {
            bucket: bucket.to_owned(),
            prefix: (!prefix.is_empty()).then(|| prefix.to_owned()),
            ..Settings::default()
        };
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair
                .split_once('=')
                .ok_or_else(|| invalid(format!("{pair:?} is not name=value")))?;
            let value = decode(value)?;
            if value.is_empty() {
                return Err(invalid(format!("{name} is empty")));
            }
            let slot = match name {
                "endpoint" => &mut settings.endpoint,
                "public_endpoint" => &mut settings.public_endpoint,
                "region" => &mut settings.region,
                "access_key_id" => &mut settings.access_key_id,
                "secret_access_key" => &mut settings.secret_access_key,
                other => {
                    return Err(invalid(format!(
                        "unknown parameter {other:?} (known: endpoint, public_endpoint, region, \
                         access_key_id, secret_access_key)"
                    )));
                }
            };
            if slot.replace(value).is_some() {
                return Err(invalid(format!("{name} is given twice")));
            }
        }
        for (name, endpoint) in [
            ("endpoint", &mut settings.endpoint),
            ("public_endpoint", &mut settings.public_endpoint),
        ] {
            if let Some(endpoint) = endpoint {
                check_endpoint(name, endpoint)?;
                *endpoint = endpoint.trim_end_matches('/').to_owned();
            }
        }
        if settings.access_key_id.is_some() != settings.secret_access_key.is_some() {
            return Err(invalid("access_key_id and secret_access_key go together"));
        }
        if settings.endpoint.is_none() && settings.public_endpoint.is_some() {
            return Err(invalid("public_endpoint needs an endpoint"));
        }
        Ok(settings)
    }

    pub(crate) fn client(&self, endpoint: Option<&str>) -> Result<AmazonS3, ObjectError> {
        // from_env: credentials, session token and region from the standard AWS variables.
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&self.bucket)
            .with_allow_http(true);
        let region = self
            .region
            .clone()
            .or_else(|| std::env::var("AWS_REGION").ok())
            .or_else(|| std::env::var("AWS_DEFAULT_REGION").ok())
            .unwrap_or_else(|| "us-east-1".to_owned());
        builder = builder.with_region(region);
        if let Some(endpoint) = endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_virtual_hosted_style_request(false);
        }
        if let (Some(id), Some(secret)) = (&self.access_key_id, &self.secret_access_key) {
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
        }
        builder
            .build()
            .map_err(|e| ObjectError::Backend(format!("S3 client: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_parsed_and_checked() {
        let settings = Settings::parse(
            "s3://chat4all-files/tenant/a?endpoint=http://127.0.0.1:8333/&region=eu-west-1\
             &public_endpoint=http%3A%2F%2Ffiles.local%3A9000&access_key_id=k&secret_access_key=s%2Bx",
        )
        .unwrap();
        assert_eq!(
            settings,
            Settings {
                bucket: "chat4all-files".into(),
                prefix: Some("tenant/a".into()),
                endpoint: Some("http://127.0.0.1:8333".into()),
                public_endpoint: Some("http://files.local:9000".into()),
                region: Some("eu-west-1".into()),
                access_key_id: Some("k".into()),
                secret_access_key: Some("s+x".into()),
            }
        );
        assert_eq!(Settings::parse("s3://bucket").unwrap().prefix, None);
        for bad in [
            "file:///tmp",
            "s3://",
            "s3://UPPER",
            "s3://b",
            "s3://bucket?endpoint=127.0.0.1:8333",
            "s3://bucket?colour=blue",
            "s3://bucket?region=a&region=b",
            "s3://bucket?access_key_id=only",
            "s3://bucket?public_endpoint=http://x",
            "s3://bucket/../up",
            "s3://bucket?region=%zz",
        ] {
            assert!(Settings::parse(bad).is_err(), "{bad} is refused");
        }
    }
}
