//! The operator console's test world: a simulator, three accounts seeded by really running
//! `run --once` through it (files accepted, a file with rejected rows and its error file, an
//! account halted by the simulator's 401, an account whose drop is missing), and the console
//! binary started on a free loopback port.
#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::json;
use stitch_bridge::ledger::{FileFilter, FileRow, Ledger};
use stitch_bridge::sim::{self, BackgroundSim, Seed, SimOptions};

pub const SIM_TOKEN: &str = "test-token-acme";
pub const UI_TOKEN: &str = "console-token-for-tests-5b1f";
pub const UI_TOKEN_ENV: &str = "STITCH_BRIDGE_TEST_UI_TOKEN";
pub const UI_LABEL: &str = "test-operator";
/// A file name that is markup: it must always render as text.
pub const HOSTILE: &str = "<img src=x onerror=alert(1)>.csv";

pub struct World {
    pub sim: BackgroundSim,
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    /// acme's drop.
    pub drop: PathBuf,
}

fn config_text(base_url: &str, ui: bool) -> String {
    let ui = if ui {
        format!("[ui]\ntoken_env = \"{UI_TOKEN_ENV}\"\ntoken_label = \"{UI_LABEL}\"\n\n")
    } else {
        String::new()
    };
    let account = |name: &str, drop: &str, token: &str| {
        format!(
            "[[account]]\nname = \"{name}\"\ndrop = \"{drop}\"\nstitch_url = \"{base_url}\"\ntoken_file = \"{token}\"\n\
             settle_seconds = 0\nbackoff_ms = 5\nmax_retries = 1\n\n"
        )
    };
    format!(
        "[ledger]\npath = \"state/ledger.sqlite\"\n\n{ui}{}{}{}",
        account("acme", "drop", "secrets/acme.token"),
        account("halty", "drop-halty", "secrets/wrong.token"),
        account("lost", "drop-lost", "secrets/acme.token"),
    )
}

pub fn run_bin(config: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .arg("--config")
        .arg(config)
        .args(args)
        .env_remove("STITCH_BRIDGE_CONFIG")
        .env("STITCH_BRIDGE_LOG", "warn")
        .output()
        .expect("binary runs")
}

impl World {
    pub fn seeded() -> World {
        let seed = json!({
            "products": [
                {"sku": "RED", "name": "Red widget", "stock": 50},
                {"sku": "BLUE", "name": "Blue widget", "stock": 20}
            ]
        });
        let sim = sim::start_in_background(SimOptions {
            token: SIM_TOKEN.into(),
            seed: Some(Seed::Json(seed)),
            ..Default::default()
        })
        .expect("simulator starts");
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("secrets")).unwrap();
        std::fs::write(root.join("secrets/acme.token"), SIM_TOKEN).unwrap();
        std::fs::write(root.join("secrets/wrong.token"), "not-the-token").unwrap();
        let drop = root.join("drop");
        let put = |rel: &str, text: &str| {
            let p = root.join(rel);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, text).unwrap();
        };
        put("drop/inbound/inventory/stock.csv", "sku,quantity\nRED,44\n");
        put(&format!("drop/inbound/inventory/{HOSTILE}"), "sku,quantity\nRED,45\nBLUE,abc\n");
        put(
            "drop/inbound/orders/orders.csv",
            "order_ref,order_date,ship_name,ship_address1,ship_city,ship_state,ship_zip,ship_country,shipping_speed,sku,quantity,price,currency,action\n\
             PO-7,2026-01-05,Ann,1 Main St,Springfield,IL,62701,US,standard,RED,1,9.99,USD,create\n",
        );
        put("drop-halty/inbound/inventory/inv.csv", "sku,quantity\nBLUE,3\n");
        let config = root.join("stitch-bridge.toml");
        std::fs::write(&config, config_text(&sim.base_url(), true)).unwrap();
        // One file per run keeps the order deterministic: stock.csv first, then the other.
        let out = run_bin(&config, &["run", "--once"]);
        assert!(out.status.code().is_some_and(|c| c != 0 && c != 2), "{}", String::from_utf8_lossy(&out.stderr));
        let w = World { sim, dir, config, drop };
        let l = w.ledger();
        assert!(l.halted("halty").unwrap().is_some(), "halty halted by the simulator's 401");
        assert!(l.attention("lost").unwrap().is_some_and(|r| r.announced()), "lost needs attention");
        let hostile = w.file(HOSTILE);
        assert!(hostile.rejected > 0 && hostile.errors_path.is_some(), "{hostile:?}");
        w
    }

    pub fn ledger(&self) -> Ledger {
        Ledger::open(&self.dir.path().join("state/ledger.sqlite")).unwrap()
    }

    /// The ledger's row for the file whose path ends with `name`.
    pub fn file(&self, name: &str) -> FileRow {
        let rows = self.ledger().console_files(&FileFilter::default(), 1, 1000).unwrap().rows;
        rows.into_iter().find(|f| f.path.ends_with(&format!("/{name}"))).unwrap_or_else(|| panic!("no file {name}"))
    }

    /// A config like the seeded one without `[ui]` (no console token).
    pub fn config_without_token(&self) -> PathBuf {
        let p = self.dir.path().join("no-token.toml");
        std::fs::write(&p, config_text(&self.sim.base_url(), false)).unwrap();
        p
    }

    pub fn console(&self, listen: &str) -> Console {
        Console::start(&self.config, listen)
    }
}

/// A running `stitch-bridge ui`; killed when dropped.
pub struct Console {
    child: Child,
    pub base: String,
    /// Its stderr so far (read after it exits, or by `stderr_line`).
    stderr: Option<std::process::ChildStderr>,
}

impl Console {
    pub fn start(config: &Path, listen: &str) -> Console {
        let mut child = Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
            .arg("--config")
            .arg(config)
            .args(["ui", "--listen", listen])
            .env_remove("STITCH_BRIDGE_CONFIG")
            .env("STITCH_BRIDGE_LOG", "warn")
            .env(UI_TOKEN_ENV, UI_TOKEN)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("console starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let addr = line.trim().strip_prefix("console on http://").and_then(|r| r.strip_suffix('/'));
        let Some(addr) = addr else {
            let _ = child.kill();
            let mut err = String::new();
            let _ = std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err);
            panic!("the console did not say where it listens: {line:?} {err}");
        };
        // 0.0.0.0 is reached through loopback.
        let base = format!("http://{}", addr.replace("0.0.0.0", "127.0.0.1"));
        let stderr = child.stderr.take();
        Console { child, base, stderr }
    }

    /// The first of the console's first lines on stderr that contains `needle`, if any.
    pub fn stderr_with(&mut self, needle: &str) -> Option<String> {
        let mut r = BufReader::new(self.stderr.take()?);
        for _ in 0..10 {
            let mut line = String::new();
            if r.read_line(&mut line).ok()? == 0 {
                return None;
            }
            if line.contains(needle) {
                return Some(line);
            }
        }
        None
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Console {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
