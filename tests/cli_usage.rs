//! Commands that would do nothing say so: a configuration without accounts, or an account name
//! it does not have, is a usage error (exit 2) naming what is wrong.

mod common;

use common::*;

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn a_config_without_accounts_is_a_usage_error_for_every_account_command() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("stitch-bridge.toml");
    std::fs::write(&config, "[ledger]\npath = \"ledger.sqlite\"\n").unwrap();
    for args in [&["run", "--once"][..], &["test"], &["status"], &["watch"]] {
        let out = run_bin(&config, args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        assert!(stderr(&out).contains("configures no accounts"), "{args:?}: {}", stderr(&out));
    }
}

#[test]
fn an_unknown_account_name_is_a_usage_error_naming_it() {
    let env = Env::new();
    for args in [
        &["test", "nosuch"][..],
        &["status", "nosuch"],
        &["run", "--once", "--account", "nosuch"],
        &["watch", "--account", "nosuch"],
    ] {
        let out = env.bin(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {out:?}");
        let err = stderr(&out);
        assert!(err.contains("\"nosuch\"") && err.contains(ACCOUNT), "{args:?}: {err}");
        assert!(out.stdout.is_empty(), "{args:?}: {out:?}");
    }
}
