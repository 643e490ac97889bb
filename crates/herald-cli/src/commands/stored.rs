//! `herald campaigns put|list|get|delete`: stored campaigns, thin wiring over
//! `herald_server::ops::campaigns` (which `PUT|GET|DELETE /campaigns/{id}` call too).

use std::path::Path;
use std::process::ExitCode;

use herald_server::ops::campaigns;
use herald_server::ops::runs::DocumentFormat;

use crate::cli::CampaignsCommand;
use crate::commands::common::open_store;
use crate::commands::ops::failed;
use crate::commands::text::{json_out, out};
use crate::config::Config;

pub(crate) async fn run(command: CampaignsCommand, config: &Config) -> ExitCode {
    let store = match open_store(config).await {
        Ok(store) => store,
        Err(code) => return code,
    };
    let done = match command {
        CampaignsCommand::Put { file } => put(&store, &file).await,
        CampaignsCommand::List { json } => match campaigns::list(&store).await {
            Ok(all) if json => json_out("herald campaigns list", &all),
            Ok(all) => {
                if all.is_empty() {
                    out("no stored campaigns");
                }
                for campaign in &all {
                    out(&format!(
                        "{}  version {}  saved {}",
                        campaign.campaign_id, campaign.version, campaign.saved_at
                    ));
                }
                ExitCode::SUCCESS
            }
            Err(error) => failed("herald campaigns list", &error),
        },
        CampaignsCommand::Get { campaign_id, saved } => {
            match campaigns::get(&store, &campaign_id, saved).await {
                Ok(campaign) => {
                    out(campaign.document.trim_end());
                    ExitCode::SUCCESS
                }
                Err(error) => failed("herald campaigns get", &error),
            }
        }
        CampaignsCommand::Delete { campaign_id } => {
            match campaigns::delete(&store, &campaign_id).await {
                Ok(campaign) => {
                    out(&format!("deleted: {}", campaign.campaign_id));
                    ExitCode::SUCCESS
                }
                Err(error) => failed("herald campaigns delete", &error),
            }
        }
    };
    store.close().await;
    done
}

async fn put(store: &herald_store::Store, file: &Path) -> ExitCode {
    let document = match std::fs::read_to_string(file) {
        Ok(text) => text,
        Err(error) => {
            eprintln!(
                "herald campaigns put: cannot read {}: {error}",
                file.display()
            );
            return ExitCode::from(66);
        }
    };
    let format = if file
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        DocumentFormat::Json
    } else {
        DocumentFormat::Toml
    };
    // The document names its id; a file that does not parse says why through `put`.
    let id = herald_server::ops::runs::parse(&document, format)
        .map(|campaign| campaign.id().to_owned())
        .unwrap_or_default();
    match campaigns::put(store, &id, &document, format).await {
        Ok(saved) => {
            out(&format!("campaign_id: {}", saved.campaign_id));
            out(&format!("version: {}", saved.version));
            ExitCode::SUCCESS
        }
        Err(error) => failed("herald campaigns put", &error),
    }
}
