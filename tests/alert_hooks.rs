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
