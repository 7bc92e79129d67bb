//! Helpers for whole-cycle tests: a simulator, a config for a local or sFTP drop, and a
//! normalised picture of the drop and the simulator to compare runs with.
//! Included with `#[path]` by the cycle and watch tests (not part of `support/mod.rs`).
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};
use stitch_bridge::config::Config;
use stitch_bridge::sim::{self, faults::FaultConfig, BackgroundSim, Seed, SimOptions};

pub const TOKEN: &str = "cycle-test-token";
pub const SEED: &str = include_str!("../../samples/sim-seed.json");
pub const INVENTORY: &str = include_str!("../../samples/inventory_good.csv");
pub const ORDERS: &str = include_str!("../../samples/orders_good.csv");

pub fn sim_with(faults: FaultConfig) -> BackgroundSim {
    let seed: serde_json::Value = serde_json::from_str(SEED).unwrap();
    sim::start_in_background(SimOptions {
        token: TOKEN.into(),
        seed: Some(Seed::Json(seed)),
        faults,
        ..Default::default()
    })
    .unwrap()
}

pub fn sim() -> BackgroundSim {
    sim_with(FaultConfig::default())
}

/// Writes `stitch-bridge.toml` (one account "wh", token in a file, concurrency 1 so remote ids
/// are assigned in the same order on every run) into `dir`; `extra` is appended to the account.
pub fn write_config(dir: &Path, drop: &str, sim_url: &str, extra: &str) -> PathBuf {
    fs::create_dir_all(dir.join("secrets")).unwrap();
    fs::write(dir.join("secrets/token"), TOKEN).unwrap();
    let text = format!(
        "[ledger]\npath = \"state/ledger.sqlite\"\n\n[[account]]\nname = \"wh\"\ndrop = \"{drop}\"\n\
         stitch_url = \"{sim_url}\"\ntoken_file = \"secrets/token\"\nconcurrency = 1\ntimeout_seconds = 10\n{extra}\n"
    );
    let p = dir.join("stitch-bridge.toml");
    fs::write(&p, text).unwrap();
    p
}

pub fn load(p: &Path) -> Config {
    Config::load(p).unwrap()
}

/// Put a file into the drop the way a careful uploader does (temp name, then rename), with an
/// mtime well in the past so a settle time does not delay it.
pub fn drop_file(root: &Path, rel: &str, content: &[u8]) {
    let target = root.join(rel);
    fs::create_dir_all(target.parent().unwrap()).unwrap();
    let tmp = target.with_file_name(format!(".{}.upload", target.file_name().unwrap().to_string_lossy()));
    fs::write(&tmp, content).unwrap();
    let f = fs::File::options().write(true).open(&tmp).unwrap();
    f.set_modified(SystemTime::now() - Duration::from_secs(3600)).unwrap();
    drop(f);
    fs::rename(&tmp, &target).unwrap();
}

/// Every file under `root` (relative, sorted), with date folders under archive/ normalised.
pub fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for de in rd {
            let p = de.unwrap().path();
            if p.is_dir() {
                walk(&p, base, out);
            } else {
                out.push(p.strip_prefix(base).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    walk(root, root, &mut out);
    let mut out: Vec<String> = out
        .into_iter()
        .map(|s| match s.strip_prefix("archive/") {
            Some(rest) => format!("archive/DATE/{}", rest.split_once('/').map_or(rest, |(_, n)| n)),
            None => s,
        })
        .collect();
    out.sort();
    out
}

/// Names that are not ours in flight or an uploader's: a temp file left visible would show here.
pub fn visible_temp_files(root: &Path) -> Vec<String> {
    tree(root)
        .into_iter()
        .filter(|p| {
            let n = p.rsplit('/').next().unwrap();
            !n.starts_with('.') && (n.ends_with(".tmp") || n.contains(".part"))
        })
        .collect()
}

/// Content of every result, error and outbound file (what the warehouse sees), by path.
pub fn outputs(root: &Path) -> Vec<(String, String)> {
    let mut v = Vec::new();
    for rel in tree(root) {
        if rel.starts_with("results/") || rel.starts_with("errors/") || rel.starts_with("outbound/") {
            let text = fs::read_to_string(root.join(&rel)).unwrap();
            // Timestamps the simulator stamps on new objects differ from run to run.
            let text: Vec<String> = text
                .lines()
                .map(|l| {
                    l.split(',')
                        .map(|f| if chrono::DateTime::parse_from_rfc3339(f).is_ok() { "TIME" } else { f })
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .collect();
            v.push((rel, text.join("\n")));
        }
    }
    v
}

/// What Stitch ended up holding, without timestamps.
pub fn sim_picture(s: &BackgroundSim) -> String {
    let st = s.snapshot();
    let mut out = String::new();
    for p in st.products.values() {
        out += &format!("product {} stock {}\n", p.sku, p.stock);
    }
    for o in st.orders.values() {
        out += &format!("order {} void={} lines={}\n", o.po_num, o.void, o.lines.len());
    }
    for f in st.fulfillments.values() {
        out += &format!("fulfillment {} {:?} ack={}\n", f.order_number, f.state, f.acknowledged);
    }
    out += &format!("shipments {}\n", st.shipments.len());
    out += &format!("writes {:?}\n", s.counters().writes_applied);
    out
}

/// The warehouse's answer: ship every line of every order file it received.
pub fn shipments_for(outbound: &Path) -> String {
    let mut out = csv::Writer::from_writer(Vec::new());
    out.write_record([
        "fulfillment_id",
        "order_ref",
        "sku",
        "quantity",
        "shipped_at",
        "carrier",
        "service",
        "tracking_number",
    ])
    .unwrap();
    let mut names: Vec<_> = fs::read_dir(outbound).unwrap().map(|e| e.unwrap().path()).collect();
    names.sort();
    for p in names.iter().filter(|p| p.extension().is_some_and(|e| e == "csv")) {
        let mut r = csv::Reader::from_path(p).unwrap();
        let h = r.headers().unwrap().clone();
        let col = |name: &str| h.iter().position(|x| x == name).unwrap();
        let (fi, oi, si, qi) = (col("fulfillment_id"), col("order_ref"), col("sku"), col("quantity"));
        for rec in r.records() {
            let rec = rec.unwrap();
            let tracking = format!("1ZTEST{}", &rec[fi]);
            out.write_record([
                &rec[fi],
                &rec[oi],
                &rec[si],
                &rec[qi],
                "2024-03-16T10:00:00Z",
                "UPS",
                "Ground",
                &tracking,
            ])
            .unwrap();
        }
    }
    String::from_utf8(out.into_inner().unwrap()).unwrap()
}

/// Poll `cond` every 20 ms until it holds or `limit` passes.
pub fn wait_for(limit: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
