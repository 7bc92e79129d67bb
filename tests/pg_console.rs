//! The console's ledger reads (`ledger/console.rs`) give the same answers on SQLite and
//! PostgreSQL: one scenario, both backends.

#[path = "support_pg/mod.rs"]
mod support_pg;

use stitch_bridge::ledger::{FileFilter, FileState, Ledger, LedgerLocation, StateFilter, StoredRecord};

fn rec(line: u64, key: &str, outcome: &str, code: &str) -> StoredRecord {
    StoredRecord {
        line,
        key: key.into(),
        outcome: outcome.into(),
        remote_id: String::new(),
        code: code.into(),
        message: String::new(),
    }
}

fn scenario(loc: &LedgerLocation) {
    let mut l = Ledger::open_at(loc).unwrap();
    let a = l.take_file("a", "orders", "inbound/orders/o_1%.csv", 10, 0).unwrap();
    l.store_outcomes(a.id, &[rec(2, "PO-1", "created", ""), rec(3, "PO-2", "rejected", "bad_date")], None, false, None)
        .unwrap();
    l.finish_file(a.id, FileState::Archived, "archive/o_1%.csv").unwrap();
    let b = l.take_file("a", "shipments", "inbound/shipments/s.csv", 10, 0).unwrap();
    l.store_outcomes(b.id, &[rec(2, "F-1\u{1f}PO-1\u{1f}1Z", "created", "")], None, false, None).unwrap();
    l.take_file("b", "inventory", "inbound/inventory/i.csv", 10, 0).unwrap();
    l.record_cycle("b", "2026-01-01T00:00:00Z", "halted", "401").unwrap();
    l.record_cycle("a", "2026-01-01T00:00:00Z", "ok", "fine").unwrap();
    l.mark_fulfillment_sent("a", "F-1", "PO-1", "outbound/orders/PO-1.csv").unwrap();
    l.record_action("ops", "a", "resume", "a", "").unwrap();

    let all = l.console_files(&FileFilter::default(), 1, 2).unwrap();
    assert_eq!((all.rows.len(), all.more), (2, true));
    let f = FileFilter { q: Some("O_1%".into()), ..Default::default() };
    assert_eq!(l.console_files(&f, 1, 10).unwrap().rows.len(), 1, "case-insensitive, % literal");
    let f = FileFilter { state: Some(StateFilter::WithErrors), ..Default::default() };
    assert_eq!(l.console_files(&f, 1, 10).unwrap().rows[0].id, a.id);
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let f = FileFilter {
        account: Some("a".into()),
        from: Some(today.clone()),
        to: Some(today.clone()),
        ..Default::default()
    };
    assert_eq!(l.console_files(&f, 1, 10).unwrap().rows.len(), 2);
    let recs = l.console_records(a.id, 1, 1).unwrap();
    assert_eq!((recs.rows[0].key.as_str(), recs.more), ("PO-1", true));
    assert_eq!(l.console_rejected_records(a.id, 10).unwrap().len(), 1);
    let days = l.files_per_day("a", &today).unwrap();
    assert_eq!((days.len(), days[0].files, days[0].rows), (1, 2, 3));
    assert_eq!(l.files_seen_since("a", &today).unwrap(), 2);
    assert_eq!(l.oldest_unfinished("b").unwrap().unwrap().0, "inbound/inventory/i.csv");
    assert_eq!(l.count_open_intents("a").unwrap(), 0);
    assert_eq!(l.count_x12_unacked("a").unwrap(), 0);
    assert_eq!(l.console_sent(Some("a"), 1, 10).unwrap().rows[0].order_ref, "PO-1");
    assert_eq!(l.console_sent(None, 1, 10).unwrap().rows.len(), 1);
    assert_eq!(l.sent_for_order("PO-1").unwrap().len(), 1);
    let found = l.records_for_order("PO-1", 10).unwrap();
    assert_eq!(found.len(), 2, "the order row and the shipment row: {found:?}");
    let cycles = l.console_cycles(None, 1, 10).unwrap();
    assert_eq!(cycles.rows.iter().map(|c| c.outcome.as_str()).collect::<Vec<_>>(), ["halted"]);
    assert!(l.console_cycles(Some("a"), 1, 10).unwrap().rows.is_empty());
    assert_eq!(l.console_actions(10).unwrap()[0].who, "ops");
    l.set_mark("reprocess:a:x", "1").unwrap();
    l.delete_mark("reprocess:a:x").unwrap();
    assert_eq!(l.get_mark("reprocess:a:x").unwrap(), None);
}

#[test]
fn console_reads_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    scenario(&LedgerLocation::Sqlite(dir.path().join("l.sqlite")));
}

#[test]
fn console_reads_on_postgres() {
    let Some(pg) = support_pg::server("console_reads_on_postgres") else { return };
    scenario(&pg.fresh());
}
