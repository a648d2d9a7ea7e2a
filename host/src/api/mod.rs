//! The HTTP surface: health, metrics, the plugin gateway and the admin API (`/api/v1`),
//! described by an OpenAPI document generated from these handlers (`/api/v1/openapi.json`).

mod admin;
mod auth;
mod devices;
mod error;
mod gateway;
mod people;
pub mod principal;

use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get};
use tracing::Instrument;
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

pub use error::ApiError;

use crate::platform::Platform;

/// The request id of the current request (from `x-request-id` if well-formed, else new).
#[derive(Clone, Debug)]
pub struct RequestId(pub String);

#[derive(OpenApi)]
#[openapi(
    info(
        title = "linli",
        description = "linli host API: health, metrics, sign-in, the plugin gateway and the admin API. \
                       Signed-in calls send `Authorization: Bearer <token>`: a session token from \
                       `/api/v1/auth/*`, or the bootstrap `admin_token`.",
    ),
    paths(gateway::gateway_doc),
    modifiers(&BearerAuth),
    tags(
        (name = "health", description = "Liveness, readiness and metrics"),
        (name = "gateway", description = "Requests handed to plugins"),
        (name = "tenants", description = "The tenant tree"),
        (name = "plugins", description = "Plugins installed at tenants"),
        (name = "audit", description = "The hash-chained audit log"),
        (name = "auth", description = "Signing in and out, assisted mode"),
        (name = "me", description = "The signed-in person's own data"),
        (name = "people", description = "Residents and staff, roles, the roster import, residents' rights"),
        (name = "devices", description = "The device registry: gates, sensors, emergency buttons…"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// The whole application: every route, the OpenAPI document and the middleware.
pub fn router(platform: Arc<Platform>) -> Router {
    let (router, openapi) = api_parts(platform.clone());
    let openapi = Arc::new(with_self_path(openapi));
    router
        .route(
            "/api/v1/openapi.json",
            get(move || {
                let doc = openapi.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .merge(crate::shell::router())
        .route("/t/{tenant}/p/{plugin}", any(gateway::gateway))
        .route("/t/{tenant}/p/{plugin}/", any(gateway::gateway))
        .route("/t/{tenant}/p/{plugin}/{*path}", any(gateway::gateway))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(
            platform.clone(),
            principal::authenticate,
        ))
        .layer(middleware::from_fn(same_origin_and_no_store))
        .layer(middleware::from_fn(request_id))
        .with_state(platform)
}

/// The routes that carry their own OpenAPI description, and the document built from them.
fn api_parts(platform: Arc<Platform>) -> (Router<Arc<Platform>>, utoipa::openapi::OpenApi) {
    let admin = OpenApiRouter::new()
        .routes(routes!(admin::list_tenants, admin::create_tenant))
        .routes(routes!(admin::list_all_plugins))
        .routes(routes!(admin::list_plugins, admin::install_plugin))
        .routes(routes!(admin::get_plugin, admin::uninstall_plugin))
        .routes(routes!(admin::suspend_plugin))
        .routes(routes!(admin::resume_plugin))
        .routes(routes!(admin::grant, admin::revoke))
        .routes(routes!(admin::set_serves))
        .routes(routes!(admin::list_audit))
        .routes(routes!(admin::verify_audit))
        .routes(routes!(people::list_people, people::create_person))
        .routes(routes!(people::import_people))
        .routes(routes!(people::get_person))
        .routes(routes!(people::assign_role))
        .routes(routes!(people::revoke_role))
        .routes(routes!(people::unlock))
        .routes(routes!(people::set_password))
        .routes(routes!(people::reactivate))
        .routes(routes!(people::export_person))
        .routes(routes!(people::erase_person))
        .routes(routes!(devices::device_kinds))
        .routes(routes!(devices::list_devices, devices::create_device))
        .routes(routes!(devices::import_devices))
        .routes(routes!(
            devices::get_device,
            devices::update_device,
            devices::delete_device
        ))
        .routes(routes!(devices::rotate_secret))
        .routes(routes!(devices::device_message))
        .routes(routes!(devices::pending_commands))
        .routes(routes!(devices::answer_command))
        .routes(routes!(devices::device_commands))
        .routes(routes!(devices::broker_auth))
        .routes(routes!(devices::broker_acl))
        .layer(admin::body_limit(&platform));
    let auth = OpenApiRouter::new()
        .routes(routes!(auth::sign_in_password))
        .routes(routes!(auth::send_code))
        .routes(routes!(auth::sign_in_code))
        .routes(routes!(auth::sign_in_totp))
        .routes(routes!(auth::enrol_totp))
        .routes(routes!(auth::logout))
        .routes(routes!(auth::rotate))
        .routes(routes!(auth::start_assist))
        .routes(routes!(auth::me))
        .routes(routes!(auth::change_password))
        .routes(routes!(auth::inbox))
        .routes(routes!(auth::export_me))
        .routes(routes!(auth::data_use))
        .routes(routes!(auth::features))
        .layer(DefaultBodyLimit::max(64 << 10));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
        .merge(admin)
        .merge(auth)
        .split_for_parts()
}

/// Add the document's own route to it.
fn with_self_path(mut doc: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    doc.paths.paths.insert(
        "/api/v1/openapi.json".into(),
        utoipa::openapi::PathItem::new(
            utoipa::openapi::HttpMethod::Get,
            utoipa::openapi::path::OperationBuilder::new()
                .summary(Some("This document"))
                .tag("health")
                .response(
                    "200",
                    utoipa::openapi::Response::new("The OpenAPI 3 document"),
                ),
        ),
    );
    doc
}

/// A request refused before its body was read: the body is read and thrown away in the
/// background (at most 64 MiB, for at most 10 s), never kept. The answer goes out at once;
/// the client, still sending, gets to read it instead of a reset connection (what nginx
/// calls a lingering close).
pub(crate) fn linger(body: axum::body::Body) {
    use futures::StreamExt;
    tokio::spawn(async move {
        let drain = async {
            let mut data = body.into_data_stream();
            let mut seen = 0usize;
            while let Some(Ok(chunk)) = data.next().await {
                seen += chunk.len();
                if seen > 64 << 20 {
                    break;
                }
            }
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), drain).await;
    });
}

/// A request body that is not the JSON a route expects.
pub(crate) fn bad_json(e: axum::extract::rejection::JsonRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        return ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            "请求体过大（上限 64 KiB） / request body over 64 KiB",
        );
    }
    ApiError::new(
        StatusCode::BAD_REQUEST,
        "invalid_request",
        format!("请求格式错误 / bad request body: {e}"),
    )
}

async fn not_found() -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        "没有这个地址 / no such route",
    )
}

/// Liveness: the process serves HTTP.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, description = "Alive")))]
async fn healthz() -> impl IntoResponse {
    axum::Json(serde_json::json!({ "status": "ok" }))
}

/// Readiness: the database answers a read and takes a write, and the broker link (when one
/// is configured) is up. The body names each part.
#[utoipa::path(get, path = "/readyz", tag = "health", responses(
    (status = 200, description = "Ready", body = crate::platform::Readiness),
    (status = 503, description = "A part is down: the body says which"),
))]
async fn readyz(State(platform): State<Arc<Platform>>) -> Response {
    let r = platform.readiness().await;
    if r.ready() {
        axum::Json(serde_json::json!({ "status": "ready", "checks": r })).into_response()
    } else {
        let mut down = Vec::new();
        if !r.database {
            down.push("数据库无法读取 / the database does not answer");
        } else if !r.writes {
            down.push("数据库无法写入 / the database refuses writes");
        }
        if r.mqtt == Some(false) {
            down.push("与 MQTT 服务器的连接中断 / the link to the MQTT broker is down");
        }
        let mut response = ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            down.join("; "),
        )
        .detail(serde_json::json!({ "checks": r }))
        .retry_after(5)
        .into_response();
        response.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        response
    }
}

/// Prometheus metrics (text exposition format).
#[utoipa::path(get, path = "/metrics", tag = "health", responses((status = 200, description = "Metrics", content_type = "text/plain")))]
async fn metrics(State(platform): State<Arc<Platform>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        platform.metrics.render(),
    )
        .into_response()
}

/// Two rules for every request. A browser request that changes something (not GET, HEAD or
/// OPTIONS) and says it comes from another origin is refused before anything reads it — a
/// second wall behind bearer-only sign-in against cross-site requests (forms, `text/plain`
/// posts) to the API and to plugins. And no API answer is kept by a browser or a proxy
/// cache (`Cache-Control: no-store`): they carry personal data and exports.
async fn same_origin_and_no_store(req: Request, next: Next) -> Response {
    let safe = matches!(
        *req.method(),
        axum::http::Method::GET | axum::http::Method::HEAD | axum::http::Method::OPTIONS
    );
    if !safe && let Some(origin) = req.headers().get(header::ORIGIN) {
        let host = req
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .unwrap_or("");
        let same = origin.to_str().ok().is_some_and(|o| {
            o.strip_prefix("http://")
                .or_else(|| o.strip_prefix("https://"))
                .is_some_and(|rest| !host.is_empty() && rest.eq_ignore_ascii_case(host))
        });
        if !same {
            return ApiError::new(
                StatusCode::FORBIDDEN,
                "cross_origin",
                "不接受来自其他网站的请求 / requests from another site are refused",
            )
            .into_response();
        }
    }
    let api = req.uri().path().starts_with("/api/");
    let mut response = next.run(req).await;
    if api && !response.headers().contains_key(header::CACHE_CONTROL) {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    response
}

fn well_formed_request_id(v: &str) -> bool {
    !v.is_empty()
        && v.len() <= 64
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Give every request an id, a tracing span carrying it, and an `x-request-id` answer.
async fn request_id(mut req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| well_formed_request_id(v))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
    req.extensions_mut().insert(RequestId(id.clone()));
    let span = tracing::info_span!("http", request_id = %id, method = %req.method(), path = %req.uri().path());
    let mut response = async move {
        let started = std::time::Instant::now();
        let response = next.run(req).await;
        tracing::debug!(
            status = response.status().as_u16(),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "served"
        );
        response
    }
    .instrument(span)
    .await;
    if let Ok(v) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", v);
    }
    response
}
