//! Inbound file formats: CSV -> canonical records, with located errors. Pure: no I/O beyond `Read`.
//!
//! `parse` streams a file as `Unit`s (one inventory row, one order, one shipment), each accepted
//! or rejected whole; memory stays flat in file size.

use serde::{Deserialize, Serialize};

/// The three inbound kinds. The folder a file arrives in decides its kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Inventory,
    Orders,
    Shipments,
}

impl Kind {
    pub const ALL: [Kind; 3] = [Kind::Inventory, Kind::Orders, Kind::Shipments];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Inventory => "inventory",
            Kind::Orders => "orders",
            Kind::Shipments => "shipments",
        }
    }
}

mod cells;
pub mod codes;
pub mod error;
pub mod fields;
mod group;
pub mod header;
mod inventory;
mod orders;
mod reader;
pub mod records;
mod shipments;

use std::collections::HashMap;
use std::io::Read;

pub use error::{ErrorCode, FileRejection, RecordError};
pub use header::{columns, ColType, ColumnDef, Presence, ALIASES};
pub use records::*;

/// Per-partner parsing settings and safety limits.
#[derive(Debug, Clone)]
pub struct ParseOptions {
    pub delimiter: u8,
    /// Partner header name -> canonical column name, keys lowercased. Applied before built-in aliases.
    pub column_map: HashMap<String, String>,
    /// Extra chrono format tried before the built-in date formats.
    pub date_format: Option<String>,
    /// Zone for dates and times written without an offset.
    pub timezone: chrono_tz::Tz,
    /// Inventory quantities are signed adjustments rather than on-hand counts.
    pub inventory_delta: bool,
    pub max_file_bytes: u64,
    pub max_field_len: usize,
    pub max_rows: u64,
    /// Most rows one order or shipment may have (bounds memory per unit).
    pub max_rows_per_group: usize,
}

impl Default for ParseOptions {
    fn default() -> Self {
        ParseOptions {
            delimiter: b',',
            column_map: HashMap::new(),
            date_format: None,
            timezone: chrono_tz::UTC,
            inventory_delta: false,
            max_file_bytes: 512 * 1024 * 1024,
            max_field_len: 4096,
            max_rows: 5_000_000,
            max_rows_per_group: 1000,
        }
    }
}

/// The subset of options the row validators need, owned by the iterator.
pub(crate) struct Ctx {
    pub date_format: Option<String>,
    pub timezone: chrono_tz::Tz,
    pub inventory_delta: bool,
    pub max_rows_per_group: usize,
}

/// Kind from a header row (after aliasing); `None` when it fits no kind.
pub fn sniff(header_line: &[String]) -> Option<Kind> {
    header::sniff(header_line)
}

/// Kind from the drop folder a file arrived in (case-insensitive).
pub fn kind_for_folder(folder: &str) -> Option<Kind> {
    Kind::ALL
        .into_iter()
        .find(|k| k.as_str().eq_ignore_ascii_case(folder.trim()))
}

/// Should an inventory file of this name be read in delta mode? (`*_delta.csv`)
pub fn is_delta_name(file_name: &str) -> bool {
    file_name.to_ascii_lowercase().ends_with("_delta.csv")
}

enum State {
    Inventory(inventory::InventoryState),
    Grouped(group::Grouper),
}

/// Streaming iterator over a file's units. An `Err` item means the whole file is rejected
/// (too large, too many rows, unreadable); iteration ends after it.
pub struct Units<R> {
    rows: reader::RowReader<R>,
    state: State,
    ctx: Ctx,
    failed: bool,
}

impl<R> Units<R> {
    /// The header as it was in the file (BOM removed, cells untrimmed).
    pub fn header(&self) -> &[String] {
        &self.rows.header
    }

    /// Warnings about the file (e.g. `unknown_column`); they never reject anything.
    pub fn warnings(&self) -> &[RecordError] {
        &self.rows.warnings
    }

    pub fn kind(&self) -> Kind {
        self.rows.map.kind
    }
}

impl<R: Read> Iterator for Units<R> {
    type Item = Result<Unit, FileRejection>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed {
            return None;
        }
        let item = match &mut self.state {
            State::Inventory(st) => match self.rows.next_row()? {
                Ok(row) => Ok(st.unit(row, &self.rows.map, self.ctx.inventory_delta)),
                Err(e) => Err(e),
            },
            State::Grouped(g) => {
                let kind = self.rows.map.kind;
                let key = if kind == Kind::Orders {
                    orders::key
                } else {
                    shipments::key
                };
                let next = g.next_group(&mut self.rows, key)?;
                match next {
                    Ok(group) if kind == Kind::Orders => {
                        Ok(orders::unit(group, &self.rows.map, &self.ctx))
                    }
                    Ok(group) => Ok(shipments::unit(group, &self.rows.map, &self.ctx)),
                    Err(e) => Err(e),
                }
            }
        };
        self.failed = item.is_err();
        Some(item)
    }
}

/// Opens a file of `kind`: reads and checks the header, then streams units lazily.
pub fn parse<R: Read>(
    kind: Kind,
    input: R,
    opts: &ParseOptions,
) -> Result<Units<R>, FileRejection> {
    let rows = reader::RowReader::open(kind, input, opts)?;
    let state = match kind {
        Kind::Inventory => State::Inventory(inventory::InventoryState::default()),
        Kind::Orders | Kind::Shipments => {
            State::Grouped(group::Grouper::new(opts.max_rows_per_group))
        }
    };
    let ctx = Ctx {
        date_format: opts.date_format.clone(),
        timezone: opts.timezone,
        inventory_delta: opts.inventory_delta,
        max_rows_per_group: opts.max_rows_per_group.max(1),
    };
    Ok(Units {
        rows,
        state,
        ctx,
        failed: false,
    })
}
