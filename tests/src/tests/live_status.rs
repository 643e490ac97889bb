//! `herald campaign status` follows a run as it is sent, on both stores: real processes (the
//! simulator, `herald serve` storing results, a worker sending as fast as it can, `herald
//! campaign send`), and while the worker sends, every status shows at least what the simulator
//! had accepted a few seconds before it was asked, and a rate close to the simulator's own.
//! The test prints how far status trailed (`cargo test -p herald-tests --lib -- live_status
//! --nocapture`); here it was under a second.

use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::store::{Rig, both_backends};
use crate::bench::free_addr;
use crate::{Running, broker, eventually, herald, herald_ok, unique_name};

both_backends!(status_follows_the_run_within_seconds);

const PAGE: &str = "1000000001";
const USERS: u64 = 20_000;
/// The page's rate, above what one worker sends here: the worker goes as fast as it can, and
/// the records must keep up with it.
const RATE_PER_SEC: &str = "5000";
/// How far back status measures its rate once sending has gone on longer.
const RATE_WINDOW: Duration = Duration::from_secs(60);
/// How old the results a status shows may be.
const LAG: Duration = Duration::from_secs(5);

async fn status_follows_the_run_within_seconds(rig: Rig) {
    let Some(probe) = broker().await else {
        return;
    };
    drop(probe);
    let prefix = unique_name("test-live-status");
    let dir = tempfile::tempdir().expect("temp dir");
    let database = rig.url.expose().to_owned();
    let (sim_addr, serve_addr, worker_addr) = (free_addr(), free_addr(), free_addr());
    let graph_url = format!("http://{sim_addr}");
    let base = [
        ("HERALD_TOPOLOGY_PREFIX", prefix.as_str()),
        ("HERALD_DATABASE_URL", database.as_str()),
    ];
    let start = |extra: &[(&str, &str)], args: &[&str]| {
        let settings: Vec<(&str, &str)> = base.iter().chain(extra).copied().collect();
        let mut command = herald(&settings);
        command
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        Running(command.spawn().expect("start herald"))
    };
    let _sim = start(
        &[],
        &["sim", "--addr", &sim_addr, "--rate-per-sec", "100000"],
    );
    let _serve = start(
        &[
            ("HERALD_APP_SECRET", "live-app-secret"),
            ("HERALD_VERIFY_TOKEN", "live-verify-token"),
        ],
        &["serve", "--addr", &serve_addr, "--no-ingest"],
    );
    let token_var = format!("HERALD_PAGE_TOKEN_{PAGE}");
    let _worker = start(
        &[
            ("HERALD_GRAPH_URL", &graph_url),
            (&token_var, "live-token"),
            ("HERALD_PAGE_RATE_PER_SEC", RATE_PER_SEC),
        ],
        &["worker", "--metrics-addr", &worker_addr],
    );
    let accepted_url = format!("http://{sim_addr}/_sim/stats?summary=1");
    let accepted = move || {
        let url = accepted_url.clone();
        async move {
            let Ok(response) = reqwest::get(&url).await else {
                return None;
            };
            let stats: Value = serde_json::from_str(&response.text().await.ok()?).ok()?;
            stats["accepted"].as_u64()
        }
    };
    assert!(
        eventually(Duration::from_secs(30), || async {
            accepted().await.is_some()
        })
        .await,
        "the simulator never answered"
    );

    let pace = format!("[delivery]\nrate_per_sec = {RATE_PER_SEC}\n");
    crate::write_campaign(dir.path(), ("live", PAGE), USERS, 4_000_000, &pace);
    // What the simulator had accepted, four times a second, as the run goes.
    let history: Arc<Mutex<Vec<(Instant, u64)>>> = Arc::default();
    let sampler = {
        let history = history.clone();
        let accepted = accepted.clone();
        tokio::spawn(async move {
            loop {
                if let Some(count) = accepted().await {
                    history
                        .lock()
                        .expect("history")
                        .push((Instant::now(), count));
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
        })
    };
    // Sampling starts before the send: the worker starts sending while jobs are published.
    let sent = herald_ok(dir.path(), &base, &["campaign", "send", "campaign.toml"]).await;
    let run_id = sent
        .lines()
        .find_map(|line| line.strip_prefix("run_id: "))
        .expect("run_id")
        .to_owned();

    let accepted_at = |at: Instant| {
        let history = history.lock().expect("history");
        history
            .iter()
            .take_while(|(when, _)| *when <= at)
            .last()
            .map_or(0, |(_, count)| *count)
    };
    let mut rates = Vec::new();
    let mut statuses = 0;
    // The most results status ever showed fewer than the simulator had accepted when asked.
    let mut behind = 0;
    let began = Instant::now();
    loop {
        let asked = Instant::now();
        let text = herald_ok(
            dir.path(),
            &base,
            &["campaign", "status", &run_id, "--json"],
        )
        .await;
        let status: Value = serde_json::from_str(&text).expect("status JSON");
        let shown = status["results"]["total"].as_u64().expect("results.total");
        let floor = asked.checked_sub(LAG).map_or(0, accepted_at);
        assert!(
            shown >= floor,
            "status showed {shown} results; the simulator had accepted {floor} {} s before",
            LAG.as_secs()
        );
        statuses += 1;
        behind = behind.max(accepted_at(asked).saturating_sub(shown));
        if let Some(per_sec) = status["rate"]["per_sec"].as_f64() {
            // The simulator's own rate over the same span as status: since the first
            // acceptance, or the last RATE_WINDOW once sending has gone on longer.
            let history = history.lock().expect("history").clone();
            let first = history.iter().find(|(_, count)| *count > 0);
            if let (Some((first_at, _)), Some((last_at, last))) = (first, history.last()) {
                let span = last_at.duration_since(*first_at);
                let rate = if span <= RATE_WINDOW {
                    *last as f64 / span.as_secs_f64()
                } else {
                    let before = accepted_at(*last_at - RATE_WINDOW);
                    (*last - before) as f64 / RATE_WINDOW.as_secs_f64()
                };
                if span >= Duration::from_secs(5) && *last < USERS {
                    rates.push((per_sec, rate));
                }
            }
        }
        if shown >= USERS {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(120),
            "the run did not finish: {status:#}"
        );
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    sampler.abort();
    let history = history.lock().expect("history").clone();
    let first = history
        .iter()
        .find(|(_, count)| *count > 0)
        .map(|(at, _)| *at);
    let last = history
        .iter()
        .find(|(_, count)| *count >= USERS)
        .map(|(at, _)| *at);
    if let (Some(first), Some(last)) = (first, last) {
        let per_sec = USERS as f64 / last.duration_since(first).as_secs_f64().max(0.001);
        // The figure the module doc gives (`--nocapture` shows it).
        eprintln!(
            "sent {per_sec:.0}/s; status was at most {behind} results ({:.2} s) behind the \
             simulator",
            behind as f64 / per_sec
        );
    }
    assert!(
        statuses >= 5,
        "the run was over before it could be followed"
    );
    assert!(!rates.is_empty(), "status never gave a rate while sending");
    for (shown, simulator) in &rates {
        let ratio = shown / simulator;
        assert!(
            (0.6..=1.4).contains(&ratio),
            "status rate {shown:.0}/s against the simulator's {simulator:.0}/s: {rates:?}"
        );
    }
    crate::delete_topology(&prefix).await;
}
