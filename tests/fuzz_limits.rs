//! Limits at the engine level: a file over a limit is refused as a whole or per record, ends in
//! `rejected/` (whole file) or `archive/` (some records), always with a result file saying why,
//! and nothing over the limit reaches Stitch.

#[path = "crash_common/mod.rs"]
mod common;

use common::*;
use stitch_bridge::sim::faults::FaultConfig;

fn result_text(inst: &Install, name: &str) -> String {
    std::fs::read_to_string(inst.drop().join("results").join(format!("{name}.result.csv"))).unwrap_or_default()
}

#[test]
fn each_limit_gives_a_clear_rejection_with_a_result_file() {
    let w = Workload::generate(&mut rng(3), 10, 1, 2, 1);
    let sim = start_sim(w.seed_json(), "t-limits", FaultConfig::default(), None, None);
    let inst = Install::new(
        &sim.base_url(),
        "t-limits",
        "max_file_bytes = 2000\nmax_rows = 20\nmax_field_len = 64\nmax_rows_per_order = 3\n",
    );
    let mut big = String::from("sku,quantity\n");
    while big.len() <= 2000 {
        big.push_str("BIG-SKU-000000,1\n");
    }
    let many_rows: String =
        std::iter::once("sku,quantity\n".to_string()).chain((0..30).map(|i| format!("ROW-{i},1\n"))).collect();
    let long_field = format!("sku,quantity,name\nLONG-1,1,{}\nSHORT-1,2,ok\n", "n".repeat(100));
    let header = "order_ref,order_date,ship_name,ship_address1,ship_city,ship_state,ship_zip,ship_country,shipping_speed,sku,quantity,price,currency,action\n";
    let mut big_order = header.to_string();
    for i in 0..5 {
        big_order.push_str(&format!(
            "BIG-1,2024-03-15,A,1 Main St,Springfield,IL,62701,US,Standard,SKU-000{i},1,1.00,USD,create\n"
        ));
    }
    inst.put(
        "inbound/inventory",
        &[("too_big.csv".into(), big), ("too_many_rows.csv".into(), many_rows), ("long_field.csv".into(), long_field)],
    );
    inst.put("inbound/orders", &[("big_order.csv".into(), big_order)]);
    let (code, report, err) = inst.run_json();
    assert_eq!(code, 1, "rejections exit 1: {report} {err}");
    assert!(inst.inbound_left().is_empty(), "every file leaves inbound");
    let rejected = walk(&inst.drop().join("rejected"));
    for name in ["too_big.csv", "too_many_rows.csv"] {
        assert!(rejected.iter().any(|p| p.file_name().unwrap() == name), "{name} in rejected/: {rejected:?}");
    }
    assert!(result_text(&inst, "too_big.csv").contains("limit is 2000 bytes"), "{}", result_text(&inst, "too_big.csv"));
    assert!(result_text(&inst, "too_many_rows.csv").contains("rejected"));
    let long = result_text(&inst, "long_field.csv");
    assert!(
        long.contains("2,LONG-1,rejected") && long.contains("longer than 64") && long.contains("SHORT-1,created"),
        "{long}"
    );
    let order = result_text(&inst, "big_order.csv");
    assert!(order.contains("rejected"), "{order}");
    let st = sim.snapshot();
    for sku in ["BIG-SKU-000000", "ROW-0", "LONG-1"] {
        assert!(!st.products.contains_key(sku), "{sku} must not reach Stitch");
    }
    assert!(st.products.contains_key("SHORT-1"), "the good row of a file with a bad row is applied");
    assert!(st.orders.values().all(|o| o.po_num != "BIG-1"), "the oversized order is not created");
}
