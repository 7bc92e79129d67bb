//! A ledger written by release 0.1 keeps working: `tests/fixtures/ledger-v1` holds the ledger,
//! drops and simulator states that release left when it was SIGKILLed in the middle of remote
//! writes (`make.sh` there says how, account by account). Today's code must finish that work
//! with no write made twice.

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use stitch_bridge::engine::exit;
use stitch_bridge::sim::{self, BackgroundSim, SimOptions};

const BIN: &str = env!("CARGO_BIN_EXE_stitch-bridge");
const ACCOUNTS: [&str; 4] = ["inv", "ord", "shp", "sts"];

fn copy_tree(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for e in fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let dest = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_tree(&e.path(), &dest);
        } else {
            fs::copy(e.path(), &dest).unwrap();
        }
    }
}

struct Fixture {
    dir: tempfile::TempDir,
    sims: BTreeMap<&'static str, BackgroundSim>,
}

impl Fixture {
    fn open() -> Fixture {
        let src = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/ledger-v1");
        let dir = tempfile::tempdir().unwrap();
        copy_tree(&src, dir.path());
        let mut config = fs::read_to_string(dir.path().join("stitch-bridge.toml.in")).unwrap();
        let mut sims = BTreeMap::new();
        for a in ACCOUNTS {
            let s = sim::start_in_background(SimOptions {
                token: "fixture-token".into(),
                state_file: Some(dir.path().join(format!("sim-{a}.json"))),
                ..Default::default()
            })
            .unwrap();
            config = config.replace(&format!("STITCH_URL_{a}\""), &format!("{}\"", s.base_url()));
            sims.insert(a, s);
        }
        let cfg = dir.path().join("stitch-bridge.toml");
        fs::write(&cfg, config).unwrap();
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&cfg, fs::Permissions::from_mode(0o600)).unwrap();
        Fixture { dir, sims }
    }

    fn run(&self) -> (i32, serde_json::Value, String) {
        let out = Command::new(BIN)
            .current_dir(self.dir.path())
            .args(["--config", "stitch-bridge.toml", "run", "--once", "--json"])
            .env("FIXTURE_TOKEN", "fixture-token")
            .env("STITCH_BRIDGE_LOG", "warn")
            .output()
            .unwrap();
        let report = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out.status.code().unwrap_or(-1), report, String::from_utf8_lossy(&out.stderr).into_owned())
    }

    fn intents(&self, state: &str) -> Vec<(String, String)> {
        let c = rusqlite::Connection::open(self.dir.path().join("state/ledger.sqlite")).unwrap();
        let mut q = c.prepare("SELECT account, key FROM intents WHERE state = ?1 ORDER BY id").unwrap();
        q.query_map([state], |r| Ok((r.get(0)?, r.get(1)?))).unwrap().map(|r| r.unwrap()).collect()
    }

    fn files(&self, account: &str, folder: &str) -> Vec<String> {
        let d = self.dir.path().join(format!("drop-{account}/{folder}"));
        let mut v: Vec<String> = match fs::read_dir(d) {
            Ok(r) => r.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        v.retain(|n| !n.starts_with('.'));
        v.sort();
        v
    }
}

#[test]
fn a_release_0_1_ledger_left_by_kills_is_finished_without_duplicates() {
    let f = Fixture::open();
    let pending_before = f.intents("pending");
    for a in ACCOUNTS {
        assert!(pending_before.iter().any(|(acct, _)| acct == a), "the fixture leaves {a} with pending writes");
    }
    let orders_sent_before = f.files("sts", "outbound/orders");
    let shipments_before = f.sims["shp"].snapshot().shipments.len();

    let (code, report, err) = f.run();
    // The samples hold an order Stitch cannot release (PO-1003) and the shipments for it:
    // those rows are rejected, everything else is applied.
    assert_eq!(code, exit::REJECTED, "{err}\n{report}");
    assert!(f.intents("pending").is_empty(), "every crash-left write is resolved: {:?}", f.intents("pending"));
    for a in ACCOUNTS {
        assert!(f.files(a, "inbound/inventory").is_empty() && f.files(a, "inbound/orders").is_empty(), "{a}");
        assert!(f.files(a, "inbound/shipments").is_empty(), "{a}");
    }

    // inv: the upsert had landed; the stock is the file's and nothing was written again.
    let inv = &f.sims["inv"];
    let file = fs::read_to_string(
        f.dir
            .path()
            .join("drop-inv/archive")
            .read_dir()
            .unwrap()
            .next()
            .unwrap()
            .unwrap()
            .path()
            .join("inventory_good.csv"),
    )
    .unwrap();
    for line in file.lines().skip(1) {
        let mut cells = line.split(',');
        let (sku, qty) = (cells.next().unwrap(), cells.next().unwrap().parse::<i64>().unwrap());
        assert_eq!(inv.snapshot().products[sku].stock, qty, "{sku}");
    }
    assert_eq!(inv.counters().writes_applied.get("products").copied().unwrap_or(0), 0, "{:?}", inv.counters());

    // ord: PO-1001 had landed before the kill, PO-1002 had not; each exists once. Stitch
    // refuses PO-1003 (as it did for shp and sts), so it exists not at all.
    let ord = f.sims["ord"].snapshot();
    for (po, want) in [("PO-1001", 1), ("PO-1002", 1), ("PO-1003", 0)] {
        let n = ord.orders.values().filter(|o| o.po_num == po).count();
        assert_eq!(n, want, "{po} in Stitch");
    }

    // shp: the shipments post had landed; no shipment is posted twice or refused as a duplicate.
    let shp = &f.sims["shp"];
    let s = shp.snapshot();
    let mut seen = std::collections::BTreeSet::new();
    for sh in s.shipments.values() {
        assert!(seen.insert((sh.fulfillment_id.clone(), sh.tracking_number.clone())), "shipment twice: {sh:?}");
    }
    assert_eq!(s.shipments.len(), shipments_before, "the landed shipments are confirmed, not posted again");
    assert_eq!(shp.counters().duplicate_shipments_refused, 0);

    // sts: the hanging status updates are set now; no order file is written again.
    let sts = f.sims["sts"].snapshot();
    for fid in [9u64, 17, 23] {
        assert_eq!(sts.fulfillments[&fid].status, "Sent to warehouse", "fulfillment {fid}");
    }
    assert_eq!(f.files("sts", "outbound/orders"), orders_sent_before);

    // A further run has nothing left to write.
    let (code, report, err) = f.run();
    assert_eq!(code, exit::OK, "{err}");
    for a in report["accounts"].as_array().unwrap() {
        assert_eq!(a["write_requests"].as_u64(), Some(0), "{report}");
    }
}
