//! `GET /dashboard`: the built-in dashboard page and its assets (two scripts and a style
//! sheet), compiled into the binary (no CDN, no build step). The page holds no data and no
//! secret, so it is served to anyone; its script asks the admin API for everything, with the
//! admin key the user types into its login form (kept in the browser's session storage only).
//!
//! Every answer carries a strict Content-Security-Policy (scripts and styles from this
//! origin only, nothing inline, no framing), `nosniff`, no referrer, and `no-cache` with an
//! ETag, so a browser revalidates and gets a 304 until the binary changes.

use crate::error::{Dialect, ErrorCode, ErrorSource, GatewayError};
use crate::http::{error_response, full, Body};
use http::header::{self, HeaderValue};
use http::{HeaderMap, Method, Response, StatusCode};
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// One compiled-in file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: String,
}

impl Asset {
    fn new(body: &'static str, content_type: &'static str) -> Asset {
        let digest = Sha256::digest(body.as_bytes());
        Asset {
            body,
            content_type,
            etag: format!("\"{}\"", hex::encode(&digest[..12])),
        }
    }
}

const HTML: &str = "text/html; charset=utf-8";
const SCRIPT: &str = "text/javascript; charset=utf-8";
const STYLE: &str = "text/css; charset=utf-8";

/// Every file under `/dashboard/`, by name.
static ASSETS: LazyLock<[(&str, Asset); 4]> = LazyLock::new(|| {
    [
        (
            "index.html",
            Asset::new(include_str!("dashboard/index.html"), HTML),
        ),
        (
            "app.js",
            Asset::new(include_str!("dashboard/app.js"), SCRIPT),
        ),
        (
            "charts.js",
            Asset::new(include_str!("dashboard/charts.js"), SCRIPT),
        ),
        (
            "style.css",
            Asset::new(include_str!("dashboard/style.css"), STYLE),
        ),
    ]
});

/// The policy every dashboard answer carries: only this origin's script, style and API;
/// no inline script or style, no plugins, no framing, forms post nowhere else.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; object-src 'none'; \
     base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Whether a path belongs to the dashboard (`/dashboard` and everything under it).
pub fn is_dashboard_path(path: &str) -> bool {
    path == "/dashboard" || path.starts_with("/dashboard/")
}

/// Answer a request for `/dashboard` or one of its assets: GET and HEAD only, no key.
pub fn serve(method: &Method, path: &str, headers: &HeaderMap) -> Response<Body> {
    let name = match path {
        "/dashboard" | "/dashboard/" => "index.html",
        other => other.strip_prefix("/dashboard/").unwrap_or(other),
    };
    let Some((_, asset)) = ASSETS.iter().find(|(known, _)| *known == name) else {
        let err = GatewayError::new(
            ErrorSource::Client,
            ErrorCode::NotFound,
            "no such dashboard asset",
        );
        return with_security_headers(error_response(&err, Dialect::OpenAi));
    };
    if method != Method::GET && method != Method::HEAD {
        let err = GatewayError::new(
            ErrorSource::Client,
            ErrorCode::MethodNotAllowed,
            format!("method {method} is not allowed on the dashboard (GET or HEAD)"),
        );
        let mut response = error_response(&err, Dialect::OpenAi);
        response
            .headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET, HEAD"));
        return with_security_headers(response);
    }
    let unchanged = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| {
            tags.split(',')
                .any(|tag| tag.trim() == asset.etag || tag.trim() == "*")
        });
    let (status, body) = if unchanged {
        (StatusCode::NOT_MODIFIED, full(""))
    } else if method == Method::HEAD {
        (StatusCode::OK, full(""))
    } else {
        (StatusCode::OK, full(asset.body))
    };
    let mut response = Response::new(body);
    *response.status_mut() = status;
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    if status == StatusCode::OK {
        out.insert(header::CONTENT_LENGTH, HeaderValue::from(asset.body.len()));
    }
    if let Ok(etag) = HeaderValue::from_str(&asset.etag) {
        out.insert(header::ETAG, etag);
    }
    out.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    with_security_headers(response)
}

fn with_security_headers(mut response: Response<Body>) -> Response<Body> {
    let out = response.headers_mut();
    out.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    out.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    out.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    out.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

#[cfg(test)]
#[path = "dashboard_tests.rs"]
mod tests;
