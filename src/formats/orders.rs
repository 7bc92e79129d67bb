//! Orders: contiguous rows sharing `order_ref` form one order, accepted or rejected as a whole.
//!
//! A `cancel` row needs only `order_ref`; its other cells are ignored (not validated), because a
//! cancellation refers to an order already sent and the warehouse may echo stale data in them.

use chrono::{DateTime, FixedOffset};

use super::cells::Cells;
use super::error::{ErrorCode, RecordError};
use super::fields::{self, shown};
use super::group::{Group, GroupProblem};
use super::header::{ord, HeaderMap};
use super::reader::Row;
use super::{Address, Ctx, OrderAction, OrderItem, OrderRecord, Record, ShippingSpeed, Unit};

pub(crate) fn key(row: &Row, map: &HeaderMap, out: &mut String) -> bool {
    out.clear();
    match row.get(map, ord::ORDER_REF) {
        Some(v) => {
            out.push_str(v);
            true
        }
        None => false,
    }
}

struct Parsed {
    action: OrderAction,
    order_date: Option<DateTime<FixedOffset>>,
    /// Built only when records are wanted (not when only checking).
    ship_to: Option<Address>,
    speed: ShippingSpeed,
    currency: Option<&'static str>,
    item: Option<OrderItem>,
}

fn parse_action(c: &mut Cells) -> Option<OrderAction> {
    match c.opt(ord::ACTION) {
        None => Some(OrderAction::Create),
        Some(v) if v.eq_ignore_ascii_case("create") => Some(OrderAction::Create),
        Some(v) if v.eq_ignore_ascii_case("cancel") => Some(OrderAction::Cancel),
        Some(v) => {
            c.push(
                ord::ACTION,
                ErrorCode::BadChoice,
                format!("action must be 'create' or 'cancel', got '{}'", shown(v)),
            );
            None
        }
    }
}

fn parse_speed(_: &str, v: &str) -> Result<ShippingSpeed, fields::FieldError> {
    [ShippingSpeed::Standard, ShippingSpeed::Expedited, ShippingSpeed::Priority]
        .into_iter()
        .find(|s| s.as_str().eq_ignore_ascii_case(v))
        .ok_or_else(|| {
            (
                ErrorCode::BadChoice,
                format!("shipping_speed must be Standard, Expedited or Priority, got '{}'", shown(v)),
            )
        })
}

fn parse_row(row: &Row, map: &HeaderMap, ctx: &Ctx, build: bool) -> (Option<Parsed>, Vec<RecordError>) {
    let mut c = Cells::new(row, map);
    let _ = c.req(ord::ORDER_REF);
    let Some(action) = parse_action(&mut c) else {
        return (None, c.errors);
    };
    if action == OrderAction::Cancel {
        let p = Parsed {
            action,
            order_date: None,
            ship_to: None,
            speed: ShippingSpeed::Standard,
            currency: None,
            item: None,
        };
        return (Some(p), c.errors);
    }
    let order_date = c.parse_req(ord::ORDER_DATE, |n, v| fields::date(n, v, ctx.date_format.as_deref(), ctx.timezone));
    let name = c.req(ord::SHIP_NAME);
    let address1 = c.req(ord::SHIP_ADDRESS1);
    let city = c.req(ord::SHIP_CITY);
    let country = c.parse_req(ord::SHIP_COUNTRY, fields::country);
    let speed = c.parse_opt(ord::SHIPPING_SPEED, parse_speed);
    let currency = c.parse_opt(ord::CURRENCY, fields::currency);
    let sku = c.req(ord::SKU);
    let quantity = c.parse_req(ord::QUANTITY, fields::positive_quantity);
    let price = c.parse_opt(ord::PRICE, fields::amount);
    let opt = |col| c.opt(col).map(str::to_string);
    let ship_to = match (name, address1, city, country) {
        (Some(name), Some(address1), Some(city), Some(country)) if build => Some(Address {
            name: name.to_string(),
            company: opt(ord::SHIP_COMPANY),
            address1: address1.to_string(),
            address2: opt(ord::SHIP_ADDRESS2),
            city: city.to_string(),
            state: opt(ord::SHIP_STATE),
            zip: opt(ord::SHIP_ZIP),
            country: country.to_string(),
            phone: opt(ord::SHIP_PHONE),
            email: opt(ord::SHIP_EMAIL),
        }),
        _ => None,
    };
    let item = match (sku, quantity, &price) {
        (Some(sku), Some(quantity), Ok(price)) if build => {
            Some(OrderItem { line: row.line(), sku: sku.to_string(), quantity, price: *price })
        }
        _ => None,
    };
    let parsed = Parsed {
        action,
        order_date,
        ship_to,
        speed: speed.ok().flatten().unwrap_or_default(),
        currency: currency.ok().flatten(),
        item,
    };
    (Some(parsed), c.errors)
}

/// Comparable form of an order-level cell: trimmed, with defaults filled in.
fn header_value<'a>(row: &'a Row, map: &HeaderMap, col: usize) -> &'a str {
    match (row.get(map, col), col) {
        (Some(v), _) => v,
        (None, ord::ACTION) => "create",
        (None, ord::SHIPPING_SPEED) => "standard",
        (None, _) => "",
    }
}

/// Byte equality for short cells, inlined: a `memcmp` call per cell was a fifth of checking an
/// orders file.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail = ca.remainder().iter().zip(cb.remainder()).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    tail == 0
        && ca.zip(cb).all(|(x, y)| {
            let w = |c: &[u8]| u64::from_ne_bytes(c.try_into().unwrap_or([0; 8]));
            w(x) == w(y)
        })
}

/// Do two rows agree on an order-level cell? Case carries no meaning in codes and choices (so
/// `create` and a blank action agree).
fn header_agrees(a: &Row, b: &Row, map: &HeaderMap, col: usize) -> bool {
    // The same untrimmed cell (the usual case) agrees whatever the column.
    if let Some(Some(i)) = map.index.get(col) {
        if let (Some(x), Some(y)) = (a.raw.fields.get(*i), b.raw.fields.get(*i)) {
            if same(x.as_bytes(), y.as_bytes()) {
                return true;
            }
        }
    }
    let (x, y) = (header_value(a, map, col), header_value(b, map, col));
    match col {
        ord::SHIP_COUNTRY | ord::CURRENCY | ord::SHIPPING_SPEED | ord::ACTION => x.eq_ignore_ascii_case(y),
        _ => same(x.as_bytes(), y.as_bytes()),
    }
}

/// Marks every row of a rejected group: rows with no error of their own get `group_rejected`
/// pointing at the first bad line, so a clerk sees why a good-looking row was refused.
pub(crate) fn reject_group(
    rows: &[Row],
    mut per_row: Vec<Vec<RecordError>>,
    what: &str,
    key_column: &str,
) -> Vec<RecordError> {
    let first_bad = per_row.iter().zip(rows).find(|(e, _)| !e.is_empty()).map(|(_, r)| r.line());
    let mut all = Vec::new();
    for (errs, row) in per_row.iter_mut().zip(rows) {
        if errs.is_empty() {
            if let Some(bad) = first_bad {
                errs.push(RecordError::new(
                    row.line(),
                    key_column,
                    ErrorCode::GroupRejected,
                    format!("this {what} was rejected because line {bad} of the same {what} is invalid"),
                ));
            }
        }
        all.append(errs);
    }
    all
}

/// Flags every row of a group refused as a whole (not contiguous, too many rows).
pub(crate) fn problem_errors(
    rows: &[Row],
    problem: GroupProblem,
    key: &str,
    what: &str,
    key_column: &str,
    max_rows: usize,
) -> Vec<RecordError> {
    let (code, message) = match problem {
        GroupProblem::NotContiguous => (
            if what == "order" { ErrorCode::OrderNotContiguous } else { ErrorCode::ShipmentNotContiguous },
            format!(
                "{what} '{}' already appeared earlier in the file; all rows of one {what} must be next to each other",
                shown(key)
            ),
        ),
        GroupProblem::TooLarge => {
            (ErrorCode::GroupTooLarge, format!("{what} '{}' has more than {max_rows} rows; split it", shown(key)))
        }
    };
    let mut out = Vec::new();
    for row in rows {
        out.extend(row.errors.iter().cloned());
        out.push(RecordError::new(row.line(), key_column, code, message.clone()));
    }
    out
}

pub(crate) fn unit(group: Group, map: &HeaderMap, ctx: &Ctx) -> Unit {
    let result = match evaluate(&group, map, ctx, true) {
        Ok(Some(r)) => Ok(Record::Order(r)),
        Ok(None) => Err(vec![no_record(&group)]),
        Err(e) => Err(e),
    };
    Unit { rows: group.rows.into_iter().map(|r| r.raw).collect(), result }
}

fn no_record(group: &Group) -> RecordError {
    let line = group.rows.first().map(Row::line).unwrap_or(1);
    RecordError::new(line, "order_ref", ErrorCode::MissingValue, "order_ref is required but empty")
}

/// Order-level columns whose cells must agree across an order's rows. All-cancel orders only
/// need to agree on the action, since their other cells are ignored.
fn compared_header_fields(all_cancel: bool) -> impl Iterator<Item = usize> {
    ord::HEADER_FIELDS.into_iter().filter(move |&col| !all_cancel || col == ord::ACTION)
}

/// Every row parses without error and the order-level cells agree (the same test as
/// `evaluate`, without building anything).
fn is_clean(rows: &[Row], map: &HeaderMap, ctx: &Ctx) -> bool {
    let mut all_cancel = true;
    for row in rows {
        if !row.errors.is_empty() {
            return false;
        }
        match parse_row(row, map, ctx, false) {
            (Some(p), e) if e.is_empty() => all_cancel &= p.action == OrderAction::Cancel,
            _ => return false,
        }
    }
    let Some((first, rest)) = rows.split_first() else {
        return false;
    };
    rest.iter().all(|row| compared_header_fields(all_cancel).all(|col| header_agrees(row, first, map, col)))
}

/// Checks one order; `Err` lists every problem of its rows. Builds the record only when `build`
/// (checking alone allocates nothing for a valid order).
pub(crate) fn evaluate(
    group: &Group,
    map: &HeaderMap,
    ctx: &Ctx,
    build: bool,
) -> Result<Option<OrderRecord>, Vec<RecordError>> {
    let Group { key, rows, problem } = group;
    if let (Some(p), Some(k)) = (problem, key) {
        return Err(problem_errors(rows, *p, k, "order", "order_ref", ctx.max_rows_per_group));
    }
    // Checking only, the usual clean order is confirmed without collecting anything; an order
    // with any problem takes the full path below, which says what and where.
    if !build && is_clean(rows, map, ctx) {
        return Ok(None);
    }
    let mut per_row: Vec<Vec<RecordError>> = Vec::with_capacity(rows.len());
    let mut parsed: Vec<Option<Parsed>> = Vec::with_capacity(rows.len());
    for row in rows {
        if row.errors.is_empty() {
            let (p, e) = parse_row(row, map, ctx, build);
            parsed.push(p);
            per_row.push(e);
        } else {
            parsed.push(None);
            per_row.push(row.errors.clone());
        }
    }
    // Order-level cells must agree with the first readable row.
    let all_cancel = parsed.iter().flatten().all(|p| p.action == OrderAction::Cancel);
    let reference = rows.iter().position(|r| r.errors.is_empty());
    if let Some(first) = reference {
        for (i, row) in rows.iter().enumerate().skip(first + 1) {
            if !row.errors.is_empty() {
                continue;
            }
            for col in compared_header_fields(all_cancel) {
                if !header_agrees(row, &rows[first], map, col) {
                    let name = super::header::ORDER_COLUMNS[col].name;
                    per_row[i].push(RecordError::new(
                        row.line(),
                        name,
                        ErrorCode::InconsistentOrderHeader,
                        format!(
                            "{name} is '{}' here but '{}' on line {} of the same order; order details must be the same on every row",
                            shown(row.get(map, col).unwrap_or("")),
                            shown(rows[first].get(map, col).unwrap_or("")),
                            rows[first].line()
                        ),
                    ));
                }
            }
        }
    }
    if !per_row.iter().all(Vec::is_empty) {
        return Err(reject_group(rows, per_row, "order", "order_ref"));
    }
    let mut parsed = parsed.into_iter().flatten();
    let Some(head) = parsed.next() else {
        // Unreachable in practice (an error-free row always parses), but never panic on input.
        return Err(vec![no_record(group)]);
    };
    if !build {
        return Ok(None);
    }
    let Some(k) = key.clone().or_else(|| rows.first().and_then(|r| r.get(map, ord::ORDER_REF)).map(str::to_string))
    else {
        return Err(vec![no_record(group)]);
    };
    let mut items: Vec<OrderItem> = head.item.into_iter().collect();
    items.extend(parsed.filter_map(|p| p.item));
    Ok(Some(OrderRecord {
        line: rows.first().map(Row::line).unwrap_or(1),
        order_ref: k,
        action: head.action,
        order_date: head.order_date,
        ship_to: head.ship_to,
        shipping_speed: head.speed,
        currency: head.currency.map(str::to_string),
        items,
    }))
}
