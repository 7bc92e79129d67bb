//! The drop's rules at the level of a whole cycle: which files are taken, and what is never
//! overwritten. Real local folder, real SQLite ledger, real HTTP to the simulator.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};
use stitch_bridge::config::Config;
use stitch_bridge::engine::{self, Parts};
use stitch_bridge::sim::{self, BackgroundSim, SimOptions};

const STOCK: &str = "sku,quantity\nDR-1,3\nDR-2,4\n";

struct Env {
    _sim: BackgroundSim,
    dir: tempfile::TempDir,
    config: Config,
}

impl Env {
    fn new(settle_seconds: u64) -> Env {
        let sim = sim::start_in_background(SimOptions { token: "t".into(), ..Default::default() }).unwrap();
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("token"), "t").unwrap();
        let text = format!(
            "[[account]]\nname = \"a\"\ndrop = \"drop\"\nstitch_url = \"{}\"\ntoken_file = \"token\"\nsettle_seconds = {settle_seconds}\n",
            sim.base_url()
        );
        let config = Config::parse(&text, dir.path()).unwrap();
        fs::create_dir_all(dir.path().join("drop/inbound/inventory")).unwrap();
        Env { _sim: sim, dir, config }
    }

    fn drop_path(&self, rel: &str) -> PathBuf {
        self.dir.path().join("drop").join(rel)
    }

    fn put(&self, rel: &str, text: &str, age: Duration) {
        let p = self.drop_path(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(&p, text).unwrap();
        let f = fs::File::options().write(true).open(&p).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    fn cycle(&self) -> engine::RunReport {
        engine::run_cycle(&self.config, &[], Parts { inbound: true, download: false })
    }
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .map(|rd| rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn temp_names_are_never_taken_and_fresh_files_wait_to_settle() {
    let env = Env::new(3600);
    let old = Duration::from_secs(2 * 3600);
    for name in [".hidden.csv", "upload.csv.tmp", "upload.csv.part", "upload.csv.filepart"] {
        env.put(&format!("inbound/inventory/{name}"), STOCK, old);
    }
    // Just written: its size and mtime have not stood still for the settle time yet.
    env.put("inbound/inventory/fresh.csv", STOCK, Duration::ZERO);
    // Untouched for longer than the settle time: taken.
    env.put("inbound/inventory/settled.csv", STOCK, old);

    let report = env.cycle();
    let taken: Vec<&str> = report.accounts[0].files.iter().map(|f| f.path.as_str()).collect();
    assert_eq!(taken, vec!["inbound/inventory/settled.csv"]);
    assert_eq!(
        names(&env.drop_path("inbound/inventory")),
        vec![".hidden.csv", "fresh.csv", "upload.csv.filepart", "upload.csv.part", "upload.csv.tmp"]
    );
    assert!(env.drop_path("results/settled.csv.result.csv").exists());
    // A second poll soon after: the fresh file is still not settled by our clock either.
    assert!(env.cycle().accounts[0].files.is_empty());
}

#[test]
fn results_never_overwrite_and_identical_content_is_detected() {
    let env = Env::new(0);
    // Someone else's file already has the name our result would take.
    env.put("results/stock.csv.result.csv", "not ours\n", Duration::ZERO);
    env.put("inbound/inventory/stock.csv", STOCK, Duration::ZERO);
    let first = env.cycle();
    assert_eq!(first.accounts[0].files[0].state, "archived");
    assert_eq!(fs::read_to_string(env.drop_path("results/stock.csv.result.csv")).unwrap(), "not ours\n");
    let ours = fs::read_to_string(env.drop_path("results/stock.csv.result~2.csv")).unwrap();
    assert!(ours.starts_with("\u{feff}line,key,outcome,remote_id,message\n"), "{ours}");
    assert!(ours.contains(",DR-1,created,"), "{ours}");

    // The same bytes again under the same name: the same file sent again, not processed. Under
    // another name: new information, reconciled as always (here: nothing differs, no write).
    env.put("inbound/inventory/stock.csv", STOCK, Duration::ZERO);
    env.put("inbound/inventory/copy.csv", STOCK, Duration::ZERO);
    let second = env.cycle();
    assert_eq!(second.accounts[0].write_requests, 0, "{:?}", second.accounts[0]);
    for f in &second.accounts[0].files {
        assert_eq!(f.state, "archived");
        let want = if f.path.ends_with("/copy.csv") { "same content as stock.csv" } else { "identical to stock.csv" };
        assert!(f.message.contains(want), "{}: {}", f.path, f.message);
    }
    let copy = fs::read_to_string(env.drop_path("results/copy.csv.result.csv")).unwrap();
    assert!(copy.contains(",DR-1,unchanged,") && copy.contains("same content as stock.csv"), "{copy}");
    // Archived originals never overwrite each other either.
    let day = chrono::Utc::now().format("%Y-%m-%d").to_string();
    assert_eq!(names(&env.drop_path(&format!("archive/{day}"))), vec!["copy.csv", "stock.csv", "stock~2.csv"]);
}

#[test]
fn temp_files_a_killed_run_left_are_removed_and_nothing_else() {
    let env = Env::new(0);
    let old = Duration::from_secs(60);
    // What `write_atomic` leaves when the process dies mid-write.
    env.put("results/.stock.csv.result.csv.Ab12Cd.tmp", "line,key\n", old);
    env.put("outbound/orders/.order-7.csv.Zz9Yy8.tmp", "partial", old);
    // Not ours: the warehouse's own upload in progress, and other hidden files.
    env.put("inbound/inventory/.upload.csv.x1.tmp", STOCK, old);
    env.put("results/.keep", "", old);
    env.cycle();
    assert_eq!(names(&env.drop_path("results")), vec![".keep"]);
    assert!(names(&env.drop_path("outbound/orders")).is_empty());
    assert_eq!(names(&env.drop_path("inbound/inventory")), vec![".upload.csv.x1.tmp"]);
}
