//! `stitch-bridge demo`: the whole loop on this machine, with nothing to set up.
//!
//! Starts the simulator on a free loopback port, makes a local drop, and plays both sides:
//! the warehouse drops inventory and orders, the bridge posts them and sends the released
//! fulfillments out as order files, the "warehouse" answers with a shipments file built from
//! those order files, and the bridge completes the fulfillments in Stitch.

use crate::config::Config;
use crate::engine::{self, exit, Parts, RunReport};
use crate::sim::{self, Seed, SimOptions};
use std::fs;
use std::path::{Path, PathBuf};

const SEED: &str = include_str!("../../samples/sim-seed.json");
const INVENTORY: &str = include_str!("../../samples/inventory_good.csv");
const INVENTORY_BROKEN: &str = include_str!("../../samples/inventory_broken.csv");
const ORDERS: &str = include_str!("../../samples/orders_good.csv");

#[derive(clap::Args, Debug)]
pub struct DemoArgs {
    /// Folder for the demo's drop, ledger and config (default: a new temporary folder, kept).
    #[arg(long)]
    pub dir: Option<PathBuf>,
}

fn step(n: u32, text: &str) {
    outln!("\n== {n}. {text}");
}

/// Build the warehouse's answer: ship every line of every order file it received.
fn shipments_for_orders(outbound: &Path) -> std::io::Result<(String, usize)> {
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
    ])?;
    let mut n = 0;
    let mut names: Vec<_> = fs::read_dir(outbound)?.filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    for p in names.iter().filter(|p| p.extension().is_some_and(|e| e == "csv")) {
        let mut r = csv::Reader::from_path(p)?;
        let h = r.headers()?.clone();
        let col = |name: &str| h.iter().position(|x| x == name);
        let (Some(fi), Some(oi), Some(si), Some(qi)) =
            (col("fulfillment_id"), col("order_ref"), col("sku"), col("quantity"))
        else {
            continue;
        };
        let mut shipped_any = false;
        for rec in r.records() {
            let rec = rec?;
            let tracking = format!("1ZDEMO{}", &rec[fi]);
            out.write_record([&rec[fi], &rec[oi], &rec[si], &rec[qi], &now, "UPS", "Ground", &tracking])?;
            shipped_any = true;
        }
        n += shipped_any as usize;
    }
    let bytes = out.into_inner().map_err(|e| e.into_error())?;
    Ok((String::from_utf8_lossy(&bytes).into_owned(), n))
}

fn summarize(report: &RunReport) {
    crate::cli::run::print_report(report);
}

pub fn run(args: &DemoArgs) -> i32 {
    match demo(args) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            exit::USAGE
        }
    }
}

fn demo(args: &DemoArgs) -> anyhow::Result<i32> {
    let dir = match &args.dir {
        Some(d) => {
            fs::create_dir_all(d)?;
            d.clone()
        }
        None => tempfile::Builder::new().prefix("stitch-bridge-demo-").tempdir()?.keep(),
    };
    let token = format!("demo-{:016x}", rand::random::<u64>());
    let seed: serde_json::Value = serde_json::from_str(SEED)?;
    let sim = sim::start_in_background(SimOptions {
        token: token.clone(),
        seed: Some(Seed::Json(seed)),
        ..Default::default()
    })?;
    outln!("Stitch simulator listening on {}", sim.base_url());

    let drop = dir.join("drop");
    fs::create_dir_all(dir.join("secrets"))?;
    super::write_private(&dir.join("secrets/demo.token"), token.as_bytes(), 0o600)?;
    let config_text = format!(
        "[ledger]\npath = \"state/ledger.sqlite\"\n\n[[account]]\nname = \"demo\"\ndrop = \"drop\"\nstitch_url = \"{}\"\ntoken_file = \"secrets/demo.token\"\nsettle_seconds = 0\n",
        sim.base_url()
    );
    super::write_private(&dir.join("stitch-bridge.toml"), config_text.as_bytes(), 0o640)?;
    let config = Config::load(&dir.join("stitch-bridge.toml")).map_err(|e| anyhow::anyhow!("{e}"))?;
    for d in ["inbound/inventory", "inbound/orders", "inbound/shipments"] {
        fs::create_dir_all(drop.join(d))?;
    }

    step(1, "The warehouse drops its stock list (and one broken file) and three orders");
    fs::write(drop.join("inbound/inventory/stock_2024-03-15.csv"), INVENTORY)?;
    fs::write(drop.join("inbound/inventory/stock_broken.csv"), INVENTORY_BROKEN)?;
    fs::write(drop.join("inbound/orders/orders_2024-03-15.csv"), ORDERS)?;
    let first = engine::run_cycle(&config, &[], Parts::ALL);
    summarize(&first);

    step(2, "The warehouse ships what it received and drops a shipments file");
    let (shipments, n) = shipments_for_orders(&drop.join("outbound/orders"))?;
    fs::write(drop.join("inbound/shipments/shipments_2024-03-16.csv"), shipments)?;
    outln!("  shipments for {n} fulfillments written to inbound/shipments/shipments_2024-03-16.csv");
    let second = engine::run_cycle(&config, &[], Parts::ALL);
    summarize(&second);

    step(3, "Running the same cycle again changes nothing");
    let third = engine::run_cycle(&config, &[], Parts::ALL);
    let writes: u64 = third.accounts.iter().map(|a| a.write_requests).sum();
    outln!("  write requests in the repeat cycle: {writes}");

    let state = sim.snapshot();
    let complete =
        state.fulfillments.values().filter(|f| f.state == crate::stitch::wire::FulfillmentState::Complete).count();
    let open = state.fulfillments.values().filter(|f| f.state == crate::stitch::wire::FulfillmentState::Open).count();
    outln!("\n== Summary");
    outln!(
        "  Stitch now holds {} products, {} sales orders, {} shipments",
        state.products.len(),
        state.orders.len(),
        state.shipments.len()
    );
    outln!("  fulfillments: {complete} complete, {open} still open");
    outln!("  drop:    {}", drop.display());
    outln!("  results: {}", drop.join("results").display());
    outln!("  errors:  {} (open them in a spreadsheet)", drop.join("errors").display());
    outln!("  config:  {} (the simulator stops when the demo ends)", dir.join("stitch-bridge.toml").display());
    let ok = first
        .accounts
        .iter()
        .chain(&second.accounts)
        .all(|a| a.halted.is_none() && a.pending.is_empty() && a.fatal.is_empty())
        && complete > 0
        && open == 0
        && writes == 0;
    Ok(if ok { exit::OK } else { exit::PENDING })
}
