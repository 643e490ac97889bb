//! The deployment files checked offline by the tools that read them: `promtool` for the
//! Prometheus configs, alert rules and their unit tests; `docker-compose config` for
//! docker-compose.yml; kubernetes-validate and deploy/k8s/schemas for the manifests; and the
//! Grafana dashboard and alert rules against the metric list in herald-telemetry's metrics.rs.
//! No Docker engine, cluster or Grafana is started: these checks are what stands in for them.
//! A missing tool skips its test (`skipping: <tool> not installed`); under `CI` it fails, naming
//! the install step.

mod metric_names;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use herald_amqp::{AmqpSettings, Topology};
use herald_graph::GraphSettings;
use herald_worker::{PageTokens, WorkerSettings};

/// An external program a check needs, how to tell it is usable, and how scripts/test installs it.
pub(crate) struct Tool {
    pub(crate) name: &'static str,
    pub(crate) program: &'static str,
    pub(crate) probe: &'static [&'static str],
    pub(crate) install: &'static str,
}

const PROMTOOL: Tool = Tool {
    name: "promtool",
    program: "promtool",
    probe: &["--version"],
    install: "apt-get install -y prometheus",
};
pub(crate) const DOCKER_COMPOSE: Tool = Tool {
    name: "docker-compose",
    program: "docker-compose",
    probe: &["version"],
    install: "apt-get install -y docker-compose",
};
const KUBERNETES_VALIDATE: Tool = Tool {
    name: "kubernetes-validate",
    program: "python3",
    probe: &["-c", "import kubernetes_validate, jsonschema, yaml"],
    install: "python3 -m pip install kubernetes-validate==1.37.0",
};

/// The custom resources kubernetes-validate has no schema for; deploy/k8s/schemas covers them.
const CUSTOM_KINDS: [&str; 3] = ["ScaledObject", "TriggerAuthentication", "ServiceMonitor"];
/// Kubernetes versions the manifests must be valid for: the oldest supported here and the newest.
const KUBERNETES_VERSIONS: [&str; 2] = ["1.29.0", "1.37.0"];

/// Whether `tool` is usable; without it, panics under `CI` and prints `skipping: ...` elsewhere.
pub(crate) fn available(tool: &Tool) -> bool {
    let usable = Command::new(tool.program)
        .args(tool.probe)
        .output()
        .is_ok_and(|out| out.status.success());
    if !usable {
        if std::env::var_os("CI").is_some() {
            panic!(
                "CI is set but {} is not installed; scripts/test installs it \
                 (ensure_deploy_tools: `{}`)",
                tool.name, tool.install
            );
        }
        eprintln!(
            "skipping: {} not installed (install: {})",
            tool.name, tool.install
        );
    }
    usable
}

/// The repository root.
pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ lives in the repository")
        .to_path_buf()
}

/// A file of the repository, by its path from the root.
pub(crate) fn read(relative: &str) -> String {
    let path = root().join(relative);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `program args` in the repository root and returns stdout + stderr; panics on failure.
fn run_ok(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .args(args)
        .current_dir(root())
        .output()
        .unwrap_or_else(|e| panic!("{program}: {e}"));
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "`{program} {}` failed:\n{text}",
        args.join(" ")
    );
    text
}

#[test]
fn promtool_accepts_the_prometheus_configs() {
    if !available(&PROMTOOL) {
        return;
    }
    for config in [
        "deploy/prometheus/prometheus.yml",
        "deploy/prometheus/prometheus.compose.yml",
    ] {
        let out = run_ok("promtool", &["check", "config", config]);
        // A missing rule or target file is only a warning to promtool; it is an error here.
        assert!(!out.contains("WARNING"), "{config}:\n{out}");
    }
    run_ok(
        "promtool",
        &["check", "rules", "deploy/prometheus/alerts.yml"],
    );
}

#[test]
fn alert_rules_pass_their_unit_tests() {
    if !available(&PROMTOOL) {
        return;
    }
    let out = run_ok(
        "promtool",
        &["test", "rules", "deploy/prometheus/alerts_test.yml"],
    );
    assert!(out.contains("SUCCESS"), "{out}");
}

#[test]
fn every_alert_has_a_firing_and_a_quiet_test_case() {
    let rules = read("deploy/prometheus/alerts.yml");
    let alerts: BTreeSet<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    for required in [
        "HeraldPageHalted",
        "HeraldDeadLettersGrowing",
        "HeraldErrorRatioHigh",
        "HeraldNoConsumers",
        "HeraldWorkersDown",
        "HeraldGraphUsageHigh",
        "HeraldBrokerDisconnected",
    ] {
        assert!(alerts.contains(required), "alerts.yml lost {required}");
    }
    let tests = read("deploy/prometheus/alerts_test.yml");
    let lines: Vec<&str> = tests.lines().map(str::trim).collect();
    let (mut firing, mut quiet) = (BTreeSet::new(), BTreeSet::new());
    for (n, line) in lines.iter().enumerate() {
        if let Some(name) = line.strip_prefix("alertname: ") {
            match lines.get(n + 1) {
                Some(&"exp_alerts: []") => quiet.insert(name),
                Some(&"exp_alerts:") => firing.insert(name),
                other => panic!("alerts_test.yml: {name} followed by {other:?}"),
            };
        }
    }
    for alert in &alerts {
        assert!(firing.contains(alert), "no test case where {alert} fires");
        assert!(
            quiet.contains(alert),
            "no test case where {alert} stays quiet"
        );
    }
}

#[test]
fn broker_alert_is_tested_for_workers_and_serve() {
    // Both jobs export herald_broker_connected, so the rule must be right for each of them.
    let tests = read("deploy/prometheus/alerts_test.yml");
    for job in ["herald-worker", "herald-serve"] {
        let series = format!("herald_broker_connected{{job=\"{job}\"");
        assert!(
            tests.contains(&series),
            "alerts_test.yml has no HeraldBrokerDisconnected case for {job}"
        );
    }
}

#[test]
fn compose_file_is_valid() {
    if !available(&DOCKER_COMPOSE) {
        return;
    }
    run_ok(
        "docker-compose",
        &["-f", "docker-compose.yml", "config", "-q"],
    );
    let compose = read("docker-compose.yml");
    for (at, _) in compose.match_indices("./deploy/") {
        let path: String = compose[at..]
            .chars()
            .take_while(|c| !":\"' \n".contains(*c))
            .collect();
        assert!(
            root().join(&path).exists(),
            "docker-compose.yml mounts {path}, which is missing"
        );
    }
    // What the fleet is for: three workers on the simulator, scraped on 0.0.0.0:9465.
    // (tests/src/tests/compose.rs runs it.)
    for needle in [
        "scale: 3",
        "\"worker\", \"--metrics-addr\", \"0.0.0.0:9465\"",
        "\"serve\", \"--addr\", \"0.0.0.0:8080\"",
        "HERALD_GRAPH_URL: http://sim:8900",
        "HERALD_GRAPH_ALLOW_HTTP: \"true\"",
        "HERALD_PAGE_TOKEN_1000000001:",
        // Receipts for campaign status, and the store reachable from the host.
        "\"--webhook-url\", \"http://serve:8080/webhook\", \"--receipts\"",
        "ports: [\"127.0.0.1:5432:5432\"]",
    ] {
        assert!(compose.contains(needle), "docker-compose.yml lost {needle}");
    }
}

/// The worker's drain grace, from its own defaults.
fn worker_drain_secs() -> u64 {
    let settings = WorkerSettings::new(
        AmqpSettings::default(),
        Topology::default(),
        GraphSettings::default(),
        PageTokens::new(Default::default()),
    );
    settings.shutdown_grace.as_secs()
}

/// The value of the first `key: value` line in `text`.
fn scalar<'a>(text: &'a str, key: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key)?.strip_prefix(':'))
        .unwrap_or_else(|| panic!("no `{key}:`"))
        .trim()
}

#[test]
fn workers_get_longer_to_stop_than_they_drain() {
    let drain = worker_drain_secs();
    let k8s: u64 = scalar(
        &read("deploy/k8s/worker-deployment.yaml"),
        "terminationGracePeriodSeconds",
    )
    .parse()
    .expect("a number of seconds");
    assert!(
        k8s > drain,
        "terminationGracePeriodSeconds {k8s} <= worker drain {drain}"
    );
    let compose = read("docker-compose.yml");
    let stop = scalar(&compose, "stop_grace_period");
    let stop: u64 = stop
        .strip_suffix('s')
        .and_then(|s| s.parse().ok())
        .expect("NNs");
    assert!(
        stop > drain,
        "stop_grace_period {stop}s <= worker drain {drain}s"
    );
}

fn k8s_manifests() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(root().join("deploy/k8s"))
        .expect("deploy/k8s")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".yaml") && name != "kustomization.yaml")
        .map(|name| format!("deploy/k8s/{name}"))
        .collect();
    files.sort();
    files
}

#[test]
fn kubernetes_manifests_are_valid() {
    if !available(&KUBERNETES_VALIDATE) {
        return;
    }
    let files = k8s_manifests();
    let files: Vec<&str> = files.iter().map(String::as_str).collect();
    for version in KUBERNETES_VERSIONS {
        let mut args = vec!["-m", "kubernetes_validate", "--strict", "-k", version];
        args.extend(&files);
        let out = run_ok("python3", &args);
        for line in out.lines().filter(|l| l.starts_with("WARN")) {
            let custom = CUSTOM_KINDS
                .iter()
                .any(|k| line.contains(&format!("for kind {k} ")));
            assert!(custom, "kubernetes-validate {version}: {line}");
        }
    }
    let mut args = vec!["deploy/k8s/schemas/check_custom_resources.py"];
    args.extend(&files);
    let out = run_ok("python3", &args);
    for kind in CUSTOM_KINDS {
        let checked = out
            .lines()
            .any(|l| l.starts_with("OK ") && l.contains(&format!(": {kind}/")));
        assert!(checked, "no {kind} was checked:\n{out}");
    }
}

#[test]
fn kustomization_lists_every_manifest_but_the_secret_example() {
    let kustomization = read("deploy/k8s/kustomization.yaml");
    let listed: BTreeSet<String> = kustomization
        .lines()
        .skip_while(|l| !l.starts_with("resources:"))
        .skip(1)
        .map_while(|l| l.trim().strip_prefix("- "))
        .map(|f| format!("deploy/k8s/{f}"))
        .collect();
    let mut expected: BTreeSet<String> = k8s_manifests().into_iter().collect();
    expected.remove("deploy/k8s/secret.example.yaml");
    assert_eq!(listed, expected);
}

#[test]
fn readme_says_the_image_needs_buildkit() {
    // RUN --mount and a Dockerfile-specific .dockerignore exist only in BuildKit; Compose 1.29's
    // own builder and the legacy `docker build` fail on the first or ignore the second.
    let dockerfile = read("deploy/Dockerfile");
    if dockerfile.contains("RUN --mount") {
        assert!(
            dockerfile.starts_with("# syntax=docker/dockerfile:1"),
            "a BuildKit Dockerfile names its frontend"
        );
        let readme = read("README.md");
        let fleet = readme
            .split("\n## Run a fleet\n")
            .nth(1)
            .expect("README has \"Run a fleet\"");
        for needed in [
            "BuildKit",
            "DOCKER_BUILDKIT=1",
            "COMPOSE_DOCKER_CLI_BUILD=0",
        ] {
            assert!(fleet.contains(needed), "\"Run a fleet\" lost {needed}");
        }
    }
}

#[test]
fn image_runs_as_non_root_and_copies_what_exists() {
    let dockerfile = read("deploy/Dockerfile");
    let last_stage = dockerfile.rsplit("\nFROM ").next().expect("a FROM");
    let user = last_stage
        .lines()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("the runtime stage sets USER");
    // Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
    let uid: u32 = user
        .split(':')
        .next()
        .and_then(|u| u.trim().parse().ok())
        .expect("numeric USER");
    assert_ne!(uid, 0, "the runtime image must not run as root");
    for line in dockerfile
        .lines()
        .filter(|l| l.starts_with("COPY ") && !l.contains("--from"))
    {
        let words: Vec<&str> = line.split_whitespace().collect();
        for source in &words[1..words.len() - 1] {
            assert!(
                root().join(source).exists(),
                "deploy/Dockerfile copies missing {source}"
            );
        }
    }
}
