//! The drop marker: a hidden file at the drop's root naming the ledger that serves the drop.
//!
//! The ledger is the only memory of what was already sent. A ledger that was deleted and
//! recreated, restored from the wrong backup, or simply another installation's, starts without
//! that memory and would send every open order to the warehouse again. Each ledger has a random
//! id (migration 2); the first cycle writes it into the drop, and every cycle compares before it
//! touches anything. A mismatch stops the account until `stitch-bridge adopt ACCOUNT` says the
//! new ledger is meant. The name starts with a dot, so no poller ever takes it as input.

use crate::drop::{DropError, DropErrorKind, DropResult, Transport};
use std::io::{self, Read};

/// At the drop root, beside `inbound/` (never inside a folder the warehouse uploads to).
pub const MARKER_NAME: &str = ".stitch-bridge-ledger";

/// Longer than any marker we write: a bigger file is not ours, and is not read whole.
const MAX_MARKER_BYTES: u64 = 4096;

/// What the check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// The drop names this ledger: go on.
    Ours,
    /// The drop had no marker; this ledger's id is now written there (fresh install, or a drop
    /// served by a release that had no markers).
    Written,
    /// The drop names another ledger (its id, or `None` if the marker cannot be read as one).
    Foreign(Option<String>),
}

/// The marker's text for `ledger_id`.
pub fn render(ledger_id: &str) -> String {
    format!(
        "# stitch-bridge: this drop is served by the ledger with the id below. Do not edit or delete.\n\
         # Another ledger that finds this file stops instead of sending orders again.\n\
         # To move this drop to another ledger on purpose, run `stitch-bridge adopt ACCOUNT`.\n\
         ledger_id = {ledger_id}\n"
    )
}

/// The ledger id a marker names, if it is one of ours.
pub fn parse(text: &str) -> Option<String> {
    let id = text.lines().find_map(|l| l.trim().strip_prefix("ledger_id"))?.trim_start().strip_prefix('=')?.trim();
    let plausible = !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    plausible.then(|| id.to_string())
}

/// Read the marker: `Ok(None)` when there is none, `Ok(Some(None))` when it is not one of ours.
pub fn read(drop: &mut dyn Transport) -> DropResult<Option<Option<String>>> {
    if drop.stat(MARKER_NAME)?.is_none() {
        return Ok(None);
    }
    let mut bytes = Vec::new();
    drop.open_read(MARKER_NAME)?
        .take(MAX_MARKER_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| DropError::from_io(MARKER_NAME, e))?;
    if bytes.len() as u64 > MAX_MARKER_BYTES {
        return Ok(Some(None));
    }
    Ok(Some(std::str::from_utf8(&bytes).ok().and_then(parse)))
}

/// Compare the drop's marker with `ledger_id`, writing it when the drop has none. Writes are
/// no-replace: of two ledgers racing on an unmarked drop, the second finds the first's marker.
pub fn check(drop: &mut dyn Transport, ledger_id: &str) -> DropResult<Marker> {
    match read(drop)? {
        Some(Some(id)) if id == ledger_id => Ok(Marker::Ours),
        Some(other) => Ok(Marker::Foreign(other)),
        None => match drop.write_atomic(MARKER_NAME, &mut render(ledger_id).as_bytes()) {
            Ok(()) => Ok(Marker::Written),
            Err(e) if e.kind == DropErrorKind::AlreadyExists => match read(drop)? {
                Some(Some(id)) if id == ledger_id => Ok(Marker::Ours),
                Some(other) => Ok(Marker::Foreign(other)),
                None => Err(DropError::new(
                    MARKER_NAME,
                    DropErrorKind::NotFound,
                    io::Error::new(
                        io::ErrorKind::NotFound,
                        "the drop marker appeared and vanished while it was being written",
                    ),
                )),
            },
            Err(e) => Err(e),
        },
    }
}

/// Make the drop name `ledger_id` (the operator's `adopt`); returns the id it named before.
/// Remove, then write: a crash in between leaves no marker, which the next cycle writes as ours.
pub fn adopt(drop: &mut dyn Transport, ledger_id: &str) -> DropResult<Option<Option<String>>> {
    let before = read(drop)?;
    if before.is_some() {
        drop.remove(MARKER_NAME)?;
    }
    drop.write_atomic(MARKER_NAME, &mut render(ledger_id).as_bytes())?;
    Ok(before)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::drop::local::LocalDrop;

    #[test]
    fn rendered_markers_parse_back_and_others_do_not() {
        assert_eq!(parse(&render("0a1b2c")).as_deref(), Some("0a1b2c"));
        for bad in ["", "ledger_id =", "ledger_id = a b", "ledger_id = ../x", "hello"] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn first_check_writes_then_matches_and_another_ledger_is_foreign() {
        let dir = tempfile::tempdir().unwrap();
        let mut d = LocalDrop::new(dir.path());
        assert_eq!(check(&mut d, "aaaa").unwrap(), Marker::Written);
        assert_eq!(check(&mut d, "aaaa").unwrap(), Marker::Ours);
        assert_eq!(check(&mut d, "bbbb").unwrap(), Marker::Foreign(Some("aaaa".into())));
        assert!(crate::drop::is_ignored_name(MARKER_NAME), "never taken as input");
        assert!(!crate::drop::is_temp_of_ours(MARKER_NAME), "never swept as a stale temp file");
        assert_eq!(adopt(&mut d, "bbbb").unwrap(), Some(Some("aaaa".into())));
        assert_eq!(check(&mut d, "bbbb").unwrap(), Marker::Ours);
        std::fs::write(dir.path().join(MARKER_NAME), vec![b'x'; 10_000]).unwrap();
        assert_eq!(check(&mut d, "bbbb").unwrap(), Marker::Foreign(None), "an oversized marker is not ours");
    }
}
