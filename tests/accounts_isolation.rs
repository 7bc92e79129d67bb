//! Many accounts in one run: one account's halt or bad files never stop the others.

use std::fs;
use std::path::Path;
use stitch_bridge::config::Config;
use stitch_bridge::engine::{self, exit, Parts};
use stitch_bridge::sim::{self, SimOptions};

const INVENTORY: &str = "sku,quantity\nISO-A,5\nISO-B,7\n";

fn account(name: &str, url: &str, token_file: &str) -> String {
    format!(
        "[[account]]\nname = \"{name}\"\ndrop = \"{name}-drop\"\nstitch_url = \"{url}\"\ntoken_file = \"{token_file}\"\nsettle_seconds = 0\nmax_retries = 0\n\n"
    )
}

fn drop_file(root: &Path, account: &str, rel: &str, text: &str) {
    let p = root.join(format!("{account}-drop")).join(rel);
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

#[test]
fn halted_and_broken_accounts_do_not_stop_a_healthy_one() {
    let healthy = sim::start_in_background(SimOptions { token: "good".into(), ..Default::default() }).unwrap();
    let refusing = sim::start_in_background(SimOptions { token: "other".into(), ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    fs::write(root.join("good.token"), "good").unwrap();
    let text = format!(
        "[ledger]\npath = \"ledger.sqlite\"\n\n{}{}{}",
        account("healthy", &healthy.base_url(), "good.token"),
        // Token refused (401): this account halts.
        account("halting", &refusing.base_url(), "good.token"),
        // Nothing listens here: transient failure, work stays pending.
        account("unreachable", "http://127.0.0.1:9", "good.token"),
    );
    let config = Config::parse(&text, root).unwrap();
    for name in ["healthy", "halting", "unreachable"] {
        drop_file(root, name, "inbound/inventory/stock.csv", INVENTORY);
    }
    // A whole-file rejection in the healthy account must not affect the others either.
    drop_file(root, "healthy", "inbound/inventory/broken.csv", "no_sku_here\n1\n");

    let report = engine::run_cycle(&config, &[], Parts::ALL);
    let by = |n: &str| report.accounts.iter().find(|a| a.account == n).unwrap();

    let h = by("healthy");
    assert!(h.halted.is_none() && h.pending.is_empty() && h.fatal.is_empty(), "{h:?}");
    assert_eq!(h.files.iter().filter(|f| f.state == "archived").count(), 1);
    assert_eq!(h.files.iter().filter(|f| f.state == "rejected").count(), 1);
    let stock: Vec<(String, i64)> = healthy
        .snapshot()
        .products
        .values()
        .map(|p| (p.sku.clone(), p.stock))
        .filter(|(s, _)| s.starts_with("ISO-"))
        .collect();
    assert_eq!(stock, vec![("ISO-A".to_string(), 5), ("ISO-B".to_string(), 7)]);

    let halted = by("halting");
    assert!(halted.halted.is_some(), "{halted:?}");
    assert!(root.join("halting-drop/inbound/inventory/stock.csv").exists(), "files stay where they are");
    assert!(root.join("halting-drop/ALERT-halting.txt").exists());

    let unreachable = by("unreachable");
    assert!(!unreachable.pending.is_empty(), "{unreachable:?}");
    assert!(root.join("unreachable-drop/inbound/inventory/stock.csv").exists());

    // The most serious condition decides the exit code.
    assert_eq!(report.exit_code(), exit::HALTED);
    // Only the healthy account wrote to its simulator; the halting one wrote nothing.
    assert!(refusing.snapshot().products.values().all(|p| !p.sku.starts_with("ISO-")));
}
