//! The data suite: every operation of the data capability's storage, its quotas and its
//! atomicity under concurrency — run on SQLite and on Postgres.

use linli::storage::kv::{self, BatchOutcome, Operation, Precondition, Scope};
use linli::storage::{Db, StorageError};
use linli_tests::{Backend, fresh_postgres_url, on_both_backends, test_db};

fn scope(tenant: &str, plugin: &str) -> Scope {
    Scope {
        tenant: tenant.into(),
        plugin: plugin.into(),
    }
}

const MAX: u64 = 1_000;

async fn db(backend: Backend) -> (Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    (test_db(backend, dir.path()).await, dir)
}

async fn get_set_delete_exists(backend: Backend) {
    let (db, _dir) = db(backend).await;
    let s = scope("dongcun", "hello");
    assert_eq!(kv::get(&db, &s, "a").await.unwrap(), None);
    assert!(!kv::exists(&db, &s, "a").await.unwrap());
    kv::set(&db, &s, "a", b"1", MAX).await.unwrap();
    kv::set(&db, &s, "a", b"2", MAX).await.unwrap();
    kv::set(&db, &s, "empty", b"", MAX).await.unwrap();
    kv::set(&db, &s, "二进制", &[0, 255, 1], MAX).await.unwrap();
    assert_eq!(
        kv::get(&db, &s, "a").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert_eq!(
        kv::get(&db, &s, "empty").await.unwrap().as_deref(),
        Some(&b""[..])
    );
    assert_eq!(
        kv::get(&db, &s, "二进制").await.unwrap().as_deref(),
        Some(&[0u8, 255, 1][..])
    );
    assert!(kv::exists(&db, &s, "a").await.unwrap());
    assert_eq!(kv::key_count(&db, &s).await.unwrap(), 3);
    assert!(kv::delete(&db, &s, "a").await.unwrap());
    assert!(!kv::delete(&db, &s, "a").await.unwrap());
    assert_eq!(kv::get(&db, &s, "a").await.unwrap(), None);
    assert_eq!(kv::key_count(&db, &s).await.unwrap(), 2);
}

async fn scopes_are_isolated(backend: Backend) {
    let (db, _dir) = db(backend).await;
    let a = scope("dongcun", "hello");
    let b = scope("xicun", "hello");
    let c = scope("dongcun", "spy");
    kv::set(&db, &a, "k", b"a", MAX).await.unwrap();
    kv::set(&db, &b, "k", b"b", MAX).await.unwrap();
    assert_eq!(
        kv::get(&db, &a, "k").await.unwrap().as_deref(),
        Some(&b"a"[..])
    );
    assert_eq!(
        kv::get(&db, &b, "k").await.unwrap().as_deref(),
        Some(&b"b"[..])
    );
    assert_eq!(kv::get(&db, &c, "k").await.unwrap(), None);
    assert!(
        kv::list(&db, &c, "", None, 100)
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    kv::purge(&db, &a).await.unwrap();
    assert_eq!(kv::get(&db, &a, "k").await.unwrap(), None);
    assert_eq!(
        kv::get(&db, &b, "k").await.unwrap().as_deref(),
        Some(&b"b"[..])
    );
}

async fn prefix_listing_paginates_in_order(backend: Backend) {
    let (db, _dir) = db(backend).await;
    let s = scope("dongcun", "hello");
    let mut expected = Vec::new();
    for i in 0..25 {
        let k = format!("vote/{i:03}");
        kv::set(&db, &s, &k, k.as_bytes(), MAX).await.unwrap();
        expected.push(k);
    }
    for other in ["vote", "vote0", "votf/1", "a", "投票/1", "vote/\u{10FFFF}"] {
        kv::set(&db, &s, other, b"x", MAX).await.unwrap();
    }
    expected.push("vote/\u{10FFFF}".into());
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    let mut pages = 0;
    loop {
        let page = kv::list(&db, &s, "vote/", after.as_deref(), 7)
            .await
            .unwrap();
        pages += 1;
        assert!(page.entries.len() <= 7);
        seen.extend(page.entries.iter().map(|(k, _)| k.clone()));
        if !page.more {
            break;
        }
        after = page.entries.last().map(|(k, _)| k.clone());
    }
    assert_eq!(seen, expected);
    assert_eq!(pages, 4);
    // Unicode prefix and the empty prefix.
    let zh = kv::list(&db, &s, "投票", None, 10).await.unwrap();
    assert_eq!(zh.entries.len(), 1);
    let all = kv::list(&db, &s, "", None, 1000).await.unwrap();
    assert_eq!(all.entries.len(), 31);
    let mut sorted: Vec<_> = all.entries.iter().map(|(k, _)| k.clone()).collect();
    sorted.sort();
    assert_eq!(
        sorted,
        all.entries
            .iter()
            .map(|(k, _)| k.clone())
            .collect::<Vec<_>>(),
        "byte order"
    );
}

async fn counters(backend: Backend) {
    let (db, _dir) = db(backend).await;
    let s = scope("dongcun", "hello");
    assert_eq!(kv::increment(&db, &s, "n", 5, MAX).await.unwrap(), 5);
    assert_eq!(kv::increment(&db, &s, "n", -7, MAX).await.unwrap(), -2);
    assert_eq!(
        kv::get(&db, &s, "n").await.unwrap().as_deref(),
        Some(&b"-2"[..])
    );
    kv::set(&db, &s, "text", b"hello", MAX).await.unwrap();
    assert!(matches!(
        kv::increment(&db, &s, "text", 1, MAX).await,
        Err(StorageError::Invalid(_))
    ));
    kv::set(&db, &s, "max", i64::MAX.to_string().as_bytes(), MAX)
        .await
        .unwrap();
    assert!(matches!(
        kv::increment(&db, &s, "max", 1, MAX).await,
        Err(StorageError::Invalid(_))
    ));
    assert_eq!(
        kv::get(&db, &s, "max").await.unwrap().unwrap(),
        i64::MAX.to_string().as_bytes()
    );
}

async fn compare_and_swap(backend: Backend) {
    let (db, _dir) = db(backend).await;
    let s = scope("dongcun", "hello");
    assert!(
        kv::compare_and_swap(&db, &s, "k", None, Some(b"1"), MAX)
            .await
            .unwrap()
    );
    assert!(
        !kv::compare_and_swap(&db, &s, "k", None, Some(b"2"), MAX)
            .await
            .unwrap()
    );
    assert!(
        !kv::compare_and_swap(&db, &s, "k", Some(b"0"), Some(b"2"), MAX)
            .await
            .unwrap()
    );
    assert!(
        kv::compare_and_swap(&db, &s, "k", Some(b"1"), Some(b"2"), MAX)
            .await
            .unwrap()
    );
    assert_eq!(
        kv::get(&db, &s, "k").await.unwrap().as_deref(),
        Some(&b"2"[..])
    );
    assert!(
        kv::compare_and_swap(&db, &s, "k", Some(b"2"), None, MAX)
            .await
            .unwrap()
    );
    assert!(!kv::exists(&db, &s, "k").await.unwrap());
    assert_eq!(kv::key_count(&db, &s).await.unwrap(), 0);
}

async fn batches_are_all_or_nothing(backend: Backend) {
    let (db, _dir) = db(backend).await;
    let s = scope("dongcun", "hello");
    kv::set(&db, &s, "open", b"yes", MAX).await.unwrap();
    let ops = vec![
        Operation::Set("ballot/r1".into(), b"A".to_vec()),
        Operation::Increment("tally/A".into(), 1),
    ];
    let pre = vec![
        Precondition::Equals("open".into(), b"yes".to_vec()),
        Precondition::Absent("ballot/r1".into()),
    ];
    assert_eq!(
        kv::batch(&db, &s, &pre, &ops, MAX).await.unwrap(),
        BatchOutcome::Committed
    );
    assert_eq!(
        kv::batch(&db, &s, &pre, &ops, MAX).await.unwrap(),
        BatchOutcome::PreconditionFailed(1)
    );
    assert_eq!(
        kv::get(&db, &s, "tally/A").await.unwrap().as_deref(),
        Some(&b"1"[..])
    );
    // A failing operation rolls back the operations before it.
    kv::set(&db, &s, "text", b"x", MAX).await.unwrap();
    let bad = vec![
        Operation::Set("ballot/r2".into(), b"A".to_vec()),
        Operation::Delete("open".into()),
        Operation::Increment("text".into(), 1),
    ];
    assert!(matches!(
        kv::batch(&db, &s, &[], &bad, MAX).await,
        Err(StorageError::Invalid(_))
    ));
    assert!(!kv::exists(&db, &s, "ballot/r2").await.unwrap());
    assert!(kv::exists(&db, &s, "open").await.unwrap());
    assert_eq!(
        kv::batch(&db, &s, &[Precondition::Exists("nope".into())], &bad, MAX)
            .await
            .unwrap(),
        BatchOutcome::PreconditionFailed(0)
    );
}

async fn keys_per_scope_quota(backend: Backend) {
    let (db, _dir) = db(backend).await;
    let s = scope("dongcun", "hello");
    for i in 0..5 {
        kv::set(&db, &s, &format!("k{i}"), b"x", 5).await.unwrap();
    }
    // Replacing an existing key is fine at the quota; a new one is not.
    kv::set(&db, &s, "k0", b"y", 5).await.unwrap();
    let err = kv::set(&db, &s, "k5", b"x", 5).await.unwrap_err();
    assert!(
        matches!(&err, StorageError::Quota(m) if m.contains("keys_per_scope")),
        "{err}"
    );
    assert!(matches!(
        kv::increment(&db, &s, "k6", 1, 5).await,
        Err(StorageError::Quota(_))
    ));
    let batch = vec![
        Operation::Delete("k1".into()),
        Operation::Set("k5".into(), b"x".to_vec()),
    ];
    assert_eq!(
        kv::batch(&db, &s, &[], &batch, 5).await.unwrap(),
        BatchOutcome::Committed
    );
    assert_eq!(kv::key_count(&db, &s).await.unwrap(), 5);
    // Another scope has its own quota.
    kv::set(&db, &scope("xicun", "hello"), "k5", b"x", 5)
        .await
        .unwrap();
}

/// Concurrent increments are exact, and "one resident, one vote" holds under contention —
/// also between two handles on one database, as two replicas (or the CLI beside a server)
/// have.
async fn atomic_under_concurrency(backend: Backend) {
    let (db, other, _dir) = two_handles(backend).await;
    let s = scope("dongcun", "vote");
    let committed = race(&db, &other, &s, |db, s, t| async move {
        for _ in 0..25 {
            kv::increment(&db, &s, "visits", 1, MAX).await.unwrap();
        }
        // Ten residents; every task tries to vote as each of them.
        let mut won = 0;
        for r in 0..10 {
            let ballot = format!("ballot/r{r}");
            let outcome = kv::batch(
                &db,
                &s,
                &[Precondition::Absent(ballot.clone())],
                &[
                    Operation::Set(ballot, format!("task{t}").into_bytes()),
                    Operation::Increment("tally".into(), 1),
                ],
                MAX,
            )
            .await
            .unwrap();
            if outcome == BatchOutcome::Committed {
                won += 1;
            }
        }
        won
    })
    .await;
    assert_eq!(
        kv::get(&db, &s, "visits").await.unwrap().as_deref(),
        Some(&b"200"[..])
    );
    assert_eq!(committed, 10, "each resident votes exactly once");
    assert_eq!(
        kv::get(&db, &s, "tally").await.unwrap().as_deref(),
        Some(&b"10"[..])
    );
    assert_eq!(
        kv::list(&db, &s, "ballot/", None, 100)
            .await
            .unwrap()
            .entries
            .len(),
        10
    );
}

/// Writers racing to add new keys at the quota: exactly the quota's worth get in, on either
/// handle, and the key count stays right.
async fn quota_holds_under_concurrency(backend: Backend) {
    let (db, other, _dir) = two_handles(backend).await;
    let s = scope("dongcun", "full");
    let stored = race(&db, &other, &s, |db, s, t| async move {
        let mut stored = 0;
        for i in 0..10 {
            match kv::set(&db, &s, &format!("t{t}/k{i}"), b"x", 30).await {
                Ok(()) => stored += 1,
                Err(StorageError::Quota(_)) => {}
                Err(e) => panic!("{e}"),
            }
        }
        stored
    })
    .await;
    assert_eq!(stored, 30, "exactly keys_per_scope keys were stored");
    assert_eq!(kv::key_count(&db, &s).await.unwrap(), 30);
    assert_eq!(
        kv::list(&db, &s, "", None, 100)
            .await
            .unwrap()
            .entries
            .len(),
        30
    );
}

/// Run `task` as eight concurrent tasks on scope `s`, alternately on the two handles (task
/// number `t` passed in); the sum of what they return.
async fn race<F, Fut>(db: &Db, other: &Db, s: &Scope, task: F) -> usize
where
    F: Fn(Db, Scope, usize) -> Fut,
    Fut: std::future::Future<Output = usize> + Send + 'static,
{
    let tasks: Vec<_> = (0..8)
        .map(|t| {
            let db = if t % 2 == 0 { db } else { other };
            tokio::spawn(task(db.clone(), s.clone(), t))
        })
        .collect();
    let mut sum = 0;
    for t in tasks {
        sum += t.await.unwrap();
    }
    sum
}

/// Two handles on one database — two connection pools, each with its own in-process state,
/// as two replicas have.
async fn two_handles(backend: Backend) -> (Db, Db, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let url = match backend {
        Backend::Sqlite => None,
        Backend::Postgres => Some(fresh_postgres_url().await),
    };
    let one = Db::connect(url.as_deref(), dir.path()).await.unwrap();
    let two = Db::connect(url.as_deref(), dir.path()).await.unwrap();
    (one, two, dir)
}

on_both_backends!(
    quota_holds_under_concurrency,
    get_set_delete_exists,
    scopes_are_isolated,
    prefix_listing_paginates_in_order,
    counters,
    compare_and_swap,
    batches_are_all_or_nothing,
    keys_per_scope_quota,
    atomic_under_concurrency,
);
