//! Fix-and-replay: an error file corrected in a spreadsheet, re-saved the ways spreadsheets
//! re-save (BOM or none, CRLF, `;` or tab, every cell quoted), dropped back into its inbound
//! folder and processed through the real simulator. Replaying again posts nothing twice.

mod common;

use common::*;
use std::collections::BTreeMap;

/// How a spreadsheet writes the file back.
#[derive(Clone, Copy, Debug)]
struct Resave {
    bom: bool,
    crlf: bool,
    delimiter: u8,
    quote_all: bool,
}

const VARIANTS: [Resave; 4] = [
    Resave { bom: true, crlf: true, delimiter: b';', quote_all: true },
    Resave { bom: false, crlf: false, delimiter: b',', quote_all: false },
    Resave { bom: true, crlf: false, delimiter: b'\t', quote_all: false },
    Resave { bom: false, crlf: true, delimiter: b',', quote_all: true },
];

/// The rows of one of our error files as a spreadsheet shows them (header first).
fn open_in_spreadsheet(bytes: &[u8]) -> Vec<Vec<String>> {
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    let text = text.trim_start_matches('\u{feff}');
    let delimiter = if text.lines().next().unwrap().contains(';') { b';' } else { b',' };
    let mut r =
        csv::ReaderBuilder::new().has_headers(false).flexible(true).delimiter(delimiter).from_reader(text.as_bytes());
    r.records().map(|rec| rec.unwrap().iter().map(String::from).collect()).collect()
}

fn save_as_csv(rows: &[Vec<String>], how: Resave) -> Vec<u8> {
    let mut out = Vec::new();
    if how.bom {
        out.extend_from_slice(b"\xef\xbb\xbf");
    }
    let mut w = csv::WriterBuilder::new()
        .delimiter(how.delimiter)
        .quote_style(if how.quote_all { csv::QuoteStyle::Always } else { csv::QuoteStyle::Necessary })
        .terminator(if how.crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') })
        .flexible(true)
        .from_writer(&mut out);
    for r in rows {
        w.write_record(r).unwrap();
    }
    w.flush().unwrap();
    drop(w);
    out
}

/// Sets `column` of every data row whose first cell is `first` to `value`.
fn fix(rows: &mut [Vec<String>], first: &str, column: &str, value: &str) {
    let i = rows[0].iter().position(|h| h == column).unwrap();
    let mut hit = false;
    for r in rows.iter_mut().skip(1).filter(|r| r[0] == first) {
        r[i] = value.to_string();
        hit = true;
    }
    assert!(hit, "no row {first} in {rows:?}");
}

fn run_once(env: &Env) {
    let out = env.bin(&["run", "--once"]);
    assert!(out.status.code().is_some(), "{out:?}");
}

fn row<'a>(rows: &'a [BTreeMap<String, String>], key: &str) -> &'a BTreeMap<String, String> {
    rows.iter().find(|r| r["key"] == key).unwrap_or_else(|| panic!("no {key} in {rows:?}"))
}

fn product_exists(env: &Env, sku: &str) -> Option<i64> {
    env.state().products.values().find(|p| p.sku == sku).map(|p| p.stock)
}

#[test]
fn a_corrected_error_file_is_applied_in_every_resave_and_never_twice() {
    for how in VARIANTS {
        let env = Env::new();
        env.put("inbound/inventory/stock.csv", "sku,quantity\nRED,7\nBLUE,abc\n@PROMO,x\n");
        run_once(&env);
        assert_eq!(stock(&env, "RED"), 7);
        let raw = std::fs::read(env.path("errors/stock.csv.errors.csv")).unwrap();
        let mut rows = open_in_spreadsheet(&raw);
        // The formula-like SKU was neutralised for the spreadsheet.
        assert!(rows.iter().any(|r| r[0] == "'@PROMO"), "{rows:?}");
        fix(&mut rows, "BLUE", "quantity", "9");
        fix(&mut rows, "'@PROMO", "quantity", "4");
        put_bytes(&env, "inbound/inventory/stock.csv.errors.csv", &save_as_csv(&rows, how));
        run_once(&env);
        assert_eq!(stock(&env, "BLUE"), 9, "{how:?}");
        assert_eq!(product_exists(&env, "@PROMO"), Some(4), "{how:?}: the SKU got its value back");
        assert_eq!(product_exists(&env, "'@PROMO"), None, "{how:?}");
        let result = env.result("stock.csv.errors.csv");
        let blue = row(&result, "BLUE");
        assert_eq!(blue["outcome"], "updated", "{how:?} {result:?}");
        assert_eq!(blue["original_file"], "inbound/inventory/stock.csv", "{result:?}");
        assert_eq!(blue["original_line"], "3", "{result:?}");
        assert_eq!(row(&result, "'@PROMO")["original_line"], "4", "{result:?}");
        assert!(!env.exists("errors/stock.csv.errors.csv.errors.csv"), "{how:?}: nothing failed");
        assert!(env.archived().iter().any(|n| n == "stock.csv.errors.csv"), "{:?}", env.archived());

        // The same corrections dropped again, saved another way and named otherwise.
        let writes = env.write_requests();
        let other = Resave { delimiter: b',', quote_all: !how.quote_all, ..how };
        put_bytes(&env, "inbound/inventory/stock fixed again.csv", &save_as_csv(&rows, other));
        run_once(&env);
        assert_eq!(env.write_requests(), writes, "{how:?}: replayed twice, written once");
        let again = env.result("stock fixed again.csv");
        assert_eq!(row(&again, "BLUE")["outcome"], "unchanged", "{again:?}");
        // Every error file names its original in its rows: a renamed one still does.
        assert_eq!(row(&again, "BLUE")["original_file"], "inbound/inventory/stock.csv", "{again:?}");
    }
}

#[test]
fn a_delta_replayed_twice_adjusts_stock_once() {
    let env = Env::new();
    env.put("inbound/inventory/moves_delta.csv", "sku,quantity\nRED,-2\nBLUE,five\n");
    run_once(&env);
    assert_eq!((stock(&env, "RED"), stock(&env, "BLUE")), (48, 20));
    let mut rows = open_in_spreadsheet(&std::fs::read(env.path("errors/moves_delta.csv.errors.csv")).unwrap());
    fix(&mut rows, "BLUE", "quantity", "5");
    let how = VARIANTS[0];
    put_bytes(&env, "inbound/inventory/moves_delta.csv.errors.csv", &save_as_csv(&rows, how));
    run_once(&env);
    // Read as a delta, as its original was: 20 + 5.
    assert_eq!(stock(&env, "BLUE"), 25);
    let writes = env.write_requests();
    // Re-saved differently (other bytes, another name): still the same original row.
    put_bytes(&env, "inbound/inventory/moves again.csv", &save_as_csv(&rows, VARIANTS[1]));
    run_once(&env);
    assert_eq!(stock(&env, "BLUE"), 25, "a delta replayed twice is applied once");
    assert_eq!(env.write_requests(), writes);
    let r = env.result("moves again.csv");
    assert_eq!(row(&r, "BLUE")["outcome"], "unchanged", "{r:?}");
    assert!(row(&r, "BLUE")["message"].contains("already applied"), "{r:?}");
}

#[test]
fn rows_that_still_fail_go_to_a_new_error_file_that_names_the_first_original() {
    let env = Env::new();
    env.put("inbound/inventory/monday.csv", "sku,quantity\nRED,1\nBLUE,x\nGREEN,y\n");
    run_once(&env);
    let mut rows = open_in_spreadsheet(&std::fs::read(env.path("errors/monday.csv.errors.csv")).unwrap());
    fix(&mut rows, "BLUE", "quantity", "3");
    fix(&mut rows, "GREEN", "quantity", "still wrong");
    put_bytes(&env, "inbound/inventory/monday.csv.errors.csv", &save_as_csv(&rows, VARIANTS[0]));
    run_once(&env);
    assert_eq!(stock(&env, "BLUE"), 3);
    let second = env.errors("monday.csv.errors.csv");
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(second[0]["sku"], "GREEN");
    assert_eq!(
        (second[0]["original_file"].as_str(), second[0]["original_line"].as_str()),
        ("inbound/inventory/monday.csv", "4")
    );
    // The second error file is replayable too, and still names Monday's file and line.
    let mut rows = open_in_spreadsheet(&std::fs::read(env.path("errors/monday.csv.errors.csv.errors.csv")).unwrap());
    fix(&mut rows, "GREEN", "quantity", "8");
    put_bytes(&env, "inbound/inventory/third try.csv", &save_as_csv(&rows, VARIANTS[2]));
    run_once(&env);
    assert_eq!(stock(&env, "GREEN"), 8);
    let r = env.result("third try.csv");
    assert_eq!(
        (row(&r, "GREEN")["original_file"].as_str(), row(&r, "GREEN")["original_line"].as_str()),
        ("inbound/inventory/monday.csv", "4"),
        "{r:?}"
    );
}

#[test]
fn a_replayed_order_is_created_once() {
    let env = Env::new();
    let body = orders_file(&[order_row("PO-1", "RED", 1, "9.99"), order_row("PO-2", "BLUE", 0, "5.00")]);
    env.put("inbound/orders/orders.csv", &body);
    run_once(&env);
    assert_eq!(env.errors("orders.csv").len(), 1);
    let mut rows = open_in_spreadsheet(&std::fs::read(env.path("errors/orders.csv.errors.csv")).unwrap());
    fix(&mut rows, "PO-2", "quantity", "2");
    let fixed = save_as_csv(&rows, VARIANTS[0]);
    put_bytes(&env, "inbound/orders/orders.csv.errors.csv", &fixed);
    run_once(&env);
    let r = env.result("orders.csv.errors.csv");
    assert_eq!(row(&r, "PO-2")["outcome"], "created", "{r:?}");
    assert_eq!(row(&r, "PO-2")["original_line"], "3", "{r:?}");
    let writes = env.write_requests();
    put_bytes(&env, "inbound/orders/orders again.csv", &fixed);
    run_once(&env);
    assert_eq!(env.write_requests(), writes, "the replayed order is not posted twice");
    let again = env.result("orders again.csv");
    assert_ne!(row(&again, "PO-2")["outcome"], "created", "{again:?}");
}

#[test]
fn copies_of_a_row_that_disagree_are_refused_whole() {
    let env = Env::new();
    // One row, two errors: the error file has it twice.
    env.put(
        "inbound/orders/o.csv",
        &orders_file(&["PO-9,not a date,,1 Main St,Springfield,IL,62701,US,Standard,RED,1,9.99,USD,create".into()]),
    );
    run_once(&env);
    let mut rows = open_in_spreadsheet(&std::fs::read(env.path("errors/o.csv.errors.csv")).unwrap());
    assert!(rows.len() >= 3, "a row per error: {rows:?}");
    let date = rows[0].iter().position(|h| h == "order_date").unwrap();
    rows[1][date] = "2024-03-15".into();
    let writes = env.write_requests();
    put_bytes(&env, "inbound/orders/o.csv.errors.csv", &save_as_csv(&rows, VARIANTS[1]));
    run_once(&env);
    assert_eq!(env.write_requests(), writes);
    assert!(env.exists("rejected/o.csv.errors.csv"));
    let e = env.errors("o.csv.errors.csv");
    assert!(e[0]["message"].contains("appears on line 2 and again on line 3"), "{e:?}");
}

/// LibreOffice (`soffice`), when installed; `STITCH_BRIDGE_REQUIRE_SOFFICE=1` (CI) makes its
/// absence a failure instead of a skip.
fn soffice() -> Option<&'static str> {
    for name in ["soffice", "libreoffice"] {
        let found = std::process::Command::new(name)
            .arg("--version")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status();
        if found.is_ok_and(|s| s.success()) {
            return Some(name);
        }
    }
    assert!(
        std::env::var("STITCH_BRIDGE_REQUIRE_SOFFICE").as_deref() != Ok("1"),
        "LibreOffice is not installed and STITCH_BRIDGE_REQUIRE_SOFFICE=1"
    );
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "skipping: LibreOffice (soffice) is not installed");
    None
}

#[test]
fn an_error_file_resaved_by_libreoffice_is_replayed() {
    let Some(soffice) = soffice() else { return };
    let env = Env::new();
    env.put("inbound/inventory/stock.csv", "sku,quantity\nRED,7\nBLUE,abc\n@PROMO,x\n-NEG,y\n");
    run_once(&env);
    let mut rows = open_in_spreadsheet(&std::fs::read(env.path("errors/stock.csv.errors.csv")).unwrap());
    fix(&mut rows, "BLUE", "quantity", "9");
    fix(&mut rows, "'@PROMO", "quantity", "4");
    fix(&mut rows, "'-NEG", "quantity", "2");
    let work = tempfile::tempdir().unwrap();
    let edited = work.path().join("edited.csv");
    std::fs::write(&edited, save_as_csv(&rows, VARIANTS[1])).unwrap();
    // Opened as CSV (comma, UTF-8) and saved as CSV with `;`, as a German-locale Calc saves.
    let out_dir = work.path().join("out");
    let profile = format!("-env:UserInstallation=file://{}", work.path().join("profile").display());
    let done = std::process::Command::new(soffice)
        .args([profile.as_str(), "--headless", "--norestore", "--infilter=CSV:44,34,76,1"])
        .args(["--convert-to", "csv:Text - txt - csv (StarCalc):59,34,76,1", "--outdir"])
        .arg(&out_dir)
        .arg(&edited)
        .output()
        .expect("soffice runs");
    assert!(done.status.success(), "{done:?}");
    let resaved = std::fs::read(out_dir.join("edited.csv")).expect("LibreOffice wrote the file");
    let text = String::from_utf8_lossy(&resaved);
    assert!(text.lines().next().unwrap().replace('"', "").contains(";line;column;code;message"), "{text}");
    put_bytes(&env, "inbound/inventory/stock.csv.errors.csv", &resaved);
    run_once(&env);
    assert_eq!(stock(&env, "BLUE"), 9, "{text}");
    assert_eq!(product_exists(&env, "@PROMO"), Some(4), "{text}");
    assert_eq!(product_exists(&env, "-NEG"), Some(2), "{text}");
    let result = env.result("stock.csv.errors.csv");
    assert_eq!(row(&result, "BLUE")["original_line"], "3", "{result:?}");
    let writes = env.write_requests();
    put_bytes(&env, "inbound/inventory/again.csv", &resaved);
    run_once(&env);
    assert_eq!(env.write_requests(), writes, "replayed twice, written once");
}

/// What the console's Reprocess does to the drop and the ledger: a copy of the archived file in
/// its inbound folder under `STEM~reprocess-ID.EXT`, and the `reprocess:` mark naming the
/// original's id.
fn queue_again(env: &Env, archived: &str, inbound: &str) {
    let ledger = stitch_bridge::ledger::Ledger::open(&env.dir.path().join("state/ledger.sqlite")).unwrap();
    let path = format!("inbound/inventory/{archived}");
    let id: i64 = (1..100)
        .find(|id| ledger.file(*id).unwrap().is_some_and(|f| f.path == path))
        .unwrap_or_else(|| panic!("{path} is not in the ledger"));
    let day = env.list("archive").pop().unwrap();
    std::fs::copy(env.path(&format!("archive/{day}/{archived}")), env.path(inbound)).unwrap();
    ledger.set_mark(&format!("reprocess:{ACCOUNT}:{inbound}"), &id.to_string()).unwrap();
}

#[test]
fn a_reprocessed_file_is_not_skipped_as_identical_and_a_delta_stays_a_delta() {
    // Identical content under any name is skipped on this account: but not a reprocessed copy.
    let env = Env::with(base_seed(), "skip_identical = \"any_name\"\n");
    env.put("inbound/inventory/moves_delta.csv", "sku,quantity\nRED,-2\n");
    run_once(&env);
    assert_eq!(stock(&env, "RED"), 48);
    // Without the mark, the copy is skipped as identical.
    let day = env.list("archive").pop().unwrap();
    std::fs::copy(env.path(&format!("archive/{day}/moves_delta.csv")), env.path("inbound/inventory/copy_delta.csv"))
        .unwrap();
    run_once(&env);
    assert_eq!(stock(&env, "RED"), 48);
    assert_eq!(row(&env.result("copy_delta.csv"), "RED")["outcome"], "skipped");
    // Queued again by an operator: applied again, and as a delta (48 - 2), not as a snapshot of -2.
    queue_again(&env, "moves_delta.csv", "inbound/inventory/moves~reprocess-1.csv");
    run_once(&env);
    assert_eq!(stock(&env, "RED"), 46);
    assert_eq!(row(&env.result("moves~reprocess-1.csv"), "RED")["outcome"], "updated");
}

#[test]
fn validate_reads_a_corrected_error_file_as_the_engine_will() {
    let env = Env::new();
    env.put("inbound/inventory/stock.csv", "sku,quantity\nRED,7\nBLUE,abc\nGREEN,x\n");
    run_once(&env);
    let mut rows = open_in_spreadsheet(&std::fs::read(env.path("errors/stock.csv.errors.csv")).unwrap());
    fix(&mut rows, "BLUE", "quantity", "9");
    let work = tempfile::tempdir().unwrap();
    let edited = work.path().join("stock fixed.csv");
    std::fs::write(&edited, save_as_csv(&rows, VARIANTS[0])).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .args(["validate", "--kind", "inventory", "--delimiter", ","])
        .arg(&edited)
        .output()
        .unwrap();
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(stderr.contains("read as its original inbound/inventory/stock.csv"), "{stderr}");
    // GREEN is still wrong, on the line it has in the clerk's file; BLUE passes.
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains(":3: quantity: bad_integer"), "{stdout}");
    assert!(!stdout.contains(":2: quantity"), "{stdout}");
}

#[test]
fn a_replayed_shipment_is_posted_once() {
    let env = Env::new();
    env.put("inbound/orders/o.csv", &orders_file(&[order_row("SHIP-R", "BLUE", 2, "5.00")]));
    run_once(&env);
    let f = env.fulfillment_of("SHIP-R").expect("the order was released as a fulfillment");
    let fid = f.id.to_string();
    // One good shipment and one with a quantity that is not a number.
    let body = shipments_file(&[
        ship_row(&fid, "", "BLUE", 1, "T-1"),
        ship_row(&fid, "", "BLUE", 1, "T-2").replace(",1,2024", ",one,2024"),
    ]);
    env.put("inbound/shipments/s.csv", &body);
    run_once(&env);
    assert_eq!(env.errors("s.csv").len(), 1, "{:?}", env.errors("s.csv"));
    let mut rows = open_in_spreadsheet(&std::fs::read(env.path("errors/s.csv.errors.csv")).unwrap());
    fix(&mut rows, &fid, "quantity", "1");
    let fixed = save_as_csv(&rows, VARIANTS[0]);
    put_bytes(&env, "inbound/shipments/s.csv.errors.csv", &fixed);
    run_once(&env);
    let r = env.result("s.csv.errors.csv");
    assert_eq!(r[0]["outcome"], "created", "{r:?}");
    assert_eq!((r[0]["original_file"].as_str(), r[0]["original_line"].as_str()), ("inbound/shipments/s.csv", "3"));
    let shipped = |env: &Env| env.state().shipments.values().filter(|s| s.tracking_number == "T-2").count();
    assert_eq!(shipped(&env), 1);
    let writes = env.write_requests();
    put_bytes(&env, "inbound/shipments/s again.csv", &save_as_csv(&rows, VARIANTS[3]));
    run_once(&env);
    assert_eq!(env.write_requests(), writes, "the replayed shipment is not posted twice");
    assert_eq!(shipped(&env), 1);
    assert_ne!(env.result("s again.csv")[0]["outcome"], "created");
}
