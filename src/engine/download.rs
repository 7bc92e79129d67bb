//! Stitch → warehouse. Pulling open fulfillments acknowledges them in Stitch [doc], so each is
//! written to `outbound/orders/` exactly once (ledger), then marked "Sent to warehouse". A
//! fulfillment sent earlier that Stitch has since cancelled becomes a cancel file, once.
//!
//! Crash safety: the order file is written atomically under a name derived from the
//! fulfillment; finding it already present after a crash means it was written, so the ledger
//! row is completed without writing again. The "Sent to warehouse" status update is an outbox
//! intent recorded before the fulfillment is marked sent; if the update fails or a crash cuts
//! it off, the next run's `resolve_pending` sends it (setting a status twice is harmless).

use super::account::{AccountCtx, Step};
use super::fanout::{fan_out, COMPLETE_BATCH};
use super::marks;
use crate::ledger::{Finished, NewIntent};
use crate::model::{FulfillmentStatus, IntentKey, Outcome, Payload, SentState};
use crate::reconcile::download as render;
use crate::reconcile::{refusals, status};
use std::collections::HashSet;

/// The status text a fulfillment gets once its order file is on the drop.
pub const SENT_STATUS: &str = FulfillmentStatus::SentToWarehouse.label();

/// Order files written at once and recorded in the ledger per transaction.
const SENT_BATCH: usize = 64;

/// An order file rendered and waiting for its batch: what is written, and what the ledger
/// records once it is on the drop.
struct OrderFile {
    path: String,
    content: Vec<u8>,
    /// The 940's control numbers (already remembered in the ledger), for `x12_sent`.
    envelope: Option<crate::x12::write::Envelope>,
    sent: crate::ledger::SentOrder,
}

fn sent_status_key(fulfillment_id: &str) -> IntentKey {
    IntentKey::status(fulfillment_id, FulfillmentStatus::SentToWarehouse)
}

impl AccountCtx<'_> {
    /// Write an outbound file (order, cancel, 997) once; with `pgp_encrypt_outbound` it goes
    /// out encrypted to the partner as `PATH.pgp`. Returns the path written. The name is a
    /// function of what is sent, so finding it present after a crash means it was written
    /// (an encryption is never the same twice, so the bytes are not compared).
    pub(super) fn write_once(&mut self, path: &str, bytes: &[u8]) -> Step<String> {
        let (target, content) = self.sealed(path, bytes)?;
        match self.drop.write_atomic(&target, &mut &content[..]) {
            Ok(()) => Ok(target),
            Err(e) if e.kind == crate::drop::DropErrorKind::AlreadyExists => Ok(target),
            Err(e) => Err(e.into()),
        }
    }

    /// The path and bytes an outbound file goes out as: as given, or encrypted to the partner
    /// as `PATH.pgp` with `pgp_encrypt_outbound`.
    fn sealed<'b>(&self, path: &str, bytes: &'b [u8]) -> Step<(String, std::borrow::Cow<'b, [u8]>)> {
        let pgp = self.acct.pgp.as_ref().filter(|p| p.encrypt_outbound);
        Ok(match pgp {
            None => (path.to_string(), std::borrow::Cow::Borrowed(bytes)),
            Some(p) => {
                let mut out = Vec::with_capacity(bytes.len() / 2 + 1024);
                super::content::encrypt_for(p, &mut &bytes[..], &mut out)
                    .map_err(|e| super::account::Stop::local(format!("encrypting {path}"), std::io::Error::other(e)))?;
                (format!("{path}.pgp"), std::borrow::Cow::Owned(out))
            }
        })
    }

    /// Writes a batch of rendered order files at once (`Transport::write_many`: over a remote
    /// drop, several sessions in parallel), then records in the ledger, in one transaction,
    /// every one that is on the drop: written now, or found there from before a crash (the name
    /// is a function of the fulfillment, so "already there" means "ours, written"). A file that
    /// could not be written is not recorded, so the next run sends its fulfillment again; the
    /// first such error stops the download after the others are recorded.
    fn send_orders(&mut self, out: &mut Vec<OrderFile>, to_status: &mut Vec<String>) -> Step<()> {
        if out.is_empty() {
            return Ok(());
        }
        let acct = self.acct.name.clone();
        let results = {
            let files: Vec<(&str, &[u8])> = out.iter().map(|o| (o.path.as_str(), o.content.as_slice())).collect();
            self.drop.write_many(&files)
        };
        let mut stop = None;
        let mut batch = Vec::with_capacity(out.len());
        for (o, r) in out.drain(..).zip(results) {
            match r {
                Ok(()) => {}
                Err(e) if e.kind == crate::drop::DropErrorKind::AlreadyExists => {}
                Err(e) => {
                    stop.get_or_insert(e.into());
                    continue;
                }
            }
            if let Some(env) = &o.envelope {
                if let Err(s) = self.x12_sent(&o.path, env, crate::ledger::X12Doc::Order, Some(&o.sent.fulfillment_id))
                {
                    stop.get_or_insert(s);
                    continue;
                }
            }
            tracing::info!(account = %acct, fulfillment = %o.sent.fulfillment_id, order = %o.sent.order_ref, file = %o.path, "order sent to warehouse");
            self.report.orders_sent += 1;
            if o.sent.status_intent.is_some() {
                to_status.push(o.sent.fulfillment_id.clone());
            }
            batch.push(o.sent);
        }
        self.ledger.record_orders_sent(&acct, &batch)?;
        stop.map_or(Ok(()), Err)
    }

    /// `orders_as = "x12"`: orders and cancellations go out as 940s.
    fn orders_as_x12(&self) -> bool {
        self.acct.x12.as_ref().is_some_and(|c| c.orders_as == crate::config::OrdersAs::X12)
    }

    pub async fn download_orders(&mut self) -> Step<()> {
        let acct = self.acct.name.clone();
        let limit = self.acct.concurrency;
        // Always a fresh list here: the cache may predate fulfillments released by this cycle's
        // own orders.
        self.open_cache = None;
        let open = self.open_fulfillments().await?.to_vec();
        let mut new = Vec::new();
        for f in open {
            if !self.ledger.fulfillment_sent(&acct, &f.id)? {
                new.push(f);
            }
        }
        let client = self.client.clone();
        let fetch = |f: crate::stitch::wire::Fulfillment| {
            let client = client.clone();
            async move {
                let items = client.line_items(&f.id).await;
                (f, items)
            }
        };
        let mut to_status = Vec::new();
        // Files are rendered into batches, each written at once and then recorded (one sync for
        // many files); a crash in between leaves files the next run finds in place.
        let mut out: Vec<OrderFile> = Vec::new();
        let fetched = fan_out(new, limit, fetch, |(f, items)| {
            let items = items?;
            let (path, bytes, envelope) = if self.orders_as_x12() {
                // A 940, its control numbers allocated and remembered before it is written.
                let env = self.x12_envelope(&format!("x12-940:{acct}:{}", f.id), None)?;
                let path = format!("{}/{}", self.acct.folders.outbound_orders, crate::x12::write::order_file_name(&f));
                (path, crate::x12::write::order_940(&env, &f, &items), Some(env))
            } else {
                let path = format!("{}/{}", self.acct.folders.outbound_orders, render::order_file_name(&f));
                (path, render::render_order(&f, &items, self.acct.parse.date_format.as_deref()), None)
            };
            let (path, content) = self.sealed(&path, &bytes)?;
            let content = content.into_owned();
            // A shipment recorded already (e.g. earlier in this cycle) set a later status;
            // "Sent to warehouse" must not overwrite it, now or when a later run redoes it.
            let status_intent = status::sent_status_due(&items).then(|| {
                NewIntent::new(sent_status_key(&f.id), Payload::status(&f.id, FulfillmentStatus::SentToWarehouse))
            });
            out.push(OrderFile {
                sent: crate::ledger::SentOrder {
                    fulfillment_id: f.id.clone(),
                    order_ref: f.order_number.clone(),
                    file: path.clone(),
                    // Kept for the shipments that will come back for it (see `marks::line_items`).
                    mark: (marks::line_items(&acct, &f.id), serde_json::to_string(&items).unwrap_or_default()),
                    status_intent,
                },
                path,
                content,
                envelope,
            });
            if out.len() >= SENT_BATCH {
                self.send_orders(&mut out, &mut to_status)?;
            }
            Ok(())
        })
        .await;
        // The files rendered before a stop are written and recorded before it is reported.
        let sent = self.send_orders(&mut out, &mut to_status);
        fetched?;
        sent?;
        let set = |id: String| {
            let client = client.clone();
            async move {
                let r = client.set_status(&id, SENT_STATUS).await;
                (id, r)
            }
        };
        // Completed in batches (a crash before a commit only repeats updates).
        let mut done = Vec::new();
        let ledger = &mut self.ledger;
        let sets = fan_out(to_status, limit, set, |(id, r)| {
            if done.len() >= COMPLETE_BATCH {
                ledger.complete_intents(&acct, &done)?;
                done.clear();
            }
            r?;
            done.push(Finished::new(sent_status_key(&id), Outcome::Updated, "", ""));
            Ok(())
        })
        .await;
        self.ledger.complete_intents(&acct, &done)?;
        sets
    }

    pub async fn download_cancels(&mut self) -> Step<()> {
        let acct = self.acct.name.clone();
        let in_flight: Vec<String> = self.ledger.fulfillments_in_flight(&acct)?.into_iter().map(|(id, _)| id).collect();
        if in_flight.is_empty() {
            return Ok(());
        }
        let open: Vec<String> = self.open_fulfillments().await?.iter().map(|f| f.id.clone()).collect();
        let open: HashSet<&str> = open.iter().map(String::as_str).collect();
        let gone: Vec<String> = status::gone(&in_flight, &open).into_iter().cloned().collect();
        let client = self.client.clone();
        let fetch = |id: String| {
            let client = client.clone();
            async move {
                let f = client.get_fulfillment(&id).await;
                (id, f)
            }
        };
        fan_out(gone, self.acct.concurrency, fetch, |(id, f)| {
            let f = f?;
            match (status::on_gone(f.as_ref()), f) {
                (status::Gone::Cancel, Some(f)) => {
                    let path = if self.orders_as_x12() {
                        let env = self.x12_envelope(&format!("x12-940-cancel:{acct}:{}", f.id), None)?;
                        let name = crate::x12::write::cancel_file_name(&f);
                        let path = format!("{}/{name}", self.acct.folders.outbound_cancellations);
                        let path = self.write_once(&path, &crate::x12::write::cancel_940(&env, &f))?;
                        self.x12_sent(&path, &env, crate::ledger::X12Doc::Cancel, Some(&f.id))?;
                        path
                    } else {
                        let path =
                            format!("{}/{}", self.acct.folders.outbound_cancellations, render::cancel_file_name(&f));
                        self.write_once(&path, &render::render_cancel(&f))?
                    };
                    self.ledger.set_fulfillment_state(&acct, &f.id, SentState::Cancelled, Some(&path))?;
                    tracing::info!(account = %acct, fulfillment = %f.id, file = %path, "cancellation sent to warehouse");
                    self.report.cancels_sent += 1;
                }
                (status::Gone::Complete, _) => {
                    self.ledger.set_fulfillment_state(&acct, &id, SentState::Complete, None)?;
                }
                (status::Gone::Unknown, _) => {
                    tracing::warn!(account = %acct, fulfillment = %id, "Stitch no longer knows a fulfillment that was sent to the warehouse");
                    self.ledger.set_fulfillment_state(&acct, &id, SentState::Unknown, None)?;
                }
                _ => {}
            }
            Ok(())
        })
        .await
    }

    /// Writes left uncertain by a crash are resolved by asking Stitch before anything new is
    /// sent (shipments and orders; inventory is resolved when its file is re-read).
    pub async fn resolve_pending(&mut self) -> Step<()> {
        let acct = self.acct.name.clone();
        for i in self.ledger.pending_intents(&acct)? {
            match &i.payload {
                Payload::Shipment(p) => {
                    if let Some(s) = self.client.find_shipment(&p.fulfillment_id, &p.tracking_number).await? {
                        // Landed unseen: the cached shipped counts miss it.
                        self.ledger.delete_marks(&[marks::line_items(&acct, &p.fulfillment_id)])?;
                        self.ledger.complete_intents(
                            &acct,
                            &[Finished::new(
                                i.key.clone(),
                                Outcome::Created,
                                s.id,
                                "confirmed after an interrupted run",
                            )],
                        )?;
                    }
                }
                // Only a create can be found again by its reference; others wait for their file.
                Payload::Order(p) if p.action == crate::model::OrderAction::Create => {
                    if let Some(o) = self.client.find_order(&p.po_num).await? {
                        self.ledger.complete_intents(
                            &acct,
                            &[Finished::new(
                                i.key.clone(),
                                Outcome::Created,
                                o.order.id,
                                "confirmed after an interrupted run",
                            )],
                        )?;
                    }
                }
                Payload::Status(p) => {
                    let mut done = Vec::new();
                    for later in p.status.later() {
                        let l = self.ledger.intent(&acct, &IntentKey::status(&p.fulfillment_id, later))?;
                        if l.is_some_and(|l| l.state == crate::ledger::IntentState::Done) {
                            done.push(later);
                        }
                    }
                    if status::superseded(p.status, &done) {
                        self.ledger.complete_intents(
                            &acct,
                            &[Finished::new(i.key.clone(), Outcome::Unchanged, "", "superseded by a later status")],
                        )?;
                        continue;
                    }
                    match self.client.set_status(&p.fulfillment_id, p.status.label()).await {
                        Ok(()) => self
                            .ledger
                            .complete_intents(&acct, &[Finished::new(i.key.clone(), Outcome::Updated, "", "")])?,
                        Err(crate::stitch::ApiError::Rejected { status, message, .. }) => {
                            let msg = refusals::status_message(status, &message);
                            self.ledger
                                .fail_intents(&acct, &[Finished::new(i.key.clone(), Outcome::Rejected, "", msg)])?;
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Payload::Order(_) | Payload::Product(_) => {}
            }
        }
        Ok(())
    }
}
