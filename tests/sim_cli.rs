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
        .args(["sim", "--listen", "127.0.0.1:0", "--token", "cli-token", "--seed"])
        .arg(&seed)
        .arg("--state")
        .arg(&state)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        reqwest::Client::new()
            .post(format!("{base}{}", stitch_bridge::stitch::wire::PRODUCTS))
            .header(stitch_bridge::stitch::wire::ACCESS_TOKEN_HEADER, "cli-token")
            .json(&serde_json::json!({"products": [{"sku": "CLI-1", "stock": 2}]}))
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, 200);

    // SAFETY: plain kill(2) on the child we spawned.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
    let saved: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    assert_eq!(saved["products"]["CLI-1"]["stock"], 2);
    assert_eq!(saved["products"]["WIDGET-RED"]["stock"], 25);
}

/// Starts `sim` with `args`; returns the child, the base URL and the admin token it printed.
fn start_sim(args: &[&str]) -> (std::process::Child, String, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .arg("sim")
        .args(args)
        .env_remove("STITCH_SIM_ADMIN_TOKEN")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut first, mut second) = (String::new(), String::new());
    out.read_line(&mut first).unwrap();
    out.read_line(&mut second).unwrap();
    let base = first.trim().strip_prefix("listening on ").unwrap_or_else(|| panic!("first line {first:?}")).to_string();
    let admin =
        second.trim().strip_prefix("admin token: ").unwrap_or_else(|| panic!("second line {second:?}")).to_string();
    (child, base, admin)
}

fn admin_status(base: &str, token: Option<&str>) -> u16 {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut rb = reqwest::Client::new().get(format!("{base}/_admin/counters"));
        if let Some(t) = token {
            rb = rb.header(stitch_bridge::sim::ADMIN_TOKEN_HEADER, t);
        }
        rb.send().await.unwrap().status().as_u16()
    })
}

/// SIGTERM, wait, and return what it said on stderr.
fn stop(mut child: std::process::Child) -> String {
    // SAFETY: plain kill(2) on the child we spawned.
    assert_eq!(unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) }, 0);
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    assert!(child.wait().unwrap().success());
    err
}

#[test]
fn sim_prints_a_random_admin_token_and_warns_off_loopback() {
    let (child, base, admin) = start_sim(&["--listen", "0.0.0.0:0"]);
    assert!(admin.len() >= 32, "{admin:?}");
    let port = base.rsplit(':').next().unwrap();
    let local = format!("http://127.0.0.1:{port}");
    assert_eq!(admin_status(&local, None), 401);
    assert_eq!(admin_status(&local, Some("sim-token")), 401, "the API token is not the admin token");
    assert_eq!(admin_status(&local, Some(&admin)), 200);
    let err = stop(child);
    assert!(err.contains("warning") && err.contains("not a loopback address"), "{err}");

    // On loopback: no warning; a given admin token is the one printed and accepted.
    let (child, base, admin) = start_sim(&["--listen", "127.0.0.1:0", "--admin-token", "given-admin-token"]);
    assert_eq!(admin, "given-admin-token");
    assert_eq!(admin_status(&base, Some("given-admin-token")), 200);
    assert_eq!(admin_status(&base, Some("other")), 401);
    let err = stop(child);
    assert!(!err.contains("loopback"), "{err}");
}
