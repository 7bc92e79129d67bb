//! Groups contiguous rows sharing a key (an order, a shipment) without buffering the file.
//!
//! Only the current group is held in memory. Keys of finished groups are remembered as 128-bit
//! hashes, so a key that comes back later is detected at ~16 bytes per group.

use std::collections::HashSet;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};
use std::io::Read;

use super::error::FileRejection;
use super::header::HeaderMap;
use super::reader::{Row, RowReader};

/// 128-bit fingerprint from two independently seeded hashes (deterministic across runs). Wide
/// enough that two different keys sharing one is negligible (about 2^-64 for 2^32 keys).
pub(crate) fn fingerprint(key: &str) -> u128 {
    const A: foldhash::quality::FixedState = foldhash::quality::FixedState::with_seed(0x5eed_0001);
    const B: foldhash::quality::FixedState = foldhash::quality::FixedState::with_seed(0x5eed_0002);
    (u128::from(A.hash_one(key)) << 64) | u128::from(B.hash_one(key))
}

/// Hasher for fingerprints, which are already uniformly distributed: use their bits as they are
/// instead of hashing them again.
#[derive(Default)]
pub(crate) struct FpHasher(u64);

impl Hasher for FpHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Not used for u128 keys; kept correct for any other input.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

/// A set of fingerprints.
pub(crate) type FpSet = HashSet<u128, BuildHasherDefault<FpHasher>>;

/// Why a group is rejected before its rows are even looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupProblem {
    /// The key already had a group earlier in the file.
    NotContiguous,
    /// More rows than allowed; further rows of the same run come as more such groups.
    TooLarge,
}

#[derive(Default)]
pub(crate) struct Group {
    /// `None` when the first row has no usable key: such a row is a group by itself.
    pub key: Option<String>,
    pub rows: Vec<Row>,
    pub problem: Option<GroupProblem>,
}

/// Writes a row's group key into `out` (cleared first); `false` when the row has none.
pub(crate) type KeyFn = fn(&Row, &HeaderMap, &mut String) -> bool;

pub(crate) struct Grouper {
    pending: Option<Row>,
    seen: FpSet,
    max_rows: usize,
    /// Key hash of the previous group if it was cut short for size.
    overflowing: Option<u128>,
    /// Rows of finished groups, reused for the next ones.
    spare: Vec<Row>,
    /// The next row's key, compared with the group's.
    next_key: String,
}

impl Grouper {
    pub fn new(max_rows: usize) -> Self {
        Grouper {
            pending: None,
            seen: FpSet::default(),
            max_rows: max_rows.max(1),
            overflowing: None,
            spare: Vec::new(),
            next_key: String::new(),
        }
    }

    fn read<R: Read>(&mut self, rows: &mut RowReader<R>) -> Option<Result<Row, FileRejection>> {
        let mut row = self.spare.pop().unwrap_or_default();
        match rows.next_row_into(&mut row)? {
            Ok(()) => Some(Ok(row)),
            Err(e) => Some(Err(e)),
        }
    }

    /// The next group, owned.
    pub fn next_group<R: Read>(&mut self, rows: &mut RowReader<R>, key: KeyFn) -> Option<Result<Group, FileRejection>> {
        let mut group = Group::default();
        match self.next_group_into(rows, key, &mut group)? {
            Ok(()) => Some(Ok(group)),
            Err(e) => Some(Err(e)),
        }
    }

    /// The next group, into `group`, whose rows and key buffer are reused.
    pub fn next_group_into<R: Read>(
        &mut self,
        rows: &mut RowReader<R>,
        key: KeyFn,
        group: &mut Group,
    ) -> Option<Result<(), FileRejection>> {
        self.spare.append(&mut group.rows);
        let mut k = group.key.take().unwrap_or_default();
        group.problem = None;
        let first = match self.pending.take() {
            Some(r) => r,
            None => match self.read(rows)? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            },
        };
        if !key(&first, &rows.map, &mut k) {
            self.overflowing = None;
            group.rows.push(first);
            return Some(Ok(()));
        }
        let h = fingerprint(&k);
        let mut problem = if self.overflowing == Some(h) {
            Some(GroupProblem::TooLarge)
        } else if self.seen.contains(&h) {
            Some(GroupProblem::NotContiguous)
        } else {
            None
        };
        self.overflowing = None;
        group.rows.push(first);
        loop {
            match self.read(rows) {
                None => break,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(r)) => {
                    let mut next = std::mem::take(&mut self.next_key);
                    let same = key(&r, &rows.map, &mut next) && next == k;
                    self.next_key = next;
                    if !same {
                        self.pending = Some(r);
                        break;
                    }
                    if group.rows.len() >= self.max_rows {
                        // Cut here to bound memory; the rest of the run is rejected as well.
                        self.pending = Some(r);
                        self.overflowing = Some(h);
                        problem = Some(GroupProblem::TooLarge);
                        break;
                    }
                    group.rows.push(r);
                }
            }
        }
        self.seen.insert(h);
        group.key = Some(k);
        group.problem = problem;
        Some(Ok(()))
    }
}
