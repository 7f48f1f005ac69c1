//! Scripts: the statements of a batch, built with their parameters and run
//! together on the write connection. A batch uses a fixed handful of
//! multi-row statements whatever its size; this is where they are chunked
//! to stay within SQLite's limits and where recurring ones stay prepared.

use rusqlite::types::Value;

use crate::sql::{List, Statement};

/// At most this many rows per multi-row statement (and values per `IN`
/// list). With at most 5 parameters a row, that stays far below SQLite's
/// bound-parameter limit (32766).
pub(super) const MAX_ROWS_PER_STATEMENT: usize = 500;

/// At most this many `OR`ed terms per snapshot `DELETE`, far below SQLite's
/// expression depth limit (1000).
pub(super) const MAX_TERMS_PER_DELETE: usize = 200;

/// A batch's statements stay prepared in the write connection's statement
/// cache only if their SQL is at most this long: small batches have shapes
/// that recur, large ones rarely do.
const CACHED_STATEMENT_LEN: usize = 4096;

/// Statements of a batch, run when their results are needed, or at the end
/// of the batch.
#[derive(Default)]
pub(super) struct Script<'a> {
    statements: Vec<Statement<'a>>,
}

/// Runs `statement` with `params`, adding the rows it returns to `rows`.
fn query(
    statement: &mut rusqlite::Statement<'_>,
    params: &[crate::sql::Param<'_>],
    rows: &mut Vec<LookupRow>,
) -> rusqlite::Result<()> {
    let columns = statement.column_count();
    let mut found = statement.query(rusqlite::params_from_iter(params.iter()))?;
    while let Some(row) = found.next()? {
        rows.push(
            (0..columns)
                .map(|i| row.get::<_, Value>(i))
                .collect::<Result<_, _>>()?,
        );
    }
    Ok(())
}

/// A lookup's row: its columns, in order.
pub(super) type LookupRow = Vec<Value>;

impl<'a> Script<'a> {
    /// Starts the next statement; returns it to write.
    pub(super) fn statement(&mut self) -> &mut Statement<'a> {
        self.statements.push(Statement::default());
        let last = self.statements.len() - 1;
        &mut self.statements[last]
    }

    /// Runs the statements so far and returns the rows they produced. The
    /// statements of small batches (the shapes that recur) stay prepared.
    pub(super) fn fetch(&mut self, conn: &rusqlite::Connection) -> Result<Vec<LookupRow>, String> {
        let mut rows = Vec::new();
        for statement in self.statements.drain(..) {
            let found = if statement.text.len() <= CACHED_STATEMENT_LEN {
                conn.prepare_cached(&statement.text)
                    .and_then(|mut prepared| query(&mut prepared, &statement.params, &mut rows))
            } else {
                conn.prepare(&statement.text)
                    .and_then(|mut prepared| query(&mut prepared, &statement.params, &mut rows))
            };
            found.map_err(|e| format!("batch: {e}"))?;
        }
        Ok(rows)
    }

    /// Runs the statements so far.
    pub(super) fn execute(&mut self, conn: &rusqlite::Connection) -> Result<(), String> {
        self.fetch(conn).map(|_| ())
    }
}

/// Adds `head IN (values) tail` over `values` to `script`, in chunks (nothing
/// for no values).
pub(super) fn push_in<'a, T>(
    script: &mut Script<'a>,
    head: &str,
    tail: &str,
    values: &[T],
    mut push_value: impl FnMut(&mut List<'_, 'a>, &T),
) {
    for chunk in values.chunks(MAX_ROWS_PER_STATEMENT) {
        let builder = script.statement();
        builder.push(head).push(" IN (");
        let mut list = builder.separated(", ");
        for value in chunk {
            push_value(&mut list, value);
        }
        list.push_unseparated(")");
        builder.push(tail);
    }
}

/// Adds `head VALUES (row), (row)... tail` over `rows` to `script`, in chunks
/// (nothing for no rows). Rows of one statement are inserted in order.
pub(super) fn push_values<'a, T>(
    script: &mut Script<'a>,
    head: &str,
    tail: &str,
    rows: &[T],
    mut push_row: impl FnMut(List<'_, 'a>, &T),
) {
    for chunk in rows.chunks(MAX_ROWS_PER_STATEMENT) {
        let builder = script.statement();
        builder.push(head);
        builder.push_values(chunk, &mut push_row);
        builder.push(tail);
    }
}
