//! Executing plans: fetch the snapshot the planners need, plan, and send each write through the
//! outbox (intent recorded before the request, outcome after). Requests run concurrently up to
//! the account's limit; ledger updates happen here, between them, never inside a request.

use super::account::{AccountCtx, Step, Stop};
use crate::formats::Kind;
use crate::formats::{InventoryRecord, OrderAction, OrderRecord, Record, ShipmentRecord};
use crate::ledger::{Finished, Intent, IntentState, NewIntent};
use crate::model::{FulfillmentStatus, IntentKey, Payload};
use crate::reconcile::{inventory, orders, shipments, Decision, Outcome};
use crate::stitch::wire::{self, NewShipment};
use crate::stitch::{ApiError, OrderView};
use futures::stream::{self, StreamExt};
use std::collections::{BTreeMap, HashMap};

/// Most shipments sent in one request: large enough to amortise latency, small enough that a
/// refused batch (validated whole by Stitch) is cheap to retry one by one.
const SHIPMENT_BATCH: usize = 50;

/// A file shipping more fulfillments than this reads the paged open list (500 per request)
/// instead of one `GET /fulfillments/{id}` each.
const OPEN_LIST_AFTER: usize = 32;

/// Status intents completed per ledger transaction.
pub(crate) const STATUS_DONE_BATCH: usize = 256;

/// Ledger mark caching a fulfillment's line items, kept from the order download. An
/// acknowledged fulfillment is locked in Stitch, so its lines cannot change; only
/// `quantity_shipped` moves, and the bridge adds what it ships itself. Any doubt (a refusal, an
/// interrupted run, a shipment confirmed after a crash) drops the mark and Stitch is asked again.
pub(crate) fn line_items_mark(account: &str, fulfillment_id: &str) -> String {
    format!("line-items:{account}:{fulfillment_id}")
}

fn from_intent(line: u64, i: &Intent) -> Decision {
    let outcome = i.outcome.unwrap_or(Outcome::Unchanged);
    Decision::new(
        line,
        i.key.record_key(),
        outcome,
        i.remote_id.clone().unwrap_or_default(),
        i.message.clone().unwrap_or_default(),
    )
}

impl AccountCtx<'_> {
    pub async fn apply(&mut self, kind: Kind, sha: &str, records: Vec<Record>, delta: bool) -> Step<Vec<Decision>> {
        match kind {
            Kind::Inventory => {
                let recs = records
                    .into_iter()
                    .filter_map(|r| if let Record::Inventory(i) = r { Some(i) } else { None })
                    .collect();
                self.apply_inventory(sha, recs, delta).await
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

    async fn apply_inventory(&mut self, sha: &str, recs: Vec<InventoryRecord>, delta: bool) -> Step<Vec<Decision>> {
        let acct = self.acct.name.clone();
        let key = |sku: &str| IntentKey::Product { content: sha.to_string(), sku: sku.to_string() };
        let remote: HashMap<String, wire::Product> =
            self.client.list_products().await?.into_iter().map(|p| (p.sku.clone(), p)).collect();
        let mut decisions = Vec::new();
        let mut todo = Vec::with_capacity(recs.len());
        // A write of this file already made (before a crash) is reused, never repeated: for a
        // delta, repeating would add the adjustment twice.
        for r in recs {
            match self.ledger.intent(&acct, &key(&r.sku))? {
                Some(i) if i.state == IntentState::Done => {
                    decisions.push(Decision { line: r.line, key: r.sku.clone(), ..from_intent(r.line, &i) })
                }
                Some(i) if i.state == IntentState::Pending => {
                    let sent = match &i.payload {
                        Payload::Product(sent) => Some(sent),
                        _ => None,
                    };
                    match (sent, remote.get(&r.sku)) {
                        (Some(sent), Some(p)) if p.stock == sent.stock => {
                            let outcome = if sent.creates { Outcome::Created } else { Outcome::Updated };
                            let msg = format!("stock {} (confirmed after an interrupted run)", sent.stock);
                            self.ledger
                                .complete_intents(&acct, &[Finished::new(i.key.clone(), outcome, &p.id, &msg)])?;
                            decisions.push(Decision::new(r.line, &r.sku, outcome, &p.id, msg));
                        }
                        _ => todo.push(r),
                    }
                }
                _ => todo.push(r),
            }
        }
        let policy = inventory::InventoryPolicy {
            delta,
            zero_missing: self.acct.zero_missing,
            zero_missing_max_share: self.acct.zero_missing_max_share,
        };
        let plan = inventory::plan(&todo, &remote, policy);
        decisions.extend(plan.settled);
        let chunks: Vec<Vec<inventory::PlannedUpsert>> =
            plan.upserts.chunks(wire::MAX_PRODUCTS_PER_REQUEST).map(|c| c.to_vec()).collect();
        for c in &chunks {
            let items: Vec<NewIntent> = c
                .iter()
                .map(|u| NewIntent::new(key(&u.upsert.sku), Payload::product(&u.upsert.sku, u.upsert.stock, u.creates)))
                .collect();
            self.ledger.begin_intents(&acct, &items)?;
        }
        let client = self.client.clone();
        let mut results = stream::iter(chunks)
            .map(|c| {
                let client = client.clone();
                async move {
                    let body: Vec<wire::ProductUpsert> = c.iter().map(|u| u.upsert.clone()).collect();
                    let r = client.upsert_products(&body).await;
                    (c, r)
                }
            })
            .buffer_unordered(self.acct.concurrency);
        let mut stop: Option<Stop> = None;
        while let Some((chunk, r)) = results.next().await {
            match r {
                Ok(answer) => {
                    let ids: HashMap<&str, &str> = answer.iter().map(|a| (a.sku.as_str(), a.id.as_str())).collect();
                    let mut done = Vec::with_capacity(chunk.len());
                    for u in &chunk {
                        let (outcome, msg) = inventory::applied_message(u);
                        let id = ids.get(u.upsert.sku.as_str()).copied().unwrap_or("").to_string();
                        done.push(Finished::new(key(&u.upsert.sku), outcome, &id, &msg));
                        decisions.push(Decision::new(u.line, &u.upsert.sku, outcome, id, msg));
                    }
                    self.ledger.complete_intents(&acct, &done)?;
                }
                Err(ApiError::Rejected { status, code, message }) => {
                    let msg = format!("Stitch refused this batch ({status} {code}): {message}");
                    let failed: Vec<_> =
                        chunk.iter().map(|u| Finished::new(key(&u.upsert.sku), Outcome::Rejected, "", &msg)).collect();
                    self.ledger.fail_intents(&acct, &failed)?;
                    decisions.extend(
                        chunk.iter().map(|u| Decision::rejected(u.line, "stitch_rejected", &u.upsert.sku, &msg)),
                    );
                }
                Err(e) => {
                    // Keep draining finished requests so their outcomes are recorded.
                    stop.get_or_insert(e.into());
                }
            }
        }
        match stop {
            Some(s) => Err(s),
            None => Ok(decisions),
        }
    }

    // ---- orders --------------------------------------------------------------------------------

    async fn apply_orders(&mut self, sha: &str, recs: Vec<OrderRecord>) -> Step<Vec<Decision>> {
        let acct = self.acct.name.clone();
        let key = |r: &OrderRecord| IntentKey::Order { content: sha.to_string(), order_ref: r.order_ref.clone() };
        let client = self.client.clone();
        // Snapshot: each order looked up by its reference, concurrently.
        let refs: Vec<String> = recs.iter().map(|r| r.order_ref.clone()).collect();
        let mut found: HashMap<String, Option<OrderView>> = HashMap::new();
        let mut lookups = stream::iter(refs)
            .map(|r| {
                let client = client.clone();
                async move {
                    let v = client.find_order(&r).await;
                    (r, v)
                }
            })
            .buffer_unordered(self.acct.concurrency);
        while let Some((r, v)) = lookups.next().await {
            found.insert(r, v?);
        }
        drop(lookups);
        let mut decisions = Vec::new();
        let mut writes: Vec<(OrderRecord, orders::OrderPlan)> = Vec::new();
        for r in recs {
            let remote = found.get(&r.order_ref).and_then(|v| v.as_ref());
            if let Some(i) = self.ledger.intent(&acct, &key(&r))? {
                let landed = remote.is_some_and(|v| orders::landed(&r, v));
                if i.state == IntentState::Done || (i.state == IntentState::Pending && landed) {
                    let mut d = from_intent(r.line, &i);
                    d.key = r.order_ref.clone();
                    if i.state == IntentState::Pending {
                        let id = remote.map(|v| v.order.id.clone()).unwrap_or_default();
                        d = Decision::new(
                            r.line,
                            &r.order_ref,
                            Outcome::Created,
                            &id,
                            "confirmed after an interrupted run",
                        );
                        self.ledger
                            .complete_intents(&acct, &[Finished::new(key(&r), Outcome::Created, id, &d.message)])?;
                    }
                    decisions.push(d);
                    continue;
                }
            }
            match orders::plan(&r, remote) {
                orders::OrderPlan::Settled(d) => decisions.push(d),
                p => writes.push((r, p)),
            }
        }
        let items: Vec<NewIntent> =
            writes.iter().map(|(r, _)| NewIntent::new(key(r), Payload::order(&r.order_ref, r.action))).collect();
        self.ledger.begin_intents(&acct, &items)?;
        let mut results = stream::iter(writes)
            .map(|(r, p)| {
                let client = client.clone();
                async move {
                    let (write, outcome) = match &p {
                        orders::OrderPlan::Create(w) => (w.clone(), Outcome::Created),
                        orders::OrderPlan::Update { write, .. } => (write.clone(), Outcome::Updated),
                        orders::OrderPlan::Void { id } => (
                            wire::SalesOrderWrite {
                                id: Some(id.clone()),
                                void: Some("1".into()),
                                ..Default::default()
                            },
                            Outcome::Updated,
                        ),
                        orders::OrderPlan::Settled(_) => unreachable!("settled plans are not sent"),
                    };
                    let res = client.write_order(&write, &r.order_ref, |v| orders::landed(&r, v)).await;
                    (r, outcome, res)
                }
            })
            .buffer_unordered(self.acct.concurrency);
        let mut stop: Option<Stop> = None;
        while let Some((r, outcome, res)) = results.next().await {
            match res {
                Ok(v) => {
                    let msg = if r.action == OrderAction::Cancel { "cancelled (voided) in Stitch" } else { "" };
                    self.ledger.complete_intents(&acct, &[Finished::new(key(&r), outcome, &v.order.id, msg)])?;
                    decisions.push(Decision::new(r.line, &r.order_ref, outcome, &v.order.id, msg));
                }
                Err(ApiError::Rejected { status, code, message }) => {
                    let msg = match code.as_str() {
                        // In the warehouse's terms: its order reference, never Stitch's internal ids.
                        wire::codes::ALREADY_SHIPPED => {
                            format!("order {} has shipped items; it cannot be cancelled", r.order_ref)
                        }
                        wire::codes::ORDER_LOCKED => format!(
                            "the warehouse has already acknowledged order {}; changes not applied ({message})",
                            r.order_ref
                        ),
                        _ => format!("Stitch refused the order ({status}): {message}"),
                    };
                    self.ledger.fail_intents(&acct, &[Finished::new(key(&r), Outcome::Rejected, "", &msg)])?;
                    let c = if code.is_empty() { "stitch_rejected".to_string() } else { code };
                    decisions.push(Decision::rejected(r.line, leak_code(&c), &r.order_ref, msg));
                }
                Err(e) => {
                    stop.get_or_insert(e.into());
                }
            }
        }
        match stop {
            Some(s) => Err(s),
            None => Ok(decisions),
        }
    }

    // ---- shipments -----------------------------------------------------------------------------

    async fn apply_shipments(&mut self, sha: &str, recs: Vec<ShipmentRecord>) -> Step<Vec<Decision>> {
        let acct = self.acct.name.clone();
        let mut decisions = Vec::new();
        // Per fulfillment, line items shipped by this run (their status is set afterwards).
        let mut shipped: HashMap<String, HashMap<String, u32>> = HashMap::new();
        // Resolve each shipment's fulfillment: given, or via the order reference (what we sent
        // the warehouse, else the open list).
        let mut by_fid: BTreeMap<String, Vec<ShipmentRecord>> = BTreeMap::new();
        for r in recs {
            let fid = match (&r.fulfillment_id, &r.order_ref) {
                (Some(f), _) => Some(f.clone()),
                (None, Some(o)) => {
                    // Remembered when first found in the open list: once the fulfillment is
                    // complete it leaves that list, and a re-sent file must still resolve.
                    let mark = format!("order-fulfillment:{acct}:{o}");
                    match self.ledger.fulfillment_for_order(&acct, o)? {
                        Some(f) => Some(f),
                        None => match self.ledger.get_mark(&mark)? {
                            Some(f) => Some(f),
                            None => {
                                let f = self
                                    .open_fulfillments()
                                    .await?
                                    .iter()
                                    .find(|f| &f.order_number == o)
                                    .map(|f| f.id.clone());
                                if let Some(f) = &f {
                                    self.ledger.set_mark(&mark, f)?;
                                }
                                f
                            }
                        },
                    }
                }
                (None, None) => None,
            };
            match fid {
                Some(f) => by_fid.entry(f).or_default().push(r),
                None => {
                    let wanted = r.order_ref.clone().unwrap_or_default();
                    decisions.push(Decision::rejected(
                        r.line,
                        "unknown_fulfillment",
                        format!("{wanted}/{}", r.tracking_number),
                        format!("no open fulfillment found for order {wanted}"),
                    ));
                }
            }
        }
        let key = |fid: &str, r: &ShipmentRecord| IntentKey::shipment(fid, &r.tracking_number);
        // Snapshot per fulfillment, concurrently: its state and line items. Recorded shipments
        // are fetched only when the plan needs them (a re-sent file), which keeps the common
        // case at one read per fulfillment.
        if self.open_cache.is_none() && by_fid.len() > OPEN_LIST_AFTER {
            self.open_fulfillments().await?;
        }
        // Cached line items serve only fulfillments this bridge has no earlier shipment intent
        // for in this file: a shipment from an interrupted run is not in the cache's counts.
        let mut cached: HashMap<String, Vec<wire::FulfillmentLineItem>> = HashMap::new();
        for (fid, recs) in &by_fid {
            let mut fresh = true;
            for r in recs {
                if self.ledger.intent(&acct, &key(fid, r))?.is_some() {
                    fresh = false;
                    break;
                }
            }
            if fresh {
                if let Some(v) = self.ledger.get_mark(&line_items_mark(&acct, fid))? {
                    if let Ok(items) = serde_json::from_str(&v) {
                        cached.insert(fid.clone(), items);
                    }
                }
            }
        }
        let open: HashMap<String, wire::Fulfillment> = match &self.open_cache {
            Some(v) => v.iter().map(|f| (f.id.clone(), f.clone())).collect(),
            None => HashMap::new(),
        };
        let client = self.client.clone();
        let fids: Vec<String> = by_fid.keys().cloned().collect();
        let mut snaps: HashMap<String, Option<shipments::FulfillmentSnapshot>> = HashMap::new();
        let mut fetches = stream::iter(fids)
            .map(|fid| {
                let client = client.clone();
                let known = open.get(&fid).cloned();
                let items = cached.remove(&fid);
                async move {
                    let f = match known {
                        Some(f) => Some(f),
                        None => client.get_fulfillment(&fid).await?,
                    };
                    let snap = match f {
                        None => None,
                        Some(f) => {
                            let line_items = match items {
                                Some(items) if f.state == wire::FulfillmentState::Open => items,
                                _ => client.line_items(&f.id).await?,
                            };
                            Some(shipments::FulfillmentSnapshot { fulfillment: f, line_items, shipments: Vec::new() })
                        }
                    };
                    Ok::<_, ApiError>((fid, snap))
                }
            })
            .buffer_unordered(self.acct.concurrency);
        while let Some(r) = fetches.next().await {
            let (fid, snap) = r?;
            snaps.insert(fid, snap);
        }
        drop(fetches);
        let mut posts: Vec<(u64, NewShipment)> = Vec::new();
        for (fid, recs) in &by_fid {
            let mut pending_recs: Vec<&ShipmentRecord> = Vec::new();
            for r in recs {
                match self.ledger.intent(&acct, &key(fid, r))? {
                    Some(i) if i.state == IntentState::Done => {
                        let mut d = from_intent(r.line, &i);
                        d.key = shipments::key(fid, r);
                        // Sent while processing this very file (a run that stopped before
                        // finishing it): still this file's creation, and its status is due.
                        let same_file = matches!(&i.payload, Payload::Shipment(p) if p.file == sha);
                        if d.outcome == Outcome::Created && same_file {
                            shipped.entry(fid.clone()).or_default();
                        } else if d.outcome == Outcome::Created {
                            d.outcome = Outcome::Unchanged;
                            d.message = "already sent to Stitch".into();
                        }
                        decisions.push(d);
                    }
                    _ => pending_recs.push(r),
                }
            }
            let snap = snaps.get_mut(fid).and_then(|s| s.as_mut());
            let mut plan = shipments::plan(&pending_recs, snap.as_deref(), fid);
            let mut needs_history =
                plan.iter().any(|p| matches!(p, shipments::ShipmentPlan::Settled(d) if d.outcome == Outcome::Rejected));
            for r in &pending_recs {
                // A ledger that cannot answer stops the run: guessing could post twice.
                needs_history |= self.ledger.intent(&acct, &key(fid, r))?.is_some();
            }
            if let (true, Some(s)) = (needs_history, snap) {
                s.shipments = self.client.shipments_for(fid).await?;
                plan = shipments::plan(&pending_recs, Some(s), fid);
            }
            for (r, p) in pending_recs.iter().zip(plan) {
                match p {
                    shipments::ShipmentPlan::Settled(d) => {
                        if d.outcome == Outcome::Unchanged {
                            self.ledger.complete_intents(
                                &acct,
                                &[Finished::new(key(fid, r), Outcome::Unchanged, &d.remote_id, &d.message)],
                            )?;
                        }
                        decisions.push(d)
                    }
                    shipments::ShipmentPlan::Post(n) => posts.push((r.line, n)),
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
        let mut results = stream::iter(batches)
            .map(|b| {
                let client = client.clone();
                async move {
                    let body: Vec<NewShipment> = b.iter().map(|(_, n)| n.clone()).collect();
                    let r = client.post_shipments(&body).await;
                    (b, r)
                }
            })
            .buffer_unordered(self.acct.concurrency);
        let mut stop: Option<Stop> = None;
        // Fulfillments whose cached line items can no longer be trusted.
        let mut stale: Vec<String> = Vec::new();
        let mut retry_single: Vec<(u64, NewShipment)> = Vec::new();
        while let Some((b, r)) = results.next().await {
            match r {
                Ok(answer) => {
                    let ids: HashMap<(&str, &str), &str> = answer
                        .iter()
                        .map(|s| ((s.fulfillment_id.as_str(), s.tracking_number.as_str()), s.id.as_str()))
                        .collect();
                    let mut done = Vec::new();
                    for (line, n) in &b {
                        let id = ids
                            .get(&(n.fulfillment_id.as_str(), n.tracking_number.as_str()))
                            .copied()
                            .unwrap_or("")
                            .to_string();
                        let key = IntentKey::shipment(&n.fulfillment_id, &n.tracking_number);
                        let k = key.record_key();
                        done.push(Finished::new(key, Outcome::Created, &id, ""));
                        decisions.push(Decision::new(*line, k, Outcome::Created, id, ""));
                        let m = shipped.entry(n.fulfillment_id.clone()).or_default();
                        for li in &n.line_items {
                            *m.entry(li.line_item_id.clone()).or_default() += li.quantity;
                        }
                    }
                    self.ledger.complete_intents(&acct, &done)?;
                }
                // Stitch validates a batch whole: find out which shipment it refused.
                Err(ApiError::Rejected { .. }) if b.len() > 1 => retry_single.extend(b),
                Err(ApiError::Rejected { status, code, message }) => {
                    for (line, n) in b {
                        stale.push(n.fulfillment_id.clone());
                        self.settle_refused_shipment(&mut decisions, line, &n, status, &code, &message)?;
                    }
                }
                Err(e) => {
                    stop.get_or_insert(e.into());
                }
            }
        }
        drop(results);
        for (line, n) in retry_single {
            if stop.is_some() {
                break;
            }
            match self.client.post_shipments(std::slice::from_ref(&n)).await {
                Ok(answer) => {
                    let id = answer.first().map(|s| s.id.clone()).unwrap_or_default();
                    let key = IntentKey::shipment(&n.fulfillment_id, &n.tracking_number);
                    let k = key.record_key();
                    self.ledger.complete_intents(&acct, &[Finished::new(key, Outcome::Created, &id, "")])?;
                    decisions.push(Decision::new(line, k, Outcome::Created, id, ""));
                    let m = shipped.entry(n.fulfillment_id.clone()).or_default();
                    for li in &n.line_items {
                        *m.entry(li.line_item_id.clone()).or_default() += li.quantity;
                    }
                }
                Err(ApiError::Rejected { status, code, message }) => {
                    stale.push(n.fulfillment_id.clone());
                    self.settle_refused_shipment(&mut decisions, line, &n, status, &code, &message)?
                }
                Err(e) => {
                    stop = Some(e.into());
                }
            }
        }
        // Keep Stitch informed: the status shows in Stitch next to the fulfillment.
        let statuses: Vec<(String, FulfillmentStatus)> = shipped
            .iter()
            .filter_map(|(fid, now)| {
                let snap = snaps.get(fid)?.as_ref()?;
                Some((fid.clone(), shipments::status_after(&snap.line_items, now)))
            })
            .collect();
        // The line-item cache follows what was shipped; a complete fulfillment leaves it, and
        // leaves the cancel check (a shipped fulfillment cannot be cancelled any more).
        let mut keep = Vec::new();
        let mut forget: Vec<String> = stale.iter().map(|f| line_items_mark(&acct, f)).collect();
        for (fid, now) in &shipped {
            let Some(Some(snap)) = snaps.get(fid) else { continue };
            if stale.contains(fid) {
                continue;
            }
            let mut items = snap.line_items.clone();
            for li in &mut items {
                li.quantity_shipped += now.get(&li.id).copied().unwrap_or(0);
            }
            if items.iter().all(|li| li.quantity_shipped >= li.quantity) {
                forget.push(line_items_mark(&acct, fid));
                self.ledger.set_fulfillment_state(&acct, fid, crate::model::SentState::Complete, None)?;
            } else if let Ok(v) = serde_json::to_string(&items) {
                keep.push((line_items_mark(&acct, fid), v));
            }
        }
        self.ledger.set_marks(&keep)?;
        self.ledger.delete_marks(&forget)?;
        // Through the outbox too: a status update lost to an outage or a crash is redone by the
        // next run's `resolve_pending`, which never lets an older status overwrite a newer one.
        let intents: Vec<NewIntent> = statuses
            .iter()
            .map(|(fid, st)| NewIntent::new(IntentKey::status(fid, *st), Payload::status(fid, *st)))
            .collect();
        self.ledger.begin_intents(&acct, &intents)?;
        let mut sets = stream::iter(statuses)
            .map(|(fid, st)| {
                let client = client.clone();
                async move {
                    let r = client.set_status(&fid, st.label()).await;
                    (fid, st, r)
                }
            })
            .buffer_unordered(self.acct.concurrency);
        // Completed in batches: one sync per batch, not per update, so the ledger never holds
        // back the requests in flight. A crash before a batch commits only repeats status
        // updates, which is harmless.
        let mut set_done: Vec<Finished> = Vec::new();
        while let Some((fid, st, r)) = sets.next().await {
            let key = IntentKey::status(&fid, st);
            if set_done.len() >= STATUS_DONE_BATCH {
                self.ledger.complete_intents(&acct, &set_done)?;
                set_done.clear();
            }
            match r {
                Ok(()) => set_done.push(Finished::new(key, Outcome::Updated, "", "")),
                Err(e) if e.is_halt() => {
                    stop.get_or_insert(e.into());
                }
                Err(ApiError::Rejected { status, message, .. }) => {
                    let msg = format!("status update refused ({status}): {message}");
                    tracing::warn!(account = %acct, fulfillment = %fid, "{msg}");
                    self.ledger.fail_intents(&acct, &[Finished::new(key, Outcome::Rejected, "", msg)])?;
                }
                Err(e) => {
                    let st = st.label();
                    tracing::warn!(account = %acct, fulfillment = %fid, "could not set the status {st:?}: {e}; the next run sets it");
                    self.report.pending.push(format!("status {st:?} of fulfillment {fid} not set yet: {e}"));
                }
            }
        }
        drop(sets);
        self.ledger.complete_intents(&acct, &set_done)?;
        match stop {
            Some(s) => Err(s),
            None => Ok(decisions),
        }
    }

    fn settle_refused_shipment(
        &mut self,
        decisions: &mut Vec<Decision>,
        line: u64,
        n: &NewShipment,
        status: u16,
        code: &str,
        message: &str,
    ) -> Step<()> {
        let key = IntentKey::shipment(&n.fulfillment_id, &n.tracking_number);
        let k = key.record_key();
        if code == wire::codes::DUPLICATE_SHIPMENT {
            self.ledger.complete_intents(
                &self.acct.name,
                &[Finished::new(key, Outcome::Unchanged, "", "tracking number already recorded")],
            )?;
            decisions.push(Decision::new(
                line,
                k,
                Outcome::Unchanged,
                "",
                "tracking number already recorded on this fulfillment",
            ));
        } else {
            let msg = format!("Stitch refused the shipment ({status}): {message}");
            self.ledger.fail_intents(&self.acct.name, &[Finished::new(key, Outcome::Rejected, "", &msg)])?;
            decisions.push(Decision::rejected(
                line,
                leak_code(if code.is_empty() { "stitch_rejected" } else { code }),
                k,
                msg,
            ));
        }
        Ok(())
    }
}

/// Decision codes are `&'static str`; codes from Stitch are mapped onto the known set.
fn leak_code(code: &str) -> &'static str {
    use wire::codes::*;
    for known in [
        ORDER_LOCKED,
        ALREADY_SHIPPED,
        FULFILLMENT_NOT_OPEN,
        UNKNOWN_FULFILLMENT,
        UNKNOWN_LINE_ITEM,
        OVER_SHIPMENT,
        DUPLICATE_SHIPMENT,
        INVALID,
        TOO_MANY_PRODUCTS,
        NOT_FOUND,
        BAD_REQUEST,
    ] {
        if known == code {
            return known;
        }
    }
    "stitch_rejected"
}
