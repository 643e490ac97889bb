//! The producer when the broker drops every connection mid-run: it reconnects, republishes the
//! unconfirmed tail and finishes, and every user has a job.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::Duration;

use herald_amqp::{AmqpSettings, Topology};
use herald_tests::{broker, drain, eventually, herald, unique_name};

const CAMPAIGN: &str = "id = \"reconnect\"\npage_id = \"1000000001\"\nmessaging_type = \"UPDATE\"\n\
                        [message]\ntext = \"Hi {{ first_name }}\"\n[segment]\nfile = \"users.csv\"\n";

#[tokio::test]
async fn a_producer_survives_the_broker_dropping_its_connection() {
    let _serial = crate::SERIAL.lock().await;
    let Some(connection) = broker().await else {
        return;
    };
    // Enough that the producer (about 15,000 jobs/s here) is still publishing when the
    // disruption lands: `rabbitmqctl` alone takes a second or two to start.
    const USERS: usize = 80_000;
    let dir = tempfile::tempdir().expect("temp dir");
    let mut segment = String::from("external_id,messenger_id,first_name\n");
    for i in 0..USERS {
        segment.push_str(&format!("u{i},{},N{i}\n", 10_000_000 + i));
    }
    std::fs::write(dir.path().join("users.csv"), segment).expect("segment");
    std::fs::write(dir.path().join("campaign.toml"), CAMPAIGN).expect("campaign");
    let prefix = unique_name("test-reconnect");
    let topology = Topology::new(&prefix).expect("topology");
    let database = format!("sqlite://{}", dir.path().join("herald.db").display());
    let mut child = herald(&[
        ("HERALD_TOPOLOGY_PREFIX", &prefix),
        ("HERALD_DATABASE_URL", &database),
    ])
    .args(["campaign", "send", "campaign.toml"])
    .current_dir(dir.path())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .expect("spawn");
    let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
    let mut first = String::new();
    stdout.read_line(&mut first).expect("run id");
    let run = first
        .trim()
        .strip_prefix("run_id: ")
        .expect("run id first")
        .to_owned();

    let settings = AmqpSettings {
        url: herald_tests::amqp_addr().into(),
        ..AmqpSettings::default()
    };
    let queue = topology.send_queue();
    let observer = herald_amqp::connect(&settings).await.expect("connect");
    let started = eventually(Duration::from_secs(60), || async {
        observer.message_count(&queue).await.unwrap_or(0) >= 1_000
    })
    .await;
    assert!(started, "the producer never got going");
    assert!(
        child.try_wait().expect("status").is_none(),
        "finished before the disruption; grow USERS"
    );
    drop(connection);
    crate::close_all_connections();

    let status = child.wait().expect("wait");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stdout, &mut rest).expect("stdout");
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut stderr)
        .expect("stderr");
    assert!(
        status.success(),
        "producer failed after the disruption:\n{rest}\n{stderr}"
    );
    assert!(
        stderr.contains("reconnecting"),
        "the disruption was not noticed:\n{stderr}"
    );
    assert!(
        rest.lines().any(|l| l == format!("published: {USERS}")),
        "{rest}"
    );

    let connection = broker().await.expect("broker back");
    let jobs = drain(&connection, &queue).await;
    let ids: BTreeSet<String> = jobs
        .iter()
        .map(|b| {
            serde_json::from_slice::<herald_core::SendJob>(b)
                .expect("job")
                .job_id
        })
        .collect();
    let expected: BTreeSet<String> = (0..USERS).map(|i| format!("{run}:u{i}")).collect();
    assert_eq!(ids, expected, "every user has a job after the reconnect");
    let amqp = herald_amqp::connect(&settings).await.expect("connect");
    topology.delete(&amqp).await.expect("cleanup");
    let _ = amqp.close().await;
}
