//! Helpers for Herald's end-to-end tests (ARCHITECTURE.md, Invariants): a broker connection that
//! refuses to skip under CI, an in-process simulator, unique names, and polling with a deadline
//! instead of fixed sleeps. The tests themselves live in `src/tests/` and build into one test
//! binary.

use std::future::Future;
use std::time::{Duration, Instant};

pub mod bench;
pub mod postgres;
#[cfg(test)]
mod tests;
pub mod worker_rig;

/// The broker the tests use: `AMQP_ADDR`, else RabbitMQ's guest account on 127.0.0.1.
pub fn amqp_addr() -> String {
    std::env::var("AMQP_ADDR").unwrap_or_else(|_| "amqp://127.0.0.1:5672/%2f".to_owned())
}

/// Connects to the test broker (one attempt, through `herald_amqp` like everything else).
/// Without a broker: under `CI` this panics (a test that needs the broker must never pass
/// silently there); elsewhere it prints `skipping: no broker` and returns `None`, and the caller
/// returns early.
pub async fn broker() -> Option<herald_amqp::Connection> {
    let addr = amqp_addr();
    let settings = herald_amqp::AmqpSettings {
        connect_attempts: 1,
        ..test_amqp()
    };
    match herald_amqp::connect(&settings).await {
        Ok(connection) => Some(connection),
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but the broker at {addr} is unreachable ({error}); run scripts/test")
        }
        Err(error) => {
            eprintln!("skipping: no broker at {addr} ({error})");
            None
        }
    }
}

/// A name no other test run uses: `test-<pid>-<counter>-<nanos>`.
pub fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix}-{}-{n}-{nanos}", std::process::id())
}

/// Polls `condition` every 20 ms until it returns true or `timeout` passes; returns whether it
/// became true. Use it instead of a fixed sleep.
pub async fn eventually<F, Fut>(timeout: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Builds this workspace's `herald` binary (debug for tests, `release` for benchmarks) into the
/// target directory of the running test or bench executable, and returns its path.
pub fn build_herald(release: bool) -> std::path::PathBuf {
    let mut args = vec!["build", "-q", "-p", "herald-cli", "--bin", "herald"];
    if release {
        args.push("--release");
    }
    let status = std::process::Command::new(env!("CARGO"))
        .args(&args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo build");
    assert!(status.success(), "building the herald binary failed");
    // target/<profile>/deps/<test>-… → target/<profile>/herald
    let exe = std::env::current_exe().expect("test executable path");
    let bin = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target dir")
        .join("herald");
    assert!(bin.exists(), "{} missing after the build", bin.display());
    bin
}

/// The `herald` binary of the tests' own profile (debug, or release under `cargo test
/// --release`), built once per test run (`cargo test -p herald-tests` alone does not build it).
pub fn herald_bin() -> std::path::PathBuf {
    use std::sync::OnceLock;
    static BIN: OnceLock<std::path::PathBuf> = OnceLock::new();
    BIN.get_or_init(|| build_herald(!cfg!(debug_assertions)))
        .clone()
}

/// A `herald` command with a clean environment: only PATH, HOME and the given settings, so the
/// developer's own `HERALD_*` variables never leak into a test.
pub fn herald(settings: &[(&str, &str)]) -> std::process::Command {
    let mut command = std::process::Command::new(herald_bin());
    command.env_clear();
    for key in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    command
        .env("HERALD_AMQP_URL", amqp_addr())
        .env("HERALD_LOG_FORMAT", "json");
    for (key, value) in settings {
        command.env(key, value);
    }
    command
}

/// Takes every message from `queue` until none has arrived for half a second (a consumer with
/// a large prefetch whose acks are coalesced, so thousands drain quickly).
pub async fn drain(connection: &herald_amqp::Connection, queue: &str) -> Vec<Vec<u8>> {
    use futures_util::StreamExt;
    let mut consumer = herald_amqp::Consumer::start(connection, queue, 2000)
        .await
        .expect("basic.consume");
    let mut bodies = Vec::new();
    let mut acks = futures_util::stream::FuturesUnordered::new();
    while let Ok(Some(delivery)) =
        tokio::time::timeout(Duration::from_millis(500), consumer.next()).await
    {
        let delivery = delivery.expect("delivery");
        bodies.push(delivery.body().to_vec());
        acks.push(async move { delivery.ack().await.expect("ack") });
        // Settled acks free prefetch room; waiting for them one by one would not.
        while let Some(Some(())) = futures_util::FutureExt::now_or_never(acks.next()) {}
    }
    while acks.next().await.is_some() {}
    let _ = consumer.close().await;
    bodies
}

/// A child process killed (and reaped) when dropped, so a failing test leaves nothing behind.
pub struct Running(pub std::process::Child);

/// How long `Running::terminate` waits for a process to exit on SIGTERM (a worker drains for
/// up to 30 s) before it kills it and reports failure.
const EXIT_WAIT: Duration = Duration::from_secs(90);

impl Running {
    /// SIGTERM, then whether it exited 0 within `EXIT_WAIT` (else it is killed: false). The
    /// wait does not block the test's runtime, which may run the simulator or a webhook
    /// receiver the process is still calling while it drains.
    pub async fn terminate(mut self) -> bool {
        let pid = self.0.id().to_string();
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status();
        let deadline = Instant::now() + EXIT_WAIT;
        while Instant::now() < deadline {
            match self.0.try_wait() {
                Ok(Some(status)) => return status.success(),
                Ok(None) => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(_) => return false,
            }
        }
        false
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Publishes every body on `exchange` with routing key `key`, pipelined, and waits until the
/// broker confirmed them all.
pub async fn publish_all(
    publisher: &herald_amqp::Publisher,
    exchange: &str,
    key: &str,
    bodies: impl IntoIterator<Item = Vec<u8>>,
) {
    let messages = bodies
        .into_iter()
        .map(|body| (body, herald_amqp::Headers::new()));
    publish_all_with(publisher, exchange, key, messages).await;
}

/// `publish_all` with each body's own headers.
pub async fn publish_all_with(
    publisher: &herald_amqp::Publisher,
    exchange: &str,
    key: &str,
    messages: impl IntoIterator<Item = (Vec<u8>, herald_amqp::Headers)>,
) {
    let mut confirms = Vec::new();
    for (body, headers) in messages {
        let confirm = publisher
            .publish(exchange, key, &body, headers)
            .await
            .expect("publish");
        confirms.push(confirm);
    }
    for confirm in confirms {
        confirm.await.expect("confirmed");
    }
}

/// Writes `campaign.toml` (campaign `id` on page `page`, text "Hi {{ first_name }}!", segment
/// `users.csv`, then `extra` TOML) and `users.csv` with `users` users `u<n>` whose PSIDs count
/// up from `first_psid`, into `dir`.
pub fn write_campaign(
    dir: &std::path::Path,
    (id, page): (&str, &str),
    users: u64,
    first_psid: u64,
    extra: &str,
) {
    let mut csv = String::from("external_id,messenger_id,first_name\n");
    for n in 0..users {
        csv.push_str(&format!("u{n},{},Ana\n", first_psid + n));
    }
    std::fs::write(dir.join("users.csv"), csv).expect("segment");
    let campaign = format!(
        "id = \"{id}\"\npage_id = \"{page}\"\nmessaging_type = \"UPDATE\"\n\
         [message]\ntext = \"Hi {{{{ first_name }}}}!\"\n[segment]\nfile = \"users.csv\"\n{extra}"
    );
    std::fs::write(dir.join("campaign.toml"), campaign).expect("campaign");
}

/// `sha256=<hex HMAC-SHA256(secret, body)>`, as Meta signs a webhook body.
pub fn sign_webhook(secret: &str, body: &[u8]) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(secret.as_bytes()).expect("any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// A webhook body as `herald serve`'s webhook publishes it to `<prefix>.events`: with its
/// signature under `secret`, which the ingest checks.
pub fn webhook_message(secret: &str, body: Vec<u8>) -> (Vec<u8>, herald_amqp::Headers) {
    let signature = sign_webhook(secret, &body);
    let headers = herald_amqp::Headers::new().with_webhook_signature(&signature);
    (body, headers)
}

/// Settings for a test's own broker connection (a probe, a rig's, a cleanup's), never for a
/// Herald process under test: no heartbeats. Such a connection may sit idle through a long
/// test while herald processes load the machine, and the broker closed one for late heartbeats
/// (in CI, failing the test at its cleanup).
pub fn test_amqp() -> herald_amqp::AmqpSettings {
    herald_amqp::AmqpSettings {
        url: amqp_addr().into(),
        connection_name: "herald-tests".to_owned(),
        heartbeat_secs: 0,
        ..herald_amqp::AmqpSettings::default()
    }
}

/// Deletes every exchange and queue of the topology `prefix` on the test broker (cleanup).
pub async fn delete_topology(prefix: &str) {
    let connection = herald_amqp::connect(&test_amqp()).await.expect("connect");
    herald_amqp::Topology::new(prefix)
        .expect("topology")
        .delete(&connection)
        .await
        .expect("delete topology");
    let _ = connection.close().await;
}

/// Runs `herald ARGS` in `dir` with `settings` (as `herald()`) to completion without blocking
/// the runtime; asserts it exited 0 and returns its stdout.
pub async fn herald_ok(dir: &std::path::Path, settings: &[(&str, &str)], args: &[&str]) -> String {
    let output = tokio::process::Command::from(herald(settings))
        .args(args)
        .current_dir(dir)
        .output()
        .await
        .expect("run herald");
    assert!(
        output.status.success(),
        "herald {args:?} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}
