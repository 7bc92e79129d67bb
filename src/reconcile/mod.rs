//! Reconciliation: pure planning. Given canonical records and a snapshot of what Stitch holds,
//! decide the minimum set of writes and every record's outcome. No I/O here: the engine fetches
//! the snapshot, calls these functions, and executes the plan through the outbox.

pub mod download;
pub mod inventory;
pub mod orders;
pub mod shipments;

/// What happened (or will happen) to one record; becomes a row of the result file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    Rejected,
    Skipped,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Rejected => "rejected",
            Outcome::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Outcome {
        match s {
            "created" => Outcome::Created,
            "updated" => Outcome::Updated,
            "unchanged" => Outcome::Unchanged,
            "skipped" => Outcome::Skipped,
            _ => Outcome::Rejected,
        }
    }
}

/// A settled decision for one record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub line: u64,
    pub key: String,
    pub outcome: Outcome,
    pub remote_id: String,
    pub message: String,
}

impl Decision {
    pub fn new(line: u64, key: impl Into<String>, outcome: Outcome, remote_id: impl Into<String>, message: impl Into<String>) -> Self {
        Decision { line, key: key.into(), outcome, remote_id: remote_id.into(), message: message.into() }
    }

    pub fn rejected(line: u64, key: impl Into<String>, message: impl Into<String>) -> Self {
        Decision::new(line, key, Outcome::Rejected, "", message)
    }
}
