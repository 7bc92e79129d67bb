//! Stitch → warehouse: open fulfillments become order files, cancelled ones cancel files.
//! Pure rendering; the engine decides which fulfillments and writes the bytes atomically.

use crate::stitch::wire::{Fulfillment, FulfillmentLineItem};

/// Columns of an outbound order file: the inbound orders kind's names, so a warehouse can
/// round-trip them, plus the ids it must quote back on shipments.
pub const ORDER_COLUMNS: &[&str] = &[
    "order_ref",
    "order_date",
    "ship_name",
    "ship_company",
    "ship_address1",
    "ship_address2",
    "ship_city",
    "ship_state",
    "ship_zip",
    "ship_country",
    "ship_phone",
    "ship_email",
    "shipping_speed",
    "sku",
    "name",
    "quantity",
    "fulfillment_id",
    "line_item_id",
];

pub const CANCEL_COLUMNS: &[&str] = &["fulfillment_id", "order_ref", "cancelled_at"];

/// File names carry only safe characters, whatever an order reference contains.
pub fn safe_name(s: &str) -> String {
    let cleaned: String =
        s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '-' || c == '_' { c } else { '_' }).take(80).collect();
    if cleaned.is_empty() {
        "_".into()
    } else {
        cleaned
    }
}

pub fn order_file_name(f: &Fulfillment) -> String {
    format!("order_{}_{}.csv", safe_name(&f.order_number), safe_name(&f.id))
}

pub fn cancel_file_name(f: &Fulfillment) -> String {
    format!("cancel_{}_{}.csv", safe_name(&f.order_number), safe_name(&f.id))
}

/// The order date a warehouse sees: the sales order's own date, to the second, in the partner's
/// `date_format` when it has one (else RFC 3339 with the order's offset). A fulfillment without
/// a readable order date falls back to its release time, so the column is never empty.
pub fn order_date(f: &Fulfillment, date_format: Option<&str>) -> String {
    use chrono::{DateTime, FixedOffset, SecondsFormat};
    let when: DateTime<FixedOffset> = f
        .order_date
        .as_deref()
        .and_then(|d| DateTime::parse_from_rfc3339(d.trim()).ok())
        .unwrap_or_else(|| f.created_at.fixed_offset());
    match date_format {
        Some(fmt) => when.format(fmt).to_string(),
        None => when.to_rfc3339_opts(SecondsFormat::Secs, true),
    }
}

/// Order and cancel files are read by the warehouse's system, not by a spreadsheet: every value
/// goes out exactly as Stitch holds it (a phone `+1 503…` or an order ref `-12` must come back
/// unchanged). Quoting is the CSV writer's; formula protection belongs to files for people.
///
/// ```
/// use stitch_bridge::reconcile::download::{order_file_name, render_order};
/// use stitch_bridge::stitch::wire::{Fulfillment, FulfillmentLineItem, FulfillmentState, ShipTo, ShippingSpeed};
///
/// let f = Fulfillment {
///     id: "F9".into(),
///     order_number: "PO/7".into(),
///     order_id: "1".into(),
///     status: String::new(),
///     shipping_speed: ShippingSpeed::Standard,
///     created_at: "2026-03-04T05:06:07Z".parse()?,
///     order_date: Some("2026-03-01T09:30:00-08:00".into()),
///     ship_to: ShipTo { name: Some("Ann".into()), phone: Some("+1 503 555 0100".into()), ..Default::default() },
///     state: FulfillmentState::Open,
///     cancelled_at: None,
/// };
/// let item = FulfillmentLineItem { id: "L1".into(), sku: "RED".into(), name: None, quantity: 2, quantity_shipped: 0 };
/// let text = String::from_utf8(render_order(&f, &[item], Some("%d.%m.%Y")))?;
/// let mut lines = text.lines();
/// assert!(lines.next().is_some_and(|h| h.starts_with("order_ref,order_date,ship_name,")));
/// assert_eq!(lines.next(), Some("PO/7,01.03.2026,Ann,,,,,,,,+1 503 555 0100,,Standard,RED,,2,F9,L1"));
/// assert_eq!(lines.next(), None);
/// assert_eq!(order_file_name(&f), "order_PO_7_F9.csv");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn render_order(f: &Fulfillment, items: &[FulfillmentLineItem], date_format: Option<&str>) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(ORDER_COLUMNS);
    let t = &f.ship_to;
    let o = |x: &Option<String>| x.clone().unwrap_or_default();
    let date = order_date(f, date_format);
    for li in items {
        let row = [
            f.order_number.clone(),
            date.clone(),
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
            li.sku.clone(),
            o(&li.name),
            li.quantity.to_string(),
            f.id.clone(),
            li.id.clone(),
        ];
        let _ = w.write_record(&row);
    }
    w.into_inner().unwrap_or_default()
}

/// A cancel file: one row naming the fulfillment the warehouse must not ship.
///
/// ```
/// use stitch_bridge::reconcile::download::{cancel_file_name, render_cancel};
/// use stitch_bridge::stitch::wire::{Fulfillment, FulfillmentState, ShipTo, ShippingSpeed};
///
/// let at = "2026-03-04T05:06:07Z".parse()?;
/// let f = Fulfillment {
///     id: "F9".into(),
///     order_number: "PO-7".into(),
///     order_id: "1".into(),
///     status: String::new(),
///     shipping_speed: ShippingSpeed::Standard,
///     created_at: at,
///     order_date: None,
///     ship_to: ShipTo::default(),
///     state: FulfillmentState::Cancelled,
///     cancelled_at: Some(at),
/// };
/// let text = String::from_utf8(render_cancel(&f))?;
/// assert_eq!(text, "fulfillment_id,order_ref,cancelled_at\nF9,PO-7,2026-03-04T05:06:07Z\n");
/// assert_eq!(cancel_file_name(&f), "cancel_PO-7_F9.csv");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn render_cancel(f: &Fulfillment) -> Vec<u8> {
    let mut w = csv::Writer::from_writer(Vec::new());
    let _ = w.write_record(CANCEL_COLUMNS);
    let at = f.cancelled_at.map(|d| d.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)).unwrap_or_default();
    let _ = w.write_record([f.id.clone(), f.order_number.clone(), at]);
    w.into_inner().unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stitch::wire::{FulfillmentState, ShipTo, ShippingSpeed};

    fn fulfillment(order_number: &str, order_date: Option<&str>) -> Fulfillment {
        Fulfillment {
            id: "F9".into(),
            order_number: order_number.into(),
            order_id: "1".into(),
            status: String::new(),
            shipping_speed: ShippingSpeed::Expedited,
            created_at: "2026-03-04T05:06:07.123456789Z".parse().unwrap(),
            order_date: order_date.map(String::from),
            ship_to: ShipTo {
                name: Some("Ann".into()),
                country: Some("US".into()),
                phone: Some("+1 503 555 0100".into()),
                ..Default::default()
            },
            state: FulfillmentState::Open,
            cancelled_at: None,
        }
    }

    fn rows(bytes: Vec<u8>) -> Vec<csv::StringRecord> {
        csv::Reader::from_reader(bytes.as_slice()).records().map(|x| x.unwrap()).collect()
    }

    #[test]
    fn order_files_carry_values_exactly_and_names_stay_safe() {
        let f = fulfillment("-12", None);
        let items = vec![FulfillmentLineItem {
            id: "L1".into(),
            sku: "=A".into(),
            name: None,
            quantity: 2,
            quantity_shipped: 0,
        }];
        let rows = rows(render_order(&f, &items, None));
        assert_eq!(rows.len(), 1);
        assert_eq!(&rows[0][0], "-12");
        assert_eq!(&rows[0][10], "+1 503 555 0100");
        assert_eq!(&rows[0][12], "Expedited");
        assert_eq!(&rows[0][13], "=A");
        assert_eq!(order_file_name(&fulfillment("=HYPERLINK(1)", None)), "order__HYPERLINK_1__F9.csv");
        let cancel = rows_of_cancel(&Fulfillment { cancelled_at: Some(f.created_at), ..f });
        assert_eq!((&cancel[0][1], &cancel[0][2]), ("-12", "2026-03-04T05:06:07Z"));
    }

    fn rows_of_cancel(f: &Fulfillment) -> Vec<csv::StringRecord> {
        rows(render_cancel(f))
    }

    #[test]
    fn order_date_is_the_orders_own_to_the_second() {
        for (given, format, want) in [
            (Some("2026-02-01T09:30:15.5-08:00"), None, "2026-02-01T09:30:15-08:00"),
            (Some("2026-02-01T09:30:15Z"), Some("%m/%d/%Y"), "02/01/2026"),
            // No (or no readable) order date: the release time, still to the second.
            (None, None, "2026-03-04T05:06:07Z"),
            (Some("yesterday"), None, "2026-03-04T05:06:07Z"),
        ] {
            assert_eq!(order_date(&fulfillment("O1", given), format), want, "{given:?} {format:?}");
        }
    }
}
