//! `herald refs sign EXTERNAL_ID --page PAGE_ID [--ttl 30d] [--json]`: thin wiring over
//! `herald_server::ops::refs::sign` (which `POST /refs` calls too). Prints the ref alone, for
//! scripts (`REF=$(herald refs sign u1 --page 1000000001)`), or with `--json` the API's object.

use std::process::ExitCode;

use herald_server::ops::refs::{self, SignRequest};
use time::OffsetDateTime;

use crate::commands::ops::failed;
use crate::commands::text::out;
use crate::config::Config;

pub(crate) fn sign(
    external_id: String,
    page_id: String,
    ttl: String,
    json: bool,
    config: &Config,
) -> ExitCode {
    let request = SignRequest {
        external_id,
        page_id,
        ttl: Some(ttl),
    };
    match refs::sign(
        config.ref_keys.as_ref(),
        &request,
        OffsetDateTime::now_utc(),
    ) {
        Ok(signed) if json => match serde_json::to_string_pretty(&signed) {
            Ok(text) => {
                out(&text);
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("herald refs sign: {error}");
                ExitCode::FAILURE
            }
        },
        Ok(signed) => {
            out(&signed.reference);
            ExitCode::SUCCESS
        }
        Err(error) => failed("herald refs sign", &error),
    }
}
