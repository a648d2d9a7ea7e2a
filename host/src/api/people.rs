//! People, roles, the roster import and residents' rights: `/api/v1/tenants/{t}/people…` and
//! `/api/v1/people/{id}…`.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::principal::Authed;
use super::{ApiError, bad_json};
use crate::identity::Permission;
use crate::platform::{ImportFormat, ImportReport, PersonView, Platform, RoleGiven};
use crate::storage::people::{Filter, Person, PersonInput, PersonKind};

/// A JSON document served as a file download.
pub(super) fn download(id: &str, doc: serde_json::Value) -> Response {
    let mut r = Json(doc).into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"linli-{id}.json\"")) {
        r.headers_mut().insert(header::CONTENT_DISPOSITION, v);
    }
    r
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct PeopleQuery {
    /// `resident`, `staff` or `vendor`.
    kind: Option<PersonKind>,
    /// Comma-separated tags the person must all carry.
    tags: Option<String>,
    /// The last id of the previous page.
    after: Option<String>,
    /// 1–500 (default 100).
    limit: Option<u32>,
}

/// A page of people, masked.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct PeoplePage {
    people: Vec<PersonView>,
    /// Pass as `after` for the next page.
    next: Option<String>,
}

/// People living (or working) in a tenant's subtree, every personal field masked.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/people", tag = "people", security(("bearer" = [])),
    params(("tenant" = String, Path), PeopleQuery),
    responses((status = 200, body = PeoplePage), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn list_people(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(tenant): Path<String>,
    Query(q): Query<PeopleQuery>,
) -> Result<Json<PeoplePage>, ApiError> {
    let filter = Filter {
        kind: q.kind,
        tags: q
            .tags
            .map(|t| {
                t.split(',')
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect()
            })
            .unwrap_or_default(),
        household: None,
        born_on_or_before: None,
    };
    let (people, next) = p
        .people(
            &who,
            &tenant,
            &filter,
            q.after.as_deref(),
            q.limit.unwrap_or(100),
        )
        .await?;
    Ok(Json(PeoplePage { people, next }))
}

/// A person to register.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct NewPerson {
    #[serde(default = "resident")]
    kind: PersonKind,
    #[serde(flatten)]
    fields: PersonInput,
    /// An initial password (residents may also sign in by SMS code only).
    #[serde(default)]
    password: Option<String>,
}

fn resident() -> PersonKind {
    PersonKind::Resident
}

/// Register a resident (people managers) or a staff member (security admins) at a tenant.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/people", tag = "people", security(("bearer" = [])),
    params(("tenant" = String, Path)), request_body = NewPerson,
    responses((status = 201, body = Person), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_person(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(tenant): Path<String>,
    body: Result<Json<NewPerson>, JsonRejection>,
) -> Result<(StatusCode, Json<Person>), ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    let person = p
        .create_person(&who, &tenant, b.kind, &b.fields, b.password.as_deref())
        .await?;
    Ok((StatusCode::CREATED, Json(person)))
}

/// Import residents from a roster: CSV (UTF-8, `text/csv`) or XLSX. Every row is checked;
/// with any error nothing is imported and the answer (422) lists the errors by row.
/// Re-importing updates people already known (same ID number, else same phone).
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/people/import", tag = "people", security(("bearer" = [])),
    params(("tenant" = String, Path)),
    request_body(content = Vec<u8>, content_type = "text/csv", description = "The roster; send XLSX as application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    responses((status = 200, body = ImportReport), (status = 422, body = ImportReport, description = "Row errors; nothing imported"), (status = 403, body = ErrorBody)))]
pub(super) async fn import_people(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<ImportReport>), ApiError> {
    if let Err(e) = p.authorize(&who, Permission::ManagePeople, &tenant).await {
        super::linger(body);
        return Err(e.into());
    }
    let body = import_body(&p, body).await?;
    let format = import_format(&headers, &body);
    let report = p.import_people(&who, &tenant, format, &body).await?;
    let status = if report.imported {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Json(report)))
}

/// An import's file, read only after the caller was found allowed to import there, and at
/// most `limits.import_bytes`.
pub(super) async fn import_body(p: &Platform, body: Body) -> Result<Bytes, ApiError> {
    let limit = p.config.limits.import_bytes;
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!("文件超过 {limit} 字节（limits.import_bytes） / the file is over {limit} bytes (limits.import_bytes)"),
        )
    })
}

/// XLSX if the content type says so or the body is a zip file, else CSV.
pub(super) fn import_format(headers: &HeaderMap, body: &[u8]) -> ImportFormat {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if ct.contains("spreadsheetml") || body.starts_with(b"PK\x03\x04") {
        ImportFormat::Xlsx
    } else {
        ImportFormat::Csv
    }
}

/// One person: in full for people managers and security admins (audited), masked otherwise.
#[utoipa::path(get, path = "/api/v1/people/{id}", tag = "people", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "The person (full or masked)"), (status = 404, body = ErrorBody)))]
pub(super) async fn get_person(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    Ok(Json(p.person(&who, &id).await?))
}

/// A role at a tenant.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RoleBody {
    tenant: String,
    /// grid-worker, community-staff, system-admin, security-admin, audit-admin, vendor.
    role: String,
}

/// Give a person a role at a tenant (security admins). The three admin roles exclude each
/// other and are given only by the county root (the admin token); to someone without an
/// authenticator, the answer holds the activation code (shown once) the root hands them, with
/// which they set their own password and enrol their own authenticator.
#[utoipa::path(post, path = "/api/v1/people/{id}/roles", tag = "people", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = RoleBody,
    responses((status = 200, body = RoleGiven), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody, description = "Separation of the three admins")))]
pub(super) async fn assign_role(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(id): Path<String>,
    body: Result<Json<RoleBody>, JsonRejection>,
) -> Result<Json<RoleGiven>, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    Ok(Json(p.assign_role(&who, &id, &b.tenant, &b.role).await?))
}

/// Take a role away.
#[utoipa::path(delete, path = "/api/v1/people/{id}/roles/{tenant}/{role}", tag = "people", security(("bearer" = [])),
    params(("id" = String, Path), ("tenant" = String, Path), ("role" = String, Path)),
    responses((status = 204), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn revoke_role(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path((id, tenant, role)): Path<(String, String, String)>,
) -> Result<StatusCode, ApiError> {
    if p.revoke_role(&who, &id, &tenant, &role).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "role_not_held",
            "此人在该处没有这个角色 / the person does not hold that role there",
        ))
    }
}

/// Lift a sign-in lockout (security admins).
#[utoipa::path(post, path = "/api/v1/people/{id}/unlock", tag = "people", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn unlock(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.unlock(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new password.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordBody {
    password: String,
}

/// Set a person's password.
#[utoipa::path(put, path = "/api/v1/people/{id}/password", tag = "people", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = PasswordBody,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn set_password(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(id): Path<String>,
    body: Result<Json<PasswordBody>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    p.set_password(&who, &id, &b.password).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A new activation code for an admin who lost their authenticator (the county root only):
/// the old authenticator stops working and their sessions end.
#[utoipa::path(post, path = "/api/v1/people/{id}/activation", tag = "people", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = RoleGiven), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn reactivate(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<RoleGiven>, ApiError> {
    Ok(Json(p.reactivate(&who, &id).await?))
}

/// Everything held about a person (security admins over them), as a JSON download.
#[utoipa::path(get, path = "/api/v1/people/{id}/export", tag = "people", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "JSON document", content_type = "application/json"), (status = 404, body = ErrorBody)))]
pub(super) async fn export_person(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let doc = p.export_person(&who, &id).await?;
    Ok(download(&id, doc))
}

/// What an erasure removed.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Erased {
    plugin_keys_deleted: u64,
}

/// Erase a person on request: fields anonymised, sessions, roles and credentials removed,
/// every plugin's data about them deleted; the audit log keeps the record of it.
#[utoipa::path(post, path = "/api/v1/people/{id}/erase", tag = "people", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Erased), (status = 404, body = ErrorBody)))]
pub(super) async fn erase_person(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Erased>, ApiError> {
    Ok(Json(Erased {
        plugin_keys_deleted: p.erase_person(&who, &id).await?,
    }))
}
