//! The ledger is the memory behind "nothing twice": a ledger that is locked or damaged must stop
//! the run with a clear error and a non-zero exit, never be replaced by a fresh one (which would
//! send everything again), and never be modified.

#[path = "crash_common/mod.rs"]
mod common;

use common::*;
use stitch_bridge::sim::faults::FaultConfig;

/// A finished workload: phase 1 done (inventory, orders, order files), ledger closed.
fn finished(token: &str) -> (stitch_bridge::sim::BackgroundSim, Install, Workload) {
    let w = Workload::generate(&mut rng(7), 20, 1, 4, 1);
    let sim = start_sim(w.seed_json(), token, FaultConfig::default(), None, None);
    let inst = Install::new(&sim.base_url(), token, "max_retries = 1\n");
    inst.put("inbound/inventory", &w.inventory_files);
    inst.put("inbound/orders", &w.order_files);
    let n = w.orders.len();
    converge(&inst, 5, |i| i.inbound_left().is_empty() && i.outbound_orders().len() == n);
    (sim, inst, w)
}

fn writes(sim: &stitch_bridge::sim::BackgroundSim) -> u64 {
    sim.counters().writes_applied.values().sum()
}

#[test]
fn locked_ledger_is_a_clear_error_not_a_fresh_start() {
    let (sim, inst, w) = finished("t-lock");
    // New work arrives while another process holds the ledger.
    let mut again = w.order_files.clone();
    again[0].0 = "orders_again.csv".into();
    inst.put("inbound/orders", &again);
    let holder = rusqlite::Connection::open(inst.ledger()).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let before_writes = writes(&sim);
    let t = std::time::Instant::now();
    let (code, report, err) = inst.run_json();
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    assert_eq!(code, 2, "a locked ledger needs an operator: exit 2; report {report}; stderr {err}");
    let text = format!("{report}{err}");
    assert!(text.contains("locked by another process"), "the error says why: {text}");
    assert!(t.elapsed() < std::time::Duration::from_secs(30), "waits a bounded time, then gives up");
    assert_eq!(inst.inbound_left().len(), 1, "the new file stays in inbound");
    assert_eq!(writes(&sim), before_writes, "nothing sent while the ledger was unusable");
    // Once released, the same ledger (with its history) is used: the new copy is recognised.
    let (code, report, _) = inst.run_json();
    assert_eq!(code, 0, "{report}");
    let msg = report["accounts"][0]["files"][0]["message"].as_str().unwrap_or_default();
    // (Another name with the same content is reconciled again, naming the earlier file: only a
    // ledger that kept its history knows it.)
    assert!(msg.contains("same content as orders_00.csv"), "history survived: {report}");
    assert_eq!(writes(&sim), before_writes, "the identical copy sent nothing");
}

fn damage_case(label: &str, damage: impl Fn(&mut Vec<u8>)) {
    let (sim, inst, w) = finished(&format!("t-{label}"));
    let path = inst.ledger();
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() > 8192, "ledger has several pages");
    damage(&mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    let mut again = w.order_files.clone();
    again[0].0 = "orders_again.csv".into();
    inst.put("inbound/orders", &again);
    let before_writes = writes(&sim);
    let before_drop = walk(&inst.drop());
    let (code, report, err) = inst.run_json();
    assert_eq!(code, 2, "{label}: a damaged ledger needs an operator: report {report}; stderr {err}");
    let text = format!("{report}{err}");
    assert!(text.contains("damaged") && text.contains("do not delete it"), "{label}: clear message: {text}");
    assert_eq!(std::fs::read(&path).unwrap(), bytes, "{label}: the damaged file is left as it was");
    assert_eq!(writes(&sim), before_writes, "{label}: nothing re-sent");
    assert_eq!(walk(&inst.drop()), before_drop, "{label}: the drop is untouched");
    // `status` refuses too, with the same explanation.
    let out = inst.command(&["status"]).output().unwrap();
    assert_ne!(out.status.code(), Some(0), "{label}: status on a damaged ledger");
}

#[test]
fn damaged_header_is_refused_and_left_untouched() {
    damage_case("header", |b| b[0..100].iter_mut().for_each(|x| *x = 0x5a));
}

#[test]
fn damaged_pages_are_refused_and_left_untouched() {
    damage_case("pages", |b| {
        let len = b.len();
        for (i, x) in b[4096..len].iter_mut().enumerate() {
            if i % 3 == 0 {
                *x = 0xa5;
            }
        }
    });
}

#[test]
fn truncated_ledger_is_refused_and_left_untouched() {
    damage_case("truncated", |b| {
        let keep = b.len() / 2 / 4096 * 4096 + 1000;
        b.truncate(keep);
    });
}
