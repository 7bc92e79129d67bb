//! Inventory sync and shipments against the in-process simulator (issue 3), 20 ms latency on
//! every API request, concurrency 8, SQLite ledger, local drop.
//!
//! 1. Inventory: Stitch pre-seeded with 100,000 SKUs; a 100,000-row inventory file with 1% of
//!    quantities changed; one `run_cycle`. Reports the write requests (minimum ⌈changed/500⌉)
//!    and the wall time.
//! 2. Shipments: 10,000 one-line orders seeded (one fulfillment each); a download cycle writes
//!    10,000 order files (without latency: setup); the shipments file is built from them as the
//!    demo does; then, with latency, the shipments cycle is timed (inbound only), and the
//!    download half of a `run --once` separately. Requests per endpoint come from the simulator.
//!
//! `cargo bench --bench sync [-- --quick]`; sizes: `BENCH_SKUS`, `BENCH_SHIPMENTS`,
//! `BENCH_LATENCY_MS`.

mod common;

use common::{note, row};
use serde_json::json;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};
use stitch_bridge::config::Config;
use stitch_bridge::engine::{self, Parts};
use stitch_bridge::sim::{self, faults::FaultConfig, Seed, SimOptions};

const CONCURRENCY: usize = 8;

fn config(dir: &Path, url: &str, token: &str) -> Config {
    fs::create_dir_all(dir.join("secrets")).unwrap();
    fs::write(dir.join("secrets/bench.token"), token).unwrap();
    let text = format!(
        "[ledger]\npath = \"state/ledger.sqlite\"\n\n[[account]]\nname = \"bench\"\ndrop = \"drop\"\nstitch_url = \"{url}\"\n\
         token_file = \"secrets/bench.token\"\nsettle_seconds = 0\nconcurrency = {CONCURRENCY}\n"
    );
    fs::write(dir.join("stitch-bridge.toml"), text).unwrap();
    for d in ["inbound/inventory", "inbound/orders", "inbound/shipments"] {
        fs::create_dir_all(dir.join("drop").join(d)).unwrap();
    }
    Config::load(&dir.join("stitch-bridge.toml")).expect("bench config")
}

fn check(report: &engine::RunReport, what: &str) {
    for a in &report.accounts {
        assert!(a.halted.is_none() && a.pending.is_empty() && a.fatal.is_empty(), "{what}: {a:?}");
        assert!(a.rejected_records() == 0, "{what}: rejected records: {:?}", a.files);
    }
}

/// Requests by endpoint, largest first, as `N METHOD path` pairs.
fn breakdown(c: &sim::Counters) -> String {
    let mut v: Vec<_> = c.requests.iter().collect();
    v.sort_by(|a, b| b.1.cmp(a.1));
    v.iter().map(|(k, n)| format!("{n} {k}")).collect::<Vec<_>>().join(", ")
}

fn inventory(latency: u64) {
    let skus = common::size("BENCH_SKUS", 100_000, 10_000);
    let changed_every = 100; // 1%
    let products: Vec<_> = (0..skus)
        .map(|i| json!({"sku": format!("SKU-{i:07}"), "name": format!("Product {i}"), "stock": (i * 7) % 1000}))
        .collect();
    let token = "bench-token".to_string();
    let sim = sim::start_in_background(SimOptions {
        token: token.clone(),
        seed: Some(Seed::Json(json!({ "products": products }))),
        faults: FaultConfig { latency_ms: latency, ..Default::default() },
        ..Default::default()
    })
    .expect("start simulator");
    let tmp = tempfile::Builder::new().prefix("bench-inventory-").tempdir().unwrap();
    let cfg = config(tmp.path(), &sim.base_url(), &token);
    let mut csv = String::with_capacity(skus * 24);
    csv.push_str("sku,quantity\n");
    let mut changed = 0;
    for i in 0..skus {
        let mut q = (i * 7) % 1000;
        if i % changed_every == 0 {
            q += 1;
            changed += 1;
        }
        csv.push_str(&format!("SKU-{i:07},{q}\n"));
    }
    fs::write(tmp.path().join("drop/inbound/inventory/stock.csv"), csv).unwrap();
    let started = Instant::now();
    let report = engine::run_cycle(&cfg, &[], Parts::ALL);
    let wall = started.elapsed();
    check(&report, "inventory cycle");
    let c = sim.counters();
    let writes = c.requests.get(&format!("POST {}", stitch_bridge::stitch::wire::PRODUCTS)).copied().unwrap_or(0);
    let applied = c.writes_applied.get("products").copied().unwrap_or(0);
    assert_eq!(applied, changed as u64, "every changed SKU written once, nothing else");
    let min = (changed as u64).div_ceil(stitch_bridge::stitch::wire::MAX_PRODUCTS_PER_REQUEST as u64);
    let total: u64 = c.requests.values().sum();
    println!("inventory: {skus} SKUs, {changed} changed, latency {latency} ms: {writes} write requests, {total} requests in all, {:.2} s", wall.as_secs_f64());
    println!("  requests: {}", breakdown(&c));
    let k = if skus.is_multiple_of(1000) { format!("{}k", skus / 1000) } else { skus.to_string() };
    row(
        &format!("inventory sync: {k} SKUs, 1% changed, {latency} ms latency: write requests"),
        &format!("{writes} writes ({total} requests, {:.2} s)", wall.as_secs_f64()),
        &format!("minimum ceil({changed}/500) = {min}"),
        &format!("{:.2}x", writes as f64 / min as f64),
        &format!("= {min}"),
        Some(writes == min),
    );
}

/// The warehouse's answer, as the demo builds it: every line of every order file shipped.
fn shipments_for_orders(outbound: &Path) -> (String, usize) {
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
    let mut names: Vec<_> = fs::read_dir(outbound).unwrap().filter_map(|e| e.ok()).map(|e| e.path()).collect();
    names.sort();
    let mut n = 0;
    for p in names.iter().filter(|p| p.extension().is_some_and(|e| e == "csv")) {
        let mut r = csv::Reader::from_path(p).unwrap();
        let h = r.headers().unwrap().clone();
        let col = |name: &str| h.iter().position(|x| x == name).unwrap();
        let (fi, oi, si, qi) = (col("fulfillment_id"), col("order_ref"), col("sku"), col("quantity"));
        for rec in r.records() {
            let rec = rec.unwrap();
            let tracking = format!("1ZBENCH{}", &rec[fi]);
            out.write_record([
                &rec[fi],
                &rec[oi],
                &rec[si],
                &rec[qi],
                "2024-05-02T10:00:00Z",
                "UPS",
                "Ground",
                &tracking,
            ])
            .unwrap();
        }
        n += 1;
    }
    (String::from_utf8(out.into_inner().unwrap()).unwrap(), n)
}

fn shipments(latency: u64) {
    let n = common::size("BENCH_SHIPMENTS", 10_000, 1_000);
    let products: Vec<_> = (0..100)
        .map(|i| json!({"sku": format!("SHIP-{i:03}"), "name": format!("Item {i}"), "stock": 1_000_000}))
        .collect();
    let orders: Vec<_> = (0..n)
        .map(|i| {
            json!({
                "local_id": format!("B{i:06}"), "po_num": format!("B{i:06}"), "order_date": "2024-05-01T09:30:00Z",
                "total": "10.00", "currency_iso": "USD", "shipping_speed": "Standard",
                "line_items": [{"sku": format!("SHIP-{:03}", i % 100), "quantity": "1", "price": "10.00"}],
                "shipping_address": {"contact": format!("Customer {i}"), "street1": "1 Main St", "city": "Portland",
                                     "state": "OR", "zip": "97201", "country_iso": "US"}
            })
        })
        .collect();
    let token = "bench-token".to_string();
    let sim = sim::start_in_background(SimOptions {
        token: token.clone(),
        seed: Some(Seed::Json(json!({ "products": products, "sales_orders": orders }))),
        ..Default::default()
    })
    .expect("start simulator");
    let tmp = tempfile::Builder::new().prefix("bench-shipments-").tempdir().unwrap();
    let cfg = config(tmp.path(), &sim.base_url(), &token);
    // Setup, without latency: the bridge downloads the released fulfillments as order files.
    let t = Instant::now();
    let down = engine::run_cycle(&cfg, &[], Parts { inbound: false, download: true });
    check(&down, "download cycle");
    let sent: u64 = down.accounts.iter().map(|a| a.orders_sent).sum();
    assert_eq!(sent, n as u64, "every order downloaded");
    let (file, files) = shipments_for_orders(&tmp.path().join("drop/outbound/orders"));
    assert_eq!(files, n);
    println!(
        "shipments: setup: {n} orders downloaded as order files in {:.1} s (no latency)",
        t.elapsed().as_secs_f64()
    );
    fs::write(tmp.path().join("drop/inbound/shipments/shipments.csv"), file).unwrap();
    let faults = json!({ "latency_ms": latency }).to_string();
    assert_eq!(
        common::http_post_json(sim.addr(), "/_admin/faults", sim.admin_token(), &faults).unwrap(),
        200,
        "set latency"
    );
    assert_eq!(common::http_post_json(sim.addr(), "/_admin/reset-counters", sim.admin_token(), "").unwrap(), 204);

    let t = Instant::now();
    let report = engine::run_cycle(&cfg, &[], Parts { inbound: true, download: false });
    let wall = t.elapsed();
    check(&report, "shipments cycle");
    let c1 = sim.counters();
    assert_eq!(common::http_post_json(sim.addr(), "/_admin/reset-counters", sim.admin_token(), "").unwrap(), 204);
    let t = Instant::now();
    let report2 = engine::run_cycle(&cfg, &[], Parts { inbound: false, download: true });
    let wall2 = t.elapsed();
    check(&report2, "download half");
    let c2 = sim.counters();
    let state = sim.snapshot();
    let complete = state
        .fulfillments
        .values()
        .filter(|f| f.state == stitch_bridge::stitch::wire::FulfillmentState::Complete)
        .count();
    assert_eq!(complete, n, "every fulfillment completed");
    assert_eq!(state.shipments.len(), n, "one shipment per fulfillment, none twice");

    let total1: u64 = c1.requests.values().sum();
    let total2: u64 = c2.requests.values().sum();
    let rate = n as f64 / wall.as_secs_f64();
    let rate_full = n as f64 / (wall + wall2).as_secs_f64();
    // What concurrency and latency alone allow for the requests made.
    let floor = Duration::from_millis(latency) * (total1 as u32).div_ceil(CONCURRENCY as u32);
    println!(
        "shipments: {n} shipments, concurrency {CONCURRENCY}, latency {latency} ms: shipments cycle {:.2} s ({rate:.0}/s), {total1} requests ({:.2} per shipment; latency floor for them {:.1} s)",
        wall.as_secs_f64(),
        total1 as f64 / n as f64,
        floor.as_secs_f64()
    );
    println!("  shipments cycle requests: {}", breakdown(&c1));
    println!(
        "  download half of the same run --once: {:.2} s, {total2} requests: {}",
        wall2.as_secs_f64(),
        breakdown(&c2)
    );
    let k = if n.is_multiple_of(1000) { format!("{}k", n / 1000) } else { n.to_string() };
    row(
        &format!("shipments: {k}, conc {CONCURRENCY}, {latency} ms: shipments cycle"),
        &format!("{rate:.0}/s ({:.1} s, {total1} req)", wall.as_secs_f64()),
        &format!(
            "latency floor {:.0}/s for {:.2} req/shipment",
            n as f64 / floor.as_secs_f64(),
            total1 as f64 / n as f64
        ),
        &format!("{:.2}x of 200/s", rate / 200.0),
        ">= 200/s",
        Some(rate >= 200.0),
    );
    row(
        &format!("shipments: {k}, full run --once (+ download half)"),
        &format!("{rate_full:.0}/s ({:.1} s, {} req)", (wall + wall2).as_secs_f64(), total1 + total2),
        "-",
        &format!("{:.2}x of 200/s", rate_full / 200.0),
        ">= 200/s",
        Some(rate_full >= 200.0),
    );
    if rate < 200.0 {
        note(&format!("shipments cycle requests per endpoint: {}", breakdown(&c1)));
    }
    if total2 > 2 {
        note(&format!("download half after the shipments cycle: {} requests: {}", total2, breakdown(&c2)));
    }
}

fn main() {
    let latency = common::size("BENCH_LATENCY_MS", 20, 20) as u64;
    inventory(latency);
    shipments(latency);
}
