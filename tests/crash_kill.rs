//! Crash test: the real binary is killed with SIGKILL at random instants while it works through
//! a workload, and restarted until done. Afterwards every file must be in exactly one place
//! with its result, and Stitch (the simulator) must hold exactly the intended state: nothing
//! lost, nothing twice.
//!
//! `STITCH_BRIDGE_CRASH_KILLS` (default 30 per phase) and `STITCH_BRIDGE_CRASH_SEED` (default:
//! random, printed) make a run reproducible in its choices; the kill instants also depend on
//! timing, which is the point.

use rand::{Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};
use stitch_bridge::sim::{self, faults::FaultConfig, SimOptions};
use stitch_bridge::stitch::wire::FulfillmentState;

const SKUS: usize = 200;
const ORDERS: usize = 50;
const STOCK: i64 = 1000;

struct Bench {
    dir: tempfile::TempDir,
    config: PathBuf,
}

impl Bench {
    fn drop_path(&self, rel: &str) -> PathBuf {
        self.dir.path().join("drop").join(rel)
    }

    fn put(&self, rel: &str, text: &str) {
        let p = self.drop_path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        // Written under a dot name and renamed, as a careful uploader does.
        let tmp = p.with_file_name(format!(".{}.part", p.file_name().unwrap().to_string_lossy()));
        fs::write(&tmp, text).unwrap();
        fs::rename(tmp, p).unwrap();
    }

    /// Run `run --once` repeatedly, killing it after a random delay, until `kills` kills have
    /// happened; then run it unkilled until a run ends with nothing left to do.
    fn grind(&self, rng: &mut rand::rngs::StdRng, kills: usize) -> (usize, usize) {
        let mut killed = 0;
        let mut runs = 0;
        let deadline = Instant::now() + Duration::from_secs(240);
        while killed < kills {
            assert!(Instant::now() < deadline, "crash phase took too long");
            let mut child = self.spawn();
            runs += 1;
            let wait = Duration::from_millis(rng.random_range(0..120));
            let until = Instant::now() + wait;
            let mut exited = false;
            while Instant::now() < until {
                if child.try_wait().unwrap().is_some() {
                    exited = true;
                    break;
                }
                std::thread::yield_now();
            }
            if !exited {
                let _ = child.kill(); // SIGKILL
                let _ = child.wait();
                killed += 1;
            }
        }
        // Finish: a clean run that ends with every inbound folder empty.
        for _ in 0..20 {
            runs += 1;
            let status = self.spawn().wait().unwrap();
            let code = status.code().unwrap_or(-1);
            assert!(matches!(code, 0 | 1 | 4), "unexpected exit {code}");
            if code != 4 && self.inbound_empty() {
                return (killed, runs);
            }
        }
        panic!("the workload did not finish after the crash phase");
    }

    /// A killed run's claim on the account lapses after the lease (1 s here); a run started
    /// before that would only skip the account, so wait until the claim is free.
    fn wait_claim_free(&self) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let ledger = stitch_bridge::ledger::Ledger::open(&self.dir.path().join("ledger.sqlite"));
            let free = match ledger {
                Ok(l) => match l.account_claim("crash") {
                    Ok(None) => true,
                    Ok(Some(c)) => c.expires_ms <= chrono::Utc::now().timestamp_millis(),
                    Err(_) => false,
                },
                Err(_) => false,
            };
            if free {
                return;
            }
            assert!(Instant::now() < deadline, "the account claim never lapsed");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    fn spawn(&self) -> std::process::Child {
        self.wait_claim_free();
        Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
            .args(["--quiet", "--config"])
            .arg(&self.config)
            .args(["run", "--once"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    }

    fn inbound_empty(&self) -> bool {
        ["inventory", "orders", "shipments"].iter().all(|k| visible(&self.drop_path(&format!("inbound/{k}"))).is_empty())
    }
}

fn visible(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| !n.starts_with('.')).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn all_files(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(rd) = fs::read_dir(dir) {
        for e in rd.flatten() {
            let p = e.path();
            if p.is_dir() {
                all_files(&p, out);
            } else {
                out.push(p);
            }
        }
    }
}

fn sku(i: usize) -> String {
    format!("CR-{i:04}")
}

fn run_scenario(name: &str, faults: FaultConfig) {
    let seed: u64 = std::env::var("STITCH_BRIDGE_CRASH_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random);
    let kills: usize = std::env::var("STITCH_BRIDGE_CRASH_KILLS").ok().and_then(|s| s.parse().ok()).unwrap_or(30);
    println!("crash test {name}: seed {seed}, {kills} kills per phase");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let sim = sim::start_in_background(SimOptions { token: "crash".into(), faults, ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("token"), "crash").unwrap();
    let config = dir.path().join("stitch-bridge.toml");
    fs::write(
        &config,
        format!(
            "[ledger]\npath = \"ledger.sqlite\"\nlease_seconds = 1\n\n[[account]]\nname = \"crash\"\ndrop = \"drop\"\nstitch_url = \"{}\"\ntoken_file = \"token\"\nsettle_seconds = 0\nbackoff_ms = 5\nmax_retries = 8\n",
            sim.base_url()
        ),
    )
    .unwrap();
    let b = Bench { dir, config };

    // Phase 1: inventory (200 SKUs over two files) and 50 two-line orders over two files.
    for (f, range) in [("stock_a.csv", 0..SKUS / 2), ("stock_b.csv", SKUS / 2..SKUS)] {
        let mut text = String::from("sku,quantity\n");
        for i in range {
            text.push_str(&format!("{},{STOCK}\n", sku(i)));
        }
        b.put(&format!("inbound/inventory/{f}"), &text);
    }
    let header = "order_ref,order_date,ship_name,ship_address1,ship_city,ship_country,sku,quantity\n";
    let mut wanted_lines: BTreeMap<String, Vec<(String, i64)>> = BTreeMap::new();
    for (f, range) in [("orders_a.csv", 0..ORDERS / 2), ("orders_b.csv", ORDERS / 2..ORDERS)] {
        let mut text = String::from(header);
        for o in range {
            let r = format!("CR-PO-{o:03}");
            for (k, q) in [((o * 2) % SKUS, 1 + (o % 3) as i64), ((o * 2 + 1) % SKUS, 2)] {
                text.push_str(&format!("{r},2026-11-20,Buyer {o},1 Main St,Springfield,US,{},{q}\n", sku(k)));
                wanted_lines.entry(r.clone()).or_default().push((sku(k), q));
            }
        }
        b.put(&format!("inbound/orders/{f}"), &text);
    }
    let (k1, r1) = b.grind(&mut rng, kills);

    // Exactly one order file per fulfillment went out.
    let outbound = visible(&b.drop_path("outbound/orders"));
    assert_eq!(outbound.len(), ORDERS, "{outbound:?}");

    // Phase 2: the warehouse ships each line separately: 100 shipments over four files.
    let mut ship_rows = Vec::new();
    for f in &outbound {
        let mut r = csv::Reader::from_path(b.drop_path(&format!("outbound/orders/{f}"))).unwrap();
        let h = r.headers().unwrap().clone();
        let col = |n: &str| h.iter().position(|x| x == n).unwrap();
        for rec in r.records() {
            let rec = rec.unwrap();
            ship_rows.push(format!(
                "{},{},{},2026-11-21T10:00:00Z,UPS,1Z{}-{}\n",
                &rec[col("fulfillment_id")],
                &rec[col("sku")],
                &rec[col("quantity")],
                &rec[col("fulfillment_id")],
                &rec[col("line_item_id")]
            ));
        }
    }
    assert_eq!(ship_rows.len(), ORDERS * 2);
    for (i, chunk) in ship_rows.chunks(ship_rows.len().div_ceil(4)).enumerate() {
        let text = format!("fulfillment_id,sku,quantity,shipped_at,carrier,tracking_number\n{}", chunk.concat());
        b.put(&format!("inbound/shipments/ship_{i}.csv"), &text);
    }
    let (k2, r2) = b.grind(&mut rng, kills);

    // Every input file is in exactly one place, with its result file.
    let mut files = Vec::new();
    all_files(&b.drop_path(""), &mut files);
    let archived: Vec<String> = files
        .iter()
        .filter(|p| p.starts_with(b.drop_path("archive")))
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    let inputs = ["stock_a.csv", "stock_b.csv", "orders_a.csv", "orders_b.csv", "ship_0.csv", "ship_1.csv", "ship_2.csv", "ship_3.csv"];
    assert_eq!(archived.iter().cloned().collect::<BTreeSet<_>>(), inputs.iter().map(|s| s.to_string()).collect(), "{archived:?}");
    assert_eq!(archived.len(), inputs.len(), "an input archived twice: {archived:?}");
    assert!(visible(&b.drop_path("rejected")).is_empty());
    let results = visible(&b.drop_path("results"));
    for i in inputs {
        assert!(results.contains(&format!("{i}.result.csv")), "no result for {i}: {results:?}");
    }
    // No temp file left visible anywhere in the drop.
    for p in &files {
        let n = p.file_name().unwrap().to_string_lossy();
        assert!(n.starts_with('.') || !(n.ends_with(".tmp") || n.ends_with(".part")), "visible temp file {}", p.display());
    }

    // Stitch holds exactly the intended state.
    let st = sim.snapshot();
    let mut shipped: BTreeMap<String, i64> = BTreeMap::new();
    for lines in wanted_lines.values() {
        for (s, q) in lines {
            *shipped.entry(s.clone()).or_default() += q;
        }
    }
    for i in 0..SKUS {
        let p = st.products.get(&sku(i)).unwrap_or_else(|| panic!("{} missing", sku(i)));
        assert_eq!(p.stock, STOCK - shipped.get(&sku(i)).copied().unwrap_or(0), "stock of {}", sku(i));
    }
    let orders: Vec<&str> = st.orders.values().map(|o| o.po_num.as_str()).filter(|p| p.starts_with("CR-PO-")).collect();
    assert_eq!(orders.len(), ORDERS, "duplicate or missing orders");
    assert_eq!(orders.iter().collect::<BTreeSet<_>>().len(), ORDERS);
    let tracking: Vec<&str> = st.shipments.values().map(|s| s.tracking_number.as_str()).collect();
    assert_eq!(tracking.len(), ORDERS * 2, "duplicate or missing shipments");
    assert_eq!(tracking.iter().collect::<BTreeSet<_>>().len(), ORDERS * 2);
    let ours: Vec<_> = st.fulfillments.values().filter(|f| f.order_number.starts_with("CR-PO-")).collect();
    assert_eq!(ours.len(), ORDERS);
    assert!(ours.iter().all(|f| f.state == FulfillmentState::Complete));
    let c = sim.counters();
    println!(
        "crash test {name}: survived {} kills over {} runs; {} faults injected; {} duplicate shipments refused; 0 duplicates applied",
        k1 + k2,
        r1 + r2,
        c.faults_injected.values().sum::<u64>(),
        c.duplicate_shipments_refused
    );
}

#[test]
fn sigkill_at_random_instants_loses_nothing_and_duplicates_nothing() {
    run_scenario("plain", FaultConfig::default());
}

#[test]
fn sigkill_with_ten_percent_lost_answers() {
    let mut f = FaultConfig::default();
    f.rates.lost_answer = 0.1;
    f.seed = 7;
    run_scenario("lost-answers", f);
}
