//! API-triggered sends next to the producer, in one run (these machines are noisy, so only the
//! ratio means much): `cargo bench -p herald-tests --bench trigger`.
//!
//! On a new SQLite store holding `BENCH_USERS` users with PSIDs (default 20,000), with
//! RabbitMQ on 127.0.0.1:
//! 1. **producer**: the release `herald campaign send` of the same users from a CSV segment:
//!    confirmed jobs/s, end to end (process start included).
//! 2. **trigger**: the release `herald serve` answers `POST /campaigns/{id}/trigger` calls of
//!    50 recipients each from `BENCH_CLIENTS` (default 8) concurrent keep-alive clients; each
//!    answer comes after the broker confirmed its jobs, so recipients/s here is recipients to
//!    confirmed jobs, each read from the store with their profile and rendered.
//!
//! 3. **events**: the same clients send `/users/track` calls of 50 events, one per user, each
//!    firing a stored campaign with a `[trigger]`; timed until serve's
//!    `herald_trigger_enqueued_total` shows every event's job confirmed.
//!
//! The producer's row is the baseline: a trigger does per call what the producer does once per
//! run (a run record, a store read, a confirm wait), and a fire does per person what a run does
//! per row plus its own store round trips (record, claim, once_per, settle).
#![allow(clippy::print_stdout)] // The report is the output.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use herald_amqp::{AmqpSettings, Topology};
use herald_tests::bench::free_addr;
use serde_json::json;

const PAGE: &str = "1000000001";
const TOKEN: &str = "bench-api-token-0123456789abcdefghij";
const PER_CALL: usize = 50;

fn main() {
    let setting = |name: &str, default: usize| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let users = setting("BENCH_USERS", 20_000);
    let clients = setting("BENCH_CLIENTS", 8);
    let herald = herald_tests::build_herald(true);
    let dir = tempfile::tempdir().expect("temp dir");
    let mut csv = String::from("external_id,messenger_id,first_name\n");
    for n in 0..users {
        csv.push_str(&format!("u{n},{},Ana\n", 90_000_000 + n));
    }
    std::fs::write(dir.path().join("users.csv"), &csv).expect("segment");
    let campaign = format!(
        "id = \"bench-trigger\"\npage_id = \"{PAGE}\"\nmessaging_type = \"UPDATE\"\n\
         [message]\ntext = \"Hi {{{{ first_name }}}}, order {{{{ trigger.order_id }}}}\"\n\
         [segment]\nfile = \"users.csv\"\n[delivery]\nwindow = \"off\"\n"
    );
    std::fs::write(dir.path().join("campaign.toml"), &campaign).expect("campaign");
    let event_campaign = format!(
        "id = \"bench-event\"\npage_id = \"{PAGE}\"\nmessaging_type = \"UPDATE\"\n\
         [message]\ntext = \"Hi {{{{ first_name }}}}, order {{{{ trigger.order_id }}}}\"\n\
         [delivery]\nwindow = \"off\"\n[trigger]\nevent = \"bench_event\"\n"
    );
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let prefix = format!("bench-trigger-{}", std::process::id());
    let env = [
        ("HERALD_AMQP_URL", herald_tests::amqp_addr()),
        ("HERALD_DATABASE_URL", database.clone()),
        ("HERALD_TOPOLOGY_PREFIX", prefix.clone()),
        ("HERALD_API_TOKEN", TOKEN.to_owned()),
        ("HERALD_APP_SECRET", "bench-app-secret".to_owned()),
        ("HERALD_VERIFY_TOKEN", "bench-verify-token".to_owned()),
        ("HERALD_LOG", "warn".to_owned()),
    ];
    let run = |args: &[&str]| {
        let status = Command::new(&herald)
            .args(args)
            .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
            .current_dir(dir.path())
            .stdout(Stdio::null())
            .status()
            .expect("run herald");
        assert!(status.success(), "herald {args:?}: {status}");
    };
    run(&["users", "import", "users.csv", "--page", PAGE]);

    let started = Instant::now();
    run(&["campaign", "send", "campaign.toml"]);
    let producer = started.elapsed();

    let addr = free_addr();
    let mut serve = Command::new(&herald)
        .args(["serve", "--addr", &addr, "--no-ingest", "--no-results"])
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .stdout(Stdio::null())
        .spawn()
        .expect("serve");
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let base = format!("http://{addr}");
    let (trigger, fired, answered) = runtime.block_on(async {
        let client = reqwest::Client::new();
        let up = herald_tests::eventually(Duration::from_secs(30), || async {
            client
                .get(format!("{base}/readyz"))
                .send()
                .await
                .is_ok_and(|r| r.status().is_success())
        })
        .await;
        assert!(up, "serve did not become ready");
        put_campaign(&client, &base, "bench-trigger", &campaign).await;
        let chunks: Vec<Vec<usize>> = (0..users)
            .collect::<Vec<_>>()
            .chunks(PER_CALL)
            .map(<[usize]>::to_vec)
            .collect();
        let triggers: Vec<serde_json::Value> = chunks
            .iter()
            .map(|call| {
                let recipients: Vec<_> = call
                    .iter()
                    .map(|n| {
                        json!({"external_user_id": format!("u{n}"),
                        "trigger_properties": {"order_id": format!("o{n}")}})
                    })
                    .collect();
                json!({ "recipients": recipients })
            })
            .collect();
        let started = Instant::now();
        let path = format!("{base}/campaigns/bench-trigger/trigger");
        hammer(&client, &path, triggers, clients, 201).await;
        let trigger = started.elapsed();

        // Action-based: one event per user to /users/track, each firing a stored campaign.
        put_campaign(&client, &base, "bench-event", &event_campaign).await;
        let at = time::OffsetDateTime::now_utc()
            .format(&time::format_description::well_known::Rfc3339)
            .expect("time");
        let events: Vec<serde_json::Value> = chunks
            .iter()
            .map(|call| {
                let events: Vec<_> = call
                    .iter()
                    .map(|n| {
                        json!({"external_id": format!("u{n}"), "name": "bench_event",
                        "time": at, "properties": {"order_id": format!("o{n}")}})
                    })
                    .collect();
                json!({ "events": events })
            })
            .collect();
        let started = Instant::now();
        hammer(
            &client,
            &format!("{base}/users/track"),
            events,
            clients,
            200,
        )
        .await;
        let answered = started.elapsed();
        let enqueued = herald_tests::eventually(Duration::from_secs(600), || async {
            let metrics = client
                .get(format!("{base}/metrics"))
                .send()
                .await
                .expect("metrics")
                .text()
                .await
                .unwrap_or_default();
            metrics
                .lines()
                .find_map(|line| line.strip_prefix("herald_trigger_enqueued_total "))
                .and_then(|n| n.trim().parse::<usize>().ok())
                .is_some_and(|n| n >= users)
        })
        .await;
        assert!(enqueued, "not every event's job was enqueued");
        (trigger, started.elapsed(), answered)
    });
    let _ = Command::new("kill")
        .args(["-TERM", &serve.id().to_string()])
        .status();
    let _ = serve.wait();
    runtime.block_on(async {
        let amqp = AmqpSettings {
            url: herald_tests::amqp_addr().into(),
            ..AmqpSettings::default()
        };
        let connection = herald_amqp::connect(&amqp).await.expect("connect");
        let _ = Topology::new(&prefix)
            .expect("prefix")
            .delete(&connection)
            .await;
    });

    let producer_rate = users as f64 / producer.as_secs_f64();
    let trigger_rate = users as f64 / trigger.as_secs_f64();
    let fired_rate = users as f64 / fired.as_secs_f64();
    println!("users: {users}, {PER_CALL} recipients a call, {clients} clients");
    println!("{:<48} {:>12} {:>10}", "", "recipients/s", "seconds");
    println!(
        "{:<48} {producer_rate:>12.0} {:>10.2}",
        "herald campaign send (baseline)",
        producer.as_secs_f64()
    );
    println!(
        "{:<48} {trigger_rate:>12.0} {:>10.2}",
        "POST /campaigns/{id}/trigger through serve",
        trigger.as_secs_f64()
    );
    println!(
        "{:<48} {fired_rate:>12.0} {:>10.2}",
        "/users/track events firing a [trigger] campaign",
        fired.as_secs_f64()
    );
    println!(
        "  (the track calls were all answered after {:.2} s)",
        answered.as_secs_f64()
    );
    println!(
        "ratio trigger/producer: {:.2}, events/producer: {:.2}",
        trigger_rate / producer_rate,
        fired_rate / producer_rate
    );
}

/// Saves a TOML campaign under `id` through the API.
async fn put_campaign(client: &reqwest::Client, base: &str, id: &str, document: &str) {
    let saved = client
        .put(format!("{base}/campaigns/{id}"))
        .bearer_auth(TOKEN)
        .header("content-type", "application/toml")
        .body(document.to_owned())
        .send()
        .await
        .expect("put");
    assert!(
        saved.status().is_success(),
        "{}",
        saved.text().await.unwrap_or_default()
    );
}

/// `clients` concurrent keep-alive clients POST `bodies` to `url`, each answered `status`.
async fn hammer(
    client: &reqwest::Client,
    url: &str,
    bodies: Vec<serde_json::Value>,
    clients: usize,
    status: u16,
) {
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let bodies = std::sync::Arc::new(bodies);
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (client, url, next, bodies) =
            (client.clone(), url.to_owned(), next.clone(), bodies.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let Some(body) = bodies.get(index) else {
                    return;
                };
                let reply = client
                    .post(&url)
                    .bearer_auth(TOKEN)
                    .json(body)
                    .send()
                    .await
                    .expect("request");
                assert_eq!(
                    reply.status().as_u16(),
                    status,
                    "{}",
                    reply.text().await.unwrap_or_default()
                );
            }
        }));
    }
    for task in tasks {
        task.await.expect("client");
    }
}
