//! People, roles and who is calling: the policy half of identity (the stored half is
//! `storage::people` and `storage::sessions`).
//!
//! Roles attach to a tenant node and hold in its whole subtree. The three admin roles are
//! separated (三员分立): nobody holds two of them. The bootstrap admin token (and the local
//! CLI) act as [`Principal::Root`].

pub mod auth;
pub mod mask;

use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use crate::storage::people::{Person, PersonKind, RoleAt};

/// Roles a person can hold at a tenant node.
pub const ROLES: &[&str] = &[
    "grid-worker",
    "community-staff",
    "system-admin",
    "security-admin",
    "audit-admin",
    "vendor",
];

/// The three admins (系统管理员、安全管理员、审计管理员): one person holds at most one of them.
pub const THREE_ADMINS: &[&str] = &["system-admin", "security-admin", "audit-admin"];

/// What an admin-API call needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// Create tenants below the node.
    ManageTenants,
    /// Install, upgrade, suspend, resume and uninstall plugins.
    ManagePlugins,
    /// Grant and revoke plugin capabilities.
    ManageGrants,
    /// Create, import and edit residents and staff.
    ManagePeople,
    /// See (masked) lists of people.
    ReadPeople,
    /// Assign and remove roles; unlock accounts.
    ManageRoles,
    /// Read and verify the audit log.
    ReadAudit,
    /// Residents' rights: export everything held about a person, erase on request.
    ResidentRights,
    /// Act for a resident in assisted mode (帮办代办).
    Assist,
    /// Register, edit and remove devices; rotate their secrets.
    ManageDevices,
    /// See the device registry.
    ReadDevices,
}

/// Whether `role` carries `permission`.
pub fn role_allows(role: &str, permission: Permission) -> bool {
    use Permission::*;
    match role {
        "system-admin" => matches!(
            permission,
            ManageTenants
                | ManagePlugins
                | ManageGrants
                | ManagePeople
                | ReadPeople
                | ManageDevices
                | ReadDevices
        ),
        "security-admin" => matches!(
            permission,
            ManageGrants | ManageRoles | ResidentRights | ReadPeople
        ),
        "audit-admin" => matches!(permission, ReadAudit),
        "community-staff" => matches!(
            permission,
            ManagePeople | ReadPeople | Assist | ManageDevices | ReadDevices
        ),
        "grid-worker" => matches!(permission, ReadPeople | Assist | ReadDevices),
        _ => false,
    }
}

/// Whether holding `role` requires the second factor (TOTP) at sign-in.
pub fn needs_totp(roles: &[RoleAt]) -> bool {
    roles
        .iter()
        .any(|r| THREE_ADMINS.contains(&r.role.as_str()))
}

/// A signed-in session, resolved from its token.
#[derive(Debug, Clone)]
pub struct Session {
    /// sha256 of the token.
    pub token_hash: String,
    /// Who signed in.
    pub person: Person,
    pub roles: Vec<RoleAt>,
    /// Assisted mode: the resident this staff member acts for, and why.
    pub acting_for: Option<(Person, String)>,
    pub expires_at: i64,
    /// Whether the second factor was passed (an admin role needs it).
    pub mfa: bool,
    /// When it was signed in (rotation never extends it past `auth.session_max_secs`).
    pub created_at: i64,
}

/// Who is making an API call.
#[derive(Debug, Clone)]
pub enum Principal {
    /// The bootstrap admin token or the local CLI: every permission, audited as `admin`.
    Root,
    /// The host itself (demo seed, automatic suspension): audited as `system`.
    System,
    Person(Arc<Session>),
}

impl Principal {
    /// The audit actor and assistant of this principal's actions.
    pub fn actor(&self) -> (&str, Option<&str>) {
        match self {
            Principal::Root => ("admin", None),
            Principal::System => ("system", None),
            Principal::Person(s) => match &s.acting_for {
                Some((resident, _)) => (resident.id.as_str(), Some(s.person.id.as_str())),
                None => (s.person.id.as_str(), None),
            },
        }
    }

    /// Whether this principal holds `permission` at the tenant whose root-first path is
    /// `path`. Assisted sessions act as the resident and hold no admin permission.
    pub fn allows(&self, permission: Permission, path: &[String]) -> bool {
        match self {
            Principal::Root | Principal::System => true,
            Principal::Person(s) => {
                s.acting_for.is_none()
                    && s.roles
                        .iter()
                        .any(|r| path.contains(&r.tenant) && role_allows(&r.role, permission))
            }
        }
    }

    /// Tenants at which this principal holds `permission` (roots of subtrees); `None` for
    /// Root (everywhere).
    pub fn scopes(&self, permission: Permission) -> Option<Vec<String>> {
        match self {
            Principal::Root | Principal::System => None,
            Principal::Person(s) if s.acting_for.is_some() => Some(Vec::new()),
            Principal::Person(s) => Some(
                s.roles
                    .iter()
                    .filter(|r| role_allows(&r.role, permission))
                    .map(|r| r.tenant.clone())
                    .collect(),
            ),
        }
    }
}

/// The caller of a plugin request as the identity capability shows it.
#[derive(Debug, Clone)]
pub struct Caller {
    /// The person the request is for (in assisted mode: the resident).
    pub person: Person,
    /// Root-first path of the tenant the request is for.
    pub tenant_path: Vec<String>,
    /// Roles held at that tenant (inherited from ancestors included), plus `resident` for
    /// residents.
    pub roles: Vec<String>,
    /// In assisted mode: the staff member acting, and the stated reason.
    pub assistant: Option<(Person, String)>,
}

impl Caller {
    /// Build the caller of a request to the tenant at `path` from a session, if the session
    /// may use that tenant: residents their own place and the places above it, staff also
    /// the subtrees where they hold a role.
    pub fn for_request(session: &Session, path: &[String], home_path: &[String]) -> Option<Caller> {
        let target = path.last()?;
        let (person, assistant) = match &session.acting_for {
            Some((resident, reason)) => (
                resident.clone(),
                Some((session.person.clone(), reason.clone())),
            ),
            None => (session.person.clone(), None),
        };
        let in_home_path = home_path.contains(target);
        let via_role =
            session.acting_for.is_none() && session.roles.iter().any(|r| path.contains(&r.tenant));
        if !(in_home_path || via_role) {
            return None;
        }
        let mut roles: Vec<String> = if session.acting_for.is_some() {
            Vec::new()
        } else {
            session
                .roles
                .iter()
                .filter(|r| path.contains(&r.tenant))
                .map(|r| r.role.clone())
                .collect()
        };
        if person.kind == PersonKind::Resident {
            roles.push("resident".into());
        }
        roles.sort();
        roles.dedup();
        Some(Caller {
            person,
            tenant_path: path.to_vec(),
            roles,
            assistant,
        })
    }
}

/// A person as the signed-in user sees themself.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Me {
    pub person: Person,
    /// The person's place from the county down, with its names (for "东村" instead of an id).
    pub place: Vec<PlaceName>,
    pub roles: Vec<RoleAt>,
    /// Assisted mode: the resident acted for (masked) and the reason.
    pub acting_for: Option<ActingFor>,
    pub expires_at: i64,
}

/// A place by id and name.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PlaceName {
    pub id: String,
    pub name_zh: String,
    pub name_en: String,
}

/// The resident an assisted session acts for.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ActingFor {
    pub id: String,
    /// Masked name.
    pub name: String,
    /// Where the resident lives: the place whose features the shell shows.
    pub tenant: String,
    pub reason: String,
}
