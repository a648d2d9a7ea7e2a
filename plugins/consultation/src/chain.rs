//! The ballot record: every vote is an entry; entries are linked in sequence order into a
//! hash chain (`hash = sha256(prev_hash as hex ‖ the entry as compact JSON, keys sorted)`) that anyone can export, check
//! and re-tally. Pure functions, tested natively.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// The hash before the first entry.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// One vote as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Position in the topic's sequence (gaps are allowed: a vote that lost a race).
    pub seq: u64,
    pub topic: u64,
    /// The voter, pseudonymous: sha256(topic salt ‖ voter key), first 32 hex digits. The
    /// same voter (person or household) always gets the same pseudonym within a topic.
    pub voter: String,
    /// For an open ballot: the voter's display name; for a secret one: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// The chosen option's index.
    pub choice: usize,
    /// Weight in hundredths (floor area in 0.01 m² for property votes, else 100).
    pub weight: u64,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
    /// Cast by a staff member for the voter (帮办代办).
    pub assisted: bool,
}

impl Entry {
    /// The bytes hashed: the entry as compact JSON with its keys sorted (what `jq -cS`
    /// prints), so anyone can recompute the chain from an export.
    fn canonical(&self) -> Vec<u8> {
        let sorted: BTreeMap<String, serde_json::Value> = match serde_json::to_value(self) {
            Ok(serde_json::Value::Object(m)) => m.into_iter().collect(),
            _ => BTreeMap::new(),
        };
        serde_json::to_vec(&sorted).unwrap_or_default()
    }
}

/// An entry with its links, as exported.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    #[serde(flatten)]
    pub entry: Entry,
    pub prev: String,
    pub hash: String,
}

pub fn link(prev: &str, entry: &Entry) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(entry.canonical());
    hex::encode(h.finalize())
}

/// Link entries (sorted by `seq`) into a chain.
pub fn build(mut entries: Vec<Entry>) -> Vec<Link> {
    entries.sort_by_key(|e| e.seq);
    let mut prev = GENESIS.to_owned();
    entries
        .into_iter()
        .map(|entry| {
            let hash = link(&prev, &entry);
            let l = Link {
                entry,
                prev: prev.clone(),
                hash: hash.clone(),
            };
            prev = hash;
            l
        })
        .collect()
}

/// The last hash of a chain.
pub fn head(chain: &[Link]) -> &str {
    chain.last().map(|l| l.hash.as_str()).unwrap_or(GENESIS)
}

/// Why a chain does not verify.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    pub seq: u64,
    pub reason: &'static str,
}

/// Check every link.
pub fn verify(chain: &[Link]) -> Result<(), Broken> {
    let mut prev = GENESIS;
    let mut last_seq = None;
    for l in chain {
        if last_seq.is_some_and(|s| l.entry.seq <= s) {
            return Err(Broken {
                seq: l.entry.seq,
                reason: "out of order",
            });
        }
        if l.prev != prev {
            return Err(Broken {
                seq: l.entry.seq,
                reason: "does not follow the previous entry",
            });
        }
        if link(prev, &l.entry) != l.hash {
            return Err(Broken {
                seq: l.entry.seq,
                reason: "contents do not match the hash",
            });
        }
        prev = &l.hash;
        last_seq = Some(l.entry.seq);
    }
    Ok(())
}

/// The result of counting a chain: each voter's last entry counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    /// Votes per option.
    pub votes: Vec<u64>,
    /// Weight per option, in hundredths.
    pub weight: Vec<u64>,
    /// Distinct voters.
    pub turnout: u64,
    /// Their total weight, in hundredths.
    pub turnout_weight: u64,
    pub assisted: u64,
}

pub fn tally(chain: &[Link], options: usize) -> Tally {
    let mut last: BTreeMap<&str, &Entry> = BTreeMap::new();
    for l in chain {
        last.insert(&l.entry.voter, &l.entry);
    }
    let mut t = Tally {
        votes: vec![0; options],
        weight: vec![0; options],
        ..Tally::default()
    };
    for e in last.values() {
        if e.choice < options {
            t.votes[e.choice] += 1;
            t.weight[e.choice] += e.weight;
        }
        t.turnout += 1;
        t.turnout_weight += e.weight;
        if e.assisted {
            t.assisted += 1;
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(seq: u64, voter: &str, choice: usize) -> Entry {
        Entry {
            seq,
            topic: 1,
            voter: voter.into(),
            name: None,
            choice,
            weight: 100,
            at: 1_700_000_000_000 + seq as i64,
            assisted: seq == 2,
        }
    }

    #[test]
    fn a_changed_vote_counts_once_as_its_last_choice() {
        let chain = build(vec![e(3, "a", 1), e(1, "a", 0), e(2, "b", 0)]);
        assert_eq!(chain[0].entry.seq, 1);
        verify(&chain).unwrap();
        let t = tally(&chain, 2);
        assert_eq!(t.votes, vec![1, 1]);
        assert_eq!(t.turnout, 2);
        assert_eq!(t.assisted, 1);
    }

    #[test]
    fn any_edit_insertion_or_removal_breaks_the_chain() {
        let chain = build(vec![e(1, "a", 0), e(2, "b", 0), e(4, "c", 1)]);
        let mut edited = chain.clone();
        edited[1].entry.choice = 1;
        assert_eq!(verify(&edited).unwrap_err().seq, 2);
        let mut removed = chain.clone();
        removed.remove(1);
        assert_eq!(
            verify(&removed).unwrap_err().reason,
            "does not follow the previous entry"
        );
        let mut inserted = chain.clone();
        let forged = e(3, "d", 1);
        let hash = link(&chain[1].hash, &forged);
        inserted.insert(
            2,
            Link {
                entry: forged,
                prev: chain[1].hash.clone(),
                hash,
            },
        );
        assert_eq!(verify(&inserted).unwrap_err().seq, 4);
        let mut reordered = chain.clone();
        reordered.swap(0, 1);
        assert!(verify(&reordered).is_err());
    }

    #[test]
    fn the_head_names_the_whole_chain() {
        let a = build(vec![e(1, "a", 0), e(2, "b", 1)]);
        let b = build(vec![e(1, "a", 0), e(2, "b", 0)]);
        assert_ne!(head(&a), head(&b));
        assert_eq!(head(&[]), GENESIS);
    }
}
