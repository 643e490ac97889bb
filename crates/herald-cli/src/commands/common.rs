//! What several commands share: reading and validating a campaign file, choosing its segment,
//! opening the store, and the exit code of a producer error. Each command's own logic stays in
//! its file; dispatch is `mod.rs`.

use std::path::Path;
use std::process::ExitCode;

use herald_core::campaign::{Campaign, SegmentSource};
use herald_producer::{ProducerError, SegmentInput};
use herald_store::Store;

use crate::config::Config;

/// Exit code when the broker or the store cannot be reached (EX_UNAVAILABLE).
pub(crate) const EX_UNAVAILABLE: u8 = 69;

/// Reads and validates a campaign file (TOML, or JSON by extension), listing every problem.
pub(crate) fn load_campaign(path: &Path) -> Result<Campaign, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|error| {
        eprintln!("herald: cannot read campaign {}: {error}", path.display());
        ExitCode::from(66)
    })?;
    let parsed = if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        Campaign::from_json(&text)
    } else {
        Campaign::from_toml(&text)
    };
    parsed.map_err(|errors| {
        eprintln!(
            "herald: {} has {} problem(s); nothing was published:",
            path.display(),
            errors.problems().len()
        );
        for problem in errors.problems() {
            eprintln!("  {}:{problem}", path.display());
        }
        ExitCode::from(errors.exit_code())
    })
}

/// Refuses to start a campaign with a `[trigger]` as a run, saying how it is sent instead.
pub(crate) fn refuse_triggered(command: &str, campaign: &Campaign) -> Result<(), ExitCode> {
    if campaign.trigger().is_none() {
        return Ok(());
    }
    eprintln!(
        "{command}: campaign {} {}",
        campaign.id(),
        herald_core::campaign::SENT_BY_TRIGGER
    );
    Err(ExitCode::from(64))
}

/// Opens the store (run records live there), saying what to check when it cannot.
pub(crate) async fn open_store(config: &Config) -> Result<Store, ExitCode> {
    Store::connect(&config.database_url).await.map_err(|error| {
        eprintln!("herald: cannot open the store (HERALD_DATABASE_URL): {error}");
        ExitCode::from(EX_UNAVAILABLE)
    })
}

/// Where the users come from: `--segment` wins, else `segment.file` relative to the campaign
/// file, else the store when `segment.source = "store"`.
pub(crate) fn segment_input(
    command: &str,
    path: &Path,
    campaign: &Campaign,
    segment: Option<&Path>,
) -> Result<SegmentInput, ExitCode> {
    match (segment, &campaign.segment().source) {
        (Some(file), _) => Ok(SegmentInput::File(file.to_path_buf())),
        (None, SegmentSource::File(file)) => Ok(SegmentInput::File(
            path.parent().unwrap_or(Path::new(".")).join(file),
        )),
        (None, SegmentSource::Store) => Ok(SegmentInput::Store),
        (None, SegmentSource::Unset) => {
            eprintln!(
                "{command}: {} has no segment.file; pass --segment FILE",
                path.display()
            );
            Err(ExitCode::from(64))
        }
    }
}

/// The exit code of a producer that stopped with `error` (`herald campaign send` and
/// `herald run` alike): 65 bad data, 64 a run that cannot be resumed as asked, 69 the broker
/// or the store.
pub(crate) fn exit_code(error: &ProducerError) -> u8 {
    match error {
        ProducerError::Segment(_) | ProducerError::Malformed(_) => 65,
        ProducerError::WrongCampaign { .. }
        | ProducerError::UnknownRun { .. }
        | ProducerError::Cancelled { .. } => 64,
        ProducerError::Store(_) | ProducerError::Amqp(_) => EX_UNAVAILABLE,
    }
}
