//! A password in `HERALD_DATABASE_URL` or `HERALD_AMQP_URL` never reaches a failing command's
//! output, through the real binary: unreachable hosts, refused logins, URLs that do not parse
//! and URLs of the wrong kind. The URL is shown with `***` in its place.

use crate::herald;

const PASSWORD: &str = "Pw-9f3kQz-never-shown";

/// Runs `herald ARGS` with one URL setting; asserts it failed and hid the password, and returns
/// what it printed.
fn fails_quietly(setting: &str, url: &str, args: &[&str]) -> String {
    let output = herald(&[(setting, url), ("HERALD_LOG", "debug")])
        .args(args)
        .output()
        .expect("run herald");
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!output.status.success(), "{setting}={url}: {printed}");
    assert!(
        !printed.contains(PASSWORD),
        "{setting}: the password leaked:\n{printed}"
    );
    printed
}

#[test]
fn database_urls_with_a_password_are_shown_masked() {
    let status = ["campaign", "status", "run-1"];
    let urls = [
        format!("postgres://herald:{PASSWORD}@127.0.0.1:1/herald"),
        format!("postgres://herald:{PASSWORD}@no-such-host.invalid/herald"),
        format!("postgres://herald:{PASSWORD}@127.0.0.1:5432/herald_test"),
        format!("postgres://herald:{PASSWORD}@127.0.0.1:5432/herald_test?sslmode=bogus"),
        format!("postgres://127.0.0.1:5432/herald_test?user=herald&password={PASSWORD}"),
        format!("postgres://herald:{PASSWORD}@[::1"),
    ];
    // Side by side: an unreachable database takes the pool's 10 s to give up.
    std::thread::scope(|scope| {
        for url in &urls {
            scope.spawn(move || {
                let printed = fails_quietly("HERALD_DATABASE_URL", url, &status);
                assert!(
                    printed.contains("postgres://herald:***@") || printed.contains("password=***"),
                    "{url}: the URL is shown masked:\n{printed}"
                );
            });
        }
    });
    let printed = fails_quietly(
        "HERALD_DATABASE_URL",
        &format!("mysql://herald:{PASSWORD}@db/herald"),
        &status,
    );
    assert!(
        printed.contains("mysql://herald:***@db/herald"),
        "{printed}"
    );
}

#[test]
fn amqp_urls_with_a_password_are_shown_masked() {
    let urls = [
        format!("amqp://guest:{PASSWORD}@127.0.0.1:1/%2f"),
        format!("amqp://guest:{PASSWORD}@127.0.0.1:5672/%2f"),
        format!("amqp://guest:{PASSWORD}@127.0.0.1:5672/%2f?heartbeat=often"),
        format!("http://guest:{PASSWORD}@127.0.0.1:5672/"),
    ];
    std::thread::scope(|scope| {
        for url in &urls {
            scope.spawn(move || fails_quietly("HERALD_AMQP_URL", url, &["topology"]));
        }
    });
    let printed = fails_quietly(
        "HERALD_AMQP_URL",
        &format!("amqp://guest:{PASSWORD}@[::1"),
        &["topology"],
    );
    assert!(printed.contains("amqp://guest:***@[::1"), "{printed}");
}
