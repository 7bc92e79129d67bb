//! Memory is bounded by `max_field_len`, not by `max_file_bytes`: a file that is one huge line is
//! read without holding the line, its over-long value is reported (`field_too_long`, with line
//! and column) and never copied whole into the ledger, the result file or the error file.
//! Peak memory of the child is measured with `getrusage(RUSAGE_CHILDREN)`; this binary holds no
//! other test, so no other child can raise that figure.

#[path = "crash_common/mod.rs"]
mod common;

use common::*;
use std::io::Write;
use stitch_bridge::sim::faults::FaultConfig;

const BIG: usize = 200 * 1024 * 1024;
/// Far below the file's size: the line must never be held whole (a copy or two would be 200+ MB).
const RSS_LIMIT_KB: i64 = 96 * 1024;
const SMALL: u64 = 64 * 1024;

/// An inventory file whose second line carries a 200 MB SKU, then a good row.
fn write_big(path: &std::path::Path) {
    let mut f = std::io::BufWriter::new(std::fs::File::create(path).unwrap());
    f.write_all(b"sku,quantity,name\n").unwrap();
    let chunk = vec![b'A'; 1024 * 1024];
    for _ in 0..BIG / chunk.len() {
        f.write_all(&chunk).unwrap();
    }
    f.write_all(b",5,huge\nSKU-OK,3,fine\n").unwrap();
    f.flush().unwrap();
}

fn children_peak_rss_kb() -> i64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru) }, 0);
    ru.ru_maxrss
}

fn size(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

#[test]
fn a_single_huge_line_is_reported_without_being_held_or_copied() {
    // `validate`: offline, the errors file on the side.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stock.csv");
    write_big(&file);
    let errors = dir.path().join("stock.errors.csv");
    let out = std::process::Command::new(BIN)
        .args(["validate", "--kind", "inventory", "--json", "--errors-out"])
        .arg(&errors)
        .arg(&file)
        .env("STITCH_BRIDGE_LOG", "warn")
        .output()
        .unwrap();
    let peak = children_peak_rss_kb();
    eprintln!("validate: peak RSS {peak} KiB");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "rows rejected: {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("field_too_long"), "{}", &text[..text.len().min(2000)]);
    assert!(text.len() < SMALL as usize, "the report holds an excerpt, not the value ({} bytes)", text.len());
    assert!(size(&errors) < SMALL, "errors file {} bytes", size(&errors));
    let err_text = std::fs::read_to_string(&errors).unwrap();
    assert!(err_text.contains("field_too_long") && err_text.contains(",2,sku,"), "line and column named: {err_text}");
    assert!(!err_text.contains("SKU-OK"), "the next row is read and is fine: {err_text}");
    assert!(peak < RSS_LIMIT_KB, "validate peaked at {peak} KiB for a {} MiB line", BIG >> 20);

    // `run --once`: the same file through the whole cycle; ledger, result and error files small.
    let token = "t-big";
    let sim = start_sim(serde_json::json!({"products": []}), token, FaultConfig::default(), None, None);
    let inst = Install::new(&sim.base_url(), token, "");
    std::fs::rename(&file, inst.drop().join("inbound/inventory/stock.csv")).unwrap();
    let (code, report, err) = inst.run_json();
    let peak = children_peak_rss_kb();
    eprintln!("run --once: peak RSS {peak} KiB (the largest child so far)");
    assert_eq!(code, 1, "one row rejected, one applied: {report}; {err}");
    let f = &report["accounts"][0]["files"][0];
    assert_eq!((f["accepted"].as_u64(), f["rejected"].as_u64()), (Some(1), Some(1)), "{report}");
    assert!(peak < RSS_LIMIT_KB, "run peaked at {peak} KiB for a {} MiB line", BIG >> 20);
    let result = inst.drop().join("results/stock.csv.result.csv");
    let errors = inst.drop().join("errors/stock.csv.errors.csv");
    assert!(size(&result) < SMALL, "result file {} bytes", size(&result));
    assert!(size(&errors) < SMALL, "errors file {} bytes", size(&errors));
    let ledger: u64 = ["", "-wal"]
        .iter()
        .map(|s| std::fs::metadata(format!("{}{s}", inst.ledger().display())).map_or(0, |m| m.len()))
        .sum();
    assert!(ledger < 8 * 1024 * 1024, "ledger {ledger} bytes");
    let status = inst.command(&["status", "--json"]).output().unwrap();
    assert!(status.stdout.len() < SMALL as usize, "status {} bytes", status.stdout.len());
}
