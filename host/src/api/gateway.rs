//! The plugin gateway: `/t/{tenant}/p/{plugin}/{path}` → one call of the plugin's handler.

use std::collections::HashMap;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Extension, Path, Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::principal::Auth;
use super::{ApiError, RequestId};
use crate::identity::Principal;
use crate::platform::Platform;
use crate::runtime::bindings::{Header, Request as PluginRequest};
use crate::storage::tenants::valid_id;

/// Request headers never shown to a plugin: credentials belong to the host.
const HIDDEN_REQUEST_HEADERS: &[&str] = &["authorization", "cookie", "proxy-authorization"];

/// Response headers a plugin may set. Everything else (cookies, CORS, hop-by-hop, security
/// policy) is the host's to decide.
const ALLOWED_RESPONSE_HEADERS: &[&str] = &[
    "content-type",
    "cache-control",
    "etag",
    "last-modified",
    "content-language",
    "content-disposition",
    "location",
    "vary",
];

/// Hand a request to a plugin installed at a tenant.
///
/// The path after `/t/{tenant}/p/{plugin}` (or `/`) and the query reach the plugin with the
/// method, headers (minus credentials) and body (up to `limits.hostcall_bytes`).
#[utoipa::path(
    method(get, post, put, patch, delete),
    path = "/t/{tenant}/p/{plugin}/{path}",
    tag = "gateway",
    params(
        ("tenant" = String, Path, description = "Tenant id, e.g. `dongcun`"),
        ("plugin" = String, Path, description = "Plugin id, e.g. `hello`"),
        ("path" = String, Path, description = "The rest of the path, handed to the plugin"),
    ),
    responses(
        (status = 200, description = "The plugin's response (any status it chose)"),
        (status = 404, description = "Tenant or plugin not found", body = super::error::ErrorBody),
        (status = 500, description = "The plugin trapped", body = super::error::ErrorBody),
        (status = 502, description = "The plugin's response was refused", body = super::error::ErrorBody),
        (status = 503, description = "The plugin is suspended", body = super::error::ErrorBody),
        (status = 504, description = "The plugin ran past its deadline", body = super::error::ErrorBody),
    )
)]
#[allow(dead_code)]
pub(super) fn gateway_doc() {}

pub(super) async fn gateway(
    State(platform): State<Arc<Platform>>,
    Path(params): Path<HashMap<String, String>>,
    Extension(RequestId(request_id)): Extension<RequestId>,
    Extension(Auth(principal)): Extension<Auth>,
    request: Request,
) -> Response {
    // The admin token is not a person: it calls plugins anonymously.
    let session = match &principal {
        Some(Principal::Person(s)) => Some(s.clone()),
        _ => None,
    };
    let (tenant, plugin) = match (params.get("tenant"), params.get("plugin")) {
        (Some(t), Some(p)) if valid_id(t) && valid_id(p) => (t.clone(), p.clone()),
        _ => {
            return ApiError::new(
                StatusCode::NOT_FOUND,
                "plugin_not_installed",
                "没有这个插件 / no such plugin",
            )
            .into_response();
        }
    };
    let path = format!("/{}", params.get("path").map(String::as_str).unwrap_or(""));
    let (parts, body) = request.into_parts();
    let route = match platform.plugin_route(&tenant, &plugin).await {
        Ok(route) => route,
        Err(e) => {
            super::linger(body);
            return ApiError::from(e).into_response();
        }
    };
    let limit = platform.config.limits.hostcall_bytes;
    let body = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        Err(_) => {
            return ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request_too_large",
                format!("请求体过大 / request body over limits.hostcall_bytes = {limit}"),
            )
            .into_response();
        }
    };
    let method = parts.method.as_str().to_owned();
    let query = parts.uri.query().unwrap_or("").to_owned();
    let headers = plugin_headers(&parts.headers);
    let plugin_request = PluginRequest {
        method,
        path,
        query,
        headers,
        body: body.to_vec(),
    };
    match platform
        .handle_routed(session.as_deref(), route, &request_id, plugin_request)
        .await
    {
        Ok(r) => match checked_page(&r) {
            Ok(()) => {
                let mut response = plugin_response(r, &format!("/t/{tenant}/p/{plugin}"));
                if session.is_some() {
                    // An answer for a signed-in person is theirs alone: never kept by a
                    // browser or a proxy, whatever the plugin says.
                    response.headers_mut().insert(
                        axum::http::header::CACHE_CONTROL,
                        HeaderValue::from_static("private, no-store"),
                    );
                }
                response
            }
            Err(e) => {
                tracing::warn!(%tenant, %plugin, error = %e, "plugin returned an invalid page");
                platform.metrics.invalid_page(&tenant, &plugin);
                ApiError::new(
                    StatusCode::BAD_GATEWAY,
                    "invalid_page",
                    format!("插件返回的页面无效 / the plugin returned an invalid page: {e}"),
                )
                .into_response()
            }
        },
        Err(e) => ApiError::from(e).into_response(),
    }
}

/// A response that says it is a page must be one: checked against the schema and its limits
/// before any browser sees it.
fn checked_page(r: &crate::runtime::bindings::Response) -> Result<(), linli_ui::PageError> {
    let is_page = r.headers.iter().any(|h| {
        h.name.eq_ignore_ascii_case("content-type")
            && h.value
                .trim_start()
                .to_ascii_lowercase()
                .starts_with(linli_ui::MEDIA_TYPE)
    });
    if is_page {
        linli_ui::Page::parse(&r.body)?;
    }
    Ok(())
}

fn plugin_headers(headers: &HeaderMap) -> Vec<Header> {
    headers
        .iter()
        .filter(|(name, _)| !HIDDEN_REQUEST_HEADERS.contains(&name.as_str()))
        .filter_map(|(name, value)| {
            Some(Header {
                name: name.as_str().to_owned(),
                value: value.to_str().ok()?.to_owned(),
            })
        })
        .collect()
}

/// A plugin's redirect: a path inside the plugin (as in its pages), sent to the browser under
/// the plugin's base. Anything else — another host, another plugin, the API, a path with
/// dot segments or backslashes in any encoding — is dropped.
fn plugin_location(value: &str, base: &str) -> Option<String> {
    linli_ui::is_plugin_path(value)
        .then(|| format!("{base}{value}"))
        .filter(|l| l.len() <= 2048)
}

fn plugin_response(r: crate::runtime::bindings::Response, base: &str) -> Response {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut response = Response::new(Body::from(r.body));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    for h in r.headers {
        let name = h.name.to_ascii_lowercase();
        let allowed =
            ALLOWED_RESPONSE_HEADERS.contains(&name.as_str()) || name.starts_with("x-linli-");
        if !allowed {
            continue;
        }
        // Redirects stay inside the plugin: no open redirects, no way into the API.
        let value = if name == "location" {
            match plugin_location(&h.value, base) {
                Some(v) => v,
                None => continue,
            }
        } else {
            h.value
        };
        if let (Ok(name), Ok(value)) = (HeaderName::try_from(name), HeaderValue::from_str(&value)) {
            headers.append(name, value);
        }
    }
    // Whatever a plugin returns, it cannot run script on the host's origin.
    headers.insert(
        "x-content-type-options",
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        "content-security-policy",
        HeaderValue::from_static("sandbox; default-src 'none'; frame-ancestors 'none'"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::plugin_location;

    #[test]
    fn redirects_stay_inside_the_plugin() {
        let base = "/t/dongcun/p/hello";
        assert_eq!(
            plugin_location("/guestbook?page=2", base).as_deref(),
            Some("/t/dongcun/p/hello/guestbook?page=2")
        );
        for bad in [
            "https://evil.example/",
            "//evil.example/",
            "/\\evil.example/",
            "/\\/evil.example/",
            "/..%2f..%2fapi/v1/me",
            "/.%2e/.%2e/api/v1/me",
            "/%2E%2E/%2e%2E/api",
            "/a/../../api",
            "api/v1/me",
            "javascript:alert(1)",
            "",
        ] {
            assert_eq!(plugin_location(bad, base), None, "{bad:?}");
        }
    }
}
