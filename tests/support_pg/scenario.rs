//! Many accounts, each with its own local drop of order files, against one shared simulator:
//! the workload of the multi-worker tests and the scale-out benchmark.
//!
//! Products have no stock, so nothing is released and a cycle's only remote writes are the
//! orders themselves: exactly one `sales_orders` write per input order is the "nothing twice"
//! check.

use std::fs;
use std::path::{Path, PathBuf};
use stitch_bridge::config::Config;
use stitch_bridge::sim::{self, BackgroundSim, Seed, SimOptions};

const HEADER: &str = "order_ref,order_date,ship_name,ship_company,ship_address1,ship_address2,ship_city,ship_state,ship_zip,ship_country,ship_phone,ship_email,shipping_speed,sku,quantity,price,currency,action\n";

pub struct Scenario {
    pub dir: tempfile::TempDir,
    pub sim: BackgroundSim,
    pub accounts: Vec<String>,
    pub files_per_account: usize,
    pub orders_per_file: usize,
    pub config_path: PathBuf,
}

impl Scenario {
    /// `ledger_toml`: the `[ledger]` table; `latency_ms`: added to every simulator answer.
    pub fn build(
        ledger_toml: &str,
        accounts: usize,
        files_per_account: usize,
        orders_per_file: usize,
        latency_ms: u64,
    ) -> Scenario {
        let faults = sim::faults::FaultConfig { latency_ms, ..Default::default() };
        Scenario::build_with_faults(ledger_toml, accounts, files_per_account, orders_per_file, faults)
    }

    /// Like [`Scenario::build`], with the simulator's whole fault configuration.
    pub fn build_with_faults(
        ledger_toml: &str,
        accounts: usize,
        files_per_account: usize,
        orders_per_file: usize,
        faults: sim::faults::FaultConfig,
    ) -> Scenario {
        let seed = serde_json::json!({"products": [
            {"sku": "SKU-A", "name": "A", "stock": 0},
            {"sku": "SKU-B", "name": "B", "stock": 0}
        ]});
        let sim = sim::start_in_background(SimOptions {
            token: "tok".into(),
            seed: Some(Seed::Json(seed)),
            faults,
            ..Default::default()
        })
        .expect("start simulator");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::write(root.join("tok"), "tok").unwrap();
        let mut text = ledger_toml.to_string();
        let names: Vec<String> = (0..accounts).map(|i| format!("acct{i:03}")).collect();
        for name in &names {
            text += &format!(
                "[[account]]\nname = \"{name}\"\ndrop = \"drops/{name}\"\nstitch_url = \"{}\"\ntoken_file = \"tok\"\nsettle_seconds = 0\n\n",
                sim.base_url()
            );
            let inbound = root.join("drops").join(name).join("inbound/orders");
            fs::create_dir_all(&inbound).unwrap();
            for f in 0..files_per_account {
                let mut csv = HEADER.to_string();
                for k in 0..orders_per_file {
                    csv += &format!(
                        "PO-{name}-{f}-{k},2024-03-15,Ann Example,,1 Main St,,Springfield,IL,62701,US,,,Standard,SKU-A,1,9.99,USD,create\n"
                    );
                }
                fs::write(inbound.join(format!("orders_{f}.csv")), csv).unwrap();
            }
        }
        let config_path = root.join("stitch-bridge.toml");
        fs::write(&config_path, text).unwrap();
        {
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(&config_path, fs::Permissions::from_mode(0o600)).unwrap();
        }
        Scenario { dir, sim, accounts: names, files_per_account, orders_per_file, config_path }
    }

    pub fn config(&self) -> Config {
        Config::load(&self.config_path).unwrap_or_else(|e| panic!("{e}"))
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    fn count(&self, rel: &str) -> usize {
        self.accounts
            .iter()
            .map(|a| fs::read_dir(self.root().join("drops").join(a).join(rel)).map(|d| d.count()).unwrap_or(0))
            .sum()
    }

    pub fn files(&self) -> usize {
        self.accounts.len() * self.files_per_account
    }

    pub fn orders(&self) -> usize {
        self.files() * self.orders_per_file
    }

    /// Files still in `inbound/orders/` over all accounts.
    pub fn inbound_left(&self) -> usize {
        self.count("inbound/orders")
    }

    /// Every archived file name over all accounts (a second copy would carry a `~N` suffix).
    pub fn archived(&self) -> Vec<String> {
        let mut out = Vec::new();
        for a in &self.accounts {
            let dir = self.root().join("drops").join(a).join("archive");
            let mut stack = vec![dir];
            while let Some(d) = stack.pop() {
                for e in fs::read_dir(&d).into_iter().flatten().flatten() {
                    let p = e.path();
                    if p.is_dir() {
                        stack.push(p);
                    } else {
                        out.push(format!("{a}/{}", p.file_name().unwrap().to_string_lossy()));
                    }
                }
            }
        }
        out.sort();
        out
    }

    /// The simulator's orders by reference, sorted (duplicates kept, so they show).
    pub fn sim_order_refs(&self) -> Vec<String> {
        let mut refs: Vec<String> = self.sim.snapshot().orders.values().map(|o| o.po_num.clone()).collect();
        refs.sort();
        refs
    }

    pub fn sales_order_writes(&self) -> u64 {
        self.sim.counters().writes_applied.get("sales_orders").copied().unwrap_or(0)
    }
}
