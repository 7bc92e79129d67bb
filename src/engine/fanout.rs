//! The one way the engine sends many requests: concurrently up to the account's limit, with
//! every answer settled (ledger updates, decisions) on the account's thread between requests,
//! never inside one.

use super::account::Step;
use futures::stream::{self, StreamExt};
use std::cell::Cell;
use std::future::Future;

/// Outcomes completed per ledger transaction where answers come in fast and repeating them is
/// harmless (status updates): one sync per batch, not per answer, so the ledger never holds back
/// the requests in flight. A crash before a batch commits only repeats those updates.
pub(crate) const COMPLETE_BATCH: usize = 256;

/// Sends each item through `send`, at most `limit` at a time, and hands each answer to `settle`.
/// The first stop `settle` returns is kept: no new request starts after it, but the answers
/// already in flight are still settled, so the outcome of every write that was made is recorded.
pub(super) async fn fan_out<T, R, Fut>(
    items: impl IntoIterator<Item = T>,
    limit: usize,
    send: impl Fn(T) -> Fut,
    mut settle: impl FnMut(R) -> Step<()>,
) -> Step<()>
where
    Fut: Future<Output = R>,
{
    let stopped = Cell::new(false);
    let mut answers =
        stream::iter(items.into_iter().take_while(|_| !stopped.get())).map(send).buffer_unordered(limit.max(1));
    let mut stop = None;
    while let Some(answer) = answers.next().await {
        if let Err(s) = settle(answer) {
            stopped.set(true);
            stop.get_or_insert(s);
        }
    }
    stop.map_or(Ok(()), Err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::account::Stop;
    use std::cell::RefCell;

    fn stop(what: String) -> Stop {
        Stop::local(what, std::io::Error::other("boom"))
    }

    fn run<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(f)
    }

    #[test]
    fn every_answer_is_settled_when_nothing_stops() {
        let mut got = Vec::new();
        let r = run(fan_out(
            1..=5,
            2,
            |i| async move { i * 10 },
            |a| {
                got.push(a);
                Ok(())
            },
        ));
        assert!(r.is_ok());
        got.sort();
        assert_eq!(got, vec![10, 20, 30, 40, 50]);
    }

    #[test]
    fn the_first_stop_is_kept_and_no_new_request_starts() {
        let sent = RefCell::new(Vec::new());
        let mut settled = Vec::new();
        // One at a time: the stop on item 2 comes before item 3 is pulled.
        let r = run(fan_out(
            1..=6,
            1,
            |i| {
                sent.borrow_mut().push(i);
                async move { i }
            },
            |a| {
                settled.push(a);
                match a {
                    2 => Err(stop("first".into())),
                    _ => Ok(()),
                }
            },
        ));
        assert_eq!(r.unwrap_err().to_string(), "first: boom");
        assert_eq!(*sent.borrow(), vec![1, 2]);
        assert_eq!(settled, vec![1, 2]);
    }

    #[test]
    fn answers_in_flight_are_settled_after_a_stop_and_the_first_stop_wins() {
        let mut settled = Vec::new();
        // All three in flight at once: each is settled, the first error is the one returned.
        let r = run(fan_out(
            1..=3,
            3,
            |i| async move { i },
            |a| {
                settled.push(a);
                Err(stop(format!("stop {a}")))
            },
        ));
        assert_eq!(settled.len(), 3);
        assert_eq!(r.unwrap_err().to_string(), format!("stop {}: boom", settled[0]));
    }
}
