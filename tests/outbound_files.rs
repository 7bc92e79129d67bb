//! What the warehouse's system receives (order and cancel files) and what a clerk reads in a
//! result file, after `run --once` against the simulator: values exact, dates the order's own.

mod common;

use common::*;

const HEADER: &str = "order_ref,order_date,ship_name,ship_address1,ship_city,ship_state,ship_zip,ship_country,ship_phone,shipping_speed,sku,quantity,price,currency,action";

#[test]
fn order_files_carry_the_orders_date_and_values_exactly() {
    let env = Env::new();
    env.put(
        "inbound/orders/o.csv",
        &format!("{HEADER}\n-12,2024-03-15T08:09:10-07:00,Alice Example,1 Main St,Springfield,IL,62701,US,+1 503 555 0100,Standard,RED,1,9.99,USD,create\n"),
    );
    let out = env.bin(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let f = env.fulfillment_of("-12").expect("released");
    let sent = env.list("outbound/orders");
    assert_eq!(sent.len(), 1, "{sent:?}");
    let rows = read_csv(&env.path(&format!("outbound/orders/{}", sent[0])));
    assert_eq!(rows[0]["order_ref"], "-12");
    assert_eq!(rows[0]["ship_phone"], "+1 503 555 0100");
    // The order's own date, to the second, not the fulfillment's release time.
    let stored = &env.state().orders.values().find(|o| o.po_num == "-12").unwrap().order_date.clone();
    let want = chrono::DateTime::parse_from_rfc3339(stored).unwrap().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    assert_eq!(rows[0]["order_date"], want);
    assert!(want.starts_with("2024-03-15T"), "{want}");
    assert_ne!(rows[0]["order_date"], f.created_at.to_rfc3339());
}

#[test]
fn order_dates_follow_the_partners_date_format() {
    let env = Env::with(base_seed(), "date_format = \"%d.%m.%Y\"\n");
    env.put(
        "inbound/orders/o.csv",
        &format!("{HEADER}\nPO-1,15.03.2024,Alice Example,1 Main St,Springfield,IL,62701,US,,Standard,RED,1,9.99,USD,create\n"),
    );
    let out = env.bin(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let sent = env.list("outbound/orders");
    let rows = read_csv(&env.path(&format!("outbound/orders/{}", sent[0])));
    assert_eq!(rows[0]["order_date"], "15.03.2024");
}

#[test]
fn a_name_only_change_says_what_changed() {
    let env = Env::new();
    env.put("inbound/inventory/names.csv", "sku,quantity,name\nRED,50,Red gizmo\nBLUE,25,Blue widget\n");
    let out = env.bin(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stderr));
    let result = env.result("names.csv");
    let msg = |sku: &str| result.iter().find(|r| r["key"] == sku).map(|r| r["message"].clone()).unwrap();
    assert_eq!(msg("RED"), "name 'Red widget' -> 'Red gizmo'");
    assert_eq!(msg("BLUE"), "stock 20 -> 25");
}
