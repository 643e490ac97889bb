//! Opening a SQLite file from several processes at once. Two `herald campaign send` started
//! together on a new `sqlite://herald.db` would both create the file, switch it to WAL and run
//! the migrations, and SQLite answers one of them "database is locked" at once for some of those
//! steps (its busy timeout does not cover them all). So `Store::connect` holds an exclusive
//! `flock` on the database file from before the first connection until the migrations are done:
//! the second process waits, then finds the schema current. SQLite's own locks are `fcntl`
//! locks, which Linux keeps apart from `flock`, so this lock never blocks SQLite itself.
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

/// Locks the database file of a `sqlite:` URL (creating it, empty, if missing); `None` for an
/// in-memory database or any other URL.
pub(crate) async fn lock(url: &str) -> Result<Option<OpenLock>, StoreError> {
    let Some(path) = sqlite_file(url) else {
        return Ok(None);
    };
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
        Ok(Err(io)) => Err(StoreError::Connect {
            backend: Backend::Sqlite,
            source: sqlx::Error::Io(io),
        }),
        Err(join) => Err(StoreError::Connect {
            backend: Backend::Sqlite,
            source: sqlx::Error::Io(std::io::Error::other(join.to_string())),
        }),
    }
}

/// The file a `sqlite:` URL names, unless it is an in-memory database.
fn sqlite_file(url: &str) -> Option<PathBuf> {
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
