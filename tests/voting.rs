//! An election at scale, shared by the load test (`tests/all/load.rs`, which checks every
//! vote) and the benchmark (which times it): the demo county with `voters` extra adult
//! residents in 东村 imported from a roster, a session for each, a topic opened by the
//! community staff member over HTTP, and everyone voting at once over HTTP.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use linli::identity::auth::{new_token, token_hash};
use linli::platform::{DEMO_PASSWORD, ImportFormat, SignIn};
use linli::storage::sessions::{SessionRow, create_session};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::{Backend, CONSULTATION, ROOT, TestHost};

/// The demo staff member who opens the topic.
const STAFF: &str = "13900000002";

pub struct Election {
    pub host: TestHost,
    /// A session token per imported voter, in import order.
    pub tokens: Vec<String>,
    /// `/t/dongcun/p/consultation/topics/{id}`.
    pub topic: String,
}

/// The demo county with the consultation plugin, `voters` more residents of 东村 (adults,
/// one household each) and a topic open now (secret ballot, no changes, three options).
pub async fn election(backend: Backend, voters: usize) -> Election {
    let plugins = tempfile::tempdir().unwrap();
    std::fs::copy(CONSULTATION, plugins.path().join("consultation.wasm")).unwrap();
    let dir = plugins.path().to_path_buf();
    let host = TestHost::start(backend, move |c| {
        c.seed_demo = true;
        c.demo_plugins_dir = Some(dir);
    })
    .await;
    assert!(host.platform.seed_demo().await.unwrap());
    let p = &host.platform;

    // The roster, imported once (一次采集、多方利用).
    let mut csv = String::from("姓名,手机号,出生日期,户\n");
    for i in 0..voters {
        csv.push_str(&format!("居民{i},150{i:08},1970-01-01,东村{i}号\n"));
    }
    let report = p
        .import_people(&ROOT, "dongcun", ImportFormat::Csv, csv.as_bytes())
        .await
        .unwrap();
    assert!(report.imported, "{report:?}");
    assert_eq!(report.created, voters);

    // A session each, minted directly: the subject here is voting, not argon2.
    let now = linli::storage::now_ms();
    let mut tokens = Vec::with_capacity(voters);
    for i in 0..voters {
        let person = linli::storage::people::get_by_phone(&p.db, &format!("150{i:08}"))
            .await
            .unwrap()
            .unwrap();
        let (token, _) = new_token();
        let row = SessionRow {
            person_id: person.id,
            stage: "full".into(),
            acting_for: None,
            reason: None,
            created_at: now,
            expires_at: now + 3_600_000,
            mfa: false,
            attempts: 0,
        };
        create_session(&p.db, &token_hash(&token), &row)
            .await
            .unwrap();
        tokens.push(token);
    }

    // The staff member opens the topic over HTTP.
    let SignIn::Session { token: staff, .. } = p
        .sign_in_password(STAFF, DEMO_PASSWORD, "test")
        .await
        .unwrap()
    else {
        panic!("staff need no second factor");
    };
    let body = json!({
        "title": "是否同意修建村文化礼堂",
        "options": "同意\n不同意\n弃权",
        "eligibility": "adults",
        "ballot": "secret",
        "quorum": "majority",
        "allow_change": false,
        "opens_at": "2000-01-01T00:00",
        "closes_at": "2099-12-31T23:59",
    });
    let r = host
        .client
        .post(host.url("/t/dongcun/p/consultation/topics"))
        .bearer_auth(&staff)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let created: Value = r.json().await.unwrap();
    assert_eq!(
        created["electorate"]["voters"].as_u64(),
        Some(voters as u64 + 2),
        "the imported voters and the two demo residents"
    );
    let topic = format!("/t/dongcun/p/consultation/topics/{}", created["id"]);
    Election {
        host,
        tokens,
        topic,
    }
}

/// One vote per (token, choice), `concurrency` requests in flight over HTTP. Returns each
/// answer's status and body in the order given, and how long it all took.
pub async fn vote_all(
    e: &Election,
    votes: &[(usize, usize)],
    concurrency: usize,
) -> (Vec<(u16, String)>, Duration) {
    let url = e.host.url(&format!("{}/vote", e.topic));
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(concurrency)
        .build()
        .unwrap();
    let started = Instant::now();
    let mut statuses: Vec<(usize, (u16, String))> = futures::stream::iter(votes.iter().enumerate())
        .map(|(n, &(voter, choice))| {
            let client = client.clone();
            let url = url.clone();
            let token = e.tokens[voter].clone();
            async move {
                let r = client
                    .post(&url)
                    .bearer_auth(token)
                    .json(&json!({ "choice": choice }))
                    .send()
                    .await
                    .unwrap();
                let status = r.status().as_u16();
                (n, (status, r.text().await.unwrap_or_default()))
            }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let elapsed = started.elapsed();
    statuses.sort_by_key(|(n, _)| *n);
    (statuses.into_iter().map(|(_, s)| s).collect(), elapsed)
}

/// Check an exported ballot record as anyone could, without linli's code: each entry's
/// hash is sha256(previous hash as hex ‖ the entry without `prev` and `hash` as compact JSON
/// with sorted keys). Returns whether the chain holds up to its head, and the re-tally
/// (each voter's last entry counts).
pub fn retally(record: &Value) -> (bool, Vec<u64>) {
    let mut prev = record["genesis"].as_str().unwrap().to_owned();
    let mut last: BTreeMap<String, usize> = BTreeMap::new();
    for e in record["entries"].as_array().unwrap() {
        let mut entry: BTreeMap<String, Value> = e
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        let hash = entry.remove("hash").unwrap();
        if entry.remove("prev").unwrap() != prev {
            return (false, vec![]);
        }
        let mut h = Sha256::new();
        h.update(prev.as_bytes());
        h.update(serde_json::to_vec(&entry).unwrap());
        let computed = hex::encode(h.finalize());
        if computed != hash.as_str().unwrap() {
            return (false, vec![]);
        }
        prev = computed;
        last.insert(
            entry["voter"].as_str().unwrap().to_owned(),
            entry["choice"].as_u64().unwrap() as usize,
        );
    }
    let mut votes = vec![0; record["options"].as_array().unwrap().len()];
    for c in last.values() {
        votes[*c] += 1;
    }
    (prev == record["head"].as_str().unwrap(), votes)
}
