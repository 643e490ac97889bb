//! A fresh PostgreSQL database for the fleet on the test server, in place of the compose
//! file's `postgres` service, so the fleet's tables are its own; dropped afterwards.

use crate::unique_name;

/// A fresh database on the test PostgreSQL (`TEST_POSTGRES_URL`, default the `herald` role of
/// scripts/services.sh), dropped by `drop`.
pub(crate) struct TestDatabase {
    admin: sqlx::PgPool,
    /// The database's name.
    pub(crate) name: String,
    /// `host:port` of the server.
    pub(crate) host_port: String,
}

impl TestDatabase {
    /// `None` (after `skipping: no postgres`) when PostgreSQL is unreachable outside `CI`.
    pub(crate) async fn create() -> Option<Self> {
        let (base, admin) = crate::tests::store::postgres_admin().await?;
        let name = unique_name("compose").replace('-', "_");
        sqlx::query(&format!("CREATE DATABASE \"{name}\""))
            .execute(&admin)
            .await
            .expect("create database (the role needs CREATEDB)");
        Some(Self {
            admin,
            name,
            host_port: host_port(&base, 5432),
        })
    }

    /// Drops the database, closing the fleet's connections to it.
    pub(crate) async fn drop(self) {
        sqlx::query(&format!("DROP DATABASE \"{}\" WITH (FORCE)", self.name))
            .execute(&self.admin)
            .await
            .expect("drop database");
        self.admin.close().await;
    }
}

/// `host:port` of a URL (`default_port` when it names none).
pub(crate) fn host_port(url: &str, default_port: u16) -> String {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    let authority = rest.split(['/', '?']).next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:{default_port}")
    }
}
