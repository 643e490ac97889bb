//! `herald campaign test`: one rendered send straight to the Graph API (here the simulator),
//! Graph's answer printed, nothing on the broker.

use herald_sim::{PsidOutcome, PsidRule, SimConfig};

use crate::herald;

const CAMPAIGN: &str = "id = \"check\"\npage_id = \"42\"\nmessaging_type = \"UPDATE\"\n\
                        [message]\ntext = \"Hi {{ first_name | default: 'there' }}\"\n";

// The simulator runs on this runtime while the test thread waits for the child: two threads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_test_send_reaches_graph_rendered_for_the_given_attributes() {
    let rules = vec![PsidRule::prefix("551", PsidOutcome::Unavailable)];
    let sim = herald_sim::spawn(
        SimConfig {
            psid_rules: rules,
            ..SimConfig::default()
        },
        "127.0.0.1:0".parse().expect("addr"),
    )
    .await
    .expect("sim");
    let dir = tempfile::tempdir().expect("dir");
    let campaign = dir.path().join("campaign.toml");
    std::fs::write(&campaign, CAMPAIGN).expect("campaign");
    let campaign = campaign.to_str().expect("utf-8");
    let url = sim.url();
    let settings = [
        ("HERALD_GRAPH_URL", url.as_str()),
        ("HERALD_PAGE_TOKEN_42", "page-token"),
    ];

    let output = herald(&settings)
        .args([
            "campaign",
            "test",
            campaign,
            "--psid",
            "777",
            "--attr",
            "first_name=Zoë",
        ])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("sent: message_id m_"), "{stdout}");
    let sent = sim.messages("777");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].body["message"]["text"], "Hi Zoë");

    let output = herald(&settings)
        .args(["campaign", "test", campaign, "--psid", "5510"])
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("class drop_user"), "{stdout}");
    assert!(
        !stdout.contains("page-token")
            && !String::from_utf8_lossy(&output.stderr).contains("page-token")
    );

    let no_token = herald(&[("HERALD_GRAPH_URL", url.as_str())])
        .args(["campaign", "test", campaign, "--psid", "777"])
        .output()
        .expect("run");
    assert_eq!(no_token.status.code(), Some(64));
    assert!(String::from_utf8_lossy(&no_token.stderr).contains("HERALD_PAGE_TOKEN_42"));
    sim.shutdown().await;
}

/// Page tokens travel in every Graph call: plain http is refused at start (exit 64) unless the
/// host is this machine's loopback or `HERALD_GRAPH_ALLOW_HTTP=true` says so. `0.0.0.0` reaches
/// the simulator but is no loopback address.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_graph_needs_a_loopback_host_or_the_opt_out() {
    let sim = herald_sim::spawn(SimConfig::default(), "0.0.0.0:0".parse().expect("addr"))
        .await
        .expect("sim");
    let port = sim.url().rsplit(':').next().expect("port").to_owned();
    let dir = tempfile::tempdir().expect("dir");
    let campaign = dir.path().join("campaign.toml");
    std::fs::write(&campaign, CAMPAIGN).expect("campaign");
    let campaign = campaign.to_str().expect("utf-8");
    let send = |extra: &[(&str, &str)]| {
        let mut settings = vec![("HERALD_PAGE_TOKEN_42", "page-token")];
        settings.extend_from_slice(extra);
        herald(&settings)
            .args(["campaign", "test", campaign, "--psid", "777"])
            .output()
            .expect("run")
    };
    let remote = format!("http://0.0.0.0:{port}");
    let refused = send(&[("HERALD_GRAPH_URL", &remote)]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("HERALD_GRAPH_ALLOW_HTTP"), "{stderr}");
    assert!(!stderr.contains("page-token"));
    let worker = herald(&[("HERALD_GRAPH_URL", "http://sim:8900")])
        .arg("worker")
        .output()
        .expect("run");
    assert_eq!(worker.status.code(), Some(64), "the worker refuses it too");
    assert_eq!(sim.messages("777").len(), 0, "nothing was sent");

    let allowed = send(&[
        ("HERALD_GRAPH_URL", &remote),
        ("HERALD_GRAPH_ALLOW_HTTP", "true"),
    ]);
    assert!(
        allowed.status.success(),
        "{}",
        String::from_utf8_lossy(&allowed.stderr)
    );
    let loopback = format!("http://localhost:{port}");
    let local = send(&[("HERALD_GRAPH_URL", &loopback)]);
    assert!(
        local.status.success(),
        "{}",
        String::from_utf8_lossy(&local.stderr)
    );
    assert_eq!(sim.messages("777").len(), 2);
    sim.shutdown().await;
}
