//! The HTTP client: every request to Stitch goes through here.
//!
//! Policy lives in one place: bounded concurrency, an optional requests-per-second cap,
//! retries with exponential backoff and full jitter on 429/5xx/connection errors (honouring
//! `Retry-After`), and the two rules that protect the account:
//! - 401/403 are never retried: they become [`ApiError::Halt`] and the caller stops the account
//!   (re-authorising would create a duplicate channel warehouse).
//! - A write whose answer is lost is never re-sent blindly: it becomes [`ApiError::Uncertain`]
//!   and [`StitchClient::write_resolved`] asks Stitch whether it landed before sending again.

use super::wire;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltKind {
    /// 401: the token is wrong or revoked.
    Unauthorized,
    /// 403: integration features off, or no API access.
    Forbidden,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ApiError {
    #[error("Stitch refused the credentials ({status}): {message}")]
    Halt { kind: HaltKind, status: u16, message: String },
    #[error("Stitch rejected the request ({status} {code}): {message}")]
    Rejected { status: u16, code: String, message: String },
    #[error("Stitch unavailable after retries: {0}")]
    Transient(String),
    #[error("the answer to a write was lost; it may or may not have been applied: {0}")]
    Uncertain(String),
    #[error("unexpected answer from Stitch: {0}")]
    Protocol(String),
}

impl ApiError {
    pub fn is_halt(&self) -> bool {
        matches!(self, ApiError::Halt { .. })
    }
}

/// Counters for benchmarks, metrics and `status`.
#[derive(Debug, Default)]
pub struct ClientStats {
    pub requests: AtomicU64,
    pub write_requests: AtomicU64,
    pub retries: AtomicU64,
    pub uncertain_writes: AtomicU64,
}

#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub base_url: String,
    pub timeout: Duration,
    pub concurrency: usize,
    pub requests_per_second: Option<u32>,
    pub max_retries: u32,
    /// First backoff step; doubled per attempt, capped at 30 s, fully jittered.
    pub backoff_base: Duration,
}

impl ClientOptions {
    pub fn new(base_url: impl Into<String>) -> Self {
        ClientOptions {
            base_url: base_url.into(),
            timeout: Duration::from_secs(30),
            concurrency: 8,
            requests_per_second: None,
            max_retries: 5,
            backoff_base: Duration::from_millis(200),
        }
    }
}

#[derive(Clone)]
pub struct StitchClient {
    http: reqwest::Client,
    base: String,
    token: Arc<str>,
    permits: Arc<Semaphore>,
    limiter: Option<Arc<DefaultDirectRateLimiter>>,
    opts: ClientOptions,
    pub stats: Arc<ClientStats>,
}

impl std::fmt::Debug for StitchClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StitchClient").field("base", &self.base).field("token", &"***").finish()
    }
}

/// One failed attempt, before the retry policy decides.
enum Attempt {
    /// Certainly not applied: safe to send again (429, connect failure, 503).
    Retry { wait: Option<Duration>, why: String },
    /// Possibly applied (timeout, 5xx, broken answer).
    Unknown(String),
    Final(ApiError),
}

impl StitchClient {
    pub fn new(opts: ClientOptions, token: &str) -> Result<Self, ApiError> {
        let http = reqwest::Client::builder()
            .timeout(opts.timeout)
            .connect_timeout(opts.timeout.min(Duration::from_secs(10)))
            .tcp_nodelay(true)
            .pool_max_idle_per_host(opts.concurrency.max(1))
            .user_agent(concat!("stitch-bridge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| ApiError::Protocol(format!("cannot build HTTP client: {e}")))?;
        let limiter = opts
            .requests_per_second
            .and_then(NonZeroU32::new)
            .map(|n| Arc::new(RateLimiter::direct(Quota::per_second(n))));
        Ok(StitchClient {
            http,
            base: opts.base_url.trim_end_matches('/').to_string(),
            token: token.into(),
            permits: Arc::new(Semaphore::new(opts.concurrency.max(1))),
            limiter,
            opts,
            stats: Arc::new(ClientStats::default()),
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = Duration::from_secs(30);
        let exp = self.opts.backoff_base.saturating_mul(1u32 << attempt.min(16)).min(cap);
        // Full jitter: spreads retries of many concurrent requests apart.
        Duration::from_secs_f64(exp.as_secs_f64() * rand::random::<f64>())
    }

    /// One HTTP exchange, classified.
    async fn attempt<B: Serialize + ?Sized>(&self, method: &Method, path: &str, body: Option<&B>) -> Result<bytes_or_json::Body, Attempt> {
        let _permit = self.permits.acquire().await.map_err(|_| Attempt::Final(ApiError::Transient("client closed".into())))?;
        if let Some(l) = &self.limiter {
            l.until_ready().await;
        }
        self.stats.requests.fetch_add(1, Ordering::Relaxed);
        // Standard API reads are POSTs too; only requests that change Stitch count as writes.
        if *method != Method::GET && path != wire::SALES_ORDERS_READ {
            self.stats.write_requests.fetch_add(1, Ordering::Relaxed);
        }
        let mut req = self
            .http
            .request(method.clone(), format!("{}{}", self.base, path))
            .header(wire::ACCESS_TOKEN_HEADER, &*self.token);
        if let Some(b) = body {
            let bytes = serde_json::to_vec(b).map_err(|e| Attempt::Final(ApiError::Protocol(e.to_string())))?;
            req = req.header(reqwest::header::CONTENT_TYPE, wire::CONTENT_TYPE_JSON).body(bytes);
        }
        let resp = match req.send().await {
            Ok(r) => r,
            Err(e) => {
                metrics::counter!(
                    "stitch_bridge_api_requests_total",
                    "endpoint" => crate::metrics::endpoint_label(method.as_str(), path),
                    "status" => if e.is_timeout() { "timeout" } else { "connection_error" }
                )
                .increment(1);
                if e.is_connect() {
                    return Err(Attempt::Retry { wait: None, why: format!("cannot connect: {e}") });
                }
                return Err(Attempt::Unknown(describe(&e)));
            }
        };
        let status = resp.status();
        metrics::counter!(
            "stitch_bridge_api_requests_total",
            "endpoint" => crate::metrics::endpoint_label(method.as_str(), path),
            "status" => status.as_str().to_string()
        )
        .increment(1);
        let retry_after = resp
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|s| Duration::from_secs(s.min(300)));
        let bytes = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => return Err(Attempt::Unknown(format!("answer cut off ({status}): {}", describe(&e)))),
        };
        if status.is_success() {
            return Ok(bytes_or_json::Body(bytes.to_vec()));
        }
        let (code, message) = error_text(&bytes);
        Err(match status {
            StatusCode::UNAUTHORIZED => Attempt::Final(ApiError::Halt { kind: HaltKind::Unauthorized, status: 401, message }),
            StatusCode::FORBIDDEN => Attempt::Final(ApiError::Halt { kind: HaltKind::Forbidden, status: 403, message }),
            StatusCode::TOO_MANY_REQUESTS => Attempt::Retry { wait: retry_after, why: format!("rate limited (429): {message}") },
            StatusCode::SERVICE_UNAVAILABLE => Attempt::Retry { wait: retry_after, why: format!("unavailable (503): {message}") },
            s if s.is_server_error() => Attempt::Unknown(format!("{s}: {message}")),
            s => Attempt::Final(ApiError::Rejected { status: s.as_u16(), code, message }),
        })
    }

    /// A request that is safe to repeat (reads, idempotent updates): retried on every
    /// transient failure.
    async fn idempotent<B: Serialize + ?Sized, T: DeserializeOwned>(&self, method: Method, path: &str, body: Option<&B>) -> Result<T, ApiError> {
        let mut last = String::new();
        for attempt in 0..=self.opts.max_retries {
            if attempt > 0 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("stitch_bridge_api_retries_total").increment(1);
            }
            match self.attempt(&method, path, body).await {
                Ok(b) => return b.json(path),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry { wait, why }) => {
                    last = why;
                    tokio::time::sleep(wait.unwrap_or_else(|| self.backoff(attempt))).await;
                }
                Err(Attempt::Unknown(why)) => {
                    last = why;
                    tokio::time::sleep(self.backoff(attempt)).await;
                }
            }
        }
        Err(ApiError::Transient(format!("{method} {path}: {last}")))
    }

    /// A write that must not be applied twice: retried only when it certainly did not land;
    /// a lost answer comes back as `Uncertain` for the caller to resolve.
    async fn write_once<B: Serialize + ?Sized, T: DeserializeOwned>(&self, method: Method, path: &str, body: &B) -> Result<T, ApiError> {
        let mut last = String::new();
        for attempt in 0..=self.opts.max_retries {
            if attempt > 0 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("stitch_bridge_api_retries_total").increment(1);
            }
            match self.attempt(&method, path, Some(body)).await {
                Ok(b) => return b.json(path),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry { wait, why }) => {
                    last = why;
                    tokio::time::sleep(wait.unwrap_or_else(|| self.backoff(attempt))).await;
                }
                Err(Attempt::Unknown(why)) => {
                    self.stats.uncertain_writes.fetch_add(1, Ordering::Relaxed);
                    return Err(ApiError::Uncertain(format!("{method} {path}: {why}")));
                }
            }
        }
        Err(ApiError::Transient(format!("{method} {path}: {last}")))
    }

    /// Send a non-idempotent write; when its answer is lost, ask `check` whether it landed
    /// (returning what it found) before sending again. Gives up as `Transient`.
    pub async fn write_resolved<T>(
        &self,
        mut send: impl AsyncFnMut() -> Result<T, ApiError>,
        mut check: impl AsyncFnMut() -> Result<Option<T>, ApiError>,
    ) -> Result<T, ApiError> {
        let mut last = String::new();
        for attempt in 0..=self.opts.max_retries {
            match send().await {
                Err(ApiError::Uncertain(why)) => {
                    last = why;
                    tokio::time::sleep(self.backoff(attempt)).await;
                    if let Some(found) = check().await? {
                        return Ok(found);
                    }
                }
                other => return other,
            }
        }
        Err(ApiError::Transient(format!("write not confirmed: {last}")))
    }

    // ---- typed endpoints -----------------------------------------------------------------------

    /// Every page of an Integrations list: the first page tells the total, the rest are
    /// fetched concurrently (within the client's limits), in order.
    async fn all_pages<P: DeserializeOwned, T>(&self, base: &str, split: impl Fn(P) -> (Vec<T>, wire::PageMeta)) -> Result<Vec<T>, ApiError> {
        let size = wire::INTEGRATIONS_MAX_PAGE_SIZE;
        let url = |page: u64| format!("{base}?page={page}&page_size={size}");
        let (mut out, meta) = split(self.idempotent::<(), P>(Method::GET, &url(1), None).await?);
        let pages = meta.total.div_ceil(u64::from(meta.page_size.max(1)));
        let rest = futures::future::try_join_all((2..=pages).map(|n| {
            let u = url(n);
            async move { self.idempotent::<(), P>(Method::GET, &u, None).await }
        }))
        .await?;
        for p in rest {
            out.extend(split(p).0);
        }
        Ok(out)
    }

    pub async fn list_products(&self) -> Result<Vec<wire::Product>, ApiError> {
        self.all_pages(wire::PRODUCTS, |p: wire::ProductsPage| (p.products, p.meta)).await
    }

    /// Upsert by SKU with absolute stock: repeating it sets the same values, so it is retried
    /// like a read.
    pub async fn upsert_products(&self, products: &[wire::ProductUpsert]) -> Result<Vec<wire::ProductUpsertResult>, ApiError> {
        let req = wire::ProductsUpsertRequest { products: products.to_vec() };
        let r: wire::ProductsUpsertResponse = self.idempotent(Method::POST, wire::PRODUCTS, Some(&req)).await?;
        Ok(r.products)
    }

    pub async fn list_open_fulfillments(&self) -> Result<Vec<wire::Fulfillment>, ApiError> {
        self.all_pages(wire::FULFILLMENTS, |p: wire::FulfillmentsPage| (p.fulfillments, p.meta)).await
    }

    /// `None` when Stitch does not know the id.
    pub async fn get_fulfillment(&self, id: &str) -> Result<Option<wire::Fulfillment>, ApiError> {
        match self.idempotent::<(), wire::FulfillmentEnvelope>(Method::GET, &wire::fulfillment(&enc(id)), None).await {
            Ok(e) => Ok(Some(e.fulfillment)),
            Err(ApiError::Rejected { status: 404, .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    pub async fn line_items(&self, fulfillment_id: &str) -> Result<Vec<wire::FulfillmentLineItem>, ApiError> {
        let r: wire::FulfillmentLineItems =
            self.idempotent::<(), _>(Method::GET, &wire::fulfillment_line_items(&enc(fulfillment_id)), None).await?;
        Ok(r.line_items)
    }

    /// Setting the same status twice is harmless, so this is retried like a read.
    pub async fn set_status(&self, fulfillment_id: &str, status: &str) -> Result<(), ApiError> {
        let body = wire::FulfillmentStatusUpdate { status: status.to_string() };
        let _: serde_json::Value = self.idempotent(Method::PUT, &wire::fulfillment(&enc(fulfillment_id)), Some(&body)).await?;
        Ok(())
    }

    pub async fn shipments_for(&self, fulfillment_id: &str) -> Result<Vec<wire::Shipment>, ApiError> {
        let r: wire::ShipmentsResponse = self.idempotent::<(), _>(Method::GET, &wire::shipments_for(&enc(fulfillment_id)), None).await?;
        Ok(r.shipments)
    }

    /// Post one shipment exactly once: a lost answer is resolved by looking for its tracking
    /// number on the fulfillment.
    pub async fn post_shipment(&self, s: &wire::NewShipment) -> Result<wire::Shipment, ApiError> {
        let req = wire::ShipmentsRequest { shipments: vec![s.clone()] };
        self.write_resolved(
            async || {
                let r: wire::ShipmentsResponse = self.write_once(Method::POST, wire::SHIPMENTS, &req).await?;
                r.shipments.into_iter().next().ok_or_else(|| ApiError::Protocol("empty shipments answer".into()))
            },
            async || self.find_shipment(&s.fulfillment_id, &s.tracking_number).await,
        )
        .await
    }

    /// Post several shipments in one request. Stitch validates them whole; a lost answer is
    /// resolved by looking for every tracking number (all present: landed).
    pub async fn post_shipments(&self, list: &[wire::NewShipment]) -> Result<Vec<wire::Shipment>, ApiError> {
        let req = wire::ShipmentsRequest { shipments: list.to_vec() };
        self.write_resolved(
            async || {
                let r: wire::ShipmentsResponse = self.write_once(Method::POST, wire::SHIPMENTS, &req).await?;
                Ok(r.shipments)
            },
            async || {
                let mut found = Vec::with_capacity(list.len());
                for s in list {
                    match self.find_shipment(&s.fulfillment_id, &s.tracking_number).await? {
                        Some(x) => found.push(x),
                        None => return Ok(None),
                    }
                }
                Ok(Some(found))
            },
        )
        .await
    }

    pub async fn find_shipment(&self, fulfillment_id: &str, tracking: &str) -> Result<Option<wire::Shipment>, ApiError> {
        Ok(self.shipments_for(fulfillment_id).await?.into_iter().find(|x| x.tracking_number == tracking))
    }

    /// The sales order with this `po_num`, with its lines and shipping address.
    pub async fn find_order(&self, po_num: &str) -> Result<Option<OrderView>, ApiError> {
        let req = wire::SalesOrdersReadRequest::filtered("po_num", po_num, 50, 1);
        let r: wire::SalesOrdersReadResponse = self.idempotent(Method::POST, wire::SALES_ORDERS_READ, Some(&req)).await?;
        Ok(OrderView::pick(r.sales_orders, &r.line_items, &r.addresses, po_num))
    }

    /// Create, update or void one order exactly once; a lost answer is resolved by reading the
    /// order back (`landed` says whether what we see is the write's effect).
    pub async fn write_order(
        &self,
        w: &wire::SalesOrderWrite,
        po_num: &str,
        landed: impl Fn(&OrderView) -> bool,
    ) -> Result<OrderView, ApiError> {
        let req = wire::SalesOrdersWriteRequest::new(vec![w.clone()]);
        self.write_resolved(
            async || {
                let r: wire::SalesOrdersWriteResponse = self.write_once(Method::POST, wire::SALES_ORDERS_WRITE, &req).await?;
                OrderView::pick(r.sales_orders, &r.line_items, &r.addresses, po_num)
                    .ok_or_else(|| ApiError::Protocol("write answer did not echo the order".into()))
            },
            async || Ok(self.find_order(po_num).await?.filter(|o| landed(o))),
        )
        .await
    }

    /// Cheap authenticated read used by `test`: proves token and integration access.
    pub async fn probe(&self) -> Result<(), ApiError> {
        let _: wire::ProductsPage = self.idempotent::<(), _>(Method::GET, &format!("{}?page=1&page_size=1", wire::PRODUCTS), None).await?;
        Ok(())
    }
}

/// A sales order with its side-loaded lines and shipping address resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub order: wire::SalesOrder,
    pub lines: Vec<wire::SalesOrderLineItem>,
    pub shipping: Option<wire::Address>,
}

impl OrderView {
    fn pick(
        orders: Vec<wire::SalesOrder>,
        lines: &std::collections::BTreeMap<String, wire::SalesOrderLineItem>,
        addrs: &std::collections::BTreeMap<String, wire::Address>,
        po_num: &str,
    ) -> Option<OrderView> {
        let order = orders.into_iter().find(|o| o.po_num == po_num)?;
        let lines = order.links.line_items.iter().filter_map(|l| lines.get(&l.id).cloned()).collect();
        let shipping = order
            .links
            .addresses
            .iter()
            .find(|a| a.kind == "shipping")
            .and_then(|a| addrs.get(&a.id).cloned());
        Some(OrderView { order, lines, shipping })
    }
}

mod bytes_or_json {
    use super::ApiError;
    pub struct Body(pub Vec<u8>);
    impl Body {
        pub fn json<T: serde::de::DeserializeOwned>(self, path: &str) -> Result<T, ApiError> {
            serde_json::from_slice(&self.0).map_err(|e| {
                let snippet: String = String::from_utf8_lossy(&self.0).chars().take(200).collect();
                ApiError::Protocol(format!("{path}: {e}; body starts {snippet:?}"))
            })
        }
    }
}

/// Error bodies are `{"error":{"code","message"}}` when Stitch (or the simulator) says so;
/// anything else is opaque text, shortened.
fn error_text(bytes: &[u8]) -> (String, String) {
    match serde_json::from_slice::<wire::ErrorBody>(bytes) {
        Ok(b) => (b.error.code, b.error.message),
        Err(_) => (String::new(), String::from_utf8_lossy(bytes).chars().take(300).collect()),
    }
}

fn describe(e: &reqwest::Error) -> String {
    use std::error::Error;
    let mut s = if e.is_timeout() { "timed out".to_string() } else { e.to_string() };
    let mut src = e.source();
    while let Some(inner) = src {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        src = inner.source();
    }
    s
}

/// Ids go into paths; anything outside a safe set is percent-encoded so an odd id from a
/// warehouse file cannot change the path.
fn enc(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b"-_~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert_eq!(enc("F-12"), "F-12");
        assert_eq!(enc("../x?y"), "%2E%2E%2Fx%3Fy");
    }

    #[test]
    fn opaque_error_bodies_are_kept_short() {
        let (code, msg) = error_text(&vec![b'x'; 5000]);
        assert!(code.is_empty());
        assert_eq!(msg.len(), 300);
        let (code, msg) = error_text(br#"{"error":{"code":"over_shipment","message":"too many"}}"#);
        assert_eq!((code.as_str(), msg.as_str()), ("over_shipment", "too many"));
    }
}
