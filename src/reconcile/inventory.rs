//! Inventory: post products with stock once, then only changes [doc]. Unchanged SKUs make no
//! request; deltas apply on top of Stitch's current stock and never drive it below zero.

use super::{Decision, Outcome};
use crate::formats::InventoryRecord;
use crate::stitch::wire::{Product, ProductUpsert};
use std::collections::{HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InventoryPolicy {
    pub delta: bool,
    pub zero_missing: bool,
    pub zero_missing_max_share: f64,
}

/// One product write and the record it came from (`line` 0 for SKUs zeroed by `zero_missing`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlannedUpsert {
    pub line: u64,
    pub upsert: ProductUpsert,
    pub creates: bool,
    /// Stock before, for the result message.
    pub before: Option<i64>,
    /// Name and barcode before, set only when this write changes them (for the result message).
    pub before_name: Option<String>,
    pub before_barcode: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct InventoryPlan {
    pub upserts: Vec<PlannedUpsert>,
    /// Decisions that need no request (unchanged, rejected).
    pub settled: Vec<Decision>,
}

/// The writes that bring Stitch to the file's stock, and the outcome of every record that
/// needs none. An unchanged SKU costs no request; a delta that would go below zero is refused.
///
/// ```
/// use std::collections::HashMap;
/// use stitch_bridge::formats::InventoryRecord;
/// use stitch_bridge::reconcile::inventory::{plan, InventoryPolicy};
/// use stitch_bridge::reconcile::Outcome;
/// use stitch_bridge::stitch::wire::Product;
///
/// let rec = |line, sku: &str, quantity| InventoryRecord { line, sku: sku.into(), quantity, name: None, barcode: None };
/// let red = Product { id: "P1".into(), sku: "RED".into(), name: None, barcode: None, stock: 5 };
/// let remote = HashMap::from([("RED".to_string(), red)]);
/// let snapshot = InventoryPolicy { delta: false, zero_missing: false, zero_missing_max_share: 0.5 };
///
/// let p = plan(&[rec(2, "RED", 5), rec(3, "BLUE", 7)], &remote, snapshot);
/// let settled: Vec<_> = p.settled.iter().map(|d| (d.line, d.key.as_str(), d.outcome)).collect();
/// assert_eq!(settled, [(2, "RED", Outcome::Unchanged)]);
/// let writes: Vec<_> = p.upserts.iter().map(|u| (u.line, u.upsert.sku.as_str(), u.upsert.stock, u.creates)).collect();
/// assert_eq!(writes, [(3, "BLUE", 7, true)]);
///
/// // A delta is added to Stitch's stock, and never takes it below zero.
/// let delta = InventoryPolicy { delta: true, ..snapshot };
/// let p = plan(&[rec(2, "RED", -2)], &remote, delta);
/// assert_eq!((p.upserts[0].upsert.stock, p.upserts[0].before), (3, Some(5)));
/// let p = plan(&[rec(2, "RED", -6)], &remote, delta);
/// assert_eq!((p.settled[0].outcome, p.settled[0].code), (Outcome::Rejected, "stock_below_zero"));
/// assert!(p.upserts.is_empty());
/// ```
pub fn plan(records: &[InventoryRecord], remote: &HashMap<String, Product>, policy: InventoryPolicy) -> InventoryPlan {
    let mut out = InventoryPlan::default();
    if policy.zero_missing && !policy.delta {
        if let Some(why) = zero_guard(records, remote, policy.zero_missing_max_share) {
            out.settled = records.iter().map(|r| Decision::rejected(r.line, "bad_export", &r.sku, &why)).collect();
            if out.settled.is_empty() {
                // An empty snapshot has no row to carry the refusal: report it for the file
                // (line 0), or it would be archived as if it had been applied.
                out.settled.push(Decision::rejected(0, "bad_export", "", why));
            }
            return out;
        }
    }
    for r in records {
        let current = remote.get(&r.sku);
        let target = if policy.delta {
            let Some(p) = current else {
                out.settled.push(Decision::rejected(
                    r.line,
                    "unknown_sku",
                    &r.sku,
                    format!("SKU {} is not in Stitch yet; a delta can only adjust an existing product (send it in a full inventory file first)", r.sku),
                ));
                continue;
            };
            let t = p.stock.saturating_add(r.quantity);
            if t < 0 {
                out.settled.push(Decision::rejected(
                    r.line,
                    "stock_below_zero",
                    &r.sku,
                    format!("adjustment {} would take stock below zero (Stitch has {})", r.quantity, p.stock),
                ));
                continue;
            }
            t
        } else {
            r.quantity
        };
        match current {
            None => out.upserts.push(PlannedUpsert {
                line: r.line,
                upsert: ProductUpsert {
                    sku: r.sku.clone(),
                    name: r.name.clone(),
                    barcode: r.barcode.clone(),
                    stock: target,
                },
                creates: true,
                before: None,
                before_name: None,
                before_barcode: None,
            }),
            Some(p) => {
                let name_changed = r.name.is_some() && r.name != p.name;
                let barcode_changed = r.barcode.is_some() && r.barcode != p.barcode;
                if p.stock == target && !name_changed && !barcode_changed {
                    out.settled.push(Decision::new(
                        r.line,
                        &r.sku,
                        Outcome::Unchanged,
                        &p.id,
                        format!("stock {target}"),
                    ));
                } else {
                    out.upserts.push(PlannedUpsert {
                        line: r.line,
                        upsert: ProductUpsert {
                            sku: r.sku.clone(),
                            name: if name_changed { r.name.clone() } else { None },
                            barcode: if barcode_changed { r.barcode.clone() } else { None },
                            stock: target,
                        },
                        creates: false,
                        before: Some(p.stock),
                        before_name: name_changed.then(|| p.name.clone().unwrap_or_default()),
                        before_barcode: barcode_changed.then(|| p.barcode.clone().unwrap_or_default()),
                    });
                }
            }
        }
    }
    if policy.zero_missing && !policy.delta {
        let in_file: HashSet<&str> = records.iter().map(|r| r.sku.as_str()).collect();
        let mut missing: Vec<&Product> =
            remote.values().filter(|p| p.stock != 0 && !in_file.contains(p.sku.as_str())).collect();
        missing.sort_by(|a, b| a.sku.cmp(&b.sku));
        for p in missing {
            out.upserts.push(PlannedUpsert {
                line: 0,
                upsert: ProductUpsert { sku: p.sku.clone(), name: None, barcode: None, stock: 0 },
                creates: false,
                before: Some(p.stock),
                before_name: None,
                before_barcode: None,
            });
        }
    }
    out
}

/// A snapshot that is empty, or would zero too large a share of SKUs, is almost always a bad
/// export (a truncated file, the wrong warehouse): refuse it whole rather than wipe stock.
fn zero_guard(records: &[InventoryRecord], remote: &HashMap<String, Product>, max_share: f64) -> Option<String> {
    if records.is_empty() {
        return Some(
            "an empty snapshot with zero_missing would set every SKU to 0; refused as a likely bad export".into(),
        );
    }
    if remote.is_empty() {
        return None;
    }
    let in_file: HashSet<&str> = records.iter().map(|r| r.sku.as_str()).collect();
    let zeroed = remote.values().filter(|p| p.stock != 0 && !in_file.contains(p.sku.as_str())).count();
    let share = zeroed as f64 / remote.len() as f64;
    (share > max_share).then(|| {
        format!(
            "this snapshot would set {zeroed} of {} SKUs ({:.0}%) to 0, more than the allowed {:.0}%; refused as a likely bad export",
            remote.len(),
            share * 100.0,
            max_share * 100.0
        )
    })
}

/// Result message for an applied upsert: what changed, and only that (a name-only change must
/// not read as a stock change `300 -> 300`).
pub fn applied_message(p: &PlannedUpsert) -> (Outcome, String) {
    let (before, after) = (p.before, p.upsert.stock);
    let mut parts = Vec::new();
    match before {
        _ if p.creates => parts.push(format!("stock {after}")),
        Some(b) if p.line == 0 => parts.push(format!("not in snapshot: stock {b} -> 0")),
        Some(b) if b != after => parts.push(format!("stock {b} -> {after}")),
        Some(_) => {}
        None => parts.push(format!("stock {after}")),
    }
    let changed = |what: &str, old: &Option<String>, new: &Option<String>| {
        old.as_ref().map(|o| format!("{what} '{o}' -> '{}'", new.as_deref().unwrap_or("")))
    };
    if !p.creates {
        parts.extend(changed("name", &p.before_name, &p.upsert.name));
        parts.extend(changed("barcode", &p.before_barcode, &p.upsert.barcode));
    }
    if parts.is_empty() {
        parts.push(format!("stock {after}"));
    }
    (if p.creates { Outcome::Created } else { Outcome::Updated }, parts.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applied_messages_say_what_changed() {
        let remote: HashMap<String, Product> = [(
            "A".to_string(),
            Product {
                id: "1".into(),
                sku: "A".into(),
                name: Some("Old".into()),
                barcode: Some("111".into()),
                stock: 300,
            },
        )]
        .into();
        let policy = InventoryPolicy { delta: false, zero_missing: false, zero_missing_max_share: 0.2 };
        let rec = |name: Option<&str>, barcode: Option<&str>, quantity| InventoryRecord {
            line: 2,
            sku: "A".into(),
            quantity,
            name: name.map(String::from),
            barcode: barcode.map(String::from),
        };
        for (r, want) in [
            (rec(Some("New"), None, 300), "name 'Old' -> 'New'"),
            (rec(None, Some("222"), 300), "barcode '111' -> '222'"),
            (rec(Some("New"), None, 310), "stock 300 -> 310; name 'Old' -> 'New'"),
            (rec(None, None, 310), "stock 300 -> 310"),
        ] {
            let plan = plan(&[r], &remote, policy);
            assert_eq!(applied_message(&plan.upserts[0]), (Outcome::Updated, want.to_string()));
        }
    }

    fn rec(line: u64, sku: &str, q: i64) -> InventoryRecord {
        InventoryRecord { line, sku: sku.into(), quantity: q, name: None, barcode: None }
    }
    fn prod(sku: &str, stock: i64) -> (String, Product) {
        (sku.into(), Product { id: format!("P-{sku}"), sku: sku.into(), name: None, barcode: None, stock })
    }
    const SNAP: InventoryPolicy = InventoryPolicy { delta: false, zero_missing: false, zero_missing_max_share: 0.2 };

    #[test]
    fn only_new_and_changed_skus_are_written() {
        let remote: HashMap<_, _> = [prod("A", 5), prod("B", 7)].into();
        let p = plan(&[rec(2, "A", 5), rec(3, "B", 8), rec(4, "C", 1)], &remote, SNAP);
        let written: Vec<_> = p.upserts.iter().map(|u| (u.upsert.sku.as_str(), u.upsert.stock, u.creates)).collect();
        assert_eq!(written, vec![("B", 8, false), ("C", 1, true)]);
        assert_eq!(p.settled.len(), 1);
        assert_eq!(p.settled[0].outcome, Outcome::Unchanged);
    }

    #[test]
    fn delta_applies_on_top_and_never_below_zero() {
        let remote: HashMap<_, _> = [prod("A", 5)].into();
        let policy = InventoryPolicy { delta: true, ..SNAP };
        let p = plan(&[rec(2, "A", -3)], &remote, policy);
        assert_eq!(p.upserts[0].upsert.stock, 2);
        let p = plan(&[rec(2, "A", -6), rec(3, "Z", 1)], &remote, policy);
        assert!(p.upserts.is_empty());
        assert!(p.settled.iter().all(|d| d.outcome == Outcome::Rejected));
        assert!(p.settled[0].message.contains("below zero"));
    }

    #[test]
    fn zero_missing_is_guarded() {
        let remote: HashMap<_, _> = (0..10).map(|i| prod(&format!("S{i}"), 3)).collect();
        let policy = InventoryPolicy { zero_missing: true, ..SNAP };
        // Missing 2 of 10 (20%): allowed, both zeroed.
        let recs: Vec<_> = (0..8).map(|i| rec(i + 2, &format!("S{i}"), 3)).collect();
        let p = plan(&recs, &remote, policy);
        assert_eq!(p.upserts.iter().filter(|u| u.upsert.stock == 0 && u.line == 0).count(), 2);
        // Missing 3 of 10: refused whole.
        let p = plan(&recs[..7], &remote, policy);
        assert!(p.upserts.is_empty());
        assert!(p.settled.iter().all(|d| d.outcome == Outcome::Rejected && d.message.contains("bad export")));
        // Empty snapshot: refused, with a file-level rejection to say so.
        let p = plan(&[], &remote, policy);
        assert!(p.upserts.is_empty());
        assert!(
            matches!(&p.settled[..], [d] if d.line == 0 && d.outcome == Outcome::Rejected && d.code == "bad_export")
        );
    }
}
