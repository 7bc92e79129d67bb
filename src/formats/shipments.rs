//! Shipments: contiguous rows sharing (fulfillment_id, order_ref, tracking_number) form one
//! shipment, accepted or rejected as a whole.

use chrono::{DateTime, FixedOffset};
use rust_decimal::Decimal;

use super::cells::Cells;
use super::error::{ErrorCode, RecordError};
use super::fields::{self, shown};
use super::group::Group;
use super::header::{shp, HeaderMap, SHIPMENT_COLUMNS};
use super::orders::{problem_errors, reject_group};
use super::reader::Row;
use super::{Ctx, Record, ShipmentItem, ShipmentRecord, Unit};

/// Group key; `None` when the row names neither a fulfillment nor an order, or has no tracking
/// number (such a row cannot join a shipment and is judged alone).
pub(crate) fn key(row: &Row, map: &HeaderMap, out: &mut String) -> bool {
    out.clear();
    let f = row.get(map, shp::FULFILLMENT_ID);
    let o = row.get(map, shp::ORDER_REF);
    let Some(t) = row.get(map, shp::TRACKING_NUMBER) else {
        return false;
    };
    if f.is_none() && o.is_none() {
        return false;
    }
    for (i, part) in [f.unwrap_or(""), o.unwrap_or(""), t].into_iter().enumerate() {
        if i > 0 {
            out.push('\u{1f}');
        }
        out.push_str(part);
    }
    true
}

/// What a readable key shows in messages: "order PO-1 / tracking 1Z…".
fn describe(row: &Row, map: &HeaderMap) -> String {
    let id = match (row.get(map, shp::FULFILLMENT_ID), row.get(map, shp::ORDER_REF)) {
        (Some(f), _) => format!("fulfillment {f}"),
        (None, Some(o)) => format!("order {o}"),
        _ => String::new(),
    };
    format!("{id} / tracking {}", row.get(map, shp::TRACKING_NUMBER).unwrap_or(""))
}

struct Parsed {
    shipped_at: DateTime<FixedOffset>,
    carrier: String,
    tracking: String,
    cost: Option<Decimal>,
    weight: Option<Decimal>,
    item: ShipmentItem,
}

fn parse_row(row: &Row, map: &HeaderMap, ctx: &Ctx) -> (Option<Parsed>, Vec<RecordError>) {
    let mut c = Cells::new(row, map);
    if c.opt(shp::FULFILLMENT_ID).is_none() && c.opt(shp::ORDER_REF).is_none() {
        let col = if map.index[shp::FULFILLMENT_ID].is_some() { shp::FULFILLMENT_ID } else { shp::ORDER_REF };
        c.push(col, ErrorCode::MissingValue, "either fulfillment_id or order_ref is required".to_string());
    }
    let sku = c.req(shp::SKU);
    let quantity = c.parse_req(shp::QUANTITY, fields::positive_quantity);
    let shipped_at = c.parse_req(shp::SHIPPED_AT, |n, v| fields::date(n, v, ctx.date_format.as_deref(), ctx.timezone));
    let carrier = c.req(shp::CARRIER);
    let tracking = c.req(shp::TRACKING_NUMBER);
    let cost = c.parse_opt(shp::COST, fields::amount);
    let weight = c.parse_opt(shp::WEIGHT, fields::amount);
    let parsed = match (sku, quantity, shipped_at, carrier, tracking, cost, weight) {
        (Some(sku), Some(quantity), Some(shipped_at), Some(carrier), Some(tracking), Ok(cost), Ok(weight)) => {
            Some(Parsed {
                shipped_at,
                carrier: carrier.to_string(),
                tracking: tracking.to_string(),
                cost,
                weight,
                item: ShipmentItem { line: row.line(), sku: sku.to_string(), quantity },
            })
        }
        _ => None,
    };
    (parsed, c.errors)
}

pub(crate) fn unit(group: Group, map: &HeaderMap, ctx: &Ctx) -> Unit {
    let result = evaluate(&group, map, ctx).map(Record::Shipment);
    Unit { rows: group.rows.into_iter().map(|r| r.raw).collect(), result }
}

/// Checks one shipment and builds its record; `Err` lists every problem of its rows.
pub(crate) fn evaluate(group: &Group, map: &HeaderMap, ctx: &Ctx) -> Result<ShipmentRecord, Vec<RecordError>> {
    let Group { key, rows, problem } = group;
    if let (Some(p), Some(_), Some(first)) = (*problem, key, rows.first()) {
        let what = describe(first, map);
        return Err(problem_errors(rows, p, &what, "shipment", "tracking_number", ctx.max_rows_per_group));
    }
    let mut per_row = Vec::with_capacity(rows.len());
    let mut parsed = Vec::with_capacity(rows.len());
    for row in rows {
        if row.errors.is_empty() {
            let (p, e) = parse_row(row, map, ctx);
            parsed.push(p);
            per_row.push(e);
        } else {
            parsed.push(None);
            per_row.push(row.errors.clone());
        }
    }
    if let Some(first) = rows.iter().position(|r| r.errors.is_empty()) {
        for (i, row) in rows.iter().enumerate().skip(first + 1) {
            if !row.errors.is_empty() {
                continue;
            }
            for col in shp::HEADER_FIELDS {
                let (mine, theirs) = (row.get(map, col).unwrap_or(""), rows[first].get(map, col).unwrap_or(""));
                if mine != theirs {
                    let name = SHIPMENT_COLUMNS[col].name;
                    per_row[i].push(RecordError::new(
                        row.line(),
                        name,
                        ErrorCode::InconsistentShipmentHeader,
                        format!(
                            "{name} is '{}' here but '{}' on line {} of the same shipment; shipment details must be the same on every row",
                            shown(mine),
                            shown(theirs),
                            rows[first].line()
                        ),
                    ));
                }
            }
        }
    }
    if per_row.iter().any(|e: &Vec<RecordError>| !e.is_empty()) {
        return Err(reject_group(rows, per_row, "shipment", "tracking_number"));
    }
    let first_row = rows.first();
    let line = first_row.map(Row::line).unwrap_or(1);
    let fulfillment_id = first_row.and_then(|r| r.get(map, shp::FULFILLMENT_ID)).map(str::to_string);
    let order_ref = first_row.and_then(|r| r.get(map, shp::ORDER_REF)).map(str::to_string);
    let service = first_row.and_then(|r| r.get(map, shp::SERVICE)).map(str::to_string);
    let mut parsed = parsed.into_iter().flatten();
    let Some(head) = parsed.next() else {
        // Unreachable in practice (an error-free row always parses), but never panic on input.
        let e = RecordError::new(line, "", ErrorCode::MissingValue, "the shipment has no readable rows");
        return Err(vec![e]);
    };
    let mut items = vec![head.item];
    items.extend(parsed.map(|p| p.item));
    let record = ShipmentRecord {
        line,
        fulfillment_id,
        order_ref,
        tracking_number: head.tracking,
        carrier: head.carrier,
        service,
        shipped_at: head.shipped_at,
        cost: head.cost,
        weight: head.weight,
        items,
    };
    Ok(record)
}
