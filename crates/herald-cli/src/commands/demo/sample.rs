//! The demo's sample data, written to a fresh temporary directory: a personalised campaign for
//! one page and a segment of N users, a few with blank PSIDs, some outside the 24-hour window,
//! some unreachable (PSIDs the simulator answers with code 551) and some whose first send fails
//! transiently (the simulator's `fail_first`), so every outcome and a retry show up. The counts
//! of each kind are returned, so the summary can be checked against what was written.

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};

use herald_sim::{PsidOutcome, PsidRule};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The sample page.
pub(crate) const PAGE_ID: &str = "1000000001";
/// Its token in the simulator (not a secret: the simulator is local and made up).
pub(crate) const PAGE_TOKEN: &str = "herald-demo-page-token";
/// PSIDs the simulator answers with 551 ("This person isn't available right now").
const UNREACHABLE_PREFIX: &str = "551";
/// PSIDs whose first call gets a transient error (code 2); the retry succeeds.
const FLAKY_PREFIX: &str = "552";
/// First names, some blank (the message then says "there"), some not ASCII.
const NAMES: [&str; 8] = [
    "Ana",
    "Bruno",
    "",
    "Zoë",
    "Kenji",
    "Fatima",
    "Ελένη",
    "Lars",
];

/// What was written, and how many users of each kind.
pub(crate) struct Sample {
    pub(crate) dir: PathBuf,
    pub(crate) campaign: PathBuf,
    pub(crate) segment: PathBuf,
    pub(crate) users: u64,
    pub(crate) blank_psid: u64,
    pub(crate) outside_window: u64,
    pub(crate) unreachable: u64,
    pub(crate) flaky: u64,
}

/// The kind of user `index` is.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    BlankPsid,
    OutsideWindow,
    Unreachable,
    Flaky,
    Ordinary,
}

fn kind(index: u64) -> Kind {
    // Disjoint by construction: index % 400 == 7 means index % 100 == 7 and index % 50 == 7.
    if index % 400 == 7 {
        Kind::BlankPsid
    } else if index % 50 == 3 {
        Kind::OutsideWindow
    } else if index % 100 == 11 {
        Kind::Unreachable
    } else if index % 100 == 42 {
        Kind::Flaky
    } else {
        Kind::Ordinary
    }
}

/// The simulator's scripted outcomes for the sample's PSIDs.
pub(crate) fn psid_rules() -> Vec<PsidRule> {
    vec![
        PsidRule::prefix(UNREACHABLE_PREFIX, PsidOutcome::Unavailable),
        PsidRule::prefix(FLAKY_PREFIX, PsidOutcome::FailFirst),
    ]
}

/// Writes `campaign.toml` and `users.csv` to `dir`, or to a new directory under the system's
/// temp dir.
pub(crate) fn write(dir: Option<&Path>, users: u64, rate_per_sec: u32) -> io::Result<Sample> {
    let dir = match dir {
        Some(dir) => dir.to_path_buf(),
        None => {
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let name = format!("herald-demo-{}-{nanos:x}", std::process::id());
            std::env::temp_dir().join(name)
        }
    };
    std::fs::create_dir_all(&dir)?;
    let campaign = dir.join("campaign.toml");
    std::fs::write(&campaign, campaign_toml(rate_per_sec))?;
    let now = OffsetDateTime::now_utc();
    let rfc = |t: OffsetDateTime| t.format(&Rfc3339).unwrap_or_default();
    let (recent, old) = (
        rfc(now - time::Duration::hours(2)),
        rfc(now - time::Duration::days(3)),
    );
    let mut csv = String::from("external_id,messenger_id,first_name,code,last_inbound_at\n");
    let mut sample = Sample {
        segment: dir.join("users.csv"),
        dir,
        campaign,
        users,
        blank_psid: 0,
        outside_window: 0,
        unreachable: 0,
        flaky: 0,
    };
    for index in 0..users {
        let kind = kind(index);
        let psid = match kind {
            Kind::BlankPsid => String::new(),
            Kind::Unreachable => format!("{UNREACHABLE_PREFIX}{index:013}"),
            Kind::Flaky => format!("{FLAKY_PREFIX}{index:013}"),
            Kind::OutsideWindow | Kind::Ordinary => format!("7{index:015}"),
        };
        let last_inbound = match kind {
            Kind::OutsideWindow => old.as_str(),
            _ if index % 3 == 0 => recent.as_str(),
            _ => "",
        };
        let counter = match kind {
            Kind::BlankPsid => Some(&mut sample.blank_psid),
            Kind::OutsideWindow => Some(&mut sample.outside_window),
            Kind::Unreachable => Some(&mut sample.unreachable),
            Kind::Flaky => Some(&mut sample.flaky),
            Kind::Ordinary => None,
        };
        if let Some(counter) = counter {
            *counter += 1;
        }
        let name = NAMES[(index % NAMES.len() as u64) as usize];
        let code = format!("H{:05X}", index * 7919 % 0xFFFFF);
        let _ = writeln!(csv, "user-{index},{psid},{name},{code},{last_inbound}");
    }
    std::fs::write(&sample.segment, csv)?;
    Ok(sample)
}

fn campaign_toml(rate_per_sec: u32) -> String {
    format!(
        r#"# Herald's demo campaign: one personalised text per user of users.csv.
id = "herald-demo"
page_id = "{PAGE_ID}"
messaging_type = "UPDATE"

[message]
text = "Hi {{{{ first_name | default: 'there' }}}}, your Herald demo code is {{{{ code }}}}."

[segment]
file = "users.csv"

[delivery]
rate_per_sec = {rate_per_sec}
max_attempts = 3
expires_after = "1h"
window = "enforce"
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_kinds_are_disjoint_and_counted() {
        let dir = std::env::temp_dir().join(format!("herald-sample-test-{}", std::process::id()));
        let sample = write(Some(&dir), 10_000, 1_000).unwrap();
        let check = |count: u64, expected: u64| assert_eq!(count, expected);
        check(sample.blank_psid, 25);
        check(sample.outside_window, 200);
        check(sample.unreachable, 100);
        check(sample.flaky, 100);
        let text = std::fs::read_to_string(&sample.segment).unwrap();
        assert_eq!(text.lines().count(), 10_001);
        assert!(text.contains("user-7,,"), "blank PSID row");
        let campaign = std::fs::read_to_string(&sample.campaign).unwrap();
        assert!(
            campaign.contains("{{ first_name | default: 'there' }}"),
            "{campaign}"
        );
        herald_core::campaign::Campaign::from_toml(&campaign).expect("a valid campaign");
        std::fs::remove_dir_all(&sample.dir).unwrap();
    }
}
