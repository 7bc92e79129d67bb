//! Shipments: map each shipment's SKUs onto its fulfillment's line items, check what remains to
//! ship, skip a tracking number Stitch already has, and reject anything Stitch would refuse,
//! each with a reason a warehouse clerk can act on.

use super::recorded::{self, Earlier, Recorded};
use super::{Decision, Outcome};
use crate::formats::ShipmentRecord;
use crate::model::{FulfillmentStatus, IntentKey};
use crate::stitch::wire::{
    Fulfillment, FulfillmentLineItem, FulfillmentState, NewShipment, Shipment, ShipmentLineItem,
};
use std::collections::{BTreeMap, HashMap};

/// What Stitch holds for one fulfillment.
#[derive(Debug, Clone)]
pub struct FulfillmentSnapshot {
    pub fulfillment: Fulfillment,
    pub line_items: Vec<FulfillmentLineItem>,
    pub shipments: Vec<Shipment>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ShipmentPlan {
    Post(NewShipment),
    Settled(Decision),
}

/// Deterministic identity of a shipment: the same shipment planned twice is one intent.
pub fn key(fulfillment_id: &str, rec: &ShipmentRecord) -> String {
    format!("{fulfillment_id}/{}", rec.tracking_number)
}

/// Plan every shipment of one fulfillment in file order; quantities planned for earlier
/// shipments count against later ones.
pub fn plan(recs: &[&ShipmentRecord], snap: Option<&FulfillmentSnapshot>, wanted: &str) -> Vec<ShipmentPlan> {
    let Some(snap) = snap else {
        return recs
            .iter()
            .map(|r| {
                ShipmentPlan::Settled(Decision::rejected(
                    r.line,
                    "unknown_fulfillment",
                    display_key(wanted, r),
                    format!("unknown fulfillment: Stitch has no fulfillment for {wanted}"),
                ))
            })
            .collect();
    };
    let f = &snap.fulfillment;
    let mut remaining: HashMap<&str, u32> =
        snap.line_items.iter().map(|l| (l.id.as_str(), l.quantity.saturating_sub(l.quantity_shipped))).collect();
    let mut out = Vec::with_capacity(recs.len());
    for r in recs {
        let k = key(&f.id, r);
        if let Some(s) = snap.shipments.iter().find(|s| s.tracking_number == r.tracking_number) {
            out.push(ShipmentPlan::Settled(Decision::new(
                r.line,
                k,
                Outcome::Unchanged,
                &s.id,
                "tracking number already recorded on this fulfillment",
            )));
            continue;
        }
        match f.state {
            FulfillmentState::Cancelled => {
                out.push(ShipmentPlan::Settled(Decision::rejected(
                    r.line,
                    "fulfillment_cancelled",
                    k,
                    format!("fulfillment {} was cancelled in Stitch; do not ship it", f.id),
                )));
                continue;
            }
            FulfillmentState::Complete => {
                out.push(ShipmentPlan::Settled(Decision::rejected(
                    r.line,
                    "fulfillment_complete",
                    k,
                    format!("fulfillment {} is already complete", f.id),
                )));
                continue;
            }
            FulfillmentState::Open => {}
        }
        let mut trial = remaining.clone();
        let mut lines: Vec<ShipmentLineItem> = Vec::new();
        let mut problems: Vec<String> = Vec::new();
        let mut code = "over_shipment";
        for item in &r.items {
            let candidates: Vec<&FulfillmentLineItem> = snap.line_items.iter().filter(|l| l.sku == item.sku).collect();
            if candidates.is_empty() {
                code = "sku_not_on_fulfillment";
                problems.push(format!(
                    "line {}: SKU {} is not on fulfillment {} (if it is a bundle, ship its components)",
                    item.line, item.sku, f.id
                ));
                continue;
            }
            let mut need = item.quantity;
            for l in candidates {
                let left = trial.get_mut(l.id.as_str()).expect("every line item is in the map");
                let take = need.min(*left);
                if take > 0 {
                    *left -= take;
                    need -= take;
                    match lines.iter_mut().find(|x| x.line_item_id == l.id) {
                        Some(x) => x.quantity += take,
                        None => lines.push(ShipmentLineItem { line_item_id: l.id.clone(), quantity: take }),
                    }
                }
            }
            if need > 0 {
                let rem: u32 =
                    snap.line_items.iter().filter(|l| l.sku == item.sku).map(|l| remaining[l.id.as_str()]).sum();
                problems.push(format!(
                    "line {}: over-shipment of SKU {}: ships {} but only {} remain on fulfillment {}",
                    item.line, item.sku, item.quantity, rem, f.id
                ));
            }
        }
        if !problems.is_empty() {
            out.push(ShipmentPlan::Settled(Decision::rejected(r.line, code, k, problems.join("; "))));
            continue;
        }
        remaining = trial;
        out.push(ShipmentPlan::Post(NewShipment {
            fulfillment_id: f.id.clone(),
            shipped_at: r.shipped_at,
            carrier: r.carrier.clone(),
            service: r.service.clone(),
            tracking_number: r.tracking_number.clone(),
            cost: r.cost.and_then(|c| c.to_string().parse().ok()),
            line_items: lines,
        }));
    }
    out
}

/// The order references whose fulfillment must be looked up (records without a fulfillment id),
/// each once, in file order.
pub fn orders_to_look_up(recs: &[ShipmentRecord]) -> Vec<&str> {
    let mut seen = std::collections::HashSet::new();
    recs.iter()
        .filter(|r| r.fulfillment_id.is_none())
        .filter_map(|r| r.order_ref.as_deref())
        .filter(|o| seen.insert(*o))
        .collect()
}

/// Shipments grouped by the fulfillment they belong to: the file's fulfillment id wins, else
/// the one `found` for the order reference (what was sent to the warehouse for it, a match
/// remembered from the open list, or the open list now). A shipment with neither is refused.
pub fn route(
    recs: Vec<ShipmentRecord>,
    found: &HashMap<String, String>,
) -> (BTreeMap<String, Vec<ShipmentRecord>>, Vec<Decision>) {
    let mut by_fid: BTreeMap<String, Vec<ShipmentRecord>> = BTreeMap::new();
    let mut refused = Vec::new();
    for r in recs {
        let fid = r.fulfillment_id.clone().or_else(|| r.order_ref.as_ref().and_then(|o| found.get(o).cloned()));
        match fid {
            Some(f) => by_fid.entry(f).or_default().push(r),
            None => {
                let wanted = r.order_ref.clone().unwrap_or_default();
                refused.push(Decision::rejected(
                    r.line,
                    "unknown_fulfillment",
                    format!("{wanted}/{}", r.tracking_number),
                    format!("no open fulfillment found for order {wanted}"),
                ));
            }
        }
    }
    (by_fid, refused)
}

/// Line items cached from the order download stand in for a read only while nothing can have
/// moved them behind the cache's back: the fulfillment is open, and no shipment of this file
/// was recorded before (a shipment from an interrupted run is not in the cached counts).
pub fn cache_usable(recorded_before: bool, state: FulfillmentState) -> bool {
    !recorded_before && state == FulfillmentState::Open
}

/// One shipment's next step.
#[derive(Debug, Clone, PartialEq)]
pub enum ShipmentAction {
    /// Sent and answered before: its outcome is reported again.
    Reuse(Decision),
    /// Stitch already has it: its intent is completed as unchanged, nothing is sent.
    Confirm { key: IntentKey, decision: Decision },
    /// Refused by the rules: nothing is sent.
    Settle(Decision),
    /// To be posted (intent first).
    Post { line: u64, shipment: NewShipment },
}

/// The plan for one fulfillment's shipments in a file.
#[derive(Debug, Clone, PartialEq)]
pub struct FulfillmentPlan {
    pub actions: Vec<ShipmentAction>,
    /// A shipment of this very file was created by an earlier, interrupted pass: the
    /// fulfillment's status is still due even if nothing new is posted.
    pub status_due: bool,
    /// The plan cannot be trusted until Stitch's recorded shipments are read (`snap.shipments`):
    /// a shipment was refused by the rules, or one was sent before without a known answer.
    /// Read them and plan again with `history_read`.
    pub wants_history: bool,
}

/// Plans one fulfillment's shipments, given what the outbox holds for each (`recorded`, by
/// position) and Stitch's snapshot. Recorded shipments are fetched only when the plan needs
/// them, which keeps the common case at one read per fulfillment.
pub fn plan_fulfillment(
    fid: &str,
    file: &str,
    recs: &[&ShipmentRecord],
    recorded: &[Option<Recorded>],
    snap: Option<&FulfillmentSnapshot>,
    history_read: bool,
) -> FulfillmentPlan {
    let mut actions = Vec::with_capacity(recs.len());
    let mut status_due = false;
    let mut todo: Vec<&ShipmentRecord> = Vec::new();
    let mut retried = false;
    for (i, r) in recs.iter().enumerate() {
        let rec = recorded.get(i).and_then(|x| x.as_ref());
        match recorded::shipment(r.line, &key(fid, r), file, rec) {
            Some((Earlier::Reuse(d) | Earlier::Confirm(d), due)) => {
                status_due |= due;
                actions.push(ShipmentAction::Reuse(d));
            }
            None => {
                retried |= rec.is_some();
                todo.push(r);
            }
        }
    }
    let planned = plan(&todo, snap, fid);
    let refused = planned.iter().any(|p| matches!(p, ShipmentPlan::Settled(d) if d.outcome == Outcome::Rejected));
    let wants_history = !history_read && snap.is_some() && (refused || retried);
    actions.extend(todo.iter().zip(planned).map(|(r, p)| match p {
        ShipmentPlan::Settled(d) if d.outcome == Outcome::Unchanged => {
            ShipmentAction::Confirm { key: IntentKey::shipment(fid, &r.tracking_number), decision: d }
        }
        ShipmentPlan::Settled(d) => ShipmentAction::Settle(d),
        ShipmentPlan::Post(n) => ShipmentAction::Post { line: r.line, shipment: n },
    }));
    FulfillmentPlan { actions, status_due, wants_history }
}

/// The record of a posted shipment.
pub fn posted(line: u64, n: &NewShipment, remote_id: &str) -> Decision {
    let key = IntentKey::shipment(&n.fulfillment_id, &n.tracking_number).record_key();
    Decision::new(line, key, Outcome::Created, remote_id, "")
}

/// Adds a posted shipment's quantities to its fulfillment's count of what this run shipped.
pub fn count_shipped(shipped: &mut HashMap<String, HashMap<String, u32>>, n: &NewShipment) {
    let m = shipped.entry(n.fulfillment_id.clone()).or_default();
    for li in &n.line_items {
        *m.entry(li.line_item_id.clone()).or_default() += li.quantity;
    }
}

/// What becomes of a fulfillment's cached line items after shipping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LineCache {
    /// Still open: the cache follows what was shipped.
    Keep(Vec<FulfillmentLineItem>),
    /// Everything shipped: it leaves the cache, and the cancel check (a shipped fulfillment
    /// cannot be cancelled any more).
    Complete,
    /// Stitch refused a shipment of it: the counts are in doubt, the cache goes.
    Forget,
}

/// After shipping: the status that keeps Stitch informed, and the cache's next state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aftermath {
    pub status: FulfillmentStatus,
    pub cache: LineCache,
}

/// `line_items` as read before shipping, `shipped_now` what this run shipped (by line item),
/// `refused` whether Stitch refused one of this file's shipments for it.
pub fn aftermath(line_items: &[FulfillmentLineItem], shipped_now: &HashMap<String, u32>, refused: bool) -> Aftermath {
    let status = status_after(line_items, shipped_now);
    let cache = if refused {
        LineCache::Forget
    } else if status == FulfillmentStatus::Shipped {
        LineCache::Complete
    } else {
        let mut items = line_items.to_vec();
        for li in &mut items {
            li.quantity_shipped += shipped_now.get(&li.id).copied().unwrap_or(0);
        }
        LineCache::Keep(items)
    };
    Aftermath { status, cache }
}

fn display_key(wanted: &str, r: &ShipmentRecord) -> String {
    format!("{wanted}/{}", r.tracking_number)
}

/// The status to set after shipping: Stitch shows it to the merchant [doc].
pub fn status_after(line_items: &[FulfillmentLineItem], shipped_now: &HashMap<String, u32>) -> FulfillmentStatus {
    let all =
        line_items.iter().all(|l| l.quantity_shipped + shipped_now.get(&l.id).copied().unwrap_or(0) >= l.quantity);
    if all {
        FulfillmentStatus::Shipped
    } else {
        FulfillmentStatus::PartiallyShipped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::ShipmentItem;
    use crate::stitch::wire::{ShipTo, ShippingSpeed};

    fn snap(state: FulfillmentState) -> FulfillmentSnapshot {
        FulfillmentSnapshot {
            fulfillment: Fulfillment {
                id: "F1".into(),
                order_number: "PO-1".into(),
                order_id: "7".into(),
                status: String::new(),
                shipping_speed: ShippingSpeed::Standard,
                created_at: chrono::Utc::now(),
                order_date: None,
                ship_to: ShipTo::default(),
                state,
                cancelled_at: None,
            },
            line_items: vec![
                FulfillmentLineItem { id: "L1".into(), sku: "A".into(), name: None, quantity: 3, quantity_shipped: 1 },
                FulfillmentLineItem { id: "L2".into(), sku: "B".into(), name: None, quantity: 1, quantity_shipped: 0 },
            ],
            shipments: vec![],
        }
    }

    fn ship(line: u64, tracking: &str, items: &[(&str, u32)]) -> ShipmentRecord {
        ShipmentRecord {
            line,
            fulfillment_id: Some("F1".into()),
            order_ref: None,
            tracking_number: tracking.into(),
            carrier: "UPS".into(),
            service: None,
            shipped_at: chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").unwrap(),
            cost: None,
            weight: None,
            items: items.iter().map(|(s, q)| ShipmentItem { line, sku: s.to_string(), quantity: *q }).collect(),
        }
    }

    #[test]
    fn remaining_is_shared_across_shipments_in_a_file() {
        let s = snap(FulfillmentState::Open);
        let (a, b) = (ship(2, "T1", &[("A", 2)]), ship(3, "T2", &[("A", 1)]));
        let p = plan(&[&a, &b], Some(&s), "F1");
        assert!(matches!(&p[0], ShipmentPlan::Post(n) if n.line_items[0].quantity == 2));
        match &p[1] {
            ShipmentPlan::Settled(d) => {
                assert!(d.message.contains("over-shipment") && d.message.contains("only 0 remain"), "{}", d.message)
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn rejections_say_why() {
        let s = snap(FulfillmentState::Open);
        let bundle = ship(2, "T1", &[("KIT", 1)]);
        match &plan(&[&bundle], Some(&s), "F1")[0] {
            ShipmentPlan::Settled(d) => assert!(d.message.contains("ship its components")),
            other => panic!("{other:?}"),
        }
        let c = snap(FulfillmentState::Cancelled);
        assert!(
            matches!(&plan(&[&ship(2, "T1", &[("A", 1)])], Some(&c), "F1")[0], ShipmentPlan::Settled(d) if d.message.contains("cancelled"))
        );
        assert!(
            matches!(&plan(&[&ship(2, "T1", &[("A", 1)])], None, "F1")[0], ShipmentPlan::Settled(d) if d.message.contains("unknown fulfillment"))
        );
    }

    #[test]
    fn known_tracking_number_is_unchanged() {
        let mut s = snap(FulfillmentState::Open);
        s.shipments.push(Shipment {
            id: "S1".into(),
            fulfillment_id: "F1".into(),
            shipped_at: chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").unwrap(),
            carrier: "UPS".into(),
            service: None,
            tracking_number: "T1".into(),
            cost: None,
            line_items: vec![],
            created_at: chrono::Utc::now(),
        });
        assert!(
            matches!(&plan(&[&ship(2, "T1", &[("A", 9)])], Some(&s), "F1")[0], ShipmentPlan::Settled(d) if d.outcome == Outcome::Unchanged && d.remote_id == "S1")
        );
    }

    #[test]
    fn status_reflects_completion() {
        let s = snap(FulfillmentState::Open);
        let now: HashMap<String, u32> = [("L1".to_string(), 2)].into();
        assert_eq!(status_after(&s.line_items, &now), FulfillmentStatus::PartiallyShipped);
        let now: HashMap<String, u32> = [("L1".to_string(), 2), ("L2".to_string(), 1)].into();
        assert_eq!(status_after(&s.line_items, &now), FulfillmentStatus::Shipped);
    }
}
