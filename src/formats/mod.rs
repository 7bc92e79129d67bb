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
