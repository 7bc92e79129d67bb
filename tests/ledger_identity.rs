//! A ledger that lost its memory must not pass for a fresh install: a truncated or table-less
//! ledger file, a deleted and recreated ledger, or another installation's ledger pointed at the
//! same drop would send every open order to the warehouse again. The drop's marker names the
//! ledger that serves it; a mismatch stops the account (exit 2, nothing sent, nothing moved)
//! until `stitch-bridge adopt ACCOUNT`. Black-box, through the binary.

#[path = "crash_common/mod.rs"]
mod common;

use common::*;
use stitch_bridge::sim::faults::FaultConfig;

const MARKER: &str = ".stitch-bridge-ledger";

/// Phase 1 done (inventory, orders, order files sent), ledger closed.
fn finished(token: &str) -> (stitch_bridge::sim::BackgroundSim, Install, Workload) {
    let w = Workload::generate(&mut rng(11), 12, 1, 4, 1);
    let sim = start_sim(w.seed_json(), token, FaultConfig::default(), None, None);
    let inst = Install::new(&sim.base_url(), token, "max_retries = 1\n");
    inst.put("inbound/inventory", &w.inventory_files);
    inst.put("inbound/orders", &w.order_files);
    let n = w.orders.len();
    converge(&inst, 5, |i| i.inbound_left().is_empty() && i.outbound_orders().len() == n);
    // The warehouse takes its order files: any file that reappears was sent again.
    for f in inst.outbound_orders() {
        std::fs::remove_file(inst.drop().join("outbound/orders").join(f)).unwrap();
    }
    (sim, inst, w)
}

fn writes(sim: &stitch_bridge::sim::BackgroundSim) -> u64 {
    sim.counters().writes_applied.values().sum()
}

fn ledger_id(path: &std::path::Path) -> String {
    let c = rusqlite::Connection::open(path).unwrap();
    c.query_row("SELECT id FROM ledger_identity", [], |r| r.get(0)).unwrap()
}

fn marker(inst: &Install) -> String {
    std::fs::read_to_string(inst.drop().join(MARKER)).unwrap_or_default()
}

fn remove_ledger(inst: &Install) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", inst.ledger().display()));
    }
}

/// The run after the damage: exit 2, a message naming `adopt`, nothing sent, the drop as it was.
fn assert_stopped(label: &str, sim: &stitch_bridge::sim::BackgroundSim, inst: &Install, needles: &[&str]) {
    let before_writes = writes(sim);
    let before_drop = walk(&inst.drop());
    let before_marker = marker(inst);
    let (code, report, err) = inst.run_json();
    assert_eq!(code, 2, "{label}: needs an operator: report {report}; stderr {err}");
    let text = format!("{report}{err}");
    for n in needles.iter().chain(&["stitch-bridge adopt"]) {
        assert!(text.contains(n), "{label}: {n:?} missing from the message: {text}");
    }
    assert_eq!(writes(sim), before_writes, "{label}: no Stitch writes");
    assert_eq!(walk(&inst.drop()), before_drop, "{label}: no order sent, no file moved");
    assert_eq!(marker(inst), before_marker, "{label}: the marker is left as it was");
}

/// After `adopt`, the run proceeds as a fresh ledger does: the orders are sent again.
fn adopt_then_proceed(label: &str, inst: &Install, n: usize) {
    let out = inst.command(&["adopt", "rel"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{label}: adopt: {}", String::from_utf8_lossy(&out.stderr));
    let id = ledger_id(&inst.ledger());
    assert!(marker(inst).contains(&id), "{label}: the marker now names the ledger {id}: {}", marker(inst));
    let (code, report, err) = inst.run_json();
    assert_eq!(code, 0, "{label}: after adopt the run proceeds: {report}; {err}");
    assert_eq!(
        inst.outbound_orders().len(),
        n,
        "{label}: the new ledger sends the open orders again (operator's choice)"
    );
}

#[test]
fn fresh_install_writes_the_marker() {
    let (_sim, inst, _w) = finished("t-fresh");
    let id = ledger_id(&inst.ledger());
    assert_eq!(id.len(), 32, "a random id: {id}");
    assert!(marker(&inst).contains(&format!("ledger_id = {id}")), "{}", marker(&inst));
    let (code, report, _) = inst.run_json();
    assert_eq!(code, 0, "the marker matches on later runs: {report}");
}

#[test]
fn ledger_truncated_to_zero_stops_until_adopt() {
    let (sim, inst, w) = finished("t-zero");
    std::fs::File::create(inst.ledger()).unwrap().set_len(0).unwrap();
    let path = inst.ledger().display().to_string();
    assert_stopped("zero", &sim, &inst, &[&path, "no tables"]);
    assert_eq!(std::fs::metadata(inst.ledger()).unwrap().len(), 0, "the file is left as it was");
    let out = inst.command(&["status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2), "status refuses too");
    assert!(String::from_utf8_lossy(&out.stderr).contains("stitch-bridge adopt"), "and names the remedy");
    adopt_then_proceed("zero", &inst, w.orders.len());
}

#[test]
fn table_less_ledger_file_stops_until_adopt() {
    let (sim, inst, w) = finished("t-tableless");
    remove_ledger(&inst);
    {
        // What a killed first run left once its -wal file was deleted: a header, no tables.
        let c = rusqlite::Connection::open(inst.ledger()).unwrap();
        c.execute_batch("CREATE TABLE t(x); DROP TABLE t; PRAGMA user_version=0; VACUUM;").unwrap();
    }
    let len = std::fs::metadata(inst.ledger()).unwrap().len();
    assert!(len > 0, "a header-only file");
    let path = inst.ledger().display().to_string();
    assert_stopped("table-less", &sim, &inst, &[&path]);
    assert_eq!(std::fs::metadata(inst.ledger()).unwrap().len(), len, "the file is left as it was");
    adopt_then_proceed("table-less", &inst, w.orders.len());
}

#[test]
fn deleted_and_recreated_ledger_stops_until_adopt() {
    let (sim, inst, w) = finished("t-deleted");
    remove_ledger(&inst);
    assert_stopped("deleted", &sim, &inst, &["another ledger", MARKER]);
    let out = inst.command(&["status"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("STOPPED") && text.contains("stitch-bridge adopt rel"), "status shows the reason: {text}");
    // Still stopped on the next run: the stop itself is no history that lets it through.
    assert_stopped("deleted, again", &sim, &inst, &["another ledger"]);
    adopt_then_proceed("deleted", &inst, w.orders.len());
}

#[test]
fn ledger_from_a_release_without_ids_upgrades_with_no_action() {
    let (sim, inst, w) = finished("t-upgrade");
    // The previous release's ledger and drop: schema version 1, no identity, no marker.
    {
        let c = rusqlite::Connection::open(inst.ledger()).unwrap();
        c.execute_batch("DROP TABLE ledger_identity; DROP TABLE IF EXISTS attention; PRAGMA user_version=1;").unwrap();
    }
    std::fs::remove_file(inst.drop().join(MARKER)).unwrap();
    let mut again = w.order_files.clone();
    again[0].0 = "orders_again.csv".into();
    inst.put("inbound/orders", &again);
    let before = writes(&sim);
    let (code, report, err) = inst.run_json();
    assert_eq!(code, 0, "no operator action: {report}; {err}");
    let msg = report["accounts"][0]["files"][0]["message"].as_str().unwrap_or_default();
    assert!(msg.contains("same content as"), "history kept: {report}");
    assert_eq!(writes(&sim), before, "nothing re-sent");
    assert!(inst.outbound_orders().is_empty(), "no order file sent twice");
    let id = ledger_id(&inst.ledger());
    assert!(marker(&inst).contains(&id), "the marker is written for the upgraded ledger");
}

#[test]
fn second_ledger_on_the_same_drop_stops() {
    let (sim, inst, w) = finished("t-two");
    let other = inst.root().join("other.toml");
    let text = std::fs::read_to_string(inst.config()).unwrap().replace("state/ledger.sqlite", "state/other.sqlite");
    std::fs::write(&other, text).unwrap();
    let mut again = w.order_files.clone();
    again[0].0 = "orders_again.csv".into();
    inst.put("inbound/orders", &again);
    let run_other = |args: &[&str]| {
        std::process::Command::new(BIN)
            .arg("--config")
            .arg(&other)
            .args(args)
            .env(TOKEN_ENV, &inst.token)
            .env("STITCH_BRIDGE_LOG", "warn")
            .output()
            .unwrap()
    };
    let before_writes = writes(&sim);
    let before_drop = walk(&inst.drop());
    let out = run_other(&["run", "--once", "--json"]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(2), "{text}");
    assert!(text.contains("another ledger") && text.contains("stitch-bridge adopt rel"), "{text}");
    assert_eq!(writes(&sim), before_writes, "the second ledger sent nothing");
    assert_eq!(walk(&inst.drop()), before_drop, "the second ledger moved nothing");
    // The first ledger still serves the drop.
    let (code, report, err) = inst.run_json();
    assert_eq!(code, 0, "{report}; {err}");
    assert!(inst.inbound_left().is_empty());
}
