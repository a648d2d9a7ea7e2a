//! The device registry as admins use it: register, edit, remove, rotate a device's secret,
//! and import a device list from CSV or XLSX (all rows or none; re-import updates).

use std::collections::HashMap;

use serde::Serialize;
use utoipa::ToSchema;

use super::people::{IMPORT_MAX_ROWS, RowError};
use super::roster::Table;
use super::{ImportFormat, Platform, PlatformError};
use crate::identity::{Permission, Principal};
use crate::storage::devices::{
    self, Device, DeviceInput, DeviceKind, DeviceStatus, Filter, Upserted,
};
use crate::storage::people::PersonKind;
use crate::storage::{StorageError, audit, now_ms, people, tenants};

/// A device just registered (or given a new secret): the secret is shown this once.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeviceWithSecret {
    pub device: Device,
    /// What the device signs in to the broker with (username: the device id). Stored hashed;
    /// it cannot be shown again, only replaced.
    pub secret: String,
}

/// A device id and its new secret, from an import.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct NewSecret {
    pub id: String,
    pub secret: String,
}

/// What a device import did; with any error, nothing was imported.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct DeviceImportReport {
    pub imported: bool,
    pub rows: usize,
    pub created: usize,
    pub updated: usize,
    pub unchanged: usize,
    pub errors: Vec<RowError>,
    /// Secrets of the devices this import created, shown once.
    pub secrets: Vec<NewSecret>,
}

/// Columns of a device list, Chinese or English.
const COLUMNS: &[(&str, &[&str])] = &[
    ("id", &["id", "编号", "设备编号"]),
    ("kind", &["kind", "类型", "设备类型"]),
    ("name", &["name", "名称", "设备名称"]),
    ("location", &["location", "位置", "安装位置"]),
    ("vendor", &["vendor", "厂商", "生产厂商"]),
    ("model", &["model", "型号"]),
    ("person", &["person", "使用人", "使用人手机号"]),
    ("status", &["status", "状态"]),
    ("tenant", &["tenant", "所属", "所属村社"]),
];

impl Platform {
    /// Devices registered in `tenant`'s subtree, a page at a time.
    pub async fn devices(
        &self,
        principal: &Principal,
        tenant: &str,
        filter: &Filter,
        after: Option<&str>,
        limit: u32,
    ) -> Result<(Vec<Device>, Option<String>), PlatformError> {
        self.authorize(principal, Permission::ReadDevices, tenant)
            .await?;
        let limit = limit.clamp(1, 500);
        let page = devices::list(&self.db, tenant, filter, after, limit).await?;
        let next = (page.len() == limit as usize)
            .then(|| page.last().map(|d| d.id.clone()))
            .flatten();
        Ok((page, next))
    }

    /// One device, if `principal` may read devices where it is registered (else not found,
    /// so ids elsewhere cannot be probed).
    pub async fn device(&self, principal: &Principal, id: &str) -> Result<Device, PlatformError> {
        self.device_in_reach(principal, id, Permission::ReadDevices)
            .await
    }

    /// The newest commands sent to a device, newest first, with their outcomes.
    pub async fn device_commands(
        &self,
        principal: &Principal,
        id: &str,
        limit: u32,
    ) -> Result<Vec<crate::storage::commands::Command>, PlatformError> {
        let d = self
            .device_in_reach(principal, id, Permission::ReadDevices)
            .await?;
        Ok(crate::storage::commands::recent(&self.db, &d.id, limit.clamp(1, 500)).await?)
    }

    async fn device_in_reach(
        &self,
        principal: &Principal,
        id: &str,
        permission: Permission,
    ) -> Result<Device, PlatformError> {
        let not_found = || PlatformError::NotFound(format!("设备不存在 / no such device: {id}"));
        let device = devices::get(&self.db, id).await?.ok_or_else(not_found)?;
        let path = tenants::path(&self.db, &device.tenant).await?;
        if !principal.allows(permission, &path) {
            return Err(not_found());
        }
        Ok(device)
    }

    /// Check `input` for registration at `tenant`: the fields, and a bound person who lives
    /// where the device is (the device's node is on the person's path, or below their home).
    async fn check_device(
        &self,
        tenant: &str,
        input: &DeviceInput,
    ) -> Result<(), (String, String)> {
        devices::validate(input)?;
        if let Some(person) = &input.person {
            let found = people::get(&self.db, person)
                .await
                .map_err(|e| ("person".to_owned(), e.to_string()))?;
            // Nobody, or someone who does not live there: one answer, so a device form or
            // list cannot tell whether a phone or id belongs to someone elsewhere.
            let nobody = || {
                (
                    "person".to_owned(),
                    format!("{tenant} 没有这位人员 / no such person at {tenant}"),
                )
            };
            // Only a resident wears a personal device: nobody binds one to staff or admins.
            let Some(p) = found.filter(|p| p.status == "active" && p.kind == PersonKind::Resident)
            else {
                return Err(nobody());
            };
            let home = tenants::path(&self.db, &p.tenant)
                .await
                .map_err(|e| ("person".to_owned(), e.to_string()))?;
            let at = tenants::path(&self.db, tenant)
                .await
                .map_err(|e| ("person".to_owned(), e.to_string()))?;
            if !(home.iter().any(|t| t == tenant) || at.contains(&p.tenant)) {
                return Err(nobody());
            }
        }
        Ok(())
    }

    /// Register a device at `tenant`; its secret is returned this once.
    pub async fn create_device(
        &self,
        principal: &Principal,
        tenant: &str,
        input: &DeviceInput,
    ) -> Result<DeviceWithSecret, PlatformError> {
        self.authorize(principal, Permission::ManageDevices, tenant)
            .await?;
        self.check_device(tenant, input)
            .await
            .map_err(|(field, m)| PlatformError::Invalid(format!("{field}: {m}")))?;
        let secret = devices::new_secret();
        let hash = devices::hash_secret(&secret);
        let now = now_ms();
        let (actor, assistant) = principal.actor();
        let device = crate::storage::write_tx!(&self.db, |tx| {
            let (device, _) = devices::upsert_in(tx, tenant, input, &hash, true, now).await?;
            audit::append_in(
                &self.db,
                tx,
                &audit::Event {
                    actor,
                    assistant,
                    tenant: Some(tenant),
                    action: "device.create",
                    subject: device.person.as_deref(),
                    outcome: "ok",
                    detail: serde_json::json!({ "device": device.id, "kind": device.kind }),
                    ..audit::Event::default()
                },
                now,
            )
            .await?;
            Ok(device)
        })?;
        tracing::info!(device = %device.id, kind = device.kind.as_str(), %tenant, "device registered");
        Ok(DeviceWithSecret { device, secret })
    }

    /// Change a device's fields, or move it to another node (both in reach).
    pub async fn update_device(
        &self,
        principal: &Principal,
        id: &str,
        tenant: Option<&str>,
        input: &DeviceInput,
    ) -> Result<Device, PlatformError> {
        let old = self
            .device_in_reach(principal, id, Permission::ManageDevices)
            .await?;
        if input.id != id {
            return Err(PlatformError::Invalid(
                "id: 设备编号不能修改 / a device's id cannot change".into(),
            ));
        }
        let tenant = tenant.unwrap_or(&old.tenant);
        self.authorize(principal, Permission::ManageDevices, tenant)
            .await?;
        self.check_device(tenant, input)
            .await
            .map_err(|(field, m)| PlatformError::Invalid(format!("{field}: {m}")))?;
        let now = now_ms();
        let (actor, assistant) = principal.actor();
        let device = crate::storage::write_tx!(&self.db, |tx| {
            let (device, what) = devices::upsert_in(tx, tenant, input, "", false, now).await?;
            if what == Upserted::Updated {
                audit::append_in(
                    &self.db,
                    tx,
                    &audit::Event {
                        actor,
                        assistant,
                        tenant: Some(tenant),
                        action: "device.update",
                        subject: device.person.as_deref(),
                        outcome: "ok",
                        detail: serde_json::json!({ "device": device.id, "from": old.tenant }),
                        ..audit::Event::default()
                    },
                    now,
                )
                .await?;
            }
            Ok(device)
        })?;
        Ok(device)
    }

    /// Remove a device from the registry.
    pub async fn delete_device(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<(), PlatformError> {
        let device = self
            .device_in_reach(principal, id, Permission::ManageDevices)
            .await?;
        let now = now_ms();
        let (actor, assistant) = principal.actor();
        crate::storage::write_tx!(&self.db, |tx| {
            if !devices::delete_in(tx, id).await? {
                return Err(StorageError::NotFound(id.to_owned()));
            }
            audit::append_in(
                &self.db,
                tx,
                &audit::Event {
                    actor,
                    assistant,
                    tenant: Some(&device.tenant),
                    action: "device.delete",
                    outcome: "ok",
                    detail: serde_json::json!({ "device": id, "kind": device.kind }),
                    ..audit::Event::default()
                },
                now,
            )
            .await?;
            Ok(())
        })
        .map_err(|e| match e {
            StorageError::NotFound(_) => {
                PlatformError::NotFound(format!("设备不存在 / no such device: {id}"))
            }
            other => other.into(),
        })
    }

    /// Give a device a new secret (the old one stops working); returned this once.
    pub async fn rotate_device_secret(
        &self,
        principal: &Principal,
        id: &str,
    ) -> Result<DeviceWithSecret, PlatformError> {
        let device = self
            .device_in_reach(principal, id, Permission::ManageDevices)
            .await?;
        let secret = devices::new_secret();
        let hash = devices::hash_secret(&secret);
        let now = now_ms();
        let (actor, assistant) = principal.actor();
        crate::storage::write_tx!(&self.db, |tx| {
            devices::set_secret_in(tx, id, &hash, now).await?;
            audit::append_in(
                &self.db,
                tx,
                &audit::Event {
                    actor,
                    assistant,
                    tenant: Some(&device.tenant),
                    action: "device.secret",
                    outcome: "ok",
                    detail: serde_json::json!({ "device": id }),
                    ..audit::Event::default()
                },
                now,
            )
            .await?;
            Ok(())
        })?;
        Ok(DeviceWithSecret { device, secret })
    }

    /// Import a device list into `tenant`'s subtree. Every row is checked first; with any
    /// error nothing is imported and the report lists the errors by row. Devices already
    /// registered (same id) are updated and keep their secrets; new ones get secrets, listed
    /// once in the report.
    pub async fn import_devices(
        &self,
        principal: &Principal,
        tenant: &str,
        format: ImportFormat,
        bytes: &[u8],
    ) -> Result<DeviceImportReport, PlatformError> {
        self.authorize(principal, Permission::ManageDevices, tenant)
            .await?;
        let table = super::roster::read(format, bytes)
            .await
            .map_err(PlatformError::Invalid)?;
        if table.rows.len() > IMPORT_MAX_ROWS {
            return Err(PlatformError::Invalid(format!(
                "一次最多导入 {IMPORT_MAX_ROWS} 行 / at most {IMPORT_MAX_ROWS} rows per import"
            )));
        }
        let subtree = tenants::subtree(&self.db, tenant).await?;
        let (rows, mut errors) = self.device_rows(principal, &table, tenant, &subtree).await;
        let mut report = DeviceImportReport {
            rows: table.rows.len(),
            ..DeviceImportReport::default()
        };
        if !errors.is_empty() {
            errors.sort_by_key(|e| e.row);
            report.errors = errors;
            return Ok(report);
        }
        // Secrets for the rows that turn out to be new; hashing is done before the
        // transaction so a retry reuses them.
        let fresh: Vec<(String, String)> = rows
            .iter()
            .map(|_| {
                let s = devices::new_secret();
                let h = devices::hash_secret(&s);
                (s, h)
            })
            .collect();
        let now = now_ms();
        let (actor, assistant) = principal.actor();
        let (counts, created) = crate::storage::write_tx!(&self.db, |tx| {
            let mut counts = (0usize, 0usize, 0usize);
            let mut created = Vec::new();
            for ((_, home, input), (secret, hash)) in rows.iter().zip(&fresh) {
                // Checked again here: a device another place registered with this id since
                // the rows were checked is not taken over.
                if let Some(at) = devices::tenant_of_in(tx, &input.id).await?
                    && !subtree.contains(&at)
                {
                    return Err(crate::storage::StorageError::Conflict(format!(
                        "设备编号已被使用 / device id {} is taken",
                        input.id
                    )));
                }
                match devices::upsert_in(tx, home, input, hash, false, now).await? {
                    (_, Upserted::Created) => {
                        counts.0 += 1;
                        created.push(NewSecret {
                            id: input.id.clone(),
                            secret: secret.clone(),
                        });
                    }
                    (_, Upserted::Updated) => counts.1 += 1,
                    (_, Upserted::Unchanged) => counts.2 += 1,
                }
            }
            audit::append_in(
                &self.db,
                tx,
                &audit::Event {
                    actor,
                    assistant,
                    tenant: Some(tenant),
                    action: "device.import",
                    outcome: "ok",
                    detail: serde_json::json!({
                        "rows": rows.len(), "created": counts.0, "updated": counts.1, "unchanged": counts.2,
                    }),
                    ..audit::Event::default()
                },
                now,
            )
            .await?;
            Ok((counts, created))
        })?;
        report.imported = true;
        (report.created, report.updated, report.unchanged) = counts;
        report.secrets = created;
        tracing::info!(%tenant, created = counts.0, updated = counts.1, unchanged = counts.2, "devices imported");
        Ok(report)
    }

    /// Check every row of a device list: (row number, node, fields), and the errors found.
    async fn device_rows(
        &self,
        principal: &Principal,
        table: &Table,
        default_tenant: &str,
        subtree: &[String],
    ) -> (Vec<(usize, String, DeviceInput)>, Vec<RowError>) {
        let (index, mut errors) = super::roster::columns(
            table,
            COLUMNS,
            "编号/id, 类型/kind, 名称/name, 位置/location, 厂商/vendor, 型号/model, 使用人/person, 状态/status, 所属/tenant",
            &["id", "kind", "name"],
        );
        if !errors.is_empty() {
            return (Vec::new(), errors);
        }
        let mut out = Vec::new();
        let mut seen: HashMap<String, usize> = HashMap::new();
        for (i, cells) in table.rows.iter().enumerate() {
            let row = i + 2;
            let cell = |key: &str| -> String {
                index
                    .get(key)
                    .and_then(|&c| cells.get(c))
                    .map(|s| s.trim().to_owned())
                    .unwrap_or_default()
            };
            if cells.iter().all(|c| c.trim().is_empty()) {
                continue;
            }
            let mut fail = |field: &str, message: String| {
                errors.push(RowError {
                    row,
                    field: field.into(),
                    message,
                })
            };
            let Some(kind) = DeviceKind::parse(&cell("kind")) else {
                fail(
                    "kind",
                    format!(
                        "未知设备类型 / unknown device kind {:?}; kinds: {}",
                        cell("kind"),
                        DeviceKind::ALL
                            .iter()
                            .map(|k| format!("{}/{}", k.zh(), k.as_str()))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                );
                continue;
            };
            let status = match cell("status").as_str() {
                "" | "active" | "启用" => DeviceStatus::Active,
                "disabled" | "停用" => DeviceStatus::Disabled,
                other => {
                    fail(
                        "status",
                        format!("状态须为 启用/active 或 停用/disabled / unknown status {other:?}"),
                    );
                    continue;
                }
            };
            let home = match cell("tenant") {
                t if t.is_empty() => default_tenant.to_owned(),
                t if subtree.contains(&t) => t,
                t => {
                    fail(
                        "tenant",
                        format!("{t:?} 不在 {default_tenant} 之下 / is not under {default_tenant}"),
                    );
                    continue;
                }
            };
            // The person column takes a person id or a phone number.
            let person = match cell("person") {
                p if p.is_empty() => None,
                p if p.starts_with("p-") => Some(p),
                phone => match people::get_by_phone(&self.db, &phone).await {
                    Ok(Some(p)) => Some(p.id),
                    Ok(None) => {
                        fail(
                            "person",
                            format!("{home} 没有这位人员 / no such person at {home}"),
                        );
                        continue;
                    }
                    Err(e) => {
                        fail("person", e.to_string());
                        continue;
                    }
                },
            };
            let input = DeviceInput {
                id: cell("id"),
                kind,
                name: cell("name"),
                location: cell("location"),
                vendor: cell("vendor"),
                model: cell("model"),
                person,
                status,
            };
            if let Err((field, message)) = self.check_device(&home, &input).await {
                fail(&field, message);
                continue;
            }
            // An id registered somewhere out of the importer's reach is taken, not updated.
            match devices::get(&self.db, &input.id).await {
                Ok(Some(old)) => {
                    let path = tenants::path(&self.db, &old.tenant)
                        .await
                        .unwrap_or_default();
                    if !principal.allows(Permission::ManageDevices, &path) {
                        fail(
                            "id",
                            format!("设备编号已被使用 / device id {} is taken", input.id),
                        );
                        continue;
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    fail("id", e.to_string());
                    continue;
                }
            }
            if let Some(first) = seen.insert(input.id.clone(), row) {
                fail(
                    "id",
                    format!("与第 {first} 行编号重复 / the same id as row {first}"),
                );
                continue;
            }
            out.push((row, home, input));
        }
        (out, errors)
    }
}
