//! The `validate` command as a user runs it: exit codes, text and JSON output, error reports.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
}

fn run(args: &[&str]) -> Output {
    bin()
        .arg("validate")
        .args(args)
        .output()
        .expect("binary runs")
}

fn write(dir: &Path, rel: &str, body: &[u8]) -> PathBuf {
    let p = dir.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(&p, body).unwrap();
    p
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn samples(name: &str) -> String {
    format!("{}/samples/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn clean_file_exits_zero_with_summary() {
    let out = run(&["--kind", "inventory", &samples("inventory_good.csv")]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.contains("inventory: 10 accepted, 0 rejected"),
        "{stdout}"
    );
}

#[test]
fn rejected_rows_exit_one_and_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    // Kind comes from the parent folder name.
    let f = write(
        dir.path(),
        "inventory/stock.csv",
        b"sku,quantity\nA,1\nB,3.5\n",
    );
    let out = run(&[s(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let expected = format!(
        "{}:3: quantity: bad_integer: quantity must be a whole number, got '3.5'\n",
        s(&f)
    );
    assert!(stdout.starts_with(&expected), "{stdout}");
    assert!(stdout.contains("1 accepted, 1 rejected"), "{stdout}");
}

#[test]
fn rejected_file_exits_two() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "x/empty.csv", b"");
    assert_eq!(run(&["--kind", "orders", s(&f)]).status.code(), Some(2));
    let g = write(dir.path(), "x/unknown.csv", b"a,b\n1,2\n");
    let out = run(&[s(&g)]);
    assert_eq!(out.status.code(), Some(2), "kind cannot be guessed");
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .contains("unknown_kind"));
    assert_eq!(run(&["--kind", "bogus", s(&g)]).status.code(), Some(2));
    assert_eq!(
        bin().arg("validate").output().unwrap().status.code(),
        Some(2),
        "no files"
    );
}

#[test]
fn sniffs_kind_and_warnings_do_not_fail() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "drop/stock.csv", b"item,qty,colour\nA,1,red\n");
    let out = run(&[s(&f)]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.contains(":1: colour: unknown_column:"), "{stdout}");
}

#[test]
fn delta_by_name_or_flag() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "inventory/stock_delta.csv",
        b"sku,quantity\nA,-2\n",
    );
    assert_eq!(run(&[s(&f)]).status.code(), Some(0));
    let g = write(dir.path(), "inventory/stock.csv", b"sku,quantity\nA,-2\n");
    assert_eq!(run(&[s(&g)]).status.code(), Some(1));
    assert_eq!(run(&["--delta", s(&g)]).status.code(), Some(0));
}

#[test]
fn json_lines_per_error() {
    let out = run(&[
        "--json",
        "--kind",
        "shipments",
        &samples("shipments_broken.csv"),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(lines[1]["line"], 3);
    assert_eq!(lines[1]["column"], "quantity");
    assert_eq!(lines[1]["code"], "bad_integer");
    assert_eq!(lines[1]["severity"], "error");
    assert!(lines[1]["file"]
        .as_str()
        .unwrap()
        .ends_with("shipments_broken.csv"));
    assert!(lines[1]["message"].as_str().unwrap().contains("'two'"));
}

#[test]
fn errors_out_writes_report_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "inventory/a.csv", b"sku,quantity\nA,=1+1\n");
    let report = dir.path().join("report.csv");
    assert_eq!(
        run(&["--errors-out", s(&report), s(&f)]).status.code(),
        Some(1)
    );
    let body = std::fs::read_to_string(&report).unwrap();
    assert_eq!(
        body,
        "\u{feff}sku,quantity,line,column,code,message\nA,'=1+1,2,quantity,bad_integer,\"quantity must be a whole number, got '=1+1'\"\n"
    );
    // Several files: the path is a directory with one report each.
    let g = write(dir.path(), "inventory/b.csv", b"sku,quantity\nB,1\n");
    let reports = dir.path().join("reports");
    assert_eq!(
        run(&["--errors-out", s(&reports), s(&f), s(&g)])
            .status
            .code(),
        Some(1)
    );
    assert!(reports.join("a.errors.csv").exists() && reports.join("b.errors.csv").exists());
}

#[test]
fn options_delimiter_timezone_date_format() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "shipments/s.csv",
        b"order_ref;sku;qty;ship_date;carrier;tracking_number\nPO-1;A;1;15.03.2024;UPS;T1\n",
    );
    assert_eq!(
        run(&[s(&f)]).status.code(),
        Some(2),
        "wrong delimiter: one unknown column"
    );
    assert_eq!(
        run(&["--delimiter", ";", s(&f)]).status.code(),
        Some(1),
        "custom date needs the format"
    );
    let ok = run(&[
        "--delimiter",
        ";",
        "--date-format",
        "%d.%m.%Y",
        "--timezone",
        "America/Chicago",
        s(&f),
    ]);
    assert_eq!(
        ok.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&ok.stdout)
    );
}
