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
            // A rejected row still names its SKU in the result file.
            ("GREEN".into(), "rejected".into()),
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

    // The same bytes again under the same name: the same file sent again, skipped.
    let before = env.counters();
    env.put("inbound/inventory/stock1.csv", text);
    let r = env.cycle();
    let rows = read_csv(&env.path("results/stock1.csv.result~2.csv"));
    assert_eq!(rows.len(), 4);
    assert!(
        rows.iter().all(|r| r["outcome"] == "skipped" && r["message"].contains("identical to stock1.csv")),
        "{rows:?}"
    );
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
    // Nothing was applied from either file: both belong in rejected/, and the report says so.
    assert!(env.exists("rejected/partial.csv") && env.exists("rejected/empty.csv"), "{:?}", env.list("rejected"));
    assert!(acct(&r).files.iter().all(|f| f.state == "rejected"), "{r:?}");
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

// ---- orders and downloads ----------------------------------------------------------------------

#[test]
fn orders_every_outcome_and_download_of_orders_and_cancels() {
    let env = Env::new();
    env.put(
        "inbound/orders/o1.csv",
        &orders_file(&[
            order_row("SAME-1", "RED", 1, "9.99"),
            order_row("LOCK-2", "RED", 1, "9.99"),
            order_row("VOID-L", "RED", 1, "9.99"),
            order_row("SHIP-1", "BLUE", 2, "5.00"),
            // More than the 5 in stock: no fulfillment, so it stays editable.
            order_row("EDIT", "GREEN", 10, "1.00"),
        ]),
    );
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::OK, "{r:?}");
    let rows = env.result("o1.csv");
    assert!(rows.iter().all(|r| r["outcome"] == "created" && !r["remote_id"].is_empty()), "{rows:?}");
    let st = env.state();
    assert_eq!(st.orders.len(), 5);
    for r in &rows {
        let o = st.orders.values().find(|o| o.po_num == r["key"]).expect("order in Stitch");
        assert_eq!(o.id.to_string(), r["remote_id"]);
    }
    // Order download: one file per released fulfillment, status set, acknowledged.
    assert_eq!(acct(&r).orders_sent, 4);
    let sent = env.list("outbound/orders");
    assert_eq!(sent.len(), 4, "{sent:?}");
    for po in ["SAME-1", "LOCK-2", "VOID-L", "SHIP-1"] {
        let f = env.fulfillment_of(po).expect("released");
        assert_eq!(f.status, "Sent to warehouse");
        assert!(f.acknowledged);
        let name = format!("order_{po}_{}.csv", f.id);
        assert!(sent.contains(&name), "{name} in {sent:?}");
        let rows = read_csv(&env.path(&format!("outbound/orders/{name}")));
        assert_eq!(rows[0]["fulfillment_id"], f.id.to_string());
        assert_eq!(rows[0]["line_item_id"], f.lines[0].id.to_string());
    }
    assert!(env.fulfillment_of("EDIT").is_none());

    // A second run writes no order file again.
    let r = env.cycle();
    assert_eq!(acct(&r).orders_sent, 0);
    assert_eq!(env.list("outbound/orders").len(), 4);

    // Something of SHIP-1 ships, so it can no longer be cancelled.
    let ship1 = env.fulfillment_of("SHIP-1").unwrap();
    env.put("inbound/shipments/s1.csv", &shipments_file(&[ship_row(&ship1.id.to_string(), "", "BLUE", 1, "T-SHIP1")]));
    assert_eq!(env.cycle().exit_code(), exit::OK);

    env.put(
        "inbound/orders/o2.csv",
        &orders_file(&[
            order_row("SAME-1", "RED", 1, "9.99"),
            order_row("LOCK-2", "RED", 2, "9.99"),
            cancel_row("VOID-L"),
            cancel_row("SHIP-1"),
            order_row("EDIT", "GREEN", 3, "1.00"),
            order_row("NEW-1", "GADGET", 1, "24.50"),
            order_row("UNK", "NOPE-SKU", 1, "1.00"),
            cancel_row("GHOST"),
        ]),
    );
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::REJECTED, "{r:?}");
    let rows = env.result("o2.csv");
    assert_eq!(
        outcomes(&rows),
        vec![
            ("SAME-1".into(), "unchanged".into()),
            ("LOCK-2".into(), "rejected".into()),
            ("VOID-L".into(), "updated".into()),
            ("SHIP-1".into(), "rejected".into()),
            ("EDIT".into(), "updated".into()),
            ("NEW-1".into(), "created".into()),
            ("UNK".into(), "rejected".into()),
            ("GHOST".into(), "rejected".into()),
        ]
    );
    let msg = |k: &str| rows.iter().find(|r| r["key"] == k).unwrap()["message"].clone();
    assert!(msg("LOCK-2").contains("acknowledged"), "{}", msg("LOCK-2"));
    assert!(msg("VOID-L").contains("cancelled"), "{}", msg("VOID-L"));
    assert!(msg("SHIP-1").contains("shipped"), "{}", msg("SHIP-1"));
    assert!(msg("UNK").contains("NOPE-SKU"), "{}", msg("UNK"));
    assert!(msg("GHOST").contains("no order"), "{}", msg("GHOST"));
    let st = env.state();
    let order = |po: &str| st.orders.values().find(|o| o.po_num == po).unwrap().clone();
    assert_eq!(order("LOCK-2").lines[0].quantity, 1, "locked order unchanged");
    assert!(order("VOID-L").void);
    assert!(!order("SHIP-1").void);
    assert_eq!(order("EDIT").lines[0].quantity, 3);
    assert!(!st.orders.values().any(|o| o.po_num == "UNK"));
    assert_eq!(env.fulfillment_state("VOID-L"), Some(FulfillmentState::Cancelled));
    // The errors file lists each refused order's rows with a code.
    let errs = env.errors("o2.csv");
    let codes: Vec<(&str, &str)> = errs.iter().map(|e| (e["order_ref"].as_str(), e["code"].as_str())).collect();
    assert_eq!(
        codes,
        vec![("LOCK-2", "order_locked"), ("SHIP-1", "already_shipped"), ("UNK", "invalid"), ("GHOST", "unknown_order")]
    );
    assert!(errs.iter().all(|e| !e["line"].is_empty() && !e["message"].is_empty()));
    // A refused cancel says why in the warehouse's terms, with no internal id.
    let ship = errs.iter().find(|e| e["order_ref"] == "SHIP-1").unwrap();
    assert_eq!(ship["message"], "order SHIP-1 has shipped items; it cannot be cancelled");

    // Cancel download: the voided, already-sent fulfillment becomes exactly one cancel file.
    assert_eq!(acct(&r).cancels_sent, 1);
    let voided = env.fulfillment_of("VOID-L").unwrap();
    assert_eq!(env.list("outbound/cancellations"), vec![format!("cancel_VOID-L_{}.csv", voided.id)]);
    let c = read_csv(&env.path(&format!("outbound/cancellations/cancel_VOID-L_{}.csv", voided.id)));
    assert_eq!(
        (c[0]["fulfillment_id"].as_str(), c[0]["order_ref"].as_str()),
        (voided.id.to_string().as_str(), "VOID-L")
    );
    // EDIT and NEW-1 were released by this cycle's writes and sent out.
    assert_eq!(acct(&r).orders_sent, 2);
    assert_eq!(env.list("outbound/orders").len(), 6);

    // Nothing new: the next run writes nothing to Stitch and no files.
    let before = env.counters();
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::OK);
    let after = env.counters();
    assert_eq!(before.writes_applied, after.writes_applied);
    assert_eq!(write_requests(&before), write_requests(&after), "{:?}", after.requests);
    assert_eq!((acct(&r).orders_sent, acct(&r).cancels_sent), (0, 0));
    assert_eq!(env.list("outbound/cancellations").len(), 1);
}

#[test]
fn unacknowledged_order_is_updated_in_place() {
    let env = Env::new();
    env.put("inbound/orders/a.csv", &orders_file(&[order_row("PO-9", "RED", 2, "3.00")]));
    assert_eq!(env.inbound_only().exit_code(), exit::OK);
    assert!(!env.fulfillment_of("PO-9").unwrap().acknowledged);
    env.put("inbound/orders/b.csv", &orders_file(&[order_row("PO-9", "RED", 4, "3.00")]));
    assert_eq!(env.cycle().exit_code(), exit::OK);
    assert_eq!(outcomes(&env.result("b.csv")), vec![("PO-9".into(), "updated".into())]);
    let st = env.state();
    assert_eq!(st.orders.len(), 1);
    let f = env.fulfillment_of("PO-9").unwrap();
    assert_eq!(f.lines[0].quantity, 4, "the re-released fulfillment carries the update");
    assert_eq!(env.list("outbound/orders").len(), 1);
}

// ---- shipments ---------------------------------------------------------------------------------

#[test]
fn shipments_every_outcome_and_fulfillment_status() {
    let env = Env::new();
    env.put(
        "inbound/orders/o.csv",
        &orders_file(&[
            order_row("S-A", "RED", 2, "1.00"),
            order_row("S-A", "GADGET", 1, "1.00"),
            order_row("S-B", "BLUE", 1, "1.00"),
            order_row("S-C", "RED", 1, "1.00"),
            order_row("S-D", "GADGET", 1, "1.00"),
            order_row("S-K", "KIT", 1, "1.00"),
        ]),
    );
    assert_eq!(env.cycle().exit_code(), exit::OK);
    let fid = |po: &str| env.fulfillment_of(po).unwrap().id.to_string();
    let (fa, fc, fd, fk) = (fid("S-A"), fid("S-C"), fid("S-D"), fid("S-K"));

    env.put("inbound/orders/cancel.csv", &orders_file(&[cancel_row("S-C")]));
    env.put(
        "inbound/shipments/s1.csv",
        &shipments_file(&[
            ship_row(&fa, "", "RED", 1, "T-A1"),
            ship_row("", "S-B", "BLUE", 1, "T-B1"),
            ship_row(&fd, "", "GADGET", 5, "T-D1"),
            ship_row(&fa, "", "NOPE", 1, "T-A2"),
            ship_row(&fk, "", "KIT", 1, "T-K1"),
            ship_row(&fc, "", "RED", 1, "T-C1"),
            ship_row("", "NO-SUCH-ORDER", "RED", 1, "T-X"),
        ]),
    );
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::REJECTED, "{r:?}");
    let rows = env.result("s1.csv");
    let fb = fid("S-B");
    assert_eq!(
        outcomes(&rows),
        vec![
            (format!("{fa}/T-A1"), "created".into()),
            (format!("{fb}/T-B1"), "created".into()),
            (format!("{fd}/T-D1"), "rejected".into()),
            (format!("{fa}/T-A2"), "rejected".into()),
            (format!("{fk}/T-K1"), "rejected".into()),
            (format!("{fc}/T-C1"), "rejected".into()),
            ("NO-SUCH-ORDER/T-X".into(), "rejected".into()),
        ]
    );
    let msg = |i: usize| rows[i]["message"].clone();
    assert!(msg(2).contains("over-shipment") && msg(2).contains("only 1 remain"), "{}", msg(2));
    assert!(msg(3).contains("NOPE"), "{}", msg(3));
    assert!(msg(4).contains("KIT") && msg(4).contains("ship its components"), "{}", msg(4));
    assert!(msg(5).contains("cancelled"), "{}", msg(5));
    assert!(msg(6).contains("NO-SUCH-ORDER"), "{}", msg(6));
    let st = env.state();
    assert_eq!(st.shipments.len(), 2, "only T-A1 and T-B1 recorded: {:?}", st.shipments);
    let ship_a1 = st.shipments.values().find(|s| s.tracking_number == "T-A1").unwrap();
    assert_eq!(rows[0]["remote_id"], ship_a1.id);
    assert_eq!(env.fulfillment_of("S-A").unwrap().status, "Partially shipped");
    assert_eq!(env.fulfillment_of("S-B").unwrap().status, "Shipped");
    assert_eq!(env.fulfillment_state("S-B"), Some(FulfillmentState::Complete));
    let errs = env.errors("s1.csv");
    let codes: Vec<(&str, &str)> = errs.iter().map(|e| (e["tracking_number"].as_str(), e["code"].as_str())).collect();
    assert_eq!(
        codes,
        vec![
            ("T-D1", "over_shipment"),
            ("T-A2", "sku_not_on_fulfillment"),
            ("T-K1", "sku_not_on_fulfillment"),
            ("T-C1", "fulfillment_cancelled"),
            ("T-X", "unknown_fulfillment"),
        ]
    );

    // A tracking number another client already recorded is unchanged, not sent again; a closed
    // fulfillment refuses more; the rest of S-A completes it.
    let line = |po: &str, sku: &str| {
        let f = env.fulfillment_of(po).unwrap();
        f.lines.iter().find(|l| l.sku == sku).unwrap().id.to_string()
    };
    let (status, _) = env.api(
        "POST",
        "/api2/v1/integrations/shipments",
        Some(serde_json::json!({"shipments": [{"fulfillment_id": fd, "shipped_at": "2024-03-16T10:00:00Z", "carrier": "UPS",
            "tracking_number": "T-D-ELSEWHERE", "line_items": [{"line_item_id": line("S-D", "GADGET"), "quantity": 1}]}]})),
    );
    assert_eq!(status, 201);
    env.put(
        "inbound/shipments/s2.csv",
        &shipments_file(&[
            ship_row(&fd, "", "GADGET", 1, "T-D-ELSEWHERE"),
            ship_row(&fb, "", "BLUE", 1, "T-B2"),
            ship_row(&fa, "", "RED", 1, "T-A3"),
            ship_row(&fa, "", "GADGET", 1, "T-A3"),
        ]),
    );
    let shipments_before = env.state().shipments.len();
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::REJECTED, "{r:?}");
    let rows = env.result("s2.csv");
    assert_eq!(
        outcomes(&rows),
        vec![
            (format!("{fd}/T-D-ELSEWHERE"), "unchanged".into()),
            (format!("{fb}/T-B2"), "rejected".into()),
            (format!("{fa}/T-A3"), "created".into()),
        ]
    );
    assert!(rows[1]["message"].contains("complete"), "{:?}", rows[1]);
    let st = env.state();
    assert_eq!(st.shipments.len(), shipments_before + 1);
    let a3 = st.shipments.values().find(|s| s.tracking_number == "T-A3").unwrap();
    assert_eq!(a3.line_items.len(), 2, "one shipment with both SKUs");
    assert_eq!(env.fulfillment_of("S-A").unwrap().status, "Shipped");
    assert_eq!(env.fulfillment_state("S-A"), Some(FulfillmentState::Complete));
    assert_eq!(env.errors("s2.csv")[0]["code"], "fulfillment_complete");
}

// ---- idempotence -------------------------------------------------------------------------------

#[test]
fn the_same_cycle_twice_makes_no_write_the_second_time() {
    let env = Env::new();
    let inventory = "sku,quantity,name\nGREEN,7,Green widget\nNEW-X,3,New thing\n";
    let orders = orders_file(&[
        order_row("I-1", "RED", 2, "1.00"),
        order_row("I-1", "BLUE", 1, "2.00"),
        order_row("I-2", "GADGET", 3, "1.50"),
    ]);
    // Shipments by order reference, found in the open list in the same cycle.
    let shipments = shipments_file(&[
        ship_row("", "I-1", "RED", 2, "T-I1"),
        ship_row("", "I-1", "BLUE", 1, "T-I1"),
        ship_row("", "I-2", "GADGET", 1, "T-I2"),
    ]);
    env.put("inbound/inventory/inv.csv", inventory);
    env.put("inbound/orders/ord.csv", &orders);
    env.put("inbound/shipments/shp.csv", &shipments);
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::OK, "{r:?}");
    assert!(env.result("shp.csv").iter().all(|r| r["outcome"] == "created"));
    assert_eq!(env.fulfillment_of("I-1").unwrap().status, "Shipped");
    assert_eq!(env.fulfillment_of("I-2").unwrap().status, "Partially shipped");
    assert_eq!(env.list("outbound/orders").len(), 1, "only I-2 is still open to send");

    // The same content again (other bytes: CRLF line ends, so not skipped as duplicates).
    let crlf = |s: &str| s.replace('\n', "\r\n");
    env.put("inbound/inventory/inv2.csv", &crlf(inventory));
    env.put("inbound/orders/ord2.csv", &crlf(&orders));
    env.put("inbound/shipments/shp2.csv", &crlf(&shipments));
    let before = env.counters();
    let state_before = env.state();
    let r = env.cycle();
    let after = env.counters();
    assert_eq!(r.exit_code(), exit::OK, "{r:?}\n{:?}", env.result("shp2.csv"));
    for name in ["inv2.csv", "ord2.csv", "shp2.csv"] {
        let rows = env.result(name);
        assert!(!rows.is_empty() && rows.iter().all(|r| r["outcome"] == "unchanged"), "{name}: {rows:?}");
    }
    assert_eq!(before.writes_applied, after.writes_applied);
    let writes: Vec<_> =
        after.requests.iter().filter(|(k, n)| is_write_request(k) && before.requests.get(*k) != Some(n)).collect();
    assert!(writes.is_empty(), "write requests in the repeat run: {writes:?}");
    assert_eq!(acct(&r).write_requests, 0);
    assert_eq!(state_before.shipments, env.state().shipments);
    assert_eq!(state_before.orders, env.state().orders);
    assert_eq!(env.list("outbound/orders").len(), 1);
}

/// Shipping many sent fulfillments costs one paged list plus one status update each: line items
/// come from what the download fetched, fulfillments from the open list. Partial shipments keep
/// the cache in step, and shipped fulfillments leave the cancel check.
#[test]
fn shipments_of_sent_fulfillments_use_the_list_and_cached_line_items() {
    let env = Env::new();
    let n = 40;
    let orders: Vec<String> = (0..n).map(|i| order_row(&format!("M-{i}"), "RED", 1, "1.00")).collect();
    let mut two = orders.clone();
    two.push(order_row("M-TWO", "GADGET", 2, "1.00"));
    env.put("inbound/orders/o.csv", &orders_file(&two));
    assert_eq!(env.cycle().exit_code(), exit::OK);
    let fid = |po: &str| env.fulfillment_of(po).unwrap().id.to_string();
    let mut rows: Vec<String> =
        (0..n).map(|i| ship_row(&fid(&format!("M-{i}")), "", "RED", 1, &format!("T-{i}"))).collect();
    rows.push(ship_row(&fid("M-TWO"), "", "GADGET", 1, "T-TWO-1"));
    env.put("inbound/shipments/s.csv", &shipments_file(&rows));
    let before = env.counters();
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::OK, "{r:?}");
    let after = env.counters();
    let delta = |k: &str| after.requests.get(k).copied().unwrap_or(0) - before.requests.get(k).copied().unwrap_or(0);
    assert_eq!(delta("GET /api2/v1/integrations/fulfillments/{id}"), 0, "{:?}", after.requests);
    assert_eq!(delta("GET /api2/v1/integrations/fulfillments/{id}/line_items"), 0, "{:?}", after.requests);
    assert_eq!(delta("PUT /api2/v1/integrations/fulfillments/{id}"), n as u64 + 1);
    let st = env.state();
    let status = |po: &str| st.fulfillments.values().find(|f| f.order_number == po).unwrap().status.clone();
    assert_eq!(status("M-0"), "Shipped");
    assert_eq!(status("M-TWO"), "Partially shipped");
    // The rest of M-TWO: the cache knows one of two was shipped, so this completes it.
    env.put("inbound/shipments/s2.csv", &shipments_file(&[ship_row(&fid("M-TWO"), "", "GADGET", 1, "T-TWO-2")]));
    let before = env.counters();
    assert_eq!(env.cycle().exit_code(), exit::OK);
    let after = env.counters();
    let delta = |k: &str| after.requests.get(k).copied().unwrap_or(0) - before.requests.get(k).copied().unwrap_or(0);
    assert_eq!(delta("GET /api2/v1/integrations/fulfillments/{id}/line_items"), 0, "{:?}", after.requests);
    // One: the fulfillment this file ships. None of the forty shipped earlier is checked for
    // cancellation any more.
    assert_eq!(delta("GET /api2/v1/integrations/fulfillments/{id}"), 1, "{:?}", after.requests);
    assert_eq!(env.fulfillment_state("M-TWO"), Some(FulfillmentState::Complete));
    let st = env.state();
    assert_eq!(st.fulfillments.values().find(|f| f.order_number == "M-TWO").unwrap().status, "Shipped");
}
