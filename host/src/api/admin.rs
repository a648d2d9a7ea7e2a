//! The admin API under `/api/v1`: tenants, plugin installations and grants, the audit log.
//! Every call needs a signed-in principal (a session token, or the bootstrap admin token);
//! the platform checks the permission at the tenant concerned.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::ApiError;
use super::error::ErrorBody;
use super::principal::Authed;
use crate::platform::{GrantChoice, InstallAction, InstallReport, Installation, Platform};
use crate::storage::audit::Record as AuditRecord;
use crate::storage::installs::Status;
use crate::storage::tenants::{Tenant, TenantKind};

/// The request body limit of the admin routes' JSON bodies. Uploads (components, rosters,
/// device lists) are read by their handlers after the caller is authorised, each with its
/// own limit.
pub(super) fn body_limit(_platform: &Platform) -> DefaultBodyLimit {
    DefaultBodyLimit::max(64 << 10)
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
#[utoipa::path(get, path = "/api/v1/tenants", tag = "tenants", security(("bearer" = [])),
    responses((status = 200, body = Vec<Tenant>), (status = 401, body = ErrorBody)))]
pub(super) async fn list_tenants(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
) -> Result<Json<Vec<Tenant>>, ApiError> {
    Ok(Json(p.tenants(&who).await?))
}

/// Create a tenant (county, township, community/village or grid).
#[utoipa::path(post, path = "/api/v1/tenants", tag = "tenants", security(("bearer" = [])),
    request_body = CreateTenant,
    responses(
        (status = 201, body = Tenant),
        (status = 400, body = ErrorBody, description = "Invalid id, name or parent kind"),
        (status = 404, body = ErrorBody, description = "Parent not found"),
        (status = 409, body = ErrorBody, description = "Id taken"),
    ))]
pub(super) async fn create_tenant(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    body: Result<Json<CreateTenant>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Tenant>), ApiError> {
    let Json(t) = body.map_err(super::bad_json)?;
    let tenant = p
        .create_tenant(
            &who,
            &t.id,
            t.parent.as_deref(),
            t.kind,
            &t.name_zh,
            &t.name_en,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(tenant)))
}

/// Every installation at every tenant.
#[utoipa::path(get, path = "/api/v1/plugins", tag = "plugins", security(("bearer" = [])),
    responses((status = 200, body = Vec<Installation>)))]
pub(super) async fn list_all_plugins(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
) -> Result<Json<Vec<Installation>>, ApiError> {
    Ok(Json(p.installations(&who, None).await?))
}

/// Plugins installed at a tenant.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/plugins", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path)),
    responses((status = 200, body = Vec<Installation>), (status = 404, body = ErrorBody)))]
pub(super) async fn list_plugins(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<Installation>>, ApiError> {
    Ok(Json(p.installations(&who, Some(&tenant)).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct InstallQuery {
    /// What to grant, comma-separated: `required`, `all`, and/or capability names such as
    /// `data,identity.phone`. Grants the installation holds and the new version still asks
    /// for are kept.
    #[serde(default)]
    grant: Option<String>,
}

/// Install (or upgrade) a plugin at a tenant from an uploaded component (`.wasm`). Without
/// the grants its required capabilities need, nothing is installed and the answer (422
/// `grants_required`) lists what it asks for, with purposes, and what changed since the
/// installed version.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/plugins", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path), InstallQuery),
    request_body(content = Vec<u8>, content_type = "application/wasm", description = "The component"),
    responses(
        (status = 201, body = InstallReport, description = "Installed"),
        (status = 200, body = InstallReport, description = "Upgraded, or already installed"),
        (status = 404, body = ErrorBody),
        (status = 413, body = ErrorBody, description = "Over limits.component_bytes"),
        (status = 422, body = ErrorBody, description = "Not a valid linli plugin, its hook failed, or grants are missing"),
    ))]
pub(super) async fn install_plugin(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(tenant): Path<String>,
    Query(q): Query<InstallQuery>,
    body: axum::body::Body,
) -> Result<(StatusCode, Json<InstallReport>), ApiError> {
    // The component is read only once the caller may install here.
    if let Err(e) = p
        .authorize(&who, crate::identity::Permission::ManagePlugins, &tenant)
        .await
    {
        super::linger(body);
        return Err(e.into());
    }
    let limit = p.config.limits.component_bytes;
    let body: Bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "component_too_large",
            format!("上传失败 / upload refused (limits.component_bytes = {limit}): {e}"),
        )
    })?;
    let grants = GrantChoice::parse(q.grant.as_slice())
        .map_err(|m| ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", m))?;
    let report = p.install(&who, &tenant, &body, &grants).await?;
    let status = match report.action {
        InstallAction::Installed => StatusCode::CREATED,
        _ => StatusCode::OK,
    };
    Ok((status, Json(report)))
}

/// One installation.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/plugins/{plugin}", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path), ("plugin" = String, Path)),
    responses((status = 200, body = Installation), (status = 404, body = ErrorBody)))]
pub(super) async fn get_plugin(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path((tenant, plugin)): Path<(String, String)>,
) -> Result<Json<Installation>, ApiError> {
    Ok(Json(p.installation(&who, &tenant, &plugin).await?))
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
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/plugins/{plugin}", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path), ("plugin" = String, Path), UninstallQuery),
    responses((status = 200, body = Uninstalled), (status = 404, body = ErrorBody)))]
pub(super) async fn uninstall_plugin(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path((tenant, plugin)): Path<(String, String)>,
    Query(q): Query<UninstallQuery>,
) -> Result<Json<Uninstalled>, ApiError> {
    let purged_keys = p.uninstall(&who, &tenant, &plugin, q.purge_data).await?;
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
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/plugins/{plugin}/suspend", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path), ("plugin" = String, Path)),
    request_body(content = SuspendBody, description = "Optional reason"),
    responses((status = 200, body = Installation), (status = 404, body = ErrorBody)))]
pub(super) async fn suspend_plugin(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
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
        p.set_status(&who, &tenant, &plugin, Status::Suspended, Some(&reason))
            .await?,
    ))
}

/// Resume a suspended plugin at a tenant.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/plugins/{plugin}/resume", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path), ("plugin" = String, Path)),
    responses((status = 200, body = Installation), (status = 404, body = ErrorBody)))]
pub(super) async fn resume_plugin(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path((tenant, plugin)): Path<(String, String)>,
) -> Result<Json<Installation>, ApiError> {
    Ok(Json(
        p.set_status(&who, &tenant, &plugin, Status::Active, None)
            .await?,
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
    /// Acted by this person (as actor or as assistant).
    person: Option<String>,
    /// Concerning this person's data.
    subject: Option<String>,
    plugin: Option<String>,
    tenant: Option<String>,
    /// Actions starting with this, e.g. `identity.` or `plugin.install`.
    action: Option<String>,
}

fn default_audit_limit() -> u32 {
    100
}

/// The audit log, oldest first: who (person, assistant, plugin) did what, at which tenant, to
/// whose data, with what outcome. Each record carries the previous record's hash. A person
/// needs the audit-admin role and sees the records of their subtree.
#[utoipa::path(get, path = "/api/v1/audit", tag = "audit", security(("bearer" = [])),
    params(AuditQuery),
    responses((status = 200, body = Vec<AuditRecord>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub(super) async fn list_audit(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Query(q): Query<AuditQuery>,
) -> Result<Json<Vec<AuditRecord>>, ApiError> {
    let query = crate::storage::audit::Query {
        after: q.after,
        limit: q.limit,
        person: q.person,
        subject: q.subject,
        plugin: q.plugin,
        tenants: q.tenant.map(|t| vec![t]),
        action_prefix: q.action,
        ..Default::default()
    };
    Ok(Json(p.audit_records(&who, query).await?))
}

/// The result of checking the audit chain.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct AuditVerdict {
    intact: bool,
    /// Records checked (when intact).
    records: Option<u64>,
    /// The first broken record and why (when not).
    broken_at: Option<i64>,
    reason: Option<String>,
}

/// Verify the hash chain of the whole audit log (county audit admins).
#[utoipa::path(get, path = "/api/v1/audit/verify", tag = "audit", security(("bearer" = [])),
    responses((status = 200, body = AuditVerdict), (status = 403, body = ErrorBody)))]
pub(super) async fn verify_audit(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
) -> Result<Json<AuditVerdict>, ApiError> {
    use crate::storage::audit::Verdict;
    Ok(Json(match p.verify_audit(&who).await? {
        Verdict::Intact { records } => AuditVerdict {
            intact: true,
            records: Some(records),
            broken_at: None,
            reason: None,
        },
        Verdict::Broken { seq, reason } => AuditVerdict {
            intact: false,
            records: None,
            broken_at: Some(seq),
            reason: Some(reason),
        },
    }))
}

/// Grant one capability to an installation (it takes effect on the plugin's next call).
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/plugins/{plugin}/grants/{capability}", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path), ("plugin" = String, Path), ("capability" = String, Path, description = "e.g. `identity.phone`")),
    responses((status = 200, body = Installation), (status = 400, body = ErrorBody, description = "The plugin does not ask for it"), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn grant(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path((tenant, plugin, capability)): Path<(String, String, String)>,
) -> Result<Json<Installation>, ApiError> {
    Ok(Json(
        p.set_grant(&who, &tenant, &plugin, &capability, true)
            .await?,
    ))
}

/// Revoke one capability (from the plugin's next call). Revoking a required capability also
/// suspends the installation.
#[utoipa::path(delete, path = "/api/v1/tenants/{tenant}/plugins/{plugin}/grants/{capability}", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path), ("plugin" = String, Path), ("capability" = String, Path)),
    responses((status = 200, body = Installation), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path((tenant, plugin, capability)): Path<(String, String, String)>,
) -> Result<Json<Installation>, ApiError> {
    Ok(Json(
        p.set_grant(&who, &tenant, &plugin, &capability, false)
            .await?,
    ))
}

/// The subtrees an installation above village level serves.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct Serves {
    /// Tenant ids below the installation's tenant; empty: all of its subtree.
    serves: Vec<String>,
}

/// Restrict a township- or county-level installation to some of the places below it.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/plugins/{plugin}/serves", tag = "plugins", security(("bearer" = [])),
    params(("tenant" = String, Path), ("plugin" = String, Path)),
    request_body = Serves,
    responses((status = 200, body = Installation), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn set_serves(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path((tenant, plugin)): Path<(String, String)>,
    body: Result<Json<Serves>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Installation>, ApiError> {
    let Json(body) = body.map_err(super::bad_json)?;
    Ok(Json(
        p.set_serves(&who, &tenant, &plugin, &body.serves).await?,
    ))
}
