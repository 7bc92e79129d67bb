//! When is a file on the drop safe to take? Pure decision over what the poll saw.
//!
//! An uploader writing a file changes its size or mtime; we take a file only when both have
//! stood still for `settle` by our own clock across polls, or its mtime is already older than
//! `settle` (a file that sat there while no poll ran, e.g. between cron runs). With a marker
//! convention (`NAME.done`), the marker's presence is the signal and settle time is not needed.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn millis(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_millis() as i64,
        Err(e) => -(e.duration().as_millis() as i64),
    }
}

/// `since_ms`: when this poll history first saw the current size+mtime.
pub fn is_settled(now_ms: i64, mtime_ms: i64, since_ms: i64, settle: Duration) -> bool {
    let s = settle.as_millis() as i64;
    if s == 0 {
        return true;
    }
    now_ms - since_ms >= s || (mtime_ms <= now_ms && now_ms - mtime_ms >= s)
}

/// The moment [`is_settled`] turns true if nothing changes: `settle` after the file was first
/// seen as it is, or after its mtime when that is earlier (and not in the future).
pub fn due_ms(mtime_ms: i64, since_ms: i64, settle: Duration) -> i64 {
    let start = if mtime_ms <= since_ms { mtime_ms } else { since_ms };
    start.saturating_add(settle.as_millis() as i64)
}

/// Whole seconds from `now_ms` to `due_ms`, rounded up so "0" means "due now".
pub fn seconds_until(due_ms: i64, now_ms: i64) -> u64 {
    let ms = due_ms.saturating_sub(now_ms).max(0) as u64;
    ms.div_ceil(1000)
}

/// The data file a marker announces, if `name` is a marker.
pub fn marked_file<'a>(name: &'a str, suffixes: &[String]) -> Option<&'a str> {
    suffixes.iter().find_map(|s| name.strip_suffix(s.as_str()).filter(|base| !base.is_empty()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn growing_file_waits_until_still() {
        let settle = Duration::from_secs(10);
        let now = 1_000_000;
        // Just written (mtime now), first seen now: not settled.
        assert!(!is_settled(now, now, now, settle));
        // Seen unchanged for 10 s: settled.
        assert!(is_settled(now + 10_000, now, now, settle));
        // Changed 5 s ago (since reset): not yet.
        assert!(!is_settled(now + 10_000, now + 5_000, now + 5_000, settle));
        // Old file seen for the first time: settled at once.
        assert!(is_settled(now, now - 60_000, now, settle));
        // A clock-skewed mtime in the future never counts as old.
        assert!(!is_settled(now, now + 60_000, now, settle));
        assert!(is_settled(now, now, now, Duration::ZERO));
    }

    #[test]
    fn due_is_when_is_settled_turns_true() {
        let settle = Duration::from_secs(10);
        for (mtime, since) in
            [(1_000_000, 1_000_000), (990_000, 1_000_000), (1_060_000, 1_000_000), (900_000, 1_000_000)]
        {
            let due = due_ms(mtime, since, settle);
            assert!(!is_settled(due - 1, mtime, since, settle) || due <= since, "{mtime} {since}");
            assert!(is_settled(due, mtime, since, settle), "{mtime} {since}");
        }
        assert_eq!(seconds_until(10_001, 0), 11);
        assert_eq!(seconds_until(10_000, 0), 10);
        assert_eq!(seconds_until(0, 10_000), 0);
    }

    #[test]
    fn markers() {
        let s = vec![".done".to_string(), ".ok".to_string()];
        assert_eq!(marked_file("a.csv.done", &s), Some("a.csv"));
        assert_eq!(marked_file("a.csv.ok", &s), Some("a.csv"));
        assert_eq!(marked_file("a.csv", &s), None);
        assert_eq!(marked_file(".done", &s), None);
    }
}
