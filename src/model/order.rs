//! Orders: what a warehouse asks for, how fast it ships, and what Stitch holds for one.

use serde::{Deserialize, Serialize};
use std::str::FromStr;

/// What an inbound order row asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OrderAction {
    Create,
    Cancel,
}

impl OrderAction {
    /// The word in files and in ledger payloads.
    pub fn as_str(self) -> &'static str {
        match self {
            OrderAction::Create => "create",
            OrderAction::Cancel => "cancel",
        }
    }
}

impl FromStr for OrderAction {
    type Err = super::UnknownWord;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "create" => Ok(OrderAction::Create),
            "cancel" => Ok(OrderAction::Cancel),
            _ => Err(super::UnknownWord { what: "order action", word: s.to_string() }),
        }
    }
}

/// Shipping speed of a fulfillment [ours], taken from the sales order's `shipping_speed`; the
/// same three speeds the files use, so nothing translates between them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ShippingSpeed {
    #[default]
    Standard,
    Expedited,
    Priority,
}

impl ShippingSpeed {
    pub fn as_str(self) -> &'static str {
        match self {
            ShippingSpeed::Standard => "Standard",
            ShippingSpeed::Expedited => "Expedited",
            ShippingSpeed::Priority => "Priority",
        }
    }

    /// Parses the Standard API string form; `None` for anything else.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Standard" => Some(ShippingSpeed::Standard),
            "Expedited" => Some(ShippingSpeed::Expedited),
            "Priority" => Some(ShippingSpeed::Priority),
            _ => None,
        }
    }
}
