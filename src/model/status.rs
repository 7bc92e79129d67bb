//! The two lifecycles the bridge keeps for a fulfillment: the status text it shows in Stitch,
//! and what became of a fulfillment it sent to the warehouse.

use std::fmt;
use std::str::FromStr;

/// The statuses the bridge sets on a fulfillment. Stitch's status is a free string shown to the
/// merchant [doc]; the bridge uses these three, in this order, and never moves one back.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum FulfillmentStatus {
    SentToWarehouse,
    PartiallyShipped,
    Shipped,
}

impl FulfillmentStatus {
    pub const ALL: [FulfillmentStatus; 3] =
        [FulfillmentStatus::SentToWarehouse, FulfillmentStatus::PartiallyShipped, FulfillmentStatus::Shipped];

    /// The text Stitch shows.
    pub const fn label(self) -> &'static str {
        match self {
            FulfillmentStatus::SentToWarehouse => "Sent to warehouse",
            FulfillmentStatus::PartiallyShipped => "Partially shipped",
            FulfillmentStatus::Shipped => "Shipped",
        }
    }

    /// The tag in outbox keys (`sts:F1:sent`), as release 0.1 wrote it.
    pub fn tag(self) -> &'static str {
        match self {
            FulfillmentStatus::SentToWarehouse => "sent",
            FulfillmentStatus::PartiallyShipped => "partially-shipped",
            FulfillmentStatus::Shipped => "shipped",
        }
    }

    pub fn from_label(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.label() == s)
    }

    pub fn from_tag(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.tag() == s)
    }

    /// Statuses that come after this one (an older status must not overwrite them).
    pub fn later(self) -> impl Iterator<Item = FulfillmentStatus> {
        Self::ALL.into_iter().filter(move |s| *s > self)
    }
}

impl fmt::Display for FulfillmentStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl serde::Serialize for FulfillmentStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.label())
    }
}

impl<'de> serde::Deserialize<'de> for FulfillmentStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        FulfillmentStatus::from_label(&s).ok_or_else(|| serde::de::Error::custom(format!("unknown status {s:?}")))
    }
}

/// What became of a fulfillment sent to the warehouse (the ledger's `sent_fulfillments.state`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SentState {
    /// Sent; the warehouse is working on it (watched for cancellation).
    Sent,
    Complete,
    /// Cancelled in Stitch; the cancel file went out.
    Cancelled,
    /// Stitch no longer knows it.
    Unknown,
}

impl SentState {
    pub const ALL: [SentState; 4] = [SentState::Sent, SentState::Complete, SentState::Cancelled, SentState::Unknown];

    pub fn as_str(self) -> &'static str {
        match self {
            SentState::Sent => "sent",
            SentState::Complete => "complete",
            SentState::Cancelled => "cancelled",
            SentState::Unknown => "unknown",
        }
    }
}

/// A stored word no release wrote: the ledger is damaged or newer than this code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {word:?}")]
pub struct UnknownWord {
    pub what: &'static str,
    pub word: String,
}

impl FromStr for SentState {
    type Err = UnknownWord;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|x| x.as_str() == s)
            .ok_or_else(|| UnknownWord { what: "fulfillment state", word: s.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_are_ordered_and_read_back() {
        use FulfillmentStatus::*;
        assert!(SentToWarehouse < PartiallyShipped && PartiallyShipped < Shipped);
        assert_eq!(SentToWarehouse.later().collect::<Vec<_>>(), vec![PartiallyShipped, Shipped]);
        assert_eq!(Shipped.later().count(), 0);
        for s in FulfillmentStatus::ALL {
            assert_eq!(FulfillmentStatus::from_label(s.label()), Some(s));
            assert_eq!(FulfillmentStatus::from_tag(s.tag()), Some(s));
        }
        assert_eq!(FulfillmentStatus::from_label("shipped"), None);
        for s in SentState::ALL {
            assert_eq!(s.as_str().parse::<SentState>(), Ok(s));
        }
        assert!("open".parse::<SentState>().is_err());
    }
}
