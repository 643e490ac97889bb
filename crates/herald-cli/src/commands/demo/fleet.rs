//! `herald demo --amqp`: real `herald worker` processes (this executable) on a topology prefix of
//! their own, so the demo never touches another run's queues. Each prints its metrics address
//! first; the demo scrapes `/metrics` at the end for the send-latency histogram, then stops
//! every worker with SIGTERM (they drain and exit 0) and deletes the topology. Worker logs go to
//! `worker-<n>.log` in the sample directory.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, ChildStdout, Command};

/// How long a worker may take to print its metrics address.
const STARTUP: Duration = Duration::from_secs(30);
/// SIGTERM drains within the worker's 30 s grace; past this it is killed.
const STOP_WITHIN: Duration = Duration::from_secs(35);
/// Environment passed through to the workers; everything else they get is set here.
const PASSED: [&str; 3] = ["PATH", "HOME", "HERALD_LOG"];

/// Worker processes.
pub(crate) struct Fleet {
    workers: Vec<Worker>,
}

struct Worker {
    child: Child,
    /// `http://127.0.0.1:PORT/metrics`.
    metrics_url: String,
    /// Kept open, so the worker never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
}

impl Fleet {
    /// Starts `count` workers with `env` (HERALD_* settings) in `dir`, and waits until each has
    /// printed its metrics address.
    pub(crate) async fn spawn(
        count: usize,
        concurrency: usize,
        env: &[(String, String)],
        dir: &Path,
    ) -> Result<Self, String> {
        let exe = std::env::current_exe().map_err(|e| format!("cannot find herald: {e}"))?;
        let mut workers = Vec::with_capacity(count);
        for index in 1..=count {
            let log = std::fs::File::create(dir.join(format!("worker-{index}.log")))
                .map_err(|e| format!("cannot create a worker log in {}: {e}", dir.display()))?;
            let mut command = Command::new(&exe);
            command
                .args(["worker", "--metrics-addr", "127.0.0.1:0"])
                .args(["--concurrency", &concurrency.to_string()])
                .env_clear()
                .envs(
                    PASSED
                        .iter()
                        .filter_map(|k| Some((k, std::env::var_os(k)?))),
                )
                .envs(env.iter().map(|(k, v)| (k, v)))
                .current_dir(dir)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(log)
                .kill_on_drop(true);
            let mut child = command
                .spawn()
                .map_err(|e| format!("cannot start herald worker: {e}"))?;
            let stdout = child.stdout.take().ok_or("no worker stdout")?;
            let mut line = String::new();
            let mut stdout = BufReader::new(stdout);
            let _ = tokio::time::timeout(STARTUP, stdout.read_line(&mut line)).await;
            let metrics_url = line
                .trim()
                .strip_prefix("metrics: ")
                .ok_or_else(|| {
                    format!(
                        "herald worker {index} did not start; see {}",
                        dir.join(format!("worker-{index}.log")).display()
                    )
                })?
                .to_owned();
            workers.push(Worker {
                child,
                metrics_url,
                _stdout: stdout,
            });
        }
        Ok(Self { workers })
    }

    /// A worker exited while it should be running.
    pub(crate) fn trouble(&mut self) -> Option<String> {
        let exited = self
            .workers
            .iter_mut()
            .any(|worker| !matches!(worker.child.try_wait(), Ok(None)));
        exited.then(|| "a herald worker process exited (see worker-<n>.log)".to_owned())
    }

    /// Every worker's `/metrics` text (empty for one that does not answer).
    pub(crate) async fn metrics(&self) -> Vec<String> {
        let mut texts = Vec::with_capacity(self.workers.len());
        for worker in &self.workers {
            texts.push(get(&worker.metrics_url).await.unwrap_or_default());
        }
        texts
    }

    /// SIGTERM to every worker, then waits for each (killing one that outlives the drain).
    pub(crate) async fn stop(self) {
        for worker in &self.workers {
            if let Some(pid) = worker.child.id() {
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
        }
        for mut worker in self.workers {
            match tokio::time::timeout(STOP_WITHIN, worker.child.wait()).await {
                Ok(Ok(status)) if status.success() => {}
                Ok(Ok(status)) => eprintln!("herald demo: a worker exited with {status}"),
                Ok(Err(_)) | Err(_) => {
                    let _ = worker.child.kill().await;
                }
            }
        }
    }
}

/// A plain HTTP/1.0 GET of `http://host:port/path`; the body, or `None`.
async fn get(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/')?;
    let mut stream = tokio::net::TcpStream::connect(host).await.ok()?;
    let request = format!("GET /{path} HTTP/1.0\r\nHost: {host}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = Vec::new();
    let read = stream.read_to_end(&mut response);
    tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .ok()?
        .ok()?;
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n")?;
    head.starts_with("HTTP/1.")
        .then_some(())
        .filter(|()| head.lines().next().is_some_and(|l| l.contains(" 200 ")))?;
    Some(body.to_owned())
}
