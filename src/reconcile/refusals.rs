//! What a refusal from Stitch means for the records it concerns, in the warehouse's terms (its
//! order references and tracking numbers, never Stitch's internal ids), with a stable code for
//! the error file.

use super::{Decision, Outcome};
use crate::formats::OrderRecord;
use crate::stitch::wire::{self, codes, NewShipment};

/// Stitch's codes are kept when they are ones we know (the error file's codes are a closed,
/// documented set); anything else is `stitch_rejected`.
pub fn stitch_code(code: &str) -> &'static str {
    use codes::*;
    for known in [
        ORDER_LOCKED,
        ALREADY_SHIPPED,
        FULFILLMENT_NOT_OPEN,
        UNKNOWN_FULFILLMENT,
        UNKNOWN_LINE_ITEM,
        OVER_SHIPMENT,
        DUPLICATE_SHIPMENT,
        INVALID,
        TOO_MANY_PRODUCTS,
        NOT_FOUND,
        BAD_REQUEST,
    ] {
        if known == code {
            return known;
        }
    }
    "stitch_rejected"
}

/// A refused product batch: Stitch validates a batch whole, so every SKU in it is refused.
pub fn product_batch(line: u64, sku: &str, status: u16, code: &str, message: &str) -> Decision {
    Decision::rejected(line, "stitch_rejected", sku, format!("Stitch refused this batch ({status} {code}): {message}"))
}

/// A refused order write.
pub fn order(rec: &OrderRecord, status: u16, code: &str, message: &str) -> Decision {
    let msg = match code {
        codes::ALREADY_SHIPPED => format!("order {} has shipped items; it cannot be cancelled", rec.order_ref),
        codes::ORDER_LOCKED => {
            format!("the warehouse has already acknowledged order {}; changes not applied ({message})", rec.order_ref)
        }
        _ => format!("Stitch refused the order ({status}): {message}"),
    };
    Decision::rejected(rec.line, stitch_code(code), &rec.order_ref, msg)
}

/// A refused shipment (sent alone, so the refusal is its own). A tracking number Stitch already
/// holds is not an error: the shipment is there (`Unchanged`).
pub fn shipment(line: u64, n: &NewShipment, status: u16, code: &str, message: &str) -> Decision {
    let key = crate::model::IntentKey::shipment(&n.fulfillment_id, &n.tracking_number).record_key();
    if code == wire::codes::DUPLICATE_SHIPMENT {
        return Decision::new(
            line,
            key,
            Outcome::Unchanged,
            "",
            "tracking number already recorded on this fulfillment",
        );
    }
    Decision::rejected(line, stitch_code(code), key, format!("Stitch refused the shipment ({status}): {message}"))
}

/// A refused status update: recorded, never retried blindly.
pub fn status_message(status: u16, message: &str) -> String {
    format!("status update refused ({status}): {message}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_shipment() -> NewShipment {
        NewShipment {
            fulfillment_id: "F1".into(),
            shipped_at: chrono::DateTime::parse_from_rfc3339("2026-11-20T10:00:00Z").unwrap(),
            carrier: "UPS".into(),
            service: None,
            tracking_number: "T1".into(),
            cost: None,
            line_items: vec![],
        }
    }

    #[test]
    fn codes_are_a_closed_set() {
        for (given, kept) in [
            (codes::ORDER_LOCKED, codes::ORDER_LOCKED),
            (codes::OVER_SHIPMENT, codes::OVER_SHIPMENT),
            ("", "stitch_rejected"),
            ("something_new", "stitch_rejected"),
        ] {
            assert_eq!(stitch_code(given), kept, "{given:?}");
        }
    }

    #[test]
    fn shipment_table() {
        let n = new_shipment();
        // (code, outcome, error code, message contains)
        let cases = [
            (codes::DUPLICATE_SHIPMENT, Outcome::Unchanged, "", "already recorded"),
            (codes::OVER_SHIPMENT, Outcome::Rejected, codes::OVER_SHIPMENT, "(422): too many"),
            ("weird", Outcome::Rejected, "stitch_rejected", "refused the shipment"),
        ];
        for (code, outcome, err, text) in cases {
            let d = shipment(9, &n, 422, code, "too many");
            assert_eq!((d.line, d.key.as_str(), d.outcome, d.code), (9, "F1/T1", outcome, err), "{code}");
            assert!(d.message.contains(text), "{code}: {}", d.message);
        }
    }

    #[test]
    fn order_refusals_speak_of_the_order_reference() {
        let rec = OrderRecord {
            line: 3,
            order_ref: "PO-9".into(),
            action: crate::formats::OrderAction::Cancel,
            order_date: None,
            ship_to: None,
            shipping_speed: crate::model::ShippingSpeed::Standard,
            currency: None,
            items: vec![],
        };
        let cases = [
            (codes::ALREADY_SHIPPED, "order PO-9 has shipped items"),
            (codes::ORDER_LOCKED, "already acknowledged order PO-9; changes not applied (no)"),
            ("", "Stitch refused the order (409): no"),
        ];
        for (code, text) in cases {
            let d = order(&rec, 409, code, "no");
            assert_eq!((d.outcome, d.key.as_str(), d.code), (Outcome::Rejected, "PO-9", stitch_code(code)));
            assert!(d.message.contains(text), "{code}: {}", d.message);
        }
    }
}
