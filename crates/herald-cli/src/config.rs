//! The process configuration, layered once at start: built-in defaults < `herald.toml` (or
//! `--config`) < `HERALD_*` environment < command-line flags (ARCHITECTURE.md, "Command line and
//! configuration"). Every problem is collected and reported together; secrets are `Secret`s and
//! never printed. The environment is passed in as a map so tests never touch the real process
//! environment.

use std::collections::{BTreeMap, HashMap};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use herald_core::Secret;
use herald_core::rates::{DEFAULT_PAGE_RATE_PER_SEC, PageRates};
use herald_core::redact::redact_url;
use herald_core::signed_ref::RefKeys;
use serde::Deserialize;

/// The default AMQP URL: RabbitMQ's guest account on this machine.
pub(crate) const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
const DEFAULT_DATABASE_URL: &str = "sqlite://herald.db";
const DEFAULT_GRAPH_URL: &str = "https://graph.facebook.com";
const DEFAULT_GRAPH_VERSION: &str = "v25.0";
/// Echoes arrive within seconds of a send (docs/messenger-platform.md §5.4).
const DEFAULT_LEDGER_HORIZON_SECS: u64 = 5;
const DEFAULT_CONFIG_FILE: &str = "herald.toml";

const PAGE_TOKEN_PREFIX: &str = "HERALD_PAGE_TOKEN_";
const PAGE_RATE_PREFIX: &str = "HERALD_PAGE_RATE_PER_SEC_";

/// Everything a Herald process may need, resolved from all layers.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub(crate) amqp_url: Secret,
    /// The broker URL came from the `--amqp` flag. Only the flag moves `herald run` and
    /// `herald demo` off the embedded queue: `HERALD_AMQP_URL` exported for `herald worker`
    /// must not.
    pub(crate) amqp_from_flag: bool,
    pub(crate) database_url: Secret,
    pub(crate) graph_url: String,
    /// `HERALD_GRAPH_ALLOW_HTTP`: accept an `http://` Graph URL on a host other than loopback.
    pub(crate) graph_allow_http: bool,
    pub(crate) graph_version: String,
    pub(crate) app_secret: Option<Secret>,
    pub(crate) verify_token: Option<Secret>,
    pub(crate) api_token: Option<Secret>,
    /// `HERALD_LEDGER_URL`: herald serve's API, where workers check jobs that may have been sent.
    pub(crate) ledger_url: Option<String>,
    /// `HERALD_LEDGER_TOKEN`: the token serve accepts for `/ledger` only (and workers send).
    pub(crate) ledger_token: Option<Secret>,
    /// `HERALD_LEDGER_HORIZON_SECS`: how long an echo may take to arrive after a send.
    pub(crate) ledger_horizon_secs: u64,
    /// `HERALD_REF_SECRET`, parsed: the keys signed refs are minted and verified with.
    pub(crate) ref_keys: Option<RefKeys>,
    /// `HERALD_SEGMENT_DIR`: where segment files of runs started over the admin API must be.
    pub(crate) segment_dir: Option<PathBuf>,
    pub(crate) page_tokens: BTreeMap<String, Secret>,
    pub(crate) tokens_file: Option<PathBuf>,
    pub(crate) page_rate_per_sec: NonZeroU32,
    pub(crate) page_rates: BTreeMap<String, NonZeroU32>,
    /// Exchange and queue names start with this (`herald.jobs`, ...); tests isolate themselves.
    pub(crate) topology_prefix: String,
}

/// The highest layer: values given as command-line flags.
#[derive(Debug, Default, Clone)]
pub(crate) struct Overrides {
    pub(crate) config_file: Option<PathBuf>,
    pub(crate) amqp_url: Option<String>,
    pub(crate) database_url: Option<String>,
    pub(crate) graph_url: Option<String>,
}

/// `herald.toml`: the same settings as the environment, as lower-case keys.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLayer {
    amqp_url: Option<Secret>,
    database_url: Option<Secret>,
    graph_url: Option<String>,
    graph_allow_http: Option<bool>,
    graph_version: Option<String>,
    app_secret: Option<Secret>,
    verify_token: Option<Secret>,
    api_token: Option<Secret>,
    ledger_url: Option<String>,
    ledger_token: Option<Secret>,
    ledger_horizon_secs: Option<u64>,
    ref_secret: Option<Secret>,
    segment_dir: Option<PathBuf>,
    tokens_file: Option<PathBuf>,
    page_rate_per_sec: Option<u32>,
    #[serde(default)]
    page_tokens: BTreeMap<String, Secret>,
    #[serde(default)]
    page_rates: BTreeMap<String, u32>,
    topology_prefix: Option<String>,
}

/// Every problem found while loading, one per line when displayed.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration:\n{}", .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
pub(crate) struct ConfigErrors(pub(crate) Vec<String>);

impl Config {
    /// The page ceilings as the workers and the launch check use them.
    pub(crate) fn page_rates(&self) -> PageRates {
        PageRates {
            default_ceiling: self.page_rate_per_sec.get(),
            pages: self
                .page_rates
                .iter()
                .map(|(page, rate)| (page.clone(), rate.get()))
                .collect(),
        }
    }

    /// Resolves all layers. `env` is the process environment (or a test's map).
    pub(crate) fn load(
        overrides: &Overrides,
        env: &HashMap<String, String>,
    ) -> Result<Self, ConfigErrors> {
        let mut problems = Vec::new();
        let file = load_file(overrides, env, &mut problems);
        let mut config = Self::defaults();
        config.apply_file(file, &mut problems);
        config.apply_env(env, &mut problems);
        config.apply_overrides(overrides);
        if let Some(path) = config.tokens_file.clone() {
            match read_tokens_file(&path) {
                Ok(tokens) => {
                    for (page, token) in tokens {
                        config.page_tokens.entry(page).or_insert(token);
                    }
                }
                Err(mut errors) => problems.append(&mut errors),
            }
        }
        config.validate(&mut problems);
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigErrors(problems))
        }
    }

    fn defaults() -> Self {
        Self {
            amqp_url: Secret::new(DEFAULT_AMQP_URL),
            amqp_from_flag: false,
            database_url: Secret::new(DEFAULT_DATABASE_URL),
            graph_url: DEFAULT_GRAPH_URL.to_owned(),
            graph_allow_http: false,
            graph_version: DEFAULT_GRAPH_VERSION.to_owned(),
            app_secret: None,
            verify_token: None,
            api_token: None,
            ledger_url: None,
            ledger_token: None,
            ledger_horizon_secs: DEFAULT_LEDGER_HORIZON_SECS,
            ref_keys: None,
            segment_dir: None,
            page_tokens: BTreeMap::new(),
            tokens_file: None,
            page_rate_per_sec: NonZeroU32::new(DEFAULT_PAGE_RATE_PER_SEC).expect("non-zero"),
            page_rates: BTreeMap::new(),
            topology_prefix: "herald".to_owned(),
        }
    }

    fn apply_file(&mut self, file: FileLayer, problems: &mut Vec<String>) {
        set(&mut self.amqp_url, file.amqp_url);
        set(&mut self.database_url, file.database_url);
        set(&mut self.graph_url, file.graph_url);
        set(&mut self.graph_allow_http, file.graph_allow_http);
        set(&mut self.graph_version, file.graph_version);
        self.app_secret = file.app_secret.or(self.app_secret.take());
        self.verify_token = file.verify_token.or(self.verify_token.take());
        self.api_token = file.api_token.or(self.api_token.take());
        self.ledger_url = file.ledger_url.or(self.ledger_url.take());
        self.ledger_token = file.ledger_token.or(self.ledger_token.take());
        set(&mut self.ledger_horizon_secs, file.ledger_horizon_secs);
        self.segment_dir = file.segment_dir.or(self.segment_dir.take());
        if let Some(secret) = file.ref_secret {
            self.set_ref_keys(&secret, "ref_secret", problems);
        }
        self.tokens_file = file.tokens_file.or(self.tokens_file.take());
        self.page_tokens.extend(file.page_tokens);
        set(&mut self.topology_prefix, file.topology_prefix);
        if let Some(rate) = file.page_rate_per_sec {
            self.page_rate_per_sec = nonzero(rate, "page_rate_per_sec", problems);
        }
        for (page, rate) in file.page_rates {
            let rate = nonzero(rate, &format!("page_rates.{page}"), problems);
            self.page_rates.insert(page, rate);
        }
    }

    fn apply_env(&mut self, env: &HashMap<String, String>, problems: &mut Vec<String>) {
        for (name, value) in env {
            if !name.starts_with("HERALD_") {
                continue;
            }
            let value = value.clone();
            match name.as_str() {
                "HERALD_AMQP_URL" => self.amqp_url = Secret::new(value),
                "HERALD_DATABASE_URL" => self.database_url = Secret::new(value),
                "HERALD_GRAPH_URL" => self.graph_url = value,
                "HERALD_GRAPH_ALLOW_HTTP" => match value.trim() {
                    "true" | "1" => self.graph_allow_http = true,
                    "false" | "0" | "" => self.graph_allow_http = false,
                    _ => problems.push(format!("{name}: {value:?} is not true or false")),
                },
                "HERALD_GRAPH_VERSION" => self.graph_version = value,
                "HERALD_APP_SECRET" => self.app_secret = Some(Secret::new(value)),
                "HERALD_VERIFY_TOKEN" => self.verify_token = Some(Secret::new(value)),
                "HERALD_API_TOKEN" => self.api_token = Some(Secret::new(value)),
                "HERALD_LEDGER_URL" => self.ledger_url = Some(value),
                "HERALD_LEDGER_TOKEN" => self.ledger_token = Some(Secret::new(value)),
                "HERALD_LEDGER_HORIZON_SECS" => match value.trim().parse() {
                    Ok(secs) => self.ledger_horizon_secs = secs,
                    Err(_) => problems.push(format!("{name}: {value:?} is not a whole number")),
                },
                "HERALD_REF_SECRET" => self.set_ref_keys(&Secret::new(value), name, problems),
                "HERALD_TOKENS_FILE" => self.tokens_file = Some(PathBuf::from(value)),
                "HERALD_SEGMENT_DIR" => self.segment_dir = Some(PathBuf::from(value)),
                "HERALD_TOPOLOGY_PREFIX" => self.topology_prefix = value,
                "HERALD_PAGE_RATE_PER_SEC" => match value.trim().parse() {
                    Ok(rate) => self.page_rate_per_sec = nonzero(rate, name, problems),
                    Err(_) => problems.push(format!("{name}: {value:?} is not a whole number")),
                },
                "HERALD_CONFIG" | "HERALD_LOG" | "HERALD_LOG_FORMAT" => {}
                _ if name.starts_with(PAGE_TOKEN_PREFIX) => {
                    let page = &name[PAGE_TOKEN_PREFIX.len()..];
                    self.page_tokens.insert(page.to_owned(), Secret::new(value));
                }
                _ if name.starts_with(PAGE_RATE_PREFIX) => {
                    let page = &name[PAGE_RATE_PREFIX.len()..];
                    match value.trim().parse() {
                        Ok(rate) => {
                            let rate = nonzero(rate, name, problems);
                            self.page_rates.insert(page.to_owned(), rate);
                        }
                        Err(_) => problems.push(format!("{name}: {value:?} is not a whole number")),
                    }
                }
                // A typo in a variable name would otherwise silently fall back to a default.
                _ => problems.push(format!(
                    "{name}: unknown setting (see README, Configuration)"
                )),
            }
        }
    }

    /// Parses ref keys; a problem names the setting, never the secret.
    fn set_ref_keys(&mut self, secret: &Secret, setting: &str, problems: &mut Vec<String>) {
        match RefKeys::parse(secret) {
            Ok(keys) => self.ref_keys = Some(keys),
            Err(error) => problems.push(format!("{setting}: {error}")),
        }
    }

    fn apply_overrides(&mut self, overrides: &Overrides) {
        if let Some(url) = &overrides.amqp_url {
            self.amqp_url = Secret::new(url.clone());
            self.amqp_from_flag = true;
        }
        if let Some(url) = &overrides.database_url {
            self.database_url = Secret::new(url.clone());
        }
        set(&mut self.graph_url, overrides.graph_url.clone());
    }

    fn validate(&self, problems: &mut Vec<String>) {
        let scheme_ok = |url: &str, schemes: &[&str]| {
            schemes.iter().any(|s| {
                url.strip_prefix(s)
                    .is_some_and(|rest| rest.starts_with("://"))
            })
        };
        // Several comma-separated URLs name the nodes of one cluster.
        for url in self.amqp_url.expose().split(',').map(str::trim) {
            if !scheme_ok(url, &["amqp", "amqps"]) {
                problems.push(format!(
                    "amqp_url: {} must start with amqp:// or amqps:// (several nodes: \
                     comma-separated URLs)",
                    redact_url(url)
                ));
            }
        }
        if !scheme_ok(
            self.database_url.expose(),
            &["sqlite", "postgres", "postgresql"],
        ) {
            problems.push(format!(
                "database_url: {} must start with sqlite:// or postgres://",
                redact_url(self.database_url.expose())
            ));
        }
        if !scheme_ok(&self.graph_url, &["http", "https"]) {
            problems.push(format!(
                "graph_url: {:?} must be an http(s) URL",
                self.graph_url
            ));
        } else if scheme_ok(&self.graph_url, &["http"])
            && !self.graph_allow_http
            && !is_loopback(&self.graph_url)
        {
            problems.push(format!(
                "graph_url: {:?} is plain http to another machine, and every call carries a page \
                 token; use https://, a loopback address (127.0.0.1, ::1, localhost), or set \
                 HERALD_GRAPH_ALLOW_HTTP=true for a simulator on a private network",
                self.graph_url
            ));
        }
        if let Some(url) = &self.ledger_url
            && !scheme_ok(url, &["http", "https"])
        {
            problems.push(format!(
                "ledger_url: {:?} must be herald serve's http(s) address",
                redact_url(url)
            ));
        }
        if !is_graph_version(&self.graph_version) {
            problems.push(format!(
                "graph_version: {:?} is not a Graph version like \"v25.0\"",
                self.graph_version
            ));
        }
        let prefix_ok = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
        if self.topology_prefix.is_empty() || !self.topology_prefix.chars().all(prefix_ok) {
            problems.push(format!(
                "topology_prefix: {:?} must be letters, digits, '-', '_' or '.'",
                self.topology_prefix
            ));
        }
        for page in self.page_tokens.keys().chain(self.page_rates.keys()) {
            if page.is_empty() || !page.bytes().all(|b| b.is_ascii_digit()) {
                problems.push(format!(
                    "page id {page:?}: a Facebook Page id is all digits"
                ));
            }
        }
        for (page, token) in &self.page_tokens {
            if token.is_blank() {
                problems.push(format!("page token for {page}: is empty"));
            }
        }
        for (name, secret) in [
            ("app_secret", &self.app_secret),
            ("api_token", &self.api_token),
            ("ledger_token", &self.ledger_token),
        ] {
            if secret.as_ref().is_some_and(Secret::is_blank) {
                problems.push(format!("{name}: is set but empty"));
            }
        }
    }
}

fn load_file(
    overrides: &Overrides,
    env: &HashMap<String, String>,
    problems: &mut Vec<String>,
) -> FileLayer {
    let explicit = overrides
        .config_file
        .clone()
        .or_else(|| env.get("HERALD_CONFIG").map(PathBuf::from));
    let path = match explicit {
        Some(path) => path,
        None if Path::new(DEFAULT_CONFIG_FILE).exists() => PathBuf::from(DEFAULT_CONFIG_FILE),
        None => return FileLayer::default(),
    };
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(error) => {
            problems.push(format!("config file {}: {error}", path.display()));
            return FileLayer::default();
        }
    };
    toml::from_str(&text).unwrap_or_else(|error: toml::de::Error| {
        let at = error
            .span()
            .map(|span| line_col(&text, span.start))
            .unwrap_or_default();
        problems.push(format!(
            "config file {}{at}: {}",
            path.display(),
            error.message()
        ));
        FileLayer::default()
    })
}

/// Reads a tokens file: `PAGE_ID=TOKEN` lines; blank lines and `#` comments are ignored. Every
/// bad line is reported by its number only, never its text: it may be a token without its page.
/// The worker re-reads the same file on SIGHUP, through this function.
pub(crate) fn read_tokens_file(path: &Path) -> Result<BTreeMap<String, Secret>, Vec<String>> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| vec![format!("tokens file {}: {error}", path.display())])?;
    let mut tokens = BTreeMap::new();
    let mut problems = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        match line.split_once('=') {
            Some((page, token)) if !page.trim().is_empty() && !token.trim().is_empty() => {
                tokens.insert(page.trim().to_owned(), Secret::new(token.trim()));
            }
            _ => problems.push(format!(
                "tokens file {}:{}: expected PAGE_ID=TOKEN",
                path.display(),
                index + 1
            )),
        }
    }
    if problems.is_empty() {
        Ok(tokens)
    } else {
        Err(problems)
    }
}

fn line_col(text: &str, offset: usize) -> String {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    format!(":{line}:{col}")
}

/// Whether an `http://` URL's host is this machine: `localhost`, 127.0.0.0/8 or `::1`.
fn is_loopback(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit('@').next().unwrap_or_default();
    let host = match host_port.strip_prefix('[') {
        Some(bracketed) => bracketed.split(']').next().unwrap_or_default(),
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn is_graph_version(version: &str) -> bool {
    let Some(rest) = version.strip_prefix('v') else {
        return false;
    };
    let mut parts = rest.split('.');
    let digits =
        |p: Option<&str>| p.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
    digits(parts.next()) && digits(parts.next()) && parts.next().is_none()
}

fn nonzero(value: u32, name: &str, problems: &mut Vec<String>) -> NonZeroU32 {
    NonZeroU32::new(value).unwrap_or_else(|| {
        problems.push(format!("{name}: must be greater than 0"));
        NonZeroU32::MIN
    })
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *slot = value;
    }
}

#[cfg(test)]
mod tests;
