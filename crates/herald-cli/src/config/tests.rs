//! Layering and validation of `Config`, driven by maps and temporary files, never the real
//! process environment.

use std::collections::HashMap;
use std::io::Write;

use super::*;

fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

fn file(text: &str) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write");
    file
}

fn with_file(file: &tempfile::NamedTempFile) -> Overrides {
    Overrides {
        config_file: Some(file.path().to_owned()),
        ..Overrides::default()
    }
}

#[test]
fn defaults_apply_with_nothing_set() {
    let config = Config::load(&Overrides::default(), &env(&[])).expect("valid");
    assert_eq!(config.amqp_url.expose(), DEFAULT_AMQP_URL);
    assert_eq!(config.database_url.expose(), "sqlite://herald.db");
    assert_eq!(config.graph_url, "https://graph.facebook.com");
    assert_eq!(config.graph_version, "v25.0");
    assert_eq!(config.page_rate_per_sec.get(), 250);
    assert!(config.page_rates.is_empty());
}

#[test]
fn layers_override_in_order_file_env_flags() {
    let toml = file(
        "graph_version = \"v24.0\"\ngraph_url = \"http://file\"\namqp_url = \"amqp://file\"\n\
         page_rate_per_sec = 100\n[page_rates]\n\"42\" = 10\n[page_tokens]\n\"42\" = \"from-file\"\n",
    );
    let vars = env(&[
        ("HERALD_GRAPH_URL", "http://127.0.0.1:8900"),
        ("HERALD_AMQP_URL", "amqp://env"),
        ("HERALD_PAGE_TOKEN_42", "from-env"),
        ("HERALD_PAGE_RATE_PER_SEC_7", "5"),
    ]);
    let flags = Overrides {
        amqp_url: Some("amqp://flag".into()),
        ..with_file(&toml)
    };
    let config = Config::load(&flags, &vars).expect("valid");
    assert_eq!(config.graph_version, "v24.0", "file beats default");
    assert_eq!(config.graph_url, "http://127.0.0.1:8900", "env beats file");
    assert_eq!(config.amqp_url.expose(), "amqp://flag", "flag beats env");
    assert!(config.amqp_from_flag);
    let unflagged = Config::load(&with_file(&toml), &vars).expect("valid");
    assert_eq!(unflagged.amqp_url.expose(), "amqp://env");
    assert!(!unflagged.amqp_from_flag, "the variable is not the flag");
    assert_eq!(config.page_tokens["42"].expose(), "from-env");
    assert_eq!(config.page_rates["42"].get(), 10);
    assert_eq!(config.page_rates["7"].get(), 5);
    assert_eq!(config.page_rate_per_sec.get(), 100);
}

#[test]
fn every_problem_is_reported_at_once() {
    let vars = env(&[
        ("HERALD_GRAPH_VERSION", "25"),
        ("HERALD_GRAPH_URL", "graph.facebook.com"),
        ("HERALD_PAGE_RATE_PER_SEC", "0"),
        ("HERALD_PAGE_RATE_PER_SEC_12", "fast"),
        ("HERALD_PAGE_TOKEN_abc", "t"),
        ("HERALD_AMPQ_URL", "amqp://typo"),
        ("HERALD_AMQP_URL", "http://guest:pw-never-shown@nope"),
    ]);
    let errors = Config::load(&Overrides::default(), &vars).expect_err("invalid");
    let expected = [
        "graph_version",
        "graph_url",
        "HERALD_PAGE_RATE_PER_SEC: must be",
        "HERALD_PAGE_RATE_PER_SEC_12",
        "page id \"abc\"",
        "HERALD_AMPQ_URL: unknown setting",
        "amqp_url: http://guest:***@nope must start",
    ];
    for needle in expected {
        assert!(
            errors.0.iter().any(|p| p.contains(needle)),
            "missing {needle:?} in {:?}",
            errors.0
        );
    }
    assert_eq!(errors.0.len(), expected.len(), "{:?}", errors.0);
    assert!(!errors.to_string().contains("pw-never-shown"), "{errors}");
}

#[test]
fn unknown_file_key_is_reported_with_its_position() {
    let toml = file("graph_version = \"v25.0\"\nrate_per_second = 3\n");
    let errors = Config::load(&with_file(&toml), &env(&[])).expect_err("invalid");
    assert_eq!(errors.0.len(), 1, "{:?}", errors.0);
    assert!(
        errors.0[0].contains(":2:1") && errors.0[0].contains("rate_per_second"),
        "{}",
        errors.0[0]
    );
}

#[test]
fn missing_config_file_is_a_problem() {
    let flags = Overrides {
        config_file: Some("/nonexistent/herald.toml".into()),
        ..Overrides::default()
    };
    let errors = Config::load(&flags, &env(&[])).expect_err("invalid");
    assert!(errors.0[0].contains("/nonexistent/herald.toml"));
}

#[test]
fn tokens_file_fills_pages_env_wins_and_bad_lines_do_not_echo() {
    let tokens = file("# page tokens\n111=tok-a\n\n222 = tok-b\nEAAsecretwithoutpage\n333=\n");
    let path = tokens.path().to_str().expect("utf-8 path");
    let vars = env(&[
        ("HERALD_TOKENS_FILE", path),
        ("HERALD_PAGE_TOKEN_111", "tok-env"),
    ]);
    let errors = Config::load(&Overrides::default(), &vars).expect_err("bad line");
    assert_eq!(errors.0.len(), 2, "{:?}", errors.0);
    assert!(
        errors.0[1].ends_with(":6: expected PAGE_ID=TOKEN"),
        "{}",
        errors.0[1]
    );
    assert!(
        errors.0[0].ends_with(":5: expected PAGE_ID=TOKEN"),
        "{}",
        errors.0[0]
    );
    assert!(!errors.to_string().contains("EAAsecret"));

    let good = file("111=tok-a\n222 = tok-b\n");
    let path = good.path().to_str().expect("utf-8 path");
    let vars = env(&[
        ("HERALD_TOKENS_FILE", path),
        ("HERALD_PAGE_TOKEN_111", "tok-env"),
    ]);
    let config = Config::load(&Overrides::default(), &vars).expect("valid");
    assert_eq!(config.page_tokens["111"].expose(), "tok-env");
    assert_eq!(config.page_tokens["222"].expose(), "tok-b");
}

#[test]
fn secrets_never_print() {
    let vars = env(&[
        ("HERALD_APP_SECRET", "app-secret-value"),
        ("HERALD_API_TOKEN", "api-token-value"),
        ("HERALD_VERIFY_TOKEN", "verify-token-value"),
        ("HERALD_PAGE_TOKEN_42", "page-token-value"),
        ("HERALD_AMQP_URL", "amqp://user:amqp-password@host/%2f"),
        ("HERALD_DATABASE_URL", "postgres://u:db-password@host/db"),
    ]);
    let config = Config::load(&Overrides::default(), &vars).expect("valid");
    let shown = format!("{config:?} {config:#?}");
    for secret in [
        "app-secret",
        "api-token-value",
        "verify-token",
        "page-token",
        "amqp-password",
        "db-password",
    ] {
        assert!(!shown.contains(secret), "{secret} leaked in {shown}");
    }
}

#[test]
fn ref_secret_is_parsed_and_a_bad_one_is_refused_without_showing_it() {
    let good = "k1=0123456789abcdef0123456789abcdef,k0=fedcba9876543210fedcba9876543210";
    let config =
        Config::load(&Overrides::default(), &env(&[("HERALD_REF_SECRET", good)])).expect("valid");
    let keys = config.ref_keys.expect("keys");
    assert_eq!(keys.signing_key_id(), "k1");
    assert!(!format!("{keys:?}").contains("0123456789abcdef"));
    let errors = Config::load(
        &Overrides::default(),
        &env(&[("HERALD_REF_SECRET", "k1=sh0rtsecret")]),
    )
    .expect_err("too short");
    let text = errors.to_string();
    assert!(text.contains("HERALD_REF_SECRET"), "{text}");
    assert!(!text.contains("sh0rtsecret"), "{text}");
}

#[test]
fn plain_http_to_graph_is_refused_unless_loopback_or_allowed() {
    let load = |pairs: &[(&str, &str)]| Config::load(&Overrides::default(), &env(pairs));
    for url in [
        "http://127.0.0.1:8900",
        "http://127.1.2.3",
        "http://localhost:8900/",
        "http://LOCALHOST",
        "http://[::1]:8900",
        "http://user@127.0.0.1:1/x",
        "https://graph.example.com",
    ] {
        assert!(load(&[("HERALD_GRAPH_URL", url)]).is_ok(), "{url}");
    }
    for url in [
        "http://sim:8900",
        "http://graph.facebook.com",
        "http://10.0.0.5",
        "http://[::2]:80",
        "http://127.0.0.1.evil.example",
        "http://localhost.evil.example",
        "http://127.0.0.1@evil.example/",
    ] {
        let errors = load(&[("HERALD_GRAPH_URL", url)]).expect_err(url);
        assert!(
            errors
                .0
                .iter()
                .any(|p| p.contains("HERALD_GRAPH_ALLOW_HTTP")),
            "{url}: {:?}",
            errors.0
        );
        let allowed = load(&[
            ("HERALD_GRAPH_URL", url),
            ("HERALD_GRAPH_ALLOW_HTTP", "true"),
        ]);
        assert!(allowed.is_ok(), "{url} with the opt-out");
    }
    let toml = file("graph_url = \"http://sim:8900\"\ngraph_allow_http = true\n");
    assert!(Config::load(&with_file(&toml), &env(&[])).is_ok());
    let errors = load(&[("HERALD_GRAPH_ALLOW_HTTP", "yes")]).expect_err("not a bool");
    assert!(
        errors.0[0].contains("HERALD_GRAPH_ALLOW_HTTP"),
        "{:?}",
        errors.0
    );
}

#[test]
fn the_ledger_is_set_from_the_environment_or_the_file_and_checked() {
    let load = |pairs: &[(&str, &str)]| Config::load(&Overrides::default(), &env(pairs));
    let none = load(&[]).expect("valid");
    assert_eq!((none.ledger_url, none.ledger_horizon_secs), (None, 5));
    let set = load(&[
        ("HERALD_LEDGER_URL", "http://serve:8080"),
        ("HERALD_LEDGER_TOKEN", "ledger-secret-value"),
        ("HERALD_LEDGER_HORIZON_SECS", "12"),
    ])
    .expect("valid");
    assert_eq!(set.ledger_url.as_deref(), Some("http://serve:8080"));
    assert_eq!(set.ledger_horizon_secs, 12);
    assert!(!format!("{set:?}").contains("ledger-secret-value"));
    let toml = file("ledger_url = \"https://serve.internal\"\nledger_horizon_secs = 3\n");
    let from_file = Config::load(&with_file(&toml), &env(&[])).expect("valid");
    assert_eq!(
        from_file.ledger_url.as_deref(),
        Some("https://serve.internal")
    );
    assert_eq!(from_file.ledger_horizon_secs, 3);
    let errors = load(&[
        ("HERALD_LEDGER_URL", "serve:8080"),
        ("HERALD_LEDGER_TOKEN", " "),
        ("HERALD_LEDGER_HORIZON_SECS", "soon"),
    ])
    .expect_err("invalid")
    .to_string();
    for expected in ["ledger_url", "ledger_token", "HERALD_LEDGER_HORIZON_SECS"] {
        assert!(errors.contains(expected), "{expected} in {errors}");
    }
}
