//! Producer throughput next to its baseline, in one run (these machines are noisy, so only the
//! ratio means much): `cargo bench -p herald-tests --bench producer`.
//!
//! 1. Baseline (run before and after Herald): a bare lapin loop publishing persistent messages of a job's size to a quorum
//!    queue with publisher confirms pipelined (1024 outstanding), the same durability Herald uses.
//! 2. Herald: the release `herald campaign send` on a CSV segment of the same size (render,
//!    plan, serialise, publish with confirms, checkpoint), timed end to end, with its peak RSS.
//!
//! Needs RabbitMQ on 127.0.0.1:5672. `BENCH_ROWS` sets the segment size (default 1,000,000).

#![allow(clippy::print_stdout)] // A benchmark's report is its output.

use std::collections::VecDeque;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

/// The example campaign (`herald_core::campaign::EXAMPLE_TOML`); every row of the generated segment
/// passes its filter.
const CAMPAIGN: &str = herald_core::campaign::EXAMPLE_TOML;

fn main() {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let addr = herald_tests::amqp_addr();
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    write_segment(&dir.path().join("users.csv"), rows);
    std::fs::write(dir.path().join("campaign.toml"), CAMPAIGN).expect("campaign");
    let herald = herald_tests::build_herald(true);

    // A job's size, from the same template, so the baseline moves the same bytes.
    let body = sample_job();
    // The baseline runs before and after Herald, and Herald is compared with their mean, so a
    // change in the machine's load during the run weighs on both sides alike.
    let before = runtime.block_on(bare_publish(&addr, rows, &body));
    let (elapsed, peak_kib) = herald_send(&herald, dir.path(), &addr, rows, &runtime);
    let after = runtime.block_on(bare_publish(&addr, rows, &body));
    let baseline = (before + after) / 2;

    let base_rate = rows as f64 / baseline.as_secs_f64();
    let herald_rate = rows as f64 / elapsed.as_secs_f64();
    println!("rows: {rows}, job size: {} bytes", body.len());
    println!("{:<44} {:>12} {:>10}", "", "jobs/s", "seconds");
    for (label, time) in [
        ("bare lapin loop, before Herald", before),
        ("bare lapin loop, after Herald", after),
    ] {
        println!(
            "{label:<44} {:>12.0} {:>10.2}",
            rows as f64 / time.as_secs_f64(),
            time.as_secs_f64()
        );
    }
    println!(
        "{:<44} {:>12.0} {:>10.2}",
        "baseline (mean of the two)",
        base_rate,
        baseline.as_secs_f64()
    );
    println!(
        "{:<44} {:>12.0} {:>10.2}",
        "herald campaign send",
        herald_rate,
        elapsed.as_secs_f64()
    );
    println!("ratio herald/baseline: {:.2}", herald_rate / base_rate);
    println!("herald peak RSS: {:.1} MB", peak_kib as f64 / 1024.0);
}

fn write_segment(path: &Path, rows: usize) {
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("segment"));
    writeln!(
        file,
        "external_id,messenger_id,first_name,promo_code,country"
    )
    .expect("write");
    for i in 0..rows {
        writeln!(
            file,
            "user-{i},{},Name{i},CODE{i},BR",
            10_000_000_000u64 + i as u64
        )
        .expect("write");
    }
}

fn sample_job() -> Vec<u8> {
    let campaign = herald_core::Campaign::from_toml(CAMPAIGN).expect("campaign");
    let user = herald_core::User::new("user-123456", "10000123456")
        .with_attr("first_name", "Name123456")
        .with_attr("promo_code", "CODE123456")
        .with_attr("country", "BR");
    let mut planner = herald_producer::plan::Planner::new(&campaign, "r20261121000000-abcdef");
    match planner.plan(&user, time::OffsetDateTime::now_utc()) {
        Some(herald_producer::plan::Planned::Job(job)) => serde_json::to_vec(&job).expect("job"),
        other => panic!("expected a job, got {other:?}"),
    }
}

async fn bare_publish(addr: &str, rows: usize, body: &[u8]) -> Duration {
    let connection = Connection::connect(addr, ConnectionProperties::default())
        .await
        .expect("broker");
    let channel = connection.create_channel().await.expect("channel");
    let queue = herald_tests::unique_name("bench-bare");
    let mut arguments = FieldTable::default();
    arguments.insert(
        "x-queue-type".into(),
        AMQPValue::LongString("quorum".into()),
    );
    let durable = QueueDeclareOptions {
        durable: true,
        ..QueueDeclareOptions::default()
    };
    channel
        .queue_declare(queue.as_str().into(), durable, arguments)
        .await
        .expect("declare");
    channel
        .confirm_select(ConfirmSelectOptions::default())
        .await
        .expect("confirms");
    let started = Instant::now();
    let mut outstanding = VecDeque::with_capacity(1024);
    for _ in 0..rows {
        if outstanding.len() == 1024 {
            let confirm: lapin::PublisherConfirm = outstanding.pop_front().expect("front");
            assert!(confirm.await.expect("confirm").is_ack(), "nacked");
        }
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_content_type("application/json".into());
        let options = BasicPublishOptions {
            mandatory: true,
            immediate: false,
        };
        let confirm = channel
            .basic_publish("".into(), queue.as_str().into(), options, body, properties)
            .await
            .expect("publish");
        outstanding.push_back(confirm);
    }
    for confirm in outstanding {
        assert!(confirm.await.expect("confirm").is_ack(), "nacked");
    }
    let elapsed = started.elapsed();
    channel
        .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
        .await
        .expect("delete");
    let _ = connection.close(200, "done".into()).await;
    elapsed
}

fn herald_send(
    herald: &Path,
    dir: &Path,
    addr: &str,
    rows: usize,
    runtime: &tokio::runtime::Runtime,
) -> (Duration, u64) {
    let prefix = herald_tests::unique_name("bench-herald");
    let started = Instant::now();
    let mut child = std::process::Command::new(herald)
        .args(["campaign", "send", "campaign.toml"])
        .current_dir(dir)
        .env_clear()
        .env("HERALD_AMQP_URL", addr)
        .env("HERALD_TOPOLOGY_PREFIX", &prefix)
        .env(
            "HERALD_DATABASE_URL",
            format!("sqlite://{}", dir.join("herald.db").display()),
        )
        .env("HERALD_LOG", "warn")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("spawn herald");
    let mut peak_kib = 0;
    let status = loop {
        peak_kib = peak_kib.max(herald_tests::bench::peak_rss_kib(child.id()));
        if let Some(status) = child.try_wait().expect("wait") {
            break status;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let elapsed = started.elapsed();
    let output = child.wait_with_output().expect("output");
    assert!(
        status.success(),
        "herald failed: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(stdout.contains(&format!("published: {rows}")), "{stdout}");
    runtime.block_on(async {
        let settings = herald_amqp::AmqpSettings {
            url: addr.into(),
            ..Default::default()
        };
        let connection = herald_amqp::connect(&settings).await.expect("connect");
        herald_amqp::Topology::new(&prefix)
            .expect("prefix")
            .delete(&connection)
            .await
            .expect("cleanup");
    });
    (elapsed, peak_kib)
}
