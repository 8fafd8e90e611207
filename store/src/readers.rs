//! SQLite point reads on the calling thread. Reading one row by its key takes a few microseconds in SQLite, several
//! times less than handing the query to a sqlx connection's thread and waking the task again, and every DSP message
//! reads its process this way. Only such reads come here; lists and scans stay on sqlx. Decision 0016.

use std::path::PathBuf;
use std::sync::Mutex;
use std::time::Duration;

use rusqlite::OpenFlags;

use super::StoreError;
use super::statement::Statement;

/// How many idle connections are kept (one per thread that reads at once is enough).
const KEPT: usize = 8;

#[derive(Debug)]
pub(crate) struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<rusqlite::Connection>>,
}

impl Readers {
    /// Readers of the database file at `path`; `None` for an in-memory database, which other connections cannot see.
    pub(crate) fn new(path: &std::path::Path) -> Option<Readers> {
        let name = path.to_string_lossy();
        if name.is_empty() || name == ":memory:" || name.contains("mode=memory") {
            return None;
        }
        Some(Readers { path: path.to_owned(), idle: Mutex::new(Vec::new()) })
    }

    /// The one row `statement` answers, read with `read`, or `None`.
    pub(crate) fn one<T>(
        &self,
        statement: &Statement,
        read: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(|p| p.into_inner()).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.open()?,
        };
        let answer = statement.first_row_on(&connection, read);
        let mut idle = self.idle.lock().unwrap_or_else(|p| p.into_inner());
        if idle.len() < KEPT {
            idle.push(connection);
        }
        answer
    }

    fn open(&self) -> Result<rusqlite::Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let connection = rusqlite::Connection::open_with_flags(&self.path, flags)?;
        connection.busy_timeout(Duration::from_secs(10))?;
        connection.set_prepared_statement_cache_capacity(super::STATEMENTS_KEPT);
        Ok(connection)
    }
}
