//! Inventory rows: one SKU per row, each row its own unit.

use super::cells::Cells;
use super::dups::LateDuplicates;
use super::error::{ErrorCode, RecordError};
use super::fields;
use super::group::{fingerprint, FpSet};
use super::header::{inv, HeaderMap};
use super::reader::Row;
use super::{InventoryRecord, Record, Unit};

/// How repeated SKUs are found.
pub(crate) enum Seen {
    /// Every SKU's 128-bit fingerprint in a set: a repeat is flagged on its own row, at once.
    /// Memory grows with the number of distinct SKUs (about 32 bytes each).
    Inline(FpSet),
    /// Fingerprints and lines go to a bounded buffer (spilled to a temporary file when full);
    /// repeats are found after the last row (`Units::finish`). Memory stays flat.
    Late(LateDuplicates),
}

/// Per-file state: SKUs seen so far.
pub(crate) struct InventoryState {
    pub seen: Seen,
}

impl Default for InventoryState {
    fn default() -> Self {
        InventoryState { seen: Seen::Inline(FpSet::default()) }
    }
}

/// The message for a repeated SKU, the same whichever way it was found.
pub(crate) fn duplicate_sku(line: u64, sku: &str) -> RecordError {
    RecordError::new(
        line,
        "sku",
        ErrorCode::DuplicateSku,
        format!("SKU '{}' appears more than once in this file; keep one row per SKU", fields::shown(sku)),
    )
}

impl InventoryState {
    /// Validates one row, appending its errors to `errors`; builds the record only when `build`
    /// and the row is valid. In delta mode `quantity` is a signed adjustment; zero is accepted (a
    /// no-op) so warehouses may send complete change lists without filtering.
    pub fn evaluate(
        &mut self,
        row: &Row,
        map: &HeaderMap,
        delta: bool,
        build: bool,
        errors: &mut Vec<RecordError>,
    ) -> Option<InventoryRecord> {
        if !row.errors.is_empty() {
            errors.extend(row.errors.iter().cloned());
            return None;
        }
        let mut c = Cells::new(row, map);
        let sku = c.req(inv::SKU);
        let quantity = c.parse_req(inv::QUANTITY, fields::integer);
        if let Some(q) = quantity {
            if !delta && q < 0 {
                c.push(
                    inv::QUANTITY,
                    ErrorCode::NegativeQuantity,
                    format!("quantity on hand cannot be negative, got {q} (use a _delta file for adjustments)"),
                );
            }
        }
        let barcode = c.parse_opt(inv::BARCODE, fields::barcode);
        if let Some(s) = sku {
            let fp = fingerprint(s);
            match &mut self.seen {
                Seen::Inline(set) => {
                    if !set.insert(fp) {
                        c.errors.push(duplicate_sku(row.line(), s));
                    }
                }
                Seen::Late(late) => {
                    let ok = c.errors.is_empty();
                    if let Err(e) = late.push(fp, row.line(), ok) {
                        late.fail(e);
                    }
                }
            }
        }
        let record = match (sku, quantity, barcode, c.errors.is_empty()) {
            (Some(sku), Some(quantity), Ok(barcode), true) if build => Some(InventoryRecord {
                line: row.line(),
                sku: sku.to_string(),
                quantity,
                name: c.opt(inv::NAME).map(str::to_string),
                barcode: barcode.and(c.opt(inv::BARCODE)).map(str::to_string),
            }),
            _ => None,
        };
        errors.append(&mut c.errors);
        record
    }

    pub fn unit(&mut self, row: Row, map: &HeaderMap, delta: bool) -> Unit {
        let mut errors = Vec::new();
        let record = self.evaluate(&row, map, delta, true, &mut errors);
        let result = match record {
            Some(r) if errors.is_empty() => Ok(Record::Inventory(r)),
            _ => Err(errors),
        };
        Unit { rows: vec![row.raw], result }
    }
}
