//! `identity`, `device` and `messaging` are part of the 0.1 contract but not provided by this
//! host yet: every call answers `unavailable` naming the capability, never a made-up value.

use crate::runtime::HostState;
use crate::runtime::bindings::WitError;
use crate::runtime::bindings::linli::plugin::{device, identity, messaging};

fn unavailable(capability: &str) -> WitError {
    WitError::Unavailable(format!(
        "{capability}: 此宿主尚未提供该能力 / this host does not provide the {capability} capability yet"
    ))
}

impl identity::Host for HostState {
    async fn current_caller(&mut self) -> Result<Option<identity::Caller>, WitError> {
        Err(unavailable("identity"))
    }

    async fn get_profile(
        &mut self,
        _resident_id: String,
        _fields: Vec<identity::Field>,
    ) -> Result<identity::Profile, WitError> {
        Err(unavailable("identity"))
    }

    async fn list_residents(
        &mut self,
        _filter: identity::ResidentFilter,
        _cursor: Option<String>,
        _limit: u32,
    ) -> Result<identity::ResidentPage, WitError> {
        Err(unavailable("identity"))
    }

    async fn has_role(&mut self, _role: String) -> Result<bool, WitError> {
        Err(unavailable("identity"))
    }
}

impl device::Host for HostState {
    async fn list_devices(
        &mut self,
        _kind: Option<String>,
    ) -> Result<Vec<device::DeviceInfo>, WitError> {
        Err(unavailable("device"))
    }

    async fn send_command(
        &mut self,
        _device_id: String,
        _command: String,
        _payload: Vec<u8>,
        _timeout_ms: u32,
    ) -> Result<device::CommandOutcome, WitError> {
        Err(unavailable("device"))
    }
}

impl messaging::Host for HostState {
    async fn notify(
        &mut self,
        _to: Vec<messaging::Recipient>,
        _message: messaging::Notification,
        _idempotency_key: String,
    ) -> Result<(), WitError> {
        Err(unavailable("messaging"))
    }

    async fn publish(
        &mut self,
        _topic: String,
        _payload: Vec<u8>,
        _idempotency_key: String,
    ) -> Result<(), WitError> {
        Err(unavailable("messaging"))
    }
}
