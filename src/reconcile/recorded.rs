//! What the outbox already holds for a record decides before any planner looks at Stitch: a
//! write that was answered is never repeated (for an inventory delta or a shipment, repeating
//! would apply it twice), and a write left uncertain by a crash is confirmed when Stitch shows
//! it landed. These rules are shared by every kind; the engine reads the ledger and hands each
//! record's intent over as a [`Recorded`].

use super::{Decision, Outcome};
use crate::formats::{InventoryRecord, OrderRecord};
use crate::model::Payload;
use crate::stitch::wire::OrderView;
use crate::stitch::wire::Product;

/// A record's earlier write, as the planners see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Recorded {
    /// Sent and answered: its outcome stands.
    Done { outcome: Outcome, remote_id: String, message: String, payload: Payload },
    /// Sent, answer unknown (a crash, an outage): it may have landed.
    Pending { payload: Payload },
    /// Refused by Stitch: the record is planned again.
    Failed,
}

/// What an earlier write means for a record now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Earlier {
    /// Answered before: report its outcome again, send nothing.
    Reuse(Decision),
    /// Left uncertain, and Stitch shows it landed: complete the intent with this decision,
    /// send nothing.
    Confirm(Decision),
}

/// The message of a write confirmed by reading Stitch back instead of by its answer.
pub const CONFIRMED: &str = "confirmed after an interrupted run";

fn reuse(line: u64, key: &str, outcome: Outcome, remote_id: &str, message: &str) -> Earlier {
    Earlier::Reuse(Decision::new(line, key, outcome, remote_id, message))
}

/// Inventory: a done write is reused; a pending one is confirmed when Stitch holds exactly the
/// stock it sent. Anything else (`None`) is planned again, which for a snapshot is harmless
/// (absolute values) and for a delta only happens when Stitch does not show the adjustment.
///
/// ```
/// use stitch_bridge::formats::InventoryRecord;
/// use stitch_bridge::model::Payload;
/// use stitch_bridge::reconcile::recorded::{inventory, Earlier, Recorded};
/// use stitch_bridge::reconcile::Outcome;
/// use stitch_bridge::stitch::wire::Product;
///
/// let rec = InventoryRecord { line: 2, sku: "A".into(), quantity: 5, name: None, barcode: None };
/// let sent = Recorded::Pending { payload: Payload::product("A", 5, false) };
/// let stitch = Product { id: "P1".into(), sku: "A".into(), name: None, barcode: None, stock: 5 };
/// match inventory(&rec, Some(&sent), Some(&stitch)) {
///     Some(Earlier::Confirm(d)) => assert_eq!((d.outcome, d.remote_id.as_str()), (Outcome::Updated, "P1")),
///     other => panic!("{other:?}"),
/// }
/// // Stitch does not show the stock sent: the record is planned again.
/// let moved = Product { stock: 4, ..stitch };
/// assert_eq!(inventory(&rec, Some(&sent), Some(&moved)), None);
/// ```
pub fn inventory(rec: &InventoryRecord, recorded: Option<&Recorded>, remote: Option<&Product>) -> Option<Earlier> {
    match recorded? {
        Recorded::Done { outcome, remote_id, message, .. } => {
            Some(reuse(rec.line, &rec.sku, *outcome, remote_id, message))
        }
        Recorded::Pending { payload: Payload::Product(sent) } => {
            let p = remote.filter(|p| p.stock == sent.stock)?;
            let outcome = if sent.creates { Outcome::Created } else { Outcome::Updated };
            let msg = format!("stock {} ({CONFIRMED})", sent.stock);
            Some(Earlier::Confirm(Decision::new(rec.line, &rec.sku, outcome, &p.id, msg)))
        }
        Recorded::Pending { .. } | Recorded::Failed => None,
    }
}

/// Orders: a done write is reused; a pending one is confirmed when Stitch holds what it wanted
/// (`orders::landed`).
pub fn order(rec: &OrderRecord, recorded: Option<&Recorded>, remote: Option<&OrderView>) -> Option<Earlier> {
    match recorded? {
        Recorded::Done { outcome, remote_id, message, .. } => {
            Some(reuse(rec.line, &rec.order_ref, *outcome, remote_id, message))
        }
        Recorded::Pending { .. } => {
            let v = remote.filter(|v| super::orders::landed(rec, v))?;
            Some(Earlier::Confirm(Decision::new(rec.line, &rec.order_ref, Outcome::Created, &v.order.id, CONFIRMED)))
        }
        Recorded::Failed => None,
    }
}

/// Shipments: a done write is reused. A shipment created while processing this very file (a
/// run stopped before finishing it) is still this file's creation, and its fulfillment's
/// status is due (`true`); one created by another file is "already sent". Pending and refused
/// shipments are planned again, with Stitch's recorded shipments read first
/// (`shipments::plan_fulfillment`).
pub fn shipment(line: u64, key: &str, file: &str, recorded: Option<&Recorded>) -> Option<(Earlier, bool)> {
    let Recorded::Done { outcome, remote_id, message, payload } = recorded? else { return None };
    let same_file = matches!(payload, Payload::Shipment(p) if p.file == file);
    Some(match outcome {
        Outcome::Created if same_file => (reuse(line, key, Outcome::Created, remote_id, message), true),
        Outcome::Created => (reuse(line, key, Outcome::Unchanged, remote_id, "already sent to Stitch"), false),
        other => (reuse(line, key, *other, remote_id, message), false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::OrderAction;
    use crate::model::FulfillmentStatus;

    fn done(outcome: Outcome, payload: Payload) -> Recorded {
        Recorded::Done { outcome, remote_id: "R1".into(), message: "m".into(), payload }
    }

    fn inv(sku: &str) -> InventoryRecord {
        InventoryRecord { line: 7, sku: sku.into(), quantity: 3, name: None, barcode: None }
    }

    fn product(stock: i64) -> Product {
        Product { id: "P9".into(), sku: "A".into(), name: None, barcode: None, stock }
    }

    #[test]
    fn inventory_table() {
        let pend = |stock, creates| Recorded::Pending { payload: Payload::product("A", stock, creates) };
        // (recorded, Stitch's stock, expected)
        let cases: Vec<(Option<Recorded>, Option<i64>, Option<Earlier>)> = vec![
            (None, Some(3), None),
            (Some(Recorded::Failed), Some(3), None),
            (
                Some(done(Outcome::Updated, Payload::product("A", 3, false))),
                None,
                Some(Earlier::Reuse(Decision::new(7, "A", Outcome::Updated, "R1", "m"))),
            ),
            (
                Some(pend(3, true)),
                Some(3),
                Some(Earlier::Confirm(Decision::new(7, "A", Outcome::Created, "P9", format!("stock 3 ({CONFIRMED})")))),
            ),
            (
                Some(pend(3, false)),
                Some(3),
                Some(Earlier::Confirm(Decision::new(7, "A", Outcome::Updated, "P9", format!("stock 3 ({CONFIRMED})")))),
            ),
            (Some(pend(3, false)), Some(2), None),
            (Some(pend(3, true)), None, None),
            // A pending intent that is not a product write never confirms a product.
            (Some(Recorded::Pending { payload: Payload::status("F", FulfillmentStatus::Shipped) }), Some(3), None),
        ];
        for (i, (recorded, stock, want)) in cases.into_iter().enumerate() {
            let p = stock.map(product);
            assert_eq!(inventory(&inv("A"), recorded.as_ref(), p.as_ref()), want, "case {i}");
        }
    }

    #[test]
    fn order_table() {
        let rec = OrderRecord {
            line: 4,
            order_ref: "PO-1".into(),
            action: OrderAction::Cancel,
            order_date: None,
            ship_to: None,
            shipping_speed: crate::model::ShippingSpeed::Standard,
            currency: None,
            items: vec![],
        };
        let view = |void: &str| OrderView {
            order: serde_json::from_value(serde_json::json!({"id": "O1", "void": void})).unwrap(),
            lines: vec![],
            shipping: None,
        };
        let pend = Recorded::Pending { payload: Payload::order("PO-1", OrderAction::Cancel) };
        let cases: Vec<(Option<Recorded>, Option<OrderView>, Option<Earlier>)> = vec![
            (None, Some(view("1")), None),
            (Some(Recorded::Failed), Some(view("1")), None),
            (
                Some(done(Outcome::Updated, Payload::order("PO-1", OrderAction::Cancel))),
                None,
                Some(Earlier::Reuse(Decision::new(4, "PO-1", Outcome::Updated, "R1", "m"))),
            ),
            (
                Some(pend.clone()),
                Some(view("1")),
                Some(Earlier::Confirm(Decision::new(4, "PO-1", Outcome::Created, "O1", CONFIRMED))),
            ),
            // Not voided yet: the cancel did not land; it is planned (and sent) again.
            (Some(pend.clone()), Some(view("0")), None),
            (Some(pend), None, None),
        ];
        for (i, (recorded, remote, want)) in cases.into_iter().enumerate() {
            assert_eq!(order(&rec, recorded.as_ref(), remote.as_ref()), want, "case {i}");
        }
    }

    #[test]
    fn shipment_table() {
        let ship = |file: &str| Payload::shipment("F1", "T1", file);
        type Case = (Option<Recorded>, Option<(Earlier, bool)>);
        let cases: Vec<Case> = vec![
            (None, None),
            (Some(Recorded::Failed), None),
            (Some(Recorded::Pending { payload: ship("this") }), None),
            (
                Some(done(Outcome::Created, ship("this"))),
                Some((Earlier::Reuse(Decision::new(3, "F1/T1", Outcome::Created, "R1", "m")), true)),
            ),
            (
                Some(done(Outcome::Created, ship("other"))),
                Some((
                    Earlier::Reuse(Decision::new(3, "F1/T1", Outcome::Unchanged, "R1", "already sent to Stitch")),
                    false,
                )),
            ),
            (
                Some(done(Outcome::Unchanged, ship("this"))),
                Some((Earlier::Reuse(Decision::new(3, "F1/T1", Outcome::Unchanged, "R1", "m")), false)),
            ),
        ];
        for (i, (recorded, want)) in cases.into_iter().enumerate() {
            assert_eq!(shipment(3, "F1/T1", "this", recorded.as_ref()), want, "case {i}");
        }
    }
}
