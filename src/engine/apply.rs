//! Executing plans: fetch the snapshot the planners need, hand them the records and what the
//! outbox already holds, and carry out the actions they return, each write through the outbox
//! (intent recorded before the request, outcome after). Every rule lives in `reconcile`; this
//! file only reads, sends and records. Requests run concurrently up to the account's limit
//! (`fanout`); ledger updates happen here, between them, never inside a request.

use super::account::{AccountCtx, Step};
use super::fanout::{fan_out, COMPLETE_BATCH};
use super::marks;
use crate::formats::replay::Origins;
use crate::formats::Kind;
use crate::formats::{InventoryRecord, OrderAction, OrderRecord, Record, ShipmentRecord};
use crate::ledger::{Finished, Intent, IntentState, NewIntent};
use crate::model::{FulfillmentStatus, IntentKey, Payload, SentState};
use crate::reconcile::recorded::{self, Earlier, Recorded};
use crate::reconcile::shipments::{self, LineCache, ShipmentAction};
use crate::reconcile::{inventory, orders, refusals, Decision, Outcome};
use crate::stitch::wire::{self, NewShipment};
use crate::stitch::{ApiError, OrderView};
use std::collections::HashMap;

/// Most shipments sent in one request: large enough to amortise latency, small enough that a
/// refused batch (validated whole by Stitch) is cheap to retry one by one.
const SHIPMENT_BATCH: usize = 50;

/// A file shipping more fulfillments than this reads the paged open list (500 per request)
/// instead of one `GET /fulfillments/{id}` each.
const OPEN_LIST_AFTER: usize = 32;

/// A fulfillment's cached line items, and whether one of the file's shipments for it was
/// recorded before (which makes the cache untrustworthy: `shipments::cache_usable`).
type CachedLines = (bool, Vec<wire::FulfillmentLineItem>);

/// An intent as the planners see it.
fn recorded(i: &Intent) -> Recorded {
    match i.state {
        IntentState::Done => Recorded::Done {
            outcome: i.outcome.unwrap_or(Outcome::Unchanged),
            remote_id: i.remote_id.clone().unwrap_or_default(),
            message: i.message.clone().unwrap_or_default(),
            payload: i.payload.clone(),
        },
        IntentState::Pending => Recorded::Pending { payload: i.payload.clone() },
        IntentState::Failed => Recorded::Failed,
    }
}

/// The outbox content key of a replayed delta row: its original file and line.
fn origin_key(file: &str, line: u64) -> String {
    use sha2::{Digest, Sha256};
    format!("replay-{}", hex::encode(Sha256::digest(format!("{file}\n{line}"))))
}

fn finished(key: IntentKey, d: &Decision) -> Finished {
    Finished::new(key, d.outcome, &d.remote_id, &d.message)
}

impl AccountCtx<'_> {
    /// What the outbox holds for a key. A ledger that cannot answer stops the run: guessing could
    /// post twice.
    fn recorded(&self, key: &IntentKey) -> Step<Option<Recorded>> {
        Ok(self.ledger.intent(&self.acct.name, key)?.as_ref().map(recorded))
    }

    /// `origins`: set for a replayed error file (`formats::replay`), whose rows are a part of
    /// their original and whose delta rows are keyed by the original row they came from.
    pub async fn apply(
        &mut self,
        kind: Kind,
        sha: &str,
        records: Vec<Record>,
        delta: bool,
        origins: Option<&Origins>,
    ) -> Step<Vec<Decision>> {
        match kind {
            Kind::Inventory => {
                let recs = records
                    .into_iter()
                    .filter_map(|r| if let Record::Inventory(i) = r { Some(i) } else { None })
                    .collect();
                self.apply_inventory(sha, recs, delta, origins).await
            }
            Kind::Orders => {
                let recs =
                    records.into_iter().filter_map(|r| if let Record::Order(o) = r { Some(o) } else { None }).collect();
                self.apply_orders(sha, recs).await
            }
            Kind::Shipments => {
                let recs = records
                    .into_iter()
                    .filter_map(|r| if let Record::Shipment(s) = r { Some(s) } else { None })
                    .collect();
                self.apply_shipments(sha, recs).await
            }
        }
    }

    // ---- inventory -----------------------------------------------------------------------------

    async fn apply_inventory(
        &mut self,
        sha: &str,
        recs: Vec<InventoryRecord>,
        delta: bool,
        origins: Option<&Origins>,
    ) -> Step<Vec<Decision>> {
        let acct = self.acct.name.clone();
        // A delta is not idempotent: replayed, each row is keyed by the original row it came
        // from, so the same adjustment replayed again (under any name, re-saved any way) finds
        // its earlier write and is not applied twice.
        let by_origin: HashMap<u64, String> = match origins {
            Some(o) if delta => o.all().into_iter().map(|(line, o)| (line, origin_key(&o.file, o.line))).collect(),
            _ => HashMap::new(),
        };
        let content_of = |line: u64| by_origin.get(&line).cloned().unwrap_or_else(|| sha.to_string());
        // By the record's line: a planned write carries the line of the record it came from.
        let key = |line: u64, sku: &str| IntentKey::Product { content: content_of(line), sku: sku.to_string() };
        let remote: HashMap<String, wire::Product> =
            self.client.list_products().await?.into_iter().map(|p| (p.sku.clone(), p)).collect();
        let mut decisions = Vec::new();
        let mut todo = Vec::with_capacity(recs.len());
        for r in recs {
            let earlier = self.recorded(&key(r.line, &r.sku))?;
            if by_origin.contains_key(&r.line) {
                if let Some(Recorded::Done { remote_id, .. }) = &earlier {
                    let o = origins.and_then(|o| o.get(r.line));
                    let (file, line) = o.map_or((String::new(), 0), |o| (o.file.to_string(), o.line));
                    let msg = format!("already applied: line {line} of {file} was replayed before; not applied again");
                    decisions.push(Decision::new(r.line, &r.sku, Outcome::Unchanged, remote_id, msg));
                    continue;
                }
            }
            match recorded::inventory(&r, earlier.as_ref(), remote.get(&r.sku)) {
                Some(Earlier::Reuse(d)) => decisions.push(d),
                Some(Earlier::Confirm(d)) => {
                    self.ledger.complete_intents(&acct, &[finished(key(r.line, &r.sku), &d)])?;
                    decisions.push(d);
                }
                None => todo.push(r),
            }
        }
        let policy = inventory::InventoryPolicy {
            delta,
            // A replay holds only the rows that failed: never a whole snapshot.
            zero_missing: self.acct.zero_missing && origins.is_none(),
            zero_missing_max_share: self.acct.zero_missing_max_share,
        };
        let plan = inventory::plan(&todo, &remote, policy);
        decisions.extend(plan.settled);
        let chunks: Vec<Vec<inventory::PlannedUpsert>> =
            plan.upserts.chunks(wire::MAX_PRODUCTS_PER_REQUEST).map(|c| c.to_vec()).collect();
        for c in &chunks {
            let items: Vec<NewIntent> = c
                .iter()
                .map(|u| {
                    NewIntent::new(
                        key(u.line, &u.upsert.sku),
                        Payload::product(&u.upsert.sku, u.upsert.stock, u.creates),
                    )
                })
                .collect();
            self.ledger.begin_intents(&acct, &items)?;
        }
        let client = self.client.clone();
        let send = |c: Vec<inventory::PlannedUpsert>| {
            let client = client.clone();
            async move {
                let body: Vec<wire::ProductUpsert> = c.iter().map(|u| u.upsert.clone()).collect();
                let r = client.upsert_products(&body).await;
                (c, r)
            }
        };
        let limit = self.acct.concurrency;
        let ledger = &mut self.ledger;
        fan_out(chunks, limit, send, |(chunk, r)| {
            match r {
                Ok(answer) => {
                    let ids: HashMap<&str, &str> = answer.iter().map(|a| (a.sku.as_str(), a.id.as_str())).collect();
                    let mut done = Vec::with_capacity(chunk.len());
                    for u in &chunk {
                        let (outcome, msg) = inventory::applied_message(u);
                        let id = ids.get(u.upsert.sku.as_str()).copied().unwrap_or("");
                        let d = Decision::new(u.line, &u.upsert.sku, outcome, id, msg);
                        done.push(finished(key(u.line, &u.upsert.sku), &d));
                        decisions.push(d);
                    }
                    ledger.complete_intents(&acct, &done)?;
                }
                Err(ApiError::Rejected { status, code, message }) => {
                    let refused: Vec<Decision> = chunk
                        .iter()
                        .map(|u| refusals::product_batch(u.line, &u.upsert.sku, status, &code, &message))
                        .collect();
                    let failed: Vec<_> =
                        chunk.iter().zip(&refused).map(|(u, d)| finished(key(u.line, &u.upsert.sku), d)).collect();
                    ledger.fail_intents(&acct, &failed)?;
                    decisions.extend(refused);
                }
                Err(e) => return Err(e.into()),
            }
            Ok(())
        })
        .await?;
        Ok(decisions)
    }

    // ---- orders --------------------------------------------------------------------------------

    async fn apply_orders(&mut self, sha: &str, recs: Vec<OrderRecord>) -> Step<Vec<Decision>> {
        let acct = self.acct.name.clone();
        let key = |r: &OrderRecord| IntentKey::Order { content: sha.to_string(), order_ref: r.order_ref.clone() };
        let client = self.client.clone();
        let limit = self.acct.concurrency;
        // Snapshot: each order looked up by its reference, concurrently.
        let refs: Vec<String> = recs.iter().map(|r| r.order_ref.clone()).collect();
        let mut found: HashMap<String, Option<OrderView>> = HashMap::new();
        let find = |r: String| {
            let client = client.clone();
            async move {
                let v = client.find_order(&r).await;
                (r, v)
            }
        };
        fan_out(refs, limit, find, |(r, v)| {
            found.insert(r, v?);
            Ok(())
        })
        .await?;
        let mut decisions = Vec::new();
        let mut writes: Vec<(OrderRecord, orders::OrderPlan)> = Vec::new();
        for r in recs {
            let remote = found.get(&r.order_ref).and_then(|v| v.as_ref());
            match recorded::order(&r, self.recorded(&key(&r))?.as_ref(), remote) {
                Some(Earlier::Reuse(d)) => decisions.push(d),
                Some(Earlier::Confirm(d)) => {
                    self.ledger.complete_intents(&acct, &[finished(key(&r), &d)])?;
                    decisions.push(d);
                }
                None => match orders::plan(&r, remote) {
                    orders::OrderPlan::Settled(d) => decisions.push(d),
                    p => writes.push((r, p)),
                },
            }
        }
        let items: Vec<NewIntent> =
            writes.iter().map(|(r, _)| NewIntent::new(key(r), Payload::order(&r.order_ref, r.action))).collect();
        self.ledger.begin_intents(&acct, &items)?;
        let send = |(r, p): (OrderRecord, orders::OrderPlan)| {
            let client = client.clone();
            async move {
                let (write, outcome) = match p {
                    orders::OrderPlan::Create(w) => (w, Outcome::Created),
                    orders::OrderPlan::Update { write, .. } => (write, Outcome::Updated),
                    orders::OrderPlan::Void { id } => (
                        wire::SalesOrderWrite { id: Some(id), void: Some("1".into()), ..Default::default() },
                        Outcome::Updated,
                    ),
                    orders::OrderPlan::Settled(_) => unreachable!("settled plans are not sent"),
                };
                let res = client.write_order(&write, &r.order_ref, |v| orders::landed(&r, v)).await;
                (r, outcome, res)
            }
        };
        let ledger = &mut self.ledger;
        fan_out(writes, limit, send, |(r, outcome, res)| {
            let d = match res {
                Ok(v) => {
                    let msg = if r.action == OrderAction::Cancel { "cancelled (voided) in Stitch" } else { "" };
                    let d = Decision::new(r.line, &r.order_ref, outcome, &v.order.id, msg);
                    ledger.complete_intents(&acct, &[finished(key(&r), &d)])?;
                    d
                }
                Err(ApiError::Rejected { status, code, message }) => {
                    let d = refusals::order(&r, status, &code, &message);
                    ledger.fail_intents(&acct, &[finished(key(&r), &d)])?;
                    d
                }
                Err(e) => return Err(e.into()),
            };
            decisions.push(d);
            Ok(())
        })
        .await?;
        Ok(decisions)
    }

    // ---- shipments -----------------------------------------------------------------------------

    /// The fulfillment an order reference belongs to: what was sent to the warehouse for it, a
    /// match remembered from the open list, or the open list now (remembered from then on).
    async fn fulfillment_of_order(&mut self, order_ref: &str) -> Step<Option<String>> {
        let acct = self.acct.name.clone();
        if let Some(f) = self.ledger.fulfillment_for_order(&acct, order_ref)? {
            return Ok(Some(f));
        }
        let mark = marks::order_fulfillment(&acct, order_ref);
        if let Some(f) = self.ledger.get_mark(&mark)? {
            return Ok(Some(f));
        }
        let f = self.open_fulfillments().await?.iter().find(|f| f.order_number == order_ref).map(|f| f.id.clone());
        if let Some(f) = &f {
            self.ledger.set_mark(&mark, f)?;
        }
        Ok(f)
    }

    async fn apply_shipments(&mut self, sha: &str, recs: Vec<ShipmentRecord>) -> Step<Vec<Decision>> {
        let acct = self.acct.name.clone();
        let client = self.client.clone();
        let limit = self.acct.concurrency;
        let mut found = HashMap::new();
        for o in shipments::orders_to_look_up(&recs) {
            if let Some(f) = self.fulfillment_of_order(o).await? {
                found.insert(o.to_string(), f);
            }
        }
        let (by_fid, mut decisions) = shipments::route(recs, &found);
        let key = |fid: &str, r: &ShipmentRecord| IntentKey::shipment(fid, &r.tracking_number);
        // What the outbox holds for each shipment, by fulfillment and position.
        let mut held: HashMap<String, Vec<Option<Recorded>>> = HashMap::new();
        for (fid, recs) in &by_fid {
            let mut r = Vec::with_capacity(recs.len());
            for rec in recs {
                r.push(self.recorded(&key(fid, rec))?);
            }
            held.insert(fid.clone(), r);
        }
        if self.open_cache.is_none() && by_fid.len() > OPEN_LIST_AFTER {
            self.open_fulfillments().await?;
        }
        // Line items cached from the order download; whether they may stand in for a read is
        // decided once the fulfillment's state is known (`cache_usable`).
        let mut cached: HashMap<String, CachedLines> = HashMap::new();
        for fid in by_fid.keys() {
            if let Some(v) = self.ledger.get_mark(&marks::line_items(&acct, fid))? {
                if let Ok(items) = serde_json::from_str(&v) {
                    cached.insert(fid.clone(), (held[fid].iter().any(Option::is_some), items));
                }
            }
        }
        let open: HashMap<String, wire::Fulfillment> = match &self.open_cache {
            Some(v) => v.iter().map(|f| (f.id.clone(), f.clone())).collect(),
            None => HashMap::new(),
        };
        // Snapshot per fulfillment, concurrently: its state and line items.
        let mut snaps: HashMap<String, Option<shipments::FulfillmentSnapshot>> = HashMap::new();
        let fetch = |(fid, known, items): (String, Option<wire::Fulfillment>, Option<CachedLines>)| {
            let client = client.clone();
            async move {
                let f = match known {
                    Some(f) => Some(f),
                    None => client.get_fulfillment(&fid).await?,
                };
                let snap = match f {
                    None => None,
                    Some(f) => {
                        let line_items = match items {
                            Some((before, items)) if shipments::cache_usable(before, f.state) => items,
                            _ => client.line_items(&f.id).await?,
                        };
                        Some(shipments::FulfillmentSnapshot { fulfillment: f, line_items, shipments: Vec::new() })
                    }
                };
                Ok::<_, ApiError>((fid, snap))
            }
        };
        let wanted: Vec<_> =
            by_fid.keys().map(|fid| (fid.clone(), open.get(fid).cloned(), cached.remove(fid))).collect();
        fan_out(wanted, limit, fetch, |r| {
            let (fid, snap) = r?;
            snaps.insert(fid, snap);
            Ok(())
        })
        .await?;
        // Per fulfillment, line items shipped by this run (their status is set afterwards).
        let mut shipped: HashMap<String, HashMap<String, u32>> = HashMap::new();
        let mut posts: Vec<(u64, NewShipment)> = Vec::new();
        for (fid, recs) in &by_fid {
            let recs: Vec<&ShipmentRecord> = recs.iter().collect();
            let held = &held[fid];
            let snap = snaps.get_mut(fid).and_then(|s| s.as_mut());
            let mut plan = shipments::plan_fulfillment(fid, sha, &recs, held, snap.as_deref(), false);
            if let (true, Some(s)) = (plan.wants_history, snap) {
                s.shipments = self.client.shipments_for(fid).await?;
                plan = shipments::plan_fulfillment(fid, sha, &recs, held, Some(s), true);
            }
            if plan.status_due {
                shipped.entry(fid.clone()).or_default();
            }
            for a in plan.actions {
                match a {
                    ShipmentAction::Reuse(d) | ShipmentAction::Settle(d) => decisions.push(d),
                    ShipmentAction::Confirm { key, decision } => {
                        self.ledger.complete_intents(&acct, &[finished(key, &decision)])?;
                        decisions.push(decision);
                    }
                    ShipmentAction::Post { line, shipment } => posts.push((line, shipment)),
                }
            }
        }
        // Send: intents first (one transaction per batch), then batches concurrently.
        let batches: Vec<Vec<(u64, NewShipment)>> = posts.chunks(SHIPMENT_BATCH).map(|c| c.to_vec()).collect();
        for b in &batches {
            let items: Vec<NewIntent> = b
                .iter()
                .map(|(_, n)| {
                    NewIntent::new(
                        IntentKey::shipment(&n.fulfillment_id, &n.tracking_number),
                        Payload::shipment(&n.fulfillment_id, &n.tracking_number, sha),
                    )
                })
                .collect();
            self.ledger.begin_intents(&acct, &items)?;
        }
        let post = |b: Vec<(u64, NewShipment)>| {
            let client = client.clone();
            async move {
                let body: Vec<NewShipment> = b.iter().map(|(_, n)| n.clone()).collect();
                let r = client.post_shipments(&body).await;
                (b, r)
            }
        };
        // Fulfillments whose cached line items can no longer be trusted.
        let mut refused: Vec<String> = Vec::new();
        let mut retry_single: Vec<(u64, NewShipment)> = Vec::new();
        let ledger = &mut self.ledger;
        let mut settle = |b: Vec<(u64, NewShipment)>, r: Result<Vec<wire::Shipment>, ApiError>, retry: &mut Vec<_>| {
            match r {
                Ok(answer) => {
                    let ids: HashMap<(&str, &str), &str> = answer
                        .iter()
                        .map(|s| ((s.fulfillment_id.as_str(), s.tracking_number.as_str()), s.id.as_str()))
                        .collect();
                    let mut done = Vec::new();
                    for (line, n) in &b {
                        let id = ids.get(&(n.fulfillment_id.as_str(), n.tracking_number.as_str())).copied();
                        // A single shipment's answer is its own, whatever it echoes.
                        let id = id.or_else(|| (b.len() == 1).then(|| answer.first().map(|s| s.id.as_str())).flatten());
                        let d = shipments::posted(*line, n, id.unwrap_or(""));
                        done.push(finished(IntentKey::shipment(&n.fulfillment_id, &n.tracking_number), &d));
                        decisions.push(d);
                        shipments::count_shipped(&mut shipped, n);
                    }
                    ledger.complete_intents(&acct, &done)?;
                }
                // Stitch validates a batch whole: find out which shipment it refused.
                Err(ApiError::Rejected { .. }) if b.len() > 1 => retry.extend(b),
                Err(ApiError::Rejected { status, code, message }) => {
                    for (line, n) in b {
                        refused.push(n.fulfillment_id.clone());
                        let d = refusals::shipment(line, &n, status, &code, &message);
                        let k = IntentKey::shipment(&n.fulfillment_id, &n.tracking_number);
                        match d.outcome {
                            Outcome::Unchanged => ledger.complete_intents(&acct, &[finished(k, &d)])?,
                            _ => ledger.fail_intents(&acct, &[finished(k, &d)])?,
                        }
                        decisions.push(d);
                    }
                }
                Err(e) => return Err(e.into()),
            }
            Ok(())
        };
        let mut stop = fan_out(batches, limit, post, |(b, r)| settle(b, r, &mut retry_single)).await.err();
        // The refused batches' shipments one by one, unless the run is stopping already.
        if stop.is_none() {
            let mut none = Vec::new();
            let singles: Vec<Vec<(u64, NewShipment)>> = retry_single.into_iter().map(|s| vec![s]).collect();
            stop = fan_out(singles, 1, post, |(b, r)| settle(b, r, &mut none)).await.err();
        }
        // The line-item cache follows what was shipped; refusals and completions leave it.
        let mut keep = Vec::new();
        let mut forget: Vec<String> = refused.iter().map(|f| marks::line_items(&acct, f)).collect();
        let mut statuses: Vec<(String, FulfillmentStatus)> = Vec::new();
        for (fid, now) in &shipped {
            let Some(Some(snap)) = snaps.get(fid) else { continue };
            let after = shipments::aftermath(&snap.line_items, now, refused.contains(fid));
            // Keep Stitch informed: the status shows in Stitch next to the fulfillment.
            statuses.push((fid.clone(), after.status));
            match after.cache {
                LineCache::Forget => {}
                LineCache::Complete => {
                    forget.push(marks::line_items(&acct, fid));
                    self.ledger.set_fulfillment_state(&acct, fid, SentState::Complete, None)?;
                }
                LineCache::Keep(items) => {
                    if let Ok(v) = serde_json::to_string(&items) {
                        keep.push((marks::line_items(&acct, fid), v));
                    }
                }
            }
        }
        self.ledger.set_marks(&keep)?;
        self.ledger.delete_marks(&forget)?;
        let statuses = self.set_statuses(statuses).await;
        match stop.or(statuses.err()) {
            Some(s) => Err(s),
            None => Ok(decisions),
        }
    }

    /// Status updates through the outbox too: one lost to an outage or a crash is redone by the
    /// next run's `resolve_pending`, which never lets an older status overwrite a newer one. Only
    /// a halt stops here; an outage leaves them pending for the next run.
    async fn set_statuses(&mut self, statuses: Vec<(String, FulfillmentStatus)>) -> Step<()> {
        let acct = self.acct.name.clone();
        let intents: Vec<NewIntent> = statuses
            .iter()
            .map(|(fid, st)| NewIntent::new(IntentKey::status(fid, *st), Payload::status(fid, *st)))
            .collect();
        self.ledger.begin_intents(&acct, &intents)?;
        let client = self.client.clone();
        let send = |(fid, st): (String, FulfillmentStatus)| {
            let client = client.clone();
            async move {
                let r = client.set_status(&fid, st.label()).await;
                (fid, st, r)
            }
        };
        let mut set_done: Vec<Finished> = Vec::new();
        let (ledger, report) = (&mut self.ledger, &mut self.report);
        let r = fan_out(statuses, self.acct.concurrency, send, |(fid, st, r)| {
            let key = IntentKey::status(&fid, st);
            if set_done.len() >= COMPLETE_BATCH {
                ledger.complete_intents(&acct, &set_done)?;
                set_done.clear();
            }
            match r {
                Ok(()) => set_done.push(Finished::new(key, Outcome::Updated, "", "")),
                Err(e) if e.is_halt() => return Err(e.into()),
                Err(ApiError::Rejected { status, message, .. }) => {
                    let msg = refusals::status_message(status, &message);
                    tracing::warn!(account = %acct, fulfillment = %fid, "{msg}");
                    ledger.fail_intents(&acct, &[Finished::new(key, Outcome::Rejected, "", msg)])?;
                }
                Err(e) => {
                    let st = st.label();
                    tracing::warn!(account = %acct, fulfillment = %fid, "could not set the status {st:?}: {e}; the next run sets it");
                    report.pending.push(format!("status {st:?} of fulfillment {fid} not set yet: {e}"));
                }
            }
            Ok(())
        })
        .await;
        self.ledger.complete_intents(&acct, &set_done)?;
        r
    }
}
