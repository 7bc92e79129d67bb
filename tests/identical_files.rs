//! A duplicate is the same file sent again: same name, same content. The same content under
//! another name is new information (a snapshot equal to an older one after stock moved, a second
//! receipt of the same quantity) and is processed. `skip_identical` picks another rule.

mod common;

use common::*;

fn stock(env: &Env, sku: &str) -> i64 {
    env.state().products.values().find(|p| p.sku == sku).unwrap().stock
}

fn run(env: &Env) {
    let out = env.bin(&["run", "--once"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn a_later_snapshot_equal_to_an_earlier_one_is_applied() {
    let env = Env::new();
    env.put("inbound/inventory/monday.csv", "sku,quantity\nRED,50\n");
    run(&env);
    env.put("inbound/inventory/tuesday.csv", "sku,quantity\nRED,60\n");
    run(&env);
    assert_eq!(stock(&env, "RED"), 60);
    env.put("inbound/inventory/wednesday.csv", "sku,quantity\nRED,50\n");
    run(&env);
    assert_eq!(stock(&env, "RED"), 50, "Wednesday's count is the truth");
    let r = env.result("wednesday.csv");
    assert_eq!(r[0]["outcome"], "updated", "{r:?}");
    assert!(r[0]["message"].contains("same content as monday.csv"), "{r:?}");
}

#[test]
fn two_identical_receipts_under_different_names_both_count() {
    let env = Env::new();
    let before = stock(&env, "RED");
    env.put("inbound/inventory/receipt1_delta.csv", "sku,quantity\nRED,5\n");
    run(&env);
    env.put("inbound/inventory/receipt2_delta.csv", "sku,quantity\nRED,5\n");
    run(&env);
    assert_eq!(stock(&env, "RED"), before + 10, "no receipt lost");
    assert!(env.result("receipt2_delta.csv")[0]["message"].contains("same content as receipt1_delta.csv"));
}

#[test]
fn the_same_file_sent_again_is_skipped() {
    let env = Env::new();
    let before = stock(&env, "RED");
    env.put("inbound/inventory/receipt_delta.csv", "sku,quantity\nRED,5\n");
    run(&env);
    let writes = env.write_requests();
    env.put("inbound/inventory/receipt_delta.csv", "sku,quantity\nRED,5\n");
    run(&env);
    assert_eq!(env.write_requests(), writes, "nothing written for the copy");
    assert_eq!(stock(&env, "RED"), before + 5);
    let copies = env.list("results");
    assert!(copies.iter().any(|n| n.starts_with("receipt_delta.csv.result~2")), "{copies:?}");
}

#[test]
fn skip_identical_any_name_and_never() {
    let env = Env::with(base_seed(), "skip_identical = \"any_name\"\n");
    let before = stock(&env, "RED");
    env.put("inbound/inventory/a_delta.csv", "sku,quantity\nRED,5\n");
    run(&env);
    env.put("inbound/inventory/b_delta.csv", "sku,quantity\nRED,5\n");
    run(&env);
    assert_eq!(stock(&env, "RED"), before + 5, "any_name: the second is a copy");
    assert!(env.result("b_delta.csv")[0]["message"].contains("identical to a_delta.csv"));

    let env = Env::with(base_seed(), "skip_identical = \"never\"\n");
    let before = stock(&env, "RED");
    for _ in 0..2 {
        env.put("inbound/inventory/same_delta.csv", "sku,quantity\nRED,5\n");
        run(&env);
    }
    assert_eq!(stock(&env, "RED"), before + 10, "never: every file counts");

    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("c.toml");
    std::fs::write(&cfg, config_text("http://127.0.0.1:1", "skip_identical = \"sometimes\"\n")).unwrap();
    let out = run_bin(&cfg, &["status"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("skip_identical"), "{out:?}");
}
