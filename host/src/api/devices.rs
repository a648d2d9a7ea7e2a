//! The device registry: `/api/v1/tenants/{t}/devices…`, `/api/v1/devices/{id}…` and
//! `/api/v1/device-kinds`, and the device-facing `/api/v1/device-messages/{id}…`.

use std::sync::Arc;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::ErrorBody;
use super::principal::Authed;
use super::{ApiError, bad_json};
use crate::platform::{DeviceImportReport, DeviceWithSecret, Platform};
use crate::storage::commands::Command;
use crate::storage::devices::{Device, DeviceInput, DeviceKind, DeviceStatus, Filter};

/// A device kind and its names.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct KindInfo {
    kind: DeviceKind,
    zh: &'static str,
    /// Whether devices of this kind belong to one person (emergency buttons, wearables).
    personal: bool,
    /// The commands plugins may send devices of this kind.
    commands: Vec<&'static str>,
}

/// The device kinds the registry knows.
#[utoipa::path(get, path = "/api/v1/device-kinds", tag = "devices",
    responses((status = 200, body = Vec<KindInfo>)))]
pub(super) async fn device_kinds() -> Json<Vec<KindInfo>> {
    Json(
        DeviceKind::ALL
            .iter()
            .map(|&kind| KindInfo {
                kind,
                zh: kind.zh(),
                personal: kind.personal(),
                commands: crate::platform::telemetry::commands_of(kind),
            })
            .collect(),
    )
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct DevicesQuery {
    /// Comma-separated kinds (`gate,barrier`).
    kind: Option<String>,
    /// `active` or `disabled`.
    status: Option<DeviceStatus>,
    /// Devices bound to this person.
    person: Option<String>,
    /// The last id of the previous page.
    after: Option<String>,
    /// 1–500 (default 100).
    limit: Option<u32>,
}

/// A page of devices.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct DevicesPage {
    devices: Vec<Device>,
    /// Pass as `after` for the next page.
    next: Option<String>,
}

/// Devices registered anywhere in a tenant's subtree.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/devices", tag = "devices", security(("bearer" = [])),
    params(("tenant" = String, Path), DevicesQuery),
    responses((status = 200, body = DevicesPage), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn list_devices(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(tenant): Path<String>,
    Query(q): Query<DevicesQuery>,
) -> Result<Json<DevicesPage>, ApiError> {
    let mut kinds = None;
    if let Some(list) = q.kind.as_deref().filter(|k| !k.trim().is_empty()) {
        let mut parsed = Vec::new();
        for k in list.split(',') {
            match DeviceKind::parse(k) {
                Some(kind) => parsed.push(kind),
                None => {
                    return Err(ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "invalid",
                        format!("未知设备类型 / unknown device kind {:?}", k.trim()),
                    ));
                }
            }
        }
        kinds = Some(parsed);
    }
    let filter = Filter {
        kinds,
        status: q.status,
        person: q.person,
    };
    let (devices, next) = p
        .devices(
            &who,
            &tenant,
            &filter,
            q.after.as_deref(),
            q.limit.unwrap_or(100),
        )
        .await?;
    Ok(Json(DevicesPage { devices, next }))
}

/// Register a device at a tenant. The answer carries its secret, shown this once.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/devices", tag = "devices", security(("bearer" = [])),
    params(("tenant" = String, Path)), request_body = DeviceInput,
    responses((status = 201, body = DeviceWithSecret), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_device(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(tenant): Path<String>,
    body: Result<Json<DeviceInput>, JsonRejection>,
) -> Result<(StatusCode, Json<DeviceWithSecret>), ApiError> {
    let Json(input) = body.map_err(bad_json)?;
    let made = p.create_device(&who, &tenant, &input).await?;
    Ok((StatusCode::CREATED, Json(made)))
}

/// Import a device list: CSV (UTF-8) or XLSX with columns 编号/id, 类型/kind, 名称/name,
/// 位置/location, 厂商/vendor, 型号/model, 使用人/person (id or phone), 状态/status,
/// 所属/tenant. Every row is checked; with any error nothing is imported and the answer (422)
/// lists the errors by row. Known ids are updated; new devices' secrets are listed once.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/devices/import", tag = "devices", security(("bearer" = [])),
    params(("tenant" = String, Path)),
    request_body(content = Vec<u8>, content_type = "text/csv", description = "The device list; send XLSX as application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    responses((status = 200, body = DeviceImportReport), (status = 422, body = DeviceImportReport, description = "Row errors; nothing imported"), (status = 403, body = ErrorBody)))]
pub(super) async fn import_devices(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<DeviceImportReport>), ApiError> {
    if let Err(e) = p
        .authorize(&who, crate::identity::Permission::ManageDevices, &tenant)
        .await
    {
        super::linger(body);
        return Err(e.into());
    }
    let body = super::people::import_body(&p, body).await?;
    let format = super::people::import_format(&headers, &body);
    let report = p.import_devices(&who, &tenant, format, &body).await?;
    let status = if report.imported {
        StatusCode::OK
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    };
    Ok((status, Json(report)))
}

/// One device.
#[utoipa::path(get, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = Device), (status = 404, body = ErrorBody)))]
pub(super) async fn get_device(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<Device>, ApiError> {
    Ok(Json(p.device(&who, &id).await?))
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct MoveQuery {
    /// Move the device to this tenant node.
    tenant: Option<String>,
}

/// Replace a device's fields (its id and secret stay); `?tenant=` moves it.
#[utoipa::path(put, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = String, Path), MoveQuery), request_body = DeviceInput,
    responses((status = 200, body = Device), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn update_device(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Query(q): Query<MoveQuery>,
    body: Result<Json<DeviceInput>, JsonRejection>,
) -> Result<Json<Device>, ApiError> {
    let Json(input) = body.map_err(bad_json)?;
    Ok(Json(
        p.update_device(&who, &id, q.tenant.as_deref(), &input)
            .await?,
    ))
}

/// Remove a device from the registry.
#[utoipa::path(delete, path = "/api/v1/devices/{id}", tag = "devices", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
pub(super) async fn delete_device(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    p.delete_device(&who, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Give a device a new secret; the old one stops working. The answer shows it this once.
#[utoipa::path(post, path = "/api/v1/devices/{id}/secret", tag = "devices", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, body = DeviceWithSecret), (status = 404, body = ErrorBody)))]
pub(super) async fn rotate_secret(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(id): Path<String>,
) -> Result<Json<DeviceWithSecret>, ApiError> {
    Ok(Json(p.rotate_device_secret(&who, &id).await?))
}

/// What the host did with a device's message.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct Accepted {
    /// When the host received it (ms since the epoch).
    received_at_ms: i64,
    /// How many plugins' handlers took it.
    delivered: usize,
    /// How many plugins it is stored for and will be handed to again (their handler failed
    /// or is busy): it is safe with the host either way.
    queued: usize,
    /// The host had this message already (the same `id`, or a repeat): nothing new was done.
    duplicate: bool,
}

/// A device's message over HTTP (for devices on NB-IoT/4G platforms that push by webhook,
/// and where no broker is configured): `Authorization: Bearer <device secret>`, the JSON body
/// checked against the device kind's rules, stored for the plugins granted that kind, then
/// handed to them. 202 means the message is safe with the host; a 503 means it is not and
/// the device should send it again. An `id` field (1–64 of `A-Za-z0-9._:-`) makes a resend
/// of the same message a no-op.
#[utoipa::path(post, path = "/api/v1/device-messages/{id}", tag = "devices",
    params(("id" = String, Path)),
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 202, body = Accepted), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub(super) async fn device_message(
    State(p): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<Accepted>), ApiError> {
    if let Err(e) = device_auth(&p, &id, &headers).await {
        super::linger(body);
        return Err(e);
    }
    let body = read_body(
        body,
        p.config.devices.payload_bytes,
        "devices.payload_bytes",
    )
    .await
    .inspect_err(|_| p.metrics.device_message("invalid"))?;
    let done = p.ingest(None, &id, &body).await?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Accepted {
            received_at_ms: done.received_at_ms,
            delivered: done.delivered(),
            queued: done.deliveries.len() - done.delivered(),
            duplicate: done.duplicate,
        }),
    ))
}

/// Read a request body of at most `limit` bytes (413 naming `setting` past it). The
/// device-facing and hook routes call it only after the caller's credentials are checked, so
/// nobody unauthenticated makes the host buffer anything.
async fn read_body(body: Body, limit: usize, setting: &str) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, limit).await.map_err(|_| {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "request_too_large",
            format!(
                "请求体超过 {limit} 字节（{setting}） / request body over {limit} bytes ({setting})"
            ),
        )
    })
}

/// The most a broker's hook request may carry.
const HOOK_BODY_BYTES: usize = 16 << 10;

/// Check `Authorization: Bearer <device secret>` for device `id`.
async fn device_auth(p: &Platform, id: &str, headers: &HeaderMap) -> Result<(), ApiError> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    let unauthorized = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "设备编号或密钥不对 / unknown device or wrong secret",
        )
    };
    if secret.is_empty() || id.len() > 63 {
        return Err(unauthorized());
    }
    if !crate::storage::devices::check_secret(&p.db, id, secret)
        .await
        .map_err(crate::platform::PlatformError::from)?
    {
        return Err(unauthorized());
    }
    Ok(())
}

/// A command as the device receives it.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct WireCommand {
    id: String,
    command: String,
    #[schema(value_type = Object)]
    payload: serde_json::Value,
    /// Drop the command if it is still not carried out by then (ms since the epoch).
    deadline_ms: i64,
}

/// Commands waiting for this device's answer (for devices without a broker link, which poll
/// for them): `Authorization: Bearer <device secret>`. Oldest first, at most 100.
#[utoipa::path(get, path = "/api/v1/device-messages/{id}/commands", tag = "devices",
    params(("id" = String, Path)),
    responses((status = 200, body = Vec<WireCommand>), (status = 401, body = ErrorBody)))]
pub(super) async fn pending_commands(
    State(p): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Json<Vec<WireCommand>>, ApiError> {
    device_auth(&p, &id, &headers).await?;
    Ok(Json(
        p.pending_commands(None, &id)
            .await?
            .into_iter()
            .map(|c| WireCommand {
                id: c.id,
                command: c.command,
                payload: c.payload,
                deadline_ms: c.deadline_at,
            })
            .collect(),
    ))
}

/// A device's answer to one of its commands: `{"id", "ok": true, "result"}` or
/// `{"id", "ok": false, "reason"}`, with `Authorization: Bearer <device secret>`. 409 if the
/// command is not the device's or was already answered or timed out.
#[utoipa::path(post, path = "/api/v1/device-messages/{id}/acks", tag = "devices",
    params(("id" = String, Path)),
    request_body(content = serde_json::Value, content_type = "application/json"),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn answer_command(
    State(p): State<Arc<Platform>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<StatusCode, ApiError> {
    if let Err(e) = device_auth(&p, &id, &headers).await {
        super::linger(body);
        return Err(e);
    }
    let body = read_body(
        body,
        p.config.devices.payload_bytes,
        "devices.payload_bytes",
    )
    .await?;
    p.answer_command(None, &id, &body).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct CommandsQuery {
    /// How many (newest first), 1–500; default 50.
    limit: Option<u32>,
}

/// The newest commands plugins sent to a device, each with how it ended.
#[utoipa::path(get, path = "/api/v1/devices/{id}/commands", tag = "devices", security(("bearer" = [])),
    params(("id" = String, Path), CommandsQuery),
    responses((status = 200, body = Vec<Command>), (status = 404, body = ErrorBody)))]
pub(super) async fn device_commands(
    State(p): State<Arc<Platform>>,
    Authed(who): Authed,
    Path(id): Path<String>,
    Query(q): Query<CommandsQuery>,
) -> Result<Json<Vec<Command>>, ApiError> {
    Ok(Json(
        p.device_commands(&who, &id, q.limit.unwrap_or(50)).await?,
    ))
}

/// What a broker's HTTP auth hook asks (mosquitto-go-auth's HTTP backend, EMQX's HTTP
/// authentication and authorisation): a client's credentials, or a topic it wants.
#[derive(Debug, Deserialize, ToSchema)]
pub(super) struct BrokerAsk {
    username: String,
    #[serde(default)]
    password: Option<String>,
    #[serde(default)]
    topic: Option<String>,
    /// mosquitto-go-auth: 1 read, 2 write, 3 read and write, 4 subscribe.
    #[serde(default)]
    acc: Option<u8>,
    /// EMQX: `publish` or `subscribe`.
    #[serde(default)]
    action: Option<String>,
}

/// The hook's answer: 200 `{"result": "allow"}` or 403 `{"result": "deny"}`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct BrokerVerdict {
    result: &'static str,
}

fn verdict(allow: bool) -> (StatusCode, Json<BrokerVerdict>) {
    if allow {
        (StatusCode::OK, Json(BrokerVerdict { result: "allow" }))
    } else {
        (
            StatusCode::FORBIDDEN,
            Json(BrokerVerdict { result: "deny" }),
        )
    }
}

/// A hook request's body, read after the hook's token was checked.
async fn hook_ask(body: Body) -> Result<BrokerAsk, ApiError> {
    let bytes = read_body(body, HOOK_BODY_BYTES, "16 KiB").await?;
    serde_json::from_slice(&bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            format!("请求格式错误 / bad request body: {e}"),
        )
    })
}

/// The hook is on only with `devices.broker_hook_token`, and answers only its bearer.
async fn hook_allowed(p: &Platform, headers: &HeaderMap) -> Result<(), ApiError> {
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "broker_hook_off",
            "未配置 devices.broker_hook_token，代理钩子未启用 / the broker hook is off: devices.broker_hook_token is not set",
        )
    };
    let Some(token) = &p.config.devices.broker_hook_token else {
        return Err(not_found());
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !crate::identity::auth::secrets_match(given, token) {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthenticated",
            "需要代理钩子令牌 / the broker hook token is required",
        ));
    }
    Ok(())
}

/// A broker asks whether a client may connect: a device by its id and current secret, or the
/// host by `devices.mqtt_username`/`mqtt_password`.
#[utoipa::path(post, path = "/api/v1/broker/auth", tag = "devices", security(("bearer" = [])),
    request_body = BrokerAsk,
    responses((status = 200, body = BrokerVerdict), (status = 403, body = BrokerVerdict), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn broker_auth(
    State(p): State<Arc<Platform>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<BrokerVerdict>), ApiError> {
    if let Err(e) = hook_allowed(&p, &headers).await {
        super::linger(body);
        return Err(e);
    }
    let ask = hook_ask(body).await?;
    let password = ask.password.unwrap_or_default();
    let cfg = &p.config.devices;
    if cfg.mqtt_username.as_deref() == Some(ask.username.as_str()) {
        return Ok(verdict(cfg.mqtt_password.as_deref().is_some_and(
            |expected| crate::identity::auth::secrets_match(&password, expected),
        )));
    }
    if ask.username.len() > 63 || password.is_empty() {
        return Ok(verdict(false));
    }
    let ok = crate::storage::devices::check_secret(&p.db, &ask.username, &password)
        .await
        .map_err(crate::platform::PlatformError::from)?;
    let active = ok
        && crate::storage::devices::get(&p.db, &ask.username)
            .await
            .map_err(crate::platform::PlatformError::from)?
            .is_some_and(|d| d.status == DeviceStatus::Active);
    Ok(verdict(active))
}

/// A broker asks whether a client may use a topic: a device only its own — publish on
/// `<prefix>/<tenant>/<id>/up` and `…/ack`, subscribe to `…/down`; the host everything under
/// the prefix.
#[utoipa::path(post, path = "/api/v1/broker/acl", tag = "devices", security(("bearer" = [])),
    request_body = BrokerAsk,
    responses((status = 200, body = BrokerVerdict), (status = 403, body = BrokerVerdict), (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn broker_acl(
    State(p): State<Arc<Platform>>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<BrokerVerdict>), ApiError> {
    if let Err(e) = hook_allowed(&p, &headers).await {
        super::linger(body);
        return Err(e);
    }
    let ask = hook_ask(body).await?;
    let topic = ask.topic.unwrap_or_default();
    let cfg = &p.config.devices;
    let prefix = format!("{}/", cfg.topic_prefix);
    if cfg.mqtt_username.as_deref() == Some(ask.username.as_str()) {
        let shared = topic.starts_with("$share/");
        return Ok(verdict(topic.starts_with(&prefix) || shared));
    }
    let publish = match (ask.acc, ask.action.as_deref()) {
        (Some(2), _) | (_, Some("publish")) => true,
        (Some(1 | 4), _) | (_, Some("subscribe")) => false,
        _ => return Ok(verdict(false)),
    };
    if ask.username.len() > 63 {
        return Ok(verdict(false));
    }
    let Some(d) = crate::storage::devices::get(&p.db, &ask.username)
        .await
        .map_err(crate::platform::PlatformError::from)?
    else {
        return Ok(verdict(false));
    };
    let own = |channel: &str| format!("{}{}/{}/{channel}", prefix, d.tenant, d.id);
    let allowed = if publish {
        topic == own("up") || topic == own("ack")
    } else {
        topic == own("down")
    };
    Ok(verdict(allowed && d.status == DeviceStatus::Active))
}
