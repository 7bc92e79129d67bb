//! What a warehouse clerk's file problems look like after `run --once`: the codes and lines in
//! the result and error files agree with `validate`. Real drop folder, ledger and simulator.

mod common;

use common::*;
use std::path::Path;

fn validate(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .arg("validate")
        .args(args)
        .output()
        .expect("binary runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn run_once(env: &Env) {
    let out = env.bin(&["run", "--once"]);
    assert!(out.status.code().is_some(), "{out:?}");
}

#[test]
fn wrong_delimiter_and_spreadsheets_are_named_in_the_error_file() {
    let env = Env::with(base_seed(), "delimiter = \";\"\n");
    env.put("inbound/inventory/comma.csv", "sku,quantity\nRED,1\n");
    std::fs::create_dir_all(env.path("inbound/inventory")).unwrap();
    std::fs::write(
        env.path("inbound/inventory/stock.xlsx"),
        b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00\xc8\x9a\n",
    )
    .unwrap();
    run_once(&env);
    assert!(env.exists("rejected/comma.csv") && env.exists("rejected/stock.xlsx"));
    // The error file is in the partner's own delimiter, as their files are.
    let raw = std::fs::read_to_string(env.path("errors/comma.csv.errors.csv")).unwrap();
    assert!(raw.trim_start_matches('\u{feff}').starts_with("line;column;code;message"), "{raw}");
    let e = read_csv_with(&env.path("errors/comma.csv.errors.csv"), b';');
    assert_eq!(e[0]["code"], "wrong_delimiter", "{e:?}");
    assert!(e[0]["message"].contains("separated by ','") && e[0]["message"].contains("delimiter = \",\""), "{e:?}");
    assert_eq!(read_csv_with(&env.path("errors/stock.xlsx.errors.csv"), b';')[0]["code"], "not_csv");
    let r = env.result("stock.xlsx");
    assert!(r[0]["message"].contains("CSV UTF-8"), "{r:?}");
}

#[test]
fn an_empty_file_has_the_same_line_in_every_report() {
    let env = Env::new();
    env.put("inbound/inventory/empty.csv", "");
    run_once(&env);
    let result = env.result("empty.csv");
    let errors = env.errors("empty.csv");
    assert_eq!(result[0]["line"], "1", "{result:?}");
    assert_eq!(errors[0]["line"], "1", "{errors:?}");
    let shown = validate(&["--kind", "inventory", s(&env.path("rejected/empty.csv"))]);
    assert!(shown.contains("empty.csv:1: -: empty_file"), "{shown}");
}

#[test]
fn a_ragged_row_names_the_same_column_everywhere() {
    let env = Env::new();
    let body = "sku,quantity\nRED,1,oops\nBLUE\n";
    env.put("inbound/inventory/r.csv", body);
    run_once(&env);
    let result = env.result("r.csv");
    let errors = env.errors("r.csv");
    let row = |n: &str| result.iter().find(|r| r["line"] == n).unwrap_or_else(|| panic!("{result:?}")).clone();
    assert!(row("2")["message"].starts_with("line 2 extra_1: "), "{result:?}");
    assert!(row("3")["message"].starts_with("line 3 quantity: "), "{result:?}");
    let cols: Vec<(&str, &str)> = errors.iter().map(|e| (e["line"].as_str(), e["column"].as_str())).collect();
    assert_eq!(cols, vec![("2", "extra_1"), ("3", "quantity")]);
    // The engine's error file keeps the extra value under the column it names.
    assert_eq!(errors[0].get("extra_1").map(String::as_str), Some("oops"), "{errors:?}");
    assert_eq!(errors[1].get("extra_1").map(String::as_str), Some(""), "{errors:?}");
    // Every row was refused, so nothing was applied: the file is in rejected/.
    let shown = validate(&[s(&env.path("rejected/r.csv"))]);
    assert!(
        shown.contains("r.csv:2: extra_1: ragged_row") && shown.contains("r.csv:3: quantity: ragged_row"),
        "{shown}"
    );
}

#[test]
fn a_cancel_only_orders_file_is_applied() {
    let env = Env::new();
    env.put("inbound/orders/o1.csv", &orders_file(&[order_row("C-1", "RED", 1, "9.99")]));
    env.inbound_only();
    assert_eq!(outcomes(&env.result("o1.csv")), vec![("C-1".into(), "created".into())]);
    env.put("inbound/orders/cancel.csv", "order_ref,action\nC-1,cancel\n");
    env.inbound_only();
    assert!(!env.exists("rejected/cancel.csv"));
    assert_eq!(outcomes(&env.result("cancel.csv")), vec![("C-1".into(), "updated".into())]);
    assert!(env.state().orders.values().find(|o| o.po_num == "C-1").unwrap().void);
}
