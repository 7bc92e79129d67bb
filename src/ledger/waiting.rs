//! Files seen in `inbound/` whose settle clock is still running, read back for `run` and
//! `status`: without it a file waiting to settle is invisible until it is taken.

use super::db::p;
use super::{Ledger, Result};

/// One settle observation: the path's last seen size and mtime, and since when it looked so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub path: String,
    pub size: i64,
    pub mtime_ms: i64,
    pub since_ms: i64,
}

impl Ledger {
    /// Every path of `account` with a settle observation (not yet taken, or left by a cycle
    /// that stopped early), oldest first. Read-only.
    pub fn waiting_files(&self, account: &str) -> Result<Vec<Waiting>> {
        self.query(
            "SELECT path, size, mtime, since_ms FROM observations WHERE account=?1 ORDER BY since_ms, path",
            p![account],
            |r| Ok(Waiting { path: r.text(0)?, size: r.int(1)?, mtime_ms: r.int(2)?, since_ms: r.int(3)? }),
        )
    }
}
