//! Every path, header and JSON shape of the Stitch Labs API as stitch-bridge speaks it.
//!
//! This is the one place where the project's API contract (`stitch-api.md`) lives in code,
//! shared by the HTTP client and the simulator, so a corrected reading is a one-file change.
//! Plain serde only: no HTTP code here.
//!
//! Provenance tags on each item: **[doc]** stated by Stitch/CartRover, **[seen]** seen in public
//! client code that talked to the live API, **[ours]** our reading where nothing public says more.
//!
//! Two conventions coexist on purpose, because the live API had both:
//! - the Standard API (sales orders) sends **every scalar as a string** and side-loads related
//!   resources keyed by id [seen];
//! - the Integrations API (products, fulfillments, shipments) uses native JSON types [ours].
//!
//! Identifiers are opaque strings everywhere [ours]: the Standard API sends them as strings and a
//! fulfillment's `order_id` refers to a sales order id, so one representation avoids conversions.

use std::collections::BTreeMap;

use chrono::{DateTime, FixedOffset, Utc};
use serde::{Deserialize, Serialize};

// ---------------------------------------------------------------------------------------------
// Transport
// ---------------------------------------------------------------------------------------------

/// Production base URL [seen]; configurable because the simulator serves the same paths.
pub const DEFAULT_BASE_URL: &str = "https://api-pub.stitchlabs.com";

/// Auth header carrying the token: not `Authorization: Bearer` [seen].
pub const ACCESS_TOKEN_HEADER: &str = "access_token";

/// Content type the live API expected on every request [seen].
pub const CONTENT_TYPE_JSON: &str = "application/json;charset=UTF-8";

/// Header on 429 answers giving the wait in whole seconds [ours: the simulator sends it].
pub const RETRY_AFTER_HEADER: &str = "retry-after";

// ---------------------------------------------------------------------------------------------
// Paths
// ---------------------------------------------------------------------------------------------

/// OAuth browser step [seen]: `?response_type=code&client_id&redirect_uri&state`.
pub const AUTHORIZE: &str = "/authorize";
/// OAuth code exchange, form-encoded [seen]. Each success creates a new channel + warehouse [doc].
pub const OAUTH_TOKEN: &str = "/oauth/token";

/// Standard API read of sales orders (`action: "read"`) [seen].
pub const SALES_ORDERS_READ: &str = "/api2/v2/SalesOrders";
/// Standard API write of sales orders (`action: "write"`) [seen].
pub const SALES_ORDERS_WRITE: &str = "/api2/v1/SalesOrders";

/// Prefix of every Integrations API endpoint [ours].
pub const INTEGRATIONS_PREFIX: &str = "/api2/v1/integrations";
/// `POST` upsert / `GET` list of products [ours].
pub const PRODUCTS: &str = "/api2/v1/integrations/products";
/// `GET` open fulfillments (acknowledges them) [ours path, doc semantics].
pub const FULFILLMENTS: &str = "/api2/v1/integrations/fulfillments";
/// `POST` shipments / `GET ?fulfillment_id=` recorded shipments [ours].
pub const SHIPMENTS: &str = "/api2/v1/integrations/shipments";

/// `GET` one fulfillment (with `state`) / `PUT` its status string [ours].
pub fn fulfillment(id: &str) -> String {
    format!("{FULFILLMENTS}/{id}")
}

/// `GET` a fulfillment's line items, bundles already split into components [ours path, doc semantics].
pub fn fulfillment_line_items(id: &str) -> String {
    format!("{FULFILLMENTS}/{id}/line_items")
}

/// `GET` shipments already recorded on a fulfillment; used to learn whether a POST whose answer
/// was lost did land [ours]. The client sends [`ShipmentsQuery`] through reqwest's encoder; this
/// text form, with `id` unescaped, is for tests that speak to the simulator directly.
pub fn shipments_for(fulfillment_id: &str) -> String {
    format!("{SHIPMENTS}?fulfillment_id={fulfillment_id}")
}

/// Most products accepted by one `POST /products` [ours]; above it the request is refused whole.
pub const MAX_PRODUCTS_PER_REQUEST: usize = 500;
/// Standard API page size when `page_size` is absent [seen].
pub const STANDARD_DEFAULT_PAGE_SIZE: u32 = 15;
/// Integrations API page size when `page_size` is absent [ours].
pub const INTEGRATIONS_DEFAULT_PAGE_SIZE: u32 = 50;
/// Integrations API upper bound on `page_size`; larger values are clamped [ours].
pub const INTEGRATIONS_MAX_PAGE_SIZE: u32 = 500;

// ---------------------------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------------------------

/// Error body on every non-2xx answer from the simulator [ours]. The live API's bodies are
/// unknown, so clients must treat any other body as opaque text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// Stable machine-readable code, see [`codes`].
    pub code: String,
    /// Human-readable reason (e.g. which line item would be over-shipped).
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        ErrorBody { error: ErrorDetail { code: code.into(), message: message.into() } }
    }
}

/// Error codes in [`ErrorBody`] [ours]. Clients branch on these, so they are stable.
pub mod codes {
    /// 401: missing, wrong or revoked `access_token`.
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 403: Multi-warehousing and Third-Party Stock Control not enabled on the account [doc].
    pub const INTEGRATIONS_DISABLED: &str = "integrations_disabled";
    /// 400: body or query not understood.
    pub const BAD_REQUEST: &str = "bad_request";
    /// 404: no such resource.
    pub const NOT_FOUND: &str = "not_found";
    /// 422: more than [`super::MAX_PRODUCTS_PER_REQUEST`] products in one request.
    pub const TOO_MANY_PRODUCTS: &str = "too_many_products";
    /// 422: a field value is invalid (negative stock, unknown SKU on an order line, ...).
    pub const INVALID: &str = "invalid";
    /// 422: update of a sales order whose fulfillment the warehouse has acknowledged.
    pub const ORDER_LOCKED: &str = "order_locked";
    /// 422: void refused because something of the order has shipped.
    pub const ALREADY_SHIPPED: &str = "already_shipped";
    /// 422: shipment against a fulfillment that is complete or cancelled.
    pub const FULFILLMENT_NOT_OPEN: &str = "fulfillment_not_open";
    /// 422: shipment names a fulfillment that does not exist.
    pub const UNKNOWN_FULFILLMENT: &str = "unknown_fulfillment";
    /// 422: shipment names a line item not on that fulfillment.
    pub const UNKNOWN_LINE_ITEM: &str = "unknown_line_item";
    /// 422: shipment would ship more than a line item's remaining quantity.
    pub const OVER_SHIPMENT: &str = "over_shipment";
    /// 422: the same tracking number is already recorded on that fulfillment (a retried POST).
    pub const DUPLICATE_SHIPMENT: &str = "duplicate_shipment";
    /// 429: rate limited; see `Retry-After`.
    pub const RATE_LIMITED: &str = "rate_limited";
    /// 500/502/504 injected or real server-side failures.
    pub const SERVER_ERROR: &str = "server_error";
    pub const BAD_GATEWAY: &str = "bad_gateway";
    pub const GATEWAY_TIMEOUT: &str = "gateway_timeout";
    /// 400 on `/oauth/token`: unknown or already used code.
    pub const INVALID_GRANT: &str = "invalid_grant";
}

/// Message sent with 403 when integration features are off: it is what an operator must fix [doc].
pub const INTEGRATIONS_DISABLED_MESSAGE: &str = "the Integrations API requires the Multi-warehousing \
and Third-Party Stock Control options to be enabled on the Stitch account";

// ---------------------------------------------------------------------------------------------
// OAuth [seen]
// ---------------------------------------------------------------------------------------------

/// Query of `GET /authorize` [seen].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthorizeQuery {
    pub response_type: String,
    pub client_id: String,
    pub redirect_uri: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// Form body of `POST /oauth/token` [seen]; `grant_type` is `authorization_code`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRequest {
    pub grant_type: String,
    pub code: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
}

/// Answer of `POST /oauth/token` [seen: `access_token`; ours: `token_type`]. No refresh token is
/// known: tokens are long-lived [seen].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenResponse {
    pub access_token: String,
    #[serde(default)]
    pub token_type: String,
}

// ---------------------------------------------------------------------------------------------
// Integrations API: pagination [ours]
// ---------------------------------------------------------------------------------------------

/// Query `?page=N&page_size=M` of Integrations list endpoints; `page` is 1-based [ours]. The
/// client serialises it, the simulator deserialises it: the names live here only.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
}

/// `meta` of Integrations list answers [ours]: native numbers, unlike the Standard API.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageMeta {
    pub page: u32,
    pub page_size: u32,
    pub total: u64,
}

impl PageMeta {
    /// Whether a later page exists; lets a client loop without guessing.
    pub fn has_more(&self) -> bool {
        (self.page as u64) * (self.page_size as u64) < self.total
    }
}

// ---------------------------------------------------------------------------------------------
// Integrations API: products [ours shapes, doc semantics]
// ---------------------------------------------------------------------------------------------

/// One product in `POST /products`: upsert by SKU; `stock` is the warehouse's on-hand count [doc].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductUpsert {
    pub sku: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub barcode: Option<String>,
    pub stock: i64,
}

/// Body of `POST /products`, at most [`MAX_PRODUCTS_PER_REQUEST`] entries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductsUpsertRequest {
    pub products: Vec<ProductUpsert>,
}

/// One entry of the `POST /products` answer, in request order; `created` is false on update.
/// `stock` echoes the stock now set [ours], so the client can check the answer is about what
/// it sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductUpsertResult {
    pub sku: String,
    pub id: String,
    pub created: bool,
    pub stock: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductsUpsertResponse {
    pub products: Vec<ProductUpsertResult>,
}

/// A product as listed by `GET /products`; `stock` is on-hand in the integration's warehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub sku: String,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub barcode: Option<String>,
    pub stock: i64,
}

/// Answer of `GET /products?page&page_size`, ordered by SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductsPage {
    pub products: Vec<Product>,
    pub meta: PageMeta,
}

// ---------------------------------------------------------------------------------------------
// Integrations API: fulfillments [ours shapes, doc semantics]
// ---------------------------------------------------------------------------------------------

/// Lifecycle of a fulfillment [ours]; lets a client tell a completed one from a cancelled one
/// once it has left the open list (cancellation must reach the warehouse [doc]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FulfillmentState {
    Open,
    Complete,
    Cancelled,
}

pub use crate::model::ShippingSpeed;

/// Destination of a fulfillment [ours]; built from the order's shipping address
/// (`name` = address `contact`, `address1/2` = `street1/2`, `country` = `country_iso`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipTo {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub company: Option<String>,
    #[serde(default)]
    pub address1: Option<String>,
    #[serde(default)]
    pub address2: Option<String>,
    #[serde(default)]
    pub city: Option<String>,
    #[serde(default)]
    pub state: Option<String>,
    #[serde(default)]
    pub zip: Option<String>,
    #[serde(default)]
    pub country: Option<String>,
    #[serde(default)]
    pub phone: Option<String>,
    #[serde(default)]
    pub email: Option<String>,
}

/// A fulfillment as listed by `GET /fulfillments` and returned by `GET|PUT /fulfillments/{id}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fulfillment {
    pub id: String,
    /// The sales order's `po_num`: the channel's order reference the warehouse knows [ours].
    pub order_number: String,
    /// The sales order's Standard API `id` [ours].
    pub order_id: String,
    /// Free status string last set with `PUT /fulfillments/{id}`; empty until then [doc].
    #[serde(default)]
    pub status: String,
    pub shipping_speed: ShippingSpeed,
    /// When Stitch released the fulfillment (not the order's date) [doc].
    pub created_at: DateTime<Utc>,
    /// The sales order's own `order_date` (ISO-8601 with offset), carried on the fulfillment so
    /// an order file needs no Standard API read per order [ours]. Absent from older answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_date: Option<String>,
    pub ship_to: ShipTo,
    /// Always `open` in the list [ours].
    pub state: FulfillmentState,
    /// Set when the order was voided and this fulfillment cancelled [ours].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cancelled_at: Option<DateTime<Utc>>,
}

/// Answer of `GET /fulfillments?page&page_size`: open fulfillments, oldest first. Listing
/// acknowledges them, which locks their orders [doc].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentsPage {
    pub fulfillments: Vec<Fulfillment>,
    pub meta: PageMeta,
}

/// Answer of `GET /fulfillments/{id}` and `PUT /fulfillments/{id}` [ours].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentEnvelope {
    pub fulfillment: Fulfillment,
}

/// Body of `PUT /fulfillments/{id}`: any string, shown in Stitch [doc].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentStatusUpdate {
    pub status: String,
}

/// One line of a fulfillment; bundles appear as their components [doc].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentLineItem {
    pub id: String,
    pub sku: String,
    #[serde(default)]
    pub name: Option<String>,
    pub quantity: u32,
    /// Sum over recorded shipments; the line is done when it equals `quantity`.
    pub quantity_shipped: u32,
}

/// Answer of `GET /fulfillments/{id}/line_items`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentLineItems {
    pub line_items: Vec<FulfillmentLineItem>,
}

// ---------------------------------------------------------------------------------------------
// Integrations API: shipments [ours shapes, doc semantics]
// ---------------------------------------------------------------------------------------------

/// Quantity of one fulfillment line item in a shipment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentLineItem {
    pub line_item_id: String,
    pub quantity: u32,
}

/// One shipment in `POST /shipments`. `shipped_at` keeps the warehouse's offset [doc: required].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewShipment {
    pub fulfillment_id: String,
    pub shipped_at: DateTime<FixedOffset>,
    pub carrier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// A tracking number already recorded on the same fulfillment is refused with
    /// [`codes::DUPLICATE_SHIPMENT`], which makes a retried POST harmless [ours].
    pub tracking_number: String,
    /// Shipping cost in the account currency; informational only, so a float suffices [ours].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    pub line_items: Vec<ShipmentLineItem>,
}

/// Body of `POST /shipments`. All shipments are validated before any is applied [ours].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShipmentsRequest {
    pub shipments: Vec<NewShipment>,
}

/// A recorded shipment: the request's fields plus its id and when Stitch recorded it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Shipment {
    pub id: String,
    pub fulfillment_id: String,
    pub shipped_at: DateTime<FixedOffset>,
    pub carrier: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    pub tracking_number: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    pub line_items: Vec<ShipmentLineItem>,
    pub created_at: DateTime<Utc>,
}

/// Answer of `POST /shipments` (in request order) and of `GET /shipments?fulfillment_id=`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShipmentsResponse {
    pub shipments: Vec<Shipment>,
}

/// Query of `GET /shipments` [ours], sent and read as [`PageQuery`] is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShipmentsQuery {
    pub fulfillment_id: String,
}

// ---------------------------------------------------------------------------------------------
// Standard API: sales orders [seen conventions; ours where marked]
// ---------------------------------------------------------------------------------------------

/// `action` of a Standard API request [seen].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    Read,
    Write,
}

/// `filter` of a Standard API read: every listed condition must hold [seen]. Each condition is
/// a one-key object such as `{"local_id":"O1053"}`; the simulator understands `id`, `local_id`
/// and `po_num` [ours].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Filter {
    #[serde(default)]
    pub and: Vec<BTreeMap<String, String>>,
}

/// Body of `POST /api2/v2/SalesOrders` [seen]. Numbers here are native (as in the live client).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesOrdersReadRequest {
    pub action: Action,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_size: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub page_num: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<Filter>,
}

impl SalesOrdersReadRequest {
    /// A read of page `page_num` filtered on one field, e.g. `("po_num", "1053")`.
    pub fn filtered(field: &str, value: &str, page_size: u32, page_num: u32) -> Self {
        let mut cond = BTreeMap::new();
        cond.insert(field.to_string(), value.to_string());
        SalesOrdersReadRequest {
            action: Action::Read,
            page_size: Some(page_size),
            page_num: Some(page_num),
            filter: Some(Filter { and: vec![cond] }),
        }
    }
}

/// `meta` of Standard API reads: all strings [seen]; empty result has `last_page:"0"`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StandardMeta {
    pub current_page: String,
    pub last_page: String,
    pub per_page: String,
    pub total: String,
    pub from: String,
    pub to: String,
}

/// Reference to a side-loaded address [seen]; `type` is `shipping` or `billing`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AddressLink {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
}

/// Reference to a side-loaded resource by id [seen].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdLink {
    pub id: String,
}

/// `links` of a sales order [seen].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesOrderLinks {
    #[serde(rename = "Addresses", default)]
    pub addresses: Vec<AddressLink>,
    #[serde(rename = "SalesOrderLineItems", default)]
    pub line_items: Vec<IdLink>,
}

/// A sales order as read (and as echoed by a write) [seen fields; all scalars strings].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesOrder {
    pub id: String,
    #[serde(default)]
    pub local_id: String,
    /// The channel's order reference; a fulfillment's `order_number` [seen/ours].
    #[serde(default)]
    pub po_num: String,
    /// ISO-8601 with offset [seen].
    #[serde(default)]
    pub order_date: String,
    #[serde(default)]
    pub notes: String,
    #[serde(default)]
    pub total: String,
    #[serde(default)]
    pub currency_iso: String,
    /// `"1"` once cancelled [seen].
    #[serde(default)]
    pub void: String,
    #[serde(default)]
    pub archived: String,
    /// `"1"` once the warehouse acknowledged the fulfillment; updates are then refused with
    /// [`codes::ORDER_LOCKED`] [ours].
    #[serde(default)]
    pub locked: String,
    /// `Standard|Expedited|Priority`, copied onto the fulfillment [ours].
    #[serde(default)]
    pub shipping_speed: String,
    #[serde(default)]
    pub links: SalesOrderLinks,
}

/// A side-loaded sales order line [seen fields; the SKU inlined instead of via Variants, ours].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesOrderLineItem {
    pub id: String,
    pub sku: String,
    pub quantity: String,
    #[serde(default)]
    pub price: String,
}

/// An address [seen fields]. Read answers side-load it with `id` and `type`; a write carries it
/// inline as `shipping_address` without them [ours]. Absent fields are omitted.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Address {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street1: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub street2: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zip: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country_iso: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// Answer of `POST /api2/v2/SalesOrders` [seen]: the page, plus related resources keyed by id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesOrdersReadResponse {
    pub meta: StandardMeta,
    #[serde(rename = "SalesOrders")]
    pub sales_orders: Vec<SalesOrder>,
    #[serde(rename = "SalesOrderLineItems", default)]
    pub line_items: BTreeMap<String, SalesOrderLineItem>,
    #[serde(rename = "Addresses", default)]
    pub addresses: BTreeMap<String, Address>,
}

/// A line written inline with a sales order [ours]; strings like every Standard API scalar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewSalesOrderLineItem {
    pub sku: String,
    pub quantity: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
}

/// A sales order in a write [seen]: no `id` creates, an `id` updates the fields present,
/// `void:"1"` cancels. `line_items` / `shipping_address` present replace the old ones [ours].
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesOrderWrite {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub local_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub po_num: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub order_date: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency_iso: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub void: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub archived: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_speed: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line_items: Option<Vec<NewSalesOrderLineItem>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shipping_address: Option<Address>,
}

/// Body of `POST /api2/v1/SalesOrders` [seen].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesOrdersWriteRequest {
    pub action: Action,
    #[serde(rename = "SalesOrders")]
    pub sales_orders: Vec<SalesOrderWrite>,
}

impl SalesOrdersWriteRequest {
    pub fn new(sales_orders: Vec<SalesOrderWrite>) -> Self {
        SalesOrdersWriteRequest { action: Action::Write, sales_orders }
    }
}

/// Answer of a write: the written orders as they now read, with their ids, in request order,
/// plus side-loads like a read [seen: echo; ours: side-loads]. Writes are all-or-nothing [ours].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SalesOrdersWriteResponse {
    #[serde(rename = "SalesOrders")]
    pub sales_orders: Vec<SalesOrder>,
    #[serde(rename = "SalesOrderLineItems", default)]
    pub line_items: BTreeMap<String, SalesOrderLineItem>,
    #[serde(rename = "Addresses", default)]
    pub addresses: BTreeMap<String, Address>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_are_the_contract_ones() {
        assert_eq!(fulfillment("17"), "/api2/v1/integrations/fulfillments/17");
        assert_eq!(fulfillment_line_items("17"), "/api2/v1/integrations/fulfillments/17/line_items");
        assert_eq!(shipments_for("17"), "/api2/v1/integrations/shipments?fulfillment_id=17");
    }

    #[test]
    fn standard_read_response_parses_string_meta_and_sideloads() {
        let body = json!({
            "meta": {"current_page":"1","last_page":"1","per_page":"15","total":"1","from":"1","to":"1"},
            "SalesOrders": [{"id":"5","local_id":"O1","po_num":"1053","void":"0","locked":"1",
                "links":{"Addresses":[{"id":"9","type":"shipping"}],"SalesOrderLineItems":[{"id":"3"}]}}],
            "SalesOrderLineItems": {"3": {"id":"3","sku":"A","quantity":"2","price":"1.00"}},
            "Addresses": {"9": {"id":"9","type":"shipping","city":"Oslo"}}
        });
        let r: SalesOrdersReadResponse = serde_json::from_value(body).unwrap();
        assert_eq!(r.sales_orders[0].links.addresses[0].kind, "shipping");
        assert_eq!(r.line_items["3"].quantity, "2");
        assert_eq!(r.addresses["9"].city.as_deref(), Some("Oslo"));
    }

    #[test]
    fn write_omits_absent_fields_and_fulfillment_state_is_lowercase() {
        let w = SalesOrdersWriteRequest::new(vec![SalesOrderWrite {
            id: Some("5".into()),
            void: Some("1".into()),
            ..Default::default()
        }]);
        assert_eq!(serde_json::to_value(&w).unwrap(), json!({"action":"write","SalesOrders":[{"id":"5","void":"1"}]}));
        assert_eq!(serde_json::to_value(FulfillmentState::Cancelled).unwrap(), json!("cancelled"));
    }
}

/// A sales order with its side-loaded lines and shipping address resolved: the snapshot the
/// order planner compares a file's order with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderView {
    pub order: SalesOrder,
    pub lines: Vec<SalesOrderLineItem>,
    pub shipping: Option<Address>,
}
