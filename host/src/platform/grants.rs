//! Capability grants: what an admin allows an installation to use. A plugin asks (required
//! and optional capabilities, each with a purpose); installing needs every required one
//! granted; an upgrade keeps what was granted and still asked for, and shows what changed.

use std::collections::BTreeSet;

use serde::Serialize;
use utoipa::ToSchema;

use super::{Platform, PlatformError};
use crate::identity::{Permission, Principal};
use crate::runtime::{CapabilityRequest, PluginMetadata, valid_capability};
use crate::storage::StorageError;
use crate::storage::audit;
use crate::storage::installs::{self, ListColumn, Status};

/// What an admin grants with an install or upgrade, on top of what the installation already
/// holds and the new version still asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GrantChoice {
    /// Every required capability.
    pub required: bool,
    /// Every optional capability.
    pub optional: bool,
    /// These capabilities by name.
    pub names: Vec<String>,
    /// Skip the `names` this plugin does not ask for instead of refusing the install (the
    /// demo seeding grants one list to plugins that ask for different things).
    pub names_if_asked: bool,
}

impl GrantChoice {
    /// Grant everything the plugin asks for.
    pub fn all() -> GrantChoice {
        GrantChoice {
            required: true,
            optional: true,
            ..GrantChoice::default()
        }
    }

    /// From the API's and CLI's words: `required`, `all`, or capability names.
    pub fn parse<S: AsRef<str>>(words: &[S]) -> Result<GrantChoice, String> {
        let mut choice = GrantChoice::default();
        for w in words {
            for w in w
                .as_ref()
                .split(',')
                .map(str::trim)
                .filter(|w| !w.is_empty())
            {
                match w {
                    "required" => choice.required = true,
                    "all" => {
                        choice.required = true;
                        choice.optional = true;
                    }
                    name if valid_capability(name) => choice.names.push(name.to_owned()),
                    other => {
                        return Err(format!(
                            "未知的能力 / unknown capability {other:?} (use required, all, or names such as data, identity.phone)"
                        ));
                    }
                }
            }
        }
        Ok(choice)
    }
}

/// How an install changes what a plugin asks for and holds: the consent screen.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct GrantDiff {
    /// What the installation holds after this install.
    pub granted: Vec<String>,
    /// Granted by this install, not held before.
    pub newly_granted: Vec<String>,
    /// Asked for by this version but not by the one it replaces.
    pub added: Vec<CapabilityRequest>,
    /// Optional in the replaced version, required in this one.
    pub now_required: Vec<CapabilityRequest>,
    /// Asked for by the replaced version, not by this one (their grants lapse).
    pub removed: Vec<String>,
    /// Required capabilities left ungranted: the install is refused while any remain.
    pub missing_required: Vec<String>,
    /// Everything this version asks for, with its purposes.
    pub required: Vec<CapabilityRequest>,
    pub optional: Vec<CapabilityRequest>,
}

fn names(list: &[CapabilityRequest]) -> BTreeSet<String> {
    list.iter().map(|c| c.name.clone()).collect()
}

/// Work out the grants of an install of `new` over `previous` (holding `held`).
pub(super) fn resolve(
    new: &PluginMetadata,
    previous: Option<&PluginMetadata>,
    held: Option<&[String]>,
    choice: &GrantChoice,
) -> Result<GrantDiff, PlatformError> {
    let required = names(&new.required);
    let optional = names(&new.optional);
    let asked: BTreeSet<String> = required.union(&optional).cloned().collect();
    if let Some(n) = choice.names.iter().find(|n| !asked.contains(*n))
        && !choice.names_if_asked
    {
        return Err(PlatformError::Invalid(format!(
            "插件并未申请 {n} / the plugin does not ask for {n}"
        )));
    }
    let held: BTreeSet<String> = held.unwrap_or_default().iter().cloned().collect();
    let mut granted: BTreeSet<String> = held.intersection(&asked).cloned().collect();
    granted.extend(choice.names.iter().filter(|n| asked.contains(*n)).cloned());
    if choice.required {
        granted.extend(required.iter().cloned());
    }
    if choice.optional {
        granted.extend(optional.iter().cloned());
    }
    let before: BTreeSet<String> = previous
        .map(|p| {
            names(&p.required)
                .union(&names(&p.optional))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    Ok(GrantDiff {
        newly_granted: granted.difference(&held).cloned().collect(),
        added: match previous {
            None => Vec::new(),
            Some(_) => new
                .required
                .iter()
                .chain(&new.optional)
                .filter(|c| !before.contains(&c.name))
                .cloned()
                .collect(),
        },
        now_required: match previous {
            None => Vec::new(),
            Some(p) => {
                let was_optional = names(&p.optional);
                new.required
                    .iter()
                    .filter(|c| was_optional.contains(&c.name))
                    .cloned()
                    .collect()
            }
        },
        removed: before.difference(&asked).cloned().collect(),
        missing_required: required.difference(&granted).cloned().collect(),
        granted: granted.into_iter().collect(),
        required: new.required.clone(),
        optional: new.optional.clone(),
    })
}

impl Platform {
    /// Grant (`on`) or revoke one capability of an installation; it takes effect on the
    /// plugin's next call. Revoking a required capability also suspends the installation.
    pub async fn set_grant(
        &self,
        principal: &Principal,
        tenant: &str,
        plugin: &str,
        capability: &str,
        on: bool,
    ) -> Result<super::Installation, PlatformError> {
        self.authorize(principal, Permission::ManageGrants, tenant)
            .await?;
        let Some(row) = installs::get(&self.db, tenant, plugin).await? else {
            return Err(self.not_installed(tenant, plugin).await);
        };
        let inst = super::to_installation(&row)?;
        let meta = &inst.metadata;
        let required = meta.required.iter().any(|c| c.name == capability);
        if !required && !meta.optional.iter().any(|c| c.name == capability) {
            return Err(PlatformError::Invalid(format!(
                "插件并未申请 {capability} / {plugin} does not ask for {capability}"
            )));
        }
        let mut grants: BTreeSet<String> = row.grants.iter().cloned().collect();
        let changed = if on {
            grants.insert(capability.to_owned())
        } else {
            grants.remove(capability)
        };
        if changed {
            let grants: Vec<String> = grants.into_iter().collect();
            installs::set_list(&self.db, tenant, plugin, ListColumn::Grants, &grants).await?;
            self.forget(plugin);
            self.audit_as(
                principal,
                audit::Event {
                    plugin: Some(plugin),
                    tenant: Some(tenant),
                    action: if on { "plugin.grant" } else { "plugin.revoke" },
                    outcome: "ok",
                    detail: serde_json::json!({ "capability": capability, "granted": grants }),
                    ..audit::Event::default()
                },
            )
            .await?;
            if !on && required && row.status == Status::Active {
                let reason = format!(
                    "必需能力 {capability} 已被撤销 / the required capability {capability} was revoked"
                );
                self.set_status(principal, tenant, plugin, Status::Suspended, Some(&reason))
                    .await?;
            }
        }
        match installs::get(&self.db, tenant, plugin).await? {
            Some(row) => super::to_installation(&row),
            None => Err(StorageError::NotFound(format!("{tenant}/{plugin}")).into()),
        }
    }

    /// Restrict an installation above village level to some subtrees (empty: all of it).
    pub async fn set_serves(
        &self,
        principal: &Principal,
        tenant: &str,
        plugin: &str,
        serves: &[String],
    ) -> Result<super::Installation, PlatformError> {
        self.authorize(principal, Permission::ManagePlugins, tenant)
            .await?;
        for s in serves {
            let path = crate::storage::tenants::path(&self.db, s).await?;
            if path.len() < 2 || !path[..path.len() - 1].contains(&tenant.to_owned()) {
                return Err(PlatformError::Invalid(format!(
                    "{s} 不在 {tenant} 之下 / {s} is not below {tenant}"
                )));
            }
        }
        let mut serves = serves.to_vec();
        serves.sort();
        serves.dedup();
        match installs::set_list(&self.db, tenant, plugin, ListColumn::Serves, &serves).await {
            Err(StorageError::NotFound(_)) => return Err(self.not_installed(tenant, plugin).await),
            other => other?,
        }
        self.forget(plugin);
        self.audit_as(
            principal,
            audit::Event {
                plugin: Some(plugin),
                tenant: Some(tenant),
                action: "plugin.serves",
                outcome: "ok",
                detail: serde_json::json!({ "serves": serves }),
                ..audit::Event::default()
            },
        )
        .await?;
        self.installation(principal, tenant, plugin).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(name: &str) -> CapabilityRequest {
        CapabilityRequest {
            name: name.into(),
            purpose_zh: "用途".into(),
            purpose_en: "purpose".into(),
        }
    }

    fn meta(required: &[&str], optional: &[&str]) -> PluginMetadata {
        PluginMetadata {
            id: "x".into(),
            version: "1.0.0".into(),
            title_zh: "x".into(),
            title_en: "x".into(),
            description_zh: String::new(),
            description_en: String::new(),
            required: required.iter().map(|n| cap(n)).collect(),
            optional: optional.iter().map(|n| cap(n)).collect(),
            subscriptions: vec![],
            schedules: vec![],
        }
    }

    #[test]
    fn fresh_install_needs_required() {
        let m = meta(&["data"], &["identity.phone"]);
        let d = resolve(&m, None, None, &GrantChoice::default()).unwrap();
        assert_eq!(d.missing_required, vec!["data"]);
        let d = resolve(&m, None, None, &GrantChoice::parse(&["required"]).unwrap()).unwrap();
        assert!(d.missing_required.is_empty());
        assert_eq!(d.granted, vec!["data"]);
        let d = resolve(
            &m,
            None,
            None,
            &GrantChoice::parse(&["data,identity.phone"]).unwrap(),
        )
        .unwrap();
        assert_eq!(d.granted, vec!["data", "identity.phone"]);
        assert!(resolve(&m, None, None, &GrantChoice::parse(&["log"]).unwrap()).is_err());
        assert!(GrantChoice::parse(&["fs"]).is_err());
    }

    #[test]
    fn upgrade_keeps_and_shows_the_difference() {
        let v1 = meta(&["data"], &["identity.phone"]);
        let v2 = meta(&["data", "messaging.notify"], &["identity"]);
        let held = vec!["data".to_string(), "identity.phone".to_string()];
        let d = resolve(&v2, Some(&v1), Some(&held), &GrantChoice::default()).unwrap();
        assert_eq!(d.granted, vec!["data"], "identity.phone lapses");
        assert_eq!(d.missing_required, vec!["messaging.notify"]);
        assert_eq!(
            d.added.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(),
            vec!["messaging.notify", "identity"]
        );
        assert_eq!(d.removed, vec!["identity.phone"]);
        let d = resolve(
            &v2,
            Some(&v1),
            Some(&held),
            &GrantChoice::parse(&["messaging.notify"]).unwrap(),
        )
        .unwrap();
        assert!(d.missing_required.is_empty());
        assert_eq!(d.newly_granted, vec!["messaging.notify"]);
    }
}
