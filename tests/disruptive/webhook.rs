//! `herald serve` (the real process) under hostile clients: 500 connections trickling their
//! headers a byte a second and 100 concurrent signed 4 MiB bodies, while ordinary signed
//! webhook POSTs are still answered 200 within a second (one of five may take up to two) and
//! serve's memory stays under 256 MB.
//! The trickling connections are closed by the server (header read timeout); every large body
//! is answered (200, or 503 when the budget of bodies in memory is full), none hangs. It runs
//! here, alone, because its one-second bound means nothing on a machine busy with other tests.

use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use herald_tests::bench::{free_addr, peak_rss_kib};
use herald_tests::{Running, broker, eventually, herald, unique_name};

const APP_SECRET: &str = "hostile-app-secret";
const SLOW_CLIENTS: usize = 500;
const LARGE_BODIES: usize = 100;

fn sign(body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(APP_SECRET.as_bytes()).expect("key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_greedy_clients_do_not_take_the_webhook_down() {
    let _serial = crate::SERIAL.lock().await;
    let Some(connection) = broker().await else {
        return;
    };
    drop(connection);
    let prefix = unique_name("test-hostile");
    let dir = tempfile::tempdir().expect("temp dir");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let addr = free_addr();
    let child = herald(&[
        ("HERALD_TOPOLOGY_PREFIX", prefix.as_str()),
        ("HERALD_DATABASE_URL", database.as_str()),
        ("HERALD_APP_SECRET", APP_SECRET),
        ("HERALD_VERIFY_TOKEN", "hostile-verify-token"),
    ])
    .args(["serve", "--addr", &addr, "--no-ingest", "--no-results"])
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null())
    .spawn()
    .expect("spawn herald serve");
    let serve = Running(child);
    let base = format!("http://{addr}");
    let client = reqwest::Client::new();
    let ready = eventually(Duration::from_secs(30), || async {
        client
            .get(format!("{base}/readyz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    assert!(ready, "herald serve never became ready");

    // 500 clients sending their headers one byte a second.
    let slow: Vec<_> = (0..SLOW_CLIENTS)
        .map(|_| {
            let addr = addr.clone();
            tokio::spawn(async move {
                let Ok(mut stream) = tokio::net::TcpStream::connect(&addr).await else {
                    return false;
                };
                let started = Instant::now();
                let headers = b"POST /webhook HTTP/1.1\r\nHost: herald\r\nX-Padding: aaaaaaaaaaaa";
                for byte in headers {
                    if stream.write_all(&[*byte]).await.is_err() {
                        return true;
                    }
                    let mut buf = [0_u8; 64];
                    let read = tokio::time::timeout(Duration::from_secs(1), stream.read(&mut buf));
                    // An answer, EOF or a reset: the server closed it (a timeout: still open).
                    if read.await.is_ok() {
                        return true;
                    }
                    if started.elapsed() > Duration::from_secs(20) {
                        break;
                    }
                }
                false
            })
        })
        .collect();
    // 100 signed bodies just under the 4 MiB limit, all at once.
    let pad = "x".repeat(4 * 1024 * 1024 - 200);
    let large_body = format!(r#"{{"object":"page","entry":[],"pad":"{pad}"}}"#).into_bytes();
    let large_signature = sign(&large_body);
    let large: Vec<_> = (0..LARGE_BODIES)
        .map(|_| {
            let (client, url) = (reqwest::Client::new(), format!("{base}/webhook"));
            let (body, signature) = (large_body.clone(), large_signature.clone());
            tokio::spawn(async move {
                client
                    .post(url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", signature)
                    .body(body)
                    .timeout(Duration::from_secs(60))
                    .send()
                    .await
                    .map(|response| response.status().as_u16())
                    .unwrap_or(0)
            })
        })
        .collect();

    // Meanwhile, an ordinary delivery, a few times over the next seconds, from a client of its
    // own (a thread and runtime apart from the attackers', as Meta is another machine).
    let url = format!("{base}/webhook");
    let ordinary = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            let client = reqwest::Client::new();
            let small =
                br#"{"object":"page","entry":[{"id":"1000000001","time":1,"messaging":[]}]}"#;
            let mut took = Vec::new();
            for _ in 0..5 {
                tokio::time::sleep(Duration::from_millis(700)).await;
                let started = Instant::now();
                let answer = client
                    .post(&url)
                    .header("content-type", "application/json")
                    .header("x-hub-signature-256", sign(small))
                    .body(small.to_vec())
                    .timeout(Duration::from_secs(5))
                    .send()
                    .await
                    .expect("an ordinary POST is answered");
                took.push((answer.status().as_u16(), started.elapsed()));
            }
            took
        })
    });
    // Every ordinary POST is accepted, and within a second (one of the five may take up to
    // two: the attack is generated on the same two cores as serve and the broker).
    let answers = ordinary.join().expect("ordinary client");
    assert!(
        answers.iter().all(|(status, _)| *status == 200),
        "{answers:?}"
    );
    let late = answers
        .iter()
        .filter(|(_, took)| *took >= Duration::from_secs(1))
        .count();
    assert!(
        late <= 1
            && answers
                .iter()
                .all(|(_, took)| *took < Duration::from_secs(2)),
        "ordinary POSTs took {answers:?}"
    );

    let mut statuses = Vec::new();
    for task in large {
        statuses.push(task.await.expect("large body task"));
    }
    assert!(
        statuses
            .iter()
            .all(|status| *status == 200 || *status == 503),
        "{statuses:?}"
    );
    assert!(statuses.contains(&200), "{statuses:?}");
    let mut closed = 0;
    for task in slow {
        closed += usize::from(task.await.expect("slow client task"));
    }
    assert!(
        closed >= SLOW_CLIENTS * 9 / 10,
        "the server closed only {closed} of {SLOW_CLIENTS} trickling connections"
    );
    let peak_mb = peak_rss_kib(serve.0.id()) / 1024;
    assert!(peak_mb < 256, "serve peaked at {peak_mb} MB");
    assert!(serve.terminate().await, "serve exits 0 on SIGTERM");

    herald_tests::delete_topology(&prefix).await;
}
