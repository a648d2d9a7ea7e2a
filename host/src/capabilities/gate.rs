//! The grant check shared by capabilities granted per resource (`device.<kind>`): an
//! installation holding none of a capability's grants gets `denied` before anything else.

use crate::runtime::HostState;
use crate::runtime::bindings::WitError;

impl HostState {
    /// `denied` without a grant named `capability` or starting with `capability.`.
    pub(super) fn gate(&self, capability: &str) -> Result<(), WitError> {
        let prefix = format!("{capability}.");
        if self.call.granted(capability) || self.call.grants.iter().any(|g| g.starts_with(&prefix))
        {
            Ok(())
        } else {
            Err(super::denied(capability))
        }
    }
}
