//! Shared test harness: real SSH servers on loopback for the sFTP drop.
//!
//! ```ignore
//! #[path = "support/mod.rs"] mod support;
//! let srv = support::TestServer::russh();            // always available
//! let srv = support::TestServer::sshd();             // Option: None when OpenSSH is missing
//! let mut drop = SftpDrop::connect(srv.config())?;   // key auth, host key already trusted
//! std::fs::write(srv.local_root().join("in.csv"), b"...")?; // the drop root, seen locally
//! ```
#![allow(dead_code)]

pub mod russh_server;
pub mod sshd;

use std::path::{Path, PathBuf};
use stitch_bridge::drop::sftp::SftpConfig;

pub use russh_server::RusshServer;
pub use sshd::Sshd;

pub enum TestServer {
    Russh(RusshServer),
    Sshd(Sshd),
}

impl TestServer {
    pub fn russh() -> TestServer {
        TestServer::Russh(RusshServer::start())
    }

    /// `None` when OpenSSH is not installed (and `STITCH_BRIDGE_REQUIRE_SSHD` is not `1`).
    pub fn sshd() -> Option<TestServer> {
        Sshd::start().map(TestServer::Sshd)
    }

    pub fn name(&self) -> &'static str {
        match self {
            TestServer::Russh(_) => "russh",
            TestServer::Sshd(_) => "sshd",
        }
    }

    /// Key-authenticated config whose known_hosts trusts this server; 10 s timeouts.
    pub fn config(&self) -> SftpConfig {
        match self {
            TestServer::Russh(s) => s.config(),
            TestServer::Sshd(s) => s.config(),
        }
    }

    /// The drop root as a local folder (to arrange and inspect files directly).
    pub fn local_root(&self) -> PathBuf {
        match self {
            TestServer::Russh(s) => s.local_root(),
            TestServer::Sshd(s) => s.local_root(),
        }
    }

    /// A private temp folder outside the drop root.
    pub fn scratch(&self) -> &Path {
        match self {
            TestServer::Russh(s) => s.scratch(),
            TestServer::Sshd(s) => s.scratch(),
        }
    }

    pub fn host_key(&self) -> &[u8] {
        match self {
            TestServer::Russh(s) => &s.host_key,
            TestServer::Sshd(s) => &s.host_key,
        }
    }

    pub fn port(&self) -> u16 {
        match self {
            TestServer::Russh(s) => s.port,
            TestServer::Sshd(s) => s.port,
        }
    }
}
