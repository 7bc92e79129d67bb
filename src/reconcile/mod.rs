//! Reconciliation: pure planning. Given canonical records and a snapshot of what Stitch holds,
//! decide the minimum set of writes and every record's outcome. No I/O here: the engine fetches
//! the snapshot, calls these functions, and executes the plan through the outbox.

pub mod download;
pub mod inventory;
pub mod orders;
pub mod recorded;
pub mod refusals;
pub mod shipments;
pub mod status;

pub use crate::model::Outcome;

/// Outcomes are stored as their strings; anything unknown reads as rejected, never as success.
pub fn outcome_from(s: &str) -> Outcome {
    s.parse().unwrap_or(Outcome::Rejected)
}

/// A settled decision for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub line: u64,
    pub key: String,
    pub outcome: Outcome,
    pub remote_id: String,
    /// Stable reason code of a rejection, for the errors file; empty otherwise.
    pub code: &'static str,
    pub message: String,
}

impl Decision {
    pub fn new(
        line: u64,
        key: impl Into<String>,
        outcome: Outcome,
        remote_id: impl Into<String>,
        message: impl Into<String>,
    ) -> Self {
        Decision { line, key: key.into(), outcome, remote_id: remote_id.into(), code: "", message: message.into() }
    }

    pub fn rejected(line: u64, code: &'static str, key: impl Into<String>, message: impl Into<String>) -> Self {
        Decision { code, ..Decision::new(line, key, Outcome::Rejected, "", message) }
    }
}

/// The key a record's result row carries: its SKU, order reference, or fulfillment (or order)
/// and tracking number.
pub fn record_key(r: &crate::formats::Record) -> String {
    use crate::formats::Record;
    match r {
        Record::Inventory(i) => i.sku.clone(),
        Record::Order(o) => o.order_ref.clone(),
        Record::Shipment(s) => {
            format!("{}/{}", s.fulfillment_id.as_deref().or(s.order_ref.as_deref()).unwrap_or(""), s.tracking_number)
        }
    }
}
