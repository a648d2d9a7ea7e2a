//! `ApiError`: every failure as JSON with a stable code. Clients get a safe message
//! (zh-CN first, then English); internals are logged, never sent.

use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::platform::PlatformError;
use crate::runtime::{CallError, ComponentError};

/// The JSON body of every error response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable machine-readable code, e.g. `tenant_not_found`, `plugin_trapped`.
    pub code: &'static str,
    /// Human-readable message, zh-CN first then English.
    pub message: String,
    /// The plugin concerned, for gateway errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plugin: Option<String>,
    /// Why a plugin call failed or a plugin is suspended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Structured facts: the grants a plugin needs (`grants_required`), when a lock ends
    /// (`account_locked`), the row errors of an import.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub detail: Option<serde_json::Value>,
}

/// An HTTP error response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub body: ErrorDetail,
    pub www_authenticate: bool,
    /// Seconds after which a retry may succeed (`Retry-After`): overload and storage outages.
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            body: ErrorDetail {
                code,
                message: message.into(),
                plugin: None,
                reason: None,
                detail: None,
            },
            www_authenticate: false,
            retry_after: None,
        }
    }

    /// Tell the client when to retry (`Retry-After`, seconds).
    pub fn retry_after(mut self, seconds: u32) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn detail(mut self, detail: serde_json::Value) -> Self {
        self.body.detail = Some(detail);
        self
    }

    fn plugin(mut self, plugin: &str, reason: impl Into<String>) -> Self {
        self.body.plugin = Some(plugin.to_owned());
        self.body.reason = Some(reason.into());
        self
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(ErrorBody { error: self.body })).into_response();
        if self.www_authenticate {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                header::HeaderValue::from_static("Bearer"),
            );
        }
        if let Some(s) = self.retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from(s));
        }
        response
    }
}

fn call_error(plugin: &str, error: &CallError) -> ApiError {
    match error {
        CallError::Trap(reason) => ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "plugin_trapped",
            format!("插件运行出错 / plugin {plugin} trapped"),
        )
        .plugin(plugin, reason.clone()),
        CallError::CpuTime(ms) => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "plugin_deadline",
            format!("插件处理超时 / plugin {plugin} exceeded its deadline"),
        )
        .plugin(
            plugin,
            format!("more than {ms} ms of CPU time (limits.cpu_time_ms)"),
        ),
        CallError::Deadline { ms, applied } => ApiError::new(
            StatusCode::GATEWAY_TIMEOUT,
            "plugin_deadline",
            if *applied {
                format!(
                    "插件处理超时，更改可能已部分保存，请查看后再决定是否重试 / plugin {plugin} exceeded its deadline after saving some of its changes: check before trying again"
                )
            } else {
                format!(
                    "插件处理超时，未作任何更改，可以重试 / plugin {plugin} exceeded its deadline and changed nothing: it is safe to try again"
                )
            },
        )
        .plugin(
            plugin,
            format!("deadline of {ms} ms (limits.call_timeout_ms)"),
        )
        .detail(serde_json::json!({ "applied": applied })),
        CallError::Unavailable(reason) => {
            tracing::error!(%plugin, %reason, "storage unavailable calling plugin");
            ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage_unavailable",
                "存储暂不可用，请稍后重试 / storage unavailable, retry later",
            )
            .retry_after(5)
        }
        CallError::Busy(ms) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "host_busy",
            "服务繁忙，请稍后再试 / the service is busy; try again shortly",
        )
        .plugin(
            plugin,
            format!("no free instance within {ms} ms (limits.instances)"),
        )
        .retry_after(1),
        CallError::Output(reason) => ApiError::new(
            StatusCode::BAD_GATEWAY,
            "plugin_bad_response",
            format!("插件返回内容被拒绝 / plugin {plugin} returned a response the host refuses"),
        )
        .plugin(plugin, reason.clone()),
        CallError::Host(e) => {
            tracing::error!(%plugin, error = %e, "host error calling plugin");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal_error",
                "服务器内部错误 / internal error",
            )
        }
    }
}

impl From<PlatformError> for ApiError {
    fn from(e: PlatformError) -> Self {
        let message = e.to_string();
        match e {
            PlatformError::TenantNotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "tenant_not_found", message)
            }
            PlatformError::NotInstalled { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "plugin_not_installed", message)
            }
            PlatformError::Suspended { plugin, reason, .. } => {
                ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "plugin_suspended", message)
                    .plugin(&plugin, reason)
            }
            PlatformError::Invalid(_) => {
                ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
            }
            PlatformError::Conflict(_) => ApiError::new(StatusCode::CONFLICT, "conflict", message),
            PlatformError::NotFound(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "resource_not_found", message)
            }
            PlatformError::Unauthenticated(_) => {
                let mut e = ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", message);
                e.www_authenticate = true;
                e
            }
            PlatformError::Forbidden(_) => {
                ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
            }
            PlatformError::Locked { until } => {
                ApiError::new(StatusCode::LOCKED, "account_locked", message)
                    .detail(serde_json::json!({ "locked_until": until }))
            }
            PlatformError::TooMany(_) => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "too_many_requests", message)
            }
            PlatformError::GrantsNeeded(diff) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "grants_required", message)
                    .detail(serde_json::to_value(&*diff).unwrap_or_default())
            }
            PlatformError::Component(c) => match &c {
                ComponentError::TooLarge { .. } => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "component_too_large",
                    message,
                ),
                ComponentError::Invalid(_) => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_component",
                    message,
                ),
                ComponentError::ForbiddenImport(_) => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "forbidden_import",
                    message,
                ),
                ComponentError::Metadata(_) => ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid_metadata",
                    message,
                ),
                ComponentError::Call(error) => call_error("(new component)", error),
            },
            PlatformError::HookFailed { .. } => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "install_hook_failed",
                message,
            ),
            PlatformError::Call { plugin, error } => call_error(&plugin, &error),
            PlatformError::Storage(e) => {
                tracing::error!(error = %e, "storage failure");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "storage_unavailable",
                    "存储暂不可用，请稍后重试 / storage unavailable, retry later",
                )
                .retry_after(5)
            }
            PlatformError::Host(e) => {
                tracing::error!(error = format!("{e:#}"), "host failure");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal_error",
                    "服务器内部错误 / internal error",
                )
            }
        }
    }
}
