//! People: residents and staff, the roster import (一次采集、多方利用), roles, and residents'
//! rights (export everything held about a person; erase on request).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use utoipa::ToSchema;

use super::{Platform, PlatformError};
use crate::identity::auth;
use crate::identity::{Permission, Principal, ROLES, THREE_ADMINS, mask};
use crate::storage::people::{self, Filter, Person, PersonInput, PersonKind, Upserted};
use crate::storage::sessions::{self as store, Secret};
use crate::storage::{StorageError, audit, inbox, kv, now_ms, tenants};

/// Refused registrations (a phone or ID number held by someone else) one person may cause an
/// hour before being told to stop.
pub const REFUSALS_PER_HOUR: i64 = 20;

/// Most data rows one import may hold.
pub const IMPORT_MAX_ROWS: usize = 50_000;

/// A row the import refused, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, serde::Deserialize, ToSchema)]
pub struct RowError {
    /// The row as a spreadsheet numbers it (the header is row 1).
    pub row: usize,
    /// The column at fault (`name`, `phone`, …), or `row`.
    pub field: String,
    pub message: String,
}

/// What an import did; with any error, nothing was imported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct ImportReport {
    pub imported: bool,
    pub rows: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub errors: Vec<RowError>,
}

/// A person as list views show them: every personal field masked.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct PersonView {
    pub id: String,
    pub kind: PersonKind,
    pub tenant: String,
    pub name: String,
    pub phone: Option<String>,
    pub id_number: Option<String>,
    pub birth_date: Option<String>,
    pub household: Option<String>,
    pub address: Option<String>,
    /// Only the tags of no special category.
    pub tags: Vec<String>,
}

impl PersonView {
    pub fn masked(p: &Person) -> PersonView {
        PersonView {
            id: p.id.clone(),
            kind: p.kind,
            tenant: p.tenant.clone(),
            name: mask::name(&p.name),
            phone: p.phone.as_deref().map(mask::phone),
            id_number: p.id_number.as_deref().map(mask::id_number),
            birth_date: p.birth_date.as_deref().map(mask::birth_date),
            household: p.household.as_deref().map(mask::household),
            address: p.address.as_deref().map(mask::address),
            tags: mask::tags(&p.tags),
        }
    }
}

/// The result of giving a role. With an admin role to someone without an authenticator:
/// the activation code (shown once) that the county root hands the holder in person; with
/// it the holder sets their own password and enrols their own authenticator at their first
/// sign-in, so nobody else ever sees their secret.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RoleGiven {
    pub changed: bool,
    pub activation_code: Option<String>,
    /// When the activation code stops working (ms since the epoch).
    pub activation_expires_at: Option<i64>,
}

fn too_many_refusals() -> PlatformError {
    PlatformError::TooMany(format!(
        "登记被拒次数过多，请一小时后再试 / more than {REFUSALS_PER_HOUR} refused registrations this hour; try again later"
    ))
}

/// The county root: the bootstrap admin token, the CLI on the server, or the host itself.
fn is_root(principal: &Principal) -> bool {
    matches!(principal, Principal::Root | Principal::System)
}

/// A file to import.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFormat {
    Csv,
    Xlsx,
}

impl Platform {
    /// Create one person at `tenant`: 409 with the one [`people::TAKEN`] answer if the ID
    /// number or phone is anyone's already (an existing record is never touched, and the
    /// answer does not say whose or where). The person, their password and the audit record
    /// commit together; a refused call writes nothing.
    pub async fn create_person(
        &self,
        principal: &Principal,
        tenant: &str,
        kind: PersonKind,
        input: &PersonInput,
        password: Option<&str>,
    ) -> Result<Person, PlatformError> {
        let perm = if kind == PersonKind::Resident {
            Permission::ManagePeople
        } else {
            Permission::ManageRoles
        };
        self.authorize(principal, perm, tenant).await?;
        self.not_over_refusals(principal).await?;
        people::validate(input)
            .map_err(|(field, msg)| PlatformError::Invalid(format!("{field}: {msg}")))?;
        let hash = match password {
            Some(pw) => Some(self.hash_new_password(pw).await?),
            None => None,
        };
        let now = now_ms();
        let (actor, _) = principal.actor();
        let id = crate::storage::write_tx!(&self.db, |tx| {
            let id = people::create_in(tx, kind, tenant, input, now, actor).await?;
            if let Some(hash) = &hash {
                store::set_secret_in(tx, &id, Secret::Password, Some(hash), now).await?;
            }
            self.audit_as_in(
                tx,
                principal,
                audit::Event {
                    tenant: Some(tenant),
                    action: "person.create",
                    subject: Some(&id),
                    outcome: "ok",
                    detail: serde_json::json!({ "kind": kind, "password": password.is_some() }),
                    ..audit::Event::default()
                },
                now,
            )
            .await?;
            Ok(id)
        });
        let id = match id {
            Ok(id) => id,
            Err(StorageError::Conflict(m)) => {
                tracing::info!(%tenant, "person not created: phone or ID number taken");
                self.refused_registration(principal, tenant, "person.create", input, 0)
                    .await?;
                return Err(PlatformError::Conflict(m));
            }
            Err(e) => return Err(e.into()),
        };
        people::get(&self.db, &id)
            .await?
            .ok_or_else(|| PlatformError::NotFound(id))
    }

    /// A registration refused because the phone or ID number is someone's already: one audit
    /// record, whose subject is that someone (their village's admins and they themselves see
    /// it), with the refused row; nothing else is written. A caller refused more than
    /// [`REFUSALS_PER_HOUR`] times an hour is told to stop (429): registering people does not
    /// take many refusals, testing whether numbers are registered does.
    async fn refused_registration(
        &self,
        principal: &Principal,
        tenant: &str,
        action: &str,
        input: &PersonInput,
        row: usize,
    ) -> Result<(), PlatformError> {
        let holder = people::holder_of(&self.db, input).await?;
        self.audit_as(
            principal,
            audit::Event {
                tenant: Some(tenant),
                action,
                subject: holder.as_deref(),
                outcome: "refused",
                detail: serde_json::json!({ "reason": "taken", "row": row }),
                ..audit::Event::default()
            },
        )
        .await?;
        let rule = crate::storage::throttle::Rule {
            limit: REFUSALS_PER_HOUR,
            window_ms: 3_600_000,
            lock_ms: 0,
            min_gap_ms: 0,
        };
        if !is_root(principal)
            && let crate::storage::throttle::Hit::Blocked { .. } = crate::storage::throttle::hit(
                &self.db,
                &self.refusals_key(principal),
                rule,
                now_ms(),
            )
            .await?
        {
            return Err(too_many_refusals());
        }
        Ok(())
    }

    /// The rate-limit key of a person's refused registrations.
    fn refusals_key(&self, principal: &Principal) -> String {
        crate::storage::throttle::key(&self.db, "rf", &[principal.actor().0])
    }

    /// Refuse at once (nothing checked, nothing recorded) someone over
    /// [`REFUSALS_PER_HOUR`].
    async fn not_over_refusals(&self, principal: &Principal) -> Result<(), PlatformError> {
        // The county root's registrations are its own scripts': not limited.
        if is_root(principal) {
            return Ok(());
        }
        let key = self.refusals_key(principal);
        if crate::storage::throttle::blocked(&self.db, &key, now_ms())
            .await?
            .is_some()
        {
            return Err(too_many_refusals());
        }
        Ok(())
    }

    /// People whose home is in `tenant`'s subtree, masked, a page at a time.
    pub async fn people(
        &self,
        principal: &Principal,
        tenant: &str,
        filter: &Filter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<PersonView>, Option<String>), PlatformError> {
        let path = self
            .authorize(principal, Permission::ReadPeople, tenant)
            .await?;
        // Filtering by a special category (disabled, low income, …) would tell it through a
        // masked list: only those who may see people's full records there may.
        let sensitive: Vec<&str> = filter
            .tags
            .iter()
            .map(String::as_str)
            .filter(|t| people::SENSITIVE_TAGS.contains(t))
            .collect();
        let may_see_full = principal.allows(Permission::ManagePeople, &path)
            || principal.allows(Permission::ResidentRights, &path);
        if !sensitive.is_empty() && !may_see_full {
            return Err(PlatformError::Forbidden(format!(
                "无权按敏感标签筛选 / not allowed to filter by sensitive tags ({})",
                sensitive.join(", ")
            )));
        }
        let subtree = tenants::subtree(&self.db, tenant).await?;
        let limit = limit.clamp(1, 500);
        let page = people::list(&self.db, &subtree, filter, after, limit).await?;
        let next = (page.len() == limit as usize).then(|| page.last().map(|p| p.id.clone()));
        Ok((
            page.iter().map(PersonView::masked).collect(),
            next.flatten(),
        ))
    }

    /// One person in full (people managers and security admins; audited), or masked (others
    /// who may read people there).
    pub async fn person(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<serde_json::Value, PlatformError> {
        let person = self
            .person_in_reach(principal, id, Permission::ReadPeople)
            .await?;
        let path = tenants::path(&self.db, &person.tenant).await?;
        let full = principal.allows(Permission::ManagePeople, &path)
            || principal.allows(Permission::ResidentRights, &path);
        if !full {
            return Ok(serde_json::to_value(PersonView::masked(&person)).expect("serialises"));
        }
        self.audit_as(
            principal,
            audit::Event {
                tenant: Some(&person.tenant),
                action: "person.view",
                subject: Some(&person.id),
                outcome: "ok",
                detail: serde_json::json!({ "fields": "all" }),
                ..audit::Event::default()
            },
        )
        .await?;
        Ok(serde_json::to_value(&person).expect("serialises"))
    }

    /// The person `id`, if `principal` holds `permission` at their home tenant *and* at every
    /// tenant where they hold a role: acting on an account (its password, lock, roles,
    /// erasure) acts on everything its roles reach, so a village's admin cannot take over
    /// someone who works for the township. Out of reach is not found.
    async fn person_fully_in_reach(
        &self,
        principal: &Principal,
        id: &str,
        permission: Permission,
    ) -> Result<Person, PlatformError> {
        let person = self.person_in_reach(principal, id, permission).await?;
        for role in people::roles_of(&self.db, &person.id).await? {
            let path = tenants::path(&self.db, &role.tenant).await?;
            if !principal.allows(permission, &path) {
                return Err(PlatformError::NotFound(format!(
                    "人员不存在 / no such person: {id}"
                )));
            }
        }
        Ok(person)
    }

    /// The person `id`, if `principal` holds `permission` at their home tenant. Someone out
    /// of reach is reported as not found, so ids of other places cannot be probed.
    async fn person_in_reach(
        &self,
        principal: &Principal,
        id: &str,
        permission: Permission,
    ) -> Result<Person, PlatformError> {
        let not_found = || PlatformError::NotFound(format!("人员不存在 / no such person: {id}"));
        let person = people::get(&self.db, id).await?.ok_or_else(not_found)?;
        let path = tenants::path(&self.db, &person.tenant).await?;
        if !principal.allows(permission, &path) {
            return Err(not_found());
        }
        Ok(person)
    }

    /// Import residents into `tenant`'s subtree from a CSV or XLSX roster. Every row is
    /// checked first; with any error nothing is imported and the report lists the errors by
    /// row. People already known (same ID number, else same phone) are updated.
    pub async fn import_people(
        &self,
        principal: &Principal,
        tenant: &str,
        format: ImportFormat,
        bytes: &[u8],
    ) -> Result<ImportReport, PlatformError> {
        self.authorize(principal, Permission::ManagePeople, tenant)
            .await?;
        self.not_over_refusals(principal).await?;
        let table = super::roster::read(format, bytes)
            .await
            .map_err(PlatformError::Invalid)?;
        let subtree = tenants::subtree(&self.db, tenant).await?;
        let (rows, errors) = super::roster::rows(&table, tenant, &subtree);
        // Re-importing a sheet without some columns leaves those fields as they are.
        let absent = super::roster::absent_fields(&table);
        let mut report = ImportReport {
            rows: table.rows.len(),
            errors,
            ..ImportReport::default()
        };
        if report.rows > IMPORT_MAX_ROWS {
            return Err(PlatformError::Invalid(format!(
                "一次最多导入 {IMPORT_MAX_ROWS} 行 / at most {IMPORT_MAX_ROWS} rows per import"
            )));
        }
        if !report.errors.is_empty() {
            return Ok(report);
        }
        let now = now_ms();
        let (actor, _) = principal.actor();
        let outcome = crate::storage::write_tx!(&self.db, |tx| {
            let mut counts = (0usize, 0usize, 0usize);
            let mut errors = Vec::new();
            let mut changed = Vec::new();
            for (line, home, input) in &rows {
                // Only people whose home is in the importing tenant's subtree are matched
                // and updated; anyone else's phone or ID number refuses the row.
                match people::upsert_in(
                    tx,
                    PersonKind::Resident,
                    home,
                    input,
                    now,
                    &people::Upsert {
                        reach: &subtree,
                        keep: &absent,
                        created_by: actor,
                    },
                )
                .await
                {
                    Ok((id, Upserted::Created)) => {
                        counts.0 += 1;
                        changed.push((
                            id,
                            home,
                            "person.create",
                            serde_json::json!({ "via": "import" }),
                        ));
                    }
                    Ok((id, Upserted::Updated { fields, moved_from })) => {
                        counts.1 += 1;
                        changed.push((
                            id,
                            home,
                            "person.update",
                            serde_json::json!({ "via": "import", "fields": fields, "moved_from": moved_from }),
                        ));
                    }
                    Ok((_, Upserted::Unchanged)) => counts.2 += 1,
                    Err(StorageError::Conflict(m)) => {
                        // The first refusal ends the import: one answer per attempt, so a
                        // roster cannot test thousands of numbers at once.
                        errors.push(RowError {
                            row: *line,
                            field: "row".into(),
                            message: m,
                        });
                        break;
                    }
                    Err(e) => return Err(e),
                }
            }
            // Each change audited with its subject — appended last, so the audit chain's
            // lock is held only for the appends, not for the whole import.
            if errors.is_empty() {
                for (id, home, action, detail) in changed {
                    self.audit_as_in(
                        tx,
                        principal,
                        audit::Event {
                            tenant: Some(home),
                            action,
                            subject: Some(&id),
                            outcome: "ok",
                            detail,
                            ..audit::Event::default()
                        },
                        now,
                    )
                    .await?;
                }
            }
            if !errors.is_empty() {
                // Roll back: nothing partial.
                return Err(StorageError::Invalid(
                    serde_json::to_string(&errors).expect("serialises"),
                ));
            }
            self.audit_as_in(
                tx,
                principal,
                audit::Event {
                    tenant: Some(tenant),
                    action: "person.import",
                    outcome: "ok",
                    detail: serde_json::json!({
                        "rows": rows.len(), "created": counts.0, "updated": counts.1, "unchanged": counts.2,
                    }),
                    ..audit::Event::default()
                },
                now,
            )
            .await?;
            Ok(counts)
        });
        match outcome {
            Ok((created, updated, unchanged)) => {
                report.imported = true;
                report.created = created;
                report.updated = updated;
                report.unchanged = unchanged;
                tracing::info!(%tenant, created, updated, unchanged, "people imported");
                Ok(report)
            }
            Err(StorageError::Invalid(json)) if json.starts_with('[') => {
                report.errors = serde_json::from_str(&json).unwrap_or_default();
                tracing::info!(%tenant, errors = report.errors.len(), "people import refused: bad rows");
                // Which row was refused, and whose number it held: recorded, though nothing
                // changed, so the holder's village (and the holder) can see the attempt.
                if let Some(refused) = report.errors.first()
                    && let Some((_, _, input)) =
                        rows.iter().find(|(line, _, _)| *line == refused.row)
                {
                    self.refused_registration(
                        principal,
                        tenant,
                        "person.import",
                        input,
                        refused.row,
                    )
                    .await?;
                }
                Ok(report)
            }
            Err(e) => Err(e.into()),
        }
    }

    // ---- roles ---------------------------------------------------------------------------

    /// Give `person` `role` at `tenant` (security admins; never to oneself). The three admin
    /// roles are given only by the county root (the bootstrap token or the CLI on the
    /// server), and nobody but the root changes the roles of a person who holds one (see
    /// `docs/security.md`). An admin role ends the person's sessions (the next needs the
    /// second factor) and, without an authenticator yet, makes an activation code for them.
    pub async fn assign_role(
        &self,
        principal: &Principal,
        person: &str,
        tenant: &str,
        role: &str,
    ) -> Result<RoleGiven, PlatformError> {
        self.authorize(principal, Permission::ManageRoles, tenant)
            .await?;
        if !ROLES.contains(&role) {
            return Err(PlatformError::Invalid(format!(
                "未知角色 / unknown role {role:?}; roles: {}",
                ROLES.join(", ")
            )));
        }
        if principal.actor().0 == person {
            return Err(PlatformError::Forbidden(
                "不能给自己授予角色 / you cannot give yourself a role".into(),
            ));
        }
        let admin_role = THREE_ADMINS.contains(&role);
        if admin_role && !is_root(principal) {
            return Err(PlatformError::Forbidden(
                "三员角色只能由县级根管理员授予（管理令牌或服务器上的 linli 命令） / the three admin roles are given only by the county root (the admin token, or the linli CLI on the server)".into(),
            ));
        }
        let target = self
            .person_fully_in_reach(principal, person, Permission::ManageRoles)
            .await?;
        if target.status != "active" {
            return Err(PlatformError::NotFound(format!(
                "人员不存在 / no such person: {person}"
            )));
        }
        self.guard_admin_account(principal, &target.id).await?;
        // Two people bring a staff account into use: whoever registered it (and so chose its
        // first password) does not also give it roles — another security admin, or the
        // county root, does.
        if !is_root(principal)
            && target.kind == PersonKind::Staff
            && people::created_by(&self.db, &target.id).await?.as_deref()
                == Some(principal.actor().0)
        {
            return Err(PlatformError::Forbidden(
                "您登记的账号须由另一位安全管理员或县级根管理员授予角色 / an account you registered gets its roles from another security admin or the county root".into(),
            ));
        }
        if target.kind == PersonKind::Resident && role != "vendor" {
            // Residents become staff explicitly; keeps resident rosters and staff apart.
            return Err(PlatformError::Invalid(
                "居民不能担任工作人员角色，请先登记为工作人员 / register the person as staff first"
                    .into(),
            ));
        }
        let conflicts: Vec<&str> = if admin_role {
            THREE_ADMINS
                .iter()
                .copied()
                .filter(|r| *r != role)
                .collect()
        } else {
            Vec::new()
        };
        let needs_activation = admin_role
            && store::credentials(&self.db, person)
                .await?
                .unwrap_or_default()
                .totp_secret
                .is_none();
        let activation = needs_activation.then(|| self.activation_code());
        let now = now_ms();
        let (actor, _) = principal.actor();
        // The role, the end of the person's sessions (a session without the second factor
        // must not carry an admin role), the activation code and the record, together.
        let changed = crate::storage::write_tx!(&self.db, |tx| {
            let changed =
                people::assign_role_in(tx, person, tenant, role, &conflicts, actor, now).await?;
            if admin_role {
                store::end_sessions_of_in(tx, person, None).await?;
            }
            if let Some((code, expires_at)) = &activation {
                let hash = auth::activation_hash(person, &code.replace('-', ""));
                store::set_activation_in(tx, person, &hash, *expires_at, now).await?;
            }
            self.audit_as_in(
                tx,
                principal,
                audit::Event {
                    tenant: Some(tenant),
                    action: "role.assign",
                    subject: Some(person),
                    outcome: "ok",
                    detail: serde_json::json!({ "role": role, "changed": changed, "activation": activation.is_some() }),
                    ..audit::Event::default()
                },
                now,
            )
            .await?;
            Ok(changed)
        })?;
        Ok(RoleGiven {
            changed,
            activation_expires_at: activation.as_ref().map(|(_, at)| *at),
            activation_code: activation.map(|(code, _)| code),
        })
    }

    /// A new activation code and when it expires (`auth.activation_ttl_hours` from now).
    fn activation_code(&self) -> (String, i64) {
        let expires_at = now_ms() + i64::from(self.config.auth.activation_ttl_hours) * 3_600_000;
        (auth::new_activation_code(), expires_at)
    }

    /// A new activation code for an admin who has lost their authenticator (or never used
    /// the first code): the county root only. The old authenticator stops working.
    pub async fn reactivate(
        &self,
        principal: &Principal,
        person: &str,
    ) -> Result<RoleGiven, PlatformError> {
        if !is_root(principal) {
            return Err(PlatformError::Forbidden(
                "只有县级根管理员能重新激活管理员 / only the county root re-activates an admin"
                    .into(),
            ));
        }
        let p = people::get(&self.db, person)
            .await?
            .filter(|p| p.status == "active")
            .ok_or_else(|| {
                PlatformError::NotFound(format!("人员不存在 / no such person: {person}"))
            })?;
        let (code, expires_at) = self.activation_code();
        let hash = auth::activation_hash(&p.id, &code.replace('-', ""));
        let now = now_ms();
        crate::storage::write_tx!(&self.db, |tx| {
            store::set_secret_in(tx, &p.id, Secret::Totp, None, now).await?;
            store::end_sessions_of_in(tx, &p.id, None).await?;
            store::set_activation_in(tx, &p.id, &hash, expires_at, now).await?;
            self.audit_as_in(
                tx,
                principal,
                audit::Event {
                    tenant: Some(&p.tenant),
                    action: "auth.reactivate",
                    subject: Some(&p.id),
                    outcome: "ok",
                    detail: serde_json::json!({ "expires_at": expires_at }),
                    ..audit::Event::default()
                },
                now,
            )
            .await?;
            Ok(())
        })?;
        Ok(RoleGiven {
            changed: true,
            activation_code: Some(code),
            activation_expires_at: Some(expires_at),
        })
    }

    pub async fn revoke_role(
        &self,
        principal: &Principal,
        person: &str,
        tenant: &str,
        role: &str,
    ) -> Result<bool, PlatformError> {
        self.authorize(principal, Permission::ManageRoles, tenant)
            .await?;
        if principal.actor().0 == person {
            return Err(PlatformError::Forbidden(
                "不能更改自己的角色 / you cannot change your own roles".into(),
            ));
        }
        self.person_fully_in_reach(principal, person, Permission::ManageRoles)
            .await?;
        self.guard_admin_account(principal, person).await?;
        let now = now_ms();
        let changed = crate::storage::write_tx!(&self.db, |tx| {
            let changed = people::revoke_role_in(tx, person, tenant, role).await?;
            self.audit_as_in(
                tx,
                principal,
                audit::Event {
                    tenant: Some(tenant),
                    action: "role.revoke",
                    subject: Some(person),
                    outcome: "ok",
                    detail: serde_json::json!({ "role": role, "changed": changed }),
                    ..audit::Event::default()
                },
                now,
            )
            .await?;
            Ok(changed)
        })?;
        Ok(changed)
    }

    /// Refuse anyone but the county root acting on the account of a person who holds one of
    /// the three admin roles: no admin resets another's password, unlocks, erases or changes
    /// the roles of another.
    async fn guard_admin_account(
        &self,
        principal: &Principal,
        person: &str,
    ) -> Result<(), PlatformError> {
        if is_root(principal) {
            return Ok(());
        }
        let roles = people::roles_of(&self.db, person).await?;
        if roles
            .iter()
            .any(|r| THREE_ADMINS.contains(&r.role.as_str()))
        {
            return Err(PlatformError::Forbidden(
                "三员分立：管理员账号只能由县级根管理员管理 / separation of the three admins: an admin's account is managed only by the county root".into(),
            ));
        }
        Ok(())
    }

    /// Lift a sign-in lockout: the person's second factor, and their phone's password
    /// limits from every client.
    pub async fn unlock(&self, principal: &Principal, person: &str) -> Result<(), PlatformError> {
        let p = self
            .person_fully_in_reach(principal, person, Permission::ManageRoles)
            .await?;
        self.guard_admin_account(principal, &p.id).await?;
        store::unlock(&self.db, &p.id).await?;
        if let Some(phone) = &p.phone {
            use crate::storage::throttle;
            for kind in ["p", "sp"] {
                throttle::clear(&self.db, &throttle::key(&self.db, kind, &[phone])).await?;
            }
            throttle::clear_prefix(&self.db, &throttle::key(&self.db, "pc", &[phone])).await?;
        }
        self.audit_as(
            principal,
            audit::Event {
                tenant: Some(&p.tenant),
                action: "auth.unlock",
                subject: Some(&p.id),
                outcome: "ok",
                detail: serde_json::json!({}),
                ..audit::Event::default()
            },
        )
        .await
    }

    /// Set a person's password (people managers for residents, security admins for staff;
    /// an admin's only by the county root). Every session of the person — and every
    /// assisted session acting for them — ends.
    pub async fn set_password(
        &self,
        principal: &Principal,
        person: &str,
        password: &str,
    ) -> Result<(), PlatformError> {
        let p = people::get(&self.db, person).await?;
        let perm = match p.as_ref().map(|p| p.kind) {
            Some(PersonKind::Resident) => Permission::ManagePeople,
            _ => Permission::ManageRoles,
        };
        let p = self.person_fully_in_reach(principal, person, perm).await?;
        self.guard_admin_account(principal, &p.id).await?;
        let hash = self.hash_new_password(password).await?;
        let now = now_ms();
        // The new password, the end of every session and the record of it, together.
        crate::storage::write_tx!(&self.db, |tx| {
            store::set_secret_in(tx, &p.id, Secret::Password, Some(&hash), now).await?;
            let ended = store::end_sessions_of_in(tx, &p.id, None).await?;
            self.audit_as_in(
                tx,
                principal,
                audit::Event {
                    tenant: Some(&p.tenant),
                    action: "auth.password-set",
                    subject: Some(&p.id),
                    outcome: "ok",
                    detail: serde_json::json!({ "sessions_ended": ended }),
                    ..audit::Event::default()
                },
                now,
            )
            .await?;
            Ok(())
        })?;
        Ok(())
    }

    /// Enrol a TOTP secret for a person directly; returns the `otpauth://` URL. Only the
    /// host itself (the demo seed, which uses the published demo secret) and the county root
    /// may; an admin enrols their own through an activation code (see [`Self::assign_role`]).
    pub async fn enrol_totp(
        &self,
        principal: &Principal,
        person: &str,
        secret: Option<&str>,
    ) -> Result<String, PlatformError> {
        if !is_root(principal) {
            return Err(PlatformError::Forbidden(
                "动态口令由本人登记 / an authenticator is enrolled by its holder".into(),
            ));
        }
        let p = self
            .person_in_reach(principal, person, Permission::ManageRoles)
            .await?;
        let secret = secret.map_or_else(auth::new_totp_secret, str::to_owned);
        let url = auth::totp_url(&secret, &p.id)?;
        store::set_secret(&self.db, &p.id, Secret::Totp, Some(&secret)).await?;
        self.audit_as(
            principal,
            audit::Event {
                tenant: Some(&p.tenant),
                action: "auth.totp-enrol",
                subject: Some(&p.id),
                outcome: "ok",
                detail: serde_json::json!({}),
                ..audit::Event::default()
            },
        )
        .await?;
        Ok(url)
    }

    // ---- residents' rights ---------------------------------------------------------------

    /// Everything held about a person: the host's records and every plugin's data kept under
    /// `r/<person-id>/`. The person themself or a security admin over them.
    pub async fn export_person(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<serde_json::Value, PlatformError> {
        let person = self.rights_target(principal, id).await?;
        let roles = people::roles_of(&self.db, id).await?;
        let creds = store::credentials(&self.db, id).await?.unwrap_or_default();
        let messages = inbox::list(&self.db, id, 10_000).await?;
        let devices = crate::storage::devices::of_person(&self.db, id).await?;
        // What was done with their data; and, for the person themself only, what they did —
        // someone exporting another person's data does not get to read the audit log of
        // that person's own actions (that is the audit admin's).
        let own = matches!(principal, Principal::Person(s) if s.acting_for.is_none() && s.person.id == id);
        let mut queries = vec![audit::Query {
            subject: Some(id.to_owned()),
            limit: 10_000,
            ..audit::Query::default()
        }];
        if own {
            queries.push(audit::Query {
                person: Some(id.to_owned()),
                limit: 10_000,
                ..audit::Query::default()
            });
        }
        let mut records = Vec::new();
        for q in queries {
            records.extend(audit::query(&self.db, &q).await?);
        }
        records.sort_by_key(|r| r.seq);
        records.dedup_by_key(|r| r.seq);
        let mut plugin_data: HashMap<String, Vec<serde_json::Value>> = HashMap::new();
        for (tenant, plugin, key, value) in
            kv::across_scopes(&self.db, &kv::person_prefix(id)).await?
        {
            let value = match String::from_utf8(value) {
                Ok(text) => serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
                Err(e) => {
                    serde_json::json!({ "base64": base64::Engine::encode(&base64::engine::general_purpose::STANDARD, e.as_bytes()) })
                }
            };
            plugin_data
                .entry(format!("{tenant}/{plugin}"))
                .or_default()
                .push(serde_json::json!({ "key": key, "value": value }));
        }
        self.audit_as(
            principal,
            audit::Event {
                tenant: Some(&person.tenant),
                action: "person.export",
                subject: Some(id),
                outcome: "ok",
                detail: serde_json::json!({ "plugin_scopes": plugin_data.len(), "audit_records": records.len() }),
                ..audit::Event::default()
            },
        )
        .await?;
        Ok(serde_json::json!({
            "exported_at": now_ms(),
            "person": person,
            "roles": roles,
            "credentials": { "password": creds.password_hash.is_some(), "authenticator": creds.totp_secret.is_some() },
            "inbox": messages,
            "devices": devices,
            "audit": records,
            "plugin_data": plugin_data,
        }))
    }

    /// Erase a person on request: personal fields anonymised, sessions, roles, credentials
    /// and inbox removed, and every plugin's `r/<person-id>/` data deleted. The audit log is
    /// kept (it records the erasure).
    pub async fn erase_person(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<u64, PlatformError> {
        let person = self.rights_target(principal, id).await?;
        let deleted = kv::delete_across_scopes(&self.db, &kv::person_prefix(id)).await?;
        let unbound = crate::storage::devices::unbind_person(&self.db, id).await?;
        people::anonymise(&self.db, id).await?;
        self.audit_as(
            principal,
            audit::Event {
                tenant: Some(&person.tenant),
                action: "person.erase",
                subject: Some(id),
                outcome: "ok",
                detail: serde_json::json!({ "plugin_keys_deleted": deleted, "devices_unbound": unbound }),
                ..audit::Event::default()
            },
        )
        .await?;
        Ok(deleted)
    }

    async fn rights_target(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<Person, PlatformError> {
        if let Principal::Person(s) = principal
            && s.acting_for.is_none()
            && s.person.id == id
        {
            return Ok(s.person.clone());
        }
        let person = self
            .person_fully_in_reach(principal, id, Permission::ResidentRights)
            .await?;
        self.guard_admin_account(principal, &person.id).await?;
        Ok(person)
    }

    /// A person's own principal, for the self-service routes.
    pub fn principal_of(session: &Arc<crate::identity::Session>) -> Principal {
        Principal::Person(session.clone())
    }
}
