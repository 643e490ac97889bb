//! Tracing setup: human-readable lines on a terminal, JSON lines otherwise (or as asked), always
//! on stderr so stdout stays for command output. The filter comes from `HERALD_LOG`.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    /// Text when stderr is a terminal, JSON otherwise.
    Auto,
    /// Human-readable text.
    Text,
    /// One JSON object per line.
    Json,
}

impl LogFormat {
    /// Parses `auto`, `text` or `json`.
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "auto" => Some(Self::Auto),
            "text" => Some(Self::Text),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// Installs the global subscriber. `filter` is an `EnvFilter` directive such as `info` or
/// `herald_worker=debug`; an invalid one falls back to `info`. Calling it twice is harmless.
pub fn init_tracing(filter: Option<&str>, format: LogFormat) {
    let filter = filter
        .and_then(|f| EnvFilter::try_new(f).ok())
        .unwrap_or_else(|| EnvFilter::new("info"))
        // lapin logs returned messages with their body (PSIDs, message text): never let that out.
        .add_directive(
            "lapin::returned_messages=off"
                .parse()
                .expect("valid directive"),
        );
    let json = match format {
        LogFormat::Auto => !std::io::stderr().is_terminal(),
        LogFormat::Text => false,
        LogFormat::Json => true,
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // `try_init` fails only when a subscriber is already set (tests, embedded runs): keep that one.
    let _ = if json {
        builder.json().try_init()
    } else {
        builder.try_init()
    };
}
