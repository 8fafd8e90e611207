//! A write statement with its values listed once, run through sqlx (PostgreSQL, and SQLite's cold writes) or on the
//! SQLite writer thread ([`super::writer`]) alike.

use sqlx::{Database, Encode, Type};

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

    /// How many rows [`Statement::push_row`] has added.
    pub(crate) fn rows(&self) -> usize {
        self.sql.matches("($").count()
    }

    /// Adds a row of values to a multi-row `INSERT ... VALUES ` statement.
    pub(crate) fn push_row<const N: usize>(&mut self, values: [Param; N]) {
        if !self.params.is_empty() {
            self.sql.push_str(", ");
        }
        let first = self.params.len();
        let placeholders: Vec<String> = (1..=N).map(|i| format!("${}", first + i)).collect();
        self.sql.push('(');
        self.sql.push_str(&placeholders.join(", "));
        self.sql.push(')');
        self.params.extend(values);
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
}
