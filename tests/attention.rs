//! Problems only a person can fix put the account in the "needs attention" state: `run --once`
//! exits 5 (not 4, "will resume"), `ALERT-<account>.txt` and `status` say what to do, the alert
//! hook fires once when the state is entered and once when it clears, and fixing the cause is
//! all it takes to carry on. Real binary, drop folder, ledger and simulator.

mod common;

use common::*;
use std::fs;

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

fn events(path: &std::path::Path) -> Vec<String> {
    fs::read_to_string(path).unwrap_or_default().lines().map(String::from).collect()
}

fn env_with_events() -> (Env, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.txt");
    let env = Env::with(
        base_seed(),
        &format!("alert_command = \"echo $STITCH_BRIDGE_ALERT_EVENT >> '{}'\"\n", log.display()),
    );
    // Keep the events file's folder alive as long as the test.
    std::mem::forget(dir);
    (env, log)
}

#[test]
fn a_missing_drop_folder_needs_attention_alerts_once_and_clears_when_created() {
    let (env, log) = env_with_events();
    fs::remove_dir_all(&env.drop).unwrap();
    for run in 0..2 {
        let out = env.bin(&["run", "--once"]);
        assert_eq!(out.status.code(), Some(5), "run {run}: {}", text(&out));
        assert!(text(&out).contains("NEEDS ATTENTION (drop_missing)"), "{}", text(&out));
        assert!(text(&out).contains("stitch-bridge test acme"), "says what to do: {}", text(&out));
    }
    assert_eq!(events(&log), vec!["attention"], "the hook fires once, not once per run");
    // The drop is what is missing, so the alert file is beside the ledger.
    let alert = env.dir.path().join("state/ALERT-acme.txt");
    let said = fs::read_to_string(&alert).expect("alert file beside the ledger");
    assert!(
        said.contains("NEEDS ATTENTION") && said.contains("drop_missing") && said.contains("stitch-bridge test acme"),
        "{said}"
    );
    let status = env.bin(&["status"]);
    assert!(
        text(&status).contains("NEEDS ATTENTION since") && text(&status).contains("drop_missing"),
        "{}",
        text(&status)
    );
    let json: serde_json::Value = serde_json::from_slice(&env.bin(&["status", "--json"]).stdout).unwrap();
    assert_eq!(json[0]["attention"]["reason"], "drop_missing", "{json}");

    // The person fixes it: the next run carries on, the hook hears it once, the alert is gone.
    fs::create_dir_all(env.drop.join("inbound/inventory")).unwrap();
    env.put("inbound/inventory/stock.csv", "sku,quantity\nRED,51\n");
    let out = env.bin(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(env.state().products.values().find(|p| p.sku == "RED").unwrap().stock, 51);
    assert_eq!(events(&log), vec!["attention", "attention_cleared"]);
    assert!(!alert.exists(), "the alert file is removed once fixed");
    let status = env.bin(&["status"]);
    assert!(!text(&status).contains("NEEDS ATTENTION"), "{}", text(&status));
    let out = env.bin(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert_eq!(events(&log), vec!["attention", "attention_cleared"], "nothing more to say");
}

#[test]
fn a_linked_folder_needs_attention_with_the_alert_in_the_drop_until_replaced() {
    let (env, log) = env_with_events();
    let outside = tempfile::tempdir().unwrap();
    env.put("inbound/inventory/stock.csv", "sku,quantity\nRED,52\n");
    fs::create_dir_all(env.drop.join("results")).ok();
    fs::remove_dir_all(env.drop.join("results")).ok();
    std::os::unix::fs::symlink(outside.path(), env.drop.join("results")).unwrap();
    let out = env.bin(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(5), "{}", text(&out));
    let said = fs::read_to_string(env.drop.join("ALERT-acme.txt")).expect("alert in the drop");
    assert!(said.contains("drop_symlink") && said.contains("results"), "{said}");
    assert_eq!(env.write_requests(), 0);
    assert!(env.exists("inbound/inventory/stock.csv"));
    assert_eq!(events(&log), vec!["attention"]);
    fs::remove_file(env.drop.join("results")).unwrap();
    let out = env.bin(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(!env.exists("ALERT-acme.txt"));
    assert_eq!(events(&log), vec!["attention", "attention_cleared"]);
    assert_eq!(env.state().products.values().find(|p| p.sku == "RED").unwrap().stock, 52);
}

#[test]
fn an_outage_stays_pending_not_attention() {
    let mut env = Env::new();
    env.put("inbound/inventory/stock.csv", "sku,quantity\nRED,53\n");
    env.stop_sim();
    let out = env.bin(&["run", "--once"]);
    assert_eq!(out.status.code(), Some(4), "{}", text(&out));
    assert!(!text(&out).contains("NEEDS ATTENTION"), "{}", text(&out));
}
