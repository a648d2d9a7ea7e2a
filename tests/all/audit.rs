//! The audit log: admin actions are recorded in a hash chain, and any edit or deletion is
//! detected — through the platform, the API and `linli audit verify`, on both backends.

use linli::storage::audit::Verdict;
use linli_tests::{Backend, HELLO, TestHost, on_both_backends};

async fn admin_actions_are_chained_and_tampering_is_detected(backend: Backend) {
    let h = TestHost::start(backend, |_| {}).await;
    h.village("dongcun").await;
    h.install("dongcun", HELLO).await;
    let p = &h.platform;
    p.set_status(
        "dongcun",
        "hello",
        linli::storage::installs::Status::Suspended,
        Some("维护"),
    )
    .await
    .unwrap();
    p.uninstall("dongcun", "hello", false).await.unwrap();

    let records = p.audit_records(0, 100).await.unwrap();
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
        p.verify_audit().await.unwrap(),
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
        p.verify_audit().await.unwrap(),
        Verdict::Broken { seq: 4, .. }
    ));
    sqlx::query("UPDATE audit_log SET outcome = 'ok' WHERE seq = 4")
        .execute(p.db.pool())
        .await
        .unwrap();
    assert_eq!(
        p.verify_audit().await.unwrap(),
        Verdict::Intact { records: 6 }
    );

    // Re-hash an edited record to hide the edit: the next record no longer links to it.
    let mut forged = records[1].clone();
    forged.actor = "someone-else".into();
    forged.hash = forged.compute_hash();
    sqlx::query("UPDATE audit_log SET actor = $1, hash = $2 WHERE seq = 2")
        .bind(&forged.actor)
        .bind(&forged.hash)
        .execute(p.db.pool())
        .await
        .unwrap();
    assert!(matches!(
        p.verify_audit().await.unwrap(),
        Verdict::Broken { seq: 3, .. }
    ));

    // Delete a record: detected as missing.
    let h2 = TestHost::start(backend, |_| {}).await;
    h2.village("dongcun").await;
    sqlx::query("DELETE FROM audit_log WHERE seq = 2")
        .execute(h2.platform.db.pool())
        .await
        .unwrap();
    match h2.platform.verify_audit().await.unwrap() {
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
        h.platform.verify_audit().await.unwrap(),
        Verdict::Intact { records: 20 }
    );
}

on_both_backends!(
    admin_actions_are_chained_and_tampering_is_detected,
    concurrent_appends_form_one_chain
);
