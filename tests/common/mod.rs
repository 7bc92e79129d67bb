//! Shared helpers for the engine tests: a simulator on a loopback port, a temporary drop with a
//! config pointing at it, and readers for what a cycle leaves behind (result and error files,
//! simulator counters and state).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{json, Value};
use stitch_bridge::config::Config;
use stitch_bridge::engine::{self, Parts, RunReport};
use stitch_bridge::sim::{self, state::SimState, BackgroundSim, Counters, Seed, SimOptions};
use stitch_bridge::stitch::wire::FulfillmentState;

pub const ACCOUNT: &str = "acme";
pub const TOKEN: &str = "test-token-acme";

/// Products every test can rely on (no bundles, no orders).
pub fn base_seed() -> Value {
    json!({
        "products": [
            {"sku": "RED", "name": "Red widget", "stock": 50},
            {"sku": "BLUE", "name": "Blue widget", "stock": 20},
            {"sku": "GREEN", "name": "Green widget", "stock": 5},
            {"sku": "GADGET", "name": "Gadget", "stock": 40}
        ],
        "bundles": [
            {"sku": "KIT", "name": "Kit", "components": [{"sku": "RED", "quantity": 1}, {"sku": "GADGET", "quantity": 2}]}
        ]
    })
}

/// One test's world: simulator, drop, ledger and config in a temporary folder.
pub struct Env {
    pub sim: Option<BackgroundSim>,
    pub seed: Value,
    pub base_url: String,
    pub dir: tempfile::TempDir,
    pub drop: PathBuf,
    pub config_path: PathBuf,
    pub config: Config,
}

impl Env {
    pub fn new() -> Env {
        Env::with(base_seed(), "")
    }

    /// `extra` is appended to the account's table (e.g. `"zero_missing = true\n"`).
    pub fn with(seed: Value, extra: &str) -> Env {
        let sim = sim::start_in_background(SimOptions {
            token: TOKEN.into(),
            seed: Some(Seed::Json(seed.clone())),
            ..Default::default()
        })
        .expect("simulator starts");
        let base_url = sim.base_url();
        let dir = tempfile::tempdir().expect("temp dir");
        let drop = dir.path().join("drop");
        std::fs::create_dir_all(&drop).unwrap();
        std::fs::create_dir_all(dir.path().join("secrets")).unwrap();
        std::fs::write(dir.path().join("secrets/acme.token"), TOKEN).unwrap();
        let text = config_text(&base_url, extra);
        let config_path = dir.path().join("stitch-bridge.toml");
        std::fs::write(&config_path, &text).unwrap();
        let config = Config::load(&config_path).expect("config parses");
        Env { sim: Some(sim), seed, base_url, dir, drop, config_path, config }
    }

    pub fn sim(&self) -> &BackgroundSim {
        self.sim.as_ref().expect("simulator running")
    }

    /// Stops the simulator: later requests find nothing listening (connection refused).
    pub fn stop_sim(&mut self) {
        self.sim = None;
    }

    /// A fresh simulator (seed state) on the address the config points at.
    pub fn restart_sim(&mut self) {
        let addr = self.base_url.trim_start_matches("http://").parse().unwrap();
        let opts = SimOptions {
            listen: addr,
            token: TOKEN.into(),
            seed: Some(Seed::Json(self.seed.clone())),
            ..Default::default()
        };
        self.sim = Some(sim::start_in_background(opts).expect("simulator restarts on the same port"));
    }

    /// Writes a file into the drop (parents created).
    pub fn put(&self, rel: &str, content: &str) {
        let p = self.drop.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, content).unwrap();
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.drop.join(rel)
    }

    pub fn exists(&self, rel: &str) -> bool {
        self.drop.join(rel).exists()
    }

    /// Inbound files only: no order download, so nothing gets acknowledged.
    pub fn inbound_only(&self) -> RunReport {
        engine::run_cycle(&self.config, &[], Parts { inbound: true, download: false })
    }

    pub fn cycle(&self) -> RunReport {
        engine::run_cycle(&self.config, &[], Parts::ALL)
    }

    pub fn counters(&self) -> Counters {
        self.sim().counters()
    }

    pub fn state(&self) -> SimState {
        self.sim().snapshot()
    }

    /// `POST /_admin/<path>` with a JSON body; panics unless it succeeds.
    pub fn admin(&self, path: &str, body: Value) {
        let url = format!("{}/_admin/{path}", self.base_url);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let r = reqwest::Client::new()
                .post(&url)
                .header(sim::ADMIN_TOKEN_HEADER, self.sim().admin_token())
                .json(&body)
                .send()
                .await
                .expect("admin request");
            assert!(r.status().is_success(), "admin {path}: {}", r.status());
        });
    }

    /// An authenticated API request straight to the simulator, as another client would make.
    pub fn api(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let url = format!("{}{path}", self.base_url);
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        rt.block_on(async {
            let mut req = reqwest::Client::new()
                .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), &url)
                .header("access_token", TOKEN);
            if let Some(b) = body {
                req = req.json(&b);
            }
            let r = req.send().await.expect("api request");
            let status = r.status().as_u16();
            let v = r.json::<Value>().await.unwrap_or(Value::Null);
            (status, v)
        })
    }

    /// Replaces the simulator's fault configuration.
    pub fn faults(&self, config: Value) {
        self.admin("faults", config);
    }

    /// Rows of `results/<name>.result.csv`, keyed by column name.
    pub fn result(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        read_csv(&self.path(&format!("results/{name}.result.csv")))
    }

    /// Rows of `errors/<name>.errors.csv`, keyed by column name (BOM stripped).
    pub fn errors(&self, name: &str) -> Vec<BTreeMap<String, String>> {
        read_csv(&self.path(&format!("errors/{name}.errors.csv")))
    }

    /// Names of the files in a drop folder, sorted.
    pub fn list(&self, rel: &str) -> Vec<String> {
        let mut v: Vec<String> = match std::fs::read_dir(self.drop.join(rel)) {
            Ok(rd) => rd.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect(),
            Err(_) => Vec::new(),
        };
        v.sort();
        v
    }

    /// Files archived today under `archive/<date>/`.
    pub fn archived(&self) -> Vec<String> {
        let mut out = Vec::new();
        for d in self.list("archive") {
            out.extend(self.list(&format!("archive/{d}")));
        }
        out.sort();
        out
    }

    /// Runs the built binary with this env's config.
    pub fn bin(&self, args: &[&str]) -> Output {
        run_bin(&self.config_path, args)
    }

    /// Sum of write requests the simulator saw (POST/PUT except the Standard API read).
    pub fn write_requests(&self) -> u64 {
        write_requests(&self.counters())
    }

    /// The one fulfillment of the order with this `po_num`.
    pub fn fulfillment_of(&self, po: &str) -> Option<sim::state::FulfillmentRec> {
        let st = self.state();
        let order = st.orders.values().find(|o| o.po_num == po)?;
        let fid = order.fulfillment_id?;
        st.fulfillments.get(&fid).cloned()
    }

    pub fn fulfillment_state(&self, po: &str) -> Option<FulfillmentState> {
        self.fulfillment_of(po).map(|f| f.state)
    }
}

pub fn config_text(base_url: &str, extra: &str) -> String {
    format!(
        "[ledger]\npath = \"state/ledger.sqlite\"\n\n[[account]]\nname = \"{ACCOUNT}\"\ndrop = \"drop\"\nstitch_url = \"{base_url}\"\n\
         token_file = \"secrets/acme.token\"\nsettle_seconds = 0\nbackoff_ms = 5\nmax_retries = 3\n{extra}"
    )
}

pub fn run_bin(config: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("STITCH_BRIDGE_CONFIG")
        .env("STITCH_BRIDGE_LOG", "warn")
        .output()
        .expect("binary runs")
}

pub fn write_requests(c: &Counters) -> u64 {
    c.requests.iter().filter(|(k, _)| is_write_request(k)).map(|(_, n)| *n).sum()
}

/// `METHOD /template` keys that change Stitch.
pub fn is_write_request(key: &str) -> bool {
    (key.starts_with("POST ") || key.starts_with("PUT ")) && key != "POST /api2/v2/SalesOrders"
}

pub fn read_csv(path: &Path) -> Vec<BTreeMap<String, String>> {
    read_csv_with(path, b',')
}

/// `read_csv` for a file in another delimiter (error files follow the partner's).
pub fn read_csv_with(path: &Path, delimiter: u8) -> Vec<BTreeMap<String, String>> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let bytes = bytes.strip_prefix(b"\xef\xbb\xbf".as_slice()).unwrap_or(&bytes);
    let mut r = csv::ReaderBuilder::new().flexible(true).delimiter(delimiter).from_reader(bytes);
    let h = r.headers().unwrap().clone();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            h.iter().zip(rec.iter()).map(|(k, v)| (k.to_string(), v.to_string())).collect()
        })
        .collect()
}

/// The single account report of a one-account run.
pub fn acct(r: &RunReport) -> &engine::AccountReport {
    assert_eq!(r.accounts.len(), 1);
    &r.accounts[0]
}

/// Outcome per key in a result file.
pub fn outcomes(rows: &[BTreeMap<String, String>]) -> Vec<(String, String)> {
    rows.iter().map(|r| (r["key"].clone(), r["outcome"].clone())).collect()
}

pub const ORDERS_HEADER: &str = "order_ref,order_date,ship_name,ship_address1,ship_city,ship_state,ship_zip,ship_country,shipping_speed,sku,quantity,price,currency,action";

/// One orders-file row for a create (US address).
pub fn order_row(order_ref: &str, sku: &str, qty: u32, price: &str) -> String {
    format!("{order_ref},2024-03-15,Alice Example,1 Main St,Springfield,IL,62701,US,Standard,{sku},{qty},{price},USD,create")
}

pub fn cancel_row(order_ref: &str) -> String {
    format!("{order_ref},,,,,,,,,,,,,cancel")
}

pub fn orders_file(rows: &[String]) -> String {
    let mut s = String::from(ORDERS_HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

pub const SHIPMENTS_HEADER: &str = "fulfillment_id,order_ref,sku,quantity,shipped_at,carrier,tracking_number";

/// One shipments-file row; `fid` or `order_ref` may be empty.
pub fn ship_row(fid: &str, order_ref: &str, sku: &str, qty: u32, tracking: &str) -> String {
    format!("{fid},{order_ref},{sku},{qty},2024-03-16T10:00:00Z,UPS,{tracking}")
}

pub fn shipments_file(rows: &[String]) -> String {
    let mut s = String::from(SHIPMENTS_HEADER);
    s.push('\n');
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

/// On-hand stock of `sku` in the simulator.
pub fn stock(env: &Env, sku: &str) -> i64 {
    env.state().products.values().find(|p| p.sku == sku).unwrap().stock
}

/// `bytes` gzipped.
pub fn gz(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Writes binary content into the drop (parents created).
pub fn put_bytes(env: &Env, rel: &str, bytes: &[u8]) {
    let p = env.path(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, bytes).unwrap();
}

/// The codes of an error file's rows.
pub fn codes(rows: &[BTreeMap<String, String>]) -> Vec<String> {
    rows.iter().map(|r| r["code"].clone()).collect()
}
