//! Shared by the bench programs: quick mode, result rows for `bench/run`, child processes
//! measured for wall time and peak RSS, deterministic pseudo-random numbers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// `--quick` on the command line or `BENCH_QUICK=1`: small sizes for a smoke run.
pub fn quick() -> bool {
    std::env::args().any(|a| a == "--quick") || std::env::var("BENCH_QUICK").as_deref() == Ok("1")
}

/// A size from the environment, else `full` (or `small` in quick mode).
pub fn size(env: &str, full: usize, small: usize) -> usize {
    std::env::var(env).ok().and_then(|v| v.parse().ok()).unwrap_or(if quick() { small } else { full })
}

/// One row of the summary table. `bench/run` collects the `ROW|` lines of every program.
pub fn row(what: &str, ours: &str, comparison: &str, ratio: &str, target: &str, pass: Option<bool>) {
    let verdict = match pass {
        Some(true) => "pass",
        Some(false) => "FAIL",
        None => "n/a",
    };
    println!("ROW|{what}|{ours}|{comparison}|{ratio}|{target}|{verdict}");
}

/// A note printed under the table (`bench/run` collects `NOTE|` lines).
pub fn note(text: &str) {
    println!("NOTE|{text}");
}

pub struct Measured {
    pub wall: Duration,
    /// Peak resident set of the child alone, bytes.
    pub max_rss: u64,
    pub status: i32,
}

/// Runs a child to completion and reads its own rusage with `wait4`, so the peak RSS is this
/// child's, not the maximum over every child this process ever had.
pub fn measure(cmd: &mut Command, stdout: Option<&Path>) -> std::io::Result<Measured> {
    let out = match stdout {
        Some(p) => Stdio::from(std::fs::File::create(p)?),
        None => Stdio::null(),
    };
    let started = Instant::now();
    let child = cmd.stdin(Stdio::null()).stdout(out).spawn()?;
    let pid = child.id() as libc::pid_t;
    let mut status: libc::c_int = 0;
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::wait4(pid, &mut status, 0, &mut ru) };
    let wall = started.elapsed();
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    std::mem::forget(child); // already reaped
    let code = if libc::WIFEXITED(status) { libc::WEXITSTATUS(status) } else { -1 };
    Ok(Measured { wall, max_rss: ru.ru_maxrss as u64 * 1024, status: code })
}

/// First program of that name on PATH (or in `extra` folders).
pub fn find_program(name: &str, extra: &[&str]) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain(extra.iter().map(PathBuf::from)).map(|d| d.join(name)).find(|p| p.is_file())
}

/// SplitMix64: deterministic content without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

pub fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// Minimal HTTP/1.1 POST of a JSON body to an admin endpoint of the simulator (`admin_token` in
/// its header); returns the status.
pub fn http_post_json(addr: std::net::SocketAddr, path: &str, admin_token: &str, body: &str) -> std::io::Result<u16> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\n{}: {admin_token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        stitch_bridge::sim::ADMIN_TOKEN_HEADER,
        body.len()
    )?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    Ok(answer.split_whitespace().nth(1).and_then(|c| c.parse().ok()).unwrap_or(0))
}
