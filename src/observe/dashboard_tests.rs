#![allow(clippy::unwrap_used, clippy::expect_used)]

use super::*;
use http_body_util::BodyExt;

async fn body_of(response: Response<Body>) -> String {
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(bytes.to_vec()).unwrap()
}

fn get(path: &str) -> Response<Body> {
    serve(&Method::GET, path, &HeaderMap::new())
}

fn header<'a>(response: &'a Response<Body>, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map(|v| v.to_str().unwrap())
        .unwrap_or_else(|| panic!("no {name} header"))
}

#[tokio::test]
async fn each_asset_is_served_with_its_content_type() {
    for (path, content_type, marker) in [
        ("/dashboard", "text/html; charset=utf-8", "<!doctype html>"),
        ("/dashboard/", "text/html; charset=utf-8", "<!doctype html>"),
        (
            "/dashboard/app.js",
            "text/javascript; charset=utf-8",
            "\"use strict\"",
        ),
        (
            "/dashboard/style.css",
            "text/css; charset=utf-8",
            "--accent",
        ),
    ] {
        let response = get(path);
        assert_eq!(response.status(), 200, "{path}");
        assert_eq!(header(&response, "content-type"), content_type, "{path}");
        let length: usize = header(&response, "content-length").parse().unwrap();
        let body = body_of(response).await;
        assert_eq!(body.len(), length, "{path}");
        assert!(body.contains(marker), "{path}");
    }
}

#[tokio::test]
async fn every_answer_carries_the_security_headers() {
    for path in ["/dashboard", "/dashboard/app.js", "/dashboard/nope.js"] {
        let response = get(path);
        let csp = header(&response, "content-security-policy");
        assert!(csp.starts_with("default-src 'self'"), "{csp}");
        assert!(csp.contains("script-src 'self';"), "{csp}");
        assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
        assert!(!csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"));
        assert_eq!(header(&response, "x-frame-options"), "DENY");
        assert_eq!(header(&response, "x-content-type-options"), "nosniff");
        assert_eq!(header(&response, "referrer-policy"), "no-referrer");
    }
    let page = get("/dashboard");
    assert_eq!(header(&page, "cache-control"), "no-cache");
    assert!(header(&page, "etag").starts_with('"'));
}

#[tokio::test]
async fn the_page_has_no_inline_script_or_style_and_no_external_url() {
    let page = body_of(get("/dashboard")).await;
    assert!(page.contains(r#"<script src="/dashboard/charts.js" defer></script>"#));
    assert!(page.contains(r#"<script src="/dashboard/app.js" defer></script>"#));
    assert!(!page.contains("<script>") && !page.contains("<style") && !page.contains("style="));
    let inline_handler = regex::Regex::new(r"\son[a-z]+\s*=").unwrap();
    assert!(!inline_handler.is_match(&page), "an inline event handler");
    for asset in [
        "/dashboard",
        "/dashboard/app.js",
        "/dashboard/charts.js",
        "/dashboard/style.css",
    ] {
        // The SVG namespace is a name, not a fetch.
        let text = body_of(get(asset))
            .await
            .replace("\"http://www.w3.org/2000/svg\"", "");
        assert!(
            !text.contains("http://") && !text.contains("https://") && !text.contains("//cdn"),
            "{asset}"
        );
        assert!(
            !text.contains("innerHTML") && !text.contains("outerHTML"),
            "{asset}"
        );
    }
}

#[tokio::test]
async fn an_unknown_asset_is_a_404() {
    for path in [
        "/dashboard/x.js",
        "/dashboard/app.js/",
        "/dashboard/../admin/stats",
    ] {
        let response = get(path);
        assert_eq!(response.status(), 404, "{path}");
        assert!(body_of(response).await.contains("not_found"), "{path}");
    }
    assert!(is_dashboard_path("/dashboard") && is_dashboard_path("/dashboard/x"));
    assert!(!is_dashboard_path("/dashboards") && !is_dashboard_path("/"));
}

#[tokio::test]
async fn head_answers_the_headers_without_the_body() {
    let full_page = get("/dashboard/app.js");
    let head = serve(&Method::HEAD, "/dashboard/app.js", &HeaderMap::new());
    assert_eq!(head.status(), 200);
    assert_eq!(
        header(&head, "content-length"),
        header(&full_page, "content-length")
    );
    assert_eq!(header(&head, "etag"), header(&full_page, "etag"));
    assert_eq!(body_of(head).await, "");
}

#[tokio::test]
async fn other_methods_are_refused_with_allow() {
    for method in [Method::POST, Method::PUT, Method::DELETE] {
        let response = serve(&method, "/dashboard", &HeaderMap::new());
        assert_eq!(response.status(), 405, "{method}");
        assert_eq!(header(&response, "allow"), "GET, HEAD");
    }
}

#[tokio::test]
async fn a_matching_etag_gets_a_304_and_another_gets_the_page() {
    let etag = header(&get("/dashboard/style.css"), "etag").to_string();
    let mut headers = HeaderMap::new();
    headers.insert(header::IF_NONE_MATCH, etag.parse().unwrap());
    let cached = serve(&Method::GET, "/dashboard/style.css", &headers);
    assert_eq!(cached.status(), 304);
    assert_eq!(header(&cached, "etag"), etag);
    assert_eq!(body_of(cached).await, "");
    headers.insert(header::IF_NONE_MATCH, "\"old\"".parse().unwrap());
    assert_eq!(
        serve(&Method::GET, "/dashboard/style.css", &headers).status(),
        200
    );
    let page_etag = header(&get("/dashboard"), "etag").to_string();
    assert_ne!(page_etag, etag, "each asset has its own tag");
}
