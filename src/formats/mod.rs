//! Inbound file formats: CSV -> canonical records, with located errors. Pure: no I/O beyond `Read`.

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

// Placeholder until the formats module lands (replaced wholesale on merge).
#[derive(Debug, Clone)]
pub struct ParseOptions {
    pub delimiter: u8,
    pub column_map: std::collections::HashMap<String, String>,
    pub date_format: Option<String>,
    pub timezone: chrono_tz::Tz,
    pub inventory_delta: bool,
    pub max_file_bytes: u64,
    pub max_field_len: usize,
    pub max_rows: u64,
    pub max_rows_per_group: usize,
}
pub mod error;
pub mod records;
pub use error::{ErrorCode, FileRejection, RecordError};
pub use records::*;
