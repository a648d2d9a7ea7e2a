//! The audit log: admin actions are recorded in a hash chain, and any edit or deletion is
//! detected — through the platform, the API and `linli audit verify`, on both backends.

use linli::storage::audit::Verdict;
use linli_tests::{Backend, HELLO, ROOT, TestHost, on_both_backends};

async fn admin_actions_are_chained_and_tampering_is_detected(backend: Backend) {
    let h = TestHost::start(backend, |_| {}).await;
    h.village("dongcun").await;
    h.install("dongcun", HELLO).await;
    let p = &h.platform;
    p.set_status(
        &ROOT,
        "dongcun",
        "hello",
        linli::storage::installs::Status::Suspended,
        Some("维护"),
    )
    .await
    .unwrap();
    p.uninstall(&ROOT, "dongcun", "hello", false).await.unwrap();

    let records = p
        .audit_records(
            &ROOT,
            linli::storage::audit::Query {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let actions: Vec<&str> = records.iter().map(|r| r.action.as_str()).collect();
    assert_eq!(
        actions,
        [
            "tenant.create",
            "tenant.create",
            "tenant.create",
            "plugin.install",
            "plugin.suspend",
            "plugin.uninstall"
        ]
    );
    assert_eq!(records[3].plugin.as_deref(), Some("hello"));
    assert_eq!(records[3].tenant.as_deref(), Some("dongcun"));
    assert_eq!(records[0].prev_hash, linli::storage::audit::GENESIS);
    for pair in records.windows(2) {
        assert_eq!(pair[1].prev_hash, pair[0].hash);
    }
    assert_eq!(
        p.verify_audit(&ROOT).await.unwrap(),
        Verdict::Intact { records: 6 }
    );

    // The admin API shows the same records.
    let r = h
        .admin(reqwest::Method::GET, "/api/v1/audit?after=3&limit=2")
        .send()
        .await
        .unwrap();
    let page: serde_json::Value = r.json().await.unwrap();
    assert_eq!(page.as_array().unwrap().len(), 2);
    assert_eq!(page[0]["action"], "plugin.install");

    // Edit a record in the database: detected at that record.
    sqlx::query("UPDATE audit_log SET outcome = 'denied' WHERE seq = 4")
        .execute(p.db.pool())
        .await
        .unwrap();
    assert!(matches!(
        p.verify_audit(&ROOT).await.unwrap(),
        Verdict::Broken { seq: 4, .. }
    ));
    sqlx::query("UPDATE audit_log SET outcome = 'ok' WHERE seq = 4")
        .execute(p.db.pool())
        .await
        .unwrap();
    assert_eq!(
        p.verify_audit(&ROOT).await.unwrap(),
        Verdict::Intact { records: 6 }
    );

    // Re-hash an edited record and every record after it, as someone who can write the
    // database but not read the audit key would: sha256 is not the chain's keyed hash, so
    // the edited record itself no longer verifies.
    let mut prev = records[0].hash.clone();
    for (i, r) in records.iter().enumerate().skip(1) {
        let mut forged = r.clone();
        if i == 1 {
            forged.actor = "someone-else".into();
        }
        forged.prev_hash = prev.clone();
        forged.hash = forged.compute_hash(None);
        sqlx::query("UPDATE audit_log SET actor = $1, prev_hash = $2, hash = $3 WHERE seq = $4")
            .bind(&forged.actor)
            .bind(&forged.prev_hash)
            .bind(&forged.hash)
            .bind(forged.seq)
            .execute(p.db.pool())
            .await
            .unwrap();
        prev = forged.hash;
    }
    match p.verify_audit(&ROOT).await.unwrap() {
        Verdict::Broken { seq, reason } => {
            assert_eq!(seq, 2);
            assert!(reason.contains("edited"), "{reason}");
        }
        other => panic!("a re-hashed chain passed: {other:?}"),
    }

    // Delete a record: detected as missing.
    let h2 = TestHost::start(backend, |_| {}).await;
    h2.village("dongcun").await;
    linli::storage::audit::seal(&h2.platform.db).await.unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(h2.platform.db.pool())
        .await
        .unwrap();
    match h2.platform.verify_audit(&ROOT).await.unwrap() {
        Verdict::Broken { seq, reason } => {
            assert_eq!(seq, 2);
            assert!(reason.contains("missing"), "{reason}");
        }
        other => panic!("deletion not detected: {other:?}"),
    }
}

/// Concurrent appends still form one unbroken chain.
async fn concurrent_appends_form_one_chain(backend: Backend) {
    let h = TestHost::start(backend, |_| {}).await;
    let mut tasks = Vec::new();
    for i in 0..20 {
        let p = h.platform.clone();
        tasks.push(tokio::spawn(async move {
            let id = format!("county-{i}");
            p.create_tenant(
                &ROOT,
                &id,
                None,
                linli::storage::tenants::TenantKind::County,
                "县",
                "County",
            )
            .await
            .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(
        h.platform.verify_audit(&ROOT).await.unwrap(),
        Verdict::Intact { records: 20 }
    );
}

/// Retention: nothing younger than audit.retention_days goes; pruning keeps the chain
/// verifiable through an anchor backed by an audit.prune record; moving or dropping either
/// is detected.
async fn retention_prunes_and_the_chain_still_verifies(backend: Backend) {
    use linli::storage::audit;
    let h = TestHost::start(backend, |_| {}).await;
    h.village("dongcun").await;
    let p = &h.platform;
    // Three records, all younger than the 180-day minimum: housekeeping prunes nothing.
    p.housekeeping().await.unwrap();
    assert_eq!(p.prune_audit().await.unwrap(), 0);
    assert_eq!(
        p.verify_audit(&ROOT).await.unwrap(),
        Verdict::Intact { records: 3 }
    );
    // Prune as if they were old (cut-off in the future).
    let future = linli::storage::now_ms() + 1_000;
    assert_eq!(audit::prune(&p.db, future, "admin").await.unwrap(), 3);
    let kept = audit::list(&p.db, 0, 100).await.unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!((kept[0].seq, kept[0].action.as_str()), (4, "audit.prune"));
    assert_eq!(
        p.verify_audit(&ROOT).await.unwrap(),
        Verdict::Intact { records: 1 }
    );
    h.village("xicun").await;
    assert_eq!(
        p.verify_audit(&ROOT).await.unwrap(),
        Verdict::Intact { records: 2 }
    );

    // Moving the anchor by hand (to hide a deletion) is caught.
    sqlx::query("UPDATE audit_anchor SET seq = 4, hash = $1")
        .bind(&kept[0].hash)
        .execute(p.db.pool())
        .await
        .unwrap();
    sqlx::query("DELETE FROM audit_log WHERE seq = 4")
        .execute(p.db.pool())
        .await
        .unwrap();
    match p.verify_audit(&ROOT).await.unwrap() {
        Verdict::Broken { reason, .. } => assert!(reason.contains("audit.prune"), "{reason}"),
        other => panic!("moved anchor not detected: {other:?}"),
    }
    // Dropping the anchor: the first kept record no longer links to the genesis.
    sqlx::query("DELETE FROM audit_anchor")
        .execute(p.db.pool())
        .await
        .unwrap();
    assert!(matches!(
        p.verify_audit(&ROOT).await.unwrap(),
        Verdict::Broken { seq: 1, .. }
    ));
}

on_both_backends!(
    retention_prunes_and_the_chain_still_verifies,
    admin_actions_are_chained_and_tampering_is_detected,
    concurrent_appends_form_one_chain
);
