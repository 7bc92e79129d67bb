//! Groups contiguous rows sharing a key (an order, a shipment) without buffering the file.
//!
//! Only the current group is held in memory. Keys of finished groups are remembered as 128-bit
//! hashes, so a key that comes back later is detected at ~16 bytes per group.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::Read;

use super::error::FileRejection;
use super::header::HeaderMap;
use super::reader::{Row, RowReader};

/// 128-bit fingerprint from two independently seeded SipHashes (deterministic across runs).
pub(crate) fn fingerprint(key: &str) -> u128 {
    let half = |seed: u8| {
        let mut h = DefaultHasher::new();
        seed.hash(&mut h);
        key.hash(&mut h);
        h.finish()
    };
    (u128::from(half(1)) << 64) | u128::from(half(2))
}

/// Why a group is rejected before its rows are even looked at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GroupProblem {
    /// The key already had a group earlier in the file.
    NotContiguous,
    /// More rows than allowed; further rows of the same run come as more such groups.
    TooLarge,
}

pub(crate) struct Group {
    /// `None` when the first row has no usable key: such a row is a group by itself.
    pub key: Option<String>,
    pub rows: Vec<Row>,
    pub problem: Option<GroupProblem>,
}

pub(crate) struct Grouper {
    pending: Option<Row>,
    seen: HashSet<u128>,
    max_rows: usize,
    /// Key hash of the previous group if it was cut short for size.
    overflowing: Option<u128>,
}

impl Grouper {
    pub fn new(max_rows: usize) -> Self {
        Grouper {
            pending: None,
            seen: HashSet::new(),
            max_rows: max_rows.max(1),
            overflowing: None,
        }
    }

    pub fn next_group<R: Read>(
        &mut self,
        rows: &mut RowReader<R>,
        key: impl Fn(&Row, &HeaderMap) -> Option<String>,
    ) -> Option<Result<Group, FileRejection>> {
        let first = match self.pending.take() {
            Some(r) => r,
            None => match rows.next_row()? {
                Ok(r) => r,
                Err(e) => return Some(Err(e)),
            },
        };
        let Some(k) = key(&first, &rows.map) else {
            self.overflowing = None;
            return Some(Ok(Group {
                key: None,
                rows: vec![first],
                problem: None,
            }));
        };
        let h = fingerprint(&k);
        let mut problem = if self.overflowing == Some(h) {
            Some(GroupProblem::TooLarge)
        } else if self.seen.contains(&h) {
            Some(GroupProblem::NotContiguous)
        } else {
            None
        };
        self.overflowing = None;
        let mut group = vec![first];
        loop {
            match rows.next_row() {
                None => break,
                Some(Err(e)) => return Some(Err(e)),
                Some(Ok(r)) => {
                    if key(&r, &rows.map).as_deref() != Some(k.as_str()) {
                        self.pending = Some(r);
                        break;
                    }
                    if group.len() >= self.max_rows {
                        // Cut here to bound memory; the rest of the run is rejected as well.
                        self.pending = Some(r);
                        self.overflowing = Some(h);
                        problem = Some(GroupProblem::TooLarge);
                        break;
                    }
                    group.push(r);
                }
            }
        }
        self.seen.insert(h);
        Some(Ok(Group {
            key: Some(k),
            rows: group,
            problem,
        }))
    }
}
