//! The launch check over the admin API: `POST /campaigns/runs?dry_run=true` answers what the run
//! would do and the page's daily call budget (computed here by hand: Graph allows 200 calls
//! per engaged user a day; the workers pace a page at 98 % of the lower of its ceiling and the
//! campaign's rate), publishing nothing; a start over the budget is refused with 422 and
//! publishes nothing, unless `over_budget=true`.

use serde_json::json;

use super::server_api_rig::{ApiServer, PAGE};

/// 250 users at 50/s; the rig's page ceiling is 250/s.
const CAMPAIGN: &str = r#"
id = "launch-api"
page_id = "1000000001"
messaging_type = "UPDATE"

[message]
text = "Hi {{ first_name | default: 'there' }}"

[delivery]
rate_per_sec = 50
window = "off"
"#;

const USERS: usize = 250;

#[tokio::test]
async fn the_api_dry_run_reports_the_budget_and_a_start_over_it_is_refused() {
    let Some(server) = ApiServer::start("test-api-launch").await else {
        return;
    };
    let mut users = String::from("external_id,messenger_id\n");
    for i in 0..USERS {
        users.push_str(&format!("u{i},{}\n", 5_000_000 + i));
    }
    let segment = server.dir.path().join("users.csv");
    std::fs::write(&segment, &users).expect("segment");
    // Four of them are known to the store on the page: 4 engaged users, 800 calls a day.
    let known: String = users.lines().take(5).map(|l| format!("{l}\n")).collect();
    let imported = server
        .post(&format!("/users/import?page_id={PAGE}"), "text/csv", &known)
        .await;
    assert_eq!(imported.json["imported"], 4, "{}", imported.text);
    let runs = format!("/campaigns/runs?segment={}", segment.display());

    // 250 calls of 800: 550 left. 50/s paced at 49/s: 250 / 49 = 5.1 s, so 6 s; at a what-if
    // 500/s, capped at the ceiling of 250/s, 245/s: 1.02 s, so 2 s.
    let dry = server
        .post(
            &format!("{runs}&dry_run=true&rate=500"),
            "application/toml",
            CAMPAIGN,
        )
        .await;
    assert_eq!(dry.status, 200, "{}", dry.text);
    assert_eq!(dry.json["campaign_id"], "launch-api");
    assert_eq!(dry.json["jobs"], USERS);
    assert_eq!(
        dry.json["launch"],
        json!({
            "page_id": PAGE,
            "budget": {
                "daily_calls": 800,
                "engaged_users": 4,
                "engaged_from": "store",
                "used_last_24h": 0,
                "left_after": 550,
                "over_by": null,
            },
            "campaign_calls": 250,
            "rate_per_sec": 50,
            "page_ceiling": 250,
            "campaign_rate_per_sec": 50,
            "paced_per_sec": 49.0,
            "send_time_secs": 6,
            "what_if": {
                "asked_per_sec": 500,
                "rate_per_sec": 250,
                "paced_per_sec": 245.0,
                "send_time_secs": 2,
            },
        }),
        "{}",
        dry.text
    );

    // One engaged user given: 200 calls a day, 50 short of the campaign.
    let over = format!("{runs}&engaged_users=1");
    let dry = server
        .post(
            &format!("{over}&dry_run=true"),
            "application/toml",
            CAMPAIGN,
        )
        .await;
    assert_eq!(dry.json["launch"]["budget"]["engaged_from"], "given");
    assert_eq!(dry.json["launch"]["budget"]["over_by"], 50, "{}", dry.text);
    let refused = server.post(&over, "application/toml", CAMPAIGN).await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(
        refused.text.contains("50 more than page") && refused.text.contains("over_budget=true"),
        "{}",
        refused.text
    );
    let what_if_alone = server
        .post(&format!("{runs}&rate=10"), "application/toml", CAMPAIGN)
        .await;
    assert_eq!(what_if_alone.status, 400, "{}", what_if_alone.text);
    let queued = server
        .connection
        .message_count(&server.topology.send_queue())
        .await
        .expect("count");
    assert_eq!(queued, 0, "a dry run or a refused start published jobs");

    let started = server
        .post(
            &format!("{over}&over_budget=true"),
            "application/toml",
            CAMPAIGN,
        )
        .await;
    assert_eq!(started.status, 202, "{}", started.text);
    let all = crate::eventually(std::time::Duration::from_secs(30), || async {
        server
            .connection
            .message_count(&server.topology.send_queue())
            .await
            .is_ok_and(|n| n == USERS as u32)
    })
    .await;
    assert!(all, "over_budget=true did not publish the campaign");
    server.stop().await;
}
