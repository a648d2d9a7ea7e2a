//! The other host capabilities of the contract: identity, devices and messaging.
//!
//! Each needs a grant at install time: without it the host answers [`crate::Error::Denied`].
//! Identity fields come back masked (张*, 138****8000) unless the installation holds that
//! field's grant (`identity.phone`, …). A host that does not provide a capability answers
//! [`crate::Error::Unavailable`], never a made-up value.

use crate::__private::linli::plugin::{device as dev, identity as id, messaging as msg};
use crate::Error;

pub use dev::{CommandOutcome, DeviceInfo};
pub use id::{Caller, Field, FieldValue, Person, Profile, ResidentCount, ResidentFilter};
pub use msg::{Notification, Recipient, Urgency};

/// Identity: the caller and residents of the caller's place (fields masked unless granted).
pub mod identity {
    use super::*;

    /// The signed-in caller, or `None` for an anonymous request.
    pub fn current_caller() -> Result<Option<Caller>, Error> {
        Ok(id::current_caller()?)
    }

    /// Fields of a resident of this tenant.
    pub fn profile(resident_id: &str, fields: &[Field]) -> Result<Profile, Error> {
        Ok(id::get_profile(resident_id, fields)?)
    }

    /// Whether the caller holds `role` here.
    pub fn has_role(role: &str) -> Result<bool, Error> {
        Ok(id::has_role(role)?)
    }

    /// How many residents match `filter`, and in how many households: an electorate or a
    /// turnout denominator without listing anyone.
    pub fn count_residents(filter: &ResidentFilter) -> Result<ResidentCount, Error> {
        Ok(id::count_residents(filter)?)
    }

    /// A page of resident ids matching `filter`, and the cursor for the next page.
    pub fn list_residents(
        filter: &ResidentFilter,
        cursor: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<String>, Option<String>), Error> {
        let page = id::list_residents(filter, cursor, limit)?;
        Ok((page.ids, page.next_cursor))
    }
}

/// Devices of the granted kinds at this tenant.
pub mod device {
    use super::*;

    pub fn list(kind: Option<&str>) -> Result<Vec<DeviceInfo>, Error> {
        Ok(dev::list_devices(kind)?)
    }

    /// Send a command and wait up to `timeout_ms` for its acknowledgement.
    pub fn command(
        device_id: &str,
        command: &str,
        payload: &[u8],
        timeout_ms: u32,
    ) -> Result<CommandOutcome, Error> {
        Ok(dev::send_command(device_id, command, payload, timeout_ms)?)
    }
}

/// Notifications and events between plugins.
pub mod messaging {
    use super::*;

    /// Notify recipients; `idempotency_key` makes a retry a no-op. The notification is written
    /// with this call's next data change, in its transaction (or when the call returns): call
    /// this *before* the write it belongs to, so both commit or neither does.
    pub fn notify(
        to: &[Recipient],
        message: &Notification,
        idempotency_key: &str,
    ) -> Result<(), Error> {
        Ok(msg::notify(to, message, idempotency_key)?)
    }

    /// Publish an event on a topic at this tenant, to the plugins here that subscribe to it;
    /// written like [`notify`]: with the call's next data change.
    pub fn publish(topic: &str, payload: &[u8], idempotency_key: &str) -> Result<(), Error> {
        Ok(msg::publish(topic, payload, idempotency_key)?)
    }
}
