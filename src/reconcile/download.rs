//! Stitch → warehouse: open fulfillments become order files, cancelled ones cancel files.
//! Pure rendering; the engine decides which fulfillments and writes the bytes atomically.

use crate::stitch::wire::{Fulfillment, FulfillmentLineItem};

/// Columns of an outbound order file: the inbound orders kind's names, so a warehouse can
/// round-trip them, plus the ids it must quote back on shipments.
pub const ORDER_COLUMNS: &[&str] = &[
    "order_ref", "order_date", "ship_name", "ship_company", "ship_address1", "ship_address2", "ship_city",
    "ship_state", "ship_zip", "ship_country", "ship_phone", "ship_email", "shipping_speed", "sku", "name",
    "quantity", "fulfillment_id", "line_item_id",
];

pub const CANCEL_COLUMNS: &[&str] = &["fulfillment_id", "order_ref", "cancelled_at"];

/// File names carry only safe characters, whatever an order reference contains.
pub fn safe_name(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' })
        .take(80)
        .collect();
    if cleaned.is_empty() { "_".into() } else { cleaned }
}

pub fn order_file_name(f: &Fulfillment) -> String {
    format!("order_{}_{}.csv", safe_name(&f.order_number), safe_name(&f.id))
}

pub fn cancel_file_name(f: &Fulfillment) -> String {
    format!("cancel_{}_{}.csv", safe_name(&f.order_number), safe_name(&f.id))
}

/// Spreadsheet-safe cell: formula-looking text is neutralised, as in error files.
fn cell(s: &str) -> String {
    if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{s}")
    } else {
        s.to_string()
    }
}

pub fn render_order(f: &Fulfillment, items: &[FulfillmentLineItem]) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(ORDER_COLUMNS);
    let t = &f.ship_to;
    let o = |x: &Option<String>| cell(x.as_deref().unwrap_or(""));
    for li in items {
        let row = [
            cell(&f.order_number),
            f.created_at.to_rfc3339(),
            o(&t.name),
            o(&t.company),
            o(&t.address1),
            o(&t.address2),
            o(&t.city),
            o(&t.state),
            o(&t.zip),
            o(&t.country),
            o(&t.phone),
            o(&t.email),
            f.shipping_speed.as_str().to_string(),
            cell(&li.sku),
            o(&li.name),
            li.quantity.to_string(),
            cell(&f.id),
            cell(&li.id),
        ];
        let _ = w.write_record(&row);
    }
    w.into_inner().unwrap_or_default()
}

pub fn render_cancel(f: &Fulfillment) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(CANCEL_COLUMNS);
    let at = f.cancelled_at.map(|d| d.to_rfc3339()).unwrap_or_default();
    let _ = w.write_record([cell(&f.id), cell(&f.order_number), at]);
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stitch::wire::{FulfillmentState, ShipTo, ShippingSpeed};

    #[test]
    fn order_file_round_trips_through_the_orders_header_and_is_safe() {
        let f = Fulfillment {
            id: "F9".into(),
            order_number: "=HYPERLINK(1)".into(),
            order_id: "1".into(),
            status: String::new(),
            shipping_speed: ShippingSpeed::Expedited,
            created_at: chrono::Utc::now(),
            ship_to: ShipTo { name: Some("Ann".into()), country: Some("US".into()), ..Default::default() },
            state: FulfillmentState::Open,
            cancelled_at: None,
        };
        let items = vec![FulfillmentLineItem { id: "L1".into(), sku: "A".into(), name: None, quantity: 2, quantity_shipped: 0 }];
        let text = String::from_utf8(render_order(&f, &items)).unwrap();
        let mut r = csv::Reader::from_reader(text.as_bytes());
        let rows: Vec<csv::StringRecord> = r.records().map(|x| x.unwrap()).collect();
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][0], "'=HYPERLINK(1)");
        assert_eq!(&rows[0][12], "Expedited");
        assert_eq!(order_file_name(&f), "order__HYPERLINK_1__F9.csv");
    }
}
