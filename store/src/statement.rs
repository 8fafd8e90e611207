//! A write statement with its values listed once, run through sqlx (PostgreSQL, and SQLite's cold writes) or on the
//! SQLite writer thread ([`super::writer`]) alike.

use sqlx::{Database, Encode, Type};

use super::StoreError;

/// A statement's parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Text(Option<String>),
    Int(Option<i64>),
    Bytes(Vec<u8>),
}

impl From<&str> for Param {
    fn from(value: &str) -> Param {
        Param::Text(Some(value.to_owned()))
    }
}

impl From<String> for Param {
    fn from(value: String) -> Param {
        Param::Text(Some(value))
    }
}

impl From<&String> for Param {
    fn from(value: &String) -> Param {
        Param::Text(Some(value.clone()))
    }
}

impl From<Option<&str>> for Param {
    fn from(value: Option<&str>) -> Param {
        Param::Text(value.map(str::to_owned))
    }
}

impl From<Option<String>> for Param {
    fn from(value: Option<String>) -> Param {
        Param::Text(value)
    }
}

impl From<&Option<String>> for Param {
    fn from(value: &Option<String>) -> Param {
        Param::Text(value.clone())
    }
}

impl From<i64> for Param {
    fn from(value: i64) -> Param {
        Param::Int(Some(value))
    }
}

impl From<Option<i64>> for Param {
    fn from(value: Option<i64>) -> Param {
        Param::Int(value)
    }
}

impl From<Vec<u8>> for Param {
    fn from(value: Vec<u8>) -> Param {
        Param::Bytes(value)
    }
}

impl rusqlite::ToSql for Param {
    fn to_sql(&self) -> rusqlite::Result<rusqlite::types::ToSqlOutput<'_>> {
        match self {
            Param::Text(text) => text.to_sql(),
            Param::Int(number) => number.to_sql(),
            Param::Bytes(bytes) => bytes.to_sql(),
        }
    }
}

/// Binds every parameter to a sqlx `Query` or `QueryAs` (the two have no common trait for it).
macro_rules! bind_all {
    ($query:expr, $params:expr) => {
        $params.iter().fold($query, |query, param| match param {
            Param::Text(text) => query.bind(text.as_deref()),
            Param::Int(number) => query.bind(*number),
            Param::Bytes(bytes) => query.bind(bytes.as_slice()),
        })
    };
}

/// Rows per multi-row insert: well inside both databases' limits on parameters per statement.
const ROWS_PER_INSERT: usize = 256;

/// SQL with `$N` placeholders and the value of each `$N` at `params[N - 1]`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Statement {
    pub sql: String,
    pub params: Vec<Param>,
}

impl Statement {
    pub(crate) fn new(sql: impl Into<String>, params: Vec<Param>) -> Statement {
        Statement { sql: sql.into(), params }
    }

    /// Appends a placeholder for each of `values` (`$k, $k+1, ...`, numbered after the parameters so far), separated
    /// by commas, and the values: the inside of an `IN (...)` list or of a row.
    pub(crate) fn list(&mut self, values: impl IntoIterator<Item = Param>) -> &mut Statement {
        for (i, value) in values.into_iter().enumerate() {
            self.params.push(value);
            self.sql.push_str(&format!("{}${}", if i == 0 { "" } else { ", " }, self.params.len()));
        }
        self
    }

    /// Multi-row inserts `head` (`INSERT INTO t (...) VALUES `) of `rows`, at most [`ROWS_PER_INSERT`] rows each.
    pub(crate) fn inserts<const N: usize>(head: &str, rows: Vec<[Param; N]>) -> Vec<Statement> {
        Statement::inserts_then(head, rows, "")
    }

    /// [`Statement::inserts`], each statement ending in `tail` (an `ON CONFLICT` clause).
    pub(crate) fn inserts_then<const N: usize>(head: &str, rows: Vec<[Param; N]>, tail: &str) -> Vec<Statement> {
        let mut statements = Vec::new();
        let mut rows = rows.into_iter().peekable();
        while rows.peek().is_some() {
            let mut statement = Statement::new(head, Vec::new());
            for (i, row) in rows.by_ref().take(ROWS_PER_INSERT).enumerate() {
                statement.sql.push_str(if i == 0 { "(" } else { ", (" });
                statement.list(row).sql.push(')');
            }
            statement.sql.push_str(tail);
            statements.push(statement);
        }
        statements
    }

    /// The statement as a sqlx query of either backend.
    pub(crate) fn query<DB: Database>(&self) -> sqlx::query::Query<'_, DB, DB::Arguments>
    where
        for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
        for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
        for<'t> &'t [u8]: Encode<'t, DB> + Type<DB>,
    {
        bind_all!(sqlx::query(sqlx::AssertSqlSafe(self.sql.clone())), &self.params)
    }

    /// The statement as a sqlx query whose rows are read as `O`.
    pub(crate) fn query_as<DB: Database, O>(&self) -> sqlx::query::QueryAs<'_, DB, O, DB::Arguments>
    where
        O: for<'r> sqlx::FromRow<'r, DB::Row>,
        for<'t> Option<&'t str>: Encode<'t, DB> + Type<DB>,
        for<'t> Option<i64>: Encode<'t, DB> + Type<DB>,
        for<'t> &'t [u8]: Encode<'t, DB> + Type<DB>,
    {
        bind_all!(sqlx::query_as(sqlx::AssertSqlSafe(self.sql.clone())), &self.params)
    }

    /// Runs the statement on a SQLite connection (rusqlite); answers the rows it changed.
    pub(crate) fn execute_on(&self, db: &rusqlite::Connection) -> Result<u64, StoreError> {
        Ok(self.prepare_on(db)?.raw_execute()? as u64)
    }

    /// The first row the statement answers on a SQLite connection (rusqlite), read with `read`.
    pub(crate) fn first_row_on<T>(
        &self,
        db: &rusqlite::Connection,
        read: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, StoreError> {
        let mut prepared = self.prepare_on(db)?;
        let mut rows = prepared.raw_query();
        Ok(rows.next()?.map(read).transpose()?)
    }

    /// The statement prepared (from the connection's cache) with its values bound. SQLite numbers `$N` parameters in
    /// order of first appearance, not by `N`, so each of its parameters is bound to the value its name `$N` points at.
    fn prepare_on<'db>(&self, db: &'db rusqlite::Connection) -> Result<rusqlite::CachedStatement<'db>, StoreError> {
        let mut prepared = db.prepare_cached(&self.sql)?;
        for index in 1..=prepared.parameter_count() {
            let name = prepared.parameter_name(index).unwrap_or("?");
            let value = name
                .strip_prefix('$')
                .and_then(|n| n.parse::<usize>().ok()?.checked_sub(1))
                .and_then(|i| self.params.get(i))
                .ok_or_else(|| rusqlite::Error::InvalidParameterName(format!("{name} (no value) in {}", self.sql)))?;
            prepared.raw_bind_parameter(index, value)?;
        }
        Ok(prepared)
    }
}
