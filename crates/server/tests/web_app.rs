//! The web app's assets as the api serves them: the page and every module it imports, with the headers that keep
//! message content from ever running as code and a new build from being hidden by a cache.

mod common;

use common::spawn_app;
use reqwest::Method;

#[tokio::test]
async fn the_page_and_every_module_it_imports_are_served_with_a_strict_policy() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let page = app.request(Method::GET, "/", None, None, &[]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.headers["content-type"], "text/html; charset=utf-8");
    let policy = page.headers["content-security-policy"].to_str().unwrap();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(!policy.contains("unsafe-inline"), "{policy}");
    assert_eq!(page.headers["x-content-type-options"], "nosniff");
    assert_eq!(page.headers["x-frame-options"], "DENY");

    // Every module named by the page or imported by another module is there, as JavaScript.
    let mut modules = vec!["app.js".to_owned()];
    let mut seen = Vec::new();
    while let Some(module) = modules.pop() {
        let served = app
            .request(Method::GET, &format!("/web/{module}"), None, None, &[])
            .await;
        assert_eq!(served.status, 200, "{module}");
        assert_eq!(
            served.headers["content-type"], "text/javascript; charset=utf-8",
            "{module}"
        );
        for line in served.text.lines().filter(|l| l.starts_with("import ")) {
            let imported = line.rsplit("'./").next().unwrap().trim_end_matches("';");
            if !seen.iter().any(|s| s == imported) && !modules.iter().any(|m| m == imported) {
                modules.push(imported.to_owned());
            }
        }
        seen.push(module);
    }
    assert!(seen.len() >= 5, "modules found: {seen:?}");
    let style = app
        .request(Method::GET, "/web/app.css", None, None, &[])
        .await;
    assert_eq!(style.status, 200);
    assert!(page.text.contains("/web/app.css") && page.text.contains("/web/app.js"));
    app.stop().await;
}

#[tokio::test]
async fn an_unchanged_asset_is_not_sent_again_and_unknown_ones_are_404() {
    let dir = tempfile::tempdir().unwrap();
    let app = spawn_app(dir.path()).await;
    let first = app
        .request(Method::GET, "/web/app.js", None, None, &[])
        .await;
    let etag = first.headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(first.headers["cache-control"], "no-cache");
    let again = app
        .request(
            Method::GET,
            "/web/app.js",
            None,
            None,
            &[("if-none-match", &etag)],
        )
        .await;
    assert_eq!((again.status, again.text.as_str()), (304, ""));
    let stale = app
        .request(
            Method::GET,
            "/web/app.js",
            None,
            None,
            &[("if-none-match", "\"old\"")],
        )
        .await;
    assert_eq!(stale.status, 200);
    for path in ["/web/missing.js", "/web/..%2FCargo.toml", "/web/"] {
        let missing = app.request(Method::GET, path, None, None, &[]).await;
        assert_eq!(missing.status, 404, "{path}");
    }
    app.stop().await;
}
