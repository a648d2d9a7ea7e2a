//! Load: 10,000 residents vote on one topic at once over HTTP, on SQLite and on Postgres, and
//! 500 of them try to vote a second time at the same moment with another choice — on SQLite
//! while another process keeps a core busy, as on a shared county server. None is lost, none
//! counted twice, none refused for the load: the counters, the sealed result and an
//! independent re-tally of the exported ballot chain all agree. (Timing is in the benchmark,
//! not here.)

use linli_tests::voting::{election, retally, vote_all};
use linli_tests::{Backend, on_both_backends};
use serde_json::Value;

const VOTERS: usize = 10_000;
const TWICE: usize = 500;
const CONCURRENCY: usize = 64;

/// A process spinning on one core until dropped.
struct CpuHog(std::process::Child);

impl CpuHog {
    fn start() -> CpuHog {
        CpuHog(
            std::process::Command::new("sh")
                .args(["-c", "while :; do :; done"])
                .spawn()
                .expect("sh runs"),
        )
    }
}

impl Drop for CpuHog {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn ten_thousand_voters(backend: Backend) {
    let e = election(backend, VOTERS).await;
    // A busy core beside it. Not yet on Postgres: there, in a debug build on two cores, a
    // vote in the opening burst of 64 still runs past the 5 s deadline in about one run of
    // three (votes queue for the scope's lock while holding pool connections); issue 13 stays
    // open for it.
    let _hog = (backend == Backend::Sqlite).then(CpuHog::start);
    // Voter i chooses i % 3; the first TWICE voters also send choice (i + 1) % 3, interleaved.
    let mut votes: Vec<(usize, usize)> = Vec::new();
    for i in 0..VOTERS {
        votes.push((i, i % 3));
        if i < TWICE {
            votes.push((i, (i + 1) % 3));
        }
    }
    let (statuses, _) = vote_all(&e, &votes, CONCURRENCY).await;
    let mut winners = vec![None; VOTERS];
    for (&(voter, choice), (status, body)) in votes.iter().zip(&statuses) {
        match *status {
            200 => {
                assert!(winners[voter].is_none(), "voter {voter} counted twice");
                winners[voter] = Some(choice);
            }
            409 => assert!(voter < TWICE, "voter {voter} refused a first vote"),
            s => panic!("voter {voter}: status {s}: {body}"),
        }
    }
    assert!(winners.iter().all(Option::is_some), "a vote was lost");
    let mut expected = [0u64; 3];
    for c in winners.iter().flatten() {
        expected[*c] += 1;
    }

    let client = &e.host.client;
    let results: Value = client
        .get(e.host.url(&format!("{}/results", e.topic)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(results["counters"]["turnout"], VOTERS as u64);
    assert_eq!(results["counters"]["votes"], serde_json::json!(expected));

    let record: Value = client
        .get(e.host.url(&format!("{}/record", e.topic)))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(record["entries"].as_array().unwrap().len(), VOTERS);
    let (intact, tally) = retally(&record);
    assert!(intact, "the ballot chain does not verify");
    assert_eq!(tally, expected.to_vec());
}

on_both_backends!(ten_thousand_voters);
