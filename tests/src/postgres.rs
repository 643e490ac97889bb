//! The test PostgreSQL: a new schema per case, dropped afterwards even when the case panics.
//! Without a reachable server a case is skipped, except under `CI`, where that is a failure.

use std::future::Future;

use futures_util::FutureExt;
use herald_core::Secret;

/// The test PostgreSQL: its URL (`TEST_POSTGRES_URL`, default the `herald` role
/// `scripts/services.sh` creates) and a one-connection pool on it. When it is unreachable this
/// fails under `CI`, and elsewhere prints `skipping: no postgres` and returns `None`.
pub async fn postgres_admin() -> Option<(String, sqlx::PgPool)> {
    let base = std::env::var("TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://herald:herald@127.0.0.1:5432/herald_test".to_owned());
    let probe = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(3))
        .connect(&base)
        .await;
    match probe {
        Ok(pool) => Some((base, pool)),
        Err(error) if std::env::var_os("CI").is_some() => {
            panic!("CI is set but PostgreSQL is unreachable ({error}); run scripts/test")
        }
        Err(error) => {
            eprintln!("skipping: no postgres ({error})");
            None
        }
    }
}

/// Runs `case` with the URL of a new, empty PostgreSQL schema (its `search_path`), which is
/// dropped afterwards even when the case panics.
pub async fn in_new_schema<F, Fut>(case: F)
where
    F: FnOnce(Secret) -> Fut,
    Fut: Future<Output = ()>,
{
    let Some((base, admin)) = postgres_admin().await else {
        return;
    };
    let schema = crate::unique_name("store").replace('-', "_");
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&admin)
        .await
        .expect("create schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = Secret::new(format!(
        "{base}{separator}options=-c%20search_path%3D{schema}"
    ));
    let outcome = std::panic::AssertUnwindSafe(case(url)).catch_unwind().await;
    if std::env::var_os("HERALD_KEEP_LOGS").is_some() {
        eprintln!("schema kept: {schema}");
    } else {
        sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
            .execute(&admin)
            .await
            .expect("drop schema");
    }
    admin.close().await;
    if let Err(panic) = outcome {
        std::panic::resume_unwind(panic);
    }
}
