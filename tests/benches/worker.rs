//! Worker throughput next to its baselines, in one run (these machines are noisy, so only the
//! ratios mean much): `cargo bench -p herald-tests --bench worker`.
//!
//! 1. No latency, no rate limit: the release `herald worker` (consume, parse, pace, POST, publish
//!    the result with a confirm, ack) against a bare loop in its own process (lapin consume, the
//!    same reqwest POST, ack), both on the same pre-filled quorum queue size and simulator. Jobs/s,
//!    CPU per job of the process and of the broker; the aim is at least 80 % of the bare loop's
//!    rate. A second baseline also publishes a result and waits for its confirm before the ack,
//!    which is what Herald must do, to show what that durability costs the broker.
//! 2. 50 ms answers at concurrency 200: the ideal is concurrency / latency = 4,000 jobs/s; the
//!    aim is at least 95 % of it. The bare loop with results runs the same way, as the baseline
//!    of this run: on two shared cores every call takes longer than 50 ms, for both of them, and
//!    the worker's own mean call time (from its metrics) shows by how much.
//! 3. Peak RSS of the worker in run 2, with prefetch 1,000; the aim is under 64 MB.
//! 4. The send ledger's cost: run 1 again with `HERALD_LEDGER_URL` set (to an address where
//!    nothing listens, so a lookup would fail and be counted): ordinary jobs never look it up,
//!    so the ratio to run 1 should be 1 within noise, with 0 lookups. Then the delay a
//!    redelivered job takes: jobs the broker redelivers (taken and given back first) against a
//!    real `herald serve` ledger, from the worker's start to the first and to the last accept,
//!    next to the same jobs delivered fresh, once serve's ledger is current (30 s after it starts).
//!
//! Needs RabbitMQ on 127.0.0.1:5672. `BENCH_JOBS` sets the jobs per run (default 20,000),
//! `BENCH_ROUNDS` how many times each configuration runs (default 3; medians are reported).
#![allow(clippy::print_stdout)] // The report is the output.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use herald_amqp::{AmqpSettings, Consumer, Headers, Publisher, SEND_ROUTING_KEY, Topology};
use herald_sim::{Latency, SimConfig, SimHandle};
use herald_tests::bench::{cpu_ticks, field_kib, free_addr};

const PAGE: &str = "1000000001";
const ROLE: &str = "HERALD_BENCH_ROLE";
const LEDGER_TOKEN: &str = "bench-ledger-token-0123456789abcdefgh";

/// One measured run.
struct Run {
    rate: f64,
    cpu_ms_per_job: f64,
    broker_ms_per_job: f64,
    peak_mb: f64,
    /// Mean `herald_send_duration_seconds` in ms (Herald only): the Graph call as the worker saw
    /// it, which bounds the 50 ms run at concurrency / this.
    call_ms: Option<f64>,
    /// Send-ledger lookups the worker made (Herald only).
    ledger_checks: f64,
}

/// A started process under test, and its metrics URL when it has one.
struct Started {
    child: Child,
    metrics: Option<String>,
}

fn main() {
    if std::env::var(ROLE).as_deref() == Ok("baseline") {
        return bare_loop();
    }
    let jobs: usize = std::env::var("BENCH_JOBS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let herald = herald_tests::build_herald(true);

    let bare = |results: bool, concurrency: usize, prefetch: u16| {
        move |prefix: &str, sim: &str| {
            let child = Command::new(std::env::current_exe().expect("bench exe"))
                .env(ROLE, "baseline")
                .env("BENCH_QUEUE", prefix)
                .env("BENCH_SIM", sim)
                .env("BENCH_JOBS", jobs.to_string())
                .env("BENCH_RESULTS", if results { "1" } else { "0" })
                .env("BENCH_CONCURRENCY", concurrency.to_string())
                .env("BENCH_PREFETCH", prefetch.to_string())
                .spawn()
                .expect("baseline process");
            Started {
                child,
                metrics: None,
            }
        }
    };
    let worker_with =
        |concurrency: &'static str, prefetch: &'static str, ledger: Option<String>| {
            let herald = herald.clone();
            move |prefix: &str, sim: &str| {
                let metrics = free_addr();
                let mut command = worker_command(&herald, prefix, sim, &metrics);
                command.args(["--concurrency", concurrency, "--prefetch", prefetch]);
                if let Some(url) = ledger {
                    command.env("HERALD_LEDGER_URL", url);
                }
                let child = command.spawn().expect("herald worker");
                Started {
                    child,
                    metrics: Some(format!("http://{metrics}/metrics")),
                }
            }
        };
    let worker = |concurrency, prefetch| worker_with(concurrency, prefetch, None);
    // Nothing listens there: a lookup would fail, and be counted as unavailable.
    let nowhere = format!("http://{}", free_addr());
    let rounds: usize = std::env::var("BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(3)
        .max(1);
    // Every configuration once per round, rounds back to back: a slow minute of the machine
    // weighs on all of them, and the median of each ratio is reported.
    let mut runs: [Vec<Run>; 6] = Default::default();
    for round in 1..=rounds {
        eprintln!("round {round} of {rounds}");
        runs[0].push(runtime.block_on(measure(jobs, 0, bare(false, 64, 256))));
        runs[1].push(runtime.block_on(measure(jobs, 0, bare(true, 64, 256))));
        runs[2].push(runtime.block_on(measure(jobs, 0, worker("64", "256"))));
        let with_ledger = worker_with("64", "256", Some(nowhere.clone()));
        runs[5].push(runtime.block_on(measure(jobs, 0, with_ledger)));
        runs[3].push(runtime.block_on(measure(jobs, 50, worker("200", "1000"))));
        runs[4].push(runtime.block_on(measure(jobs, 50, bare(true, 200, 1000))));
    }
    let [bare_plain, bare_results, fast, slow, bare_slow, ledgered] = &runs;

    println!(
        "jobs per run: {jobs}; {rounds} rounds; 2 cores shared by RabbitMQ, the simulator and the \
         worker; medians, with the range of jobs/s"
    );
    println!(
        "{:<56} {:>8} {:>13} {:>10} {:>9} {:>7} {:>7}",
        "", "jobs/s", "range", "CPU ms/job", "broker ms", "peak MB", "call ms"
    );
    let row = |name: &str, runs: &[Run]| {
        let rates: Vec<f64> = runs.iter().map(|r| r.rate).collect();
        let (low, high) = rates
            .iter()
            .fold((f64::MAX, 0.0_f64), |(l, h), r| (l.min(*r), h.max(*r)));
        let call = if runs.iter().any(|r| r.call_ms.is_some()) {
            format!("{:.1}", median(runs.iter().filter_map(|r| r.call_ms)))
        } else {
            "-".to_owned()
        };
        println!(
            "{name:<56} {:>8.0} {:>13} {:>10.3} {:>9.3} {:>7.1} {call:>7}",
            median(rates.iter().copied()),
            format!("{low:.0}-{high:.0}"),
            median(runs.iter().map(|r| r.cpu_ms_per_job)),
            median(runs.iter().map(|r| r.broker_ms_per_job)),
            runs.iter().map(|r| r.peak_mb).fold(0.0, f64::max),
        );
    };
    row(
        "bare consume + POST + ack (issue's baseline), 0 ms",
        bare_plain,
    );
    row("bare + result confirmed before the ack, 0 ms", bare_results);
    row("herald worker, 0 ms, concurrency 64, prefetch 256", fast);
    row(
        "herald worker as above, with HERALD_LEDGER_URL set",
        ledgered,
    );
    row("herald worker, 50 ms, concurrency 200, prefetch 1000", slow);
    row(
        "bare + result, 50 ms, concurrency 200, prefetch 1000",
        bare_slow,
    );
    let ratio = |a: &[Run], b: &[Run]| median(a.iter().zip(b).map(|(a, b)| a.rate / b.rate));
    let ideal = |a: &[Run]| median(a.iter().map(|a| a.rate / 4000.0));
    println!(
        "ratio herald/baseline at 0 ms: {:.2} (to the baseline with results: {:.2})",
        ratio(fast, bare_plain),
        ratio(fast, bare_results)
    );
    println!(
        "ratio to concurrency/latency (4000/s) at 50 ms: {:.2} (the bare loop with results: {:.2}; \
         herald/bare: {:.2})",
        ideal(slow),
        ideal(bare_slow),
        ratio(slow, bare_slow)
    );
    let rate = |runs: &[Run]| median(runs.iter().map(|r| r.rate));
    println!(
        "ratio herald with the ledger configured / without, 0 ms: {:.2} (of the medians: {:.2}); \
         ledger lookups made: {}",
        ratio(ledgered, fast),
        rate(ledgered) / rate(fast),
        ledgered.iter().map(|r| r.ledger_checks).sum::<f64>() as u64
    );
    let call_ms = median(slow.iter().filter_map(|r| r.call_ms));
    println!(
        "at 50 ms the worker's median mean Graph call took {call_ms:.1} ms: concurrency / that = \
         {:.0}/s",
        200.0 / (call_ms / 1000.0)
    );
    let redelivered_jobs = 1_000;
    let fresh = runtime.block_on(redelivery(&herald, redelivered_jobs, false));
    let again = runtime.block_on(redelivery(&herald, redelivered_jobs, true));
    println!(
        "{redelivered_jobs} jobs with herald serve's ledger (echo horizon 5 s), from the worker's \
         start: fresh, first accept {:.2} s, last {:.2} s; redelivered, first {:.2} s, last {:.2} s \
         ({} lookups): a redelivered job takes {:.1} s more",
        fresh.0.as_secs_f64(),
        fresh.1.as_secs_f64(),
        again.0.as_secs_f64(),
        again.1.as_secs_f64(),
        again.2,
        again.1.as_secs_f64() - fresh.1.as_secs_f64()
    );
}

/// `herald worker` on `prefix`'s topology sending to `sim`, metrics on `metrics`.
fn worker_command(herald: &std::path::Path, prefix: &str, sim: &str, metrics: &str) -> Command {
    let mut command = Command::new(herald);
    command
        .args(["worker", "--metrics-addr", metrics])
        .env_clear()
        .env("HERALD_AMQP_URL", herald_tests::amqp_addr())
        .env("HERALD_TOPOLOGY_PREFIX", prefix)
        .env("HERALD_GRAPH_URL", sim)
        .env(format!("HERALD_PAGE_TOKEN_{PAGE}"), "bench-token")
        .env("HERALD_PAGE_RATE_PER_SEC", "1000000")
        .env("HERALD_LEDGER_TOKEN", LEDGER_TOKEN)
        .env("HERALD_LOG", "warn")
        .stdout(Stdio::null());
    command
}

/// `jobs` jobs (`redelivered`: taken and given back first, so the broker flags them) sent by a
/// worker that checks suspect jobs on a real `herald serve` ledger: (time from the worker's
/// start to the first accept, to the last, ledger lookups made).
async fn redelivery(
    herald: &std::path::Path,
    jobs: usize,
    redelivered: bool,
) -> (Duration, Duration, f64) {
    let sim = SimConfig {
        rate_per_sec: 10_000_000,
        record_bodies: false,
        ..SimConfig::default()
    };
    let sim = herald_sim::spawn(sim, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let prefix = herald_tests::unique_name("bench-redelivery");
    let topology = Topology::new(&prefix).expect("topology");
    let settings = AmqpSettings {
        url: herald_tests::amqp_addr().into(),
        ..AmqpSettings::default()
    };
    let connection = herald_amqp::connect(&settings).await.expect("broker");
    topology.declare(&connection).await.expect("declare");
    let publisher = Publisher::open(&connection, 1024).await.expect("publisher");
    for i in 0..jobs {
        publisher
            .publish(
                &topology.jobs_exchange(),
                SEND_ROUTING_KEY,
                &job(i),
                Headers::new(),
            )
            .await
            .expect("publish")
            .await
            .expect("confirm");
    }
    if redelivered {
        let prefetch = u16::try_from(jobs).unwrap_or(u16::MAX);
        let mut consumer = Consumer::start(&connection, &topology.send_queue(), prefetch)
            .await
            .expect("consumer");
        let mut taken = Vec::with_capacity(jobs);
        while taken.len() < jobs {
            taken.push(consumer.next().await.expect("open").expect("delivery"));
        }
        for delivery in taken {
            delivery.nack(true).await.expect("requeue");
        }
        let _ = consumer.close().await;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let serve_addr = free_addr();
    let mut serve = Command::new(herald)
        .args(["serve", "--addr", &serve_addr, "--no-ingest"])
        .env_clear()
        .env("HERALD_AMQP_URL", herald_tests::amqp_addr())
        .env("HERALD_TOPOLOGY_PREFIX", &prefix)
        .env(
            "HERALD_DATABASE_URL",
            format!("sqlite://{}", dir.path().join("herald.db").display()),
        )
        .env("HERALD_APP_SECRET", "bench-app-secret")
        .env("HERALD_VERIFY_TOKEN", "bench-verify-token")
        .env("HERALD_LEDGER_TOKEN", LEDGER_TOKEN)
        .env("HERALD_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("herald serve");
    let ready = herald_tests::eventually(Duration::from_secs(30), || async {
        reqwest::get(format!("http://{serve_addr}/readyz"))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(ready, "herald serve never became ready");
    // A serve that just started cannot know which webhook deliveries Meta failed to make while
    // it was down, so its ledger is not current for its first 30 s: measure the steady state.
    let client = reqwest::Client::new();
    let current = herald_tests::eventually(Duration::from_secs(90), || async {
        let answer = client
            .get(format!("http://{serve_addr}/ledger/bench:nobody"))
            .bearer_auth(LEDGER_TOKEN)
            .send()
            .await;
        match answer {
            Ok(answer) => answer
                .json::<serde_json::Value>()
                .await
                .is_ok_and(|entry| entry["current"] == true),
            Err(_) => false,
        }
    })
    .await;
    assert!(current, "herald serve's ledger never became current");
    let metrics = free_addr();
    let started = Instant::now();
    let mut worker = worker_command(herald, &prefix, &sim.url(), &metrics)
        .env("HERALD_LEDGER_URL", format!("http://{serve_addr}"))
        .spawn()
        .expect("herald worker");
    let mut first = None;
    let deadline = started + Duration::from_secs(120);
    let last = loop {
        let accepted = sim.stats().accepted;
        if accepted > 0 && first.is_none() {
            first = Some(started.elapsed());
        }
        if accepted >= jobs as u64 {
            break started.elapsed();
        }
        assert!(Instant::now() < deadline, "stuck at {accepted} of {jobs}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let text = reqwest::get(format!("http://{metrics}/metrics"))
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    let lookups = ledger_checks(&text);
    for child in [&mut worker, &mut serve] {
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let _ = child.wait();
    }
    topology.delete(&connection).await.expect("cleanup");
    let _ = connection.close().await;
    sim.shutdown().await;
    (first.unwrap_or(last), last, lookups)
}

/// Every `herald_ledger_checks_total` sample added up.
fn ledger_checks(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with("herald_ledger_checks_total{"))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// The median (the mean of the middle two for an even count); 0 for none.
fn median(values: impl Iterator<Item = f64>) -> f64 {
    let mut values: Vec<f64> = values.collect();
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len().is_multiple_of(2) {
        (values[mid - 1] + values[mid]) / 2.0
    } else {
        values[mid]
    }
}

/// Fills a queue with `jobs` jobs, starts `start(queue or prefix, sim url)`, and times the
/// simulator's accepts from the first to the last.
async fn measure<F>(jobs: usize, latency_ms: u64, start: F) -> Run
where
    F: FnOnce(&str, &str) -> Started,
{
    let sim = SimConfig {
        rate_per_sec: 10_000_000,
        latency: Latency::fixed_ms(latency_ms),
        record_bodies: false,
        usage_header_min_pct: 1_000,
        ..SimConfig::default()
    };
    let sim = herald_sim::spawn(sim, "127.0.0.1:0".parse().expect("addr"))
        .await
        .expect("simulator");
    let prefix = herald_tests::unique_name("bench-worker");
    let topology = Topology::new(&prefix).expect("topology");
    let settings = AmqpSettings {
        url: herald_tests::amqp_addr().into(),
        ..AmqpSettings::default()
    };
    let connection = herald_amqp::connect(&settings).await.expect("broker");
    topology.declare(&connection).await.expect("declare");
    let publisher = Publisher::open(&connection, 1024).await.expect("publisher");
    let mut confirms = Vec::with_capacity(jobs);
    for i in 0..jobs {
        let confirm = publisher
            .publish(
                &topology.jobs_exchange(),
                SEND_ROUTING_KEY,
                &job(i),
                Headers::new(),
            )
            .await
            .expect("publish");
        confirms.push(confirm);
    }
    for confirm in confirms {
        confirm.await.expect("confirm");
    }
    // Both get the prefix: the worker as its topology, the baseline to find the send queue.
    let broker = broker_pid();
    let broker_before = broker.map_or(0, cpu_ticks);
    let Started { mut child, metrics } = start(&prefix, &sim.url());
    let (rate, cpu_ticks_used, peak_kib) = watch(&sim, &mut child, jobs as u64).await;
    let broker_ticks = broker.map_or(0, cpu_ticks).saturating_sub(broker_before);
    let text = match metrics {
        Some(url) => match reqwest::get(url).await {
            Ok(response) => response.text().await.unwrap_or_default(),
            Err(_) => String::new(),
        },
        None => String::new(),
    };
    let (call_ms, ledger_checks) = (mean_call_ms(&text), ledger_checks(&text));
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
    topology.delete(&connection).await.expect("cleanup");
    let _ = connection.close().await;
    sim.shutdown().await;
    Run {
        rate,
        cpu_ms_per_job: cpu_ticks_used as f64 * 10.0 / jobs as f64,
        broker_ms_per_job: broker_ticks as f64 * 10.0 / jobs as f64,
        peak_mb: peak_kib as f64 / 1024.0,
        call_ms,
        ledger_checks,
    }
}

/// Mean of `herald_send_duration_seconds`, in ms, from the worker's `/metrics` text.
fn mean_call_ms(text: &str) -> Option<f64> {
    let value = |name: &str| -> Option<f64> {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse().ok())
    };
    let (sum, count) = (
        value("herald_send_duration_seconds_sum")?,
        value("herald_send_duration_seconds_count")?,
    );
    (count > 0.0).then(|| sum / count * 1000.0)
}

/// Polls the simulator until `jobs` were accepted: (jobs/s from first to last accept, CPU ticks
/// of the child, its peak RSS in KiB).
async fn watch(sim: &SimHandle, child: &mut Child, jobs: u64) -> (f64, u64, u64) {
    let stats = format!("{}/_sim/stats?summary=1", sim.url());
    let client = reqwest::Client::new();
    let accepted = || async {
        let text = client.get(&stats).send().await.ok()?.text().await.ok()?;
        let value: serde_json::Value = serde_json::from_str(&text).ok()?;
        value["accepted"].as_u64()
    };
    let (mut first, mut peak_kib, mut cpu) = (None, 0, 0);
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let status = std::fs::read_to_string(format!("/proc/{}/status", child.id()));
        peak_kib = peak_kib.max(status.map_or(0, |s| field_kib(&s, "VmHWM:")));
        cpu = cpu.max(cpu_ticks(child.id()));
        let count = accepted().await.unwrap_or(0);
        if count > 0 && first.is_none() {
            first = Some((Instant::now(), count));
        }
        if count >= jobs {
            let (start, at_start) = first.expect("started");
            let rate = (count - at_start) as f64 / start.elapsed().as_secs_f64();
            return (rate, cpu, peak_kib);
        }
        assert!(
            Instant::now() < deadline,
            "stuck at {count} of {jobs} accepted"
        );
        assert!(
            child.try_wait().expect("status").is_none() || count >= jobs,
            "the process died"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// The baseline, in its own process: consume with a prefetch, POST with bounded concurrency, ack.
fn bare_loop() {
    let var = |name: &str| std::env::var(name).expect(name);
    let (prefix, sim) = (var("BENCH_QUEUE"), var("BENCH_SIM"));
    let jobs: usize = var("BENCH_JOBS").parse().expect("jobs");
    let concurrency: usize = var("BENCH_CONCURRENCY").parse().expect("concurrency");
    let prefetch: u16 = var("BENCH_PREFETCH").parse().expect("prefetch");
    let queue = Topology::new(&prefix).expect("prefix").send_queue();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    runtime.block_on(async move {
        let connection = lapin::Connection::connect(
            &herald_tests::amqp_addr(),
            lapin::ConnectionProperties::default(),
        )
        .await
        .expect("broker");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .basic_qos(prefetch, lapin::options::BasicQosOptions::default())
            .await
            .expect("qos");
        let mut consumer = channel
            .basic_consume(
                queue.as_str().into(),
                "bare".into(),
                lapin::options::BasicConsumeOptions::default(),
                lapin::types::FieldTable::default(),
            )
            .await
            .expect("consume");
        let results = std::env::var("BENCH_RESULTS").as_deref() == Ok("1");
        let confirms = connection.create_channel().await.expect("channel");
        confirms
            .confirm_select(lapin::options::ConfirmSelectOptions::default())
            .await
            .expect("confirms");
        let exchange = Topology::new(&prefix).expect("prefix").results_exchange();
        let client = reqwest::Client::new();
        let permits = Arc::new(tokio::sync::Semaphore::new(concurrency));
        let tasks = tokio_util::task::TaskTracker::new();
        for _ in 0..jobs {
            let delivery = consumer.next().await.expect("open").expect("delivery");
            let permit = permits.clone().acquire_owned().await.expect("permit");
            let (client, sim) = (client.clone(), sim.clone());
            let (confirms, exchange) = (confirms.clone(), exchange.clone());
            tasks.spawn(async move {
                let job: herald_core::SendJob =
                    serde_json::from_slice(&delivery.data).expect("job");
                let url = format!("{sim}/v25.0/{}/messages?access_token=bench", job.page_id);
                let response = client
                    .post(url)
                    .header("content-type", "application/json")
                    .body(job.request.get().to_owned())
                    .send()
                    .await
                    .expect("post");
                assert!(response.status().is_success());
                let answer = response.bytes().await.expect("answer");
                // As Herald does: the concurrency bound covers the call, not the settling.
                drop(permit);
                if results {
                    let properties = lapin::BasicProperties::default().with_delivery_mode(2);
                    let confirm = confirms
                        .basic_publish(
                            exchange.as_str().into(),
                            "sent.bench".into(),
                            lapin::options::BasicPublishOptions::default(),
                            &answer,
                            properties,
                        )
                        .await
                        .expect("publish");
                    assert!(confirm.await.expect("confirm").is_ack());
                }
                delivery
                    .ack(lapin::options::BasicAckOptions::default())
                    .await
                    .expect("ack");
            });
        }
        tasks.close();
        tasks.wait().await;
        // Stay alive (the parent reads our CPU time) until it stops us.
        tokio::time::sleep(Duration::from_secs(600)).await;
    });
}

fn job(i: usize) -> Vec<u8> {
    let job_id = format!("bench:u{i}");
    let now = time::OffsetDateTime::now_utc();
    let rfc = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .expect("format")
    };
    serde_json::to_vec(&serde_json::json!({
        "v": 1, "job_id": job_id, "run_id": "bench", "campaign_id": "bench", "page_id": PAGE,
        "external_id": format!("u{i}"),
        "request": {"recipient": {"id": format!("{}", 10_000_000_000_u64 + i as u64)},
                    "messaging_type": "UPDATE",
                    "message": {"text": format!("Hi Name{i}, your code is CODE{i}."), "metadata": job_id}},
        "rate_per_sec": 1_000_000, "max_attempts": 5,
        "not_after": rfc(now + time::Duration::hours(6)), "enqueued_at": rfc(now),
    }))
    .expect("job")
}

/// RabbitMQ's Erlang VM on this machine, to account for the broker's share of the work.
fn broker_pid() -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .find_map(|entry| {
            let pid: u32 = entry.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(entry.path().join("comm")).ok()?;
            (comm.trim() == "beam.smp").then_some(pid)
        })
}
