//! Topics, ballots and results: the rules, independent of pages.

use linli_sdk::Error;
use linli_sdk::data::{self, Batch, BatchOutcome};
use linli_sdk::services::{Caller, Field, ResidentFilter, identity};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::chain::{self, Entry, Tally};

/// Limits on what a topic may hold.
pub const MAX_OPTIONS: usize = 20;
pub const MAX_TITLE: usize = 100;
pub const MAX_DESCRIPTION: usize = 5000;
pub const MAX_OPTION: usize = 100;
pub const MAX_COMMENT: usize = 1000;
/// Times are entered in China Standard Time (UTC+8, no daylight saving).
pub use linli_sdk::time::{TZ_OFFSET_MS, civil, now_ms, parse_local, show_time};

/// Who may vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Eligibility {
    /// Every resident aged 18 or over on the day voting opens.
    Adults,
    /// One vote per household.
    Households,
    /// Property owners (the register in this plugin), weighted by floor area.
    Owners,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Ballot {
    Secret,
    Open,
}

/// When a vote is valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quorum {
    /// More than half of the electorate voted.
    Majority,
    /// At least two thirds of the electorate (households) voted.
    TwoThirds,
    /// 民法典第二百七十八条: owners holding at least two thirds of the floor area and at least
    /// two thirds of the owners took part.
    DoubleTwoThirds,
}

/// Who could vote when the topic opened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Electorate {
    pub voters: u64,
    /// Total weight in hundredths (floor area for owners; else 100 per voter).
    pub weight: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Topic {
    pub id: u64,
    pub title: String,
    pub description: String,
    pub options: Vec<String>,
    pub eligibility: Eligibility,
    pub ballot: Ballot,
    pub quorum: Quorum,
    pub allow_change: bool,
    pub opens_at: i64,
    pub closes_at: i64,
    pub electorate: Electorate,
    pub created_by: String,
    pub created_at: i64,
    /// Secret: makes voter pseudonyms unguessable from person ids.
    pub salt: String,
    #[serde(default)]
    pub sealed: Option<Sealed>,
    #[serde(default)]
    pub disclosed: bool,
}

/// The result fixed when voting ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sealed {
    pub at: i64,
    pub head: String,
    pub entries: u64,
    pub tally: Tally,
    pub quorum_met: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    Upcoming,
    Open,
    /// The window ended (sealed on the next look).
    Ended,
}

impl Topic {
    pub fn phase(&self, now: i64) -> Phase {
        if self.sealed.is_some() || now >= self.closes_at {
            Phase::Ended
        } else if now < self.opens_at {
            Phase::Upcoming
        } else {
            Phase::Open
        }
    }

    pub fn quorum_met(&self, t: &Tally) -> bool {
        let e = self.electorate;
        match self.quorum {
            Quorum::Majority => t.turnout * 2 > e.voters,
            Quorum::TwoThirds => t.turnout * 3 >= e.voters * 2 && e.voters > 0,
            Quorum::DoubleTwoThirds => {
                e.voters > 0
                    && t.turnout * 3 >= e.voters * 2
                    && t.turnout_weight * 3 >= e.weight * 2
            }
        }
    }
}

fn key_topic(id: u64) -> String {
    format!("topic/{id:08}")
}

/// The date 18 years before the local day of `ms`: the latest birth date of an adult.
pub fn adult_cutoff(ms: i64) -> String {
    let (y, m, d) = civil((ms + TZ_OFFSET_MS).div_euclid(86_400_000));
    // Born on 29 February: an adult from 1 March in common years.
    let d = if m == 2 && d == 29 { 28 } else { d };
    format!("{:04}-{m:02}-{d:02}", y - 18)
}

fn random_hex() -> Result<String, Error> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| Error::Internal(format!("no randomness: {e}")))?;
    Ok(hex::encode(b))
}

pub fn load(id: u64) -> Result<Topic, Error> {
    data::get_json(&key_topic(id))?
        .ok_or_else(|| Error::NotFound(format!("没有这个议题 / no topic {id}")))
}

/// Every topic, newest first.
pub fn all() -> Result<Vec<Topic>, Error> {
    let mut topics = Vec::new();
    for entry in data::scan("topic/") {
        let (_, v) = entry?;
        if let Ok(t) = serde_json::from_slice::<Topic>(&v) {
            topics.push(t);
        }
    }
    topics.reverse();
    Ok(topics)
}

/// What staff fill in to open a topic.
pub struct NewTopic {
    pub title: String,
    pub description: String,
    pub options: Vec<String>,
    pub eligibility: Eligibility,
    pub ballot: Ballot,
    pub quorum: Quorum,
    pub allow_change: bool,
    pub opens_at: i64,
    pub closes_at: i64,
}

pub fn forbidden(message: impl Into<String>) -> Error {
    Error::Http(403, message.into())
}

pub fn conflict(message: impl Into<String>) -> Error {
    Error::Http(409, message.into())
}

pub fn invalid(zh: &str, en: &str) -> Error {
    Error::Invalid(format!("{zh} / {en}"))
}

/// Open a topic: check it, and fix its electorate from the roster (一次采集、多方利用).
pub fn create(caller: &Caller, t: NewTopic) -> Result<Topic, Error> {
    if t.title.trim().is_empty() || t.title.chars().count() > MAX_TITLE {
        return Err(invalid(
            "标题须为 1–100 字",
            "the title is 1–100 characters",
        ));
    }
    if t.description.chars().count() > MAX_DESCRIPTION {
        return Err(invalid(
            "说明最多 5000 字",
            "the description is at most 5000 characters",
        ));
    }
    let options: Vec<String> = t
        .options
        .iter()
        .map(|o| o.trim().to_owned())
        .filter(|o| !o.is_empty())
        .collect();
    if options.len() < 2 || options.len() > MAX_OPTIONS {
        return Err(invalid("须有 2–20 个选项", "a topic has 2–20 options"));
    }
    if options.iter().any(|o| o.chars().count() > MAX_OPTION) {
        return Err(invalid(
            "选项最多 100 字",
            "an option is at most 100 characters",
        ));
    }
    if t.closes_at <= t.opens_at {
        return Err(invalid(
            "截止时间须晚于开始时间",
            "voting must close after it opens",
        ));
    }
    if (t.eligibility == Eligibility::Owners) != (t.quorum == Quorum::DoubleTwoThirds) {
        return Err(invalid(
            "业主按面积表决须用“双三分之二”规则，反之亦然",
            "owners' votes by floor area go with the double two-thirds rule, and only they",
        ));
    }
    let electorate = electorate(t.eligibility, t.opens_at)?;
    let id = data::increment("topics/next", 1)? as u64;
    let topic = Topic {
        id,
        title: t.title.trim().to_owned(),
        description: t.description.trim().to_owned(),
        options,
        eligibility: t.eligibility,
        ballot: t.ballot,
        quorum: t.quorum,
        allow_change: t.allow_change,
        opens_at: t.opens_at,
        closes_at: t.closes_at,
        electorate,
        created_by: caller.person.id.clone(),
        created_at: now_ms(),
        salt: random_hex()?,
        sealed: None,
        disclosed: false,
    };
    data::set_json(&key_topic(id), &topic)?;
    linli_sdk::log::info(&format!("topic {id} opened: {}", topic.title));
    Ok(topic)
}

fn electorate(e: Eligibility, opens_at: i64) -> Result<Electorate, Error> {
    let count = |born: Option<String>| {
        identity::count_residents(&ResidentFilter {
            tags: Vec::new(),
            household: None,
            born_on_or_before: born,
        })
    };
    Ok(match e {
        Eligibility::Adults => {
            let c = count(Some(adult_cutoff(opens_at)))?;
            Electorate {
                voters: c.residents,
                weight: c.residents * 100,
            }
        }
        Eligibility::Households => {
            let c = count(None)?;
            Electorate {
                voters: c.households,
                weight: c.households * 100,
            }
        }
        Eligibility::Owners => {
            let mut el = Electorate::default();
            for entry in data::scan("owner/") {
                let (_, v) = entry?;
                if let Ok(o) = serde_json::from_slice::<Owner>(&v) {
                    el.voters += 1;
                    el.weight += o.area;
                }
            }
            el
        }
    })
}

/// A registered property owner's household and floor area (hundredths of m²).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Owner {
    pub household: String,
    pub area: u64,
}

pub fn add_owner(household: &str, area: f64) -> Result<(), Error> {
    if household.trim().is_empty() || household.chars().count() > 100 {
        return Err(invalid(
            "户号须为 1–100 字",
            "a household is 1–100 characters",
        ));
    }
    if !(area.is_finite() && area > 0.0 && area <= 100_000.0) {
        return Err(invalid(
            "面积须在 0–100000 平方米之间",
            "the floor area is 0–100000 m²",
        ));
    }
    let o = Owner {
        household: household.trim().to_owned(),
        area: (area * 100.0).round() as u64,
    };
    data::set_json(&format!("owner/{}", hash_hex(o.household.as_bytes())), &o)
}

pub fn owners() -> Result<Vec<Owner>, Error> {
    let mut out = Vec::new();
    for entry in data::scan("owner/") {
        let (_, v) = entry?;
        if let Ok(o) = serde_json::from_slice::<Owner>(&v) {
            out.push(o);
        }
    }
    out.sort_by(|a, b| a.household.cmp(&b.household));
    Ok(out)
}

fn hash_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))[..32].to_owned()
}

/// Who a caller votes as in a topic: the pseudonym, and the weight.
pub struct Voter {
    pub pseudonym: String,
    pub weight: u64,
    pub name: Option<String>,
}

/// Whether the caller may vote in `t`, and as whom. An ineligible caller gets a clear reason.
pub fn voter(t: &Topic, caller: &Caller) -> Result<Voter, Error> {
    let profile = identity::profile(&caller.person.id, &[Field::BirthDate, Field::Household])?;
    let field = |f: Field| {
        profile
            .fields
            .iter()
            .find(|v| v.field == f && !v.masked && !v.value.is_empty())
            .map(|v| v.value.clone())
    };
    let household = || {
        field(Field::Household).ok_or_else(|| {
            forbidden(
                "您的户籍信息未登记，请联系社区 / your household is not on the roster; ask the community office",
            )
        })
    };
    let (key, weight) = match t.eligibility {
        Eligibility::Adults => {
            let born = field(Field::BirthDate).ok_or_else(|| {
                forbidden("您的出生日期未登记 / your birth date is not on the roster")
            })?;
            if born > adult_cutoff(t.opens_at) {
                return Err(forbidden(
                    "本议题仅限年满 18 周岁的居民投票 / only residents aged 18 or over vote on this topic",
                ));
            }
            (format!("p:{}", caller.person.id), 100)
        }
        Eligibility::Households => (format!("h:{}", household()?), 100),
        Eligibility::Owners => {
            let h = household()?;
            let owner: Option<Owner> =
                data::get_json(&format!("owner/{}", hash_hex(h.as_bytes())))?;
            let Some(o) = owner else {
                return Err(forbidden(
                    "本议题仅限登记在册的业主投票 / only registered property owners vote on this topic",
                ));
            };
            (format!("h:{h}"), o.area)
        }
    };
    let pseudonym = hash_hex(format!("{}\u{0}{key}", t.salt).as_bytes());
    let name = (t.ballot == Ballot::Open).then(|| caller.person.display_name.clone());
    Ok(Voter {
        pseudonym,
        weight,
        name,
    })
}

/// A voter's current ballot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cast {
    pub choice: usize,
    pub seq: u64,
    pub weight: u64,
    pub at: i64,
    pub assisted_by: Option<String>,
}

/// What happened to a vote.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Voted {
    Cast,
    Changed,
    Unchanged,
}

fn k(prefix: &str, id: u64) -> String {
    format!("{prefix}/{id:08}")
}

/// Cast or change a vote: the ballot, its record entry and the counters in one batch, so a
/// vote is counted exactly once or not at all.
pub fn vote(t: &Topic, caller: &Caller, choice: usize) -> Result<Voted, Error> {
    let now = now_ms();
    match t.phase(now) {
        Phase::Upcoming => {
            return Err(conflict(format!(
                "投票尚未开始（{} 开始）/ voting has not opened yet",
                show_time(t.opens_at)
            )));
        }
        Phase::Ended => return Err(conflict("投票已结束 / voting has closed")),
        Phase::Open => {}
    }
    if choice >= t.options.len() {
        return Err(invalid("没有这个选项", "no such option"));
    }
    let v = voter(t, caller)?;
    let ballot_key = format!("{}/{}", k("ballot", t.id), v.pseudonym);
    let assisted_by = caller.assistant.as_ref().map(|a| a.id.clone());
    // A lost race (two devices of one household at once) is retried a few times.
    for _ in 0..5 {
        let previous = data::get(&ballot_key)?;
        let old: Option<Cast> = previous
            .as_deref()
            .map(serde_json::from_slice)
            .transpose()
            .map_err(|e| Error::Internal(e.to_string()))?;
        if let Some(o) = &old {
            if o.choice == choice {
                return Ok(Voted::Unchanged);
            }
            if !t.allow_change {
                return Err(conflict(
                    "您已投过票，本议题不允许改票 / you have voted; this topic does not allow changes",
                ));
            }
        }
        let seq = data::increment(&k("seq", t.id), 1)? as u64;
        let cast = Cast {
            choice,
            seq,
            weight: v.weight,
            at: now,
            assisted_by: assisted_by.clone(),
        };
        let entry = Entry {
            seq,
            topic: t.id,
            voter: v.pseudonym.clone(),
            name: v.name.clone(),
            choice,
            weight: v.weight,
            at: now,
            assisted: assisted_by.is_some(),
        };
        let w = v.weight as i64;
        let mut b = match &previous {
            None => Batch::new().require_absent(&ballot_key),
            Some(p) => Batch::new().require_equals(&ballot_key, p),
        };
        b = b
            .set_json(&ballot_key, &cast)?
            .set_json(&format!("{}/{seq:012}", k("entry", t.id)), &entry)?
            .increment(&format!("{}/{choice}", k("tally", t.id)), 1)
            .increment(&format!("{}/{choice}", k("weight", t.id)), w);
        b = match &old {
            Some(o) => b
                .increment(&format!("{}/{}", k("tally", t.id), o.choice), -1)
                .increment(
                    &format!("{}/{}", k("weight", t.id), o.choice),
                    -(o.weight as i64),
                ),
            None => b
                .increment(&k("turnout", t.id), 1)
                .increment(&k("turnout-weight", t.id), w),
        };
        if b.commit()? == BatchOutcome::Committed {
            return Ok(if old.is_some() {
                Voted::Changed
            } else {
                Voted::Cast
            });
        }
        if old.is_none() && !t.allow_change {
            return Err(conflict(
                "您（或您家）已投过票 / you (or your household) have already voted",
            ));
        }
    }
    Err(conflict(
        "投票繁忙，请重试 / too many changes at once; please try again",
    ))
}

/// The caller's current ballot in `t`, if any.
pub fn my_ballot(t: &Topic, caller: &Caller) -> Result<Option<Cast>, Error> {
    let Ok(v) = voter(t, caller) else {
        return Ok(None);
    };
    data::get_json(&format!("{}/{}", k("ballot", t.id), v.pseudonym))
}

/// The running counters (not the chain).
pub fn counters(t: &Topic) -> Result<Tally, Error> {
    let get = |key: String| -> Result<u64, Error> {
        Ok(data::get(&key)?
            .and_then(|v| String::from_utf8(v).ok())
            .and_then(|s| s.trim().parse::<i64>().ok())
            .unwrap_or(0)
            .max(0) as u64)
    };
    let mut tally = Tally {
        votes: Vec::new(),
        weight: Vec::new(),
        turnout: get(k("turnout", t.id))?,
        turnout_weight: get(k("turnout-weight", t.id))?,
        assisted: 0,
    };
    for i in 0..t.options.len() {
        tally.votes.push(get(format!("{}/{i}", k("tally", t.id)))?);
        tally
            .weight
            .push(get(format!("{}/{i}", k("weight", t.id)))?);
    }
    Ok(tally)
}

/// The ballot record, linked.
pub fn record(t: &Topic) -> Result<Vec<chain::Link>, Error> {
    let mut entries = Vec::new();
    for e in data::scan(&format!("{}/", k("entry", t.id))) {
        let (_, v) = e?;
        let entry: Entry = serde_json::from_slice(&v)
            .map_err(|e| Error::Internal(format!("ballot record entry unreadable: {e}")))?;
        entries.push(entry);
    }
    Ok(chain::build(entries))
}

/// Fix the result once the window has ended (idempotent: a sealed topic is returned as is).
pub fn seal_if_ended(mut t: Topic) -> Result<Topic, Error> {
    if t.sealed.is_some() || t.phase(now_ms()) != Phase::Ended {
        return Ok(t);
    }
    let before = serde_json::to_vec(&t).map_err(|e| Error::Internal(e.to_string()))?;
    let chain = record(&t)?;
    let tally = chain::tally(&chain, t.options.len());
    t.sealed = Some(Sealed {
        at: now_ms(),
        head: chain::head(&chain).to_owned(),
        entries: chain.len() as u64,
        quorum_met: t.quorum_met(&tally),
        tally,
    });
    let after = serde_json::to_vec(&t).map_err(|e| Error::Internal(e.to_string()))?;
    // Another request may have sealed it first: theirs stands.
    if !data::compare_and_swap(&key_topic(t.id), Some(&before), Some(&after))? {
        return load(t.id);
    }
    linli_sdk::log::info(&format!("topic {} sealed", t.id));
    Ok(t)
}

/// End voting now (staff).
pub fn close_now(mut t: Topic) -> Result<Topic, Error> {
    if t.sealed.is_some() {
        return Ok(t);
    }
    t.closes_at = t.closes_at.min(now_ms());
    data::set_json(&key_topic(t.id), &t)?;
    seal_if_ended(t)
}

/// A comment on a topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Comment {
    pub n: u64,
    pub author: String,
    pub name: String,
    pub text: String,
    pub at: i64,
    #[serde(default)]
    pub hidden: bool,
    #[serde(default)]
    pub assisted: bool,
}

pub fn add_comment(t: &Topic, caller: &Caller, text: &str) -> Result<(), Error> {
    let text = text.trim();
    if text.is_empty() || text.chars().count() > MAX_COMMENT {
        return Err(invalid(
            "评论须为 1–1000 字",
            "a comment is 1–1000 characters",
        ));
    }
    let n = data::increment(&k("comments", t.id), 1)? as u64;
    let c = Comment {
        n,
        author: caller.person.id.clone(),
        name: caller.person.display_name.clone(),
        text: text.to_owned(),
        at: now_ms(),
        hidden: false,
        assisted: caller.assistant.is_some(),
    };
    let home = data::person_key(&caller.person.id, &format!("comment/{:08}/{n:08}", t.id));
    Batch::new()
        .set_json(&home, &c)?
        .set(&format!("{}/{n:08}", k("comment", t.id)), home.as_bytes())
        .commit()?;
    Ok(())
}

/// Comments in order; an erased author's comment is gone (`None`).
pub fn comments(t: &Topic) -> Result<Vec<Option<Comment>>, Error> {
    let mut out = Vec::new();
    for e in data::scan(&format!("{}/", k("comment", t.id))) {
        let (_, home) = e?;
        let home = String::from_utf8_lossy(&home).into_owned();
        out.push(data::get_json::<Comment>(&home)?);
    }
    Ok(out)
}

pub fn hide_comment(t: &Topic, n: u64) -> Result<(), Error> {
    let Some(home) = data::get(&format!("{}/{n:08}", k("comment", t.id)))? else {
        return Err(Error::NotFound(format!("没有这条评论 / no comment {n}")));
    };
    let home = String::from_utf8_lossy(&home).into_owned();
    if let Some(mut c) = data::get_json::<Comment>(&home)? {
        c.hidden = true;
        data::set_json(&home, &c)?;
    }
    Ok(())
}

/// A result posted to the village-affairs disclosure page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Disclosure {
    pub n: u64,
    pub topic: u64,
    pub title: String,
    pub at: i64,
    pub summary: Vec<String>,
    pub head: String,
}

pub fn disclose(t: &mut Topic, summary: Vec<String>) -> Result<Disclosure, Error> {
    let Some(s) = &t.sealed else {
        return Err(conflict(
            "投票结束后才能公示 / results are posted after voting closes",
        ));
    };
    if t.disclosed {
        return Err(conflict("已公示 / already posted"));
    }
    let n = data::increment("disclosures/next", 1)? as u64;
    let d = Disclosure {
        n,
        topic: t.id,
        title: t.title.clone(),
        at: now_ms(),
        summary,
        head: s.head.clone(),
    };
    t.disclosed = true;
    Batch::new()
        .set_json(&format!("disclosure/{n:08}"), &d)?
        .set_json(&key_topic(t.id), &*t)?
        .commit()?;
    Ok(d)
}

pub fn disclosures() -> Result<Vec<Disclosure>, Error> {
    let mut out = Vec::new();
    for e in data::scan("disclosure/") {
        let (_, v) = e?;
        if let Ok(d) = serde_json::from_slice(&v) {
            out.push(d);
        }
    }
    out.reverse();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adults_are_eighteen_on_the_opening_day() {
        let open = parse_local("2026-11-24T08:00").unwrap();
        assert_eq!(adult_cutoff(open), "2008-11-24");
        let leap = parse_local("2028-02-29T08:00").unwrap();
        assert_eq!(adult_cutoff(leap), "2010-02-28");
    }

    fn topic(quorum: Quorum, voters: u64, weight: u64) -> Topic {
        Topic {
            id: 1,
            title: "t".into(),
            description: String::new(),
            options: vec!["a".into(), "b".into()],
            eligibility: Eligibility::Adults,
            ballot: Ballot::Secret,
            quorum,
            allow_change: false,
            opens_at: 0,
            closes_at: 10,
            electorate: Electorate { voters, weight },
            created_by: "p".into(),
            created_at: 0,
            salt: "s".into(),
            sealed: None,
            disclosed: false,
        }
    }

    fn turnout(voters: u64, weight: u64) -> Tally {
        Tally {
            turnout: voters,
            turnout_weight: weight,
            ..Tally::default()
        }
    }

    #[test]
    fn quorum_rules() {
        let t = topic(Quorum::Majority, 10, 1000);
        assert!(!t.quorum_met(&turnout(5, 500)));
        assert!(t.quorum_met(&turnout(6, 600)));
        let t = topic(Quorum::TwoThirds, 9, 900);
        assert!(!t.quorum_met(&turnout(5, 500)));
        assert!(t.quorum_met(&turnout(6, 600)));
        // Enough owners but not enough floor area, and the other way round.
        let t = topic(Quorum::DoubleTwoThirds, 3, 30_000);
        assert!(!t.quorum_met(&turnout(2, 10_000)));
        assert!(!t.quorum_met(&turnout(1, 29_000)));
        assert!(t.quorum_met(&turnout(2, 20_000)));
        assert!(!topic(Quorum::TwoThirds, 0, 0).quorum_met(&turnout(0, 0)));
    }

    #[test]
    fn phases() {
        let t = topic(Quorum::Majority, 1, 100);
        assert_eq!(t.phase(-1), Phase::Upcoming);
        assert_eq!(t.phase(0), Phase::Open);
        assert_eq!(t.phase(10), Phase::Ended);
    }
}
