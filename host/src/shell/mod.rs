//! The web app shell: three static files compiled into the binary and served by `linli serve`
//! at `/` (no separate front-end server, no build step). The shell signs people in, lists the
//! features installed for their place, draws plugin pages (the page schema in `linli-ui`),
//! and holds the inbox, "my data", elder mode and the admin console.

use axum::Router;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use sha2::{Digest, Sha256};
use std::sync::LazyLock;

/// One embedded file.
struct Asset {
    body: &'static str,
    content_type: &'static str,
    etag: String,
}

fn asset(body: &'static str, content_type: &'static str) -> Asset {
    let etag = format!(
        "\"{}\"",
        &hex::encode(Sha256::digest(body.as_bytes()))[..16]
    );
    Asset {
        body,
        content_type,
        etag,
    }
}

static INDEX: LazyLock<Asset> =
    LazyLock::new(|| asset(include_str!("index.html"), "text/html; charset=utf-8"));
static APP_JS: LazyLock<Asset> =
    LazyLock::new(|| asset(include_str!("app.js"), "text/javascript; charset=utf-8"));
static APP_CSS: LazyLock<Asset> =
    LazyLock::new(|| asset(include_str!("app.css"), "text/css; charset=utf-8"));

/// The shell's policy: its own script and styles only, plugin images over https, no frames.
const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' https: blob:; \
connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

fn serve(a: &Asset, req: &HeaderMap) -> Response {
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(a.content_type),
    );
    // Revalidate every time: a new binary must not run with an old script.
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    if let Ok(v) = HeaderValue::from_str(&a.etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    let fresh = req
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == a.etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, headers).into_response();
    }
    (headers, a.body).into_response()
}

/// `/`, `/shell/app.js`, `/shell/app.css`.
pub fn router<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/", get(|h: HeaderMap| async move { serve(&INDEX, &h) }))
        .route(
            "/shell/app.js",
            get(|h: HeaderMap| async move { serve(&APP_JS, &h) }),
        )
        .route(
            "/shell/app.css",
            get(|h: HeaderMap| async move { serve(&APP_CSS, &h) }),
        )
}
