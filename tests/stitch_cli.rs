//! Issue 3 acceptance through the built binary: `run --once` exit codes, halting on 401/403
//! and resuming, and the `demo` loop.

mod common;

use common::*;
use serde_json::json;
use std::process::Output;

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited normally")
}

fn text(o: &Output) -> String {
    format!("stdout:\n{}\nstderr:\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn run_once_exit_0_when_all_applied_and_1_when_rows_are_rejected() {
    let env = Env::new();
    env.put("inbound/inventory/good.csv", "sku,quantity\nRED,51\n");
    let o = env.bin(&["run", "--once"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(env.state().products["RED"].stock, 51);
    assert_eq!(outcomes(&env.result("good.csv")), vec![("RED".into(), "updated".into())]);

    env.put("inbound/inventory/bad_delta.csv", "sku,quantity\nRED,-100\nBLUE,1\n");
    let o = env.bin(&["run", "--once"]);
    assert_eq!(code(&o), 1, "{}", text(&o));
    assert_eq!(
        outcomes(&env.result("bad_delta.csv")),
        vec![("RED".into(), "rejected".into()), ("BLUE".into(), "updated".into())]
    );
    assert_eq!(env.state().products["BLUE"].stock, 21);
}

#[test]
fn run_once_exit_4_on_5xx_everywhere_and_the_next_run_takes_the_file() {
    let env = Env::new();
    env.faults(json!({"rates": {"502": 1.0}}));
    env.put("inbound/inventory/inv.csv", "sku,quantity\nRED,33\n");
    let o = env.bin(&["run", "--once"]);
    assert_eq!(code(&o), 4, "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("PENDING"), "{}", text(&o));
    assert!(env.exists("inbound/inventory/inv.csv"), "the file waits in inbound/");
    assert!(!env.exists("results/inv.csv.result.csv"));
    assert_eq!(env.state().products["RED"].stock, 50);

    env.faults(json!({}));
    let o = env.bin(&["run", "--once"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(!env.exists("inbound/inventory/inv.csv"));
    assert_eq!(outcomes(&env.result("inv.csv")), vec![("RED".into(), "updated".into())]);
    assert_eq!(env.state().products["RED"].stock, 33);
}

#[test]
fn run_once_exit_4_when_stitch_is_unreachable_and_the_next_run_takes_the_file() {
    let mut env = Env::new();
    env.put("inbound/orders/o.csv", &orders_file(&[order_row("U-1", "RED", 1, "1.00")]));
    env.stop_sim();
    let o = env.bin(&["run", "--once"]);
    assert_eq!(code(&o), 4, "{}", text(&o));
    assert!(env.exists("inbound/orders/o.csv"));
    env.restart_sim();
    let o = env.bin(&["run", "--once"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(outcomes(&env.result("o.csv")), vec![("U-1".into(), "created".into())]);
    assert_eq!(env.state().orders.len(), 1);
    assert_eq!(env.list("outbound/orders").len(), 1);
}

/// Halt on `status` (401/403): files untouched, alert written, later runs refuse the account
/// until `resume`, then the files are processed.
fn halt_and_resume(env: &Env, break_it: impl Fn(&Env), fix_it: impl Fn(&Env), expect_in_alert: &[&str]) {
    let inv = "sku,quantity\nRED,44\n";
    let ord = orders_file(&[order_row("H-1", "BLUE", 1, "1.00")]);
    env.put("inbound/inventory/inv.csv", inv);
    env.put("inbound/orders/ord.csv", &ord);
    break_it(env);
    let o = env.bin(&["run", "--once"]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert_eq!(std::fs::read(env.path("inbound/inventory/inv.csv")).unwrap(), inv.as_bytes());
    assert_eq!(std::fs::read(env.path("inbound/orders/ord.csv")).unwrap(), ord.as_bytes());
    assert!(env.list("results").is_empty() && env.archived().is_empty(), "nothing processed");
    let alert = std::fs::read_to_string(env.path(&format!("ALERT-{ACCOUNT}.txt"))).expect("alert in the drop root");
    for needle in expect_in_alert.iter().chain(&["Do NOT re-authenticate", "stitch-bridge resume acme"]) {
        assert!(alert.contains(needle), "alert lacks {needle:?}:\n{alert}");
    }
    let st = env.bin(&["status", "acme"]);
    assert_eq!(code(&st), 0);
    assert!(String::from_utf8_lossy(&st.stdout).contains("HALTED"), "{}", text(&st));
    let js = env.bin(&["status", "acme", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&js.stdout).expect("status --json");
    assert!(!v[0]["halted"].is_null(), "{v}");

    // Fixed in Stitch, but the account stays halted until an operator resumes it: no requests.
    fix_it(env);
    let before = env.counters();
    let o = env.bin(&["run", "--once"]);
    assert_eq!(code(&o), 3, "{}", text(&o));
    assert_eq!(before, env.counters(), "a halted account sends nothing");
    assert!(env.exists("inbound/inventory/inv.csv"));

    let o = env.bin(&["resume", "acme"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert!(!env.exists(&format!("ALERT-{ACCOUNT}.txt")));
    let o = env.bin(&["run", "--once"]);
    assert_eq!(code(&o), 0, "{}", text(&o));
    assert_eq!(outcomes(&env.result("inv.csv")), vec![("RED".into(), "updated".into())]);
    assert_eq!(outcomes(&env.result("ord.csv")), vec![("H-1".into(), "created".into())]);
    assert_eq!(env.state().products["RED"].stock, 44);
    let st = env.bin(&["status", "acme"]);
    assert!(!String::from_utf8_lossy(&st.stdout).contains("HALTED"), "{}", text(&st));
}

#[test]
fn halt_on_401_then_resume() {
    let env = Env::new();
    halt_and_resume(
        &env,
        |e| e.admin("token", json!({"token": "someone-else"})),
        |e| e.admin("token", json!({"token": TOKEN})),
        &["401", "token"],
    );
}

#[test]
fn halt_on_403_then_resume() {
    let env = Env::new();
    halt_and_resume(
        &env,
        |e| e.admin("features", json!({"integrations_enabled": false})),
        |e| e.admin("features", json!({"integrations_enabled": true})),
        &["403", "Multi-warehousing", "Third-Party Stock Control"],
    );
}

#[test]
fn demo_runs_the_whole_loop() {
    let dir = tempfile::tempdir().unwrap();
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .args(["demo", "--dir"])
        .arg(dir.path())
        .env("STITCH_BRIDGE_LOG", "warn")
        .output()
        .unwrap();
    let out = text(&o);
    assert_eq!(code(&o), 0, "{out}");
    assert!(out.contains("write requests in the repeat cycle: 0"), "{out}");
    assert!(out.contains("0 still open"), "{out}");
    let drop = dir.path().join("drop");
    assert!(dir.path().join("stitch-bridge.toml").exists());
    let list = |rel: &str| -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(drop.join(rel))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    };
    // Every file the demo reports exists where it says.
    let results = list("results");
    for f in ["stock_2024-03-15.csv", "stock_broken.csv", "orders_2024-03-15.csv", "shipments_2024-03-16.csv"] {
        assert!(results.contains(&format!("{f}.result.csv")), "{f} in {results:?}");
        assert!(out.contains(&format!("results/{f}.result.csv")), "report names {f}: {out}");
    }
    assert!(list("errors").contains(&"stock_broken.csv.errors.csv".to_string()));
    assert_eq!(list("outbound/orders").len(), 4, "the three dropped orders and the seeded one sent to the warehouse");
    let ships = read_csv(&drop.join("results/shipments_2024-03-16.csv.result.csv"));
    assert!(!ships.is_empty() && ships.iter().all(|r| r["outcome"] == "created"), "{ships:?}");
    for d in ["inbound/inventory", "inbound/orders", "inbound/shipments"] {
        assert!(list(d).is_empty(), "{d} emptied");
    }
    // The encrypted partner: its stock applied, the result sealed for it (and read back by it).
    let sealed = dir.path().join("drop-pgp/results/stock.csv.result.csv.pgp");
    assert!(sealed.exists() && !std::fs::read(&sealed).unwrap().starts_with(b"line,"), "encrypted result");
    assert!(out.contains("the partner decrypts") && out.contains("result rows"), "{out}");
}
