//! Secrets never leak: after an OAuth exchange and full runs (debug logging, a halt on a wrong
//! token), neither the Stitch token nor the OAuth client secret appears in any output, drop
//! file, ledger byte, help text or status report; token file and ledger are private (0600); a
//! config readable by others draws a warning.

#[path = "crash_common/mod.rs"]
mod common;

use common::*;
use std::os::unix::fs::PermissionsExt;
use std::process::Output;
use stitch_bridge::sim::faults::FaultConfig;

const CLIENT_SECRET: &str = "CLIENT-SECRET-q9Zr4WvX";
const REDIRECT: &str = "http://localhost:9/callback";

fn mode(p: &std::path::Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

/// An authorization code from the simulator's /authorize (it approves at once).
fn auth_code(base: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let resp = client
            .get(format!("{base}/authorize"))
            .query(&[("response_type", "code"), ("client_id", "cid"), ("redirect_uri", REDIRECT), ("state", "s")])
            .send()
            .await
            .unwrap();
        let loc = resp.headers()["location"].to_str().unwrap().to_string();
        let url = reqwest::Url::parse(&loc).unwrap();
        url.query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned()
    })
}

#[test]
fn tokens_and_client_secrets_never_leak_and_files_are_private() {
    let w = Workload::generate(&mut rng(11), 12, 1, 3, 1);
    // The simulator accepts the token issued by the OAuth exchange below.
    let sim = start_sim(w.seed_json(), "bootstrap-token-not-used", FaultConfig::default(), None, None);
    let inst = Install::new(&sim.base_url(), "unused", "");
    let cfg = format!(
        "[ledger]\npath = \"state/ledger.sqlite\"\n\n[[account]]\nname = \"rel\"\ndrop = \"drop\"\nstitch_url = \"{}\"\ntoken_file = \"secrets/rel.token\"\nsettle_seconds = 0\nmax_retries = 1\n",
        sim.base_url()
    );
    std::fs::write(inst.config(), &cfg).unwrap();
    std::fs::set_permissions(inst.config(), std::fs::Permissions::from_mode(0o600)).unwrap();
    let token_path = inst.root().join("secrets/rel.token");
    std::fs::create_dir_all(token_path.parent().unwrap()).unwrap();
    // An old token file, world-readable: `auth` must not leave it that way.
    std::fs::write(&token_path, "old-token").unwrap();
    std::fs::set_permissions(&token_path, std::fs::Permissions::from_mode(0o644)).unwrap();

    let mut outputs: Vec<(String, String)> = Vec::new();
    let code = auth_code(&sim.base_url());
    let out = inst
        .command(&[
            "auth",
            "rel",
            "--client-id",
            "cid",
            "--redirect-uri",
            REDIRECT,
            "--code",
            &code,
            "--i-understand-this-creates-a-new-channel-warehouse",
        ])
        .env("STITCH_CLIENT_SECRET", CLIENT_SECRET)
        .env("STITCH_BRIDGE_LOG", "debug")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    outputs.push(("auth".into(), text(&out)));
    let token = std::fs::read_to_string(&token_path).unwrap();
    assert!(token.len() >= 16 && token != "old-token", "auth stored the new token");
    assert_eq!(mode(&token_path), 0o600, "token file is private, also when it existed before");

    // Full loop with debug logging.
    inst.put("inbound/inventory", &w.inventory_files);
    inst.put("inbound/orders", &w.order_files);
    for args in
        [&["run", "--once"][..], &["run", "--once", "--json"], &["status", "--json"], &["status"], &["test", "rel"]]
    {
        let out = inst.command(args).env("STITCH_BRIDGE_LOG", "debug").output().unwrap();
        outputs.push((args.join(" "), text(&out)));
    }
    assert!(inst.inbound_left().is_empty(), "the runs did their work");
    // A wrong token: the halt path (alert file, messages) must not echo it either.
    let wrong = "WRONG-TOKEN-secret-5d1e8a";
    std::fs::write(&token_path, wrong).unwrap();
    inst.put("inbound/orders", &[("orders_later.csv".into(), w.order_files[0].1.replace("ORD-", "LATER-"))]);
    let out = inst.command(&["run", "--once"]).env("STITCH_BRIDGE_LOG", "debug").output().unwrap();
    assert_eq!(out.status.code(), Some(3), "401 halts: {}", text(&out));
    outputs.push(("run (wrong token)".into(), text(&out)));
    // Help of every subcommand.
    for sub in ["", "validate", "run", "demo", "sim", "test", "auth", "status", "resume", "init"] {
        let mut args: Vec<&str> = sub.split_whitespace().collect();
        args.push("--help");
        let out = inst
            .command(&args)
            .env("STITCH_CLIENT_SECRET", CLIENT_SECRET)
            .env("STITCH_BRIDGE_TOKEN", &token)
            .output()
            .unwrap();
        outputs.push((format!("{sub} --help"), text(&out)));
    }
    // Files: everything in the drop, the ledger and its WAL.
    let mut files: Vec<std::path::PathBuf> = walk(&inst.drop()).into_iter().map(|p| inst.drop().join(p)).collect();
    for f in walk(&inst.root().join("state")) {
        files.push(inst.root().join("state").join(f));
    }
    let secrets = [token.trim(), CLIENT_SECRET, wrong];
    for (what, out) in &outputs {
        for s in secrets {
            assert!(!out.contains(s), "secret {s:?} leaked in the output of `{what}`:\n{out}");
        }
    }
    let mut scanned = 0;
    for f in &files {
        let bytes = std::fs::read(f).unwrap();
        scanned += bytes.len();
        for s in secrets {
            assert!(!bytes.windows(s.len()).any(|w| w == s.as_bytes()), "secret {s:?} found in {}", f.display());
        }
    }
    assert!(files.iter().any(|f| f.to_string_lossy().contains("ALERT")), "the halt wrote an alert file: {files:?}");
    let ledger = inst.ledger();
    assert_eq!(mode(&ledger), 0o600, "ledger is private");
    for suffix in ["-wal", "-shm"] {
        let p = ledger.with_file_name(format!("ledger.sqlite{suffix}"));
        if p.exists() {
            assert_eq!(mode(&p) & 0o077, 0, "{} is private", p.display());
        }
    }
    println!("secrets-summary: outputs={} files={} bytes_scanned={scanned} secrets=3", outputs.len(), files.len());
}

#[test]
fn a_config_readable_by_others_draws_a_warning() {
    let inst = Install::new("http://127.0.0.1:9", "t", "");
    let out = inst.command(&["status"]).output().unwrap();
    assert!(!text(&out).contains("readable by every user"), "0600 config: no warning: {}", text(&out));
    std::fs::set_permissions(inst.config(), std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = inst.command(&["status"]).output().unwrap();
    assert!(text(&out).contains("readable by every user"), "0644 config: warning expected: {}", text(&out));
}
