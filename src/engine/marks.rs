//! Names of the ledger marks the engine keeps between cycles (small key/value facts about
//! Stitch state). Each is a cache or a memory, never the only source of a decision.

/// A fulfillment's line items, kept from the order download. An acknowledged fulfillment is
/// locked in Stitch, so its lines cannot change; only `quantity_shipped` moves, and the bridge
/// adds what it ships itself. Any doubt (a refusal, an interrupted run, a shipment confirmed
/// after a crash) drops the mark and Stitch is asked again (`reconcile::shipments::cache_usable`).
pub(crate) fn line_items(account: &str, fulfillment_id: &str) -> String {
    format!("line-items:{account}:{fulfillment_id}")
}

/// The fulfillment first found in the open list for an order reference: once the fulfillment is
/// complete it leaves that list, and a re-sent file must still resolve.
pub(crate) fn order_fulfillment(account: &str, order_ref: &str) -> String {
    format!("order-fulfillment:{account}:{order_ref}")
}
