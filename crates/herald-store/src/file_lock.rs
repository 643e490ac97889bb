//! Opening a SQLite file from several processes at once. Two `herald campaign send` started
//! together on a new `sqlite://herald.db` would both create the file, switch it to WAL and run
//! the migrations, and SQLite answers one of them "database is locked" at once for some of those
//! steps (its busy timeout does not cover them all). So `Store::connect` holds an exclusive
//! `flock` on `<database>-open.lock`, beside the database, from before the first connection
//! until the migrations are done: the second process waits, then finds the schema current.
//!
//! The lock is on a file of its own, never on the database: SQLite's locks are POSIX `fcntl`
//! locks, and closing *any* descriptor of a file drops every such lock the process holds on it.
//! Locking the database file itself and closing that descriptor silently unlocked the pool's
//! connections, so another process's last close deleted the WAL under them ("disk I/O error").
//! PostgreSQL needs none of this: sqlx's migrator takes an advisory lock there.

use std::fs::{File, OpenOptions};
use std::path::PathBuf;
use std::str::FromStr;

use sqlx::sqlite::SqliteConnectOptions;

use crate::{Backend, StoreError};

/// Held while connecting and migrating; unlocked when dropped.
pub(crate) struct OpenLock {
    _file: File,
}

/// Locks the open-lock file of a `sqlite:` URL's database (creating it if missing; it stays);
/// `None` for an in-memory database or any other URL.
pub(crate) async fn lock(url: &str) -> Result<Option<OpenLock>, StoreError> {
    let Some(mut path) = sqlite_file(url) else {
        return Ok(None);
    };
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push("-open.lock");
    path.set_file_name(name);
    let locked = tokio::task::spawn_blocking(move || {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        file.lock()?;
        Ok::<_, std::io::Error>(file)
    })
    .await;
    match locked {
        Ok(Ok(file)) => Ok(Some(OpenLock { _file: file })),
        Ok(Err(io)) => Err(StoreError::connect(Backend::Sqlite, url, &io)),
        Err(join) => Err(StoreError::connect(Backend::Sqlite, url, &join)),
    }
}

/// The file a `sqlite:` URL names, unless it is an in-memory database.
pub(crate) fn sqlite_file(url: &str) -> Option<PathBuf> {
    if !url.starts_with("sqlite:") || url.contains(":memory:") || url.contains("mode=memory") {
        return None;
    }
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    (!path.as_os_str().is_empty()).then(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sqlite_files_are_locked() {
        assert_eq!(
            sqlite_file("sqlite://herald.db"),
            Some(PathBuf::from("herald.db"))
        );
        assert_eq!(
            sqlite_file("sqlite:/tmp/x/herald.db?mode=rwc"),
            Some(PathBuf::from("/tmp/x/herald.db"))
        );
        assert_eq!(sqlite_file("sqlite::memory:"), None);
        assert_eq!(sqlite_file("postgres://h/db"), None);
    }
}
