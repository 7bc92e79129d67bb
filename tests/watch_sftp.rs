//! `stitch-bridge watch` on an sFTP drop: no file events there, so the poll (here shortened
//! with `STITCH_BRIDGE_POLL_MS`) picks files up.

#[path = "support/bridge.rs"]
mod bridge;
#[path = "support/mod.rs"]
mod support;

use bridge::*;
use std::process::{Command, Stdio};
use std::time::Duration;
use stitch_bridge::drop::sftp::SftpAuth;

#[test]
fn polls_an_sftp_drop_and_stops_on_sigterm() {
    let srv = support::TestServer::russh();
    let dir = tempfile::tempdir().unwrap();
    let sim = sim();
    let c = srv.config();
    let SftpAuth::Key { path, .. } = &c.auth else { unreachable!() };
    let drop = format!("sftp://{}@127.0.0.1:{}{}", c.user, c.port, c.root);
    let extra = format!(
        "settle_seconds = 0\ndownload_interval_seconds = 600\nsftp_key_file = \"{}\"\nknown_hosts = \"{}\"\n",
        path.display(),
        c.known_hosts.display()
    );
    let cfg = write_config(dir.path(), &drop, &sim.base_url(), &extra);
    let root = srv.local_root();
    let mut child = Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .arg("--config")
        .arg(&cfg)
        .args(["watch", "--lease-seconds", "5"])
        .env("STITCH_BRIDGE_POLL_MS", "200")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The first cycle (inbound and downloads) is over once the ledger records it.
    let ledger = stitch_bridge::ledger::Ledger::open(&dir.path().join("state/ledger.sqlite")).unwrap();
    assert!(wait_for(Duration::from_secs(20), || ledger.last_cycle("wh").unwrap().is_some()));
    let downloads =
        || sim.counters().requests.iter().filter(|(k, _)| k.contains("fulfillment")).map(|(_, v)| *v).sum::<u64>();
    let after_first = downloads();
    drop_file(&root, "inbound/inventory/stock.csv", INVENTORY.as_bytes());
    assert!(wait_for(Duration::from_secs(10), || root.join("results/stock.csv.result.csv").exists()));
    assert_eq!(downloads(), after_first, "inbound polls make no download calls");
    // SAFETY: kill(2) on our own child.
    assert_eq!(unsafe { libc::kill(child.id() as i32, libc::SIGTERM) }, 0);
    let mut code = None;
    assert!(wait_for(Duration::from_secs(20), || {
        code = child.try_wait().unwrap().map(|s| s.code());
        code.is_some()
    }));
    assert_eq!(code.unwrap(), Some(0));
}
