//! The `data` capability: key-value storage scoped to the calling installation.
//!
//! Limits, each named in the error it produces: `limits.key_bytes`, `limits.value_bytes`,
//! `limits.keys_per_scope`, `limits.list_page`, `limits.batch_ops`, `limits.hostcall_bytes`.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::{denied, metadata_only};
use crate::runtime::HostState;
use crate::runtime::bindings::WitError;
use crate::runtime::bindings::linli::plugin::data::{
    self, BatchOutcome, CounterDelta, Entry, Operation, Page, Precondition,
};
use crate::storage::StorageError;
use crate::storage::kv;
use crate::storage::outbox::Staged;

impl HostState {
    fn data_ready(&self) -> Result<(), WitError> {
        if !self.capabilities_enabled {
            Err(metadata_only("data"))
        } else if !self.call.granted("data") {
            Err(denied("data"))
        } else {
            Ok(())
        }
    }

    fn check_key(&self, key: &str) -> Result<(), WitError> {
        let max = self.limits.key_bytes;
        if key.is_empty() {
            return Err(WitError::Invalid(
                "键不能为空 / key must not be empty".into(),
            ));
        }
        if key.len() > max {
            return Err(WitError::Quota(format!(
                "limits.key_bytes = {max}: 键长 {} 字节超限 / key of {} bytes is too long",
                key.len(),
                key.len()
            )));
        }
        if key.contains('\0') {
            return Err(WitError::Invalid(
                "键不能含 NUL / key must not contain NUL".into(),
            ));
        }
        Ok(())
    }

    fn check_value(&self, value: &[u8]) -> Result<(), WitError> {
        let max = self.limits.value_bytes;
        if value.len() > max {
            return Err(WitError::Quota(format!(
                "limits.value_bytes = {max}: 值 {} 字节超限 / value of {} bytes is too large",
                value.len(),
                value.len()
            )));
        }
        Ok(())
    }

    /// What a write task needs, owned: it runs apart from the call (see `Writes`).
    fn write_parts(&self) -> (crate::storage::Db, kv::Scope, u64, Vec<Staged>) {
        (
            self.call.db.clone(),
            self.call.scope.clone(),
            self.limits.keys_per_scope,
            self.staged.clone(),
        )
    }

    fn check_hostcall(&self, bytes: usize) -> Result<(), WitError> {
        let max = self.limits.hostcall_bytes;
        if bytes > max {
            return Err(WitError::Quota(format!(
                "limits.hostcall_bytes = {max}: 单次调用 {bytes} 字节超限 / one call carried {bytes} bytes"
            )));
        }
        Ok(())
    }

    fn storage_error(&mut self, e: StorageError) -> WitError {
        match e {
            StorageError::Quota(m) => WitError::Quota(m),
            StorageError::Invalid(m) => WitError::Invalid(m),
            StorageError::NotFound(m) => WitError::NotFound(m),
            other => {
                self.storage_unavailable = true;
                tracing::error!(
                    tenant = %self.call.scope.tenant,
                    plugin = %self.call.scope.plugin,
                    request_id = %self.call.request_id,
                    error = %other,
                    "data capability: storage failure"
                );
                WitError::Internal(format!(
                    "存储暂不可用，请稍后重试 / storage unavailable, retry later (request {})",
                    self.call.request_id
                ))
            }
        }
    }
}

fn encode_cursor(key: &str) -> String {
    URL_SAFE_NO_PAD.encode(key.as_bytes())
}

fn decode_cursor(cursor: &str) -> Option<String> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    String::from_utf8(bytes).ok()
}

impl data::Host for HostState {
    async fn get(&mut self, key: String) -> Result<Option<Vec<u8>>, WitError> {
        self.data_ready()?;
        self.check_key(&key)?;
        kv::get(&self.call.db, &self.call.scope, &key)
            .await
            .map_err(|e| self.storage_error(e))
    }

    async fn set(&mut self, key: String, value: Vec<u8>) -> Result<(), WitError> {
        self.data_ready()?;
        self.check_key(&key)?;
        self.check_value(&value)?;
        self.check_hostcall(key.len() + value.len())?;
        let (db, scope, max, staged) = self.write_parts();
        self.writes
            .clone()
            .run(
                async move { kv::set_staged(&db, &scope, &key, &value, max, &staged).await },
                |_| true,
            )
            .await
            .map_err(|e| self.storage_error(e))?;
        self.staged.clear();
        Ok(())
    }

    async fn delete(&mut self, key: String) -> Result<bool, WitError> {
        self.data_ready()?;
        self.check_key(&key)?;
        let (db, scope, _, staged) = self.write_parts();
        let deleted = self
            .writes
            .clone()
            .run(
                async move { kv::delete_staged(&db, &scope, &key, &staged).await },
                |deleted| *deleted,
            )
            .await
            .map_err(|e| self.storage_error(e))?;
        self.staged.clear();
        Ok(deleted)
    }

    async fn exists(&mut self, key: String) -> Result<bool, WitError> {
        self.data_ready()?;
        self.check_key(&key)?;
        kv::exists(&self.call.db, &self.call.scope, &key)
            .await
            .map_err(|e| self.storage_error(e))
    }

    async fn list_prefix(
        &mut self,
        prefix: String,
        cursor: Option<String>,
        limit: u32,
    ) -> Result<Page, WitError> {
        self.data_ready()?;
        if prefix.len() > self.limits.key_bytes {
            return Err(WitError::Quota(format!(
                "limits.key_bytes = {}: 前缀过长 / prefix is too long",
                self.limits.key_bytes
            )));
        }
        let after = match &cursor {
            None => None,
            Some(c) => Some(
                decode_cursor(c)
                    .filter(|k| k.len() <= self.limits.key_bytes)
                    .ok_or_else(|| {
                        WitError::Invalid("游标无效 / cursor is not one this host returned".into())
                    })?,
            ),
        };
        let page_max = self.limits.list_page;
        let limit = if limit == 0 {
            page_max
        } else {
            limit.min(page_max)
        };
        let page = kv::list(
            &self.call.db,
            &self.call.scope,
            &prefix,
            after.as_deref(),
            limit,
        )
        .await
        .map_err(|e| self.storage_error(e))?;
        let next_cursor = if page.more {
            page.entries.last().map(|(k, _)| encode_cursor(k))
        } else {
            None
        };
        Ok(Page {
            entries: page
                .entries
                .into_iter()
                .map(|(key, value)| Entry { key, value })
                .collect(),
            next_cursor,
        })
    }

    async fn increment(&mut self, key: String, delta: i64) -> Result<i64, WitError> {
        self.data_ready()?;
        self.check_key(&key)?;
        let (db, scope, max, staged) = self.write_parts();
        let value = self
            .writes
            .clone()
            .run(
                async move { kv::increment_staged(&db, &scope, &key, delta, max, &staged).await },
                |_| true,
            )
            .await
            .map_err(|e| self.storage_error(e))?;
        self.staged.clear();
        Ok(value)
    }

    async fn compare_and_swap(
        &mut self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, WitError> {
        self.data_ready()?;
        self.check_key(&key)?;
        if let Some(v) = &new {
            self.check_value(v)?;
        }
        let carried =
            key.len() + expected.as_ref().map_or(0, Vec::len) + new.as_ref().map_or(0, Vec::len);
        self.check_hostcall(carried)?;
        let (db, scope, max, staged) = self.write_parts();
        let swapped = self
            .writes
            .clone()
            .run(
                async move {
                    kv::compare_and_swap_staged(
                        &db,
                        &scope,
                        &key,
                        expected.as_deref(),
                        new.as_deref(),
                        max,
                        &staged,
                    )
                    .await
                },
                |swapped| *swapped,
            )
            .await
            .map_err(|e| self.storage_error(e))?;
        if swapped {
            self.staged.clear();
        }
        Ok(swapped)
    }

    async fn batch(
        &mut self,
        preconditions: Vec<Precondition>,
        operations: Vec<Operation>,
    ) -> Result<BatchOutcome, WitError> {
        self.data_ready()?;
        let count = preconditions.len() + operations.len();
        if count > self.limits.batch_ops {
            return Err(WitError::Quota(format!(
                "limits.batch_ops = {}: 批量操作 {count} 项超限 / a batch of {count} items is too large",
                self.limits.batch_ops
            )));
        }
        let mut carried = 0usize;
        let mut pres = Vec::with_capacity(preconditions.len());
        for p in preconditions {
            pres.push(match p {
                Precondition::Exists(k) => {
                    self.check_key(&k)?;
                    carried += k.len();
                    kv::Precondition::Exists(k)
                }
                Precondition::Absent(k) => {
                    self.check_key(&k)?;
                    carried += k.len();
                    kv::Precondition::Absent(k)
                }
                Precondition::Equals(Entry { key, value }) => {
                    self.check_key(&key)?;
                    self.check_value(&value)?;
                    carried += key.len() + value.len();
                    kv::Precondition::Equals(key, value)
                }
            });
        }
        let mut ops = Vec::with_capacity(operations.len());
        for o in operations {
            ops.push(match o {
                Operation::Set(Entry { key, value }) => {
                    self.check_key(&key)?;
                    self.check_value(&value)?;
                    carried += key.len() + value.len();
                    kv::Operation::Set(key, value)
                }
                Operation::Delete(k) => {
                    self.check_key(&k)?;
                    carried += k.len();
                    kv::Operation::Delete(k)
                }
                Operation::Increment(CounterDelta { key, delta }) => {
                    self.check_key(&key)?;
                    carried += key.len() + 8;
                    kv::Operation::Increment(key, delta)
                }
            });
        }
        self.check_hostcall(carried)?;
        let (db, scope, max, staged) = self.write_parts();
        let outcome = self
            .writes
            .clone()
            .run(
                async move { kv::batch_staged(&db, &scope, &pres, &ops, max, &staged).await },
                |outcome| *outcome == kv::BatchOutcome::Committed,
            )
            .await
            .map_err(|e| self.storage_error(e))?;
        if outcome == kv::BatchOutcome::Committed {
            self.staged.clear();
        }
        Ok(match outcome {
            kv::BatchOutcome::Committed => BatchOutcome::Committed,
            kv::BatchOutcome::PreconditionFailed(i) => BatchOutcome::PreconditionFailed(i),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        for key in ["a", "vote/2026/张三", "x\u{10FFFF}"] {
            assert_eq!(decode_cursor(&encode_cursor(key)).as_deref(), Some(key));
        }
        assert_eq!(decode_cursor("!!!"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode([0xff, 0xfe])), None);
    }
}
