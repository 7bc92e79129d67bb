//! Faults between the bridge and Stitch: 429 bursts, 5xx, dropped connections, answers slower
//! than the client timeout, applied-but-lost answers, an unreachable or restarted Stitch.
//! Every scenario runs the real binary until the work is done and then checks the same final
//! state as the crash test. A run exits 0 only when nothing is left; otherwise 4, with reasons.
//! Each test prints a `faults-summary:` line (faults injected, exits seen).

#[path = "crash_common/mod.rs"]
mod common;

use common::*;
use stitch_bridge::sim::faults::{FaultConfig, FaultKind, FaultRates, QueuedFault};

const RUNS: usize = 25;

fn small(seed: u64) -> Workload {
    Workload::generate(&mut rng(seed), 40, 2, 10, 2)
}

fn summary(test: &str, seed: u64, sim: &stitch_bridge::sim::BackgroundSim, codes: &[i32]) {
    let c = sim.counters();
    let total: u64 = c.faults_injected.values().sum();
    println!(
        "faults-summary: test={test} seed={seed} faults_injected={total} by_kind={:?} exits={codes:?}",
        c.faults_injected
    );
}

fn q(fault: FaultKind, method: &str, path: &str) -> QueuedFault {
    QueuedFault { fault, retry_after: Some(0), ms: None, path_prefix: Some(path.into()), method: Some(method.into()) }
}

#[test]
fn random_429_5xx_drops_and_lost_answers_end_in_the_exact_state() {
    let seed = seed_from_env("STITCH_BRIDGE_FAULTS_SEED");
    let w = small(seed);
    let rates = FaultRates {
        rate_limited: 0.10,
        server_error: 0.05,
        bad_gateway: 0.05,
        gateway_timeout: 0.05,
        drop: 0.08,
        lost_answer: 0.05,
        lost_answer_504: 0.05,
    };
    let faults = FaultConfig { seed, retry_after: 0, rates, ..Default::default() };
    let sim = start_sim(w.seed_json(), "t-rand", faults, None, None);
    let inst = Install::new(&sim.base_url(), "t-rand", "max_retries = 4\n");
    let (ships, inputs, codes) = whole_loop(&inst, &w, RUNS, |_| {});
    verify(&inst, &sim, &Expect { workload: &w, inputs, shipments: &ships, applied_elsewhere: 0 });
    summary("random", seed, &sim, &codes);
    assert!(sim.counters().faults_injected.values().sum::<u64>() > 20, "faults were actually injected");
}

#[test]
fn a_429_burst_longer_than_the_retries_leaves_work_pending_then_the_next_run_finishes() {
    let seed = seed_from_env("STITCH_BRIDGE_FAULTS_SEED");
    let w = small(seed);
    let queue = (0..8).map(|_| q(FaultKind::RateLimited, "POST", "/api2/v1/integrations/products")).collect();
    let faults = FaultConfig { seed, retry_after: 0, queue, ..Default::default() };
    let sim = start_sim(w.seed_json(), "t-burst", faults, None, None);
    let inst = Install::new(&sim.base_url(), "t-burst", "max_retries = 3\n");
    let (ships, inputs, codes) = whole_loop(&inst, &w, RUNS, |_| {});
    assert_eq!(codes.first(), Some(&4), "the burst outlasts 4 attempts: the first run must report pending, not 0");
    verify(&inst, &sim, &Expect { workload: &w, inputs, shipments: &ships, applied_elsewhere: 0 });
    assert_eq!(sim.counters().faults_injected.get("429"), Some(&8));
    summary("429-burst", seed, &sim, &codes);
}

#[test]
fn answers_slower_than_the_client_timeout_are_resolved_not_repeated() {
    let seed = seed_from_env("STITCH_BRIDGE_FAULTS_SEED");
    let w = small(seed);
    let slow = |method: &str, path: &str| QueuedFault {
        ms: Some(1600),
        retry_after: None,
        ..q(FaultKind::Latency, method, path)
    };
    let queue = vec![
        slow("POST", "/api2/v1/integrations/products"),
        slow("POST", "/api2/v1/SalesOrders"),
        slow("POST", "/api2/v1/SalesOrders"),
        slow("GET", "/api2/v1/integrations/fulfillments"),
        slow("PUT", "/api2/v1/integrations/fulfillments"),
        slow("POST", "/api2/v1/integrations/shipments"),
    ];
    let faults = FaultConfig { seed, queue, ..Default::default() };
    let sim = start_sim(w.seed_json(), "t-slow", faults, None, None);
    let inst = Install::new(&sim.base_url(), "t-slow", "timeout_seconds = 1\nmax_retries = 3\n");
    let (ships, inputs, codes) = whole_loop(&inst, &w, RUNS, |_| {});
    verify(&inst, &sim, &Expect { workload: &w, inputs, shipments: &ships, applied_elsewhere: 0 });
    let c = sim.counters();
    assert!(c.faults_injected.get("latency").copied().unwrap_or(0) >= 4, "slow answers were served: {c:?}");
    summary("slow", seed, &sim, &codes);
}

#[test]
fn unreachable_stitch_exits_pending_and_moves_nothing() {
    let seed = seed_from_env("STITCH_BRIDGE_FAULTS_SEED");
    let w = small(seed);
    // A port nobody listens on: bind, note, release.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let inst = Install::new(&format!("http://127.0.0.1:{port}"), "t-down", "max_retries = 1\n");
    inst.put("inbound/inventory", &w.inventory_files);
    inst.put("inbound/orders", &w.order_files);
    let (code, report, err) = inst.run_json();
    assert_eq!(code, 4, "{report} {err}");
    assert_eq!(inst.inbound_left().len(), w.inventory_files.len() + w.order_files.len(), "every file stays in inbound");
    assert!(walk(&inst.drop().join("archive")).is_empty() && walk(&inst.drop().join("results")).is_empty());
    // Stitch comes back: the same installation finishes the work.
    let sim = start_sim(
        w.seed_json(),
        "t-down",
        FaultConfig::default(),
        None,
        Some(format!("127.0.0.1:{port}").parse().unwrap()),
    );
    let (ships, inputs, codes) = whole_loop(&inst, &w, RUNS, |_| {});
    verify(&inst, &sim, &Expect { workload: &w, inputs, shipments: &ships, applied_elsewhere: 0 });
    summary("unreachable", seed, &sim, &codes);
}

#[test]
fn simulator_restarted_mid_run_on_the_same_state_file() {
    let seed = seed_from_env("STITCH_BRIDGE_FAULTS_SEED");
    let w = small(seed);
    let state_dir = tempfile::tempdir().unwrap();
    let state = state_dir.path().join("sim-state.json");
    // Latency spreads a run over time so the restart lands inside it.
    let slow = FaultConfig { latency_ms: 40, ..Default::default() };
    let mut sim = Some(start_sim(w.seed_json(), "t-restart", slow.clone(), Some(state.clone()), None));
    let addr = sim.as_ref().unwrap().addr();
    let inst = Install::new(&sim.as_ref().unwrap().base_url(), "t-restart", "max_retries = 6\nconcurrency = 2\n");
    let mut applied_before = 0;
    let mut restarts = 0;
    inst.put("inbound/inventory", &w.inventory_files);
    inst.put("inbound/orders", &w.order_files);
    let n = w.orders.len();
    let mut codes = Vec::new();
    let mut ships = Vec::new();
    let mut inputs: Vec<String> = w.inventory_files.iter().chain(&w.order_files).map(|(n, _)| n.clone()).collect();
    for phase in 1..=2 {
        if phase == 2 {
            ships = shipments_from_outbound(&inst.drop().join("outbound/orders"));
            let files = shipment_files(&ships, 2);
            inputs.extend(files.iter().map(|(n, _)| n.clone()));
            inst.put("inbound/shipments", &files);
        }
        // Restart while a run is busy: after it made some requests, before it finishes.
        let mut child = inst.spawn_run();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        let current = |s: &Option<stitch_bridge::sim::BackgroundSim>| {
            s.as_ref().unwrap().counters().requests.values().sum::<u64>()
        };
        let start_requests = current(&sim);
        while current(&sim) < start_requests + 8 {
            assert!(std::time::Instant::now() < deadline, "the run made no requests");
            assert!(child.try_wait().unwrap().is_none(), "the run ended before the restart");
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let old = sim.take().unwrap();
        applied_before += old.counters().writes_applied.get("shipments").copied().unwrap_or(0);
        drop(old); // graceful stop: in-flight requests finish, state saved
        sim = Some(start_sim(w.seed_json(), "t-restart", slow.clone(), Some(state.clone()), Some(addr)));
        restarts += 1;
        let st = wait_deadline(&mut child, std::time::Duration::from_secs(120));
        assert!(
            matches!(st.code(), Some(0) | Some(4)),
            "run across a restart exits 0 or 4, got {st:?}: {}",
            inst.last_stderr()
        );
        codes.push(st.code().unwrap());
        codes.extend(converge(&inst, RUNS, |i| i.inbound_left().is_empty() && i.outbound_orders().len() == n));
    }
    let sim = sim.unwrap();
    verify(&inst, &sim, &Expect { workload: &w, inputs, shipments: &ships, applied_elsewhere: applied_before });
    println!("faults-summary: test=restart seed={seed} restarts={restarts} exits={codes:?}");
}

#[test]
fn sent_to_warehouse_status_survives_a_failed_status_update() {
    let seed = seed_from_env("STITCH_BRIDGE_FAULTS_SEED");
    let w = small(seed);
    // Every status update of the first run fails (2 attempts each, 10 fulfillments).
    let queue = (0..20).map(|_| q(FaultKind::ServerError, "PUT", "/api2/v1/integrations/fulfillments/")).collect();
    let faults = FaultConfig { seed, queue, ..Default::default() };
    let sim = start_sim(w.seed_json(), "t-status", faults, None, None);
    let inst = Install::new(&sim.base_url(), "t-status", "max_retries = 1\n");
    inst.put("inbound/inventory", &w.inventory_files);
    inst.put("inbound/orders", &w.order_files);
    let n = w.orders.len();
    let codes = converge(&inst, RUNS, |i| i.inbound_left().is_empty() && i.outbound_orders().len() == n);
    assert_eq!(codes.first(), Some(&4), "a status update that failed is pending work");
    let st = sim.snapshot();
    for f in st.fulfillments.values() {
        assert_eq!(f.status, stitch_bridge::engine::download::SENT_STATUS, "fulfillment {} ({})", f.id, f.order_number);
    }
    summary("status", seed, &sim, &codes);
}
