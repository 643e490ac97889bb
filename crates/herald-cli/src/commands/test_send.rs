//! `herald campaign test CAMPAIGN --psid X [--attr k=v ...]`: render the campaign for one user
//! and send it straight to the Graph API (or the simulator), printing Graph's answer, so an
//! operator can check a campaign on a test user before the real run. No broker involved.

use std::process::ExitCode;

use bytes::Bytes;
use herald_core::{SendJob, User};
use herald_graph::{GraphClient, GraphSettings};

use crate::cli::TestArgs;
use crate::commands::common::load_campaign;
use crate::commands::text::out;
use crate::config::Config;

pub(crate) async fn run(args: TestArgs, config: &Config) -> ExitCode {
    let campaign = match load_campaign(&args.campaign) {
        Ok(campaign) => campaign,
        Err(code) => return code,
    };
    let mut user = User::new("campaign-test", args.psid.clone());
    for pair in &args.attrs {
        let Some((key, value)) = pair.split_once('=') else {
            eprintln!("herald campaign test: --attr takes KEY=VALUE, got {pair:?}");
            return ExitCode::from(64);
        };
        user = user.with_attr(key, value);
    }
    let job_id = SendJob::job_id_for("test", &user.external_id);
    let body = match campaign.render_request(&user, &job_id) {
        Ok(body) => body,
        Err(reason) => {
            eprintln!("herald campaign test: not sent: {reason}");
            return ExitCode::from(65);
        }
    };
    let Some(token) = config.page_tokens.get(campaign.page_id()) else {
        eprintln!(
            "herald campaign test: no token for page {page}; set HERALD_PAGE_TOKEN_{page}",
            page = campaign.page_id()
        );
        return ExitCode::from(64);
    };
    let settings = GraphSettings {
        graph_url: config.graph_url.clone(),
        version: config.graph_version.clone(),
        app_secret: config.app_secret.clone(),
        ..GraphSettings::default()
    };
    let client = match GraphClient::new(settings) {
        Ok(client) => client,
        Err(error) => {
            eprintln!("herald campaign test: {error}");
            return ExitCode::from(64);
        }
    };
    out(&format!("request: {}", String::from_utf8_lossy(&body)));
    match client
        .send(campaign.page_id(), token, Bytes::from(body), 1)
        .await
    {
        Ok(sent) => {
            out(&format!("sent: message_id {}", sent.message_id));
            ExitCode::SUCCESS
        }
        Err(error) => {
            let verdict = error.verdict();
            out(&format!(
                "not sent: {error} (class {})",
                verdict.class.as_str()
            ));
            ExitCode::FAILURE
        }
    }
}
