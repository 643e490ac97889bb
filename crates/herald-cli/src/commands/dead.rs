//! `herald dead list|replay`: thin wiring over `herald_server::ops::dead` (which the admin API
//! calls too). `list` prints one line per message (job id, attempts, Graph code, reason; by job
//! id, other messages last) and a count on stderr, all in one read of the queue; `replay` prints each replayed job and the totals.

use std::process::ExitCode;

use herald_server::ops::dead::{self, Filter, Page};

use crate::commands::ops::{broker, failed};
use crate::commands::text::out;
use crate::config::Config;

pub(crate) async fn list(filter: Filter, config: &Config) -> ExitCode {
    let broker = match broker(config) {
        Ok(broker) => broker,
        Err(code) => return code,
    };
    match dead::list(&broker, &filter, &Page::all()).await {
        Ok(listed) => {
            let show = |n: Option<u32>| n.map_or_else(|| "-".to_owned(), |n| n.to_string());
            for dead in &listed.messages {
                out(&format!(
                    "{}\tattempts={}\tcode={}\t{}",
                    dead.job_id.as_deref().unwrap_or("(poison)"),
                    show(dead.attempts),
                    show(dead.code),
                    dead.reason
                ));
            }
            if listed.truncated {
                eprintln!("herald dead: more messages than one call reads; this is the first part");
            }
            eprintln!(
                "{} of {} dead message(s) listed",
                listed.matching, listed.total
            );
            ExitCode::SUCCESS
        }
        Err(error) => failed("herald dead", &error),
    }
}

pub(crate) async fn replay(filter: Filter, config: &Config) -> ExitCode {
    let broker = match broker(config) {
        Ok(broker) => broker,
        Err(code) => return code,
    };
    match dead::replay(&broker, &filter).await {
        Ok(replayed) => {
            for job_id in &replayed.replayed {
                out(&format!("replayed {job_id}"));
            }
            out(&format!("replayed: {}", replayed.replayed.len()));
            out(&format!("kept: {}", replayed.kept));
            if replayed.truncated {
                eprintln!("herald dead: more messages than one call reads; run it again");
            }
            ExitCode::SUCCESS
        }
        Err(error) => {
            eprintln!("herald dead: messages not yet replayed stay in the dead queue");
            failed("herald dead", &error)
        }
    }
}
