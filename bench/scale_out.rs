//! Scale-out on PostgreSQL: 200 accounts × 5 order files through the simulator with 20 ms
//! latency, processed by 1 and then by 3 worker processes (`stitch-bridge run --once`) sharing
//! one ledger. Prints throughput (files/s) and the speed-up; checks that every file was archived
//! and every order written exactly once, so a fast but wrong run cannot pass as a result.
//!
//! `cargo bench --bench scale_out`. PostgreSQL: `STITCH_BRIDGE_TEST_PG_URL` (and
//! `STITCH_BRIDGE_TEST_PG_PASSWORD`), or a throwaway server started from `initdb`.
//! `SCALE_OUT_ACCOUNTS`, `SCALE_OUT_FILES` and `SCALE_OUT_LATENCY_MS` change the size.

#[path = "../tests/support_pg/mod.rs"]
mod support_pg;

use std::time::{Duration, Instant};
use support_pg::scenario::Scenario;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Run `workers` processes at once, again until the drops are empty; returns the wall time.
fn run(sc: &Scenario, workers: usize) -> Duration {
    let started = Instant::now();
    let mut rounds = 0;
    while sc.inbound_left() > 0 {
        rounds += 1;
        assert!(rounds <= 5, "files left after {rounds} rounds");
        let children: Vec<_> = (0..workers)
            .map(|_| {
                std::process::Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
                    .arg("--config")
                    .arg(&sc.config_path)
                    .args(["--quiet", "run", "--once"])
                    .stdout(std::process::Stdio::null())
                    .spawn()
                    .expect("start a worker")
            })
            .collect();
        for mut c in children {
            let st = c.wait().unwrap();
            assert!(st.success(), "a worker failed: {st}");
        }
    }
    started.elapsed()
}

fn main() {
    let Some(pg) = support_pg::server("scale_out") else { return };
    let accounts = env_or("SCALE_OUT_ACCOUNTS", 200);
    let files = env_or("SCALE_OUT_FILES", 5);
    let latency = env_or("SCALE_OUT_LATENCY_MS", 20) as u64;
    let orders_per_file = 2;
    // Workers, simulator and PostgreSQL share this machine's cores: when they are few, the
    // run is CPU-bound and extra workers cannot help; the core count makes the figures readable.
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "scale_out: {accounts} accounts x {files} files ({orders_per_file} orders each), simulator latency {latency} ms, \
         PostgreSQL ledger, 16 accounts in flight per worker, {cores} cores"
    );
    println!("{:>7} {:>8} {:>9} {:>9} {:>10}", "workers", "wall_s", "files/s", "speed-up", "requests");
    let mut base = None;
    for workers in [1, 3] {
        let loc = pg.fresh();
        let sc = Scenario::build(&pg.ledger_toml(&loc, 30), accounts, files, orders_per_file, latency);
        let wall = run(&sc, workers);
        assert_eq!(sc.archived().len(), sc.files(), "every file archived once");
        assert_eq!(sc.sales_order_writes(), sc.orders() as u64, "every order written once");
        let rate = sc.files() as f64 / wall.as_secs_f64();
        let speedup = rate / *base.get_or_insert(rate);
        let requests: u64 = sc.sim.counters().requests.values().sum();
        println!("{workers:>7} {:>8.2} {rate:>9.1} {speedup:>8.2}x {requests:>10}", wall.as_secs_f64());
    }
}
