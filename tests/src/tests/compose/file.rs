//! docker-compose.yml as `docker-compose config` resolves it (anchors merged, `${VAR:-default}`
//! filled in from a clean environment, so a developer's own variables change nothing), read into
//! what the fleet test runs: each service's command, environment, published ports and scale.
//! PyYAML, which docker-compose itself is built on, turns the resolved YAML into JSON, so the
//! tests need no YAML crate.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;

use crate::tests::deploy::{DOCKER_COMPOSE, Tool, available, root};

const PYYAML: Tool = Tool {
    name: "PyYAML",
    program: "python3",
    probe: &["-c", "import yaml"],
    install: "apt-get install -y python3-yaml (docker-compose depends on it)",
};

const YAML_TO_JSON: &str =
    "import json, sys, yaml; json.dump(yaml.safe_load(sys.stdin), sys.stdout)";

/// One service of the resolved compose file.
#[derive(Debug)]
pub(crate) struct Service {
    /// Built from this repository (`build:`), i.e. a Herald process.
    pub(crate) built: bool,
    /// The image it runs.
    pub(crate) image: String,
    /// `command`, as a list.
    pub(crate) command: Vec<String>,
    /// `environment`, every value as a string.
    pub(crate) environment: BTreeMap<String, String>,
    /// Ports published on the host.
    pub(crate) ports: Vec<Published>,
    /// How many replicas `up` starts.
    pub(crate) scale: usize,
}

/// A published port: `host_ip:host_port:container_port`.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Published {
    pub(crate) host_ip: String,
    pub(crate) host_port: u16,
    pub(crate) container_port: u16,
}

/// The services of docker-compose.yml, by name; `None` (after `skipping: ...`) when
/// docker-compose or PyYAML is missing outside `CI`.
pub(crate) fn load() -> Option<BTreeMap<String, Service>> {
    if !available(&DOCKER_COMPOSE) || !available(&PYYAML) {
        return None;
    }
    let resolved = clean("docker-compose")
        .args(["-f", "docker-compose.yml", "config"])
        .output()
        .expect("run docker-compose config");
    assert!(
        resolved.status.success(),
        "docker-compose config failed: {}",
        String::from_utf8_lossy(&resolved.stderr)
    );
    let mut python = clean("python3")
        .args(["-c", YAML_TO_JSON])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run python3");
    python
        .stdin
        .take()
        .expect("stdin")
        .write_all(&resolved.stdout)
        .expect("write the resolved compose file");
    let json = python.wait_with_output().expect("python3 output");
    assert!(json.status.success(), "PyYAML could not read the output");
    let document: Value = serde_json::from_slice(&json.stdout).expect("JSON");
    let services = document["services"].as_object().expect("services");
    Some(
        services
            .iter()
            .map(|(name, service)| (name.clone(), service_from(name, service)))
            .collect(),
    )
}

/// `program` in the repository root with only PATH and HOME from this process's environment.
fn clean(program: &str) -> Command {
    let mut command = Command::new(program);
    command.current_dir(root()).env_clear();
    for key in ["PATH", "HOME"] {
        if let Some(value) = std::env::var_os(key) {
            command.env(key, value);
        }
    }
    command
}

fn service_from(name: &str, service: &Value) -> Service {
    let strings = |value: &Value| -> Vec<String> {
        value
            .as_array()
            .unwrap_or_else(|| panic!("{name}: expected a list, got {value}"))
            .iter()
            .map(scalar)
            .collect()
    };
    let environment = service["environment"]
        .as_object()
        .map(|env| env.iter().map(|(k, v)| (k.clone(), scalar(v))).collect())
        .unwrap_or_default();
    let ports = service["ports"]
        .as_array()
        .map(|ports| ports.iter().map(|p| published(name, p)).collect())
        .unwrap_or_default();
    // Compose 1.29 prints `scale`; Compose v2 prints `deploy.replicas`.
    let scale = service["scale"]
        .as_u64()
        .or_else(|| service["deploy"]["replicas"].as_u64())
        .unwrap_or(1);
    Service {
        built: service.get("build").is_some(),
        image: scalar(&service["image"]),
        command: if service["command"].is_null() {
            Vec::new()
        } else {
            strings(&service["command"])
        },
        environment,
        ports,
        scale: usize::try_from(scale).expect("scale"),
    }
}

fn scalar(value: &Value) -> String {
    match value {
        Value::String(text) => text.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// `127.0.0.1:5432:5432/tcp` (Compose 1.29) or `{host_ip, published, target}` (Compose v2).
fn published(service: &str, port: &Value) -> Published {
    if let Some(text) = port.as_str() {
        let spec = text.split('/').next().unwrap_or(text);
        let parts: Vec<&str> = spec.rsplitn(3, ':').collect();
        let [container, host, ip] = parts.as_slice() else {
            panic!("{service}: port {text} does not name its host address");
        };
        return Published {
            host_ip: (*ip).to_owned(),
            host_port: host.parse().expect("host port"),
            container_port: container.parse().expect("container port"),
        };
    }
    let number = |key: &str| -> u16 { scalar(&port[key]).parse().expect("port number") };
    Published {
        host_ip: scalar(&port["host_ip"]),
        host_port: number("published"),
        container_port: number("target"),
    }
}
