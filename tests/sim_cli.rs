//! `stitch-bridge sim` as a process: prints where it listens, serves, saves state on SIGTERM.
#![cfg(unix)]

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

#[test]
fn sim_command_serves_and_saves_state_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.json");
    let seed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/sim-seed.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .args([
            "sim",
            "--listen",
            "127.0.0.1:0",
            "--token",
            "cli-token",
            "--seed",
        ])
        .arg(&seed)
        .arg("--state")
        .arg(&state)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{base}{}", stitch_bridge::stitch::wire::PRODUCTS))
            .header(
                stitch_bridge::stitch::wire::ACCESS_TOKEN_HEADER,
                "cli-token",
            )
            .json(&serde_json::json!({"products": [{"sku": "CLI-1", "stock": 2}]}))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);

    // SAFETY: plain kill(2) on the child we spawned.
    assert_eq!(
        unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) },
        0
    );
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["products"]["CLI-1"]["stock"], 2);
    assert_eq!(saved["products"]["WIDGET-RED"]["stock"], 25);
}
