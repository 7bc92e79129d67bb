//! Shipments: map each shipment's SKUs onto its fulfillment's line items, check what remains to
//! ship, skip a tracking number Stitch already has, and reject anything Stitch would refuse,
//! each with a reason a warehouse clerk can act on.

use super::{Decision, Outcome};
use crate::formats::ShipmentRecord;
use crate::model::FulfillmentStatus;
use crate::stitch::wire::{
    Fulfillment, FulfillmentLineItem, FulfillmentState, NewShipment, Shipment, ShipmentLineItem,
};
use std::collections::HashMap;

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
