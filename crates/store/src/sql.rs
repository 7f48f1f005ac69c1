//! SQL statements built with their parameters, for the SQLite write
//! connection (`rusqlite`): the multi-row statements of a batch are built
//! from the batch's rows, so their text and parameter count vary.

use rusqlite::types::{ToSqlOutput, Value, ValueRef};

/// A parameter of a statement; blobs and text are borrowed from the batch.
pub(crate) type Param<'a> = ToSqlOutput<'a>;

/// What can be bound as a parameter.
pub(crate) trait Bind<'a> {
    fn param(self) -> Param<'a>;
}

impl<'a> Bind<'a> for &'a [u8] {
    fn param(self) -> Param<'a> {
        ToSqlOutput::Borrowed(ValueRef::Blob(self))
    }
}

/// An owned blob (a value computed for the statement).
impl<'a> Bind<'a> for Vec<u8> {
    fn param(self) -> Param<'a> {
        ToSqlOutput::Owned(Value::Blob(self))
    }
}

impl<'a> Bind<'a> for &'a str {
    fn param(self) -> Param<'a> {
        ToSqlOutput::Borrowed(ValueRef::Text(self.as_bytes()))
    }
}

/// An owned string (a value the closure building a row cannot lend).
impl<'a> Bind<'a> for String {
    fn param(self) -> Param<'a> {
        ToSqlOutput::Owned(Value::Text(self))
    }
}

impl<'a> Bind<'a> for i64 {
    fn param(self) -> Param<'a> {
        ToSqlOutput::Owned(Value::Integer(self))
    }
}

impl<'a> Bind<'a> for Option<i64> {
    fn param(self) -> Param<'a> {
        ToSqlOutput::Owned(self.map_or(Value::Null, Value::Integer))
    }
}

/// One statement: its text, with a `?` for each parameter, in order.
#[derive(Default)]
pub(crate) struct Statement<'a> {
    pub text: String,
    pub params: Vec<Param<'a>>,
}

impl<'a> Statement<'a> {
    pub fn push(&mut self, text: &str) -> &mut Self {
        self.text.push_str(text);
        self
    }

    pub fn push_bind(&mut self, value: impl Bind<'a>) -> &mut Self {
        self.text.push('?');
        self.params.push(value.param());
        self
    }

    /// A list whose items are separated by `separator`.
    pub fn separated(&mut self, separator: &'static str) -> List<'_, 'a> {
        List {
            statement: self,
            separator,
            first: true,
        }
    }

    /// `VALUES (row), (row)...`, each row a list separated by commas.
    pub fn push_values<T>(&mut self, rows: &[T], mut push_row: impl FnMut(List<'_, 'a>, &T)) {
        self.push("VALUES ");
        for (index, row) in rows.iter().enumerate() {
            if index > 0 {
                self.push(", ");
            }
            self.push("(");
            push_row(self.separated(", "), row);
            self.push(")");
        }
    }
}

/// Items of a list being added to a [`Statement`]: `push` and `push_bind`
/// start an item (after the separator), the `_unseparated` forms continue it.
pub(crate) struct List<'s, 'a> {
    statement: &'s mut Statement<'a>,
    separator: &'static str,
    first: bool,
}

impl<'a> List<'_, 'a> {
    fn next_item(&mut self) {
        if !self.first {
            self.statement.push(self.separator);
        }
        self.first = false;
    }

    pub fn push(&mut self, text: &str) -> &mut Self {
        self.next_item();
        self.statement.push(text);
        self
    }

    pub fn push_bind(&mut self, value: impl Bind<'a>) -> &mut Self {
        self.next_item();
        self.statement.push_bind(value);
        self
    }

    pub fn push_unseparated(&mut self, text: &str) -> &mut Self {
        self.statement.push(text);
        self
    }

    pub fn push_bind_unseparated(&mut self, value: impl Bind<'a>) -> &mut Self {
        self.statement.push_bind(value);
        self
    }
}
