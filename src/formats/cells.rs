//! Typed access to one row's cells, collecting located errors as it goes.

use super::error::{ErrorCode, RecordError};
use super::fields::FieldError;
use super::header::{columns, HeaderMap};
use super::reader::Row;

pub(crate) struct Cells<'a> {
    row: &'a Row,
    map: &'a HeaderMap,
    pub errors: Vec<RecordError>,
}

impl<'a> Cells<'a> {
    pub fn new(row: &'a Row, map: &'a HeaderMap) -> Self {
        Cells { row, map, errors: Vec::new() }
    }

    pub fn name(&self, col: usize) -> &'static str {
        columns(self.map.kind).get(col).map(|d| d.name).unwrap_or("")
    }

    /// Trimmed value, `None` if blank or the column is absent.
    pub fn opt(&self, col: usize) -> Option<&'a str> {
        self.row.get(self.map, col)
    }

    /// Trimmed value; records `missing_value` if blank.
    pub fn req(&mut self, col: usize) -> Option<&'a str> {
        let v = self.opt(col);
        if v.is_none() {
            let name = self.name(col);
            // Only a file of cancels may lack a required column; its other rows are told why.
            let message = if self.map.index.get(col).is_some_and(Option::is_none) {
                format!(
                    "{name} is required here, but the file has no {name} column (only cancel rows may leave it out)"
                )
            } else {
                format!("{name} is required but empty")
            };
            self.push(col, ErrorCode::MissingValue, message);
        }
        v
    }

    pub fn push(&mut self, col: usize, code: ErrorCode, message: String) {
        let name = self.name(col);
        self.errors.push(RecordError::new(self.row.line(), name, code, message));
    }

    fn apply<T>(&mut self, col: usize, v: &str, f: impl FnOnce(&str, &str) -> Result<T, FieldError>) -> Option<T> {
        match f(self.name(col), v) {
            Ok(t) => Some(t),
            Err((code, message)) => {
                self.push(col, code, message);
                None
            }
        }
    }

    /// Parses an optional value; a blank cell is `Ok(None)`, a bad one is recorded and `Err(())`.
    #[allow(clippy::result_unit_err)]
    pub fn parse_opt<T>(
        &mut self,
        col: usize,
        f: impl FnOnce(&str, &str) -> Result<T, FieldError>,
    ) -> Result<Option<T>, ()> {
        match self.opt(col) {
            None => Ok(None),
            Some(v) => self.apply(col, v, f).map(Some).ok_or(()),
        }
    }

    /// Parses a required value; missing or bad values are recorded.
    pub fn parse_req<T>(&mut self, col: usize, f: impl FnOnce(&str, &str) -> Result<T, FieldError>) -> Option<T> {
        let v = self.req(col)?;
        self.apply(col, v, f)
    }
}
