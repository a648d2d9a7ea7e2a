//! Host capabilities: each module implements one generated `Host` trait for the store data.
//!
//! Every capability takes its scope from the `Store` (`HostState::call.scope`), never from the
//! guest, and answers a WIT `error` for bad input rather than trapping.

pub mod data;
pub mod device;
mod gate;
mod identity;
pub mod log;
mod messaging;

use crate::runtime::HostState;
use crate::runtime::bindings::WitError;
use crate::runtime::bindings::linli::plugin::types;

impl types::Host for HostState {}

/// The answer every capability gives while the host only asks a component for its metadata.
fn metadata_only(capability: &str) -> WitError {
    WitError::Denied(format!(
        "{capability}: 读取元数据时不可调用宿主能力 / host capabilities cannot be called while the host reads plugin metadata"
    ))
}

/// The answer of every capability the installation was not granted (the deny stub).
fn denied(capability: &str) -> WitError {
    WitError::Denied(format!(
        "{capability}: 管理员未授予此能力 / the installation was not granted {capability}"
    ))
}
