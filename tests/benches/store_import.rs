//! User import throughput into SQLite, next to a baseline, in one run (these machines are noisy,
//! so the ratio means more than the figures): `cargo bench -p herald-tests --bench store_import`.
//!
//! 1. Baseline: a bare sqlx loop of multi-row INSERTs (500 rows a statement, 10,000 rows a
//!    transaction) into a plain table with the same columns and primary key, same pragmas (WAL,
//!    synchronous NORMAL), no conflict handling, no JSON merge, no secondary index, attributes
//!    serialised before the clock starts.
//! 2. Herald, new users: `Store::upsert_users` in batches of 10,000 records (external_id,
//!    messenger_id, three attributes) into a fresh store.
//! 3. Herald, the same users again: every row conflicts and its attributes are merged.
//! 4. Herald, new users with a `page_id`: each record also creates its Messenger identity.
//! 5. Reading back: the baseline table by keyset pages of 1,000 rows, then `users_for_page`
//!    streamed to the end (what a campaign on `segment.source = "store"` does: the same pages,
//!    plus the joins to identities and building each `User`).
//!
//! Only the database calls are timed, not building the records. `BENCH_ROWS` sets the count
//! (default 1,000,000).

// A benchmark's output is its report.
#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use futures_util::TryStreamExt;
use herald_core::Secret;
use herald_store::{Store, UserRecord};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqliteSynchronous};

const BATCH: usize = 10_000;
const ROWS_PER_STATEMENT: usize = 500;

fn main() {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");

    let (baseline, read_baseline) =
        runtime.block_on(bare_insert(&dir.path().join("bare.db"), rows));
    let herald_url = Secret::new(format!(
        "sqlite://{}",
        dir.path().join("herald.db").display()
    ));
    let (fresh, again) = runtime.block_on(async {
        let store = Store::connect(&herald_url).await.expect("store");
        let fresh = import(&store, rows, None).await;
        let again = import(&store, rows, None).await;
        store.close().await;
        (fresh, again)
    });
    let paged_url = Secret::new(format!(
        "sqlite://{}",
        dir.path().join("paged.db").display()
    ));
    let (paged, stream) = runtime.block_on(async {
        let store = Store::connect(&paged_url).await.expect("store");
        let paged = import(&store, rows, Some("1000000001")).await;
        let began = Instant::now();
        let streamed = store
            .users_for_page("1000000001")
            .try_fold(0_usize, |n, _| async move { Ok(n + 1) })
            .await
            .expect("stream");
        let stream = began.elapsed();
        assert_eq!(streamed, rows, "every user streamed once");
        store.close().await;
        (paged, stream)
    });

    let rate = |elapsed: Duration| rows as f64 / elapsed.as_secs_f64();
    println!("rows: {rows}, {BATCH} per transaction, {ROWS_PER_STATEMENT} per statement");
    println!("{:<52} {:>10} {:>8}", "", "rows/s", "seconds");
    for (name, elapsed) in [
        ("bare sqlx multi-row INSERT (baseline)", baseline),
        ("herald upsert_users, new users", fresh),
        ("herald upsert_users, same users again (merge)", again),
        ("herald upsert_users, new users + identities", paged),
        (
            "bare sqlx keyset SELECT, same pages (read baseline)",
            read_baseline,
        ),
        ("herald users_for_page, streamed (read)", stream),
    ] {
        println!(
            "{name:<52} {:>10.0} {:>8.2}",
            rate(elapsed),
            elapsed.as_secs_f64()
        );
    }
    println!(
        "ratio herald new users / baseline: {:.2}",
        rate(fresh) / rate(baseline)
    );
}

fn user(i: usize, page_id: Option<&str>) -> UserRecord {
    let mut record = UserRecord::new(format!("user-{i:08}"));
    record.messenger_id = Some(format!("{}", 7_000_000_000_000_000u64 + i as u64));
    record.page_id = page_id.map(str::to_owned);
    for (key, value) in [
        ("first_name", format!("Name{}", i % 1000)),
        ("country", ["BR", "PT", "US", "IN"][i % 4].to_owned()),
        ("promo_code", format!("P{i:06X}")),
    ] {
        record.attributes.insert(key.to_owned(), value);
    }
    record
}

async fn import(store: &Store, rows: usize, page_id: Option<&str>) -> Duration {
    let mut elapsed = Duration::ZERO;
    for start in (0..rows).step_by(BATCH) {
        let batch: Vec<UserRecord> = (start..rows.min(start + BATCH))
            .map(|i| user(i, page_id))
            .collect();
        let began = Instant::now();
        store.upsert_users(&batch).await.expect("upsert");
        elapsed += began.elapsed();
    }
    elapsed
}

/// Inserts `rows` bare rows, then reads them back by the same keyset pages as the store's
/// stream (1,000 rows a query); returns both times.
async fn bare_insert(path: &std::path::Path, rows: usize) -> (Duration, Duration) {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal);
    let pool = SqlitePool::connect_with(options).await.expect("sqlite");
    sqlx::query(
        "CREATE TABLE plain (external_id TEXT NOT NULL PRIMARY KEY, messenger_id TEXT, \
         last_inbound_at_ms INTEGER, attributes TEXT NOT NULL, \
         created_at_ms INTEGER NOT NULL, updated_at_ms INTEGER NOT NULL)",
    )
    .execute(&pool)
    .await
    .expect("create table");
    // Anonymous `?` placeholders: sqlx looks each parameter's name up, and SQLite walks its list
    // of names to answer, so thousands of `$N` per statement cost more than the insert.
    let statement = |n: usize| {
        let values = vec!["(?, ?, NULL, ?, ?, ?)"; n];
        format!(
            "INSERT INTO plain (external_id, messenger_id, last_inbound_at_ms, attributes, \
             created_at_ms, updated_at_ms) VALUES {}",
            values.join(", ")
        )
    };
    let full = statement(ROWS_PER_STATEMENT);
    let mut elapsed = Duration::ZERO;
    for start in (0..rows).step_by(BATCH) {
        let batch: Vec<(String, String, String)> = (start..rows.min(start + BATCH))
            .map(|i| {
                let record = user(i, None);
                let attributes = serde_json::to_string(&record.attributes).expect("json");
                (
                    record.external_id,
                    record.messenger_id.unwrap_or_default(),
                    attributes,
                )
            })
            .collect();
        let began = Instant::now();
        let mut tx = pool.begin().await.expect("begin");
        for chunk in batch.chunks(ROWS_PER_STATEMENT) {
            let partial;
            let sql = if chunk.len() == ROWS_PER_STATEMENT {
                &full
            } else {
                partial = statement(chunk.len());
                &partial
            };
            let mut query = sqlx::query(sql);
            for (id, psid, attributes) in chunk {
                query = query
                    .bind(id)
                    .bind(psid)
                    .bind(attributes)
                    .bind(0_i64)
                    .bind(0_i64);
            }
            query.execute(&mut *tx).await.expect("insert");
        }
        tx.commit().await.expect("commit");
        elapsed += began.elapsed();
    }
    let began = Instant::now();
    let (mut after, mut read) = (String::new(), 0);
    loop {
        let page: Vec<(String, Option<String>, Option<i64>, String)> = sqlx::query_as(
            "SELECT external_id, messenger_id, last_inbound_at_ms, attributes FROM plain \
             WHERE external_id > ? ORDER BY external_id LIMIT 1000",
        )
        .bind(&after)
        .fetch_all(&pool)
        .await
        .expect("select");
        read += page.len();
        match page.last() {
            Some(last) if page.len() == 1000 => after = last.0.clone(),
            _ => break,
        }
    }
    assert_eq!(read, rows);
    let read_elapsed = began.elapsed();
    pool.close().await;
    (elapsed, read_elapsed)
}
