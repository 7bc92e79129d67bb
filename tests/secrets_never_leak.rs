//! Secrets (the Stitch token, the OAuth client secret) never appear in logs, result or error
//! files, the ledger, alert files, `status` or `--help`.

use std::fs;
use std::path::Path;
use std::process::Command;
use stitch_bridge::sim::{self, SimOptions};

const TOKEN: &str = "SECRET-TOKEN-7f3a9c1e";
const CLIENT_SECRET: &str = "CLIENT-SECRET-b44d02";

fn bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_stitch-bridge"));
    c.env("STITCH_BRIDGE_LOG", "debug").env("ACME_TOKEN", TOKEN).env("STITCH_CLIENT_SECRET", CLIENT_SECRET);
    c
}

fn collect(dir: &Path, out: &mut Vec<u8>) {
    for e in fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            collect(&p, out);
        } else {
            out.extend(fs::read(&p).unwrap_or_default());
        }
    }
}

fn assert_clean(what: &str, bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for s in [TOKEN, CLIENT_SECRET] {
        assert!(!text.contains(s), "{what} contains a secret");
    }
}

#[test]
fn no_secret_in_any_output() {
    let good = sim::start_in_background(SimOptions { token: TOKEN.into(), ..Default::default() }).unwrap();
    let refusing = sim::start_in_background(SimOptions { token: "another".into(), ..Default::default() }).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("stitch-bridge.toml");
    fs::write(
        &cfg,
        format!(
            "[[account]]\nname = \"ok\"\ndrop = \"ok\"\nstitch_url = \"{}\"\ntoken_env = \"ACME_TOKEN\"\nsettle_seconds = 0\n\n\
             [[account]]\nname = \"refused\"\ndrop = \"refused\"\nstitch_url = \"{}\"\ntoken_env = \"ACME_TOKEN\"\nsettle_seconds = 0\n",
            good.base_url(),
            refusing.base_url()
        ),
    )
    .unwrap();
    for a in ["ok", "refused"] {
        let inv = dir.path().join(a).join("inbound/inventory");
        fs::create_dir_all(&inv).unwrap();
        fs::write(inv.join("stock.csv"), "sku,quantity\nS-1,4\nS-2,-1\n").unwrap();
    }
    let mut out = Vec::new();
    let run = bin().arg("--config").arg(&cfg).args(["run", "--once"]).output().unwrap();
    assert_eq!(run.status.code(), Some(3), "the refused account halts");
    out.extend(&run.stdout);
    out.extend(&run.stderr);
    let json = bin().arg("--config").arg(&cfg).args(["--log-format", "json", "run", "--once", "--json"]).output().unwrap();
    out.extend(&json.stdout);
    out.extend(&json.stderr);
    for args in [&["status", "--json"][..], &["status"], &["test"]] {
        let o = bin().arg("--config").arg(&cfg).args(args).output().unwrap();
        out.extend(&o.stdout);
        out.extend(&o.stderr);
    }
    assert!(!out.is_empty());
    assert_clean("command output and logs", &out);
    let mut files = Vec::new();
    collect(dir.path(), &mut files);
    // The drops (results, errors, alert), the ledger, the config: only the token's env name.
    assert!(dir.path().join("refused/ALERT-refused.txt").exists());
    assert!(dir.path().join("ok/errors/stock.csv.errors.csv").exists());
    assert_clean("files written", &files);
    for sub in ["", "run", "watch", "auth", "status", "test", "trust", "sim", "demo", "validate", "resume", "init"] {
        let mut c = bin();
        if !sub.is_empty() {
            c.arg(sub);
        }
        let o = c.arg("--help").output().unwrap();
        assert!(o.status.success(), "{sub} --help");
        assert_clean(&format!("{sub} --help"), &[o.stdout, o.stderr].concat());
    }
}
