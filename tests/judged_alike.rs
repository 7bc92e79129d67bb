//! `validate` and the engine read a file through different `formats` paths (`parse_piped` +
//! `next_checked` with late duplicates, against `parse` + `next` with inline duplicates; see
//! ARCHITECTURE.md, `src/formats/`). This holds them to one judgement: every sample and a set of
//! tricky files go through `stitch-bridge validate --json` and through `run`'s inbound pass
//! (local drop, simulator), and each line must get the same parse error codes in both.

mod common;

use common::*;
use std::collections::BTreeSet;
use std::path::Path;
use stitch_bridge::formats::ErrorCode;

/// (line, code) pairs; a line of `None` is a problem with the file as a whole.
type Judgement = Vec<(Option<u64>, String)>;

fn sample_seed() -> serde_json::Value {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/samples/sim-seed.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn line_of(s: &str) -> Option<u64> {
    s.parse().ok().filter(|&l| l > 0)
}

/// The parse errors `validate` reports for `path` (warnings left out), with the account's settings.
fn validate_judgement(env: &Env, path: &Path) -> Judgement {
    let out = env.bin(&["validate", "--json", "--account", ACCOUNT, path.to_str().unwrap()]);
    assert!(matches!(out.status.code(), Some(0..=2)), "{out:?}");
    let mut got: Judgement = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .filter(|v| v["severity"] == "error")
        .map(|v| (v["line"].as_u64().filter(|&l| l > 0), v["code"].as_str().unwrap_or("").to_string()))
        .collect();
    got.sort();
    got
}

/// The parse errors in the engine's error file for `name` (none when it wrote none). Rows the
/// planners rejected (codes that are not `formats` codes) are left out: `validate` has no
/// snapshot of Stitch to judge them by.
fn engine_judgement(env: &Env, name: &str) -> Judgement {
    let parse_codes: BTreeSet<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
    if !env.exists(&format!("errors/{name}.errors.csv")) {
        return Vec::new();
    }
    let mut got: Judgement = env
        .errors(name)
        .iter()
        .filter(|r| parse_codes.contains(r["code"].as_str()))
        .map(|r| (line_of(&r["line"]), r["code"].clone()))
        .collect();
    got.sort();
    got
}

/// Puts every file into the drop, asks `validate` about each, runs one inbound pass and compares.
/// Returns how many parse errors were compared in all, so a caller can check the cases bite.
fn compare(env: &Env, files: &[(&str, &str, Vec<u8>)]) -> usize {
    let mut expected = Vec::new();
    for (kind, name, body) in files {
        let rel = format!("inbound/{kind}/{name}");
        std::fs::create_dir_all(env.path(&format!("inbound/{kind}"))).unwrap();
        std::fs::write(env.path(&rel), body).unwrap();
        expected.push((name.to_string(), validate_judgement(env, &env.path(&rel))));
    }
    env.inbound_only();
    let mut compared = 0;
    for (name, by_validate) in expected {
        assert!(!env.exists(&format!("inbound/{}", name)), "{name} was not taken");
        let by_engine = engine_judgement(env, &name);
        assert_eq!(by_engine, by_validate, "{name}: engine (left) and validate (right) disagree");
        compared += by_validate.len();
    }
    compared
}

fn sample(name: &str) -> Vec<u8> {
    std::fs::read(format!("{}/samples/{name}", env!("CARGO_MANIFEST_DIR"))).unwrap()
}

#[test]
fn samples_are_judged_alike() {
    let env = Env::with(sample_seed(), "");
    let names: Vec<(&str, String)> = ["inventory", "orders", "shipments"]
        .into_iter()
        .flat_map(|kind| [(kind, format!("{kind}_good.csv")), (kind, format!("{kind}_broken.csv"))])
        .collect();
    let files: Vec<(&str, &str, Vec<u8>)> =
        names.iter().map(|(kind, name)| (*kind, name.as_str(), sample(name))).collect();
    let compared = compare(&env, &files);
    assert!(compared >= 6, "the broken samples should show errors; compared {compared}");
}

const ORDER_HEAD: &str =
    "order_ref,order_date,ship_name,ship_address1,ship_city,ship_country,sku,quantity,price,currency";
const SHIP_HEAD: &str = "fulfillment_id,order_ref,sku,quantity,shipped_at,carrier,tracking_number";

fn order_row(r: &str, country: &str, sku: &str, qty: &str) -> String {
    format!("{r},2024-03-15,Ann,1 Main St,Springfield,{country},{sku},{qty},9.99,USD\n")
}

#[test]
fn tricky_files_are_judged_alike() {
    let env = Env::with(sample_seed(), "");
    let inv = |rows: &str| format!("sku,quantity,name,barcode\n{rows}").into_bytes();
    let long = "x".repeat(5000);
    let files: Vec<(&str, &str, Vec<u8>)> = vec![
        // Repeated SKUs: after a valid row, after an invalid one, three times, and on a row
        // that is wrong in another way too.
        (
            "inventory",
            "repeats.csv",
            inv("WIDGET-RED,1,,\nWIDGET-BLUE,x,,\nWIDGET-BLUE,2,,\nWIDGET-RED,3,,\nWIDGET-RED,-4,,\nGADGET-1,5,,\n"),
        ),
        ("inventory", "stock_delta.csv", inv("WIDGET-RED,-1,,\nWIDGET-BLUE,x,,\nWIDGET-RED,+2,,\n")),
        ("inventory", "barcodes.csv", inv("WIDGET-RED,1,,012345670008\nGADGET-1,2,,123\n,3,,\n")),
        // BOM, CRLF, blank lines, a quoted value over two physical lines, a ragged row.
        (
            "inventory",
            "layout.csv",
            b"\xef\xbb\xbfsku,quantity,name\r\nWIDGET-RED,1,\"two\r\nlines\"\r\n\r\nWIDGET-BLUE,2.5,x\r\nGADGET-1,1,a,b\r\nCABLE-USB\r\n"
                .to_vec(),
        ),
        ("inventory", "long.csv", inv(&format!("WIDGET-RED,1,{long},\nWIDGET-BLUE,2,,\n"))),
        ("inventory", "latin1.csv", b"sku,quantity,name\nWIDGET-RED,1,Caf\xe9\nWIDGET-BLUE,2,ok\n".to_vec()),
        ("inventory", "unterminated.csv", inv("WIDGET-RED,1,\"open,\nWIDGET-BLUE,2,,\n")),
        ("inventory", "semicolons.csv", b"sku;quantity\nWIDGET-RED;1\n".to_vec()),
        ("inventory", "no_quantity.csv", b"sku,name\nWIDGET-RED,x\n".to_vec()),
        ("inventory", "empty.csv", Vec::new()),
        ("inventory", "header_only.csv", b"sku,quantity\n".to_vec()),
        ("inventory", "unknown_column.csv", b"sku,quantity,colour\nWIDGET-RED,1,red\nWIDGET-BLUE,-1,blue\n".to_vec()),
        ("inventory", "sheet.csv", b"PK\x03\x04\x14\x00\x06\x00".to_vec()),
        (
            "orders",
            "orders_tricky.csv",
            format!(
                "{ORDER_HEAD}\n{}{}{}{}{}{}",
                order_row("PO-1", "US", "WIDGET-RED", "1"),
                order_row("PO-1", "CA", "GADGET-1", "1"),
                order_row("PO-2", "US", "WIDGET-RED", "0"),
                order_row("PO-3", "XX", "WIDGET-BLUE", "1"),
                order_row("PO-2", "US", "GADGET-1", "1"),
                order_row("PO-4", "US", "WIDGET-BLUE", "two"),
            )
            .into_bytes(),
        ),
        ("orders", "cancels.csv", b"order_ref,action\nPO-9,cancel\nPO-8,delete\n,cancel\n".to_vec()),
        (
            "shipments",
            "shipments_tricky.csv",
            format!(
                "{SHIP_HEAD}\n,PO-1,WIDGET-RED,1,2024-03-16,UPS,T1\n,PO-1,GADGET-1,1,2024-03-16,DHL,T1\n\
                 ,PO-2,WIDGET-RED,1,someday,UPS,T2\n,PO-3,WIDGET-RED,1,2024-03-16,UPS,T3\n\
                 ,PO-2,WIDGET-RED,1,2024-03-16,UPS,T2\n,,WIDGET-RED,1,2024-03-16,UPS,T4\n"
            )
            .into_bytes(),
        ),
    ];
    let compared = compare(&env, &files);
    assert!(compared >= 20, "the tricky files should show many errors; compared {compared}");
}

/// The account's limits end a file part-way: rows judged before the limit, then the file refused.
#[test]
fn files_cut_off_by_a_limit_are_judged_alike() {
    let env = Env::with(sample_seed(), "max_rows = 4\nmax_rows_per_order = 2\n");
    let files: Vec<(&str, &str, Vec<u8>)> = vec![
        ("inventory", "many.csv", b"sku,quantity\nA,1\nA,2\nB,x\nC,1\nD,1\nE,1\n".to_vec()),
        ("inventory", "few.csv", b"sku,quantity\nA,1\nA,2\nB,x\n".to_vec()),
        (
            "orders",
            "big_order.csv",
            format!(
                "{ORDER_HEAD}\n{}{}{}",
                order_row("PO-1", "US", "WIDGET-RED", "1"),
                order_row("PO-1", "US", "GADGET-1", "1"),
                order_row("PO-1", "US", "WIDGET-BLUE", "1"),
            )
            .into_bytes(),
        ),
    ];
    let compared = compare(&env, &files);
    assert!(compared >= 3, "the limits should show; compared {compared}");
}

/// A file over `max_file_bytes`: the engine refuses it by its listed size, `validate` while reading.
#[test]
fn a_file_over_the_size_limit_is_judged_alike() {
    let env = Env::with(sample_seed(), "max_file_bytes = 64\n");
    let big = format!("sku,quantity\n{}", "WIDGET-RED,1\nWIDGET-RED,2\n".repeat(4)).into_bytes();
    let files: Vec<(&str, &str, Vec<u8>)> =
        vec![("inventory", "big.csv", big), ("inventory", "small.csv", b"sku,quantity\nA,1\nA,2\n".to_vec())];
    let compared = compare(&env, &files);
    assert!(compared >= 2, "the limit should show; compared {compared}");
}
