//! Segment files of runs started over the admin API stay inside the server's segment directory:
//! a path outside it, a missing file, a link out of it and a FIFO all get the one same answer
//! (no oracle for the server's files, and nothing blocks the server), a file inside it starts a
//! run (stopped at a row over the line cap, which the run's status then says, with how to
//! resume it), and a server without a segment directory refuses file segments.

use super::server_api_rig::{ApiServer, Auth, CAMPAIGN, Options};

#[tokio::test]
async fn file_segments_over_the_api_stay_in_the_segment_directory() {
    let Some(owned) = ApiServer::start("test-api-segments").await else {
        return;
    };
    let server = &owned;
    let dir = server.dir.path();
    std::fs::write(dir.join("users.csv"), "external_id,messenger_id\nu1,101\n").expect("segment");
    std::os::unix::fs::symlink("/etc/passwd", dir.join("escape.csv")).expect("symlink");
    let fifo = dir.join("fifo.csv");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .expect("mkfifo");
    assert!(made.success());
    let start = |segment: String| {
        let path = format!("/campaigns/runs?segment={segment}");
        async move { server.post(&path, "application/toml", CAMPAIGN).await }
    };
    let mut answers = Vec::new();
    for segment in [
        "/etc/passwd".to_owned(),
        "/no/such/users.csv".to_owned(),
        "../../etc/passwd".to_owned(),
        "escape.csv".to_owned(),
        "missing.csv".to_owned(),
        fifo.display().to_string(),
        "/dev/zero".to_owned(),
    ] {
        let refused =
            tokio::time::timeout(std::time::Duration::from_secs(5), start(segment.clone()))
                .await
                .unwrap_or_else(|_| panic!("{segment}: the server hung"));
        assert_eq!(refused.status, 422, "{segment}: {}", refused.text);
        answers.push(refused.text);
    }
    assert!(
        answers.windows(2).all(|pair| pair[0] == pair[1]),
        "every refusal reads the same: {answers:#?}"
    );
    assert!(answers[0].contains("segment.file"), "{}", answers[0]);
    let health = server.send("GET", "/healthz", Auth::Nothing, None);
    assert_eq!(health.await.status, 200);
    // Inside the directory, by a relative or the absolute path.
    for segment in [
        "users.csv".to_owned(),
        dir.join("users.csv").display().to_string(),
    ] {
        let started = start(segment.clone()).await;
        assert_eq!(started.status, 202, "{segment}: {}", started.text);
    }
    // A row over the line cap stops the run there: the row before it is published, the run
    // never completes, and its status says why.
    let long = format!(
        "external_id,messenger_id\nu1,101\nu2,{}\nu3,103\n",
        "1".repeat(herald_producer::MAX_LINE_BYTES)
    );
    std::fs::write(dir.join("long.csv"), long).expect("segment");
    let started = start("long.csv".to_owned()).await;
    assert_eq!(started.status, 202, "{}", started.text);
    let location = format!(
        "/campaigns/runs/{}",
        started.json["run_id"].as_str().expect("id")
    );
    let published = crate::eventually(std::time::Duration::from_secs(20), || async {
        server.get(&location).await.json["producer"]["published"] == 1
    })
    .await;
    assert!(published, "{}", server.get(&location).await.text);
    let stopped = crate::eventually(std::time::Duration::from_secs(20), || async {
        server.get(&location).await.json["producer"]["stopped"].is_string()
    })
    .await;
    assert!(stopped, "{}", server.get(&location).await.text);
    let status = server.get(&location).await.json;
    assert_eq!(status["producer"]["published"], 1, "{status}");
    assert_eq!(status["producer"]["complete"], false, "{status}");
    let reason = status["producer"]["stopped"].as_str().expect("reason");
    assert!(reason.contains("line 3"), "{reason}");
    owned.stop().await;

    let options = Options {
        segment_dir: false,
        ..Options::default()
    };
    let Some(server) = ApiServer::start_with("test-api-no-segment-dir", options).await else {
        return;
    };
    let path = server.dir.path().join("users.csv");
    std::fs::write(&path, "external_id,messenger_id\nu1,101\n").expect("segment");
    let refused = server
        .post(
            &format!("/campaigns/runs?segment={}", path.display()),
            "application/toml",
            CAMPAIGN,
        )
        .await;
    assert_eq!(refused.status, 422, "{}", refused.text);
    assert!(
        refused.text.contains("HERALD_SEGMENT_DIR"),
        "{}",
        refused.text
    );
    server.stop().await;
}
