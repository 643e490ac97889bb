//! Send API throughput of the simulator against a bare hyper server answering a fixed JSON, each
//! on a current_thread runtime on its own OS thread, driven by a load generator on another
//! thread over 64 keep-alive HTTP/1.1 connections with valid bodies for 10,000 distinct PSIDs.
//! The generator writes pre-encoded requests and parses answers by hand, so that it costs less
//! than the servers it measures (a hyper client on one core saturates before a hyper server).
//!
//! `cargo bench -p herald-sim --bench throughput` (`HERALD_BENCH_SECS` sets the measured seconds,
//! default 3, after half a second of warm-up; `HERALD_BENCH_ROWS=lean` runs only some rows of
//! `bare,lean,full`, e.g. under a profiler).

use std::io::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use herald_sim::SimConfig;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

const CONNECTIONS: usize = 64;
const PSIDS: usize = 10_000;
const WARMUP: Duration = Duration::from_millis(500);
/// `sysconf(_SC_CLK_TCK)` on Linux.
const CLOCK_TICKS_PER_SEC: f64 = 100.0;
const PATH: &str = "/v25.0/1000000001/messages?access_token=bench-token";

/// A server running on its own thread until `stop` is sent.
struct Server {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    /// Yields the CPU time the server thread used, in clock ticks.
    thread: std::thread::JoinHandle<Option<u64>>,
}

#[derive(Clone, Copy)]
struct Run {
    requests_per_sec: f64,
    /// Server-thread CPU per request: unlike requests/s, it hardly depends on what else runs.
    cpu_us_per_request: Option<f64>,
    errors: u64,
}

fn main() {
    let secs = std::env::var("HERALD_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    let measure = Duration::from_secs_f64(secs);
    let requests: Arc<Vec<Bytes>> = Arc::new((0..PSIDS).map(request).collect());

    let rows = std::env::var("HERALD_BENCH_ROWS").unwrap_or_else(|_| "bare,lean,full".to_owned());
    let wanted = |row: &str| rows.split(',').any(|r| r.trim() == row);
    let sim = |record_bodies| SimConfig {
        rate_per_sec: u32::MAX,
        record_bodies,
        ..SimConfig::default()
    };
    let mut results: Vec<(&str, Run)> = Vec::new();
    if wanted("bare") {
        results.push((
            "bare hyper, fixed JSON",
            measure_server(start_bare(), &requests, measure),
        ));
    }
    if wanted("lean") {
        let run = measure_server(start_sim(sim(false)), &requests, measure);
        results.push(("herald-sim, record_bodies=false", run));
    }
    if wanted("full") {
        let run = measure_server(start_sim(sim(true)), &requests, measure);
        results.push(("herald-sim, record_bodies=true", run));
    }
    let bare = results
        .first()
        .filter(|(name, _)| name.starts_with("bare"))
        .map(|(_, run)| *run);

    let mut out = std::io::stdout().lock();
    let _ = writeln!(
        out,
        "\nherald-sim throughput: {CONNECTIONS} keep-alive connections, {secs} s per row"
    );
    let _ = writeln!(
        out,
        "{:<34} {:>11} {:>8} {:>12} {:>16} {:>7}",
        "server (current_thread)",
        "requests/s",
        "vs bare",
        "CPU us/req",
        "req/s per core",
        "errors"
    );
    for (name, run) in results {
        let ratio = bare.map_or(f64::NAN, |bare| {
            run.requests_per_sec / bare.requests_per_sec
        });
        let cpu = run.cpu_us_per_request.unwrap_or(f64::NAN);
        let _ = writeln!(
            out,
            "{name:<34} {:>11.0} {:>8.2} {:>12.1} {:>16.0} {:>7}",
            run.requests_per_sec,
            ratio,
            cpu,
            1e6 / cpu,
            run.errors
        );
    }
    let _ = writeln!(
        out,
        "(req/s per core = 1e6 / CPU us per request of the server thread: its capacity on a whole core)"
    );
}

/// A complete HTTP/1.1 request with a valid Send API body for the `i`-th PSID.
fn request(i: usize) -> Bytes {
    let psid = 7_000_000_000_000_000u64 + i as u64;
    let json = format!(
        r#"{{"recipient":{{"id":"{psid}"}},"messaging_type":"UPDATE","notification_type":"REGULAR","message":{{"text":"Hi friend {i}, your code is SPRING-{i}. Reply STOP to opt out.","metadata":"run-1:ext-{i}"}}}}"#
    );
    let head = format!(
        "POST {PATH} HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        json.len()
    );
    Bytes::from(head + &json)
}

fn start_on_thread<F, Fut>(name: &str, serve: F) -> Server
where
    F: FnOnce(oneshot::Sender<SocketAddr>, oneshot::Receiver<()>) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()>,
{
    let (addr_tx, addr_rx) = oneshot::channel();
    let (stop, stop_rx) = oneshot::channel();
    let thread = std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(serve(addr_tx, stop_rx));
            thread_cpu_ticks()
        })
        .unwrap();
    let addr = addr_rx.blocking_recv().expect("server started");
    Server { addr, stop, thread }
}

fn start_sim(config: SimConfig) -> Server {
    start_on_thread("herald-sim", |addr_tx, stop| async move {
        let sim = herald_sim::spawn(config, "127.0.0.1:0".parse().unwrap())
            .await
            .unwrap();
        let _ = addr_tx.send(sim.addr());
        let _ = stop.await;
        sim.shutdown().await;
    })
}

fn start_bare() -> Server {
    start_on_thread("bare-hyper", |addr_tx, mut stop| async move {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _ = addr_tx.send(listener.local_addr().unwrap());
        loop {
            tokio::select! {
                _ = &mut stop => return,
                accepted = listener.accept() => {
                    let (stream, _) = accepted.unwrap();
                    let _ = stream.set_nodelay(true);
                    let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
                        let _ = request.into_body().collect().await?;
                        let mut response = Response::new(Full::new(Bytes::from_static(
                            br#"{"recipient_id":"1","message_id":"m_1"}"#,
                        )));
                        response.headers_mut().insert("content-type", "application/json".parse().unwrap());
                        Ok::<_, hyper::Error>(response)
                    });
                    tokio::spawn(hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service));
                }
            }
        }
    })
}

/// Drives `server` from a current_thread runtime on this thread, then stops it.
fn measure_server(server: Server, requests: &Arc<Vec<Bytes>>, measure: Duration) -> Run {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let (mut run, total) = runtime.block_on(load(server.addr, Arc::clone(requests), measure));
    let _ = server.stop.send(());
    let ticks = server.thread.join().unwrap();
    run.cpu_us_per_request = ticks.map(|t| t as f64 * 1e6 / CLOCK_TICKS_PER_SEC / total as f64);
    run
}

/// utime + stime of the calling thread from `/proc/thread-self/stat` (Linux only).
fn thread_cpu_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").ok()?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    Some(fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?)
}

/// Returns the measured run and the total number of requests (warm-up included).
async fn load(addr: SocketAddr, requests: Arc<Vec<Bytes>>, measure: Duration) -> (Run, u64) {
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let end = Instant::now() + WARMUP + measure;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..CONNECTIONS {
        let (requests, done, errors) = (
            Arc::clone(&requests),
            Arc::clone(&done),
            Arc::clone(&errors),
        );
        workers.spawn(async move {
            let mut stream = TcpStream::connect(addr).await.unwrap();
            stream.set_nodelay(true).unwrap();
            let mut buf: Vec<u8> = Vec::with_capacity(8192);
            let mut i = worker;
            while Instant::now() < end {
                stream
                    .write_all(&requests[i % requests.len()])
                    .await
                    .unwrap();
                let ok = loop {
                    if let Some((len, ok)) = parse_response(&buf) {
                        buf.drain(..len);
                        break ok;
                    }
                    assert!(
                        stream.read_buf(&mut buf).await.unwrap() > 0,
                        "server closed"
                    );
                };
                if !ok {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
                done.fetch_add(1, Ordering::Relaxed);
                i += CONNECTIONS;
            }
        });
    }
    tokio::time::sleep(WARMUP).await;
    let (start_count, started) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(measure).await;
    let (end_count, elapsed) = (done.load(Ordering::Relaxed), started.elapsed());
    workers.join_all().await;
    let run = Run {
        requests_per_sec: (end_count - start_count) as f64 / elapsed.as_secs_f64(),
        cpu_us_per_request: None,
        errors: errors.load(Ordering::Relaxed),
    };
    (run, done.load(Ordering::Relaxed))
}

/// `(length, status is 200)` of the first complete answer in `buf`, if there is one.
fn parse_response(buf: &[u8]) -> Option<(usize, bool)> {
    let head_end = buf.windows(4).position(|w| w == b"\r\n\r\n")? + 4;
    let head = std::str::from_utf8(&buf[..head_end]).ok()?;
    let ok = head.as_bytes().get(9..12) == Some(b"200");
    let length = head
        .split("\r\n")
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    (buf.len() >= head_end + length).then_some((head_end + length, ok))
}
