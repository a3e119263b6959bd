//! Where the distributed adapters' tests find their real servers. `scripts/test.sh` starts them (PostgreSQL,
//! SeaweedFS, the tansu broker) and exports their URLs; a plain `cargo test` on a machine without them skips
//! those tests with a notice, unless `CHAT4ALL_REQUIRE_SERVERS=1` (set by `scripts/test.sh`, hence by CI) turns
//! the missing URL into a failure, so CI never passes by skipping.

/// The URL of the test server named by the variable `variable` (such as `CHAT4ALL_TEST_POSTGRES_URL`), or
/// `None` after printing why the calling test is skipped.
pub fn url(variable: &str) -> Option<String> {
    match std::env::var(variable) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ if required() => panic!(
            "{variable} is not set but CHAT4ALL_REQUIRE_SERVERS=1: start the test servers with scripts/test.sh"
        ),
        _ => {
            eprintln!(
                "skipped: {variable} is not set (scripts/test.sh starts the servers and sets it)"
            );
            None
        }
    }
}

fn required() -> bool {
    std::env::var("CHAT4ALL_REQUIRE_SERVERS").is_ok_and(|v| v == "1")
}
