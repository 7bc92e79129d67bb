//! Keeping Stitch informed: which status a fulfillment gets and when, and what becomes of a
//! fulfillment sent to the warehouse that has left the open list. Status is a free string in
//! Stitch [doc]; the bridge sets three (`FulfillmentStatus`), in order, and an older one never
//! overwrites a newer one.

use crate::model::FulfillmentStatus;
use crate::stitch::wire::{Fulfillment, FulfillmentLineItem, FulfillmentState};
use std::collections::HashSet;

/// "Sent to warehouse" is set with the order file only while nothing of it has shipped: a
/// shipment recorded already (earlier in this cycle, or by hand) set a later status.
///
/// ```
/// use stitch_bridge::reconcile::status::sent_status_due;
/// use stitch_bridge::stitch::wire::FulfillmentLineItem;
///
/// let line = |shipped| FulfillmentLineItem { id: "L1".into(), sku: "A".into(), name: None, quantity: 2, quantity_shipped: shipped };
/// assert!(sent_status_due(&[line(0)]));
/// assert!(!sent_status_due(&[line(1)]));
/// ```
pub fn sent_status_due(items: &[FulfillmentLineItem]) -> bool {
    items.iter().all(|li| li.quantity_shipped == 0)
}

/// A pending status update whose fulfillment already has a later status set (`done`) is not
/// sent: it would move Stitch backwards.
pub fn superseded(pending: FulfillmentStatus, done: &[FulfillmentStatus]) -> bool {
    pending.later().any(|l| done.contains(&l))
}

/// Fulfillments sent to the warehouse and still in flight that are no longer open: each is
/// looked at once more to learn why.
pub fn gone<'a>(in_flight: &'a [String], open: &HashSet<&str>) -> Vec<&'a String> {
    in_flight.iter().filter(|id| !open.contains(id.as_str())).collect()
}

/// What a fulfillment that left the open list means for the warehouse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gone {
    /// Cancelled in Stitch: the warehouse gets a cancel file, once.
    Cancel,
    /// Shipped in full: it leaves the cancel check.
    Complete,
    /// Stitch no longer knows it: recorded, and said in the log.
    Unknown,
    /// Still open after all (the list moved under us): looked at again next time.
    StillOpen,
}

pub fn on_gone(f: Option<&Fulfillment>) -> Gone {
    match f.map(|f| f.state) {
        Some(FulfillmentState::Cancelled) => Gone::Cancel,
        Some(FulfillmentState::Complete) => Gone::Complete,
        Some(FulfillmentState::Open) => Gone::StillOpen,
        None => Gone::Unknown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use FulfillmentStatus::*;

    #[test]
    fn an_older_status_never_overwrites_a_newer() {
        // (pending, done, superseded)
        let cases = [
            (SentToWarehouse, vec![], false),
            (SentToWarehouse, vec![SentToWarehouse], false),
            (SentToWarehouse, vec![PartiallyShipped], true),
            (SentToWarehouse, vec![Shipped], true),
            (PartiallyShipped, vec![SentToWarehouse], false),
            (PartiallyShipped, vec![Shipped], true),
            (Shipped, vec![SentToWarehouse, PartiallyShipped], false),
        ];
        for (pending, done, want) in cases {
            assert_eq!(superseded(pending, &done), want, "{pending:?} after {done:?}");
        }
    }

    #[test]
    fn gone_is_what_left_the_open_list() {
        let in_flight = vec!["F1".to_string(), "F2".to_string(), "F3".to_string()];
        let open: HashSet<&str> = ["F2"].into();
        assert_eq!(gone(&in_flight, &open), vec!["F1", "F3"]);
        assert!(gone(&in_flight, &["F1", "F2", "F3"].into()).is_empty());
    }

    #[test]
    fn on_gone_follows_the_state() {
        let f = |state| Fulfillment {
            id: "F1".into(),
            order_number: "PO-1".into(),
            order_id: "7".into(),
            status: String::new(),
            shipping_speed: crate::stitch::wire::ShippingSpeed::Standard,
            created_at: chrono::Utc::now(),
            order_date: None,
            ship_to: Default::default(),
            state,
            cancelled_at: None,
        };
        assert_eq!(on_gone(Some(&f(FulfillmentState::Cancelled))), Gone::Cancel);
        assert_eq!(on_gone(Some(&f(FulfillmentState::Complete))), Gone::Complete);
        assert_eq!(on_gone(Some(&f(FulfillmentState::Open))), Gone::StillOpen);
        assert_eq!(on_gone(None), Gone::Unknown);
    }
}
