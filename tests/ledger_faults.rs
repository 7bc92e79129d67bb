//! A ledger that cannot be used stops the run with a clear message and exit code 2; it is never
//! replaced by a silent fresh ledger (which would send everything again).

use std::fs;
use std::process::Command;

fn setup(dir: &std::path::Path) -> std::path::PathBuf {
    let cfg = dir.join("stitch-bridge.toml");
    fs::write(
        &cfg,
        "[ledger]\npath = \"ledger.sqlite\"\n\n[[account]]\nname = \"a\"\ndrop = \"drop\"\nstitch_url = \"http://127.0.0.1:9\"\ntoken_env = \"LEDGER_TEST_TOKEN\"\nsettle_seconds = 0\n",
    )
    .unwrap();
    fs::create_dir_all(dir.join("drop/inbound/inventory")).unwrap();
    fs::write(dir.join("drop/inbound/inventory/stock.csv"), "sku,quantity\nL-1,1\n").unwrap();
    cfg
}

fn run(cfg: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .env("LEDGER_TEST_TOKEN", "t")
        .arg("--config")
        .arg(cfg)
        .args(["run", "--once"])
        .output()
        .unwrap()
}

#[test]
fn corrupt_ledger_is_refused_and_left_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let garbage = b"SQLite format 3\0".iter().copied().chain(std::iter::repeat_n(0xA5u8, 8000)).collect::<Vec<u8>>();
    fs::write(dir.path().join("ledger.sqlite"), &garbage).unwrap();
    let o = run(&cfg);
    assert_eq!(o.status.code(), Some(2));
    let text = String::from_utf8_lossy(&[o.stdout, o.stderr].concat()).to_string();
    assert!(text.contains("damaged") && text.contains("do not delete it"), "{text}");
    assert_eq!(fs::read(dir.path().join("ledger.sqlite")).unwrap(), garbage);
    assert!(dir.path().join("drop/inbound/inventory/stock.csv").exists(), "nothing processed");
}

#[test]
fn locked_ledger_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = setup(dir.path());
    let path = dir.path().join("ledger.sqlite");
    stitch_bridge::ledger::Ledger::open(&path).unwrap();
    let holder = rusqlite::Connection::open(&path).unwrap();
    holder.execute_batch("BEGIN EXCLUSIVE").unwrap();
    let o = run(&cfg);
    assert_eq!(o.status.code(), Some(2));
    let text = String::from_utf8_lossy(&[o.stdout, o.stderr].concat()).to_string();
    assert!(text.contains("locked by another process"), "{text}");
    holder.execute_batch("ROLLBACK").unwrap();
    assert!(dir.path().join("drop/inbound/inventory/stock.csv").exists());
}
