//! Shared harness for the reliability tests (`crash_*`, `faults_*`, `secrets_*`): an in-process
//! simulator, a temporary local drop with a config, a generated workload, the real binary run
//! as a child process, and the checks that define "nothing lost, nothing twice".
#![allow(dead_code)]

use rand::{rngs::StdRng, Rng, SeedableRng};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};
use stitch_bridge::sim::{self, faults::FaultConfig, BackgroundSim, Seed, SimOptions};
use stitch_bridge::stitch::wire::FulfillmentState;

pub const TOKEN_ENV: &str = "STITCH_BRIDGE_TEST_TOKEN";
pub const BIN: &str = env!("CARGO_BIN_EXE_stitch-bridge");

/// Seed from `var` if set, else random; always printed so a failure can be replayed.
pub fn seed_from_env(var: &str) -> u64 {
    let seed = match std::env::var(var) {
        Ok(s) => s.trim().parse().unwrap_or_else(|_| panic!("{var}={s:?} is not a number")),
        Err(_) => rand::random::<u64>(),
    };
    eprintln!("seed: {var}={seed}");
    seed
}

pub fn env_u32(var: &str, default: u32) -> u32 {
    std::env::var(var).ok().and_then(|s| s.trim().parse().ok()).unwrap_or(default)
}

/// What the warehouse sends and what Stitch must end up holding.
#[derive(Debug, Clone, Default)]
pub struct Workload {
    /// SKU -> stock set by the inventory files.
    pub stock: BTreeMap<String, i64>,
    /// SKUs the simulator already knows at start (with stock 1).
    pub seeded: Vec<String>,
    /// order_ref -> lines (sku, qty).
    pub orders: BTreeMap<String, Vec<(String, u32)>>,
    pub inventory_files: Vec<(String, String)>,
    pub order_files: Vec<(String, String)>,
}

impl Workload {
    pub fn generate(rng: &mut StdRng, skus: usize, inv_files: usize, orders: usize, order_files: usize) -> Workload {
        let mut w = Workload::default();
        let names: Vec<String> = (0..skus).map(|i| format!("SKU-{i:04}")).collect();
        for (i, s) in names.iter().enumerate() {
            w.stock.insert(s.clone(), rng.random_range(40..200));
            if i % 2 == 0 {
                w.seeded.push(s.clone());
            }
        }
        for (fi, chunk) in names.chunks(skus.div_ceil(inv_files)).enumerate() {
            let mut text = String::from("sku,quantity,name\n");
            for s in chunk {
                text.push_str(&format!("{s},{},\"Item {s}, test\"\n", w.stock[s]));
            }
            w.inventory_files.push((format!("stock_{fi:02}.csv"), text));
        }
        for o in 0..orders {
            let a = rng.random_range(0..skus);
            let mut b = rng.random_range(0..skus);
            while b == a {
                b = rng.random_range(0..skus);
            }
            let lines = vec![(names[a].clone(), rng.random_range(1..=3)), (names[b].clone(), rng.random_range(1..=3))];
            w.orders.insert(format!("ORD-{o:04}"), lines);
        }
        let refs: Vec<&String> = w.orders.keys().collect();
        for (fi, chunk) in refs.chunks(orders.div_ceil(order_files)).enumerate() {
            let mut text = String::from(
                "order_ref,order_date,ship_name,ship_address1,ship_city,ship_state,ship_zip,ship_country,shipping_speed,sku,quantity,price,currency,action\n",
            );
            for r in chunk {
                for (sku, q) in &w.orders[*r] {
                    text.push_str(&format!(
                        "{r},2024-03-15,Customer {r},1 Main St,Springfield,IL,62701,US,Standard,{sku},{q},9.99,USD,create\n"
                    ));
                }
            }
            w.order_files.push((format!("orders_{fi:02}.csv"), text));
        }
        w
    }

    pub fn seed_json(&self) -> serde_json::Value {
        let products: Vec<_> = self.seeded.iter().map(|s| serde_json::json!({"sku": s, "stock": 1})).collect();
        serde_json::json!({ "products": products })
    }
}

/// One shipment the warehouse reports: a line of an outbound order file.
#[derive(Debug, Clone)]
pub struct ShipLine {
    pub fulfillment_id: String,
    pub order_ref: String,
    pub sku: String,
    pub qty: u32,
    pub tracking: String,
}

/// Read the outbound order files, one shipment per line (as the demo's warehouse does).
pub fn shipments_from_outbound(outbound: &Path) -> Vec<ShipLine> {
    let mut files: Vec<PathBuf> = fs::read_dir(outbound)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "csv") && !is_hidden(p))
        .collect();
    files.sort();
    let mut out = Vec::new();
    for p in files {
        let mut r = csv::Reader::from_path(&p).unwrap();
        let h = r.headers().unwrap().clone();
        let col = |n: &str| h.iter().position(|x| x == n).unwrap_or_else(|| panic!("{n} missing in {}", p.display()));
        let (fi, oi, si, qi) = (col("fulfillment_id"), col("order_ref"), col("sku"), col("quantity"));
        for (n, rec) in r.records().enumerate() {
            let rec = rec.unwrap();
            out.push(ShipLine {
                fulfillment_id: rec[fi].to_string(),
                order_ref: rec[oi].to_string(),
                sku: rec[si].to_string(),
                qty: rec[qi].parse().unwrap(),
                tracking: format!("1ZTEST{}L{n}", &rec[fi]),
            });
        }
    }
    out
}

/// Shipments files: `lines` spread over `files` files.
pub fn shipment_files(lines: &[ShipLine], files: usize) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (fi, chunk) in lines.chunks(lines.len().div_ceil(files).max(1)).enumerate() {
        let mut text =
            String::from("fulfillment_id,order_ref,sku,quantity,shipped_at,carrier,service,tracking_number\n");
        for l in chunk {
            text.push_str(&format!(
                "{},{},{},{},2024-03-16T10:00:00Z,UPS,Ground,{}\n",
                l.fulfillment_id, l.order_ref, l.sku, l.qty, l.tracking
            ));
        }
        out.push((format!("shipments_{fi:02}.csv"), text));
    }
    out
}

pub fn is_hidden(p: &Path) -> bool {
    p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.'))
}

/// Every regular file under `dir`, relative to it.
pub fn walk(dir: &Path) -> Vec<PathBuf> {
    fn go(root: &Path, d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(rd) = fs::read_dir(d) else { return };
        for e in rd {
            let e = e.unwrap();
            let p = e.path();
            if e.file_type().unwrap().is_dir() {
                go(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_path_buf());
            }
        }
    }
    let mut out = Vec::new();
    go(dir, dir, &mut out);
    out.sort();
    out
}

/// A temporary installation: drop, config, ledger, token; the simulator is owned by the test.
pub struct Install {
    pub dir: tempfile::TempDir,
    pub token: String,
    pub stitch_url: String,
    /// Extra lines appended to the account table.
    pub extra: String,
}

impl Install {
    pub fn new(stitch_url: &str, token: &str, extra: &str) -> Install {
        let dir = tempfile::Builder::new().prefix("sb-rel-").tempdir().unwrap();
        let i = Install { dir, token: token.into(), stitch_url: stitch_url.into(), extra: extra.into() };
        for d in ["inbound/inventory", "inbound/orders", "inbound/shipments"] {
            fs::create_dir_all(i.drop().join(d)).unwrap();
        }
        i.write_config();
        i
    }

    pub fn write_config(&self) {
        let text = format!(
            "[ledger]\npath = \"state/ledger.sqlite\"\n\n[[account]]\nname = \"rel\"\ndrop = \"drop\"\nstitch_url = \"{}\"\ntoken_env = \"{TOKEN_ENV}\"\nsettle_seconds = 0\n{}\n",
            self.stitch_url, self.extra
        );
        let p = self.config();
        fs::write(&p, text).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&p, fs::Permissions::from_mode(0o600)).unwrap();
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }
    pub fn drop(&self) -> PathBuf {
        self.dir.path().join("drop")
    }
    pub fn config(&self) -> PathBuf {
        self.dir.path().join("stitch-bridge.toml")
    }
    pub fn ledger(&self) -> PathBuf {
        self.dir.path().join("state/ledger.sqlite")
    }

    pub fn put(&self, folder: &str, files: &[(String, String)]) {
        for (name, text) in files {
            fs::write(self.drop().join(folder).join(name), text).unwrap();
        }
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.arg("--config").arg(self.config()).args(args).env(TOKEN_ENV, &self.token).env_remove("STITCH_BRIDGE_LOG");
        c
    }

    /// `run --once`, its stderr into `last-stderr.txt` (kept for diagnostics).
    pub fn spawn_run(&self) -> Child {
        let err = fs::File::create(self.root().join("last-stderr.txt")).unwrap();
        self.command(&["run", "--once"])
            .env("STITCH_BRIDGE_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap()
    }

    pub fn last_stderr(&self) -> String {
        fs::read_to_string(self.root().join("last-stderr.txt")).unwrap_or_default()
    }

    /// One complete `run --once --json`: exit code and the report.
    pub fn run_json(&self) -> (i32, serde_json::Value, String) {
        let out = self.command(&["run", "--once", "--json"]).env("STITCH_BRIDGE_LOG", "warn").output().unwrap();
        let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out.status.code().unwrap_or(-1), report, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    pub fn inbound_left(&self) -> Vec<PathBuf> {
        walk(&self.drop().join("inbound")).into_iter().filter(|p| !is_hidden(p)).collect()
    }

    pub fn outbound_orders(&self) -> Vec<PathBuf> {
        walk(&self.drop().join("outbound/orders")).into_iter().filter(|p| !is_hidden(p)).collect()
    }
}

/// Wait for a child with a deadline (a poll, never a fixed sleep).
pub fn wait_deadline(child: &mut Child, limit: Duration) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(st) = child.try_wait().unwrap() {
            return st;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("stitch-bridge run did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Figures of one driven phase.
#[derive(Debug, Default, Clone, Copy)]
pub struct Driven {
    pub runs: u32,
    pub kills: u32,
    /// Kills of a run that started with inbound files or outbound orders still to do.
    pub kills_mid_work: u32,
    pub exits_pending: u32,
}

/// Run `run --once` repeatedly until a run exits 0 or 1 and `done()` holds. While work remains
/// and fewer than `kills` runs were killed, each run is SIGKILLed at a random instant in
/// `0..bound`. The bound adapts: it grows while kills make no visible progress (so every
/// phase finishes) and shrinks back once work moves.
pub fn drive(inst: &Install, rng: &mut StdRng, kills: u32, done: impl Fn(&Install) -> bool) -> Driven {
    use std::os::unix::process::ExitStatusExt;
    let base_ms = env_u32("STITCH_BRIDGE_CRASH_MAX_DELAY_MS", 150) as f64;
    let verbose = std::env::var_os("STITCH_BRIDGE_CRASH_VERBOSE").is_some();
    let mut max_ms = base_ms;
    let mut stuck = 0;
    let mut d = Driven::default();
    let progress = |i: &Install| (walk(&i.drop()).len(), i.inbound_left().len(), i.outbound_orders().len());
    loop {
        d.runs += 1;
        assert!(d.runs < 2000, "no convergence after {} runs; last stderr:\n{}", d.runs, inst.last_stderr());
        let before = progress(inst);
        let had_work = !done(inst);
        let mut child = inst.spawn_run();
        let kill = had_work && d.kills < kills;
        let status = if kill {
            let delay = Duration::from_micros((rng.random::<f64>() * max_ms * 1000.0) as u64);
            // The random kill instant is the point of the test, not a synchronisation.
            std::thread::sleep(delay);
            let _ = child.kill();
            wait_deadline(&mut child, Duration::from_secs(30))
        } else {
            wait_deadline(&mut child, Duration::from_secs(120))
        };
        if verbose {
            eprintln!("run {}: {status:?} progress={:?} bound={max_ms:.0}ms", d.runs, progress(inst));
        }
        if status.signal() == Some(9) {
            d.kills += 1;
            d.kills_mid_work += had_work as u32;
            if progress(inst) == before {
                stuck += 1;
                if stuck >= 3 {
                    max_ms *= 1.5;
                    stuck = 0;
                }
            } else {
                stuck = 0;
                max_ms = (max_ms * 0.8).max(base_ms);
            }
            continue;
        }
        match status.code() {
            Some(0) | Some(1) if done(inst) => return d,
            Some(0) | Some(1) => {}
            Some(4) => d.exits_pending += 1,
            other => panic!("run exited {other:?}; stderr:\n{}", inst.last_stderr()),
        }
    }
}

/// The checks that define "nothing lost, nothing twice" for a finished workload.
pub struct Expect<'a> {
    pub workload: &'a Workload,
    /// Every file dropped into inbound (names are unique across folders).
    pub inputs: Vec<String>,
    pub shipments: &'a [ShipLine],
    /// Shipments applied by an earlier simulator instance (its counters are gone).
    pub applied_elsewhere: u64,
}

pub fn verify(inst: &Install, sim: &BackgroundSim, e: &Expect<'_>) {
    let drop = inst.drop();
    let all = walk(&drop);
    // 1. Files: none left inbound; each input exactly once in archive/ or rejected/, with
    //    exactly one result file.
    assert!(inst.inbound_left().is_empty(), "left in inbound: {:?}", inst.inbound_left());
    let visible: Vec<&PathBuf> = all.iter().filter(|p| !is_hidden(p)).collect();
    for name in &e.inputs {
        let homes: Vec<_> = visible
            .iter()
            .filter(|p| {
                (p.starts_with("archive") || p.starts_with("rejected")) && p.file_name().unwrap() == name.as_str()
            })
            .collect();
        assert_eq!(homes.len(), 1, "{name} must be in exactly one of archive/ and rejected/: {homes:?}");
        let result = drop.join("results").join(format!("{name}.result.csv"));
        assert!(result.is_file(), "no result file for {name}");
        let mut r = csv::Reader::from_path(&result).unwrap();
        for rec in r.records() {
            let rec = rec.unwrap();
            assert_ne!(&rec[2], "rejected", "{name}: a valid record was rejected: {rec:?}");
        }
    }
    let archived = visible.iter().filter(|p| p.starts_with("archive") || p.starts_with("rejected")).count();
    assert_eq!(archived, e.inputs.len(), "archive/rejected hold exactly the inputs: {visible:?}");
    let results = visible.iter().filter(|p| p.starts_with("results")).count();
    assert_eq!(results, e.inputs.len(), "one result file per input: {visible:?}");
    // 2. Nothing else visible: temp files (dot-prefixed) are the only leftovers allowed.
    for p in &visible {
        let ok = p.starts_with("archive")
            || p.starts_with("rejected")
            || p.starts_with("results")
            || p.starts_with("outbound/orders");
        assert!(ok, "unexpected visible file in the drop: {}", p.display());
    }
    // 3. Stitch holds exactly the intended state.
    let st = sim.snapshot();
    let mut shipped: HashMap<&str, i64> = HashMap::new();
    for l in e.shipments {
        *shipped.entry(l.sku.as_str()).or_default() += l.qty as i64;
    }
    assert_eq!(st.products.len(), e.workload.stock.len(), "product count");
    for (sku, stock) in &e.workload.stock {
        let p = st.products.get(sku).unwrap_or_else(|| panic!("{sku} missing in Stitch"));
        let want = stock - shipped.get(sku.as_str()).copied().unwrap_or(0);
        assert_eq!(p.stock, want, "{sku}: stock");
    }
    let mut by_ref: BTreeMap<&str, u32> = BTreeMap::new();
    for o in st.orders.values() {
        *by_ref.entry(o.po_num.as_str()).or_default() += 1;
        assert!(!o.void, "order {} voided", o.po_num);
    }
    let want_refs: BTreeSet<&str> = e.workload.orders.keys().map(String::as_str).collect();
    assert_eq!(by_ref.keys().copied().collect::<BTreeSet<_>>(), want_refs, "order refs in Stitch");
    for (r, n) in &by_ref {
        assert_eq!(*n, 1, "order {r} exists {n} times in Stitch");
    }
    for o in st.orders.values() {
        let want = &e.workload.orders[&o.po_num];
        let got: BTreeMap<&str, u32> = o.lines.iter().map(|l| (l.sku.as_str(), l.quantity)).collect();
        let want: BTreeMap<&str, u32> = want.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        assert_eq!(got, want, "lines of order {}", o.po_num);
    }
    assert_eq!(st.fulfillments.len(), e.workload.orders.len(), "one fulfillment per order");
    if !e.shipments.is_empty() {
        for f in st.fulfillments.values() {
            assert_eq!(f.state, FulfillmentState::Complete, "fulfillment {} ({}) not complete", f.id, f.order_number);
        }
    }
    let mut by_tracking: BTreeMap<(&str, &str), u32> = BTreeMap::new();
    for s in st.shipments.values() {
        *by_tracking.entry((s.fulfillment_id.as_str(), s.tracking_number.as_str())).or_default() += 1;
    }
    for (k, n) in &by_tracking {
        assert_eq!(*n, 1, "shipment {k:?} recorded {n} times");
    }
    let want_ship: BTreeSet<(&str, &str)> =
        e.shipments.iter().map(|l| (l.fulfillment_id.as_str(), l.tracking.as_str())).collect();
    assert_eq!(by_tracking.keys().copied().collect::<BTreeSet<_>>(), want_ship, "shipments in Stitch");
    let c = sim.counters();
    let applied = c.writes_applied.get("shipments").copied().unwrap_or(0) + e.applied_elsewhere;
    assert_eq!(applied, e.shipments.len() as u64, "shipments applied: {c:?}");
    // 4. Outbound: exactly one order file per fulfillment.
    let mut per_f: BTreeMap<String, u32> = BTreeMap::new();
    for p in inst.outbound_orders() {
        let mut r = csv::Reader::from_path(drop.join("outbound/orders").join(&p)).unwrap();
        let h = r.headers().unwrap().clone();
        let fi = h.iter().position(|x| x == "fulfillment_id").unwrap();
        let ids: BTreeSet<String> = r.records().map(|x| x.unwrap()[fi].to_string()).collect();
        assert_eq!(ids.len(), 1, "{}: one fulfillment per file", p.display());
        *per_f.entry(ids.into_iter().next().unwrap()).or_default() += 1;
    }
    let want_f: BTreeSet<String> = st.fulfillments.keys().map(|k| k.to_string()).collect();
    assert_eq!(per_f.keys().cloned().collect::<BTreeSet<_>>(), want_f, "order files cover every fulfillment");
    assert!(per_f.values().all(|n| *n == 1), "an order file written twice: {per_f:?}");
}

/// Hidden temporary files left in the drop (by writes interrupted by a kill); the drop's
/// ledger marker is hidden too, and meant to stay.
pub fn hidden_leftovers(inst: &Install) -> Vec<PathBuf> {
    let marker = Path::new(stitch_bridge::ledger::marker::MARKER_NAME);
    walk(&inst.drop()).into_iter().filter(|p| is_hidden(p) && p != marker).collect()
}

pub fn start_sim(
    seed: serde_json::Value,
    token: &str,
    faults: FaultConfig,
    state_file: Option<PathBuf>,
    listen: Option<std::net::SocketAddr>,
) -> BackgroundSim {
    let mut o =
        SimOptions { token: token.into(), seed: Some(Seed::Json(seed)), faults, state_file, ..Default::default() };
    if let Some(a) = listen {
        o.listen = a;
    }
    sim::start_in_background(o).unwrap()
}

pub fn rng(seed: u64) -> StdRng {
    StdRng::seed_from_u64(seed)
}

/// Run `run --once --json` until the work is done. Every exit must be 0 (only once nothing
/// is left), 4 (work left pending, with a reason) or `also_ok`; returns the exit codes seen.
pub fn converge(inst: &Install, max_runs: usize, done: impl Fn(&Install) -> bool) -> Vec<i32> {
    let mut codes = Vec::new();
    for _ in 0..max_runs {
        let (code, report, err) = inst.run_json();
        codes.push(code);
        match code {
            0 => {
                assert!(
                    done(inst),
                    "run exited 0 while work is pending: inbound {:?}; report {report}",
                    inst.inbound_left()
                );
                return codes;
            }
            4 => {
                let pending = &report["accounts"][0]["pending"];
                assert!(pending.as_array().is_some_and(|a| !a.is_empty()), "exit 4 names what is pending: {report}");
            }
            other => panic!("unexpected exit {other}; report {report}; stderr:\n{err}"),
        }
    }
    panic!("no convergence after {max_runs} runs: exits {codes:?}");
}

/// Phase 1 (inventory + orders) then phase 2 (shipments built from the order files), each
/// driven by `converge`; `between` runs before each phase's runs.
pub fn whole_loop(
    inst: &Install,
    w: &Workload,
    max_runs: usize,
    mut between: impl FnMut(u32),
) -> (Vec<ShipLine>, Vec<String>, Vec<i32>) {
    inst.put("inbound/inventory", &w.inventory_files);
    inst.put("inbound/orders", &w.order_files);
    let n = w.orders.len();
    between(1);
    let mut codes = converge(inst, max_runs, |i| i.inbound_left().is_empty() && i.outbound_orders().len() == n);
    let ships = shipments_from_outbound(&inst.drop().join("outbound/orders"));
    let files = shipment_files(&ships, 2);
    inst.put("inbound/shipments", &files);
    between(2);
    codes.extend(converge(inst, max_runs, |i| i.inbound_left().is_empty()));
    let inputs = w.inventory_files.iter().chain(&w.order_files).chain(&files).map(|(n, _)| n.clone()).collect();
    (ships, inputs, codes)
}
