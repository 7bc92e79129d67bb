//! Output to a closed pipe or a full device never panics (exit 101): a closed pipe ends with the
//! command's own exit code and no complaint; a full device with one line on stderr and exit 2. Through the real binary, a real pipe whose read end is closed before the child
//! starts, and /dev/full.
#![cfg(unix)]

mod common;

use common::*;
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::process::{Command, Output, Stdio};
use stitch_bridge::engine::exit;

/// Where the child's stdout goes.
enum Sink {
    /// A pipe nobody reads: its read end is closed before the child is spawned, so every
    /// write fails with EPIPE.
    ClosedPipe,
    DevFull,
}

fn run_to(sink: Sink, config: Option<&Path>, args: &[&str]) -> Output {
    let stdout = match sink {
        Sink::ClosedPipe => {
            let mut fds = [0; 2];
            // SAFETY: pipe(2) fills two fresh descriptors, which we own from here on.
            assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0);
            let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
            drop(read);
            Stdio::from(write)
        }
        Sink::DevFull => Stdio::from(std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap()),
    };
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_stitch-bridge"));
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(args)
        .env_remove("STITCH_BRIDGE_CONFIG")
        .env("STITCH_BRIDGE_LOG", "error")
        .stdin(Stdio::null())
        .stdout(stdout)
        .stderr(Stdio::piped())
        .output()
        .expect("binary runs")
}

fn stderr_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_quiet_with(o: &Output, code: i32) {
    let err = stderr_of(o);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(code), "{err}");
    // Whatever the command says on stderr anyway (validate --json's summary), but no word
    // about its output.
    assert!(!err.contains("cannot write") && !err.contains("Broken pipe") && !err.contains("os error"), "{err}");
}

#[track_caller]
fn assert_one_line_error(o: &Output) {
    let err = stderr_of(o);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(o.status.code(), Some(exit::USAGE), "{err}");
    // One line about it, last (validate --json says its summary on stderr before it), and no
    // other line naming an os error.
    let last = err.lines().last().unwrap_or_default();
    assert!(last.starts_with("error: cannot write to standard output") && last.contains("No space left"), "{err}");
    assert_eq!(err.lines().filter(|l| l.contains("os error")).count(), 1, "{err}");
}

#[test]
fn status_and_run_to_a_closed_pipe_keep_their_exit_codes() {
    let env = Env::new();
    env.put("inbound/inventory/stock.csv", "sku,quantity\nRED,1\nBLUE,lots\n");
    // `run` does its work whatever happens to its report: rows rejected → 1.
    let o = run_to(Sink::ClosedPipe, Some(&env.config_path), &["run"]);
    assert_quiet_with(&o, exit::REJECTED);
    assert_eq!(env.archived(), vec!["stock.csv".to_string()], "the file was processed");
    let o = run_to(Sink::ClosedPipe, Some(&env.config_path), &["status"]);
    assert_quiet_with(&o, exit::OK);
    assert_eq!(stderr_of(&o), "");
    let o = run_to(Sink::ClosedPipe, Some(&env.config_path), &["status", "--json"]);
    assert_quiet_with(&o, exit::OK);
}

#[test]
fn status_to_a_full_device_is_one_line_and_exit_2() {
    let env = Env::new();
    env.cycle();
    assert_one_line_error(&run_to(Sink::DevFull, Some(&env.config_path), &["status"]));
    assert_one_line_error(&run_to(Sink::DevFull, Some(&env.config_path), &["status", "--json"]));
}

#[test]
fn validate_and_help_to_a_closed_pipe_or_a_full_device() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("inventory.csv");
    let mut text = String::from("sku,quantity\n");
    for i in 0..2000 {
        text.push_str(&format!("SKU{i},not-a-number\n"));
    }
    std::fs::write(&file, text).unwrap();
    let f = file.to_str().unwrap();
    // What it returns when its output can be written.
    let normal = Command::new(env!("CARGO_BIN_EXE_stitch-bridge"))
        .args(["validate", "--json", f])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap()
        .code()
        .unwrap();
    assert_ne!(normal, exit::USAGE);
    assert_quiet_with(&run_to(Sink::ClosedPipe, None, &["validate", "--json", f]), normal);
    assert_one_line_error(&run_to(Sink::DevFull, None, &["validate", "--json", f]));
    assert_one_line_error(&run_to(Sink::DevFull, None, &["validate", f]));

    assert_quiet_with(&run_to(Sink::ClosedPipe, None, &["--help"]), 0);
    assert_one_line_error(&run_to(Sink::DevFull, None, &["--help"]));
    assert_one_line_error(&run_to(Sink::DevFull, None, &["--version"]));
    assert_one_line_error(&run_to(Sink::DevFull, None, &["status", "--help"]));
}

#[test]
fn status_piped_into_head_is_not_a_panic() {
    let env = Env::new();
    env.cycle();
    // The shell's own pipeline: `head` exits after one line, whatever status writes next.
    let o = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "'{}' --config '{}' status | head -1",
            env!("CARGO_BIN_EXE_stitch-bridge"),
            env.config_path.display()
        ))
        .env("STITCH_BRIDGE_LOG", "error")
        .output()
        .unwrap();
    let err = stderr_of(&o);
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(String::from_utf8_lossy(&o.stdout).lines().count(), 1);
}
