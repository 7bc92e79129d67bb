//! A cycle whose stop token is cancelled (what `watch` does on SIGINT/SIGTERM) takes no file and
//! downloads nothing; a cycle with a live token does the same work.

mod common;

use common::*;
use stitch_bridge::engine::{account, Parts, Worker};
use tokio_util::sync::CancellationToken;

fn cycle(env: &Env, stop: &CancellationToken) -> stitch_bridge::engine::AccountReport {
    let acct = &env.config.accounts[0];
    let worker = Worker::this_process(env.config.lease_ttl);
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(account::cycle(acct, &env.config.ledger, Parts::ALL, &worker, stop))
}

#[test]
fn a_cancelled_cycle_starts_no_file_and_no_download() {
    let env = Env::new();
    env.put("inbound/inventory/stock.csv", "sku,quantity\nRED,7\n");
    let stopped = CancellationToken::new();
    stopped.cancel();
    let r = cycle(&env, &stopped);
    assert!(r.fatal.is_empty() && r.pending.is_empty(), "{r:?}");
    assert!(r.files.is_empty(), "{:?}", r.files);
    assert!(env.exists("inbound/inventory/stock.csv"), "the file waits for the next cycle");
    let c = env.counters();
    assert_eq!(write_requests(&c), 0, "{:?}", c.requests);
    assert!(!c.requests.keys().any(|k| k.contains("fulfillments")), "no order download: {:?}", c.requests);

    let r = cycle(&env, &CancellationToken::new());
    assert_eq!(r.files.len(), 1, "{r:?}");
    assert_eq!(r.files[0].state, "archived", "{r:?}");
    assert!(!env.exists("inbound/inventory/stock.csv"));
    assert!(env.counters().requests.keys().any(|k| k.contains("fulfillments")), "downloads ran");
}
