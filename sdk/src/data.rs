//! Typed access to the plugin's data: bytes, JSON, counters, compare-and-swap and atomic
//! batches. Keys live in this installation's scope (tenant + plugin), added by the host; a
//! plugin cannot name another scope.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::__private::linli::plugin::data as wit;
use crate::Error;

/// The key for data this plugin keeps about one person: `r/<person-id>/<rest>`. Keep
/// everything about a resident under such keys: the host finds them when the resident asks
/// for an export of their data, and deletes them when the resident is erased.
pub fn person_key(person_id: &str, rest: &str) -> String {
    format!("r/{person_id}/{rest}")
}

/// Read a value.
pub fn get(key: &str) -> Result<Option<Vec<u8>>, Error> {
    Ok(wit::get(key)?)
}

/// Create or replace a value.
pub fn set(key: &str, value: &[u8]) -> Result<(), Error> {
    Ok(wit::set(key, value)?)
}

/// Remove a key; whether it existed.
pub fn delete(key: &str) -> Result<bool, Error> {
    Ok(wit::delete(key)?)
}

/// Whether a key exists.
pub fn exists(key: &str) -> Result<bool, Error> {
    Ok(wit::exists(key)?)
}

/// Read a JSON value.
pub fn get_json<T: DeserializeOwned>(key: &str) -> Result<Option<T>, Error> {
    match get(key)? {
        None => Ok(None),
        Some(bytes) => Ok(Some(serde_json::from_slice(&bytes)?)),
    }
}

/// Store a value as JSON.
pub fn set_json<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<(), Error> {
    set(key, &serde_json::to_vec(value)?)
}

/// Atomically add `delta` to a counter (absent = 0); the new value. Counters are stored as
/// decimal text, so [`get_json::<i64>`] reads them too.
pub fn increment(key: &str, delta: i64) -> Result<i64, Error> {
    Ok(wit::increment(key, delta)?)
}

/// Replace `key` with `new` (delete when `None`) only if it holds `expected` (`None` =
/// absent). Whether it swapped.
pub fn compare_and_swap(
    key: &str,
    expected: Option<&[u8]>,
    new: Option<&[u8]>,
) -> Result<bool, Error> {
    Ok(wit::compare_and_swap(key, expected, new)?)
}

/// Entries (key, value) in key order.
pub type Entries = Vec<(String, Vec<u8>)>;

/// One page of entries whose key starts with `prefix`, in key order. Pass the returned cursor
/// back for the next page; `None` means done. `limit` 0 is the host's default page size.
pub fn list_page(
    prefix: &str,
    cursor: Option<&str>,
    limit: u32,
) -> Result<(Entries, Option<String>), Error> {
    let page = wit::list_prefix(prefix, cursor, limit)?;
    Ok((
        page.entries.into_iter().map(|e| (e.key, e.value)).collect(),
        page.next_cursor,
    ))
}

/// Every entry whose key starts with `prefix`, in key order, fetched page by page.
pub fn scan(prefix: &str) -> Scan {
    Scan {
        prefix: prefix.into(),
        cursor: None,
        buffer: Vec::new().into_iter(),
        done: false,
    }
}

/// The iterator behind [`scan`].
pub struct Scan {
    prefix: String,
    cursor: Option<String>,
    buffer: std::vec::IntoIter<(String, Vec<u8>)>,
    done: bool,
}

impl Iterator for Scan {
    type Item = Result<(String, Vec<u8>), Error>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(entry) = self.buffer.next() {
                return Some(Ok(entry));
            }
            if self.done {
                return None;
            }
            match list_page(&self.prefix, self.cursor.as_deref(), 0) {
                Ok((entries, next)) => {
                    self.done = next.is_none();
                    self.cursor = next;
                    self.buffer = entries.into_iter();
                }
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
            }
        }
    }
}

/// What a committed or refused [`Batch`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BatchOutcome {
    /// Every precondition held; every operation applied.
    Committed,
    /// The precondition with this index (in the order added) failed; nothing applied.
    PreconditionFailed(u32),
}

/// An atomic batch: preconditions checked and operations applied in one transaction, all or
/// nothing. E.g. "one resident, one vote":
///
/// ```no_run
/// # use linli_sdk::data::{Batch, BatchOutcome};
/// # fn vote(topic: &str, voter: &str, option: &str) -> Result<bool, linli_sdk::Error> {
/// let outcome = Batch::new()
///     .require_absent(&format!("ballot/{topic}/{voter}"))
///     .set(&format!("ballot/{topic}/{voter}"), option.as_bytes())
///     .increment(&format!("tally/{topic}/{option}"), 1)
///     .commit()?;
/// Ok(outcome == BatchOutcome::Committed)
/// # }
/// ```
#[derive(Debug, Default, Clone)]
pub struct Batch {
    preconditions: Vec<wit::Precondition>,
    operations: Vec<wit::Operation>,
}

impl Batch {
    pub fn new() -> Self {
        Batch::default()
    }

    /// Require `key` to exist.
    pub fn require_exists(mut self, key: &str) -> Self {
        self.preconditions
            .push(wit::Precondition::Exists(key.into()));
        self
    }

    /// Require `key` to be absent.
    pub fn require_absent(mut self, key: &str) -> Self {
        self.preconditions
            .push(wit::Precondition::Absent(key.into()));
        self
    }

    /// Require `key` to hold exactly `value`.
    pub fn require_equals(mut self, key: &str, value: &[u8]) -> Self {
        self.preconditions
            .push(wit::Precondition::Equals(wit::Entry {
                key: key.into(),
                value: value.to_vec(),
            }));
        self
    }

    /// Set `key` to `value`.
    pub fn set(mut self, key: &str, value: &[u8]) -> Self {
        self.operations.push(wit::Operation::Set(wit::Entry {
            key: key.into(),
            value: value.to_vec(),
        }));
        self
    }

    /// Set `key` to `value` as JSON.
    pub fn set_json<T: Serialize + ?Sized>(self, key: &str, value: &T) -> Result<Self, Error> {
        Ok(self.set(key, &serde_json::to_vec(value)?))
    }

    /// Delete `key`.
    pub fn delete(mut self, key: &str) -> Self {
        self.operations.push(wit::Operation::Delete(key.into()));
        self
    }

    /// Add `delta` to the counter at `key`.
    pub fn increment(mut self, key: &str, delta: i64) -> Self {
        self.operations
            .push(wit::Operation::Increment(wit::CounterDelta {
                key: key.into(),
                delta,
            }));
        self
    }

    /// Run the batch.
    pub fn commit(self) -> Result<BatchOutcome, Error> {
        Ok(match wit::batch(&self.preconditions, &self.operations)? {
            wit::BatchOutcome::Committed => BatchOutcome::Committed,
            wit::BatchOutcome::PreconditionFailed(i) => BatchOutcome::PreconditionFailed(i),
        })
    }
}
