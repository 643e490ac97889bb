//! The store over TLS to PostgreSQL: `sslmode=require` in `HERALD_DATABASE_URL` gives an
//! encrypted connection (the migrations and every query run over it), and `verify-full` refuses
//! a server whose certificate does not match, with an error that shows no password. The local
//! server has TLS on: `scripts/services.sh` turns it on when Debian did not.

use herald_core::Secret;
use herald_store::Store;

#[tokio::test]
async fn sslmode_require_encrypts_and_verify_full_checks_the_certificate() {
    let Some((base, admin)) = super::store::postgres_admin().await else {
        return;
    };
    let separator = if base.contains('?') { '&' } else { '?' };
    let schema = crate::unique_name("tls").replace('-', "_");
    let require = format!("{base}{separator}sslmode=require&options=-c%20search_path%3D{schema}");
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&admin)
        .await
        .expect("schema");

    let store = Store::connect(&Secret::new(require.clone()))
        .await
        .expect("the store connects and migrates over TLS");
    assert!(store.seen_event("tls-key").await.expect("a write over TLS"));
    store.close().await;
    let pool = sqlx::PgPool::connect(&require).await.expect("require");
    let encrypted: bool =
        sqlx::query_scalar("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
            .fetch_one(&pool)
            .await
            .expect("pg_stat_ssl");
    assert!(encrypted, "sslmode=require gave a plaintext connection");
    pool.close().await;

    // A root that did not sign the server's certificate (or a name that does not match it):
    // verify-full must refuse, and say so without the password.
    let roots = [
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/ssl/certs/ssl-cert-snakeoil.pem",
    ];
    if let Some(root) = roots
        .iter()
        .find(|path| std::path::Path::new(path).exists())
    {
        let verify = format!("{base}{separator}sslmode=verify-full&sslrootcert={root}");
        let error = Store::connect(&Secret::new(verify))
            .await
            .expect_err("verify-full accepted a certificate it cannot verify");
        let shown = format!("{error} {error:?}");
        assert!(!shown.contains("herald:herald"), "{shown}");
    }
    sqlx::query(&format!("DROP SCHEMA \"{schema}\" CASCADE"))
        .execute(&admin)
        .await
        .expect("drop schema");
    admin.close().await;
}
