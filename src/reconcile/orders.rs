//! Orders: look each `order_ref` up by `po_num`; create what is absent, update what differs and
//! is still editable, void on `action=cancel`. An order the warehouse has acknowledged is
//! locked: changes are refused with that reason, but a cancel still goes through (the
//! warehouse then receives a cancel file).

use super::{Decision, Outcome};
use crate::formats::{OrderAction, OrderRecord};
use crate::stitch::wire::OrderView;
use crate::stitch::wire::{Address, NewSalesOrderLineItem, SalesOrderWrite};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderPlan {
    Create(SalesOrderWrite),
    Update { id: String, write: SalesOrderWrite },
    Void { id: String },
    Settled(Decision),
}

/// What to do with one order, given what Stitch holds under its reference (`None`: nothing).
///
/// ```
/// use stitch_bridge::formats::{OrderAction, OrderItem, OrderRecord, ShippingSpeed};
/// use stitch_bridge::reconcile::orders::{plan, OrderPlan};
/// use stitch_bridge::reconcile::Outcome;
///
/// let order = |action| OrderRecord {
///     line: 2,
///     order_ref: "PO-7".into(),
///     action,
///     order_date: None,
///     ship_to: None,
///     shipping_speed: ShippingSpeed::Expedited,
///     currency: Some("USD".into()),
///     items: vec![OrderItem { line: 2, sku: "RED".into(), quantity: 3, price: None }],
/// };
/// let OrderPlan::Create(write) = plan(&order(OrderAction::Create), None) else { panic!("not a create") };
/// assert_eq!((write.po_num.as_deref(), write.shipping_speed.as_deref()), (Some("PO-7"), Some("Expedited")));
/// let items: Vec<_> = write.line_items.unwrap_or_default().into_iter().map(|i| (i.sku, i.quantity)).collect();
/// assert_eq!(items, [("RED".to_string(), "3".to_string())]);
///
/// // Cancelling an order Stitch never had is refused with a reason, and sends nothing.
/// let OrderPlan::Settled(d) = plan(&order(OrderAction::Cancel), None) else { panic!("a request for nothing") };
/// assert_eq!((d.line, d.outcome, d.code), (2, Outcome::Rejected, "unknown_order"));
/// ```
pub fn plan(rec: &OrderRecord, remote: Option<&OrderView>) -> OrderPlan {
    let key = rec.order_ref.as_str();
    match (rec.action, remote) {
        (OrderAction::Cancel, None) => OrderPlan::Settled(Decision::rejected(
            rec.line,
            "unknown_order",
            key,
            format!("cannot cancel order {key}: Stitch has no order with this reference"),
        )),
        (OrderAction::Cancel, Some(v)) if v.order.void == "1" => {
            OrderPlan::Settled(Decision::new(rec.line, key, Outcome::Unchanged, &v.order.id, "already cancelled"))
        }
        (OrderAction::Cancel, Some(v)) => OrderPlan::Void { id: v.order.id.clone() },
        (OrderAction::Create, None) => OrderPlan::Create(desired(rec)),
        (OrderAction::Create, Some(v)) if v.order.void == "1" => OrderPlan::Settled(Decision::rejected(
            rec.line,
            "order_cancelled",
            key,
            format!("order {key} was cancelled in Stitch; send it under a new order reference"),
        )),
        (OrderAction::Create, Some(v)) => {
            if same(rec, v) {
                OrderPlan::Settled(Decision::new(rec.line, key, Outcome::Unchanged, &v.order.id, ""))
            } else if v.order.locked == "1" {
                OrderPlan::Settled(Decision::rejected(
                    rec.line,
                    "order_locked",
                    key,
                    format!("order {key} differs from Stitch but the warehouse has already acknowledged it (locked); changes not applied"),
                ))
            } else {
                let mut write = desired(rec);
                write.id = Some(v.order.id.clone());
                OrderPlan::Update { id: v.order.id.clone(), write }
            }
        }
    }
}

/// The sales order as Stitch should hold it; all scalars strings, as the Standard API wants.
pub fn desired(rec: &OrderRecord) -> SalesOrderWrite {
    let total: rust_decimal::Decimal =
        rec.items.iter().filter_map(|i| i.price.map(|p| p * rust_decimal::Decimal::from(i.quantity))).sum();
    let has_prices = rec.items.iter().any(|i| i.price.is_some());
    SalesOrderWrite {
        local_id: Some(rec.order_ref.clone()),
        po_num: Some(rec.order_ref.clone()),
        order_date: rec.order_date.map(|d| d.to_rfc3339()),
        total: has_prices.then(|| total.normalize().to_string()),
        currency_iso: rec.currency.clone(),
        shipping_speed: Some(rec.shipping_speed.as_str().to_string()),
        line_items: Some(
            rec.items
                .iter()
                .map(|i| NewSalesOrderLineItem {
                    sku: i.sku.clone(),
                    quantity: i.quantity.to_string(),
                    price: i.price.map(|p| p.normalize().to_string()),
                })
                .collect(),
        ),
        shipping_address: rec.ship_to.as_ref().map(|a| Address {
            street1: Some(a.address1.clone()),
            street2: a.address2.clone(),
            city: Some(a.city.clone()),
            state: a.state.clone(),
            zip: a.zip.clone(),
            country_iso: Some(a.country.clone()),
            company: a.company.clone(),
            contact: Some(a.name.clone()),
            phone: a.phone.clone(),
            email: a.email.clone(),
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn dec_eq(a: &str, b: Option<&str>) -> bool {
    match (a.parse::<rust_decimal::Decimal>(), b.map(str::parse::<rust_decimal::Decimal>)) {
        (Ok(x), Some(Ok(y))) => x == y,
        (_, None) => a.is_empty(),
        _ => a == b.unwrap_or(""),
    }
}

/// Does Stitch already hold exactly what the file says? Compares the fields we write.
pub fn same(rec: &OrderRecord, v: &OrderView) -> bool {
    let want = desired(rec);
    let mut have_lines: Vec<(String, String, String)> =
        v.lines.iter().map(|l| (l.sku.clone(), l.quantity.clone(), l.price.clone())).collect();
    let mut want_lines: Vec<(String, String, Option<String>)> =
        want.line_items.unwrap_or_default().into_iter().map(|l| (l.sku, l.quantity, l.price)).collect();
    have_lines.sort();
    want_lines.sort();
    let lines_same = have_lines.len() == want_lines.len()
        && have_lines.iter().zip(&want_lines).all(|(h, w)| h.0 == w.0 && h.1 == w.1 && dec_eq(&h.2, w.2.as_deref()));
    let addr_same = match (&want.shipping_address, &v.shipping) {
        (Some(w), Some(h)) => {
            let norm = |a: &Address| {
                (
                    a.street1.clone().unwrap_or_default(),
                    a.street2.clone().unwrap_or_default(),
                    a.city.clone().unwrap_or_default(),
                    a.state.clone().unwrap_or_default(),
                    a.zip.clone().unwrap_or_default(),
                    a.country_iso.clone().unwrap_or_default(),
                    a.company.clone().unwrap_or_default(),
                    a.contact.clone().unwrap_or_default(),
                    a.phone.clone().unwrap_or_default(),
                    a.email.clone().unwrap_or_default(),
                )
            };
            norm(w) == norm(h)
        }
        (None, None) => true,
        _ => false,
    };
    let speed_same = v.order.shipping_speed.is_empty() || Some(&v.order.shipping_speed) == want.shipping_speed.as_ref();
    let currency_same = want.currency_iso.as_deref().is_none_or(|c| c == v.order.currency_iso);
    lines_same && addr_same && speed_same && currency_same
}

/// Did an uncertain write land? For create/update: Stitch now holds what we wanted. For void:
/// the order is void.
pub fn landed(rec: &OrderRecord, v: &OrderView) -> bool {
    match rec.action {
        OrderAction::Cancel => v.order.void == "1",
        OrderAction::Create => same(rec, v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::{OrderItem, ShippingSpeed};
    use crate::stitch::wire::{SalesOrder, SalesOrderLineItem};

    fn rec(action: OrderAction, qty: u32) -> OrderRecord {
        OrderRecord {
            line: 2,
            order_ref: "PO-1".into(),
            action,
            order_date: None,
            ship_to: Some(crate::formats::Address {
                name: "Ann".into(),
                company: None,
                address1: "1 Main St".into(),
                address2: None,
                city: "Springfield".into(),
                state: Some("IL".into()),
                zip: Some("62701".into()),
                country: "US".into(),
                phone: None,
                email: None,
            }),
            shipping_speed: ShippingSpeed::Standard,
            currency: Some("USD".into()),
            items: vec![OrderItem { line: 2, sku: "A".into(), quantity: qty, price: Some("9.50".parse().unwrap()) }],
        }
    }

    fn view_of(r: &OrderRecord, locked: bool, void: bool) -> OrderView {
        let w = desired(r);
        OrderView {
            order: SalesOrder {
                id: "77".into(),
                local_id: "PO-1".into(),
                po_num: "PO-1".into(),
                order_date: String::new(),
                notes: String::new(),
                total: String::new(),
                currency_iso: "USD".into(),
                void: if void { "1" } else { "0" }.into(),
                archived: "0".into(),
                locked: if locked { "1" } else { "0" }.into(),
                shipping_speed: "Standard".into(),
                links: Default::default(),
            },
            lines: w
                .line_items
                .unwrap()
                .into_iter()
                .map(|l| SalesOrderLineItem {
                    id: "1".into(),
                    sku: l.sku,
                    quantity: l.quantity,
                    price: "9.5000".into(),
                })
                .collect(),
            shipping: w.shipping_address,
        }
    }

    #[test]
    fn each_outcome() {
        let r = rec(OrderAction::Create, 2);
        assert!(matches!(plan(&r, None), OrderPlan::Create(_)));
        let same_v = view_of(&r, false, false);
        assert!(matches!(plan(&r, Some(&same_v)), OrderPlan::Settled(Decision { outcome: Outcome::Unchanged, .. })));
        let changed = rec(OrderAction::Create, 3);
        assert!(matches!(plan(&changed, Some(&same_v)), OrderPlan::Update { .. }));
        let locked = view_of(&r, true, false);
        match plan(&changed, Some(&locked)) {
            OrderPlan::Settled(d) => assert!(d.outcome == Outcome::Rejected && d.message.contains("acknowledged")),
            other => panic!("{other:?}"),
        }
        let cancel = rec(OrderAction::Cancel, 2);
        assert!(matches!(plan(&cancel, Some(&locked)), OrderPlan::Void { .. }), "cancel goes through a lock");
        assert!(matches!(plan(&cancel, None), OrderPlan::Settled(Decision { outcome: Outcome::Rejected, .. })));
        let voided = view_of(&r, false, true);
        assert!(matches!(
            plan(&cancel, Some(&voided)),
            OrderPlan::Settled(Decision { outcome: Outcome::Unchanged, .. })
        ));
    }
}
