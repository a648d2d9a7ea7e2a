//! `plugins/consultation` on a demo county (real SQLite or Postgres), over HTTP as the shell
//! and scripts call it: topics, eligibility, one vote each, changes, assisted votes, comments
//! and moderation, sealing, the ballot chain re-tallied independently, disclosure; every
//! page passes the host's page check.

use reqwest::Method;
use serde_json::{Value, json};

use crate::identity::{GRID, LI, STAFF, WANG, ZHANG, call, demo_with, get, person_id, sign_in};
use linli_tests::voting::retally;
use linli_tests::{Backend, CONSULTATION, TestHost, on_both_backends};

const PAGE: &str = "application/vnd.linli.page+json";
const BASE: &str = "/t/dongcun/p/consultation";

/// `YYYY-MM-DDTHH:MM` in China time, `offset_ms` from now.
fn local(offset_ms: i64) -> String {
    let ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
        + offset_ms
        + 8 * 3600 * 1000;
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let rest = secs.rem_euclid(86_400);
    // civil_from_days
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}",
        rest / 3600,
        (rest % 3600) / 60
    )
}

/// A page request as the shell makes it: the answer must be a page the host let through.
async fn page(
    h: &TestHost,
    token: Option<&str>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> Value {
    let mut r = h
        .client
        .request(method, h.url(&format!("{BASE}{path}")))
        .header("accept", PAGE);
    if let Some(t) = token {
        r = r.bearer_auth(t);
    }
    if let Some(b) = body {
        r = r.json(&b);
    }
    let r = r.send().await.unwrap();
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{path}: {text}");
    assert!(ct.starts_with(PAGE), "{path}: {ct} {text}");
    let page: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(page["linli_page"], 1);
    page
}

fn topic_body(eligibility: &str, quorum: &str, allow_change: bool) -> Value {
    json!({
        "title": "修缮村东道路",
        "description": "村东道路年久失修，拟用集体资金修缮。",
        "options": "同意\n不同意\n弃权",
        "eligibility": eligibility,
        "ballot": "secret",
        "quorum": quorum,
        "allow_change": allow_change,
        "opens_at": local(-3_600_000),
        "closes_at": local(86_400_000),
    })
}

async fn the_whole_consultation(backend: Backend) {
    let h = demo_with(backend, &[CONSULTATION]).await;
    let staff = sign_in(&h, STAFF).await;
    let zhang = sign_in(&h, ZHANG).await;
    let wang = sign_in(&h, WANG).await;
    let grid = sign_in(&h, GRID).await;

    // Anyone sees the list: the demo seed opened one topic in dongcun, none in xicun.
    let home = page(&h, None, Method::GET, "/", None).await;
    assert_eq!(home["body"][0]["type"], "list", "{home}");
    assert_eq!(home["body"][0]["items"].as_array().unwrap().len(), 1);
    let (status, seeded) = call(&h, None, Method::GET, &format!("{BASE}/"), None).await;
    assert_eq!(status, 200, "{seeded}");
    assert_eq!(seeded[0]["title"], "是否用村集体资金修缮村东道路");
    assert_eq!(seeded[0]["sealed"], false);
    let (status, xicun) = call(&h, None, Method::GET, "/t/xicun/p/consultation/", None).await;
    assert_eq!((status, xicun), (200, json!([])));
    // Only staff open topics.
    let (status, r) = call(
        &h,
        Some(&zhang),
        Method::POST,
        &format!("{BASE}/topics"),
        Some(topic_body("adults", "majority", true)),
    )
    .await;
    assert_eq!(status, 403, "{r}");
    // Bad input is refused field by field.
    let mut bad = topic_body("adults", "majority", true);
    bad["options"] = json!("");
    bad["closes_at"] = json!("tomorrow");
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{BASE}/topics"),
        Some(bad),
    )
    .await;
    assert_eq!(status, 422, "{r}");
    let fields: Vec<_> = r["error"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["options", "closes_at"]);
    // Owners' votes go with the double two-thirds rule only.
    let (status, _) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{BASE}/topics"),
        Some(topic_body("owners", "majority", true)),
    )
    .await;
    assert_eq!(status, 400);

    // Adults of dongcun: both demo residents there (born 1948 and 1942).
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{BASE}/topics"),
        Some(topic_body("adults", "majority", true)),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    let id = r["id"].as_u64().unwrap();
    assert_eq!(r["electorate"]["voters"], 2);
    let topic = format!("{BASE}/topics/{id}");

    // 张秀英 votes, repeats, changes her mind: one voter, her last choice.
    let vote = |choice: u64| json!({ "choice": choice });
    let (status, r) = call(
        &h,
        Some(&zhang),
        Method::POST,
        &format!("{topic}/vote"),
        Some(vote(0)),
    )
    .await;
    assert_eq!((status, r["voted"].as_str()), (200, Some("cast")), "{r}");
    let (_, r) = call(
        &h,
        Some(&zhang),
        Method::POST,
        &format!("{topic}/vote"),
        Some(vote(0)),
    )
    .await;
    assert_eq!(r["voted"], "unchanged");
    let voted = page(
        &h,
        Some(&zhang),
        Method::POST,
        &format!("/topics/{id}/vote"),
        Some(json!({"choice": "1"})),
    )
    .await;
    assert_eq!(voted["notice"]["text"]["zh"], "您的投票已更改。");
    let (status, _) = call(
        &h,
        Some(&zhang),
        Method::POST,
        &format!("{topic}/vote"),
        Some(vote(7)),
    )
    .await;
    assert_eq!(status, 400);

    // A xicun resident cannot vote in dongcun; nobody votes anonymously.
    let (status, _) = call(
        &h,
        Some(&wang),
        Method::POST,
        &format!("{topic}/vote"),
        Some(vote(0)),
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = call(
        &h,
        None,
        Method::POST,
        &format!("{topic}/vote"),
        Some(vote(0)),
    )
    .await;
    assert_eq!(status, 401);

    // 李桂兰 has no smartphone: the grid worker votes for her in assisted mode.
    let li_id = person_id(&h, LI).await;
    let (status, r) = call(
        &h,
        Some(&grid),
        Method::POST,
        "/api/v1/assist",
        Some(json!({"resident": li_id, "reason": "代老人投票", "minutes": 15})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let assisted = r["token"].as_str().unwrap().to_owned();
    let (_, r) = call(
        &h,
        Some(&assisted),
        Method::POST,
        &format!("{topic}/vote"),
        Some(vote(0)),
    )
    .await;
    assert_eq!(r["voted"], "cast", "{r}");

    // Running counts: a secret ballot shows turnout, and the counters agree.
    let (_, results) = get(&h, &staff, &format!("{topic}/results")).await;
    assert_eq!(results["counters"]["votes"], json!([1, 1, 0]));
    assert_eq!(results["counters"]["turnout"], 2);
    let p = page(
        &h,
        Some(&zhang),
        Method::GET,
        &format!("/topics/{id}"),
        None,
    )
    .await;
    let text = p.to_string();
    assert!(text.contains("已投票 2 人，共 2 名选民"), "{text}");
    assert!(text.contains("您已投票：不同意"), "{text}");

    // Discussion and moderation.
    let (status, _) = call(
        &h,
        Some(&zhang),
        Method::POST,
        &format!("{topic}/comments"),
        Some(json!({"text": "<b>路灯</b>也要修"})),
    )
    .await;
    assert_eq!(status, 204);
    let (status, _) = call(
        &h,
        Some(&zhang),
        Method::POST,
        &format!("{topic}/comments/1/hide"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403);
    let p = page(
        &h,
        Some(&zhang),
        Method::GET,
        &format!("/topics/{id}"),
        None,
    )
    .await;
    assert!(
        p.to_string().contains("<b>路灯</b>也要修"),
        "comments are text"
    );
    page(
        &h,
        Some(&staff),
        Method::POST,
        &format!("/topics/{id}/comments/1/hide"),
        Some(json!({})),
    )
    .await;
    let p = page(
        &h,
        Some(&zhang),
        Method::GET,
        &format!("/topics/{id}"),
        None,
    )
    .await;
    assert!(!p.to_string().contains("路灯"));
    assert!(p.to_string().contains("该评论已被管理员隐藏"));

    // Close: the result is sealed, quorum met (2 of 2), one assisted ballot.
    let (status, r) = call(
        &h,
        Some(&zhang),
        Method::POST,
        &format!("{topic}/close"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 403, "{r}");
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{topic}/close"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 200, "{r}");
    let sealed = &r["sealed"];
    assert_eq!(sealed["quorum_met"], true);
    assert_eq!(sealed["tally"]["votes"], json!([1, 1, 0]));
    assert_eq!(sealed["tally"]["assisted"], 1);
    assert_eq!(sealed["entries"], 3);
    let (status, _) = call(
        &h,
        Some(&zhang),
        Method::POST,
        &format!("{topic}/vote"),
        Some(vote(0)),
    )
    .await;
    assert_eq!(status, 409);

    // Anyone exports the record and re-tallies it independently.
    let (status, record) = call(&h, None, Method::GET, &format!("{topic}/record"), None).await;
    assert_eq!(status, 200);
    let (intact, votes) = retally(&record);
    assert!(intact);
    assert_eq!(votes, vec![1, 1, 0]);
    assert_eq!(record["head"], sealed["head"]);
    assert_eq!(record["entries"][2]["assisted"], true);
    assert!(
        record["entries"][0].get("name").is_none(),
        "secret ballot: no names"
    );
    let p = page(&h, None, Method::GET, &format!("/topics/{id}/record"), None).await;
    assert!(p.to_string().contains("完整"));

    // Posted to the disclosure page, once.
    let (status, d) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{topic}/disclose"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 201, "{d}");
    let (status, _) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{topic}/disclose"),
        Some(json!({})),
    )
    .await;
    assert_eq!(status, 409);
    let p = page(&h, None, Method::GET, "/disclosure", None).await;
    let text = p.to_string();
    assert!(
        text.contains("修缮村东道路") && text.contains("达到有效规则"),
        "{text}"
    );

    // An edit in the database shows: the record no longer matches the sealed head.
    let key = format!("entry/{id:08}/");
    let row = sqlx::query(
        "SELECT key FROM kv WHERE plugin_id = 'consultation' AND key LIKE $1 ORDER BY key LIMIT 1",
    )
    .bind(format!("{key}%"))
    .fetch_one(h.platform.db.pool())
    .await
    .unwrap();
    let first: String = sqlx::Row::get(&row, "key");
    let mut forged: Value = record["entries"][0].clone();
    forged.as_object_mut().unwrap().remove("prev");
    forged.as_object_mut().unwrap().remove("hash");
    forged["choice"] = json!(2);
    sqlx::query("UPDATE kv SET value = $1 WHERE plugin_id = 'consultation' AND key = $2")
        .bind(serde_json::to_vec(&forged).unwrap())
        .bind(&first)
        .execute(h.platform.db.pool())
        .await
        .unwrap();
    let (_, record) = call(&h, None, Method::GET, &format!("{topic}/record"), None).await;
    assert_ne!(record["head"], record["sealed_head"]);
    let p = page(&h, None, Method::GET, &format!("/topics/{id}/record"), None).await;
    assert!(p.to_string().contains("\"否\""), "{p}");

    // Every staff page passes the host's check too.
    for path in ["/", "/topics/new", "/owners", "/disclosure"] {
        page(&h, Some(&staff), Method::GET, path, None).await;
    }
}

/// Property owners weighted by floor area under the double two-thirds rule, one vote per
/// household.
async fn owners_by_floor_area(backend: Backend) {
    let h = demo_with(backend, &[CONSULTATION]).await;
    let staff = sign_in(&h, STAFF).await;
    let zhang = sign_in(&h, ZHANG).await;
    for (household, area) in [("东村一组3号", "100"), ("东村二组8号", "50")] {
        let (status, r) = call(
            &h,
            Some(&staff),
            Method::POST,
            &format!("{BASE}/owners"),
            Some(json!({"household": household, "area": area})),
        )
        .await;
        assert_eq!(status, 200, "{r}");
    }
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{BASE}/owners"),
        Some(json!({"household": "x", "area": "-1"})),
    )
    .await;
    assert_eq!(status, 422, "{r}");
    let (status, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{BASE}/topics"),
        Some(topic_body("owners", "double-two-thirds", false)),
    )
    .await;
    assert_eq!(status, 201, "{r}");
    assert_eq!(r["electorate"], json!({"voters": 2, "weight": 15000}));
    let topic = format!("{BASE}/topics/{}", r["id"]);
    let (_, r) = call(
        &h,
        Some(&zhang),
        Method::POST,
        &format!("{topic}/vote"),
        Some(json!({"choice": 0})),
    )
    .await;
    assert_eq!(r["voted"], "cast", "{r}");
    // No changes on this topic.
    let (status, _) = call(
        &h,
        Some(&zhang),
        Method::POST,
        &format!("{topic}/vote"),
        Some(json!({"choice": 1})),
    )
    .await;
    assert_eq!(status, 409);
    let (_, r) = call(
        &h,
        Some(&staff),
        Method::POST,
        &format!("{topic}/close"),
        Some(json!({})),
    )
    .await;
    // 2/3 of the area (100 of 150 m²) but only 1 of 2 owners: not valid.
    assert_eq!(r["sealed"]["tally"]["turnout_weight"], 10000);
    assert_eq!(r["sealed"]["quorum_met"], false, "{r}");
}

on_both_backends!(the_whole_consultation, owners_by_floor_area);
