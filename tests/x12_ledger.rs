//! The ledger's X12 memory on a real SQLite file and, when a PostgreSQL server is available
//! (`STITCH_BRIDGE_TEST_PG_URL`, or `initdb` found), on a fresh PostgreSQL database with the
//! same assertions: control numbers, sent sets and their 997s, seen interchanges.

#[path = "support_pg/mod.rs"]
mod support_pg;

use chrono::{DateTime, Duration as Span, TimeZone, Utc};
use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use stitch_bridge::ledger::{AckStatus, Ledger, LedgerLocation, SentSet, X12Doc, X12Sent};

/// Run `check` on SQLite, then on PostgreSQL if available.
fn on_both(test: &str, check: impl Fn(&LedgerLocation)) {
    let dir = tempfile::tempdir().unwrap();
    check(&LedgerLocation::Sqlite(dir.path().join("l.sqlite")));
    if let Some(pg) = support_pg::server(test) {
        check(&pg.fresh());
    }
}

fn open(loc: &LedgerLocation) -> Ledger {
    Ledger::open_at(loc).unwrap_or_else(|e| panic!("open {}: {e}", loc.describe()))
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 12, 0, 0).unwrap()
}

fn set(control: u32, doc: X12Doc, fulfillment: Option<&str>) -> SentSet {
    SentSet { control, doc, fulfillment_id: fulfillment.map(String::from) }
}

fn sent(partner: &str, path: &str, interchange: u32, group: u32, sets: Vec<SentSet>, at: DateTime<Utc>) -> X12Sent {
    X12Sent { partner: partner.into(), path: path.into(), interchange, group, sets, sent_at: at }
}

#[test]
fn control_numbers_increase_per_partner_independently() {
    on_both("control_numbers_increase_per_partner_independently", |loc| {
        let l = open(loc);
        let a1 = l.allocate_x12_controls("acme", "ZZ:WH1", 3).unwrap();
        let a2 = l.allocate_x12_controls("acme", "ZZ:WH1", 1).unwrap();
        let a3 = l.allocate_x12_controls("acme", "ZZ:WH1", 2).unwrap();
        assert_eq!((a1.interchange, a1.group, a1.set_controls()), (1, 1, 1..=3), "{}", l.backend());
        assert!(a2.interchange > a1.interchange && a3.interchange > a2.interchange);
        assert!(a2.group > a1.group && a3.group > a2.group);
        assert!(a2.first_set > *a1.set_controls().end(), "runs never overlap: {a1:?} {a2:?}");
        assert!(a3.first_set > *a2.set_controls().end(), "runs never overlap: {a2:?} {a3:?}");
        assert_eq!(a3.set_controls().count(), 2);

        // Another partner of the same account, and the same partner id under another account,
        // each start their own series.
        let b = l.allocate_x12_controls("acme", "ZZ:WH2", 1).unwrap();
        let c = l.allocate_x12_controls("other", "ZZ:WH1", 1).unwrap();
        assert_eq!((b.interchange, b.group, b.first_set), (1, 1, 1));
        assert_eq!((c.interchange, c.group, c.first_set), (1, 1, 1));
        let a4 = l.allocate_x12_controls("acme", "ZZ:WH1", 1).unwrap();
        assert_eq!(a4.interchange, a3.interchange + 1, "other series did not move this one");
        assert!(l.allocate_x12_controls("acme", "ZZ:WH1", 0).is_err(), "a file has at least one set");
    });
}

#[test]
fn allocated_numbers_are_never_handed_out_again_after_a_crash() {
    on_both("allocated_numbers_are_never_handed_out_again_after_a_crash", |loc| {
        let first = {
            let l = open(loc);
            l.allocate_x12_controls("acme", "ZZ:WH1", 2).unwrap()
            // Dropped without recording anything: as if the process died before writing.
        };
        let l = open(loc);
        let next = l.allocate_x12_controls("acme", "ZZ:WH1", 2).unwrap();
        assert!(next.interchange > first.interchange, "{first:?} then {next:?} ({})", l.backend());
        assert!(next.group > first.group);
        assert!(next.first_set > *first.set_controls().end());
    });
}

#[test]
fn concurrent_allocations_from_separate_handles_never_collide() {
    on_both("concurrent_allocations_from_separate_handles_never_collide", |loc| {
        const PER_THREAD: usize = 40;
        let start = Arc::new(Barrier::new(2));
        let workers: Vec<_> = (0..2)
            .map(|_| {
                let (loc, start) = (loc.clone(), start.clone());
                std::thread::spawn(move || {
                    let l = open(&loc);
                    start.wait();
                    (0..PER_THREAD).map(|_| l.allocate_x12_controls("acme", "ZZ:WH1", 2).unwrap()).collect::<Vec<_>>()
                })
            })
            .collect();
        let got: Vec<Vec<_>> = workers.into_iter().map(|w| w.join().unwrap()).collect();
        for mine in &got {
            assert!(mine.windows(2).all(|w| w[1].interchange > w[0].interchange), "increasing for each caller");
        }
        let all: Vec<_> = got.into_iter().flatten().collect();
        let isa: HashSet<u32> = all.iter().map(|c| c.interchange).collect();
        let gs: HashSet<u32> = all.iter().map(|c| c.group).collect();
        let st: HashSet<u32> = all.iter().flat_map(|c| c.set_controls()).collect();
        assert_eq!(isa.len(), 2 * PER_THREAD, "no ISA13 twice ({})", loc.describe());
        assert_eq!(gs.len(), 2 * PER_THREAD, "no GS06 twice");
        assert_eq!(st.len(), 4 * PER_THREAD, "no ST02 twice");
        assert_eq!(isa.iter().max(), Some(&(2 * PER_THREAD as u32)), "no number skipped without a crash");
    });
}

#[test]
fn a_partners_interchange_is_recognised_when_it_comes_again() {
    on_both("a_partners_interchange_is_recognised_when_it_comes_again", |loc| {
        let l = open(loc);
        assert!(l.x12_interchange_seen("acme", "ZZ:WH1", "000000042").unwrap().is_none());
        let before = Utc::now() - Span::seconds(1);
        assert!(l.mark_x12_interchange("acme", "ZZ:WH1", "000000042", "inbound/edi/a.edi").unwrap());
        assert!(!l.mark_x12_interchange("acme", "ZZ:WH1", "000000042", "inbound/edi/b.edi").unwrap(), "seen");
        let seen = l.x12_interchange_seen("acme", "ZZ:WH1", "000000042").unwrap().expect("seen");
        assert_eq!(seen.path, "inbound/edi/a.edi", "the first file stays on record");
        assert!(seen.at >= before && seen.at <= Utc::now() + Span::seconds(1), "{:?}", seen.at);
        assert!(l.x12_interchange_seen("acme", "ZZ:WH2", "000000042").unwrap().is_none(), "per partner");
        assert!(l.x12_interchange_seen("other", "ZZ:WH1", "000000042").unwrap().is_none(), "per account");
        assert!(l.x12_interchange_seen("acme", "ZZ:WH1", "000000043").unwrap().is_none());
    });
}

#[test]
fn a_997_marks_the_sets_of_its_group_accepted_or_rejected() {
    on_both("a_997_marks_the_sets_of_its_group_accepted_or_rejected", |loc| {
        let mut l = open(loc);
        let file = sent(
            "ZZ:WH1",
            "outbound/orders/a.edi",
            7,
            5,
            vec![
                set(11, X12Doc::Order, Some("F1")),
                set(12, X12Doc::Order, Some("F2")),
                set(13, X12Doc::Cancel, Some("F3")),
            ],
            t0(),
        );
        l.record_x12_sent("acme", &file).unwrap();
        l.record_x12_sent("acme", &file).unwrap(); // recorded again after a crash: no change
        let ack = sent("ZZ:WH1", "outbound/acks/x.edi", 8, 5, vec![set(1, X12Doc::Ack, None)], t0());
        l.record_x12_sent("acme", &ack).unwrap();
        let other = sent("ZZ:WH1", "outbound/orders/b.edi", 9, 6, vec![set(14, X12Doc::Order, Some("F4"))], t0());
        l.record_x12_sent("acme", &other).unwrap();

        assert!(l.record_x12_ack("acme", "ZZ:WH1", 99, "A", &[], "inbound/edi/u.edi").unwrap().is_empty(), "unknown");
        assert!(l.record_x12_ack("acme", "ZZ:WH2", 5, "R", &[], "inbound/edi/v.edi").unwrap().is_empty(), "partner");
        assert!(l.record_x12_ack("zeta", "ZZ:WH1", 5, "R", &[], "inbound/edi/w.edi").unwrap().is_empty(), "account");

        // Partially accepted: F2 rejected with its AK2, F1 accepted with its own, F3 without one.
        let docs = l
            .record_x12_ack("acme", "ZZ:WH1", 5, "P", &[(11, "A".into()), (12, "R".into())], "inbound/edi/997.edi")
            .unwrap();
        let verdicts: Vec<_> = docs.iter().map(|d| (d.fulfillment_id.as_deref(), d.doc, d.ack)).collect();
        assert_eq!(
            verdicts,
            vec![
                (Some("F1"), X12Doc::Order, Some(AckStatus::Accepted)),
                (Some("F2"), X12Doc::Order, Some(AckStatus::Rejected)),
                (Some("F3"), X12Doc::Cancel, Some(AckStatus::Accepted)),
            ],
            "the 997 sent in group 5 is ours and never matched ({})",
            l.backend()
        );
        assert!(docs.iter().all(|d| d.path == "outbound/orders/a.edi" && (d.interchange, d.group) == (7, 5)));
        assert!(docs.iter().all(|d| d.ack_path.as_deref() == Some("inbound/edi/997.edi")));

        let rejected = l.x12_rejected("acme").unwrap();
        assert_eq!(rejected.len(), 1);
        assert_eq!((rejected[0].fulfillment_id.as_deref(), rejected[0].set_control), (Some("F2"), 12));
        assert_eq!(rejected[0].sent_at, t0());
        let open_ones = l.x12_unacknowledged("acme", t0() + Span::days(1)).unwrap();
        assert_eq!(open_ones.iter().map(|d| d.set_control).collect::<Vec<_>>(), vec![14], "only group 6 waits");

        // A group rejected whole, with no AK2 at all, rejects every set in it.
        let docs = l.record_x12_ack("acme", "ZZ:WH1", 6, "R", &[], "inbound/edi/997b.edi").unwrap();
        assert_eq!(docs.iter().map(|d| d.ack).collect::<Vec<_>>(), vec![Some(AckStatus::Rejected)]);
        let rejected: Vec<_> = l.x12_rejected("acme").unwrap().into_iter().map(|d| d.set_control).collect();
        assert_eq!(rejected, vec![12, 14]);
        assert!(l.x12_unacknowledged("acme", t0() + Span::days(1)).unwrap().is_empty());
    });
}

#[test]
fn unacknowledged_sets_are_those_sent_before_the_cutoff_without_a_997() {
    on_both("unacknowledged_sets_are_those_sent_before_the_cutoff_without_a_997", |loc| {
        let mut l = open(loc);
        let early = sent("ZZ:WH1", "outbound/orders/a.edi", 1, 1, vec![set(1, X12Doc::Order, Some("F1"))], t0());
        let late = sent(
            "ZZ:WH1",
            "outbound/cancellations/b.edi",
            2,
            2,
            vec![set(2, X12Doc::Cancel, Some("F1"))],
            t0() + Span::hours(2),
        );
        let ack = sent("ZZ:WH1", "outbound/acks/c.edi", 3, 3, vec![set(3, X12Doc::Ack, None)], t0());
        for f in [&early, &late, &ack] {
            l.record_x12_sent("acme", f).unwrap();
        }
        let ids = |cutoff| -> Vec<u32> {
            l.x12_unacknowledged("acme", cutoff).unwrap().into_iter().map(|d| d.set_control).collect()
        };
        assert_eq!(ids(t0()), Vec::<u32>::new(), "sent at the cutoff is not before it ({})", loc.describe());
        assert_eq!(ids(t0() + Span::hours(1)), vec![1], "the later one is still within its time");
        assert_eq!(ids(t0() + Span::hours(3)), vec![1, 2], "oldest first; our own 997s never wait for one");
        assert!(l.x12_unacknowledged("other", t0() + Span::hours(3)).unwrap().is_empty(), "per account");

        let docs = l.record_x12_ack("acme", "ZZ:WH1", 1, "A", &[], "inbound/edi/997.edi").unwrap();
        assert_eq!(docs.len(), 1);
        let left = l.x12_unacknowledged("acme", t0() + Span::hours(3)).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(
            (left[0].doc, left[0].path.as_str(), left[0].sent_at, left[0].ack),
            (X12Doc::Cancel, "outbound/cancellations/b.edi", t0() + Span::hours(2), None)
        );
    });
}
