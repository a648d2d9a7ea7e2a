//! Commands sent to devices and how each ended (`device_commands`).

use serde::Serialize;
use sqlx::Row;
use utoipa::ToSchema;

use super::{Db, Result};

/// How a command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum CommandStatus {
    /// Sent; no answer yet.
    Sent,
    Acknowledged,
    Refused,
    TimedOut,
}

impl CommandStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            CommandStatus::Sent => "sent",
            CommandStatus::Acknowledged => "acknowledged",
            CommandStatus::Refused => "refused",
            CommandStatus::TimedOut => "timed-out",
        }
    }

    fn parse(s: &str) -> Option<CommandStatus> {
        Some(match s {
            "sent" => CommandStatus::Sent,
            "acknowledged" => CommandStatus::Acknowledged,
            "refused" => CommandStatus::Refused,
            "timed-out" => CommandStatus::TimedOut,
            _ => return None,
        })
    }
}

/// One command to a device.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Command {
    pub id: String,
    pub device_id: String,
    /// Where the plugin that sent it is installed.
    pub tenant_id: String,
    pub plugin_id: String,
    pub command: String,
    /// The command's parameters (a JSON object).
    #[schema(value_type = Object)]
    pub payload: serde_json::Value,
    pub status: CommandStatus,
    /// The device's answer: its result (JSON) when acknowledged, its reason when refused.
    #[schema(value_type = Option<Object>)]
    pub reply: Option<serde_json::Value>,
    pub created_at: i64,
    /// When the sender stops waiting (ms since the epoch); a device should drop a command it
    /// receives after this.
    pub deadline_at: i64,
    pub answered_at: Option<i64>,
}

const COLUMNS: &str = "id, device_id, tenant_id, plugin_id, command, payload, status, reply, \
                       created_at, deadline_at, answered_at";

fn from_row(row: &sqlx::any::AnyRow) -> Result<Command> {
    let status: String = row.try_get(6)?;
    let payload: String = row.try_get(5)?;
    let reply: Option<String> = row.try_get(7)?;
    Ok(Command {
        id: row.try_get(0)?,
        device_id: row.try_get(1)?,
        tenant_id: row.try_get(2)?,
        plugin_id: row.try_get(3)?,
        command: row.try_get(4)?,
        payload: serde_json::from_str(&payload).unwrap_or(serde_json::Value::Null),
        status: CommandStatus::parse(&status).unwrap_or(CommandStatus::Sent),
        reply: reply.map(|r| serde_json::from_str(&r).unwrap_or(serde_json::Value::String(r))),
        created_at: row.try_get(8)?,
        deadline_at: row.try_get(9)?,
        answered_at: row.try_get(10)?,
    })
}

/// Record a command as sent.
pub async fn insert(db: &Db, c: &Command) -> Result<()> {
    sqlx::query(
        "INSERT INTO device_commands (id, device_id, tenant_id, plugin_id, command, payload, \
         status, reply, created_at, deadline_at, answered_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, NULL, $8, $9, NULL)",
    )
    .bind(&c.id)
    .bind(&c.device_id)
    .bind(&c.tenant_id)
    .bind(&c.plugin_id)
    .bind(&c.command)
    .bind(c.payload.to_string())
    .bind(c.status.as_str())
    .bind(c.created_at)
    .bind(c.deadline_at)
    .execute(db.pool())
    .await?;
    Ok(())
}

pub async fn get(db: &Db, id: &str) -> Result<Option<Command>> {
    let row = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM device_commands WHERE id = $1"
    ))
    .bind(id)
    .fetch_optional(db.pool())
    .await?;
    row.as_ref().map(from_row).transpose()
}

/// Settle a `sent` command of `device` as `status` with `reply`. False if the command is not
/// the device's or was already settled (answered, or timed out).
pub async fn settle(
    db: &Db,
    device: &str,
    id: &str,
    status: CommandStatus,
    reply: Option<&serde_json::Value>,
    at: i64,
) -> Result<bool> {
    let r = sqlx::query(
        "UPDATE device_commands SET status = $1, reply = $2, answered_at = $3 \
         WHERE id = $4 AND device_id = $5 AND status = 'sent'",
    )
    .bind(status.as_str())
    .bind(reply.map(|v| v.to_string()))
    .bind(at)
    .bind(id)
    .bind(device)
    .execute(db.pool())
    .await?;
    Ok(r.rows_affected() == 1)
}

/// Commands still waiting for `device`'s answer whose deadline has not passed, oldest first.
pub async fn pending(db: &Db, device: &str, now: i64, limit: u32) -> Result<Vec<Command>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM device_commands \
         WHERE device_id = $1 AND status = 'sent' AND deadline_at > $2 \
         ORDER BY created_at, id LIMIT $3"
    ))
    .bind(device)
    .bind(now)
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}

/// The newest commands to `device`, newest first.
pub async fn recent(db: &Db, device: &str, limit: u32) -> Result<Vec<Command>> {
    let rows = sqlx::query(&format!(
        "SELECT {COLUMNS} FROM device_commands WHERE device_id = $1 \
         ORDER BY created_at DESC, id DESC LIMIT $2"
    ))
    .bind(device)
    .bind(i64::from(limit))
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(from_row).collect()
}
