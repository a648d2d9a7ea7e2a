//! The admin API under `/api/v1`: tenants and plugin installations. Every call needs the
//! configured bearer token; without one configured the admin API refuses everything.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};

use super::ApiError;
use super::error::ErrorBody;
use crate::platform::{InstallAction, InstallReport, Installation, Platform};
use crate::storage::audit::Record as AuditRecord;
use crate::storage::installs::Status;
use crate::storage::tenants::{Tenant, TenantKind};

/// The request body limit of the admin routes: a component upload.
pub(super) fn body_limit(platform: &Platform) -> DefaultBodyLimit {
    DefaultBodyLimit::max(platform.config.limits.component_bytes)
}

/// Check `Authorization: Bearer <admin_token>`.
pub(super) async fn require_admin(
    State(platform): State<Arc<Platform>>,
    req: Request,
    next: Next,
) -> Response {
    let Some(expected) = platform.config.admin_token.as_deref() else {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "admin_disabled",
            "未配置管理令牌，管理接口已关闭 / no admin_token is configured: the admin API is disabled",
        )
        .into_response();
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    // Compare digests so the comparison time does not depend on how much of the token matched.
    let ok =
        given.is_some_and(|g| Sha256::digest(g.as_bytes()) == Sha256::digest(expected.as_bytes()));
    if !ok {
        let mut e = ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "需要有效的管理令牌 / a valid admin bearer token is required",
        );
        e.www_authenticate = true;
        return e.into_response();
    }
    next.run(req).await
}

/// A tenant to create.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CreateTenant {
    /// `[a-z0-9][a-z0-9-]{0,62}`
    id: String,
    /// The parent tenant; none for a county.
    #[serde(default)]
    parent: Option<String>,
    kind: TenantKind,
    name_zh: String,
    name_en: String,
}

/// List the tenant tree.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", security(("admin_token" = [])),
    responses((status = 200, body = Vec<Tenant>), (status = 401, body = ErrorBody)))]
pub(super) async fn list_tenants(
    State(p): State<Arc<Platform>>,
) -> Result<Json<Vec<Tenant>>, ApiError> {
    Ok(Json(p.tenants().await?))
}

/// Create a tenant (county, township, community/village or grid).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", security(("admin_token" = [])),
    request_body = CreateTenant,
    responses(
        (status = 201, body = Tenant),
        (status = 400, body = ErrorBody, description = "Invalid id, name or parent kind"),
        (status = 404, body = ErrorBody, description = "Parent not found"),
        (status = 409, body = ErrorBody, description = "Id taken"),
    ))]
pub(super) async fn create_tenant(
    State(p): State<Arc<Platform>>,
    body: Result<Json<CreateTenant>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    let Json(t) = body.map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("请求格式错误 / bad request body: {e}"),
        )
    })?;
    let tenant = p
        .create_tenant(&t.id, t.parent.as_deref(), t.kind, &t.name_zh, &t.name_en)
        .await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// Every installation at every tenant.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", security(("admin_token" = [])),
    responses((status = 200, body = Vec<Installation>)))]
pub(super) async fn list_all_plugins(
    State(p): State<Arc<Platform>>,
) -> Result<Json<Vec<Installation>>, ApiError> {
    Ok(Json(p.installations(None).await?))
}

/// Plugins installed at a tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/plugins", tag = "plugins", security(("admin_token" = [])),
    params(("tenant" = String, Path)),
    responses((status = 200, body = Vec<Installation>), (status = 404, body = ErrorBody)))]
pub(super) async fn list_plugins(
    State(p): State<Arc<Platform>>,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<Installation>>, ApiError> {
    Ok(Json(p.installations(Some(&tenant)).await?))
}

/// Install (or upgrade) a plugin at a tenant from an uploaded component (`.wasm`).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/plugins", tag = "plugins", security(("admin_token" = [])),
    params(("tenant" = String, Path)),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component"),
    responses(
        (status = 201, body = InstallReport, description = "Installed"),
        (status = 200, body = InstallReport, description = "Upgraded, or already installed"),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody, description = "Over limits.component_bytes"),
        (status = 422, body = ErrorBody, description = "Not a valid linli plugin, or its hook failed"),
    ))]
pub(super) async fn install_plugin(
    State(p): State<Arc<Platform>>,
    Path(tenant): Path<String>,
    body: Result<Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(StatusCode, Json<InstallReport>), ApiError> {
    let body = body.map_err(|e| {
        let status = e.status();
        let code = if status == StatusCode::PAYLOAD_TOO_LARGE {
            "component_too_large"
        } else {
            "invalid_request"
        };
        ApiError::new(
            status,
            code,
            format!(
                "上传失败 / upload refused (limits.component_bytes = {}): {e}",
                p.config.limits.component_bytes
            ),
        )
    })?;
    let report = p.install(&tenant, &body).await?;
    let status = match report.action {
        InstallAction::Installed => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    Ok((status, Json(report)))
}

/// One installation.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/plugins/{plugin}", tag = "plugins", security(("admin_token" = [])),
    params(("tenant" = String, Path), ("plugin" = String, Path)),
    responses((status = 200, body = Installation), (status = 404, body = ErrorBody)))]
pub(super) async fn get_plugin(
    State(p): State<Arc<Platform>>,
    Path((tenant, plugin)): Path<(String, String)>,
) -> Result<Json<Installation>, ApiError> {
    Ok(Json(p.installation(&tenant, &plugin).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct UninstallQuery {
    /// Also delete the plugin's data at this tenant.
    #[serde(default)]
    purge_data: bool,
}

/// What an uninstall removed.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Uninstalled {
    purged_keys: u64,
}

/// Uninstall a plugin from a tenant (its data stays unless `purge_data=true`).
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/plugins/{plugin}", tag = "plugins", security(("admin_token" = [])),
    params(("tenant" = String, Path), ("plugin" = String, Path), UninstallQuery),
    responses((status = 200, body = Uninstalled), (status = 404, body = ErrorBody)))]
pub(super) async fn uninstall_plugin(
    State(p): State<Arc<Platform>>,
    Path((tenant, plugin)): Path<(String, String)>,
    Query(q): Query<UninstallQuery>,
) -> Result<Json<Uninstalled>, ApiError> {
    let purged_keys = p.uninstall(&tenant, &plugin, q.purge_data).await?;
    Ok(Json(Uninstalled { purged_keys }))
}

/// Why a plugin is being suspended.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct SuspendBody {
    #[serde(default)]
    reason: Option<String>,
}

/// Suspend a plugin at a tenant: its gateway answers 503 until resumed.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/plugins/{plugin}/suspend", tag = "plugins", security(("admin_token" = [])),
    params(("tenant" = String, Path), ("plugin" = String, Path)),
    request_body(content = SuspendBody, description = "Optional reason"),
    responses((status = 200, body = Installation), (status = 404, body = ErrorBody)))]
pub(super) async fn suspend_plugin(
    State(p): State<Arc<Platform>>,
    Path((tenant, plugin)): Path<(String, String)>,
    body: Bytes,
) -> Result<Json<Installation>, ApiError> {
    let body: SuspendBody = if body.is_empty() {
        SuspendBody::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_request",
                format!("请求格式错误 / bad request body: {e}"),
            )
        })?
    };
    let reason = body
        .reason
        .unwrap_or_else(|| "管理员暂停 / suspended by an admin".into());
    if reason.chars().count() > 500 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            "reason 最长 500 字 / reason is over 500 characters",
        ));
    }
    Ok(Json(
        p.set_status(&tenant, &plugin, Status::Suspended, Some(&reason))
            .await?,
    ))
}

/// Resume a suspended plugin at a tenant.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/plugins/{plugin}/resume", tag = "plugins", security(("admin_token" = [])),
    params(("tenant" = String, Path), ("plugin" = String, Path)),
    responses((status = 200, body = Installation), (status = 404, body = ErrorBody)))]
pub(super) async fn resume_plugin(
    State(p): State<Arc<Platform>>,
    Path((tenant, plugin)): Path<(String, String)>,
) -> Result<Json<Installation>, ApiError> {
    Ok(Json(
        p.set_status(&tenant, &plugin, Status::Active, None).await?,
    ))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct AuditQuery {
    /// Records after this sequence number (default 0: from the start).
    #[serde(default)]
    after: i64,
    /// At most this many (1–1000, default 100).
    #[serde(default = "default_audit_limit")]
    limit: u32,
}

fn default_audit_limit() -> u32 {
    100
}

/// The audit log, oldest first: who did what, to which tenant and plugin, with what outcome.
/// Each record carries the previous record's hash.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("admin_token" = [])),
    params(AuditQuery),
    responses((status = 200, body = Vec<AuditRecord>), (status = 401, body = ErrorBody)))]
pub(super) async fn list_audit(
    State(p): State<Arc<Platform>>,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    Ok(Json(p.audit_records(q.after, q.limit).await?))
}
