//! The `Range` header of a download: one byte range (`bytes=first-last`, `bytes=first-`, `bytes=-suffix`) is
//! served; several ranges or other units are ignored (the whole file); a range outside the file is unsatisfiable,
//! and a position too large for any file is refused.

/// What a `Range` header asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum RangeRequest {
    /// Bytes `start..=end`.
    Satisfiable(u64, u64),
    /// Not a single byte range we serve (several ranges, other units): answer the whole file.
    Ignored,
    /// A byte range outside the file.
    Unsatisfiable,
    /// A position too large for any file: refused rather than wrapped or ignored.
    OutOfRange,
}

pub(super) fn parse_range(spec: &str, size: u64) -> RangeRequest {
    let Some(ranges) = spec.trim().strip_prefix("bytes=") else {
        return RangeRequest::Ignored;
    };
    if ranges.contains(',') {
        return RangeRequest::Ignored;
    }
    let Some((first, last)) = ranges.trim().split_once('-') else {
        return RangeRequest::Ignored;
    };
    let (first, last) = (first.trim(), last.trim());
    let too_large = |s: &str| {
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.parse::<u64>().is_err()
    };
    if too_large(first) || too_large(last) {
        return RangeRequest::OutOfRange;
    }
    let parse = |s: &str| s.parse::<u64>().ok();
    let range = match (first.is_empty(), last.is_empty()) {
        (true, false) => parse(last)
            .filter(|n| *n > 0)
            .map(|n| (size.saturating_sub(n), size.saturating_sub(1))),
        (false, true) => parse(first).map(|start| (start, size.saturating_sub(1))),
        (false, false) => match (parse(first), parse(last)) {
            (Some(start), Some(end)) if start <= end => {
                Some((start, end.min(size.saturating_sub(1))))
            }
            _ => return RangeRequest::Ignored,
        },
        (true, true) => return RangeRequest::Ignored,
    };
    match range {
        Some((start, end)) if size > 0 && start < size && start <= end => {
            RangeRequest::Satisfiable(start, end)
        }
        Some(_) => RangeRequest::Unsatisfiable,
        None => RangeRequest::Ignored,
    }
}

#[cfg(test)]
mod tests {
    use super::{RangeRequest::*, parse_range};

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-99", 1000), Satisfiable(0, 99));
        assert_eq!(parse_range("bytes=900-", 1000), Satisfiable(900, 999));
        assert_eq!(parse_range("bytes=-100", 1000), Satisfiable(900, 999));
        assert_eq!(parse_range("bytes=990-2000", 1000), Satisfiable(990, 999));
        assert_eq!(parse_range("bytes=1000-", 1000), Unsatisfiable);
        assert_eq!(parse_range("bytes=0-1,5-6", 1000), Ignored);
        assert_eq!(parse_range("items=0-1", 1000), Ignored);
        assert_eq!(parse_range("bytes=5-1", 1000), Ignored);
        assert_eq!(parse_range("bytes=0-0", 0), Unsatisfiable);
        assert_eq!(parse_range("bytes=18446744073709551616-", 1000), OutOfRange);
        assert_eq!(
            parse_range("bytes=0-99999999999999999999", 1000),
            OutOfRange
        );
        assert_eq!(parse_range("bytes=-18446744073709551616", 1000), OutOfRange);
        assert_eq!(
            parse_range("bytes=0-18446744073709551615", 1000),
            Satisfiable(0, 999)
        );
    }
}
