//! The Herald services of docker-compose.yml started as local processes, each replica with the
//! compose file's own command and environment. What cannot be the same on one machine is
//! translated, and nothing else:
//! - a compose hostname (`rabbitmq:5672`, `postgres:5432`, `sim:8900`, `serve:8080`) becomes an
//!   address on 127.0.0.1: the shared test RabbitMQ and PostgreSQL, and a free port for each
//!   Herald listener (`0.0.0.0:PORT`), since three workers cannot all bind 9465 here;
//! - the fleet's database becomes a fresh one of the same server (same role and password);
//! - the fleet's RabbitMQ vhost becomes a fresh one, with the users and permissions of
//!   deploy/rabbitmq/definitions.json imported into it, so the fleet's queues are its own.
//!
//! Each process's stderr goes to a file, shown when the test fails.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use super::file::Service;
use crate::tests::prometheus::free_port;
use crate::{Running, eventually, herald};

/// Where each `service:port` of the compose network is on this machine.
#[derive(Debug, Default)]
pub(crate) struct Network {
    addresses: BTreeMap<String, String>,
}

/// One running replica.
pub(crate) struct Replica {
    pub(crate) service: String,
    /// `127.0.0.1:PORT` it listens on.
    pub(crate) addr: String,
    process: Running,
    log: PathBuf,
}

/// The running Herald services.
pub(crate) struct Fleet {
    pub(crate) replicas: Vec<Replica>,
}

impl Network {
    /// `service:port` is at `addr` here.
    pub(crate) fn map(&mut self, service: &str, port: u16, addr: &str) {
        self.addresses
            .insert(format!("{service}:{port}"), addr.to_owned());
    }

    /// `value` with every `//service:port` and `@service:port` (the host of a URL) pointed at
    /// this machine.
    pub(crate) fn translate(&self, value: &str) -> String {
        let mut value = value.to_owned();
        for (from, to) in &self.addresses {
            for lead in ["//", "@"] {
                let pattern = format!("{lead}{from}");
                let mut out = String::new();
                let mut rest = value.as_str();
                while let Some(at) = rest.find(&pattern) {
                    let after = &rest[at + pattern.len()..];
                    let whole_port = !after.starts_with(|c: char| c.is_ascii_digit());
                    out.push_str(&rest[..at]);
                    out.push_str(if whole_port { lead } else { &pattern });
                    if whole_port {
                        out.push_str(to);
                    }
                    rest = after;
                }
                out.push_str(rest);
                value = out;
            }
        }
        value
    }
}

impl Fleet {
    /// Starts `scale` replicas of each `(service, ready_path)` in `order` (depends_on order),
    /// each service's replicas only once the ones before answer `ready_path` with 2xx. The
    /// environment is the compose one translated (`Place`); each replica's stderr goes to a
    /// file in `logs`.
    pub(crate) async fn start(
        services: &BTreeMap<String, Service>,
        order: &[(&str, &str)],
        network: &mut Network,
        place: &Place<'_>,
        logs: &Path,
    ) -> Self {
        // Every listener gets its port first, so URLs to a later service translate too.
        let mut listeners: Vec<(&str, u16, Vec<String>)> = Vec::new();
        for (name, _) in order {
            let service = &services[*name];
            let port = listen_port(&service.command)
                .unwrap_or_else(|| panic!("{name} listens on no 0.0.0.0:PORT"));
            let addrs: Vec<String> = (0..service.scale)
                .map(|_| format!("127.0.0.1:{}", free_port()))
                .collect();
            if let [only] = addrs.as_slice() {
                network.map(name, port, only);
            }
            listeners.push((name, port, addrs));
        }
        let mut fleet = Self {
            replicas: Vec::new(),
        };
        for ((name, ready_path), (_, port, addrs)) in order.iter().zip(&listeners) {
            let service = &services[*name];
            for (n, addr) in addrs.iter().enumerate() {
                let args: Vec<String> = service
                    .command
                    .iter()
                    .map(|arg| network.translate(&arg.replace(&format!("0.0.0.0:{port}"), addr)))
                    .collect();
                let env = place.environment(service, network);
                let env: Vec<(&str, &str)> =
                    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
                let log = logs.join(format!("{name}-{n}.log"));
                let process = herald(&env)
                    .args(&args)
                    .stdout(Stdio::null())
                    .stderr(std::fs::File::create(&log).expect("log file"))
                    .spawn()
                    .map(Running)
                    .unwrap_or_else(|e| panic!("spawn {name}: {e}"));
                fleet.replicas.push(Replica {
                    service: (*name).to_owned(),
                    addr: addr.clone(),
                    process,
                    log,
                });
            }
            for replica in fleet.replicas.iter().filter(|r| r.service == *name) {
                let url = format!("http://{}{ready_path}", replica.addr);
                let ready = eventually(Duration::from_secs(60), || async {
                    reqwest::get(&url)
                        .await
                        .is_ok_and(|r| r.status().is_success())
                })
                .await;
                assert!(ready, "{url} never answered 2xx\n{}", fleet.logs());
            }
        }
        fleet
    }

    /// The one replica of `service`.
    pub(crate) fn addr(&self, service: &str) -> &str {
        let mut found = self.replicas.iter().filter(|r| r.service == service);
        let replica = found.next().unwrap_or_else(|| panic!("no {service}"));
        assert!(found.next().is_none(), "{service} has several replicas");
        &replica.addr
    }

    /// The last lines of every replica's log, for a failure message.
    pub(crate) fn logs(&self) -> String {
        let mut text = String::new();
        for replica in &self.replicas {
            let log = std::fs::read_to_string(&replica.log).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = lines[lines.len().saturating_sub(15)..].join("\n");
            text.push_str(&format!(
                "--- {} {}:\n{tail}\n",
                replica.service, replica.addr
            ));
        }
        text
    }

    /// SIGTERM to every replica, workers first; the services that exited non-zero.
    pub(crate) async fn stop(self) -> Vec<String> {
        let mut failed = Vec::new();
        let mut replicas = self.replicas;
        replicas.sort_by_key(|r| r.service != "worker");
        for replica in replicas {
            let name = format!("{} {}", replica.service, replica.addr);
            if !replica.process.terminate().await {
                failed.push(name);
            }
        }
        failed
    }
}

/// Where the fleet's state lives on this machine.
pub(crate) struct Place<'a> {
    /// The database name in every `HERALD_DATABASE_URL`.
    pub(crate) database: &'a str,
    /// The RabbitMQ vhost in every `HERALD_AMQP_URL`.
    pub(crate) vhost: &'a str,
}

impl Place<'_> {
    /// `service`'s compose environment, its hosts translated and its database and vhost here.
    pub(crate) fn environment(
        &self,
        service: &Service,
        network: &Network,
    ) -> BTreeMap<String, String> {
        let mut env: BTreeMap<String, String> = service
            .environment
            .iter()
            .map(|(k, v)| (k.clone(), network.translate(v)))
            .collect();
        if let Some(url) = env.get_mut("HERALD_DATABASE_URL") {
            *url = with_path(url, self.database);
        }
        if let Some(url) = env.get_mut("HERALD_AMQP_URL") {
            *url = with_path(url, self.vhost);
        }
        env
    }
}

/// Runs a one-shot service (compose's `restart: "no"`, such as `topology`) to completion.
pub(crate) async fn run_once(service: &Service, network: &Network, place: &Place<'_>) {
    let env = place.environment(service, network);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let args: Vec<&str> = service.command.iter().map(String::as_str).collect();
    let dir = tempfile::tempdir().expect("temp dir");
    crate::herald_ok(dir.path(), &env, &args).await;
}

/// The port of the `0.0.0.0:PORT` argument a service listens on.
fn listen_port(command: &[String]) -> Option<u16> {
    command
        .iter()
        .find_map(|arg| arg.strip_prefix("0.0.0.0:")?.parse().ok())
}

/// `url` (`scheme://user:password@host:port/name?query`) naming `name` (a database, a vhost)
/// instead.
pub(crate) fn with_path(url: &str, name: &str) -> String {
    let (scheme, rest) = url.split_once("://").expect("a URL");
    let (authority, tail) = rest.split_once('/').unwrap_or((rest, ""));
    let query = tail.find('?').map_or("", |at| &tail[at..]);
    format!("{scheme}://{authority}/{name}{query}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translation_touches_hosts_only() {
        let mut network = Network::default();
        network.map("postgres", 5432, "127.0.0.1:6000");
        network.map("sim", 8900, "127.0.0.1:7000");
        for (input, expected) in [
            (
                "postgres://herald:herald@postgres:5432/herald",
                "postgres://herald:herald@127.0.0.1:6000/herald",
            ),
            ("http://sim:8900", "http://127.0.0.1:7000"),
            ("http://sim:89000", "http://sim:89000"),
            ("sim:8900", "sim:8900"),
            ("dev-app-secret", "dev-app-secret"),
        ] {
            assert_eq!(network.translate(input), expected, "{input}");
        }
        assert_eq!(
            with_path("postgres://u:p@h:1/herald?sslmode=disable", "t1"),
            "postgres://u:p@h:1/t1?sslmode=disable"
        );
    }
}
