//! Routes: a page for the web shell, JSON for everyone else.

use linli_sdk::services::{Caller, identity};
use linli_sdk::ui::{Block, Button, Field, Form, ListItem, Page, Tab, Text, Tone};
use linli_sdk::{Error, Params, Request, Response};
use serde_json::json;

use crate::chain;
use crate::model::{
    self, Ballot, Eligibility, NewTopic, Phase, Quorum, Topic, Voted, conflict, forbidden, now_ms,
    show_time,
};

type Answer = Result<Response, Error>;

fn caller() -> Result<Option<Caller>, Error> {
    linli_sdk::services::identity::current_caller()
}

fn signed_in() -> Result<Caller, Error> {
    caller()?.ok_or_else(|| Error::Http(401, "请先登录 / please sign in first".into()))
}

/// Staff who run consultations here.
fn is_staff() -> Result<bool, Error> {
    for role in ["community-staff", "township-admin", "county-admin"] {
        if identity::has_role(role)? {
            return Ok(true);
        }
    }
    Ok(false)
}

fn staff_only() -> Result<Caller, Error> {
    let c = signed_in()?;
    if !is_staff()? {
        return Err(forbidden(
            "仅社区工作人员可以操作 / only community staff can do this",
        ));
    }
    Ok(c)
}

fn topic_id(p: &Params) -> Result<u64, Error> {
    p.get("id")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::NotFound("没有这个议题 / no such topic".into()))
}

fn nav(page: Page, staff: bool) -> Page {
    let page = page.nav(Text::new("议题", "Topics"), "/");
    let page = if staff {
        page.nav(Text::new("发起议题", "New topic"), "/topics/new")
            .nav(Text::new("业主名册", "Owners"), "/owners")
    } else {
        page
    };
    page.nav(Text::new("村务公开", "Disclosure"), "/disclosure")
}

fn phase_text(t: &Topic) -> Text {
    match t.phase(now_ms()) {
        Phase::Upcoming => Text::new("未开始", "Upcoming"),
        Phase::Open => Text::new("投票中", "Voting open"),
        Phase::Ended => Text::new("已结束", "Closed"),
    }
}

fn eligibility_text(e: Eligibility) -> Text {
    match e {
        Eligibility::Adults => Text::new(
            "年满 18 周岁的居民，一人一票",
            "Residents aged 18+, one vote each",
        ),
        Eligibility::Households => Text::new("每户一票", "One vote per household"),
        Eligibility::Owners => Text::new(
            "登记业主，按专有面积计",
            "Registered owners, weighted by floor area",
        ),
    }
}

fn quorum_text(q: Quorum) -> Text {
    match q {
        Quorum::Majority => Text::new(
            "过半数选民参加投票",
            "More than half of the electorate votes",
        ),
        Quorum::TwoThirds => Text::new("三分之二以上的户参加投票", "Two thirds of households vote"),
        Quorum::DoubleTwoThirds => Text::new(
            "双三分之二：专有面积和人数均占三分之二以上的业主参加（民法典第二百七十八条）",
            "Double two-thirds: owners holding 2/3 of the area and 2/3 in number take part (Civil Code art. 278)",
        ),
    }
}

fn ballot_text(b: Ballot) -> Text {
    match b {
        Ballot::Secret => Text::new("无记名投票", "Secret ballot"),
        Ballot::Open => Text::new("记名投票", "Open ballot"),
    }
}

fn pct(part: u64, whole: u64) -> String {
    if whole == 0 {
        "0%".into()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn area(hundredths: u64) -> String {
    format!("{:.2}", hundredths as f64 / 100.0)
}

// ---- the list --------------------------------------------------------------------------

pub fn home(req: &Request, _: &Params) -> Answer {
    let staff = caller()?.is_some() && is_staff()?;
    let mut topics = Vec::new();
    for t in model::all()? {
        topics.push(model::seal_if_ended(t)?);
    }
    if !req.wants_page() {
        let list: Vec<_> = topics
            .iter()
            .map(|t| json!({"id": t.id, "title": t.title, "opens_at": t.opens_at, "closes_at": t.closes_at, "sealed": t.sealed.is_some()}))
            .collect();
        return Ok(Response::json(200, &list));
    }
    let mut page = nav(
        Page::new(Text::new("协商议事", "Consultation & voting")),
        staff,
    );
    if topics.is_empty() {
        page = page.push(Block::empty(Text::new("还没有议题。", "No topics yet.")));
    } else {
        let items = topics
            .iter()
            .map(|t| {
                let turnout = model::counters(t).map(|c| c.turnout).unwrap_or(0);
                ListItem::new(Text::plain(t.title.clone()))
                    .badge(phase_text(t))
                    .subtitle(Text::new(
                        format!(
                            "{} 至 {} · 已投票 {} 人",
                            show_time(t.opens_at),
                            show_time(t.closes_at),
                            turnout
                        ),
                        format!(
                            "{} to {} · {} voted",
                            show_time(t.opens_at),
                            show_time(t.closes_at),
                            turnout
                        ),
                    ))
                    .link(format!("/topics/{}", t.id))
            })
            .collect();
        page = page.push(Block::list(items));
    }
    if staff {
        page = page.push(Block::actions(vec![
            Button::get(Text::new("发起议题", "Open a topic"), "/topics/new").primary(),
        ]));
    }
    Ok(Response::page(&page))
}

// ---- opening a topic -------------------------------------------------------------------

fn topic_form() -> Form {
    Form::new("/topics", Text::new("发起", "Open the topic"))
        .field(
            Field::text("title", Text::new("议题", "Topic"))
                .required()
                .max_length(model::MAX_TITLE as u32),
        )
        .field(
            Field::textarea("description", Text::new("说明", "Description"))
                .max_length(model::MAX_DESCRIPTION as u32),
        )
        .field(
            Field::textarea(
                "options",
                Text::new("选项（每行一个）", "Options (one per line)"),
            )
            .required()
            .value("同意\n不同意\n弃权"),
        )
        .field(
            Field::select("eligibility", Text::new("谁可以投票", "Who votes"))
                .option("adults", eligibility_text(Eligibility::Adults))
                .option("households", eligibility_text(Eligibility::Households))
                .option("owners", eligibility_text(Eligibility::Owners))
                .value("adults")
                .required(),
        )
        .field(
            Field::radio("ballot", Text::new("投票方式", "Ballot"))
                .option("secret", ballot_text(Ballot::Secret))
                .option("open", ballot_text(Ballot::Open))
                .value("secret")
                .required(),
        )
        .field(
            Field::select("quorum", Text::new("有效规则", "Quorum"))
                .option("majority", quorum_text(Quorum::Majority))
                .option("two-thirds", quorum_text(Quorum::TwoThirds))
                .option("double-two-thirds", quorum_text(Quorum::DoubleTwoThirds))
                .value("majority")
                .required(),
        )
        .field(Field::checkbox(
            "allow_change",
            Text::new(
                "投票期间允许改票",
                "Voters may change their vote while it is open",
            ),
        ))
        .field(
            Field::datetime(
                "opens_at",
                Text::new("开始时间（北京时间）", "Opens (China time)"),
            )
            .required(),
        )
        .field(
            Field::datetime(
                "closes_at",
                Text::new("截止时间（北京时间）", "Closes (China time)"),
            )
            .required(),
        )
}

pub fn new_topic_form(_: &Request, _: &Params) -> Answer {
    staff_only()?;
    let now = show_time(now_ms()).replace(' ', "T");
    let week = show_time(now_ms() + 7 * 86_400_000).replace(' ', "T");
    let mut form = topic_form();
    for f in &mut form.fields {
        match f.name.as_str() {
            "opens_at" => f.value = Some(json!(now)),
            "closes_at" => f.value = Some(json!(week)),
            _ => {}
        }
    }
    let page = nav(Page::new(Text::new("发起议题", "Open a topic")), true).push(form);
    Ok(Response::page(&page))
}

pub fn create_topic(req: &Request, _: &Params) -> Answer {
    let caller = staff_only()?;
    let s = match topic_form().check(&req.body) {
        Ok(s) => s,
        Err(errors) => return Ok(Response::form_errors(&errors)),
    };
    let when = |name: &str| {
        model::parse_local(s.text(name)).ok_or_else(|| {
            model::invalid("时间格式应为 年-月-日T时:分", "times are YYYY-MM-DDTHH:MM")
        })
    };
    let t = model::create(
        &caller,
        NewTopic {
            title: s.text("title").into(),
            description: s.text("description").into(),
            options: s.text("options").lines().map(str::to_owned).collect(),
            eligibility: match s.text("eligibility") {
                "households" => Eligibility::Households,
                "owners" => Eligibility::Owners,
                _ => Eligibility::Adults,
            },
            ballot: if s.text("ballot") == "open" {
                Ballot::Open
            } else {
                Ballot::Secret
            },
            quorum: match s.text("quorum") {
                "two-thirds" => Quorum::TwoThirds,
                "double-two-thirds" => Quorum::DoubleTwoThirds,
                _ => Quorum::Majority,
            },
            allow_change: s.checked("allow_change"),
            opens_at: when("opens_at")?,
            closes_at: when("closes_at")?,
        },
    )?;
    if req.wants_page() {
        return Ok(Response::page(&Page::redirect(format!("/topics/{}", t.id))));
    }
    Ok(Response::json(
        201,
        &json!({"id": t.id, "electorate": t.electorate}),
    ))
}

// ---- one topic -------------------------------------------------------------------------

fn results_blocks(t: &Topic, tally: &chain::Tally, sealed: bool) -> Vec<Block> {
    let e = t.electorate;
    let mut blocks = vec![Block::progress(
        Text::new("投票率", "Turnout"),
        tally.turnout.min(e.voters.max(tally.turnout)),
        e.voters.max(tally.turnout),
    )];
    if let Block::Progress { detail, .. } = &mut blocks[0] {
        *detail = Some(Text::new(
            format!(
                "已投票 {} 人，共 {} 名选民（{}）",
                tally.turnout,
                e.voters,
                pct(tally.turnout, e.voters)
            ),
            format!(
                "{} voted of {} ({})",
                tally.turnout,
                e.voters,
                pct(tally.turnout, e.voters)
            ),
        ));
    }
    if t.eligibility == Eligibility::Owners {
        blocks.push(Block::facts(vec![(
            Text::new("参加表决的专有面积", "Floor area taking part"),
            Text::plain(format!(
                "{} / {} m²（{}）",
                area(tally.turnout_weight),
                area(e.weight),
                pct(tally.turnout_weight, e.weight)
            )),
        )]));
    }
    let show_choices = sealed || t.ballot == Ballot::Open;
    if show_choices {
        for (i, o) in t.options.iter().enumerate() {
            let votes = tally.votes.get(i).copied().unwrap_or(0);
            let mut b = Block::progress(Text::plain(o.clone()), votes, tally.turnout.max(votes));
            if t.eligibility == Eligibility::Owners
                && let Block::Progress { detail, .. } = &mut b
            {
                let w = tally.weight.get(i).copied().unwrap_or(0);
                *detail = Some(Text::plain(format!(
                    "{} m²（{}）",
                    area(w),
                    pct(w, tally.turnout_weight)
                )));
            }
            blocks.push(b);
        }
    } else {
        blocks.push(Block::muted(Text::new(
            "无记名投票：各选项票数在投票结束后公布。",
            "Secret ballot: the count per option is published when voting closes.",
        )));
    }
    blocks
}

fn topic_page(t: &Topic, notice: Option<(Tone, Text)>) -> Result<Page, Error> {
    let who = caller()?;
    let staff = who.is_some() && is_staff()?;
    let now = now_ms();
    let mut page = nav(Page::new(Text::plain(t.title.clone())), staff);
    if let Some((tone, text)) = notice {
        page = page.notice(tone, text);
    }
    page = page.push(Block::facts(vec![
        (Text::new("状态", "Status"), phase_text(t)),
        (
            Text::new("投票时间", "Voting"),
            Text::new(
                format!(
                    "{} 至 {}（北京时间）",
                    show_time(t.opens_at),
                    show_time(t.closes_at)
                ),
                format!(
                    "{} to {} (China time)",
                    show_time(t.opens_at),
                    show_time(t.closes_at)
                ),
            ),
        ),
        (
            Text::new("投票资格", "Who votes"),
            eligibility_text(t.eligibility),
        ),
        (Text::new("投票方式", "Ballot"), ballot_text(t.ballot)),
        (Text::new("有效规则", "Quorum"), quorum_text(t.quorum)),
        (
            Text::new("改票", "Changing a vote"),
            if t.allow_change {
                Text::new("投票期间可以改票", "Allowed while voting is open")
            } else {
                Text::new("投票后不能更改", "Not allowed")
            },
        ),
    ]));
    if !t.description.is_empty() {
        page = page.push(Block::text(Text::plain(t.description.clone())));
    }

    // Voting.
    let mut vote_blocks = Vec::new();
    match (&who, t.phase(now)) {
        (None, Phase::Open) => vote_blocks.push(Block::notice(
            Tone::Info,
            Text::new("登录后即可投票。", "Sign in to vote."),
        )),
        (Some(c), Phase::Open) => {
            let mine = model::my_ballot(t, c)?;
            if let Some(m) = &mine {
                vote_blocks.push(Block::notice(
                    Tone::Success,
                    Text::new(
                        format!(
                            "您已投票：{}",
                            t.options.get(m.choice).cloned().unwrap_or_default()
                        ),
                        format!(
                            "You voted: {}",
                            t.options.get(m.choice).cloned().unwrap_or_default()
                        ),
                    ),
                ));
            }
            match model::voter(t, c) {
                Err(e) => {
                    vote_blocks.push(Block::notice(Tone::Warning, Text::plain(e.to_string())))
                }
                Ok(_) if mine.is_some() && !t.allow_change => {}
                Ok(_) => {
                    let mut field =
                        Field::radio("choice", Text::new("您的选择", "Your choice")).required();
                    for (i, o) in t.options.iter().enumerate() {
                        field = field.option(i.to_string(), Text::plain(o.clone()));
                    }
                    if let Some(m) = &mine {
                        field = field.value(m.choice.to_string());
                    }
                    let submit = if mine.is_some() {
                        Text::new("改票", "Change my vote")
                    } else {
                        Text::new("投票", "Vote")
                    };
                    vote_blocks.push(
                        Form::new(format!("/topics/{}/vote", t.id), submit)
                            .field(field)
                            .into(),
                    );
                    if c.assistant.is_some() {
                        vote_blocks.push(Block::muted(Text::new(
                            "帮办模式：这张选票将标记为代办。",
                            "Assisted mode: this ballot will be marked as assisted.",
                        )));
                    }
                }
            }
        }
        (_, Phase::Upcoming) => vote_blocks.push(Block::notice(
            Tone::Info,
            Text::new(
                format!("投票将于 {} 开始。", show_time(t.opens_at)),
                format!("Voting opens at {}.", show_time(t.opens_at)),
            ),
        )),
        (_, Phase::Ended) => {}
    }

    // Results.
    let mut result_blocks = Vec::new();
    if let Some(s) = &t.sealed {
        result_blocks.push(Block::notice(
            if s.quorum_met {
                Tone::Success
            } else {
                Tone::Warning
            },
            if s.quorum_met {
                Text::new("投票有效：达到有效规则。", "Valid: the quorum was met.")
            } else {
                Text::new(
                    "投票无效：未达到有效规则。",
                    "Not valid: the quorum was not met.",
                )
            },
        ));
        result_blocks.extend(results_blocks(t, &s.tally, true));
        if s.tally.assisted > 0 {
            result_blocks.push(Block::muted(Text::new(
                format!("其中帮办代办投票 {} 张。", s.tally.assisted),
                format!(
                    "{} of the ballots were cast in assisted mode.",
                    s.tally.assisted
                ),
            )));
        }
        result_blocks.push(Block::muted(Text::new(
            format!("选票记录共 {} 条，哈希链末端 {}", s.entries, s.head),
            format!("{} ballot records; hash chain head {}", s.entries, s.head),
        )));
    } else {
        result_blocks.extend(results_blocks(t, &model::counters(t)?, false));
    }
    result_blocks.push(Block::actions(vec![Button::get(
        Text::new(
            "选票记录（可下载复核）",
            "Ballot record (export and re-tally)",
        ),
        format!("/topics/{}/record", t.id),
    )]));

    // Discussion.
    let mut talk = Vec::new();
    let comments = model::comments(t)?;
    if comments.is_empty() {
        talk.push(Block::empty(Text::new("还没有评论。", "No comments yet.")));
    }
    let mut items = Vec::new();
    let mut hide_buttons = Vec::new();
    for c in comments.iter() {
        match c {
            None => items.push(ListItem::new(Text::new(
                "（评论已随作者注销删除）",
                "(removed with its author's account)",
            ))),
            Some(c) if c.hidden => items.push(ListItem::new(Text::new(
                "（该评论已被管理员隐藏）",
                "(hidden by a moderator)",
            ))),
            Some(c) => {
                let mut item =
                    ListItem::new(Text::plain(c.text.clone())).subtitle(Text::plain(format!(
                        "{} · {}{}",
                        c.name,
                        show_time(c.at),
                        if c.assisted {
                            " · 代办 / assisted"
                        } else {
                            ""
                        }
                    )));
                if staff {
                    item = item.badge(Text::plain(format!("#{}", c.n)));
                    hide_buttons.push(
                        Button::post(
                            Text::new(format!("隐藏 #{}", c.n), format!("Hide #{}", c.n)),
                            format!("/topics/{}/comments/{}/hide", t.id, c.n),
                            json!({}),
                        )
                        .danger()
                        .confirm(Text::new("隐藏这条评论？", "Hide this comment?")),
                    );
                }
                items.push(item);
            }
        }
    }
    if !items.is_empty() {
        talk.push(Block::list(items));
    }
    if !hide_buttons.is_empty() {
        talk.push(Block::actions(hide_buttons));
    }
    if who.is_some() && t.sealed.is_none() {
        talk.push(
            Form::new(
                format!("/topics/{}/comments", t.id),
                Text::new("发表", "Post"),
            )
            .field(
                Field::textarea("text", Text::new("我的意见", "My comment"))
                    .required()
                    .max_length(model::MAX_COMMENT as u32),
            )
            .into(),
        );
    }

    let mut tabs = vec![];
    if !vote_blocks.is_empty() {
        tabs.push(Tab {
            label: Text::new("投票", "Vote"),
            body: vote_blocks,
        });
    }
    tabs.push(Tab {
        label: Text::new("结果", "Results"),
        body: result_blocks,
    });
    tabs.push(Tab {
        label: Text::new(
            format!("讨论（{}）", comments.len()),
            format!("Discussion ({})", comments.len()),
        ),
        body: talk,
    });
    page = page.push(Block::tabs(tabs));

    if staff {
        let mut buttons = Vec::new();
        if t.sealed.is_none() {
            buttons.push(
                Button::post(
                    Text::new("立即结束投票", "Close voting now"),
                    format!("/topics/{}/close", t.id),
                    json!({}),
                )
                .danger()
                .confirm(Text::new(
                    "结束后不能再投票。确定？",
                    "No more votes after this. Close?",
                )),
            );
        } else if !t.disclosed {
            buttons.push(
                Button::post(
                    Text::new("发布到村务公开", "Post to the disclosure page"),
                    format!("/topics/{}/disclose", t.id),
                    json!({}),
                )
                .primary(),
            );
        }
        if !buttons.is_empty() {
            page = page.push(Block::actions(buttons));
        }
    }
    Ok(page)
}

pub fn topic(req: &Request, p: &Params) -> Answer {
    let t = model::seal_if_ended(model::load(topic_id(p)?)?)?;
    if req.wants_page() {
        return Ok(Response::page(&topic_page(&t, None)?));
    }
    results(req, p)
}

#[derive(serde::Deserialize)]
struct VoteBody {
    choice: serde_json::Value,
}

pub fn vote(req: &Request, p: &Params) -> Answer {
    let c = signed_in()?;
    let t = model::seal_if_ended(model::load(topic_id(p)?)?)?;
    let body: VoteBody = req.json()?;
    let choice = match &body.choice {
        serde_json::Value::Number(n) => n.as_u64(),
        serde_json::Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or_else(|| model::invalid("请选择一个选项", "choose an option"))? as usize;
    let voted = model::vote(&t, &c, choice)?;
    if req.wants_page() {
        let text = match voted {
            Voted::Cast => Text::new("您的投票已记录。", "Your vote is recorded."),
            Voted::Changed => Text::new("您的投票已更改。", "Your vote is changed."),
            Voted::Unchanged => Text::new("您的投票没有变化。", "Your vote is unchanged."),
        };
        return Ok(Response::page(&topic_page(
            &t,
            Some((Tone::Success, text)),
        )?));
    }
    Ok(Response::json(200, &json!({"voted": voted})))
}

pub fn comment(req: &Request, p: &Params) -> Answer {
    let c = signed_in()?;
    let t = model::load(topic_id(p)?)?;
    if t.sealed.is_some() {
        return Err(conflict("议题已结束，不能再评论 / the topic is closed"));
    }
    #[derive(serde::Deserialize)]
    struct Body {
        text: String,
    }
    let b: Body = req.json()?;
    model::add_comment(&t, &c, &b.text)?;
    if req.wants_page() {
        return Ok(Response::page(&topic_page(
            &t,
            Some((Tone::Success, Text::new("评论已发表。", "Comment posted."))),
        )?));
    }
    Ok(Response::status(204))
}

pub fn hide_comment(req: &Request, p: &Params) -> Answer {
    staff_only()?;
    let t = model::load(topic_id(p)?)?;
    let n: u64 = p
        .get("n")
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| Error::NotFound("没有这条评论 / no such comment".into()))?;
    model::hide_comment(&t, n)?;
    if req.wants_page() {
        return Ok(Response::page(&topic_page(
            &t,
            Some((Tone::Info, Text::new("评论已隐藏。", "Comment hidden."))),
        )?));
    }
    Ok(Response::status(204))
}

pub fn close(req: &Request, p: &Params) -> Answer {
    staff_only()?;
    let t = model::close_now(model::load(topic_id(p)?)?)?;
    if req.wants_page() {
        return Ok(Response::page(&topic_page(
            &t,
            Some((
                Tone::Info,
                Text::new(
                    "投票已结束，结果已封存。",
                    "Voting closed; the result is sealed.",
                ),
            )),
        )?));
    }
    results(req, p)
}

fn summary(t: &Topic) -> Vec<String> {
    let Some(s) = &t.sealed else {
        return Vec::new();
    };
    let mut lines = vec![
        format!(
            "投票时间 / voting: {} — {}",
            show_time(t.opens_at),
            show_time(t.closes_at)
        ),
        format!(
            "参加投票 / turnout: {} / {}（{}）",
            s.tally.turnout,
            t.electorate.voters,
            pct(s.tally.turnout, t.electorate.voters)
        ),
        if s.quorum_met {
            "达到有效规则，投票有效 / quorum met: valid".into()
        } else {
            "未达到有效规则，投票无效 / quorum not met: not valid".into()
        },
    ];
    for (i, o) in t.options.iter().enumerate() {
        let v = s.tally.votes.get(i).copied().unwrap_or(0);
        lines.push(format!("{o}: {v}（{}）", pct(v, s.tally.turnout)));
    }
    lines
}

pub fn disclose(req: &Request, p: &Params) -> Answer {
    staff_only()?;
    let mut t = model::seal_if_ended(model::load(topic_id(p)?)?)?;
    let lines = summary(&t);
    let d = model::disclose(&mut t, lines)?;
    if req.wants_page() {
        return Ok(Response::page(&Page::redirect("/disclosure")));
    }
    Ok(Response::json(201, &d))
}

pub fn results(_: &Request, p: &Params) -> Answer {
    let t = model::seal_if_ended(model::load(topic_id(p)?)?)?;
    let counters = model::counters(&t)?;
    let phase = match t.phase(now_ms()) {
        Phase::Upcoming => "upcoming",
        Phase::Open => "open",
        Phase::Ended => "closed",
    };
    Ok(Response::json(
        200,
        &json!({
            "id": t.id, "title": t.title, "options": t.options, "phase": phase,
            "eligibility": t.eligibility, "ballot": t.ballot, "quorum": t.quorum,
            "electorate": t.electorate, "counters": counters, "sealed": t.sealed,
        }),
    ))
}

/// The ballot record: JSON for export (anyone), a page with the check and re-tally.
pub fn record(req: &Request, p: &Params) -> Answer {
    let t = model::seal_if_ended(model::load(topic_id(p)?)?)?;
    let chain = model::record(&t)?;
    let verified = chain::verify(&chain).is_ok();
    let tally = chain::tally(&chain, t.options.len());
    let matches_seal = t.sealed.as_ref().map(|s| s.head == chain::head(&chain));
    if !req.wants_page() {
        return Ok(Response::json(
            200,
            &json!({
                "topic": t.id, "title": t.title, "options": t.options,
                "hash": "sha256(prev as hex ‖ the entry without prev and hash as compact JSON with sorted keys, as jq -cS prints it)",
                "genesis": chain::GENESIS, "head": chain::head(&chain),
                "sealed_head": t.sealed.as_ref().map(|s| s.head.clone()),
                "entries": chain, "tally": tally,
            }),
        ));
    }
    let staff = caller()?.is_some() && is_staff()?;
    let mut page = nav(
        Page::new(Text::new(
            format!("选票记录：{}", t.title),
            format!("Ballot record: {}", t.title),
        )),
        staff,
    );
    page = page.push(Block::facts(vec![
        (
            Text::new("记录条数", "Entries"),
            Text::plain(chain.len().to_string()),
        ),
        (
            Text::new("哈希链末端", "Chain head"),
            Text::plain(chain::head(&chain).to_owned()),
        ),
        (
            Text::new("哈希链校验", "Chain check"),
            if verified {
                Text::new("完整", "intact")
            } else {
                Text::new("被篡改", "BROKEN")
            },
        ),
        (
            Text::new("与封存结果一致", "Matches the sealed result"),
            match matches_seal {
                Some(true) => Text::new("是", "yes"),
                Some(false) => Text::new("否", "NO"),
                None => Text::new("尚未封存", "not sealed yet"),
            },
        ),
        (
            Text::new("按记录复核计票", "Re-tally of the record"),
            Text::plain(
                t.options
                    .iter()
                    .zip(&tally.votes)
                    .map(|(o, v)| format!("{o} {v}"))
                    .collect::<Vec<_>>()
                    .join(" · "),
            ),
        ),
    ]));
    page = page.push(Block::muted(Text::new(
        "任何人都可以下载完整记录（不带页面请求头访问本地址即得 JSON），自行校验哈希链并重新计票。",
        "Anyone can download the whole record (this address as JSON) to check the chain and re-tally.",
    )));
    let rows: Vec<Vec<Text>> = chain
        .iter()
        .rev()
        .take(200)
        .map(|l| {
            vec![
                Text::plain(l.entry.seq.to_string()),
                Text::plain(
                    l.entry
                        .name
                        .clone()
                        .unwrap_or_else(|| l.entry.voter.clone()),
                ),
                Text::plain(t.options.get(l.entry.choice).cloned().unwrap_or_default()),
                Text::plain(show_time(l.entry.at)),
                if l.entry.assisted {
                    Text::new("代办", "assisted")
                } else {
                    Text::plain("")
                },
                Text::plain(l.hash[..16].to_owned()),
            ]
        })
        .collect();
    if !rows.is_empty() {
        page = page.push(Block::table(
            vec![
                Text::plain("#"),
                Text::new("投票人", "Voter"),
                Text::new("选择", "Choice"),
                Text::new("时间", "Time"),
                Text::new("代办", "Assisted"),
                Text::new("哈希", "Hash"),
            ],
            rows,
        ));
    }
    page = page.push(Block::actions(vec![Button::get(
        Text::new("返回议题", "Back to the topic"),
        format!("/topics/{}", t.id),
    )]));
    Ok(Response::page(&page))
}

// ---- owners and disclosure -------------------------------------------------------------

fn owner_form() -> Form {
    Form::new("/owners", Text::new("登记", "Register"))
        .field(
            Field::text(
                "household",
                Text::new("户号（与居民名册一致）", "Household (as on the roster)"),
            )
            .required()
            .max_length(100),
        )
        .field(
            Field::number(
                "area",
                Text::new("专有部分面积（平方米）", "Floor area (m²)"),
            )
            .required()
            .range(0.01, 100_000.0),
        )
}

pub fn owners(req: &Request, _: &Params) -> Answer {
    staff_only()?;
    let list = model::owners()?;
    if !req.wants_page() {
        return Ok(Response::json(200, &list));
    }
    let mut page = nav(Page::new(Text::new("业主名册", "Property owners")), true).push(
        Block::muted(Text::new(
            "业主按面积表决（双三分之二）使用本名册。",
            "Owners' votes weighted by floor area (double two-thirds) use this register.",
        )),
    );
    page = if list.is_empty() {
        page.push(Block::empty(Text::new(
            "还没有登记业主。",
            "No owners registered yet.",
        )))
    } else {
        page.push(Block::table(
            vec![
                Text::new("户号", "Household"),
                Text::new("面积（m²）", "Area (m²)"),
            ],
            list.iter()
                .map(|o| vec![Text::plain(o.household.clone()), Text::plain(area(o.area))])
                .collect(),
        ))
    };
    Ok(Response::page(&page.push(owner_form())))
}

pub fn add_owner(req: &Request, p: &Params) -> Answer {
    staff_only()?;
    let s = match owner_form().check(&req.body) {
        Ok(s) => s,
        Err(errors) => return Ok(Response::form_errors(&errors)),
    };
    model::add_owner(s.text("household"), s.number("area").unwrap_or(0.0))?;
    if req.wants_page() {
        return Ok(Response::page(&Page::redirect("/owners")));
    }
    owners(req, p)
}

pub fn disclosure(req: &Request, _: &Params) -> Answer {
    let list = model::disclosures()?;
    if !req.wants_page() {
        return Ok(Response::json(200, &list));
    }
    let staff = caller()?.is_some() && is_staff()?;
    let mut page = nav(
        Page::new(Text::new("村务公开", "Village-affairs disclosure")),
        staff,
    );
    if list.is_empty() {
        page = page.push(Block::empty(Text::new(
            "还没有公示内容。",
            "Nothing posted yet.",
        )));
    }
    for d in list {
        let mut body: Vec<Block> = d
            .summary
            .iter()
            .map(|l| Block::text(Text::plain(l.clone())))
            .collect();
        body.push(Block::muted(Text::new(
            format!("公示于 {} · 选票哈希链末端 {}", show_time(d.at), d.head),
            format!("Posted {} · ballot chain head {}", show_time(d.at), d.head),
        )));
        page = page.push(Block::card(
            Text::plain(d.title.clone()),
            Some(format!("/topics/{}", d.topic)),
            body,
        ));
    }
    Ok(Response::page(&page))
}
