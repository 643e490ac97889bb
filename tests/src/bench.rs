//! Helpers the benchmarks share (`tests/benches/`): free local addresses, a process's RSS and peak RSS
//! and CPU time from `/proc`, and reading one value off a Herald process's `/metrics`.

/// A free local address (`127.0.0.1:PORT`) for a process to listen on.
pub fn free_addr() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("free port");
    listener.local_addr().expect("address").to_string()
}

/// The peak resident set of process `pid` so far, in KiB (0 once it is gone).
pub fn peak_rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status")).map_or(0, |s| field_kib(&s, "VmHWM:"))
}

/// The resident set of process `pid` now, in KiB (0 once it is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status")).map_or(0, |s| field_kib(&s, "VmRSS:"))
}

/// A `kB` field of `/proc/PID/status`.
pub fn field_kib(status: &str, name: &str) -> u64 {
    status
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// utime + stime of a process, in clock ticks (1/100 s).
pub fn cpu_ticks(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or(Vec::new(), |(_, rest)| rest.split_whitespace().collect());
    let field = |n: usize| {
        fields
            .get(n)
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0)
    };
    field(11) + field(12)
}

/// The `/metrics`, `/readyz` of a Herald process listening on an address.
pub struct Metrics {
    client: reqwest::Client,
    addr: String,
}

impl Metrics {
    /// For the process listening on `addr` (`host:port`).
    pub fn new(addr: &str) -> Self {
        Self {
            client: reqwest::Client::new(),
            addr: addr.to_owned(),
        }
    }

    /// The value of the sample whose line starts with `series` (name and labels exactly as
    /// exported); 0 when the process does not answer or has no such sample yet.
    pub async fn value(&self, series: &str) -> u64 {
        let url = format!("http://{}/metrics", self.addr);
        let Ok(response) = self.client.get(url).send().await else {
            return 0;
        };
        let text = response.text().await.unwrap_or_default();
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.trim().parse::<f64>().ok())
            .map_or(0, |value| value as u64)
    }

    /// Whether `/readyz` answers 200.
    pub async fn ready(&self) -> bool {
        let url = format!("http://{}/readyz", self.addr);
        self.client
            .get(url)
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    }
}
