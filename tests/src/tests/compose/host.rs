//! The README's host side of "Run a fleet": `herald users import`, `herald campaign send` and
//! `herald campaign status` run on this machine with the `HERALD_DATABASE_URL` the README says
//! to export, pointed at the test database.

use std::path::Path;

use super::api::Api;
use super::database::TestDatabase;
use super::fleet::{Fleet, with_path};
use super::readme::FleetReadme;
use super::{EXTRA_USERS, finished};

/// The README's host side: its `HERALD_DATABASE_URL` (the published PostgreSQL port) and
/// commands.
pub(crate) struct Host<'a> {
    /// The README's instructions.
    pub(crate) readme: &'a FleetReadme,
    /// Its `HERALD_DATABASE_URL`.
    pub(crate) database: &'a str,
    /// The host port the compose file publishes PostgreSQL on.
    pub(crate) published_postgres: u16,
    /// The fleet's RabbitMQ vhost.
    pub(crate) vhost: &'a str,
}

impl Host<'_> {
    /// Imports the README's segment (with more users) and sends the sample campaign from the
    /// host, as the README says, until status shows every user sent, delivered and read; and
    /// serve's API answers the same. Returns the number of users.
    pub(crate) async fn send(&self, database: &TestDatabase, api: &Api, fleet: &Fleet) -> usize {
        let readme = self.readme;
        // The default HERALD_AMQP_URL, in the fleet's vhost.
        let amqp = with_path(&crate::amqp_addr(), self.vhost);
        // The README's URL, with the published port and database pointed at the test ones.
        let host_database = with_path(
            &self.database.replacen(
                &format!("@127.0.0.1:{}/", self.published_postgres),
                &format!("@{}/", database.host_port),
                1,
            ),
            &database.name,
        );
        let dir = tempfile::tempdir().expect("temp dir");
        let host_env = [
            ("HERALD_DATABASE_URL", host_database.as_str()),
            ("HERALD_AMQP_URL", amqp.as_str()),
        ];
        let segment = segment_file(&readme.segment, "h", "241");
        let users = segment.lines().count() - 1;
        let segment_name = readme
            .send
            .windows(2)
            .find(|pair| pair[0] == "--segment")
            .map(|pair| pair[1].as_str())
            .expect("campaign send --segment FILE");
        assert!(
            readme
                .campaign
                .contains(&format!("file = \"{segment_name}\"")),
            "the sample campaign names the segment it is sent with"
        );
        write(dir.path(), &readme.send[2], &readme.campaign);
        write(dir.path(), segment_name, &segment);
        assert_eq!(
            readme.import[2], segment_name,
            "the segment's users are imported"
        );
        let import: Vec<&str> = readme.import.iter().map(String::as_str).collect();
        crate::herald_ok(dir.path(), &host_env, &import).await;
        let send: Vec<&str> = readme.send.iter().map(String::as_str).collect();
        let output = crate::herald_ok(dir.path(), &host_env, &send).await;
        let run_id = output
            .lines()
            .find_map(|l| l.strip_prefix("run_id: "))
            .unwrap_or_else(|| panic!("no run_id in {output}"))
            .to_owned();
        let status = || {
            let args: Vec<String> = readme
                .status
                .iter()
                .map(|a| {
                    if a == "RUN_ID" {
                        run_id.clone()
                    } else {
                        a.clone()
                    }
                })
                .chain(["--json".to_owned()])
                .collect();
            let dir = dir.path().to_owned();
            async move {
                let args: Vec<&str> = args.iter().map(String::as_str).collect();
                serde_json::from_str(&crate::herald_ok(&dir, &host_env, &args).await)
                    .expect("status JSON")
            }
        };
        if let Err(report) = finished(users, status).await {
            panic!(
                "the host's run never finished: {report:#}\n{}",
                fleet.logs()
            );
        }
        let table: Vec<String> = readme
            .status
            .iter()
            .map(|a| a.replace("RUN_ID", &run_id))
            .collect();
        let table: Vec<&str> = table.iter().map(String::as_str).collect();
        let table = crate::herald_ok(dir.path(), &host_env, &table).await;
        for label in ["delivered", "read"] {
            let shown = table
                .lines()
                .find(|l| l.split_whitespace().next() == Some(label))
                .and_then(|l| l.split_whitespace().last());
            assert_eq!(shown, Some(users.to_string().as_str()), "{label}:\n{table}");
        }

        // serve sees the same run: the API answers what the host's status does.
        let reply = api.get(&format!("/campaigns/runs/{run_id}")).await;
        assert_eq!(reply["results"]["sent"], users, "{reply:#}");
        assert_eq!(reply["read"], users, "{reply:#}");
        users
    }
}

/// The README's sample segment with its users renamed (`tag-N`, PSIDs starting with
/// `psid_prefix`), plus `EXTRA_USERS` more.
pub(crate) fn segment_file(sample: &str, tag: &str, psid_prefix: &str) -> String {
    let mut lines = sample.lines();
    let header = lines.next().expect("a header row");
    assert!(header.starts_with("external_id,messenger_id"), "{header}");
    let mut rows = vec![header.to_owned()];
    let mut add = |id: String, psid: String, rest: &str| rows.push(format!("{id},{psid}{rest}"));
    for (n, line) in lines.filter(|l| !l.trim().is_empty()).enumerate() {
        let rest = line.splitn(3, ',').nth(2).map(|r| format!(",{r}"));
        add(
            format!("{tag}-{n}"),
            format!("{psid_prefix}{n:014}"),
            &rest.unwrap_or_default(),
        );
    }
    let columns = header.split(',').count();
    let blank_rest = ",x".repeat(columns - 2);
    for n in 100..100 + EXTRA_USERS {
        add(
            format!("{tag}-{n}"),
            format!("{psid_prefix}{n:014}"),
            &blank_rest,
        );
    }
    rows.join("\n") + "\n"
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write");
}
