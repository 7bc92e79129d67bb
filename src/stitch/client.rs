//! The HTTP client: every request to Stitch goes through here.
//!
//! Policy lives in one place: bounded concurrency, an optional requests-per-second cap,
//! retries with exponential backoff and full jitter on 429/5xx/connection errors (honouring
//! `Retry-After`), and the two rules that protect the account:
//! - 401/403 are never retried: they become [`ApiError::Halt`] and the caller stops the account
//!   (re-authorising would create a duplicate channel warehouse).
//! - A write whose answer is lost is never re-sent blindly: it becomes [`ApiError::Uncertain`]
//!   and [`StitchClient::write_resolved`] asks Stitch whether it landed before sending again.
//!   An answer that does not account for what was sent counts as lost.
//!
//! The answer is never trusted further than that: redirects are not followed (they would carry
//! the token to another host and turn a POST into a GET), bodies are read up to
//! `max_response_bytes`, list page counts are bounded and fetched lazily, and every wait and
//! request ends by the cycle's deadline.

use super::wire;
use futures::StreamExt;
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// Most pages one list is read in: 5 million items at 500 a page. A `meta.total` past this is
/// a broken or hostile answer, not a catalogue.
pub const MAX_LIST_PAGES: u64 = 10_000;

/// Most bytes of an error answer kept: only its first 300 characters are shown.
const ERROR_BODY_BYTES: u64 = 64 * 1024;

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
    /// Every attempt of a write ended without knowing whether it landed; its intent stays
    /// pending and the next run asks Stitch again.
    #[error("a write could not be confirmed; the next run asks Stitch whether it landed: {0}")]
    Unconfirmed(String),
    /// A 3xx: redirects are not followed, so a person must correct `stitch_url`.
    #[error("Stitch answered {status} redirecting to {location:?}; redirects are not followed (they would carry the token and the write elsewhere): correct stitch_url")]
    Redirect { status: u16, location: String },
    #[error("the answer to {what} is larger than max_response_bytes ({limit} bytes); stopped reading it")]
    TooLarge { what: String, limit: u64 },
    #[error("the cycle deadline passed (max_cycle_seconds = {seconds}); the rest is left for the next run")]
    Deadline { seconds: u64 },
    #[error("the Stitch token contains a character an HTTP header cannot carry")]
    InvalidToken,
}

impl ApiError {
    pub fn is_halt(&self) -> bool {
        matches!(self, ApiError::Halt { .. })
    }
}

/// The end of an account's cycle: no request starts after `at`, and one in flight is cut there.
#[derive(Debug, Clone, Copy)]
pub struct Deadline {
    pub at: Instant,
    /// The configured budget, for the message.
    pub budget: Duration,
}

impl Deadline {
    pub fn after(budget: Duration) -> Deadline {
        Deadline { at: Instant::now() + budget, budget }
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
    /// Longest wait between attempts, `Retry-After` included.
    pub max_retry_wait: Duration,
    /// Largest answer body read.
    pub max_response_bytes: u64,
    pub deadline: Option<Deadline>,
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
            max_retry_wait: Duration::from_secs(120),
            max_response_bytes: 16 * 1024 * 1024,
            deadline: None,
        }
    }
}

#[derive(Clone)]
pub struct StitchClient {
    http: reqwest::Client,
    base: String,
    token: reqwest::header::HeaderValue,
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

/// A list endpoint's query, in the shapes `wire` gives it (the simulator reads the same ones).
#[derive(Debug, Clone, Copy, Serialize)]
#[serde(untagged)]
enum Query<'a> {
    Page(wire::PageQuery),
    Shipments(&'a wire::ShipmentsQuery),
}

/// Where a request goes: a `wire` path and, for list endpoints, its query (encoded by reqwest).
#[derive(Debug, Clone, Copy)]
struct At<'a> {
    path: &'a str,
    query: Option<Query<'a>>,
}

impl<'a> From<&'a str> for At<'a> {
    fn from(path: &'a str) -> Self {
        At { path, query: None }
    }
}

impl<'a> From<&'a String> for At<'a> {
    fn from(path: &'a String) -> Self {
        At { path, query: None }
    }
}

/// For messages: the path, and the page or the fulfillment the query asks for.
impl std::fmt::Display for At<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.path)?;
        match self.query {
            None => Ok(()),
            Some(Query::Page(q)) => match (q.page, q.page_size) {
                (Some(p), Some(n)) => write!(f, " (page {p}, {n} per page)"),
                (Some(p), None) => write!(f, " (page {p})"),
                _ => Ok(()),
            },
            Some(Query::Shipments(q)) => write!(f, " (fulfillment {:?})", q.fulfillment_id),
        }
    }
}

/// One failed attempt, before the retry policy decides.
enum Attempt {
    /// Certainly not applied: safe to send again (429, connect failure, 503).
    Retry {
        wait: Option<Duration>,
        why: String,
    },
    /// Possibly applied (timeout, 5xx, broken answer).
    Unknown(String),
    Final(ApiError),
}

impl StitchClient {
    pub fn new(opts: ClientOptions, token: &str) -> Result<Self, ApiError> {
        let mut token = reqwest::header::HeaderValue::from_str(token).map_err(|_| ApiError::InvalidToken)?;
        token.set_sensitive(true);
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
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
            token,
            permits: Arc::new(Semaphore::new(opts.concurrency.max(1))),
            limiter,
            opts,
            stats: Arc::new(ClientStats::default()),
        })
    }

    fn backoff(&self, attempt: u32) -> Duration {
        let cap = Duration::from_secs(30).min(self.opts.max_retry_wait);
        let exp = self.opts.backoff_base.saturating_mul(1u32 << attempt.min(16)).min(cap);
        // Full jitter: spreads retries of many concurrent requests apart.
        Duration::from_secs_f64(exp.as_secs_f64() * rand::random::<f64>())
    }

    /// `Err(Deadline)` once the cycle's deadline has passed.
    pub fn check_deadline(&self) -> Result<(), ApiError> {
        match self.opts.deadline {
            Some(d) if Instant::now() >= d.at => Err(ApiError::Deadline { seconds: d.budget.as_secs() }),
            _ => Ok(()),
        }
    }

    /// Wait before another attempt, capped; a wait that would end past the deadline is not
    /// started (no request could follow it).
    async fn pause(&self, wait: Duration) -> Result<(), ApiError> {
        let wait = wait.min(self.opts.max_retry_wait);
        if let Some(d) = self.opts.deadline {
            if Instant::now() + wait >= d.at {
                return Err(ApiError::Deadline { seconds: d.budget.as_secs() });
            }
        }
        tokio::time::sleep(wait).await;
        Ok(())
    }

    /// One HTTP exchange, classified; none starts after the deadline and none outlives it.
    async fn attempt<B: Serialize + ?Sized>(
        &self,
        method: &Method,
        at: At<'_>,
        body: Option<&B>,
    ) -> Result<bytes_or_json::Body, Attempt> {
        self.check_deadline().map_err(Attempt::Final)?;
        match self.opts.deadline {
            None => self.exchange(method, at, body).await,
            Some(d) => {
                match tokio::time::timeout_at(tokio::time::Instant::from_std(d.at), self.exchange(method, at, body))
                    .await
                {
                    Ok(r) => r,
                    Err(_) => Err(Attempt::Unknown("cut off at the cycle deadline".into())),
                }
            }
        }
    }

    async fn exchange<B: Serialize + ?Sized>(
        &self,
        method: &Method,
        at: At<'_>,
        body: Option<&B>,
    ) -> Result<bytes_or_json::Body, Attempt> {
        let path = at.path;
        let _permit =
            self.permits.acquire().await.map_err(|_| Attempt::Final(ApiError::Transient("client closed".into())))?;
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
            .header(wire::ACCESS_TOKEN_HEADER, self.token.clone());
        if let Some(q) = &at.query {
            req = req.query(q);
        }
        if let Some(b) = body {
            let bytes = serde_json::to_vec(b).map_err(|e| Attempt::Final(ApiError::Protocol(e.to_string())))?;
            req = req.header(reqwest::header::CONTENT_TYPE, wire::CONTENT_TYPE_JSON).body(bytes);
        }
        let mut resp = match req.send().await {
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
        if status.is_redirection() {
            let location = resp
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| String::from_utf8_lossy(v.as_bytes()).chars().take(500).collect())
                .unwrap_or_else(|| "(no Location header)".into());
            return Err(Attempt::Final(ApiError::Redirect { status: status.as_u16(), location }));
        }
        let retry_after = retry_wait(
            resp.headers().get(reqwest::header::RETRY_AFTER).and_then(|v| v.to_str().ok()),
            self.opts.max_retry_wait,
        );
        let cut = |e: reqwest::Error| Attempt::Unknown(format!("answer cut off ({status}): {}", describe(&e)));
        if status.is_success() {
            return match read_body(&mut resp, self.opts.max_response_bytes, false).await.map_err(cut)? {
                (b, false) => Ok(bytes_or_json::Body(b)),
                (_, true) => Err(Attempt::Final(ApiError::TooLarge {
                    what: format!("{method} {at}"),
                    limit: self.opts.max_response_bytes,
                })),
            };
        }
        let (bytes, _) =
            read_body(&mut resp, ERROR_BODY_BYTES.min(self.opts.max_response_bytes), true).await.map_err(cut)?;
        let (code, message) = error_text(&bytes);
        Err(match status {
            StatusCode::UNAUTHORIZED => {
                Attempt::Final(ApiError::Halt { kind: HaltKind::Unauthorized, status: 401, message })
            }
            StatusCode::FORBIDDEN => Attempt::Final(ApiError::Halt { kind: HaltKind::Forbidden, status: 403, message }),
            StatusCode::TOO_MANY_REQUESTS => {
                Attempt::Retry { wait: retry_after, why: format!("rate limited (429): {message}") }
            }
            StatusCode::SERVICE_UNAVAILABLE => {
                Attempt::Retry { wait: retry_after, why: format!("unavailable (503): {message}") }
            }
            s if s.is_server_error() => Attempt::Unknown(format!("{s}: {message}")),
            s => Attempt::Final(ApiError::Rejected { status: s.as_u16(), code, message }),
        })
    }

    /// A request that is safe to repeat (reads, idempotent updates): retried on every
    /// transient failure, with no wait after the last attempt.
    async fn idempotent<'a, B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        at: impl Into<At<'a>>,
        body: Option<&B>,
    ) -> Result<T, ApiError> {
        let at = at.into();
        let mut last = String::new();
        for attempt in 0..=self.opts.max_retries {
            if attempt > 0 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("stitch_bridge_api_retries_total").increment(1);
            }
            let wait = match self.attempt(&method, at, body).await {
                Ok(b) => return b.json(at),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry { wait, why }) => {
                    last = why;
                    wait.unwrap_or_else(|| self.backoff(attempt))
                }
                Err(Attempt::Unknown(why)) => {
                    last = why;
                    self.backoff(attempt)
                }
            };
            self.check_deadline()?;
            if attempt < self.opts.max_retries {
                self.pause(wait).await?;
            }
        }
        Err(ApiError::Transient(format!("{method} {at}: {last}")))
    }

    /// A write that must not be applied twice: retried only when it certainly did not land;
    /// a lost, unreadable or oversized answer comes back as `Uncertain` for the caller to resolve.
    async fn write_once<B: Serialize + ?Sized, T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: &B,
    ) -> Result<T, ApiError> {
        let mut last = String::new();
        for attempt in 0..=self.opts.max_retries {
            if attempt > 0 {
                self.stats.retries.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("stitch_bridge_api_retries_total").increment(1);
            }
            match self.attempt(&method, path.into(), Some(body)).await {
                Ok(b) => return b.json(path).map_err(|e| self.lost(e)),
                Err(Attempt::Final(e @ ApiError::TooLarge { .. })) => return Err(self.lost(e)),
                Err(Attempt::Final(e)) => return Err(e),
                Err(Attempt::Retry { wait, why }) => {
                    last = why;
                    self.check_deadline()?;
                    if attempt < self.opts.max_retries {
                        self.pause(wait.unwrap_or_else(|| self.backoff(attempt))).await?;
                    }
                }
                Err(Attempt::Unknown(why)) => {
                    self.stats.uncertain_writes.fetch_add(1, Ordering::Relaxed);
                    return Err(ApiError::Uncertain(format!("{method} {path}: {why}")));
                }
            }
        }
        Err(ApiError::Transient(format!("{method} {path}: {last}")))
    }

    /// An answer to a write that cannot be used (unreadable, too large, not matching what was
    /// sent) says nothing about whether the write landed.
    fn lost(&self, e: ApiError) -> ApiError {
        match e {
            ApiError::Protocol(why) => {
                self.stats.uncertain_writes.fetch_add(1, Ordering::Relaxed);
                ApiError::Uncertain(why)
            }
            e @ ApiError::TooLarge { .. } => {
                self.stats.uncertain_writes.fetch_add(1, Ordering::Relaxed);
                ApiError::Uncertain(e.to_string())
            }
            other => other,
        }
    }

    /// Send a non-idempotent write; when its answer is lost, ask `check` whether it landed
    /// (returning what it found) before sending again. Gives up as `Unconfirmed`.
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
                    self.pause(self.backoff(attempt)).await?;
                    if let Some(found) = check().await? {
                        return Ok(found);
                    }
                }
                other => return other,
            }
        }
        Err(ApiError::Unconfirmed(last))
    }

    // ---- typed endpoints -----------------------------------------------------------------------

    /// Every page of an Integrations list: the first page tells the total, the rest are
    /// fetched lazily, at most `concurrency` at a time, in order. A page count past
    /// [`MAX_LIST_PAGES`] is refused before any further request.
    async fn all_pages<P: DeserializeOwned, T>(
        &self,
        base: &str,
        split: impl Fn(P) -> (Vec<T>, wire::PageMeta),
    ) -> Result<Vec<T>, ApiError> {
        let page_size = Some(wire::INTEGRATIONS_MAX_PAGE_SIZE);
        // Page numbers are bounded by `MAX_LIST_PAGES`, far below `u32::MAX`.
        let at = |page: u64| {
            let page = Some(u32::try_from(page).unwrap_or(u32::MAX));
            At { path: base, query: Some(Query::Page(wire::PageQuery { page, page_size })) }
        };
        let (mut out, meta) = split(self.idempotent::<(), P>(Method::GET, at(1), None).await?);
        let pages = page_count(&meta).map_err(|why| ApiError::Protocol(format!("GET {base}: {why}")))?;
        let mut rest = futures::stream::iter(2..=pages)
            .map(|n| async move { self.idempotent::<(), P>(Method::GET, at(n), None).await })
            .buffered(self.opts.concurrency.max(1));
        while let Some(p) = rest.next().await {
            out.extend(split(p?).0);
        }
        Ok(out)
    }

    pub async fn list_products(&self) -> Result<Vec<wire::Product>, ApiError> {
        self.all_pages(wire::PRODUCTS, |p: wire::ProductsPage| (p.products, p.meta)).await
    }

    /// Upsert by SKU with absolute stock: repeating it sets the same values, so it is retried
    /// like a read. An answer that does not account for every SKU with the stock sent is not
    /// taken: the product list is read back, and only stock seen there confirms the write.
    pub async fn upsert_products(
        &self,
        products: &[wire::ProductUpsert],
    ) -> Result<Vec<wire::ProductUpsertResult>, ApiError> {
        let req = wire::ProductsUpsertRequest { products: products.to_vec() };
        self.write_resolved(
            async || {
                let r: wire::ProductsUpsertResponse =
                    self.idempotent(Method::POST, wire::PRODUCTS, Some(&req)).await.map_err(|e| self.lost(e))?;
                match upsert_mismatch(products, &r.products) {
                    None => Ok(r.products),
                    Some(why) => Err(self.lost(ApiError::Protocol(format!(
                        "POST {}: the answer does not match the request: {why}",
                        wire::PRODUCTS
                    )))),
                }
            },
            async || Ok(upsert_read_back(products, &self.list_products().await?)),
        )
        .await
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

    /// Setting the same status twice is harmless, so this is retried like a read. The answer
    /// must show this fulfillment with this status; otherwise the fulfillment is read back.
    pub async fn set_status(&self, fulfillment_id: &str, status: &str) -> Result<(), ApiError> {
        let body = wire::FulfillmentStatusUpdate { status: status.to_string() };
        let path = wire::fulfillment(&enc(fulfillment_id));
        self.write_resolved(
            async || {
                let r: wire::FulfillmentEnvelope =
                    self.idempotent(Method::PUT, &path, Some(&body)).await.map_err(|e| self.lost(e))?;
                match status_mismatch(fulfillment_id, status, &r.fulfillment) {
                    None => Ok(()),
                    Some(why) => Err(self
                        .lost(ApiError::Protocol(format!("PUT {path}: the answer does not match the request: {why}")))),
                }
            },
            async || Ok(self.get_fulfillment(fulfillment_id).await?.filter(|f| f.status == status).map(|_| ())),
        )
        .await
    }

    pub async fn shipments_for(&self, fulfillment_id: &str) -> Result<Vec<wire::Shipment>, ApiError> {
        let q = wire::ShipmentsQuery { fulfillment_id: fulfillment_id.to_string() };
        let at = At { path: wire::SHIPMENTS, query: Some(Query::Shipments(&q)) };
        let r: wire::ShipmentsResponse = self.idempotent::<(), _>(Method::GET, at, None).await?;
        Ok(r.shipments)
    }

    /// Post several shipments in one request. Stitch validates them whole; a lost answer is
    /// resolved by looking for every tracking number (all present: landed).
    pub async fn post_shipments(&self, list: &[wire::NewShipment]) -> Result<Vec<wire::Shipment>, ApiError> {
        let req = wire::ShipmentsRequest { shipments: list.to_vec() };
        self.write_resolved(
            async || {
                let r: wire::ShipmentsResponse = self.write_once(Method::POST, wire::SHIPMENTS, &req).await?;
                match shipments_mismatch(list, &r.shipments) {
                    None => Ok(r.shipments),
                    Some(why) => Err(self.lost(ApiError::Protocol(format!(
                        "POST {}: the answer does not match the request: {why}",
                        wire::SHIPMENTS
                    )))),
                }
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

    pub async fn find_shipment(
        &self,
        fulfillment_id: &str,
        tracking: &str,
    ) -> Result<Option<wire::Shipment>, ApiError> {
        Ok(self.shipments_for(fulfillment_id).await?.into_iter().find(|x| x.tracking_number == tracking))
    }

    /// The sales order with this `po_num`, with its lines and shipping address.
    pub async fn find_order(&self, po_num: &str) -> Result<Option<OrderView>, ApiError> {
        let req = wire::SalesOrdersReadRequest::filtered("po_num", po_num, 50, 1);
        let r: wire::SalesOrdersReadResponse =
            self.idempotent(Method::POST, wire::SALES_ORDERS_READ, Some(&req)).await?;
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
                let r: wire::SalesOrdersWriteResponse =
                    self.write_once(Method::POST, wire::SALES_ORDERS_WRITE, &req).await?;
                OrderView::pick(r.sales_orders, &r.line_items, &r.addresses, po_num)
                    .ok_or_else(|| self.lost(ApiError::Protocol("write answer did not echo the order".into())))
            },
            async || Ok(self.find_order(po_num).await?.filter(|o| landed(o))),
        )
        .await
    }

    /// Cheap authenticated read used by `test`: proves token and integration access.
    pub async fn probe(&self) -> Result<(), ApiError> {
        let one = wire::PageQuery { page: Some(1), page_size: Some(1) };
        let _: wire::ProductsPage = self
            .idempotent::<(), _>(Method::GET, At { path: wire::PRODUCTS, query: Some(Query::Page(one)) }, None)
            .await?;
        Ok(())
    }
}

pub use super::wire::OrderView;

impl OrderView {
    fn pick(
        orders: Vec<wire::SalesOrder>,
        lines: &std::collections::BTreeMap<String, wire::SalesOrderLineItem>,
        addrs: &std::collections::BTreeMap<String, wire::Address>,
        po_num: &str,
    ) -> Option<OrderView> {
        let order = orders.into_iter().find(|o| o.po_num == po_num)?;
        let lines = order.links.line_items.iter().filter_map(|l| lines.get(&l.id).cloned()).collect();
        let shipping =
            order.links.addresses.iter().find(|a| a.kind == "shipping").and_then(|a| addrs.get(&a.id).cloned());
        Some(OrderView { order, lines, shipping })
    }
}

mod bytes_or_json {
    use super::ApiError;
    pub struct Body(pub Vec<u8>);
    impl Body {
        pub fn json<T: serde::de::DeserializeOwned>(self, at: impl std::fmt::Display) -> Result<T, ApiError> {
            serde_json::from_slice(&self.0).map_err(|e| {
                let snippet: String = String::from_utf8_lossy(&self.0).chars().take(200).collect();
                ApiError::Protocol(format!("{at}: {e}; body starts {snippet:?}"))
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

/// Reads a body up to `cap` bytes, chunk by chunk, so memory never exceeds the cap. `true`
/// when the body was longer: the rest is never read (dropping the response closes the
/// connection). Unless `partial` (error texts), a declared length past the cap reads nothing.
async fn read_body(resp: &mut reqwest::Response, cap: u64, partial: bool) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let declared = resp.content_length();
    if !partial && declared.is_some_and(|n| n > cap) {
        return Ok((Vec::new(), true));
    }
    let mut buf = Vec::with_capacity(declared.unwrap_or(0).min(cap) as usize);
    while let Some(chunk) = resp.chunk().await? {
        let room = cap.saturating_sub(buf.len() as u64) as usize;
        if chunk.len() > room {
            buf.extend_from_slice(&chunk[..room]);
            return Ok((buf, true));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok((buf, false))
}

/// `Retry-After` in whole seconds, capped; anything else (an HTTP date, garbage) is ignored and
/// the normal backoff applies.
fn retry_wait(header: Option<&str>, cap: Duration) -> Option<Duration> {
    header.and_then(|s| s.trim().parse::<u64>().ok()).map(|s| Duration::from_secs(s).min(cap))
}

/// A list whose page count is not believable.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[error("Stitch reports {total} items, {pages} pages of {page_size}; more than the {MAX_LIST_PAGES} pages this bridge reads, so the list is refused")]
struct TooManyPages {
    total: u64,
    pages: u64,
    page_size: u32,
}

/// Pages of a list, or why the count is not believable.
fn page_count(meta: &wire::PageMeta) -> Result<u64, TooManyPages> {
    let pages = meta.total.div_ceil(u64::from(meta.page_size.max(1)));
    if pages > MAX_LIST_PAGES {
        return Err(TooManyPages { total: meta.total, pages, page_size: meta.page_size });
    }
    Ok(pages)
}

/// The first SKU an upsert answer does not account for with the stock that was sent.
fn upsert_mismatch(sent: &[wire::ProductUpsert], answer: &[wire::ProductUpsertResult]) -> Option<String> {
    let got: std::collections::HashMap<&str, i64> = answer.iter().map(|a| (a.sku.as_str(), a.stock)).collect();
    sent.iter().find_map(|p| match got.get(p.sku.as_str()) {
        None => Some(format!("SKU {:?} is missing from the answer", p.sku)),
        Some(&s) if s != p.stock => Some(format!("SKU {:?} has stock {s} in the answer, {} was sent", p.sku, p.stock)),
        Some(_) => None,
    })
}

/// The upsert's results as the product list shows them, when every SKU sent is listed with the
/// stock sent; `None` otherwise. `created` is unknown from a list and left false (the caller's
/// plan knows which SKUs were new).
fn upsert_read_back(sent: &[wire::ProductUpsert], listed: &[wire::Product]) -> Option<Vec<wire::ProductUpsertResult>> {
    let by_sku: std::collections::HashMap<&str, &wire::Product> = listed.iter().map(|p| (p.sku.as_str(), p)).collect();
    sent.iter()
        .map(|u| {
            let p = by_sku.get(u.sku.as_str()).filter(|p| p.stock == u.stock)?;
            Some(wire::ProductUpsertResult { sku: p.sku.clone(), id: p.id.clone(), created: false, stock: p.stock })
        })
        .collect()
}

fn sorted_lines(l: &[wire::ShipmentLineItem]) -> Vec<(&str, u32)> {
    let mut v: Vec<(&str, u32)> = l.iter().map(|x| (x.line_item_id.as_str(), x.quantity)).collect();
    v.sort_unstable();
    v
}

/// The first shipment sent that the answer does not show, by fulfillment, tracking number and
/// line items.
fn shipments_mismatch(sent: &[wire::NewShipment], answer: &[wire::Shipment]) -> Option<String> {
    sent.iter().find_map(|s| {
        match answer.iter().find(|a| a.fulfillment_id == s.fulfillment_id && a.tracking_number == s.tracking_number) {
            None => Some(format!(
                "shipment {} on fulfillment {} is missing from the answer",
                s.tracking_number, s.fulfillment_id
            )),
            Some(a) if sorted_lines(&a.line_items) != sorted_lines(&s.line_items) => Some(format!(
                "shipment {} on fulfillment {} has other line items in the answer",
                s.tracking_number, s.fulfillment_id
            )),
            Some(_) => None,
        }
    })
}

fn status_mismatch(fulfillment_id: &str, status: &str, answer: &wire::Fulfillment) -> Option<String> {
    if answer.id != fulfillment_id {
        Some(format!("the answer is about fulfillment {:?}, not {fulfillment_id:?}", answer.id))
    } else if answer.status != status {
        Some(format!("the answer shows status {:?}, {status:?} was sent", answer.status))
    } else {
        None
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
/// warehouse file cannot change the path. `.` is encoded too: a `..` segment would climb.
fn enc(id: &str) -> String {
    use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};
    const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'~');
    utf8_percent_encode(id, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_cannot_escape_their_path_segment() {
        assert_eq!(enc("F-12"), "F-12");
        assert_eq!(enc("../x?y"), "%2E%2E%2Fx%3Fy");
        assert_eq!(enc("é #"), "%C3%A9%20%23");
    }

    #[test]
    fn opaque_error_bodies_are_kept_short() {
        let (code, msg) = error_text(&vec![b'x'; 5000]);
        assert!(code.is_empty());
        assert_eq!(msg.len(), 300);
        let (code, msg) = error_text(br#"{"error":{"code":"over_shipment","message":"too many"}}"#);
        assert_eq!((code.as_str(), msg.as_str()), ("over_shipment", "too many"));
    }

    fn up(sku: &str, stock: i64) -> wire::ProductUpsert {
        wire::ProductUpsert { sku: sku.into(), name: None, barcode: None, stock }
    }
    fn res(sku: &str, stock: i64) -> wire::ProductUpsertResult {
        wire::ProductUpsertResult { sku: sku.into(), id: format!("id-{sku}"), created: false, stock }
    }

    #[test]
    fn an_upsert_answer_must_account_for_every_sku_with_its_stock() {
        let sent = [up("A", 1), up("B", 2)];
        assert_eq!(upsert_mismatch(&sent, &[res("B", 2), res("A", 1)]), None);
        assert!(upsert_mismatch(&sent, &[res("A", 1)]).unwrap().contains("\"B\" is missing"));
        assert!(upsert_mismatch(&sent, &[res("A", 1), res("B", 3)]).unwrap().contains("stock 3"));
        // Extra SKUs do not stand in for missing ones.
        assert!(upsert_mismatch(&sent, &[res("A", 1), res("C", 2)]).is_some());
    }

    #[test]
    fn read_back_confirms_only_the_stock_that_was_sent() {
        let p = |sku: &str, stock| wire::Product {
            id: format!("id-{sku}"),
            sku: sku.into(),
            name: None,
            barcode: None,
            stock,
        };
        let sent = [up("A", 1), up("B", 2)];
        let ok = upsert_read_back(&sent, &[p("A", 1), p("B", 2), p("C", 9)]).unwrap();
        assert_eq!(
            ok.iter().map(|r| (r.sku.as_str(), r.id.as_str())).collect::<Vec<_>>(),
            [("A", "id-A"), ("B", "id-B")]
        );
        assert_eq!(upsert_read_back(&sent, &[p("A", 1), p("B", 3)]), None);
        assert_eq!(upsert_read_back(&sent, &[p("A", 1)]), None);
    }

    #[test]
    fn a_shipment_answer_must_show_each_shipment_with_its_lines() {
        use chrono::TimeZone;
        let at = chrono::FixedOffset::east_opt(0).unwrap().with_ymd_and_hms(2024, 3, 16, 10, 0, 0).unwrap();
        let li = |id: &str, q| wire::ShipmentLineItem { line_item_id: id.into(), quantity: q };
        let new = |t: &str, l: Vec<wire::ShipmentLineItem>| wire::NewShipment {
            fulfillment_id: "F1".into(),
            shipped_at: at,
            carrier: "UPS".into(),
            service: None,
            tracking_number: t.into(),
            cost: None,
            line_items: l,
        };
        let got = |n: &wire::NewShipment| wire::Shipment {
            id: "S".into(),
            fulfillment_id: n.fulfillment_id.clone(),
            shipped_at: at,
            carrier: n.carrier.clone(),
            service: None,
            tracking_number: n.tracking_number.clone(),
            cost: None,
            line_items: n.line_items.clone(),
            created_at: chrono::Utc::now(),
        };
        let sent = [new("T1", vec![li("a", 1), li("b", 2)]), new("T2", vec![li("a", 1)])];
        let mut answer: Vec<_> = sent.iter().map(got).collect();
        answer[0].line_items.reverse();
        assert_eq!(shipments_mismatch(&sent, &answer), None, "line order does not matter");
        assert!(shipments_mismatch(&sent, &answer[..1]).unwrap().contains("T2"));
        answer[1].line_items[0].quantity = 5;
        assert!(shipments_mismatch(&sent, &answer).unwrap().contains("other line items"));
    }

    #[test]
    fn a_status_answer_must_be_about_this_fulfillment_with_this_status() {
        let f: wire::Fulfillment = serde_json::from_value(serde_json::json!({
            "id": "F1", "order_number": "1053", "order_id": "5", "status": "Shipped", "shipping_speed": "Standard",
            "created_at": "2024-03-15T10:00:00Z", "ship_to": {}, "state": "open"
        }))
        .unwrap();
        assert_eq!(status_mismatch("F1", "Shipped", &f), None);
        assert!(status_mismatch("F2", "Shipped", &f).unwrap().contains("\"F1\""));
        assert!(status_mismatch("F1", "Partially shipped", &f).unwrap().contains("\"Shipped\""));
    }

    #[test]
    fn retry_after_is_capped_and_only_seconds_are_understood() {
        let cap = Duration::from_secs(120);
        assert_eq!(retry_wait(Some("3600"), cap), Some(cap));
        assert_eq!(retry_wait(Some(" 2 "), cap), Some(Duration::from_secs(2)));
        assert_eq!(retry_wait(Some("Wed, 21 Oct 2015 07:28:00 GMT"), cap), None);
        assert_eq!(retry_wait(None, cap), None);
    }

    #[test]
    fn page_counts_are_bounded() {
        let m = |total, page_size| wire::PageMeta { page: 1, page_size, total };
        assert_eq!(page_count(&m(0, 500)), Ok(0));
        assert_eq!(page_count(&m(1001, 500)), Ok(3));
        assert_eq!(page_count(&m(MAX_LIST_PAGES * 500, 500)), Ok(MAX_LIST_PAGES));
        let err = page_count(&m(1_000_000_000_000, 500)).unwrap_err();
        assert_eq!(err.pages, 2_000_000_000);
        assert!(err.to_string().contains("2000000000 pages") && err.to_string().contains("refused"), "{err}");
        assert!(page_count(&m(20_000, 0)).is_err(), "a zero page size cannot make a page per item");
    }

    #[test]
    fn a_token_no_header_can_carry_is_refused_before_any_request() {
        for bad in ["abc\ndef", "abc\u{1}", "tok\r\nX-Evil: 1"] {
            assert!(
                matches!(StitchClient::new(ClientOptions::new("http://127.0.0.1:9"), bad), Err(ApiError::InvalidToken)),
                "{bad:?}"
            );
        }
        assert!(StitchClient::new(ClientOptions::new("http://127.0.0.1:9"), "good-token_123").is_ok());
    }
}
