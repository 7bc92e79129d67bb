//! What happened to one unit of a file (a product row, an order, a shipment).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    Created,
    Updated,
    Unchanged,
    Rejected,
    Skipped,
}

impl Outcome {
    pub const ALL: [Outcome; 5] =
        [Outcome::Created, Outcome::Updated, Outcome::Unchanged, Outcome::Rejected, Outcome::Skipped];

    /// The word in result files and in the ledger's `outcome` columns.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Created => "created",
            Outcome::Updated => "updated",
            Outcome::Unchanged => "unchanged",
            Outcome::Rejected => "rejected",
            Outcome::Skipped => "skipped",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Outcome {
    type Err = super::UnknownWord;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Outcome::ALL
            .into_iter()
            .find(|o| o.as_str() == s)
            .ok_or_else(|| super::UnknownWord { what: "outcome", word: s.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_reads_back_and_nothing_else_does() {
        for o in Outcome::ALL {
            assert_eq!(o.as_str().parse::<Outcome>(), Ok(o));
        }
        assert!("Created".parse::<Outcome>().is_err());
        assert!("".parse::<Outcome>().is_err());
    }
}
