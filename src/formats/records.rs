//! Canonical records produced by the parsers: what the rest of the program acts on.

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;
use serde::Serialize;

use super::error::RecordError;

/// A data row as it was in the file (values untrimmed; invalid UTF-8 replaced by U+FFFD), kept so
/// error and result files can echo it back.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RawRow {
    /// 1-based physical line where the record starts.
    pub line: u64,
    pub fields: Fields,
}

/// A row's values, kept as one string and the end of each value in it: one buffer per row to
/// fill and reuse (and to hand between threads) instead of one per value.
#[derive(Debug, Clone, Default)]
pub struct Fields {
    text: String,
    ends: Vec<usize>,
}

impl Fields {
    /// Value `i`, untrimmed.
    pub fn get(&self, i: usize) -> Option<&str> {
        let end = *self.ends.get(i)?;
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        self.text.get(start..end)
    }

    pub fn len(&self) -> usize {
        self.ends.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).filter_map(|i| self.get(i))
    }

    /// Empties the row, keeping its buffers.
    pub fn clear(&mut self) {
        self.text.clear();
        self.ends.clear();
    }

    pub fn push(&mut self, value: &str) {
        self.text.push_str(value);
        self.ends.push(self.text.len());
    }

    /// Takes a framed record whose bytes are `whole` (already checked as UTF-8) in one copy,
    /// dropping the CR of a CRLF ending from the last value. `false` (and the row left empty)
    /// when a value edge falls inside a character, i.e. a value on its own is not UTF-8.
    pub(crate) fn fill_from(&mut self, whole: &str, record: &super::reader::Record) -> bool {
        self.clear();
        self.text.push_str(whole);
        let n = record.len();
        for i in 0..n {
            let Some(r) = record.range(i) else { break };
            let mut end = r.end;
            if i + 1 == n && whole.as_bytes()[r.start..end].ends_with(b"\r") {
                end -= 1;
            }
            if !whole.is_char_boundary(end) {
                self.clear();
                return false;
            }
            self.ends.push(end);
        }
        true
    }

    /// Length in bytes of all values together.
    pub(crate) fn total_len(&self) -> usize {
        self.text.len()
    }
}

/// Rows are equal when their values are (whatever else the buffer holds, e.g. a line's CR).
impl PartialEq for Fields {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Fields {}

impl<S: AsRef<str>> FromIterator<S> for Fields {
    fn from_iter<I: IntoIterator<Item = S>>(values: I) -> Self {
        let mut f = Fields::default();
        for v in values {
            f.push(v.as_ref());
        }
        f
    }
}

impl<S: AsRef<str>> From<Vec<S>> for Fields {
    fn from(values: Vec<S>) -> Self {
        values.into_iter().collect()
    }
}

impl Serialize for Fields {
    fn serialize<Ser: serde::Serializer>(&self, s: Ser) -> Result<Ser::Ok, Ser::Error> {
        s.collect_seq(self.iter())
    }
}

/// The unit of acceptance: one inventory row, one whole order, or one whole shipment. Either all
/// its rows are applied or none.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Unit {
    pub rows: Vec<RawRow>,
    pub result: Result<Record, Vec<RecordError>>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Record {
    Inventory(InventoryRecord),
    Order(OrderRecord),
    Shipment(ShipmentRecord),
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InventoryRecord {
    pub line: u64,
    pub sku: String,
    /// On-hand stock, or (in delta mode) a signed adjustment.
    pub quantity: i64,
    pub name: Option<String>,
    pub barcode: Option<String>,
}

pub use crate::model::{OrderAction, ShippingSpeed};

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Address {
    pub name: String,
    pub company: Option<String>,
    pub address1: String,
    pub address2: Option<String>,
    pub city: String,
    pub state: Option<String>,
    pub zip: Option<String>,
    /// ISO 3166-1 alpha-2, uppercase.
    pub country: String,
    pub phone: Option<String>,
    pub email: Option<String>,
}

/// One order. For `Cancel`, only `order_ref` is meaningful: the other fields are `None`/empty.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OrderRecord {
    /// Line of the order's first row.
    pub line: u64,
    pub order_ref: String,
    pub action: OrderAction,
    pub order_date: Option<DateTime<FixedOffset>>,
    pub ship_to: Option<Address>,
    pub shipping_speed: ShippingSpeed,
    /// ISO 4217, uppercase.
    pub currency: Option<String>,
    pub items: Vec<OrderItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrderItem {
    pub line: u64,
    pub sku: String,
    pub quantity: u32,
    pub price: Option<Decimal>,
}

/// One shipment: the rows sharing (fulfillment_id or order_ref) and tracking number.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShipmentRecord {
    pub line: u64,
    pub fulfillment_id: Option<String>,
    pub order_ref: Option<String>,
    pub tracking_number: String,
    pub carrier: String,
    pub service: Option<String>,
    pub shipped_at: DateTime<FixedOffset>,
    pub cost: Option<Decimal>,
    pub weight: Option<Decimal>,
    pub items: Vec<ShipmentItem>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ShipmentItem {
    pub line: u64,
    pub sku: String,
    pub quantity: u32,
}
