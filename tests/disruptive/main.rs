//! Tests that disturb the shared broker (forcing every connection closed) or load the whole
//! machine (a flood of hostile clients with a latency bound). They live in their own test
//! binary, because cargo runs test binaries one after another: nothing in the main binary runs
//! while these do. Within this binary they take a lock and run one at a time.

mod chaos;
mod cluster;
mod fleet;
mod ledger;
mod pacing;
mod producer;
mod soak;
mod webhook;
mod worker;

/// Held by each test for its whole run.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Closes every client connection on the local broker, as a broker restart would.
fn close_all_connections() {
    let output = std::process::Command::new("rabbitmqctl")
        .args(["close_all_connections", "herald disruptive test"])
        .output();
    match output {
        Ok(output) if output.status.success() => {}
        Ok(output) => panic!(
            "rabbitmqctl failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(error) => {
            panic!("rabbitmqctl is needed to disturb the broker ({error}); run scripts/test")
        }
    }
}
