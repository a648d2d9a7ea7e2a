//! 协商议事 — online consultation and voting (网上社区协商、民主决策网络投票) with village-affairs
//! disclosure (村务公开), built with the linli SDK only, as a vendor would.
//!
//! Community staff open a topic (options, who may vote, a voting window, secret or open
//! ballot, a quorum rule); residents discuss it and vote once (changing their vote while it
//! is open if the topic allows); votes cast in assisted mode are marked; when the window
//! closes the result (turnout, quorum) is sealed and published; the ballot record is a hash
//! chain anyone can export and re-tally; staff can post a closed result to the disclosure
//! page.
//!
//! Every route answers the web shell with a page (`Accept: application/vnd.linli.page+json`)
//! and anything else with JSON, so the same routes serve the shell, scripts and the load test.
//!
//! Data layout (this installation's scope):
//! - `topics/next` counter; `topic/{id}` the topic; `seq/{id}` the ballot sequence;
//! - `ballot/{id}/{voter}` each voter's current ballot (voter = pseudonym, see [`chain`]);
//! - `entry/{id}/{seq}` the ballot record; `tally/{id}/{option}`, `weight/{id}/{option}`,
//!   `turnout/{id}`, `turnout-weight/{id}` counters kept in the same batch as the ballot;
//! - `r/{person}/comment/{id}/{n}` comments, filed under their author (export and erasure
//!   find them), indexed by `comment/{id}/{n}`;
//! - `owner/{household}` the property register (floor areas) for owners' votes;
//! - `disclosure/{n}` results posted to the village-affairs disclosure page.

pub mod chain;
mod model;
mod pages;

use linli_sdk::{Metadata, Plugin, Request, Response, Router, export_plugin};

struct Consultation;

impl Plugin for Consultation {
    fn metadata() -> Metadata {
        Metadata::new(
            "consultation",
            env!("CARGO_PKG_VERSION"),
            "协商议事",
            "Consultation & voting",
        )
        .description(
            "社区协商、民主投票和村务公开：议题、讨论、投票、计票与公示。",
            "Community consultation, democratic voting and village-affairs disclosure.",
        )
        .require(
            "data",
            "保存议题、评论、选票和公示",
            "keep topics, comments, ballots and disclosures",
        )
        .require(
            "identity",
            "确认投票人是本村社居民及其角色",
            "check that voters live here, and staff roles",
        )
        .require(
            "identity.birth-date",
            "按出生日期确认成年选民（不公开）",
            "tell adult voters by birth date (never shown)",
        )
        .require(
            "identity.household",
            "按户投票时确认所属户（不公开）",
            "tell a voter's household for one-vote-per-household topics (never shown)",
        )
        .optional(
            "log",
            "记录议题的开启和关闭",
            "log topics opening and closing",
        )
    }

    fn handle(request: Request) -> Response {
        Router::new()
            .get("/", pages::home)
            .get("/topics/new", pages::new_topic_form)
            .post("/topics", pages::create_topic)
            .get("/topics/{id}", pages::topic)
            .post("/topics/{id}/vote", pages::vote)
            .post("/topics/{id}/comments", pages::comment)
            .post("/topics/{id}/comments/{n}/hide", pages::hide_comment)
            .post("/topics/{id}/close", pages::close)
            .post("/topics/{id}/disclose", pages::disclose)
            .get("/topics/{id}/record", pages::record)
            .get("/topics/{id}/results", pages::results)
            .get("/owners", pages::owners)
            .post("/owners", pages::add_owner)
            .get("/disclosure", pages::disclosure)
            .handle(request)
    }
}

export_plugin!(Consultation);
