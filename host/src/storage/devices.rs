//! The device registry: gates, barriers, parking sensors, meters, emergency buttons,
//! wearables, environment sensors… registered to a tenant node.
//!
//! A device's secret (what it signs in to the broker with) is stored as sha256 only; the
//! plain secret is returned once, when it is made.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use sqlx::Row;
use utoipa::ToSchema;

use super::{Db, Result, StorageError};

/// What a device is. Plugins are granted devices by kind (`device.gate`, …), and each kind
/// has its own telemetry payload rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceKind {
    /// 门禁
    Gate,
    /// 道闸
    Barrier,
    /// 车位传感器
    ParkingSensor,
    /// 水电气表
    Meter,
    /// 紧急呼叫按钮
    EmergencyButton,
    /// 可穿戴设备（手环）
    Wearable,
    /// 环境传感器（温湿度、水位…）
    EnvironmentSensor,
    /// 烟感
    SmokeDetector,
    /// 电梯
    Elevator,
    /// 充电桩
    ChargingPile,
    /// 村村通大喇叭
    Loudspeaker,
}

impl DeviceKind {
    pub const ALL: &'static [DeviceKind] = &[
        DeviceKind::Gate,
        DeviceKind::Barrier,
        DeviceKind::ParkingSensor,
        DeviceKind::Meter,
        DeviceKind::EmergencyButton,
        DeviceKind::Wearable,
        DeviceKind::EnvironmentSensor,
        DeviceKind::SmokeDetector,
        DeviceKind::Elevator,
        DeviceKind::ChargingPile,
        DeviceKind::Loudspeaker,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Gate => "gate",
            DeviceKind::Barrier => "barrier",
            DeviceKind::ParkingSensor => "parking-sensor",
            DeviceKind::Meter => "meter",
            DeviceKind::EmergencyButton => "emergency-button",
            DeviceKind::Wearable => "wearable",
            DeviceKind::EnvironmentSensor => "environment-sensor",
            DeviceKind::SmokeDetector => "smoke-detector",
            DeviceKind::Elevator => "elevator",
            DeviceKind::ChargingPile => "charging-pile",
            DeviceKind::Loudspeaker => "loudspeaker",
        }
    }

    /// The kind's name in Chinese (imports accept it too).
    pub fn zh(self) -> &'static str {
        match self {
            DeviceKind::Gate => "门禁",
            DeviceKind::Barrier => "道闸",
            DeviceKind::ParkingSensor => "车位传感器",
            DeviceKind::Meter => "计量表",
            DeviceKind::EmergencyButton => "紧急呼叫按钮",
            DeviceKind::Wearable => "可穿戴设备",
            DeviceKind::EnvironmentSensor => "环境传感器",
            DeviceKind::SmokeDetector => "烟感",
            DeviceKind::Elevator => "电梯",
            DeviceKind::ChargingPile => "充电桩",
            DeviceKind::Loudspeaker => "大喇叭",
        }
    }

    /// From the kebab-case name or the Chinese name.
    pub fn parse(s: &str) -> Option<DeviceKind> {
        let s = s.trim();
        DeviceKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s || k.zh() == s)
    }

    /// Whether a device of this kind belongs to one person (and so is personal data).
    pub fn personal(self) -> bool {
        matches!(self, DeviceKind::EmergencyButton | DeviceKind::Wearable)
    }
}

/// Whether a device is in service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DeviceStatus {
    /// Its messages are accepted and plugins see it.
    Active,
    /// Kept on record but its messages are dropped and commands refused.
    Disabled,
}

impl DeviceStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceStatus::Active => "active",
            DeviceStatus::Disabled => "disabled",
        }
    }

    fn parse(s: &str) -> DeviceStatus {
        if s == "active" {
            DeviceStatus::Active
        } else {
            DeviceStatus::Disabled
        }
    }
}

/// A registered device (never carries its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Device {
    /// `[a-z0-9][a-z0-9-]{0,62}`, unique in the county; names its MQTT topics.
    pub id: String,
    /// The tenant node it is registered to (community, village, grid, building…).
    pub tenant: String,
    pub kind: DeviceKind,
    pub name: String,
    /// Where it is, in words ("东村村委会北门").
    pub location: String,
    pub vendor: String,
    pub model: String,
    /// For personal devices (emergency button, wearable): the person who wears or keeps it.
    pub person: Option<String>,
    pub status: DeviceStatus,
    /// When a message from it last arrived (ms since the epoch).
    pub last_seen_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The fields of a device to register or update.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    pub id: String,
    pub kind: DeviceKind,
    pub name: String,
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub vendor: String,
    #[serde(default)]
    pub model: String,
    /// Person id (`p-…`) for personal devices.
    #[serde(default)]
    pub person: Option<String>,
    #[serde(default = "active")]
    pub status: DeviceStatus,
}

fn active() -> DeviceStatus {
    DeviceStatus::Active
}

/// The longest name, location, vendor or model, in characters.
pub const TEXT_MAX_CHARS: usize = 100;

/// Check every field; the error names the field (zh / en).
pub fn validate(input: &DeviceInput) -> std::result::Result<(), (String, String)> {
    if !super::tenants::valid_id(&input.id) {
        return Err((
            "id".into(),
            "设备编号须为小写字母、数字和连字符，1–63 个字符 / device id must be [a-z0-9][a-z0-9-]{0,62}".into(),
        ));
    }
    let name = input.name.trim();
    if name.is_empty() {
        return Err(("name".into(), "设备名称不能为空 / name is required".into()));
    }
    for (field, value) in [
        ("name", &input.name),
        ("location", &input.location),
        ("vendor", &input.vendor),
        ("model", &input.model),
    ] {
        if value.chars().count() > TEXT_MAX_CHARS {
            return Err((
                field.into(),
                format!("最多 {TEXT_MAX_CHARS} 个字符 / at most {TEXT_MAX_CHARS} characters"),
            ));
        }
        if value.chars().any(char::is_control) {
            return Err((
                field.into(),
                "不能含控制字符 / control characters are not allowed".into(),
            ));
        }
    }
    if input.person.is_some() && !input.kind.personal() {
        return Err((
            "person".into(),
            format!(
                "只有紧急呼叫按钮和可穿戴设备可以绑定到人 / only emergency buttons and wearables are bound to a person, not a {}",
                input.kind.as_str()
            ),
        ));
    }
    Ok(())
}

/// What every device secret starts with (so the API tells it from a session token).
pub const SECRET_PREFIX: &str = "lld_";

/// A fresh device secret: `lld_` and 32 hex digits from the OS RNG.
pub fn new_secret() -> String {
    format!("{SECRET_PREFIX}{}", hex::encode(rand::random::<[u8; 16]>()))
}

/// How a secret is stored.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

const COLUMNS: &str = "id, tenant_id, kind, name, location, vendor, model, person_id, status, \
                       last_seen_at, created_at, updated_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Device> {
    let kind: String = row.try_get("kind")?;
    let status: String = row.try_get("status")?;
    Ok(Device {
        id: row.try_get("id")?,
        tenant: row.try_get("tenant_id")?,
        kind: DeviceKind::parse(&kind)
            .ok_or_else(|| StorageError::Invalid(format!("stored device kind {kind:?}")))?,
        name: row.try_get("name")?,
        location: row.try_get("location")?,
        vendor: row.try_get("vendor")?,
        model: row.try_get("model")?,
        person: row.try_get("person_id")?,
        status: DeviceStatus::parse(&status),
        last_seen_at: row.try_get("last_seen_at")?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}

/// One device.
pub async fn get(db: &Db, id: &str) -> Result<Option<Device>> {
    let row = sqlx::query(&format!("SELECT {COLUMNS} FROM devices WHERE id = $1"))
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    row.as_ref().map(from_row).transpose()
}

/// Whether `secret` is the device's current secret.
pub async fn check_secret(db: &Db, id: &str, secret: &str) -> Result<bool> {
    let row = sqlx::query("SELECT secret_hash FROM devices WHERE id = $1")
        .bind(id)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Ok(false) };
    let stored: String = row.try_get(0)?;
    let given = hash_secret(secret);
    // Both are hex sha256 digests: compare in constant time.
    use subtle::ConstantTimeEq;
    Ok(stored.as_bytes().ct_eq(given.as_bytes()).into())
}

/// What to list.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    pub kinds: Option<Vec<DeviceKind>>,
    pub status: Option<DeviceStatus>,
    pub person: Option<String>,
}

/// Devices registered anywhere in `tenant`'s subtree, by id, after `after`, at most `limit`.
pub async fn list(
    db: &Db,
    tenant: &str,
    filter: &Filter,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<Device>> {
    let mut sql = format!(
        "WITH RECURSIVE down(id, depth) AS ( \
             SELECT id, 0 FROM tenants WHERE id = $1 \
             UNION ALL \
             SELECT t.id, down.depth + 1 FROM tenants t JOIN down ON t.parent_id = down.id \
             WHERE down.depth < 32) \
         SELECT {COLUMNS} FROM devices WHERE tenant_id IN (SELECT id FROM down) AND id > $2"
    );
    let mut n = 2;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if let Some(kinds) = &filter.kinds {
        if kinds.is_empty() {
            return Ok(Vec::new());
        }
        let marks: Vec<_> = kinds.iter().map(|_| next()).collect();
        sql.push_str(&format!(" AND kind IN ({})", marks.join(", ")));
    }
    if filter.status.is_some() {
        sql.push_str(&format!(" AND status = {}", next()));
    }
    if filter.person.is_some() {
        sql.push_str(&format!(" AND person_id = {}", next()));
    }
    sql.push_str(&format!(" ORDER BY id LIMIT {}", next()));
    let mut q = sqlx::query(&sql).bind(tenant).bind(after.unwrap_or(""));
    for k in filter.kinds.iter().flatten() {
        q = q.bind(k.as_str());
    }
    if let Some(s) = filter.status {
        q = q.bind(s.as_str());
    }
    if let Some(p) = &filter.person {
        q = q.bind(p);
    }
    let rows = q.bind(i64::from(limit)).fetch_all(db.pool()).await?;
    rows.iter().map(from_row).collect()
}

/// The tenant a device id is registered at, inside the caller's transaction.
pub(crate) async fn tenant_of_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
) -> Result<Option<String>> {
    let row = sqlx::query("SELECT tenant_id FROM devices WHERE id = $1")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await?;
    Ok(match row {
        Some(r) => Some(r.try_get(0)?),
        None => None,
    })
}

/// What an upsert did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upserted {
    /// A new device, with a new secret.
    Created,
    Updated,
    Unchanged,
}

/// Register `input` at `tenant` (with `secret_hash`) or, if its id exists, update it in place
/// (its secret kept). `only_new` refuses an existing id with `Conflict`.
pub(crate) async fn upsert_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tenant: &str,
    input: &DeviceInput,
    secret_hash: &str,
    only_new: bool,
    now: i64,
) -> Result<(Device, Upserted)> {
    let existing = sqlx::query(&format!("SELECT {COLUMNS} FROM devices WHERE id = $1"))
        .bind(&input.id)
        .fetch_optional(&mut **tx)
        .await?
        .as_ref()
        .map(from_row)
        .transpose()?;
    let mut device = Device {
        id: input.id.clone(),
        tenant: tenant.to_owned(),
        kind: input.kind,
        name: input.name.trim().to_owned(),
        location: input.location.trim().to_owned(),
        vendor: input.vendor.trim().to_owned(),
        model: input.model.trim().to_owned(),
        person: input.person.clone(),
        status: input.status,
        last_seen_at: None,
        created_at: now,
        updated_at: now,
    };
    match existing {
        Some(_) if only_new => Err(StorageError::Conflict(format!(
            "设备编号已被使用 / device id {} is taken",
            input.id
        ))),
        Some(old) => {
            device.last_seen_at = old.last_seen_at;
            device.created_at = old.created_at;
            device.updated_at = old.updated_at;
            if device == old {
                return Ok((old, Upserted::Unchanged));
            }
            device.updated_at = now;
            sqlx::query(
                "UPDATE devices SET tenant_id = $2, kind = $3, name = $4, location = $5, \
                 vendor = $6, model = $7, person_id = $8, status = $9, updated_at = $10 \
                 WHERE id = $1",
            )
            .bind(&device.id)
            .bind(&device.tenant)
            .bind(device.kind.as_str())
            .bind(&device.name)
            .bind(&device.location)
            .bind(&device.vendor)
            .bind(&device.model)
            .bind(&device.person)
            .bind(device.status.as_str())
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok((device, Upserted::Updated))
        }
        None => {
            sqlx::query(
                "INSERT INTO devices (id, tenant_id, kind, name, location, vendor, model, \
                 person_id, secret_hash, status, last_seen_at, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, NULL, $11, $11)",
            )
            .bind(&device.id)
            .bind(&device.tenant)
            .bind(device.kind.as_str())
            .bind(&device.name)
            .bind(&device.location)
            .bind(&device.vendor)
            .bind(&device.model)
            .bind(&device.person)
            .bind(secret_hash)
            .bind(device.status.as_str())
            .bind(now)
            .execute(&mut **tx)
            .await?;
            Ok((device, Upserted::Created))
        }
    }
}

/// Replace a device's secret.
pub(crate) async fn set_secret_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    secret_hash: &str,
    now: i64,
) -> Result<bool> {
    let r = sqlx::query("UPDATE devices SET secret_hash = $2, updated_at = $3 WHERE id = $1")
        .bind(id)
        .bind(secret_hash)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Remove a device from the registry.
pub(crate) async fn delete_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
) -> Result<bool> {
    let r = sqlx::query("DELETE FROM devices WHERE id = $1")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(r.rows_affected() == 1)
}

/// Record that a message from the device arrived at `at`.
pub async fn touch(db: &Db, id: &str, at: i64) -> Result<()> {
    sqlx::query("UPDATE devices SET last_seen_at = $2 WHERE id = $1")
        .bind(id)
        .bind(at)
        .execute(db.pool())
        .await?;
    Ok(())
}

/// [`touch`] inside a write transaction.
pub(crate) async fn touch_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    id: &str,
    at: i64,
) -> Result<()> {
    sqlx::query("UPDATE devices SET last_seen_at = $2 WHERE id = $1 AND (last_seen_at IS NULL OR last_seen_at < $2)")
        .bind(id)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Devices bound to a person (residents' export).
pub async fn of_person(db: &Db, person: &str) -> Result<Vec<Device>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM devices WHERE person_id = $1 ORDER BY id"
    ))
    .bind(person)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// Unbind a person from their devices (erasure): the devices stay registered, unassigned.
pub async fn unbind_person(db: &Db, person: &str) -> Result<u64> {
    let r = sqlx::query("UPDATE devices SET person_id = NULL WHERE person_id = $1")
        .bind(person)
        .execute(db.pool())
        .await?;
    Ok(r.rows_affected())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn input(kind: DeviceKind) -> DeviceInput {
        DeviceInput {
            id: "dongcun-gate-1".into(),
            kind,
            name: "北门".into(),
            location: String::new(),
            vendor: String::new(),
            model: String::new(),
            person: None,
            status: DeviceStatus::Active,
        }
    }

    #[test]
    fn kinds_parse_by_either_name() {
        for k in DeviceKind::ALL {
            assert_eq!(DeviceKind::parse(k.as_str()), Some(*k));
            assert_eq!(DeviceKind::parse(k.zh()), Some(*k));
        }
        assert_eq!(DeviceKind::parse("toaster"), None);
    }

    #[test]
    fn validation_names_the_field() {
        assert!(validate(&input(DeviceKind::Gate)).is_ok());
        let mut bad = input(DeviceKind::Gate);
        bad.id = "Gate 1".into();
        assert_eq!(validate(&bad).unwrap_err().0, "id");
        let mut bad = input(DeviceKind::Gate);
        bad.name = "x".repeat(TEXT_MAX_CHARS + 1);
        assert_eq!(validate(&bad).unwrap_err().0, "name");
        let mut bad = input(DeviceKind::Gate);
        bad.location = "a\u{0}b".into();
        assert_eq!(validate(&bad).unwrap_err().0, "location");
        let mut bad = input(DeviceKind::Gate);
        bad.person = Some("p-1".into());
        assert_eq!(validate(&bad).unwrap_err().0, "person");
        let mut ok = input(DeviceKind::EmergencyButton);
        ok.person = Some("p-1".into());
        assert!(validate(&ok).is_ok());
    }

    #[test]
    fn secrets_are_random_and_hashed() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert!(a.starts_with(SECRET_PREFIX));
        assert_eq!(hash_secret(&a).len(), 64);
        assert_ne!(hash_secret(&a), hash_secret(&b));
    }
}
