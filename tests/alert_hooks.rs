//! Alert hooks: the operator's command and URL hear about a rejected file and a halted account,
//! with the account, the event and the text.

mod common;

use common::*;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;
use std::time::Duration;
use stitch_bridge::engine::exit;

/// A one-route HTTP server: every POST body arrives on the channel, answered 200.
fn hook_server() -> (String, mpsc::Receiver<Value>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut length = 0usize;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                    length = v.trim().parse().unwrap_or(0);
                }
            }
            let mut body = vec![0u8; length];
            let _ = reader.read_exact(&mut body);
            let _ = conn.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            if let Ok(v) = serde_json::from_slice(&body) {
                let _ = tx.send(v);
            }
        }
    });
    (format!("http://{addr}/hook"), rx)
}

#[test]
fn command_and_url_hear_of_a_rejected_file_and_a_halt() {
    let (url, posted) = hook_server();
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("alerts.txt");
    let extra = format!(
        "alert_command = \"cat >> '{}'; echo \\\" [$STITCH_BRIDGE_ALERT_EVENT]\\\" >> '{}'\"\nalert_url = \"{url}\"\n",
        out.display(),
        out.display()
    );
    let env = Env::with(base_seed(), &extra);

    // A file without its required columns is rejected whole.
    env.put("inbound/inventory/no_columns.csv", "name\nWidget\n");
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::REJECTED, "{r:?}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("no_columns.csv") && text.contains("[file_rejected]"), "{text}");
    let ev = posted.recv_timeout(Duration::from_secs(10)).expect("the URL was posted to");
    assert_eq!(ev["account"], ACCOUNT);
    assert_eq!(ev["event"], "file_rejected");
    assert!(ev["text"].as_str().unwrap().contains("no_columns.csv"), "{ev}");

    // Stitch stops accepting the token: the account halts and says so.
    env.admin("token", json!({"token": "another-token"}));
    env.put("inbound/inventory/stock.csv", "sku,quantity\nRED,1\n");
    let r = env.cycle();
    assert_eq!(r.exit_code(), exit::HALTED, "{r:?}");
    let ev = posted.recv_timeout(Duration::from_secs(10)).expect("the URL heard of the halt");
    assert_eq!(ev["event"], "halted");
    assert!(ev["text"].as_str().unwrap().contains("401"), "{ev}");
    assert!(!ev["text"].as_str().unwrap().contains(TOKEN), "never the token: {ev}");
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(text.contains("[halted]") && text.contains("resume"), "{text}");
}

/// What a hook's environment holds, from `env -0` written to `path`.
fn read_env(path: &std::path::Path) -> std::collections::BTreeMap<String, String> {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("the hook wrote its environment: {e}"));
    String::from_utf8_lossy(&bytes)
        .split('\0')
        .filter(|kv| !kv.is_empty())
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

#[test]
fn command_sees_only_a_minimal_environment() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("env.bin");
    let env = Env::with(base_seed(), &format!("alert_command = \"env -0 > '{}'\"\n", out.display()));
    env.put("inbound/inventory/no_columns.csv", "name\nWidget\n");
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .arg("--config")
        .arg(&env.config_path)
        .arg("run")
        .env("ACME_STITCH_TOKEN", "secret-in-the-environment")
        .env("SIDE_CANARY", "inherited")
        .env("LANG", "C.UTF-8")
        .env("STITCH_BRIDGE_LOG", "warn")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(exit::REJECTED));
    let seen = read_env(&out);
    assert_eq!(seen.get("STITCH_BRIDGE_ALERT_EVENT").map(String::as_str), Some("file_rejected"), "{seen:?}");
    assert_eq!(seen.get("STITCH_BRIDGE_ALERT_ACCOUNT").map(String::as_str), Some(ACCOUNT));
    assert_eq!(seen.get("LANG").map(String::as_str), Some("C.UTF-8"), "LANG is passed on");
    assert!(seen.contains_key("PATH"), "{seen:?}");
    assert!(!seen.values().any(|v| v.contains("secret-in-the-environment")), "{seen:?}");
    // Only what we pass, plus what `sh` sets for itself.
    let allowed = ["PATH", "HOME", "LANG", "TZ", "PWD", "SHLVL", "_"];
    let extra: Vec<&String> =
        seen.keys().filter(|k| !allowed.contains(&k.as_str()) && !k.starts_with("STITCH_BRIDGE_ALERT_")).collect();
    assert!(extra.is_empty(), "inherited variables reached the hook: {extra:?}");
}

/// Linux: the process is gone (or a zombie nobody has reaped yet, which no longer runs).
fn process_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with(['Z', 'X'])),
    }
}

#[test]
fn a_hung_command_is_killed_with_its_children_after_the_timeout() {
    let out_dir = tempfile::tempdir().unwrap();
    let pid_file = out_dir.path().join("sleep.pid");
    // The sleep is a child of `sh`, so killing `sh` alone would leave it running.
    let extra = format!(
        "alert_timeout_seconds = 1\nalert_command = \"sleep 1000 & echo $! > '{}'; wait\"\n",
        pid_file.display()
    );
    let env = Env::with(base_seed(), &extra);
    env.put("inbound/inventory/no_columns.csv", "name\nWidget\n");
    let started = std::time::Instant::now();
    let r = env.cycle();
    let took = started.elapsed();
    assert_eq!(r.exit_code(), exit::REJECTED, "{r:?}");
    assert!(took < Duration::from_secs(15), "the run waited {took:?} for a hook limited to 1 s");
    let pid: u32 = std::fs::read_to_string(&pid_file).unwrap().trim().parse().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !process_gone(pid) {
        if std::time::Instant::now() > deadline {
            // Do not leave it holding the test runner's stderr open.
            let _ = std::process::Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("the hook's sleep (pid {pid}) is still running");
        }
        std::thread::yield_now();
    }
}

#[test]
fn a_url_that_never_answers_is_abandoned_after_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        // Accept and hold every connection, never answering.
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    let env = Env::with(base_seed(), &format!("alert_timeout_seconds = 1\nalert_url = \"http://{addr}/hook\"\n"));
    env.put("inbound/inventory/no_columns.csv", "name\nWidget\n");
    let started = std::time::Instant::now();
    let r = env.cycle();
    let took = started.elapsed();
    assert_eq!(r.exit_code(), exit::REJECTED, "{r:?}");
    assert!(took < Duration::from_secs(15), "the run waited {took:?} for a URL limited to 1 s");
}
