//! Rendering throughput: the example campaign (`campaign/example.toml`) rendered per user through
//! `Campaign::render_request` (compiled Liquid, direct JSON writes, per-user limit checks),
//! against a baseline that hand-writes the same text with `format!` and serialises the same
//! body with `serde_json::to_vec`. Plain `std::time` loops, about 3 s in all:
//! `cargo bench -p herald-core --bench render`.

// A benchmark's output is its report.
#![allow(clippy::print_stdout)]

use std::hint::black_box;
use std::time::{Duration, Instant};

use herald_core::{Campaign, SendJob, User};

const CAMPAIGN: &str = herald_core::campaign::EXAMPLE_TOML;

const RUN_ID: &str = "run-2026-05-01";
const BUDGET: Duration = Duration::from_millis(1200);

fn users() -> Vec<User> {
    (0..10_000)
        .map(|i| {
            let user = User::new(
                format!("user-{i}"),
                format!("{}", 7_000_000_000_000_000u64 + i),
            )
            .with_attr("country", "BR")
            .with_attr("promo_code", format!("BR-{i:05}"));
            // Every third user has no first name, so `default` is exercised too.
            if i % 3 == 0 {
                user
            } else {
                user.with_attr("first_name", if i % 2 == 0 { "Zoë" } else { "João" })
            }
        })
        .collect()
}

/// Runs `render` over the users until the budget is spent; returns renders per second.
fn measure(users: &[User], mut render: impl FnMut(&User) -> usize) -> (f64, usize) {
    let start = Instant::now();
    let mut renders = 0usize;
    let mut bytes = 0usize;
    while start.elapsed() < BUDGET {
        for user in users {
            bytes += render(black_box(user));
        }
        renders += users.len();
    }
    (
        renders as f64 / start.elapsed().as_secs_f64(),
        bytes / renders,
    )
}

fn main() {
    let campaign = Campaign::from_toml(CAMPAIGN).expect("the example campaign is valid");
    let users = users();

    let (herald, herald_len) = measure(&users, |user| {
        let job_id = SendJob::job_id_for(RUN_ID, &user.external_id);
        let body = campaign.render_request(user, &job_id).expect("renders");
        black_box(&body);
        body.len()
    });

    let (baseline, baseline_len) = measure(&users, |user| {
        let job_id = SendJob::job_id_for(RUN_ID, &user.external_id);
        let attr = |key: &str| user.attributes.get(key).map(String::as_str);
        let text = format!(
            "Hi {}, your code is {}.",
            attr("first_name").unwrap_or("there"),
            attr("promo_code").unwrap_or_default()
        );
        let body = serde_json::json!({
            "recipient": { "id": user.psid().unwrap_or_default() },
            "messaging_type": "UPDATE",
            "message": { "text": text, "metadata": job_id },
        });
        let body = serde_json::to_vec(&body).expect("serialises");
        black_box(&body);
        body.len()
    });

    println!("render: {herald:>12.0} renders/s  (Campaign::render_request, {herald_len} B/body)");
    println!(
        "render: {baseline:>12.0} renders/s  (format! + serde_json::to_vec baseline, {baseline_len} B/body)"
    );
    println!(
        "render: {:.2}x the baseline's time per render",
        baseline / herald
    );
}
