//! Issue 3 acceptance, in process: the engine's cycle over real HTTP against the simulator.
//! Each test has its own simulator, drop and ledger.

mod common;

use common::*;
use stitch_bridge::engine::exit;
use stitch_bridge::stitch::wire::FulfillmentState;

// ---- inventory ---------------------------------------------------------------------------------

#[test]
fn inventory_snapshot_created_updated_unchanged_rejected_then_duplicate_skipped() {
    let env = Env::new();
    let text = "sku,quantity,name\nRED,60,Red widget\nBLUE,20,Blue widget\nNEW-1,7,Brand new\nGREEN,-3,Green widget\n";
    env.put("inbound/inventory/stock1.csv", text);
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::REJECTED, "{r:?}");
    let rows = env.result("stock1.csv");
    assert_eq!(
        outcomes(&rows),
        vec![
            ("RED".into(), "updated".into()),
            ("BLUE".into(), "unchanged".into()),
            ("NEW-1".into(), "created".into()),
            // A row that failed to parse has no trusted key; the error file shows the row.
            ("".into(), "rejected".into()),
        ]
    );
    assert_eq!(rows.iter().map(|r| r["line"].as_str()).collect::<Vec<_>>(), ["2", "3", "4", "5"]);
    let st = env.state();
    assert_eq!(st.products["RED"].stock, 60);
    assert_eq!(st.products["NEW-1"].stock, 7);
    assert_eq!(st.products["GREEN"].stock, 5, "a rejected row changes nothing");
    assert_eq!(rows[0]["remote_id"], st.products["RED"].id.to_string());
    assert_eq!(rows[2]["remote_id"], st.products["NEW-1"].id.to_string());
    assert!(rows[0]["message"].contains("50 -> 60"), "{:?}", rows[0]);
    // The error file lists the offending row with its location.
    let errs = env.errors("stock1.csv");
    assert_eq!(errs.len(), 1, "{errs:?}");
    assert_eq!(errs[0]["sku"], "GREEN");
    assert_eq!(errs[0]["line"], "5");
    assert_eq!(errs[0]["column"], "quantity");
    assert!(!errs[0]["code"].is_empty() && !errs[0]["message"].is_empty(), "{:?}", errs[0]);
    // Archived, out of inbound.
    assert!(!env.exists("inbound/inventory/stock1.csv"));
    assert_eq!(env.archived(), vec!["stock1.csv".to_string()]);

    // The same bytes again under another name: skipped as a duplicate, nothing written.
    let before = env.counters();
    env.put("inbound/inventory/stock1-again.csv", text);
    let r = env.cycle();
    let rows = env.result("stock1-again.csv");
    assert_eq!(rows.len(), 4);
    assert!(rows.iter().all(|r| r["outcome"] == "skipped" && r["message"].contains("stock1.csv")), "{rows:?}");
    assert_eq!(r.exit_code(), exit::OK, "skipped rows are not rejections");
    let after = env.counters();
    assert_eq!(write_requests(&before), write_requests(&after));
    assert_eq!(before.writes_applied, after.writes_applied);
}

#[test]
fn inventory_delta_rejects_below_zero_and_unknown_sku() {
    let env = Env::new();
    env.put("inbound/inventory/adjust_delta.csv", "sku,quantity\nRED,-10\nGREEN,-6\nNOPE,3\nBLUE,+4\n");
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::REJECTED);
    let rows = env.result("adjust_delta.csv");
    assert_eq!(
        outcomes(&rows),
        vec![
            ("RED".into(), "updated".into()),
            ("GREEN".into(), "rejected".into()),
            ("NOPE".into(), "rejected".into()),
            ("BLUE".into(), "updated".into()),
        ]
    );
    assert!(rows[1]["message"].contains("below zero"), "{:?}", rows[1]);
    assert!(rows[2]["message"].contains("NOPE") && rows[2]["message"].contains("not in Stitch"), "{:?}", rows[2]);
    let st = env.state();
    assert_eq!((st.products["RED"].stock, st.products["GREEN"].stock, st.products["BLUE"].stock), (40, 5, 24));
    assert!(!st.products.contains_key("NOPE"));
    let errs = env.errors("adjust_delta.csv");
    let codes: Vec<(&str, &str)> = errs.iter().map(|e| (e["sku"].as_str(), e["code"].as_str())).collect();
    assert_eq!(codes, vec![("GREEN", "stock_below_zero"), ("NOPE", "unknown_sku")]);
    assert_eq!(errs[0]["line"], "3");
}

#[test]
fn inventory_zero_missing_guard_rejects_the_whole_snapshot() {
    let env = Env::with(base_seed(), "zero_missing = true\nzero_missing_max_share = 0.3\n");
    // 3 of 4 SKUs would be zeroed: 75% > 30%.
    env.put("inbound/inventory/partial.csv", "sku,quantity\nRED,9\n");
    let before = env.counters();
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::REJECTED);
    let rows = env.result("partial.csv");
    assert_eq!(outcomes(&rows), vec![("RED".into(), "rejected".into())]);
    assert!(rows[0]["message"].contains("bad export"), "{:?}", rows[0]);
    assert_eq!(env.state().products["RED"].stock, 50, "nothing applied");
    assert_eq!(write_requests(&before), write_requests(&env.counters()));
    assert_eq!(env.errors("partial.csv")[0]["code"], "bad_export");

    // An empty snapshot is refused too, with a reason in the result and error files.
    env.put("inbound/inventory/empty.csv", "sku,quantity\n");
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::REJECTED, "{r:?}");
    let rows = env.result("empty.csv");
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!(rows[0]["outcome"], "rejected");
    assert!(rows[0]["message"].contains("empty snapshot"), "{:?}", rows[0]);
    let errs = env.errors("empty.csv");
    assert!(errs.iter().any(|e| e["code"] == "bad_export"), "{errs:?}");
    assert_eq!(env.state().products["BLUE"].stock, 20);

    // 1 of 4 (25%) is within the allowed share: the missing SKU is zeroed (reported on line 0).
    env.put("inbound/inventory/full.csv", "sku,quantity\nRED,9\nBLUE,20\nGADGET,40\n");
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::OK, "{r:?}");
    let rows = env.result("full.csv");
    let green = rows.iter().find(|r| r["key"] == "GREEN").expect("zeroed SKU reported");
    assert_eq!((green["line"].as_str(), green["outcome"].as_str()), ("0", "updated"));
    assert_eq!(env.state().products["GREEN"].stock, 0);
}
