//! What the commands over `herald_server::ops` share: the broker from the configuration, the
//! store when it exists, and an `OpsError` printed with every problem and turned into the exit
//! code of its kind (64 usage, 65 data, 66 unknown run, 69 broker or store unavailable).

use std::path::Path;
use std::process::ExitCode;

use herald_server::ops::{Broker, OpsError};
use herald_store::Store;
use tracing::warn;

use crate::commands::{amqp_settings, topology_for};
use crate::config::Config;

/// The broker and names, or exit 64 for a bad topology prefix.
pub(crate) fn broker(config: &Config) -> Result<Broker, ExitCode> {
    let topology = topology_for(config).map_err(|()| ExitCode::from(64))?;
    Ok(Broker {
        amqp: amqp_settings(config),
        topology,
    })
}

/// The store, unless it is a SQLite file that does not exist (it holds no run then, and is not
/// created just to look) or it cannot be reached (said on stderr). For commands that work
/// without it, like pause and resume: workers act on run ids, not on store rows.
pub(crate) async fn existing_store(config: &Config, command: &str) -> Option<Store> {
    let url = config.database_url.expose();
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        let path = rest.split('?').next().unwrap_or(rest);
        if !path.contains(":memory:") && !Path::new(path).exists() {
            return None;
        }
    }
    match Store::connect(&config.database_url).await {
        Ok(store) => Some(store),
        Err(error) => {
            warn!(error = %error, "Store unreachable; the run's state there is not updated.");
            eprintln!(
                "{command}: the store is unreachable ({error}); the run's state there is not updated"
            );
            None
        }
    }
}

/// Prints `error` (and every problem it lists) after `command: `, and returns its exit code.
pub(crate) fn failed(command: &str, error: &OpsError) -> ExitCode {
    eprintln!("{command}: {error}");
    for problem in error.problems() {
        eprintln!("  {problem}");
    }
    ExitCode::from(error.kind().exit_code())
}
