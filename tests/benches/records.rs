//! The record path next to the send path, in one run on each store (these machines are noisy, so
//! only the ratios mean much): `cargo bench -p herald-tests --bench records`.
//!
//! For SQLite (a new file) and then PostgreSQL (a new database), one stage at a time, each alone
//! on the machine with RabbitMQ:
//! 1. **send**: the release `herald worker` sends `BENCH_JOBS` jobs (default 30,000) to the
//!    simulator (no latency, no limit): jobs/s from its first accept to its last. This is the
//!    rate every other stage is read against. Its results wait in `<p>.results.store`.
//! 2. **results**: `herald serve --no-ingest` stores those results: results/s from the first
//!    stored to the last, read from its `/metrics`.
//! 3. **two serves** (PostgreSQL): two `herald serve --no-ingest` on one queue store as many
//!    new results; the aim is at least 1.6 × one serve.
//! 4. **ingest**: `herald serve --no-results` applies one receipt body per job (delivery and
//!    read receipts in turn, as Meta posts them, for the PSIDs just sent to): bodies/s.
//! 5. **webhook**: `herald serve --no-ingest --no-results` accepts `BENCH_POSTS` (default
//!    30,000) signed POSTs from 64 keep-alive connections of a Rust load generator in this
//!    process (reqwest over hyper, on its own multi-thread runtime): POSTs/s and p99 latency.
//! 6. **ceiling**: a bare sqlx loop inserts the same number of 16-column rows into a plain table
//!    of the same database, 500 rows a statement and a transaction: what the database itself
//!    takes on this machine.
//!
//! `BENCH_PG_RUNS=3` repeats the PostgreSQL stages on three new databases, one after another,
//! and prints each run's rates, to see whether a run is slower than the one before.
//!
//! Peak RSS of every serve process is reported (the aim is under 128 MB). Needs RabbitMQ on
//! 127.0.0.1:5672 and PostgreSQL as `scripts/services.sh` sets it up (`TEST_POSTGRES_URL`).
#![allow(clippy::print_stdout)] // The report is the output.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use herald_amqp::{AmqpSettings, Publisher, SEND_ROUTING_KEY, Topology};
use herald_sim::{Latency, SimConfig};
use herald_tests::bench::{Metrics, free_addr, peak_rss_kib};

const PAGE: &str = "1000000001";
const APP_SECRET: &str = "bench-app-secret";
const CONNECTIONS: usize = 64;

/// One store's figures.
#[derive(Default)]
struct Figures {
    send: f64,
    results: f64,
    two_serves: Option<f64>,
    ingest: f64,
    webhook: f64,
    webhook_p99_ms: f64,
    ceiling: f64,
    serve_peak_mb: f64,
    /// How busy the machine's cores were while one serve, then two, stored results (0..1).
    results_busy: f64,
    two_serves_busy: Option<f64>,
}

fn main() {
    let count = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let jobs = count("BENCH_JOBS", 30_000);
    let posts = count("BENCH_POSTS", 30_000);
    let herald = herald_tests::build_herald(true);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    let sqlite = format!("sqlite://{}", dir.path().join("herald.db").display());
    let sqlite = runtime.block_on(stages(&herald, &sqlite, jobs, posts, false));
    // `BENCH_PG_RUNS` > 1 repeats the PostgreSQL stages, each on a new database, to show
    // whether a run is slower than the one before (the report uses the last run).
    let pg_runs = count("BENCH_PG_RUNS", 1).max(1);
    let mut repeats = Vec::new();
    for _ in 0..pg_runs {
        repeats.push(runtime.block_on(async {
            let (url, drop_database) = new_postgres_database().await;
            let figures = stages(&herald, &url, jobs, posts, true).await;
            drop_database.await;
            figures
        }));
    }
    if pg_runs > 1 {
        println!("PostgreSQL runs one after another (send, results, ingest per second):");
        for (n, run) in repeats.iter().enumerate() {
            println!(
                "  run {}: {:.0} {:.0} {:.0}; results {:.2}, ingest {:.2} of send",
                n + 1,
                run.send,
                run.results,
                run.ingest,
                run.results / run.send,
                run.ingest / run.send
            );
        }
    }
    let postgres = repeats.pop().expect("one run at least");

    println!(
        "{jobs} jobs, {posts} webhook POSTs; 2 cores shared by RabbitMQ, the database and Herald"
    );
    println!(
        "{:<44} {:>10} {:>7} {:>10} {:>7}",
        "", "SQLite/s", "ratio", "Postgres/s", "ratio"
    );
    let row = |name: &str, a: f64, b: Option<f64>| {
        let b_text = b.map_or(("-".to_owned(), "-".to_owned()), |b| {
            (format!("{b:.0}"), format!("{:.2}", b / postgres.send))
        });
        let a_text = if a > 0.0 {
            (format!("{a:.0}"), format!("{:.2}", a / sqlite.send))
        } else {
            ("-".to_owned(), "-".to_owned())
        };
        println!(
            "{name:<44} {:>10} {:>7} {:>10} {:>7}",
            a_text.0, a_text.1, b_text.0, b_text.1
        );
    };
    row(
        "herald worker sending (the base)",
        sqlite.send,
        Some(postgres.send),
    );
    row(
        "results consumer storing",
        sqlite.results,
        Some(postgres.results),
    );
    row("two serve processes storing", 0.0, postgres.two_serves);
    row(
        "ingest applying receipt bodies",
        sqlite.ingest,
        Some(postgres.ingest),
    );
    row(
        "webhook accepting signed POSTs",
        sqlite.webhook,
        Some(postgres.webhook),
    );
    row(
        "bare batched sqlx insert (ceiling)",
        sqlite.ceiling,
        Some(postgres.ceiling),
    );
    if let Some(two) = postgres.two_serves {
        println!(
            "two serves / one on PostgreSQL: {:.2} (machine CPU busy: {:.0} % with one serve, {:.0} % with two)",
            two / postgres.results,
            postgres.results_busy * 100.0,
            postgres.two_serves_busy.unwrap_or(0.0) * 100.0
        );
    }
    println!(
        "webhook p99: {:.1} ms (SQLite run), {:.1} ms (PostgreSQL run); serve peak RSS: {:.0} MB, {:.0} MB",
        sqlite.webhook_p99_ms,
        postgres.webhook_p99_ms,
        sqlite.serve_peak_mb,
        postgres.serve_peak_mb
    );
}

/// Every stage on one store.
async fn stages(
    herald: &std::path::Path,
    database: &str,
    jobs: usize,
    posts: usize,
    two: bool,
) -> Figures {
    let mut figures = Figures::default();
    let prefix = herald_tests::unique_name("bench-records");
    let topology = Topology::new(&prefix).expect("topology");
    let amqp = AmqpSettings {
        url: herald_tests::amqp_addr().into(),
        ..AmqpSettings::default()
    };
    let connection = herald_amqp::connect(&amqp).await.expect("broker");
    topology.declare(&connection).await.expect("declare");
    let publisher = Publisher::open(&connection, 1024).await.expect("publisher");
    let env = |extra: &[(&str, &str)]| {
        let mut vars: Vec<(String, String)> = vec![
            ("HERALD_AMQP_URL".into(), herald_tests::amqp_addr()),
            ("HERALD_TOPOLOGY_PREFIX".into(), prefix.clone()),
            ("HERALD_DATABASE_URL".into(), database.to_owned()),
            ("HERALD_APP_SECRET".into(), APP_SECRET.into()),
            ("HERALD_VERIFY_TOKEN".into(), "bench-verify".into()),
            (
                "HERALD_API_TOKEN".into(),
                "bench-api-token-0123456789abcdefghijkl".into(),
            ),
            (
                "HERALD_REF_SECRET".into(),
                "b1=bench-ref-secret-0123456789abcdefghij".into(),
            ),
            ("HERALD_LOG".into(), "warn".into()),
        ];
        vars.extend(
            extra
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
        );
        vars
    };
    let start = |args: &[&str], vars: Vec<(String, String)>| -> Child {
        Command::new(herald)
            .args(args)
            .env_clear()
            .envs(vars)
            .stdout(Stdio::null())
            .spawn()
            .expect("herald")
    };

    // The users, so results find their PSIDs and receipts find their records.
    let csv = std::env::temp_dir().join(format!("{prefix}.csv"));
    let mut text = String::from("external_id,messenger_id\n");
    for i in 0..jobs {
        text.push_str(&format!("u{i},{}\n", psid(i)));
    }
    std::fs::write(&csv, text).expect("users");
    let status = Command::new(herald)
        .args(["users", "import"])
        .arg(&csv)
        .env_clear()
        .envs(env(&[]))
        .stdout(Stdio::null())
        .status()
        .expect("users import");
    assert!(status.success(), "users import failed");
    let _ = std::fs::remove_file(&csv);

    // 1. send.
    let sim = herald_sim::spawn(
        SimConfig {
            rate_per_sec: 10_000_000,
            latency: Latency::fixed_ms(0),
            record_bodies: false,
            usage_header_min_pct: 1_000,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("simulator");
    herald_tests::publish_all(
        &publisher,
        &topology.jobs_exchange(),
        SEND_ROUTING_KEY,
        (0..jobs).map(|i| job("send", i)),
    )
    .await;
    let token = format!("HERALD_PAGE_TOKEN_{PAGE}");
    let graph = sim.url();
    let mut worker = start(
        &["worker"],
        env(&[
            ("HERALD_GRAPH_URL", &graph),
            (&token, "bench-token"),
            ("HERALD_PAGE_RATE_PER_SEC", "1000000"),
        ]),
    );
    figures.send = timed(jobs as u64, || async { sim.stats().accepted }).await;
    stop(&mut worker);
    sim.shutdown().await;

    // 2. results: one serve stores what the worker published.
    let addr = free_addr();
    let mut serve = start(&["serve", "--addr", &addr, "--no-ingest"], env(&[]));
    let metrics = Metrics::new(&addr);
    let machine = MachineCpu::now();
    figures.results = timed(jobs as u64, || async {
        metrics
            .value("herald_results_recorded_total{status=\"sent\"}")
            .await
    })
    .await;
    figures.results_busy = machine.busy_since();
    figures.serve_peak_mb = peak_rss_kib(serve.id()) as f64 / 1024.0;
    stop(&mut serve);

    // 3. two serves on new results.
    if two {
        let results = (0..jobs).map(|i| result("two", i));
        herald_tests::publish_all(
            &publisher,
            &topology.results_exchange(),
            "sent.bench",
            results,
        )
        .await;
        let addrs = [free_addr(), free_addr()];
        let mut serves: Vec<Child> = addrs
            .iter()
            .map(|addr| start(&["serve", "--addr", addr, "--no-ingest"], env(&[])))
            .collect();
        let both = [Metrics::new(&addrs[0]), Metrics::new(&addrs[1])];
        let stored = || async {
            let mut sum = 0;
            for metrics in &both {
                sum += metrics
                    .value("herald_results_recorded_total{status=\"sent\"}")
                    .await;
            }
            sum
        };
        let machine = MachineCpu::now();
        figures.two_serves = Some(timed(jobs as u64, stored).await);
        figures.two_serves_busy = Some(machine.busy_since());
        for serve in &mut serves {
            figures.serve_peak_mb = figures
                .serve_peak_mb
                .max(peak_rss_kib(serve.id()) as f64 / 1024.0);
            stop(serve);
        }
    }

    // 4. ingest: a receipt body per job.
    let messages = (0..jobs).map(|n| herald_tests::webhook_message(APP_SECRET, receipt(n)));
    let exchange = topology.events_exchange();
    herald_tests::publish_all_with(&publisher, &exchange, "webhook", messages).await;
    let addr = free_addr();
    let mut serve = start(&["serve", "--addr", &addr, "--no-results"], env(&[]));
    let metrics = Metrics::new(&addr);
    figures.ingest = timed(jobs as u64, || async {
        metrics
            .value("herald_consumer_messages_total{consumer=\"ingest\",outcome=\"processed\"}")
            .await
    })
    .await;
    figures.serve_peak_mb = figures
        .serve_peak_mb
        .max(peak_rss_kib(serve.id()) as f64 / 1024.0);
    stop(&mut serve);

    // 5. webhook.
    let addr = free_addr();
    let mut serve = start(
        &["serve", "--addr", &addr, "--no-ingest", "--no-results"],
        env(&[]),
    );
    let ready = Metrics::new(&addr);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready.ready().await {
        assert!(Instant::now() < deadline, "serve never became ready");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (rate, p99) = load(&addr, posts).await;
    figures.webhook = rate;
    figures.webhook_p99_ms = p99;
    figures.serve_peak_mb = figures
        .serve_peak_mb
        .max(peak_rss_kib(serve.id()) as f64 / 1024.0);
    stop(&mut serve);

    // 6. the database's own ceiling.
    figures.ceiling = ceiling(database, jobs).await;

    let _ = publisher.close().await;
    topology.delete(&connection).await.expect("cleanup");
    let _ = connection.close().await;
    figures
}

/// Polls `done` every 20 ms until it reaches `target`; the rate from the first non-zero reading
/// to the target.
async fn timed<F, Fut>(target: u64, done: F) -> f64
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = u64>,
{
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let now = done().await;
        if now > 0 && first.is_none() {
            first = Some((Instant::now(), now));
        }
        if now >= target {
            let (at, from) = first.expect("started");
            return (now - from) as f64 / at.elapsed().as_secs_f64().max(0.001);
        }
        assert!(Instant::now() < deadline, "stuck at {now} of {target}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The machine's CPU time so far, from /proc/stat: (busy, total) in clock ticks.
#[derive(Clone, Copy)]
struct MachineCpu(u64, u64);

impl MachineCpu {
    fn now() -> Self {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .filter_map(|n| n.parse().ok())
            .collect();
        let total: u64 = ticks.iter().take(8).sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        Self(total - idle, total)
    }

    /// The share of all cores busy since `self` (0..1).
    fn busy_since(self) -> f64 {
        let now = Self::now();
        (now.0 - self.0) as f64 / (now.1 - self.1).max(1) as f64
    }
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn psid(i: usize) -> String {
    (10_000_000_000_u64 + i as u64).to_string()
}

fn rfc(t: time::OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .expect("format")
}

fn job(run: &str, i: usize) -> Vec<u8> {
    let job_id = format!("{run}:u{i}");
    let now = time::OffsetDateTime::now_utc();
    serde_json::to_vec(&serde_json::json!({
        "v": 1, "job_id": job_id, "run_id": run, "campaign_id": "bench", "page_id": PAGE,
        "external_id": format!("u{i}"),
        "request": {"recipient": {"id": psid(i)}, "messaging_type": "UPDATE",
                    "message": {"text": format!("Hi Name{i}."), "metadata": job_id}},
        "rate_per_sec": 1_000_000, "max_attempts": 5,
        "not_after": rfc(now + time::Duration::hours(6)), "enqueued_at": rfc(now),
    }))
    .expect("job")
}

fn result(run: &str, i: usize) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "v": 1, "job_id": format!("{run}:u{i}"), "run_id": run, "campaign_id": "bench",
        "external_id": format!("u{i}"), "page_id": PAGE, "status": "sent",
        "message_id": format!("m_{run}_{i}"), "error": null, "attempts": 1,
        "finished_at": rfc(time::OffsetDateTime::now_utc()),
    }))
    .expect("result")
}

/// A page webhook body with one receipt for `psid(i)`: delivery for even `i`, read for odd.
fn receipt(i: usize) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp() * 1000 + 60_000;
    let kind = if i.is_multiple_of(2) {
        "delivery"
    } else {
        "read"
    };
    serde_json::to_vec(
        &serde_json::json!({"object": "page", "entry": [{"id": PAGE, "time": now,
        "messaging": [{"sender": {"id": psid(i)}, "recipient": {"id": PAGE}, "timestamp": now,
                        kind: {"watermark": now}}]}]}),
    )
    .expect("receipt")
}

/// Signed POSTs from `CONNECTIONS` keep-alive connections: (POSTs/s, p99 ms).
async fn load(addr: &str, posts: usize) -> (f64, f64) {
    let url = format!("http://{addr}/webhook");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("load runtime");
    let handle = runtime.handle().clone();
    let began = Instant::now();
    let tasks: Vec<_> = (0..CONNECTIONS)
        .map(|c| {
            let url = url.clone();
            handle.spawn(async move {
                let client = reqwest::Client::builder()
                    .pool_max_idle_per_host(1)
                    .build()
                    .expect("client");
                let mut latencies = Vec::new();
                for n in (c..posts).step_by(CONNECTIONS) {
                    let body = receipt(n);
                    let signature = herald_tests::sign_webhook(APP_SECRET, &body);
                    let sent = Instant::now();
                    let response = client
                        .post(&url)
                        .header("content-type", "application/json")
                        .header("x-hub-signature-256", signature)
                        .body(body)
                        .send()
                        .await
                        .expect("POST");
                    assert_eq!(response.status(), 200, "webhook refused a POST");
                    latencies.push(sent.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::with_capacity(posts);
    for task in tasks {
        latencies.extend(task.await.expect("load task"));
    }
    let rate = posts as f64 / began.elapsed().as_secs_f64();
    runtime.shutdown_background();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100].as_secs_f64() * 1000.0;
    (rate, p99)
}

/// Rows/s of a bare sqlx loop: 500-row INSERTs, a transaction each, into a new plain table.
async fn ceiling(database: &str, rows: usize) -> f64 {
    const PER: usize = 500;
    let columns = "job_id, run_id, campaign_id, external_id, page_id, psid, status, message_id, \
                   error_code, error_subcode, error_class, error_message, error_fbtrace_id, \
                   attempts, finished_at_ms, sent_at_ms";
    let create = "CREATE TABLE bench_ceiling (job_id TEXT PRIMARY KEY, run_id TEXT, campaign_id TEXT, \
                  external_id TEXT, page_id TEXT, psid TEXT, status TEXT, message_id TEXT, error_code BIGINT, \
                  error_subcode BIGINT, error_class TEXT, error_message TEXT, error_fbtrace_id TEXT, \
                  attempts BIGINT, finished_at_ms BIGINT, sent_at_ms BIGINT)";
    macro_rules! run {
        ($pool:expr, $placeholder:expr) => {{
            let pool = $pool;
            sqlx::query(create).execute(&pool).await.expect("create");
            let began = Instant::now();
            for chunk in (0..rows).collect::<Vec<_>>().chunks(PER) {
                let mut n = 0;
                let values: Vec<String> = chunk
                    .iter()
                    .map(|_| {
                        let row: Vec<String> = (0..16)
                            .map(|_| {
                                n += 1;
                                $placeholder(n)
                            })
                            .collect();
                        format!("({})", row.join(", "))
                    })
                    .collect();
                let sql = format!(
                    "INSERT INTO bench_ceiling ({columns}) VALUES {}",
                    values.join(", ")
                );
                let mut tx = pool.begin().await.expect("begin");
                let mut statement = sqlx::query(&sql);
                for &i in chunk {
                    statement = statement
                        .bind(format!("ceil:u{i}"))
                        .bind("ceil")
                        .bind("bench")
                        .bind(format!("u{i}"))
                        .bind(PAGE)
                        .bind(psid(i))
                        .bind("sent")
                        .bind(format!("m_ceil_{i}"))
                        .bind(None::<i64>)
                        .bind(None::<i64>)
                        .bind(None::<String>)
                        .bind(None::<String>)
                        .bind(None::<String>)
                        .bind(1_i64)
                        .bind(i as i64)
                        .bind(i as i64);
                }
                statement.execute(&mut *tx).await.expect("insert");
                tx.commit().await.expect("commit");
            }
            let rate = rows as f64 / began.elapsed().as_secs_f64();
            sqlx::query("DROP TABLE bench_ceiling")
                .execute(&pool)
                .await
                .expect("drop");
            pool.close().await;
            rate
        }};
    }
    if database.starts_with("sqlite") {
        let options: sqlx::sqlite::SqliteConnectOptions = database.parse().expect("url");
        let options = options
            .journal_mode(sqlx::sqlite::SqliteJournalMode::Wal)
            .synchronous(sqlx::sqlite::SqliteSynchronous::Normal);
        run!(
            sqlx::SqlitePool::connect_with(options)
                .await
                .expect("sqlite"),
            |_| "?".to_owned()
        )
    } else {
        run!(
            sqlx::PgPool::connect(database).await.expect("postgres"),
            |n: usize| format!("${n}")
        )
    }
}

/// A new PostgreSQL database for this run, and a future that drops it.
async fn new_postgres_database() -> (String, impl std::future::Future<Output = ()>) {
    let base = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://herald:herald@127.0.0.1:5432/herald_test".to_owned());
    let admin = sqlx::PgPool::connect(&base)
        .await
        .expect("PostgreSQL (run scripts/test once)");
    let name = herald_tests::unique_name("bench").replace('-', "_");
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .expect("create database");
    let url = match base.rsplit_once('/') {
        Some((server, _)) => format!("{server}/{name}"),
        None => panic!("TEST_POSTGRES_URL names no database"),
    };
    let drop_it = async move {
        let _ = sqlx::query(&format!("DROP DATABASE {name} WITH (FORCE)"))
            .execute(&admin)
            .await;
        admin.close().await;
    };
    (url, drop_it)
}
