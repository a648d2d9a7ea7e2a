//! Signing in and the signed-in person's own routes: `/api/v1/auth/*` and `/api/v1/me/*`.

use std::sync::Arc;

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use serde::Deserialize;
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::principal::{ClientAddr, SignedIn};
use super::{ApiError, bad_json};
use crate::identity::Me;
use crate::platform::{DataUse, DataUseRange, Feature, Platform, SignIn};
use crate::storage::inbox::Message;

/// Password sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordSignIn {
    phone: String,
    password: String,
}

/// Sign in with phone and password. Admins get a TOTP challenge instead of a session.
#[utoipa::path(post, path = "/api/v1/auth/password", tag = "auth", request_body = PasswordSignIn,
    responses(
        (status = 200, body = SignIn),
        (status = 401, body = ErrorBody, description = "Wrong phone or password"),
        (status = 423, body = ErrorBody, description = "Locked: auth.max_failures failures for this phone from this client, or auth.account_failures from all"),
        (status = 429, body = ErrorBody, description = "auth.client_failures failures from this client"),
    ))]
pub(super) async fn sign_in_password(
    State(p): State<Arc<Platform>>,
    ClientAddr(client): ClientAddr,
    body: Result<Json<PasswordSignIn>, JsonRejection>,
) -> Result<Json<SignIn>, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    Ok(Json(
        p.sign_in_password(&b.phone, &b.password, &client).await?,
    ))
}

/// A phone to send a sign-in code to.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CodeRequest {
    phone: String,
}

/// Send a one-time sign-in code by SMS (202 whether or not the phone is registered).
#[utoipa::path(post, path = "/api/v1/auth/code/send", tag = "auth", request_body = CodeRequest,
    responses((status = 202, description = "Sent if the phone is registered"), (status = 429, body = ErrorBody, description = "auth.code_resend_secs, auth.codes_per_hour (per phone), auth.codes_per_client_per_hour, auth.codes_per_hour_total")))]
pub(super) async fn send_code(
    State(p): State<Arc<Platform>>,
    ClientAddr(client): ClientAddr,
    body: Result<Json<CodeRequest>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    p.request_code(&b.phone, &client).await?;
    Ok(StatusCode::ACCEPTED)
}

/// Code sign-in.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct CodeSignIn {
    phone: String,
    code: String,
}

/// Sign in with the code sent by SMS.
#[utoipa::path(post, path = "/api/v1/auth/code", tag = "auth", request_body = CodeSignIn,
    responses((status = 200, body = SignIn), (status = 401, body = ErrorBody), (status = 423, body = ErrorBody)))]
pub(super) async fn sign_in_code(
    State(p): State<Arc<Platform>>,
    ClientAddr(client): ClientAddr,
    body: Result<Json<CodeSignIn>, JsonRejection>,
) -> Result<Json<SignIn>, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    Ok(Json(p.sign_in_code(&b.phone, &b.code, &client).await?))
}

/// The second factor.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TotpSignIn {
    challenge: String,
    code: String,
}

/// Finish an admin's sign-in with the authenticator's code (or, enrolling, with the first
/// code of the new authenticator). A challenge takes three wrong codes; wrong codes are
/// counted apart from wrong passwords and lock the second factor at `auth.max_failures`.
#[utoipa::path(post, path = "/api/v1/auth/totp", tag = "auth", request_body = TotpSignIn,
    responses((status = 200, body = SignIn), (status = 401, body = ErrorBody), (status = 423, body = ErrorBody)))]
pub(super) async fn sign_in_totp(
    State(p): State<Arc<Platform>>,
    ClientAddr(client): ClientAddr,
    body: Result<Json<TotpSignIn>, JsonRejection>,
) -> Result<Json<SignIn>, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    Ok(Json(p.sign_in_totp(&b.challenge, &b.code, &client).await?))
}

/// An admin's own authenticator enrolment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct TotpEnrol {
    challenge: String,
    /// The activation code the county root handed over (`XXXX-XXXX-XXXX`).
    activation_code: String,
    /// The admin's own new password (the one they were given stops working).
    new_password: String,
}

/// An admin's first sign-in (`stage: totp_enrol_required`): the activation code from the
/// county root and a new password. Answers the new authenticator's secret, shown to the
/// holder this once (`stage: totp_enrol`); its first code, sent to `/api/v1/auth/totp` with
/// the same challenge, finishes the enrolment and signs in.
#[utoipa::path(post, path = "/api/v1/auth/totp/enrol", tag = "auth", request_body = TotpEnrol,
    responses((status = 200, body = SignIn), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 423, body = ErrorBody)))]
pub(super) async fn enrol_totp(
    State(p): State<Arc<Platform>>,
    ClientAddr(client): ClientAddr,
    body: Result<Json<TotpEnrol>, JsonRejection>,
) -> Result<Json<SignIn>, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    Ok(Json(
        p.enrol_totp_self(&b.challenge, &b.activation_code, &b.new_password, &client)
            .await?,
    ))
}

/// End this session: the token stops working at once.
#[utoipa::path(post, path = "/api/v1/auth/logout", tag = "auth", security(("bearer" = [])),
    responses((status = 204), (status = 401, body = ErrorBody)))]
pub(super) async fn logout(
    State(p): State<Arc<Platform>>,
    SignedIn(s): SignedIn,
) -> Result<StatusCode, ApiError> {
    p.sign_out(&s).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Swap this session's token for a new one (the old one stops working).
#[utoipa::path(post, path = "/api/v1/auth/rotate", tag = "auth", security(("bearer" = [])),
    responses((status = 200, body = SignIn), (status = 401, body = ErrorBody)))]
pub(super) async fn rotate(
    State(p): State<Arc<Platform>>,
    SignedIn(s): SignedIn,
) -> Result<Json<SignIn>, ApiError> {
    Ok(Json(p.rotate(&s).await?))
}

/// Who I am: my record, my roles, and whom I act for in assisted mode.
#[utoipa::path(get, path = "/api/v1/me", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = Me), (status = 401, body = ErrorBody)))]
pub(super) async fn me(
    State(p): State<Arc<Platform>>,
    SignedIn(s): SignedIn,
) -> Result<Json<Me>, ApiError> {
    Ok(Json(p.me(&s).await?))
}

/// A password change.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct PasswordChange {
    old: String,
    new: String,
}

/// Change my password.
#[utoipa::path(put, path = "/api/v1/me/password", tag = "me", security(("bearer" = [])),
    request_body = PasswordChange,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub(super) async fn change_password(
    State(p): State<Arc<Platform>>,
    SignedIn(s): SignedIn,
    body: Result<Json<PasswordChange>, JsonRejection>,
) -> Result<StatusCode, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    p.change_password(&s, &b.old, &b.new).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// My inbox, newest first.
#[utoipa::path(get, path = "/api/v1/me/inbox", tag = "me", security(("bearer" = [])),
    responses((status = 200, body = Vec<Message>), (status = 401, body = ErrorBody)))]
pub(super) async fn inbox(
    State(p): State<Arc<Platform>>,
    SignedIn(s): SignedIn,
) -> Result<Json<Vec<Message>>, ApiError> {
    Ok(Json(p.inbox(&s).await?))
}

/// Everything linli holds about me, as a JSON download.
#[utoipa::path(get, path = "/api/v1/me/export", tag = "me", security(("bearer" = [])),
    responses((status = 200, description = "JSON document", content_type = "application/json"), (status = 401, body = ErrorBody)))]
pub(super) async fn export_me(
    State(p): State<Arc<Platform>>,
    SignedIn(s): SignedIn,
) -> Result<axum::response::Response, ApiError> {
    if s.acting_for.is_some() {
        // The full, unmasked record is the resident's to take, not their assistant's.
        return Err(crate::platform::PlatformError::Forbidden(
            "帮办时不能下载居民的全部数据 / not in assisted mode: the resident asks for it themself or at the office"
                .into(),
        )
        .into());
    }
    let principal = Platform::principal_of(&s);
    let doc = p.export_person(&principal, &s.person.id).await?;
    Ok(super::people::download(&s.person.id, doc))
}

/// Start acting for a resident.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AssistStart {
    /// The resident's person id.
    resident: String,
    /// Why (shown to the resident and kept in the audit log).
    reason: String,
    /// For how long (at most `auth.assist_max_minutes`).
    minutes: u32,
}

/// Assisted mode (帮办代办): a grid worker or community staff member gets a token with which
/// plugins see the resident as the caller and the staff member as the assistant. The
/// resident is notified; every action is audited as assisted. End it with `/auth/logout`.
#[utoipa::path(post, path = "/api/v1/assist", tag = "auth", security(("bearer" = [])),
    request_body = AssistStart,
    responses((status = 200, body = SignIn), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn start_assist(
    State(p): State<Arc<Platform>>,
    SignedIn(s): SignedIn,
    body: Result<Json<AssistStart>, JsonRejection>,
) -> Result<Json<SignIn>, ApiError> {
    let Json(b) = body.map_err(bad_json)?;
    if s.acting_for.is_some() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "帮办会话中不能再开帮办 / not from an assisted session",
        ));
    }
    Ok(Json(
        p.start_assist(&s, &b.resident, &b.reason, b.minutes)
            .await?,
    ))
}

/// The features (installed plugins) available at a place, for the shell's home.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/features", tag = "me",
    params(("tenant" = String, Path, description = "A village or community id")),
    responses((status = 200, body = Vec<Feature>), (status = 404, body = ErrorBody)))]
pub(super) async fn features(
    State(p): State<Arc<Platform>>,
    Path(tenant): Path<String>,
) -> Result<Json<Vec<Feature>>, ApiError> {
    Ok(Json(p.features(&tenant).await?))
}

/// Query of `/me/data-use`.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub(super) struct DataUseQuery {
    /// Records after this sequence number (paging forward, oldest first).
    #[serde(default)]
    after: i64,
    /// Newest first (the shell's view), paging back with `before`.
    #[serde(default)]
    newest: bool,
    /// Records before this sequence number.
    before: Option<i64>,
    /// At most this many (1–200, default 50).
    limit: Option<u32>,
}

/// Who used my personal data: every audit record whose subject is me (plugins reading my
/// profile, staff acting for me, exports), oldest first or with `newest=true` newest first,
/// each with the name of who acted and the plugin's title.
#[utoipa::path(get, path = "/api/v1/me/data-use", tag = "me", security(("bearer" = [])),
    params(DataUseQuery),
    responses((status = 200, body = Vec<DataUse>), (status = 401, body = ErrorBody)))]
pub(super) async fn data_use(
    State(p): State<Arc<Platform>>,
    SignedIn(s): SignedIn,
    Query(q): Query<DataUseQuery>,
) -> Result<Json<Vec<DataUse>>, ApiError> {
    let me = match &s.acting_for {
        Some((resident, _)) => resident.id.clone(),
        None => s.person.id.clone(),
    };
    let range = DataUseRange {
        after: q.after,
        before: q.before,
        newest_first: q.newest,
        limit: q.limit.unwrap_or(50),
    };
    Ok(Json(p.data_use(&me, range).await?))
}
