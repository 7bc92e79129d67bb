//! The ledger's semantics, checked against both backends: every check runs on a SQLite file and
//! on a fresh PostgreSQL database (skipped, saying why, when no PostgreSQL is available).

#[path = "support_pg/mod.rs"]
mod support_pg;

use std::time::Duration;
use stitch_bridge::ledger::{
    FileState, FileStep, Finished, IntentState, Ledger, LedgerError, LedgerLocation, NewIntent, PgTls, StoredRecord,
};
use stitch_bridge::model::{IntentKey, OrderAction, Outcome, Payload};

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

#[test]
fn halt_and_resume() {
    on_both("halt_and_resume", |loc| {
        let l = open(loc);
        assert!(l.halted("a").unwrap().is_none());
        l.halt("a", "unauthorized", "401").unwrap();
        l.halt("a", "forbidden", "403").unwrap();
        assert_eq!(l.halted("a").unwrap().unwrap().code, "forbidden", "{}", l.backend());
        assert!(l.resume("a").unwrap());
        assert!(!l.resume("a").unwrap());
        assert!(l.halted("a").unwrap().is_none());
    });
}

#[test]
fn leases_exclude_others_until_they_lapse() {
    on_both("leases_exclude_others_until_they_lapse", |loc| {
        let l = open(loc);
        let ttl = Duration::from_secs(60);
        assert!(l.acquire_lease("drop:a", "w1", ttl).unwrap());
        assert!(!l.acquire_lease("drop:a", "w2", ttl).unwrap());
        assert!(l.acquire_lease("drop:a", "w1", ttl).unwrap(), "renewal");
        assert!(l.acquire_lease("drop:b", "w2", Duration::ZERO).unwrap());
        assert!(l.acquire_lease("drop:b", "w1", ttl).unwrap(), "a lapsed lease is free");
        assert_eq!(l.lease("drop:b").unwrap().unwrap().holder, "w1");

        // Account claims: exclusive, renewable only by the holder, free again once released.
        assert!(l.claim_account("acme", "w1", ttl).unwrap());
        assert!(!l.claim_account("acme", "w2", ttl).unwrap());
        assert!(l.renew_account("acme", "w1", ttl).unwrap());
        assert!(!l.renew_account("acme", "w2", ttl).unwrap());
        assert_eq!(l.renew_leases("w1", ttl).unwrap(), 3, "drop:a, drop:b, acme");
        l.release_account("acme", "w2").unwrap();
        assert_eq!(l.account_claim("acme").unwrap().unwrap().holder, "w1", "only the holder releases");
        l.release_account("acme", "w1").unwrap();
        assert!(l.claim_account("acme", "w2", ttl).unwrap());
    });
}

#[test]
fn intents_done_never_reopen_and_failed_retry() {
    fn ship(t: &str) -> NewIntent {
        let key = IntentKey::Shipment { fulfillment_id: "F1".into(), tracking_number: t.into() };
        NewIntent::new(key, Payload::shipment("F1", t, "abc"))
    }
    fn order(r: &str, action: OrderAction) -> NewIntent {
        NewIntent::new(IntentKey::Order { content: "abc".into(), order_ref: r.into() }, Payload::order(r, action))
    }
    on_both("intents_done_never_reopen_and_failed_retry", |loc| {
        {
            let mut l = open(loc);
            let items = vec![ship("T1")];
            assert_eq!(l.begin_intents("a", &items).unwrap()[0].state, IntentState::Pending);
            l.complete_intents("a", &[Finished::new(items[0].key.clone(), Outcome::Created, "S9", "")]).unwrap();
            let again = l.begin_intents("a", &items).unwrap();
            assert_eq!(again[0].state, IntentState::Done);
            assert_eq!(again[0].remote_id.as_deref(), Some("S9"));
            assert_eq!(again[0].outcome, Some(Outcome::Created));
            assert_eq!(again[0].attempts, 1, "a done intent is not attempted again");
            l.begin_intents("a", &[order("k1", OrderAction::Create), order("k2", OrderAction::Create)]).unwrap();
            l.fail_intents("a", &[Finished::new(order("k2", OrderAction::Create).key, Outcome::Rejected, "", "422")])
                .unwrap();
        }
        let mut l = open(loc);
        let pending: Vec<_> = l.pending_intents("a").unwrap().into_iter().map(|i| i.key).collect();
        assert_eq!(pending, vec![order("k1", OrderAction::Create).key], "survives reopening");
        assert_eq!(l.count_intents("a", IntentState::Failed).unwrap(), 1);
        let k2 = order("k2", OrderAction::Cancel);
        let retry = l.begin_intents("a", std::slice::from_ref(&k2)).unwrap();
        assert_eq!((retry[0].state, retry[0].attempts, &retry[0].payload), (IntentState::Pending, 2, &k2.payload));
        assert_eq!(l.intent("a", &k2.key).unwrap().unwrap().message.as_deref(), Some("422"));
        assert!(l.intent("b", &k2.key).unwrap().is_none(), "intents are per account");
    });
}

#[test]
fn files_move_through_their_steps() {
    on_both("files_move_through_their_steps", |loc| {
        let mut l = open(loc);
        let f = l.take_file("a", "orders", "inbound/orders/o.csv", 10, 1000).unwrap();
        assert_eq!((f.state, f.step), (FileState::Processing, FileStep::Taken));
        assert_eq!(l.take_file("a", "orders", "inbound/orders/o.csv", 10, 1000).unwrap().id, f.id, "resumed, not new");
        l.set_hash(f.id, "abc", 12).unwrap();
        let recs = vec![
            StoredRecord {
                line: 3,
                key: "k3".into(),
                outcome: "created".into(),
                remote_id: "9".into(),
                code: "".into(),
                message: "".into(),
            },
            StoredRecord {
                line: 2,
                key: "k2b".into(),
                outcome: "rejected".into(),
                remote_id: "".into(),
                code: "bad_sku".into(),
                message: "no".into(),
            },
            StoredRecord {
                line: 2,
                key: "k2a".into(),
                outcome: "rejected".into(),
                remote_id: "".into(),
                code: "x".into(),
                message: "".into(),
            },
        ];
        l.store_outcomes(f.id, &recs, None, true, Some("whole file")).unwrap();
        let keys: Vec<_> = l.outcomes(f.id).unwrap().into_iter().map(|r| r.key).collect();
        assert_eq!(keys, vec!["k2b", "k2a", "k3"], "by line, then insertion order");
        l.store_outcomes(f.id, &recs[..1], None, false, None).unwrap();
        assert_eq!(l.outcomes(f.id).unwrap().len(), 1, "storing again replaces");
        let row = l.file(f.id).unwrap().unwrap();
        assert_eq!(
            (row.step, row.accepted, row.rejected, row.reject_file, row.size),
            (FileStep::Applied, 1, 0, false, 12)
        );
        l.set_step(f.id, FileStep::ResultWritten, Some("results/o.csv"), None).unwrap();
        l.set_step(f.id, FileStep::ErrorsWritten, None, Some("errors/o.csv")).unwrap();
        l.plan_final_path(f.id, "archive/o.csv").unwrap();
        assert_eq!(l.unfinished_files("a").unwrap().len(), 1);
        l.finish_file(f.id, FileState::Archived, "archive/o.csv").unwrap();
        let row = l.file(f.id).unwrap().unwrap();
        assert_eq!(row.result_path.as_deref(), Some("results/o.csv"));
        assert_eq!(row.errors_path.as_deref(), Some("errors/o.csv"));
        assert_eq!((row.state, row.step), (FileState::Archived, FileStep::Moved));
        assert!(l.unfinished_file("a", "inbound/orders/o.csv").unwrap().is_none());

        // Same content again: found as a duplicate of the finished file, not of itself.
        let g = l.take_file("a", "orders", "inbound/orders/o.csv", 12, 2000).unwrap();
        assert_ne!(g.id, f.id, "a finished path taken again is a new file");
        assert_eq!(l.processed_with_hash("a", "abc", g.id).unwrap().unwrap().id, f.id);
        assert!(l.processed_with_hash("a", "abc", f.id).unwrap().is_none());
        assert!(l.processed_with_hash("b", "abc", g.id).unwrap().is_none());
        l.store_outcomes(g.id, &[], Some(f.id), false, None).unwrap();
        assert_eq!(l.file(g.id).unwrap().unwrap().duplicate_of, Some(f.id));

        let h = l.take_file("b", "inventory", "inbound/inventory/s.csv", 1, 1).unwrap();
        l.finish_file(h.id, FileState::Rejected, "rejected/s.csv").unwrap();
        assert_eq!(l.recent_files(None, 10).unwrap().len(), 3);
        assert_eq!(l.recent_files(Some("b"), 10).unwrap()[0].id, h.id);
        assert_eq!(l.recent_files(None, 1).unwrap()[0].id, h.id, "newest first");
        assert_eq!(l.file_counts_since("a", "2000-01-01").unwrap(), (1, 0));
        assert_eq!(l.file_counts_since("b", "2000-01-01").unwrap(), (0, 1));
        assert_eq!(l.file_counts_since("a", "2999-01-01").unwrap(), (0, 0));
    });
}

#[test]
fn observations_keep_the_settle_clock() {
    on_both("observations_keep_the_settle_clock", |loc| {
        let l = open(loc);
        assert_eq!(l.oldest_waiting_ms("a").unwrap(), None);
        assert_eq!(l.observe("a", "p", 5, 100, 1_000).unwrap().since_ms, 1_000);
        assert_eq!(l.observe("a", "p", 5, 100, 2_000).unwrap().since_ms, 1_000, "unchanged: clock keeps running");
        assert_eq!(l.observe("a", "p", 6, 100, 3_000).unwrap().since_ms, 3_000, "changed: clock restarts");
        l.observe("a", "q", 1, 1, 2_500).unwrap();
        assert_eq!(l.oldest_waiting_ms("a").unwrap(), Some(2_500));
        l.forget_observation("a", "q").unwrap();
        assert_eq!(l.oldest_waiting_ms("a").unwrap(), Some(3_000));
    });
}

#[test]
fn sent_fulfillments_cycles_and_marks() {
    on_both("sent_fulfillments_cycles_and_marks", |loc| {
        let l = open(loc);
        l.mark_fulfillment_sent("a", "F1", "PO-1", "outbound/orders/1.csv").unwrap();
        l.mark_fulfillment_sent("a", "F1", "PO-1", "outbound/orders/other.csv").unwrap();
        l.mark_fulfillment_sent("a", "F2", "PO-2", "outbound/orders/2.csv").unwrap();
        assert!(l.fulfillment_sent("a", "F1").unwrap());
        assert!(!l.fulfillment_sent("b", "F1").unwrap());
        assert_eq!(l.fulfillment_for_order("a", "PO-2").unwrap().as_deref(), Some("F2"));
        l.set_fulfillment_state(
            "a",
            "F1",
            stitch_bridge::model::SentState::Cancelled,
            Some("outbound/cancellations/1.csv"),
        )
        .unwrap();
        l.set_fulfillment_state("a", "F1", stitch_bridge::model::SentState::Cancelled, None).unwrap();
        assert_eq!(l.fulfillments_in_flight("a").unwrap(), vec![("F2".to_string(), "PO-2".to_string())]);
        assert_eq!(l.count_sent_fulfillments("a").unwrap(), (2, 1));
        assert_eq!(l.count_sent_fulfillments("nobody").unwrap(), (0, 0));

        assert!(l.last_cycle("a").unwrap().is_none());
        l.record_cycle("a", "2024-01-01T00:00:00Z", "ok", "first").unwrap();
        l.record_cycle("a", "2024-01-01T00:01:00Z", "pending", "second").unwrap();
        assert_eq!(l.last_cycle("a").unwrap().unwrap().2, "second");

        assert_eq!(l.get_mark("k").unwrap(), None);
        l.set_mark("k", "1").unwrap();
        l.set_mark("k", "2").unwrap();
        assert_eq!(l.get_mark("k").unwrap().as_deref(), Some("2"));
    });
}

#[test]
fn reopening_migrates_once_and_newer_schemas_are_refused() {
    on_both("reopening_migrates_once_and_newer_schemas_are_refused", |loc| {
        open(loc).set_mark("kept", "yes").unwrap();
        assert_eq!(open(loc).get_mark("kept").unwrap().as_deref(), Some("yes"), "reopening keeps the data");
        match loc {
            LedgerLocation::Sqlite(p) => {
                rusqlite::Connection::open(p).unwrap().pragma_update(None, "user_version", 99).unwrap();
            }
            LedgerLocation::Postgres { .. } => {
                let pg = support_pg::server("newer schema").unwrap();
                pg.connect(loc).batch("UPDATE schema_version SET version = 99");
            }
        }
        assert!(matches!(Ledger::open_at(loc), Err(LedgerError::TooNew { found: 99, .. })));
    });
}

/// Workers sharing one ledger see one id, concurrent first opens included; another ledger (a
/// recreated database) has another, so a drop marked by the first refuses it.
#[test]
fn ledger_id_is_made_once_and_shared_by_every_connection() {
    on_both("ledger_id_is_made_once_and_shared_by_every_connection", |loc| {
        let ids: Vec<String> = std::thread::scope(|s| {
            let hs: Vec<_> = (0..6).map(|_| s.spawn(|| open(loc).id().unwrap())).collect();
            hs.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(ids.iter().all(|i| *i == ids[0] && i.len() == 32), "{}: one id: {ids:?}", loc.describe());
        assert_eq!(open(loc).id().unwrap(), ids[0], "kept across reopening");
        let drop_dir = tempfile::tempdir().unwrap();
        let mut drop = stitch_bridge::drop::local::LocalDrop::new(drop_dir.path());
        use stitch_bridge::ledger::marker::{check, Marker};
        assert_eq!(check(&mut drop, &ids[0]).unwrap(), Marker::Written);
        assert_eq!(
            check(&mut drop, &open(loc).id().unwrap()).unwrap(),
            Marker::Ours,
            "another worker of the same ledger"
        );
        let other = match loc {
            LedgerLocation::Sqlite(p) => LedgerLocation::Sqlite(p.with_file_name("other.sqlite")),
            LedgerLocation::Postgres { .. } => support_pg::server("other ledger").unwrap().fresh(),
        };
        let theirs = open(&other).id().unwrap();
        assert_ne!(theirs, ids[0]);
        assert_eq!(check(&mut drop, &theirs).unwrap(), Marker::Foreign(Some(ids[0].clone())), "a second ledger stops");
    });
}

/// A ledger of the release before ids (schema 1) gets one on its next open, keeping its data.
#[test]
fn ledger_without_an_id_gets_one_on_upgrade() {
    on_both("ledger_without_an_id_gets_one_on_upgrade", |loc| {
        open(loc).set_mark("kept", "yes").unwrap();
        match loc {
            LedgerLocation::Sqlite(p) => {
                rusqlite::Connection::open(p)
                    .unwrap()
                    .execute_batch("DROP TABLE ledger_identity; DROP TABLE IF EXISTS attention; PRAGMA user_version=1;")
                    .unwrap();
            }
            LedgerLocation::Postgres { .. } => {
                let pg = support_pg::server("upgrade").unwrap();
                pg.connect(loc).batch(
                    "DROP TABLE ledger_identity; DROP TABLE IF EXISTS attention; UPDATE schema_version SET version = 1",
                );
            }
        }
        let l = open(loc);
        assert_eq!(l.id().unwrap().len(), 32, "{}", loc.describe());
        assert_eq!(l.get_mark("kept").unwrap().as_deref(), Some("yes"), "history kept");
    });
}

#[test]
fn concurrent_claims_have_one_winner() {
    on_both("concurrent_claims_have_one_winner", |loc| {
        open(loc); // migrate first: this test is about claims, not first opens
        let winners: usize = std::thread::scope(|s| {
            let hs: Vec<_> = (0..6)
                .map(|i| {
                    s.spawn(move || {
                        let l = open(loc);
                        l.claim_account("shared", &format!("w{i}"), Duration::from_secs(60)).unwrap() as usize
                    })
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(winners, 1);
    });
}

#[test]
fn concurrent_first_opens_migrate_once_on_postgres() {
    let Some(pg) = support_pg::server("concurrent_first_opens_migrate_once_on_postgres") else { return };
    let loc = pg.fresh();
    std::thread::scope(|s| {
        let hs: Vec<_> =
            (0..6).map(|_| s.spawn(|| Ledger::open_at(&loc).map(|_| ()).map_err(|e| e.to_string()))).collect();
        for h in hs {
            h.join().unwrap().unwrap();
        }
    });
    let v = pg.connect(&loc).int("SELECT version FROM schema_version");
    assert_eq!(v, stitch_bridge::ledger::SCHEMA_VERSION, "every migration applied once");
}

#[test]
fn unreachable_server_is_a_clear_error_not_a_fresh_ledger() {
    // Port 9 (discard) on loopback: nothing listens in a test environment.
    let loc = LedgerLocation::Postgres {
        url: "postgres://sb@127.0.0.1:9/ledger?connect_timeout=5".into(),
        password_env: None,
        tls: PgTls::default(),
    };
    match Ledger::open_at(&loc) {
        Err(e @ LedgerError::Unreachable { .. }) => assert!(e.to_string().contains("127.0.0.1:9"), "{e}"),
        Err(other) => panic!("expected Unreachable, got {other}"),
        Ok(_) => panic!("must not open"),
    }
}

#[test]
fn missing_or_wrong_password_is_named_and_never_shown() {
    let loc = LedgerLocation::Postgres {
        url: "postgres://sb@127.0.0.1:9/ledger".into(),
        password_env: Some("STITCH_BRIDGE_TEST_SURELY_UNSET_VAR".into()),
        tls: PgTls::default(),
    };
    let err = Ledger::open_at(&loc).err().expect("no password: error").to_string();
    assert!(err.contains("STITCH_BRIDGE_TEST_SURELY_UNSET_VAR"), "{err}");

    let Some(pg) = support_pg::server("missing_or_wrong_password_is_named_and_never_shown") else { return };
    let Ok(real) = std::env::var(support_pg::PASSWORD_ENV) else {
        println!("skipped the wrong-password half: the test server trusts loopback connections");
        return;
    };
    // The wrong password travels only through the variable named in the config.
    let var = "STITCH_BRIDGE_TEST_WRONG_PG_PASSWORD";
    let wrong = format!("{real}-wrong-7f3a");
    // Set once; no other test reads this variable.
    std::env::set_var(var, &wrong);
    let loc = LedgerLocation::Postgres { url: pg.url.clone(), password_env: Some(var.into()), tls: pg.tls() };
    match Ledger::open_at(&loc) {
        Err(e @ LedgerError::Auth { .. }) => {
            let text = format!("{e} {e:?}");
            assert!(!text.contains(&wrong) && !text.contains(&real), "password leaked: {text}");
        }
        Err(other) => panic!("expected Auth, got {other}"),
        Ok(_) => panic!("a wrong password must not open"),
    }
    let inline = LedgerLocation::Postgres {
        url: pg.url.replace("sb@", &format!("sb:{wrong}@")),
        password_env: None,
        tls: pg.tls(),
    };
    assert!(!inline.describe().contains(&wrong));
}
