//! File names and content types made safe to store and to put in headers.

/// A file name safe to store and to put in a header: the last path component, without control characters or
/// quotes, at most 255 bytes; `file` when nothing is left.
pub fn safe_filename(raw: &str) -> String {
    let base = raw.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = base
        .chars()
        .filter(|c| !c.is_control() && !matches!(c, '"' | '\\'))
        .collect();
    let trimmed = cleaned.trim().trim_start_matches('.');
    let mut name = String::with_capacity(trimmed.len().min(255));
    for c in trimmed.chars() {
        if name.len() + c.len_utf8() > 255 {
            break;
        }
        name.push(c);
    }
    if name.is_empty() { "file".into() } else { name }
}

/// A media type as `type/subtype` of token characters (parameters dropped), or `application/octet-stream`.
pub fn safe_mimetype(raw: Option<&str>) -> String {
    let essence = raw
        .and_then(|r| r.split(';').next())
        .map(str::trim)
        .unwrap_or_default();
    let token = |s: &str| {
        !s.is_empty()
            && s.len() <= 100
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    match essence.split_once('/') {
        Some((kind, sub)) if token(kind) && token(sub) => essence.to_ascii_lowercase(),
        _ => "application/octet-stream".into(),
    }
}

/// The extension of a safe file name, for the object key.
pub(super) fn extension(filename: &str) -> Option<&str> {
    filename.rsplit_once('.').map(|(_, ext)| ext)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_and_types_are_made_safe() {
        assert_eq!(safe_filename("../../etc/passwd"), "passwd");
        assert_eq!(safe_filename("C:\\Users\\x\\report.pdf"), "report.pdf");
        assert_eq!(safe_filename("a\"b\r\nc.txt"), "abc.txt");
        assert_eq!(safe_filename(".."), "file");
        assert_eq!(safe_filename(""), "file");
        assert_eq!(safe_filename(&"é".repeat(300)).len(), 254);
        assert_eq!(safe_mimetype(Some("image/PNG; charset=x")), "image/png");
        assert_eq!(
            safe_mimetype(Some("text/html\r\nX-Evil: 1")),
            "application/octet-stream"
        );
        assert_eq!(safe_mimetype(None), "application/octet-stream");
    }
}
