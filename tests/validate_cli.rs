//! The `validate` command as a user runs it: exit codes, text and JSON output, error reports.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
}

fn run(args: &[&str]) -> Output {
    bin().arg("validate").args(args).output().expect("binary runs")
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
    assert!(stdout.contains("inventory: 10 accepted, 0 rejected"), "{stdout}");
}

#[test]
fn rejected_rows_exit_one_and_are_listed() {
    let dir = tempfile::tempdir().unwrap();
    // Kind comes from the parent folder name.
    let f = write(dir.path(), "inventory/stock.csv", b"sku,quantity\nA,1\nB,3.5\n");
    let out = run(&[s(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let expected = format!("{}:3: quantity: bad_integer: quantity must be a whole number, got '3.5'\n", s(&f));
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
    assert!(String::from_utf8(out.stdout).unwrap().contains("unknown_kind"));
    assert_eq!(run(&["--kind", "bogus", s(&g)]).status.code(), Some(2));
    assert_eq!(bin().arg("validate").output().unwrap().status.code(), Some(2), "no files");
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
    let f = write(dir.path(), "inventory/stock_delta.csv", b"sku,quantity\nA,-2\n");
    assert_eq!(run(&[s(&f)]).status.code(), Some(0));
    let g = write(dir.path(), "inventory/stock.csv", b"sku,quantity\nA,-2\n");
    assert_eq!(run(&[s(&g)]).status.code(), Some(1));
    assert_eq!(run(&["--delta", s(&g)]).status.code(), Some(0));
}

#[test]
fn json_lines_per_error() {
    let out = run(&["--json", "--kind", "shipments", &samples("shipments_broken.csv")]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<serde_json::Value> = stdout.lines().map(|l| serde_json::from_str(l).expect("json line")).collect();
    assert_eq!(lines.len(), 8);
    assert_eq!(lines[1]["line"], 3);
    assert_eq!(lines[1]["column"], "quantity");
    assert_eq!(lines[1]["code"], "bad_integer");
    assert_eq!(lines[1]["severity"], "error");
    assert!(lines[1]["file"].as_str().unwrap().ends_with("shipments_broken.csv"));
    assert!(lines[1]["message"].as_str().unwrap().contains("'two'"));
}

#[test]
fn errors_out_writes_report_per_file() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "inventory/a.csv", b"sku,quantity\nA,=1+1\n");
    let report = dir.path().join("report.csv");
    assert_eq!(run(&["--errors-out", s(&report), s(&f)]).status.code(), Some(1));
    let body = std::fs::read_to_string(&report).unwrap();
    assert_eq!(
        body,
        "\u{feff}sku,quantity,line,column,code,message\nA,'=1+1,2,quantity,bad_integer,\"quantity must be a whole number, got '=1+1'\"\n"
    );
    // Several files: the path is a directory (here ending in '/') with one report each.
    let g = write(dir.path(), "inventory/b.csv", b"sku,quantity\nB,1\n");
    let reports = dir.path().join("reports/");
    assert_eq!(run(&["--errors-out", s(&reports), s(&f), s(&g)]).status.code(), Some(1));
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
    assert_eq!(run(&[s(&f)]).status.code(), Some(2), "wrong delimiter: one unknown column");
    assert_eq!(run(&["--delimiter", ";", s(&f)]).status.code(), Some(1), "custom date needs the format");
    let ok = run(&["--delimiter", ";", "--date-format", "%d.%m.%Y", "--timezone", "America/Chicago", s(&f)]);
    assert_eq!(ok.status.code(), Some(0), "{}", String::from_utf8_lossy(&ok.stdout));
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A minimal valid configuration with one account `acme`; `extra` goes into its table.
fn config(dir: &Path, extra: &str) -> PathBuf {
    std::fs::write(dir.join("acme.token"), "t").unwrap();
    let text = format!(
        "[ledger]\npath = \"ledger.sqlite\"\n\n[[account]]\nname = \"acme\"\ndrop = \"drop\"\n\
         stitch_url = \"http://127.0.0.1:9\"\ntoken_file = \"acme.token\"\n{extra}"
    );
    let p = dir.join("stitch-bridge.toml");
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn another_delimiter_is_named_not_missing_columns() {
    let dir = tempfile::tempdir().unwrap();
    for (name, sep, shown, key) in [
        ("semi", ";", "';'", "delimiter = \";\""),
        ("tab", "\t", "tab", "delimiter = \"\\t\""),
        ("pipe", "|", "'|'", "delimiter = \"|\""),
    ] {
        let body = format!("sku{sep}quantity\nA{sep}1\n");
        let f = write(dir.path(), &format!("inventory/{name}.csv"), body.as_bytes());
        let out = run(&[s(&f)]);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let text = stdout(&out);
        assert!(text.contains(":1: -: wrong_delimiter: "), "{text}");
        assert!(text.contains(&format!("separated by {shown}")), "{text}");
        assert!(text.contains(key), "{text}");
        assert!(!text.contains("missing_column"), "{text}");
        // With no kind folder the kind is still recognised through the other delimiter.
        let g = write(dir.path(), &format!("drop/{name}.csv"), body.as_bytes());
        let text = stdout(&run(&[s(&g)]));
        assert!(text.contains("wrong_delimiter"), "{text}");
        // Read with the right delimiter it is fine.
        let ok = run(&["--delimiter", if sep == "\t" { "\\t" } else { sep }, s(&f)]);
        assert_eq!(ok.status.code(), Some(0), "{}", stdout(&ok));
    }
    // And a comma file read by a partner configured for ';'.
    let f = write(dir.path(), "inventory/comma.csv", b"sku,quantity\nA,1\n");
    let text = stdout(&run(&["--delimiter", ";", s(&f)]));
    assert!(text.contains("wrong_delimiter") && text.contains("separated by ','"), "{text}");
}

#[test]
fn spreadsheets_are_not_csv_other_binary_keeps_its_code() {
    let dir = tempfile::tempdir().unwrap();
    let xlsx = b"PK\x03\x04\x14\x00\x06\x00\x08\x00\x00\x00!\x00[Content_Types].xml\xc8\x9a\n\x00\x01";
    for rel in ["inventory/stock.xlsx", "drop/stock.xlsx"] {
        let f = write(dir.path(), rel, xlsx);
        let out = run(&[s(&f)]);
        assert_eq!(out.status.code(), Some(2));
        let text = stdout(&out);
        assert!(text.contains(": not_csv: "), "{text}");
        assert!(text.contains("Save As") && text.contains("CSV UTF-8"), "{text}");
    }
    // UTF-16 (what Excel's "Unicode text" writes) is still a text-encoding problem.
    let f = write(dir.path(), "inventory/u16.csv", b"\xff\xfes\x00k\x00u\x00\xff,\x00q\x00\n\x00");
    let text = stdout(&run(&[s(&f)]));
    assert!(text.contains("bad_encoding") && !text.contains("not_csv"), "{text}");
}

#[test]
fn barcodes_mangled_by_excel_get_a_hint() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(
        dir.path(),
        "inventory/stock.csv",
        b"sku,quantity,barcode\nA,1,1.23457E+11\nB,1,36000291452\nC,1,1234567895\nD,1,036000291452\n",
    );
    let out = run(&[s(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let hint = "Excel turned this barcode into a number; format the column as Text before saving";
    let line = |n: u64| {
        text.lines()
            .find(|l| l.contains(&format!(".csv:{n}: barcode: bad_barcode")))
            .unwrap_or_else(|| panic!("no error on line {n}: {text}"))
    };
    assert!(line(2).contains(hint), "{text}");
    assert!(line(3).contains(hint) && line(3).contains("leading zero"), "{text}");
    // Two leading zeros gone.
    assert!(line(4).contains(hint) && line(4).contains("001234567895"), "{text}");
    assert!(!text.contains(".csv:5:"), "{text}");
    // A typo is still just a typo.
    let g = write(dir.path(), "inventory/typo.csv", b"sku,barcode,quantity\nA,036000291453,1\n");
    let text = stdout(&run(&[s(&g)]));
    assert!(text.contains("bad_barcode") && !text.contains("Excel"), "{text}");
}

#[test]
fn account_settings_apply_to_validate() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        dir.path(),
        "delimiter = \";\"\ndate_format = \"%d.%m.%Y %H:%M\"\ntimezone = \"Europe/Berlin\"\n\n[account.columns]\nartikel = \"sku\"\n",
    );
    let f = write(
        dir.path(),
        "x/s.csv",
        b"order_ref;artikel;qty;ship_date;carrier;tracking_number\nPO-1;A;1;15.03.2024 10:00;UPS;T1\n",
    );
    let with = bin()
        .args(["--config", s(&cfg), "validate", "--kind", "shipments", "--account", "acme", s(&f)])
        .output()
        .unwrap();
    assert_eq!(with.status.code(), Some(0), "{}{}", stdout(&with), String::from_utf8_lossy(&with.stderr));
    // `--config` also after the command, as other commands take it.
    let after = bin()
        .args(["validate", "--config", s(&cfg), "--account", "acme", "--kind", "shipments", s(&f)])
        .output()
        .unwrap();
    assert_eq!(after.status.code(), Some(0), "{}", String::from_utf8_lossy(&after.stderr));
    // The kind is also guessed with the account's delimiter and columns.
    let g = write(
        dir.path(),
        "y/s.csv",
        b"order_ref;artikel;qty;ship_date;carrier;tracking_number\nPO-1;A;1;15.03.2024 10:00;UPS;T1\n",
    );
    let guessed = bin().args(["--config", s(&cfg), "validate", "--account", "acme", s(&g)]).output().unwrap();
    assert_eq!(guessed.status.code(), Some(0), "{}", stdout(&guessed));
    // Without the account the same file is refused.
    assert_eq!(run(&["--kind", "shipments", s(&f)]).status.code(), Some(2));
    // An unknown account is a usage error that names it.
    let none = bin().args(["--config", s(&cfg), "validate", "--account", "nope", s(&f)]).output().unwrap();
    assert_eq!(none.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&none.stderr).contains("\"nope\""));
}

#[test]
fn missing_paths_and_folders_are_read_errors() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("inventory/nothere.csv");
    let out = run(&[s(&missing)]);
    assert_eq!(out.status.code(), Some(2));
    let text = stdout(&out);
    assert!(text.contains(&format!("{}: -: read_error: ", s(&missing))), "{text}");
    assert!(!text.contains("unknown_kind"), "{text}");
    std::fs::create_dir_all(dir.path().join("orders")).unwrap();
    let folder = dir.path().join("orders");
    let text = stdout(&run(&[s(&folder)]));
    assert!(text.contains(&format!("{}: -: read_error: ", s(&folder))) && text.contains("folder"), "{text}");
}

#[test]
fn config_is_offered_only_where_it_is_read() {
    let help = |args: &[&str]| {
        let o = bin().args(args).output().unwrap();
        assert_eq!(o.status.code(), Some(0), "{args:?}");
        stdout(&o)
    };
    for cmd in ["demo", "sim"] {
        assert!(!help(&[cmd, "--help"]).contains("--config"), "{cmd}");
    }
    for cmd in ["validate", "run", "status", "watch", "init"] {
        assert!(help(&[cmd, "--help"]).contains("--config"), "{cmd}");
    }
    assert!(help(&["--help"]).contains("--config"));
    // Not taken either: it would suggest the demo reads the configuration.
    let demo = bin().args(["demo", "--config", "x.toml"]).output().unwrap();
    assert_eq!(demo.status.code(), Some(2), "{}", String::from_utf8_lossy(&demo.stderr));
}

#[test]
fn ragged_rows_keep_their_extra_cells_and_read_the_same_everywhere() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "inventory/a.csv", b"sku,quantity\nA,1,x,=y\nB,2\nC\n");
    let report = dir.path().join("a.errors.csv");
    let out = run(&["--errors-out", s(&report), s(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    assert!(text.contains(":2: extra_1: ragged_row: this row has 4 values"), "{text}");
    assert!(text.contains(":4: quantity: ragged_row: this row has 1 values"), "{text}");
    let body = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<&str> = body.lines().collect();
    assert_eq!(lines[0], "\u{feff}sku,quantity,extra_1,extra_2,line,column,code,message");
    assert!(lines[1].starts_with("A,1,x,'=y,2,extra_1,ragged_row,"), "{body}");
    assert!(lines[2].starts_with("C,,,,4,quantity,ragged_row,"), "{body}");
    assert_eq!(lines.len(), 3, "{body}");
}

#[test]
fn problems_come_in_line_order() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "inventory/a.csv", b"sku,quantity\nA,1\nB,1\nA,2\nC,x\n");
    let report = dir.path().join("a.errors.csv");
    let out = run(&["--errors-out", s(&report), s(&f)]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    let at = |needle: &str| text.find(needle).unwrap_or_else(|| panic!("{needle}: {text}"));
    assert!(at(":4: sku: duplicate_sku") < at(":5: quantity: bad_integer"), "{text}");
    assert!(text.contains("2 accepted, 2 rejected"), "{text}");
    let body = std::fs::read_to_string(&report).unwrap();
    let lines: Vec<u64> = body.lines().skip(1).map(|l| l.split(',').nth(2).unwrap().parse().unwrap()).collect();
    assert_eq!(lines, vec![4, 5], "{body}");
}

#[test]
fn an_empty_file_is_reported_on_line_one() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "inventory/empty.csv", b"");
    let report = dir.path().join("e.csv");
    let out = run(&["--errors-out", s(&report), s(&f)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stdout(&out).contains(&format!("{}:1: -: empty_file:", s(&f))), "{}", stdout(&out));
    let body = std::fs::read_to_string(&report).unwrap();
    assert!(body.lines().nth(1).unwrap().starts_with("1,,empty_file,"), "{body}");
    let json = run(&["--json", s(&f)]);
    let v: serde_json::Value = serde_json::from_str(stdout(&json).lines().next().unwrap()).unwrap();
    assert_eq!(v["line"], 1);
}

#[test]
fn cancel_only_orders_files_need_no_create_columns() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "orders/cancels.csv", b"order_ref,action\nPO-1,cancel\nPO-2,CANCEL\n");
    let out = run(&[s(&f)]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
    assert!(stdout(&out).contains("orders: 2 accepted, 0 rejected"), "{}", stdout(&out));
    // Sniffed as orders without the folder too.
    let g = write(dir.path(), "drop/cancels.csv", b"order_ref,action\nPO-1,cancel\n");
    assert_eq!(run(&[s(&g)]).status.code(), Some(0));
    // A create row in such a file still needs the columns: one located error per column.
    let h = write(dir.path(), "orders/mixed.csv", b"order_ref,action\nPO-1,cancel\nPO-2,create\nPO-3,\n");
    let out = run(&[s(&h)]);
    assert_eq!(out.status.code(), Some(1));
    let text = stdout(&out);
    for line in [3, 4] {
        for col in ["order_date", "ship_name", "ship_address1", "ship_city", "ship_country", "sku", "quantity"] {
            assert!(text.contains(&format!(":{line}: {col}: missing_value: ")), "{line} {col}: {text}");
        }
    }
    assert!(text.contains("no order_date column"), "{text}");
    assert!(text.contains("1 accepted, 2 rejected"), "{text}");
    // Without an action column every row is a create: the file is refused as before.
    let k = write(dir.path(), "orders/refs.csv", b"order_ref\nPO-1\n");
    let text = stdout(&run(&[s(&k)]));
    assert!(text.contains("missing_column"), "{text}");
}

#[test]
fn errors_out_with_several_files_must_be_a_folder() {
    let dir = tempfile::tempdir().unwrap();
    let f = write(dir.path(), "inventory/a.csv", b"sku,quantity\nA,x\n");
    let g = write(dir.path(), "inventory/b.csv", b"sku,quantity\nB,1\n");
    let target = dir.path().join("report.csv");
    let out = run(&["--errors-out", s(&target), s(&f), s(&g)]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--errors-out"));
    assert!(!target.exists(), "no folder named report.csv");
    // An existing folder, or a path ending in '/', receives one report per file.
    let existing = dir.path().join("existing");
    std::fs::create_dir(&existing).unwrap();
    assert_eq!(run(&["--errors-out", s(&existing), s(&f), s(&g)]).status.code(), Some(1));
    assert!(existing.join("a.errors.csv").exists() && existing.join("b.errors.csv").exists());
    let fresh = format!("{}/", s(&dir.path().join("fresh")));
    assert_eq!(run(&["--errors-out", &fresh, s(&f), s(&g)]).status.code(), Some(1));
    assert!(dir.path().join("fresh/a.errors.csv").exists());
    // Two inputs with one name do not overwrite each other's report.
    let h = write(dir.path(), "other/inventory/a.csv", b"sku,quantity\nZ,y\n");
    let both = dir.path().join("both");
    std::fs::create_dir(&both).unwrap();
    run(&["--errors-out", s(&both), s(&f), s(&h)]);
    assert!(both.join("a.errors.csv").exists() && both.join("a~2.errors.csv").exists());
}

#[test]
fn option_values_are_refused_with_what_was_expected() {
    let f = samples("inventory_good.csv");
    for (args, says) in [
        (["--kind", "returns"], "unknown kind 'returns' (expected inventory, orders or shipments)"),
        (["--delimiter", ";;"], "delimiter must be one ASCII character, got ';;'"),
        (["--timezone", "Mars/Olympus"], "unknown time zone 'Mars/Olympus'"),
    ] {
        let out = run(&[args[0], args[1], &f]);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
    }
    let out = run(&["--delimiter", "tab", "--timezone", "Europe/Berlin", "--kind", "inventory", &f]);
    // The values were taken: the comma file is read with tabs and refused for that.
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("wrong_delimiter") && stdout.contains("reads tabs"), "{out:?}");
}
