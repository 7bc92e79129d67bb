//! Crash test: the real binary, SIGKILLed at random instants over a whole workload, restarted
//! until it finishes. Afterwards nothing is lost (every file accounted for, Stitch holds exactly
//! the intended state) and nothing happened twice (no duplicate order, shipment or order file).
//!
//! Knobs: `STITCH_BRIDGE_CRASH_KILLS` (kills per scenario, default 30),
//! `STITCH_BRIDGE_CRASH_SEED` (default random; printed), `STITCH_BRIDGE_CRASH_MAX_DELAY_MS`
//! (initial bound of the random kill instant, default 250).
//! Each scenario prints one `crash-summary:` line; RELIABILITY.md quotes them.

#[path = "crash_common/mod.rs"]
mod common;

use common::*;
use stitch_bridge::sim::faults::{FaultConfig, FaultRates};

fn scenario(label: &str, lost_answer: f64) {
    let t0 = std::time::Instant::now();
    let seed = seed_from_env("STITCH_BRIDGE_CRASH_SEED");
    let kills = env_u32("STITCH_BRIDGE_CRASH_KILLS", 30).max(2);
    let mut rng = rng(seed);
    let w = Workload::generate(&mut rng, 200, 3, 50, 3);
    let token = format!("crash-{seed:x}");
    // A little latency per request and one request at a time: a run's work is spread over
    // time, so random kill instants land all through it, on any machine.
    let faults = FaultConfig {
        seed,
        latency_ms: 4,
        rates: FaultRates { lost_answer, ..Default::default() },
        ..Default::default()
    };
    let sim = start_sim(w.seed_json(), &token, faults, None, None);
    let inst = Install::new(&sim.base_url(), &token, "timeout_seconds = 10\nconcurrency = 1\n");

    // Phase 1: inventory and orders in; released fulfillments out as order files.
    inst.put("inbound/inventory", &w.inventory_files);
    inst.put("inbound/orders", &w.order_files);
    let n_orders = w.orders.len();
    let a =
        drive(&inst, &mut rng, kills * 3 / 5, |i| i.inbound_left().is_empty() && i.outbound_orders().len() >= n_orders);
    assert_eq!(inst.outbound_orders().len(), n_orders, "one order file per released order");
    for f in sim.snapshot().fulfillments.values() {
        let want = stitch_bridge::engine::download::SENT_STATUS;
        assert_eq!(f.status, want, "fulfillment {} ({}) sent to the warehouse but not marked so", f.id, f.order_number);
    }

    // Phase 2: the warehouse ships every line it received, over several files.
    let ships = shipments_from_outbound(&inst.drop().join("outbound/orders"));
    assert_eq!(ships.len(), 100, "two lines per order");
    let ship_files = shipment_files(&ships, 4);
    inst.put("inbound/shipments", &ship_files);
    let b = drive(&inst, &mut rng, kills - a.kills_mid_work.min(kills), |i| i.inbound_left().is_empty());

    let inputs: Vec<String> =
        w.inventory_files.iter().chain(&w.order_files).chain(&ship_files).map(|(n, _)| n.clone()).collect();
    verify(&inst, &sim, &Expect { workload: &w, inputs, shipments: &ships, applied_elsewhere: 0 });

    // A further run has nothing left to write.
    let (code, report, err) = inst.run_json();
    assert_eq!(code, 0, "{err}");
    let writes = report["accounts"][0]["write_requests"].as_u64().unwrap();
    assert_eq!(writes, 0, "a finished workload needs no more writes: {report}");

    let c = sim.counters();
    let lost = c.faults_injected.get("lost_answer").copied().unwrap_or(0);
    let leftovers = hidden_leftovers(&inst);
    println!(
        "crash-summary: scenario={label} seed={seed} kills={} kills_mid_work={} runs={} pending_exits={} lost_answers={lost} duplicate_shipments_refused={} files={} orders={} shipments={} hidden_temp_leftovers={} secs={:.1}",
        a.kills + b.kills,
        a.kills_mid_work + b.kills_mid_work,
        a.runs + b.runs,
        a.exits_pending + b.exits_pending,
        c.duplicate_shipments_refused,
        w.inventory_files.len() + w.order_files.len() + ship_files.len(),
        n_orders,
        ships.len(),
        leftovers.len(),
        t0.elapsed().as_secs_f64()
    );
    assert!(leftovers.is_empty(), "temp files a killed run left are removed by the next run: {leftovers:?}");
    assert!(
        a.kills_mid_work + b.kills_mid_work >= kills,
        "the work finished before {kills} kills landed; lower STITCH_BRIDGE_CRASH_MAX_DELAY_MS"
    );
}

#[test]
fn sigkill_at_random_instants_loses_nothing_and_repeats_nothing() {
    scenario("kill", 0.0);
}

#[test]
fn sigkill_with_ten_percent_lost_answers() {
    scenario("kill+lost_answer", 0.1);
}
