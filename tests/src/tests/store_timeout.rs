//! Every connection of the store's PostgreSQL pool runs with a 60 s `statement_timeout`, so a
//! statement stuck behind a forgotten lock fails instead of freezing a consumer; a URL that
//! sets its own `statement_timeout` keeps it.

use futures_util::future::join_all;
use herald_core::Secret;
use herald_store::Store;

/// `statement_timeout` as seen by many pooled connections at once.
async fn timeouts(store: &Store) -> Vec<Option<String>> {
    join_all((0..16).map(|_| store.postgres_setting("statement_timeout")))
        .await
        .into_iter()
        .map(|seen| seen.expect("current_setting"))
        .collect()
}

#[tokio::test]
async fn pooled_postgres_connections_have_the_statement_timeout() {
    let Some((base, admin)) = super::store::postgres_admin().await else {
        return;
    };
    let schema = crate::unique_name("timeout").replace('-', "_");
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&admin)
        .await
        .expect("schema");
    let separator = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{separator}options=-c%20search_path%3D{schema}");

    let store = Store::connect(&Secret::new(url.clone()))
        .await
        .expect("store");
    let seen = timeouts(&store).await;
    assert!(
        seen.iter().all(|value| value.as_deref() == Some("1min")),
        "{seen:?}"
    );
    store.close().await;

    let own = format!("{url}%20-c%20statement_timeout%3D5s");
    let store = Store::connect(&Secret::new(own)).await.expect("store");
    let seen = timeouts(&store).await;
    assert!(
        seen.iter().all(|value| value.as_deref() == Some("5s")),
        "the URL's own value is kept: {seen:?}"
    );
    store.close().await;

    let sqlite = Store::connect(&Secret::new("sqlite::memory:"))
        .await
        .expect("sqlite");
    assert_eq!(
        sqlite
            .postgres_setting("statement_timeout")
            .await
            .expect("sqlite"),
        None
    );
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .expect("drop schema");
    admin.close().await;
}
