//! Inventory rows: one SKU per row, each row its own unit.

use std::collections::HashSet;

use super::cells::Cells;
use super::error::ErrorCode;
use super::fields;
use super::group::fingerprint;
use super::header::{inv, HeaderMap};
use super::reader::Row;
use super::{InventoryRecord, Record, Unit};

/// Per-file state: SKUs seen so far, as 128-bit hashes to keep memory small on huge files.
#[derive(Default)]
pub(crate) struct InventoryState {
    seen: HashSet<u128>,
}

impl InventoryState {
    /// Validates one row. In delta mode `quantity` is a signed adjustment; zero is accepted (a
    /// no-op) so warehouses may send complete change lists without filtering.
    pub fn unit(&mut self, row: Row, map: &HeaderMap, delta: bool) -> Unit {
        let mut errors = row.errors.clone();
        let mut record = None;
        if errors.is_empty() {
            let mut c = Cells::new(&row, map);
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
            let barcode = c.parse_opt(inv::BARCODE, |n, v| {
                fields::barcode(n, v).map(|()| v.to_string())
            });
            let name = c.opt(inv::NAME).map(str::to_string);
            if let Some(s) = sku {
                if !self.seen.insert(fingerprint(s)) {
                    c.push(
                        inv::SKU,
                        ErrorCode::DuplicateSku,
                        format!(
                            "SKU '{}' appears more than once in this file; keep one row per SKU",
                            fields::shown(s)
                        ),
                    );
                }
            }
            if let (Some(sku), Some(quantity), Ok(barcode), true) =
                (sku, quantity, barcode, c.errors.is_empty())
            {
                record = Some(InventoryRecord {
                    line: row.line(),
                    sku: sku.to_string(),
                    quantity,
                    name,
                    barcode,
                });
            }
            errors.extend(c.errors);
        }
        let result = match record {
            Some(r) if errors.is_empty() => Ok(Record::Inventory(r)),
            _ => Err(errors),
        };
        Unit {
            rows: vec![row.raw],
            result,
        }
    }
}
