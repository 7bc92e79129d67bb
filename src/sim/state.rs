//! The simulated Stitch account as a pure state machine: no I/O, no clock (callers pass `now`),
//! so every rule is unit-testable without HTTP.
//!
//! Rules (our reading of Stitch's documented semantics):
//! - **Stock** is on-hand per SKU in the integration's warehouse, set only through product upserts
//!   and decremented by shipments. Bundles have no stock of their own.
//! - **Reservation**: an open fulfillment reserves, per SKU, what it has not shipped yet
//!   (`quantity - quantity_shipped`). `available = on_hand - reserved`. Shipping lowers on-hand and
//!   the reservation together, so availability is unchanged by it.
//! - **Release**: an order without a fulfillment that is not void or archived, has lines, and has
//!   a populated shipping address (`street1`, `city`, `country_iso` non-empty) gets a fulfillment
//!   when `available` covers every component SKU of its lines (bundles expanded, same SKUs merged).
//!   Orders are considered oldest first, so an older waiting order is never overtaken by a newer
//!   one for the last units, and two orders can never both take the last unit. Release runs after
//!   every order write, product upsert and seed.
//! - **Lock**: once the warehouse has acknowledged a fulfillment (listed it) or anything of it has
//!   shipped, the order is locked: writes may only `void` or `archive` it. An unacknowledged
//!   fulfillment is withdrawn and re-evaluated when its order changes, since nobody has seen it.
//! - **Void** cancels the order's open fulfillment (`cancelled`, `cancelled_at`); refused once
//!   anything has shipped.
//! - **Writes are all-or-nothing**: a request is applied to a copy that replaces the state only
//!   when every object in it succeeded.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::stitch::wire::{
    self, codes, Address, AddressLink, Fulfillment, FulfillmentLineItem, FulfillmentState, IdLink, NewShipment,
    PageMeta, PageQuery, Product, ProductUpsert, ProductUpsertResult, ProductsPage, SalesOrder, SalesOrderLineItem,
    SalesOrderLinks, SalesOrderWrite, SalesOrdersReadRequest, SalesOrdersReadResponse, SalesOrdersWriteResponse,
    ShipTo, Shipment, ShippingSpeed, StandardMeta,
};

/// A refused request: HTTP status plus the wire error code and reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl SimError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        SimError { status, code, message: message.into() }
    }
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, codes::BAD_REQUEST, message)
    }
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, codes::NOT_FOUND, message)
    }
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(422, code, message)
    }
}

impl std::fmt::Display for SimError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for SimError {}

pub type SimResult<T> = Result<T, SimError>;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProductRec {
    pub id: u64,
    pub sku: String,
    pub name: Option<String>,
    pub barcode: Option<String>,
    /// On-hand in the integration's warehouse.
    pub stock: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleComponent {
    pub sku: String,
    pub quantity: u32,
}

/// A kit: ordering one ships its components [doc: "Split Bundles into Components"].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BundleRec {
    pub sku: String,
    #[serde(default)]
    pub name: Option<String>,
    pub components: Vec<BundleComponent>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderLineRec {
    pub id: u64,
    pub sku: String,
    pub quantity: u32,
    pub price: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrderRec {
    pub id: u64,
    pub local_id: String,
    pub po_num: String,
    pub order_date: String,
    pub notes: String,
    pub total: String,
    pub currency_iso: String,
    pub void: bool,
    pub archived: bool,
    pub shipping_speed: ShippingSpeed,
    pub lines: Vec<OrderLineRec>,
    /// Stored with `id` and `type: "shipping"` set.
    pub shipping_address: Option<Address>,
    pub fulfillment_id: Option<u64>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentLineRec {
    pub id: u64,
    pub sku: String,
    pub name: Option<String>,
    pub quantity: u32,
    pub shipped: u32,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FulfillmentRec {
    pub id: u64,
    pub order_id: u64,
    pub order_number: String,
    pub status: String,
    pub shipping_speed: ShippingSpeed,
    pub created_at: DateTime<Utc>,
    /// The order's `order_date` when the fulfillment was released (empty in older state files).
    #[serde(default)]
    pub order_date: String,
    /// Listed by the warehouse at least once; locks the order.
    pub acknowledged: bool,
    pub state: FulfillmentState,
    pub cancelled_at: Option<DateTime<Utc>>,
    pub ship_to: ShipTo,
    pub lines: Vec<FulfillmentLineRec>,
}

impl FulfillmentRec {
    fn anything_shipped(&self) -> bool {
        self.lines.iter().any(|l| l.shipped > 0)
    }
}

/// A custom channel + warehouse, created by each successful OAuth exchange [doc].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRec {
    pub id: u64,
    pub warehouse_id: u64,
    pub client_id: String,
    pub token: String,
    pub revoked: bool,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingCode {
    pub client_id: String,
    pub redirect_uri: String,
}

/// Seed document (`samples/sim-seed.json`): products, bundles and sales orders in wire shapes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedDoc {
    #[serde(default)]
    pub products: Vec<ProductUpsert>,
    #[serde(default)]
    pub bundles: Vec<BundleRec>,
    #[serde(default)]
    pub sales_orders: Vec<SalesOrderWrite>,
}

/// The whole account; serialised as-is to the state file and `GET /_admin/state`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct SimState {
    /// Last id handed out; one sequence for every kind keeps ids unique across kinds.
    pub next_id: u64,
    /// By SKU.
    pub products: BTreeMap<String, ProductRec>,
    /// By bundle SKU.
    pub bundles: BTreeMap<String, BundleRec>,
    pub orders: BTreeMap<u64, OrderRec>,
    pub fulfillments: BTreeMap<u64, FulfillmentRec>,
    pub shipments: BTreeMap<u64, Shipment>,
    pub channels: Vec<ChannelRec>,
    /// OAuth codes handed out by `/authorize` and not yet exchanged.
    pub pending_codes: BTreeMap<String, PendingCode>,
}

/// Resolved page window for 1-based pagination.
struct Window {
    page: u32,
    size: u32,
    start: usize,
    end: usize,
}

fn window(total: usize, page: u32, size: u32) -> Window {
    let start = ((page as u64 - 1) * size as u64).min(total as u64) as usize;
    let end = (start + size as usize).min(total);
    Window { page, size, start, end }
}

/// Validates an Integrations `?page&page_size` query: 1-based, size clamped to the maximum.
pub fn integrations_page(q: &PageQuery) -> SimResult<(u32, u32)> {
    let page = q.page.unwrap_or(1);
    let size = q.page_size.unwrap_or(wire::INTEGRATIONS_DEFAULT_PAGE_SIZE);
    if page == 0 {
        return Err(SimError::bad_request("page is 1-based"));
    }
    if size == 0 {
        return Err(SimError::bad_request("page_size must be at least 1"));
    }
    Ok((page, size.min(wire::INTEGRATIONS_MAX_PAGE_SIZE)))
}

fn parse_flag(field: &str, v: &str) -> SimResult<bool> {
    match v.trim() {
        "1" | "true" => Ok(true),
        "0" | "false" | "" => Ok(false),
        other => Err(SimError::unprocessable(codes::INVALID, format!("{field} must be \"0\" or \"1\", got {other:?}"))),
    }
}

fn parse_id(kind: &str, id: &str) -> SimResult<u64> {
    id.trim().parse::<u64>().map_err(|_| SimError::not_found(format!("no {kind} with id {id:?}")))
}

fn non_empty(s: &Option<String>) -> bool {
    s.as_deref().is_some_and(|v| !v.trim().is_empty())
}

fn address_populated(a: &Option<Address>) -> bool {
    a.as_ref().is_some_and(|a| non_empty(&a.street1) && non_empty(&a.city) && non_empty(&a.country_iso))
}

fn ship_to(a: &Address) -> ShipTo {
    ShipTo {
        name: a.contact.clone(),
        company: a.company.clone(),
        address1: a.street1.clone(),
        address2: a.street2.clone(),
        city: a.city.clone(),
        state: a.state.clone(),
        zip: a.zip.clone(),
        country: a.country_iso.clone(),
        phone: a.phone.clone(),
        email: a.email.clone(),
    }
}

fn flag(b: bool) -> String {
    if b { "1" } else { "0" }.to_string()
}

impl SimState {
    fn alloc_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Replaces `self` with the result of `f` on a copy, only if `f` succeeded.
    fn atomically<T>(&mut self, f: impl FnOnce(&mut SimState) -> SimResult<T>) -> SimResult<T> {
        let mut next = self.clone();
        let out = f(&mut next)?;
        *self = next;
        Ok(out)
    }

    // ----- products --------------------------------------------------------------------------

    /// `POST /products`: upsert by SKU, then release whatever the new stock allows.
    pub fn upsert_products(
        &mut self,
        products: &[ProductUpsert],
        now: DateTime<Utc>,
    ) -> SimResult<Vec<ProductUpsertResult>> {
        if products.len() > wire::MAX_PRODUCTS_PER_REQUEST {
            return Err(SimError::unprocessable(
                codes::TOO_MANY_PRODUCTS,
                format!(
                    "{} products in one request; at most {} are accepted",
                    products.len(),
                    wire::MAX_PRODUCTS_PER_REQUEST
                ),
            ));
        }
        for (i, p) in products.iter().enumerate() {
            if p.sku.trim().is_empty() {
                return Err(SimError::unprocessable(codes::INVALID, format!("products[{i}]: empty sku")));
            }
            if p.stock < 0 {
                return Err(SimError::unprocessable(
                    codes::INVALID,
                    format!("products[{i}] {}: stock {} is negative", p.sku, p.stock),
                ));
            }
        }
        let mut out = Vec::with_capacity(products.len());
        for p in products {
            let created = !self.products.contains_key(&p.sku);
            let id = if created { self.alloc_id() } else { self.products[&p.sku].id };
            let rec = self.products.entry(p.sku.clone()).or_insert_with(|| ProductRec {
                id,
                sku: p.sku.clone(),
                name: None,
                barcode: None,
                stock: 0,
            });
            if p.name.is_some() {
                rec.name = p.name.clone();
            }
            if p.barcode.is_some() {
                rec.barcode = p.barcode.clone();
            }
            rec.stock = p.stock;
            out.push(ProductUpsertResult { sku: p.sku.clone(), id: id.to_string(), created, stock: p.stock });
        }
        self.release_pending(now);
        Ok(out)
    }

    /// `GET /products`, ordered by SKU.
    pub fn list_products(&self, page: u32, size: u32) -> ProductsPage {
        let w = window(self.products.len(), page, size);
        let products = self
            .products
            .values()
            .skip(w.start)
            .take(w.end - w.start)
            .map(|p| Product {
                id: p.id.to_string(),
                sku: p.sku.clone(),
                name: p.name.clone(),
                barcode: p.barcode.clone(),
                stock: p.stock,
            })
            .collect();
        ProductsPage { products, meta: PageMeta { page: w.page, page_size: w.size, total: self.products.len() as u64 } }
    }

    // ----- bundles, seed ---------------------------------------------------------------------

    /// Defines or replaces a bundle; every component must be a known product.
    pub fn define_bundle(&mut self, b: &BundleRec) -> SimResult<()> {
        if b.sku.trim().is_empty() || b.components.is_empty() {
            return Err(SimError::unprocessable(codes::INVALID, "a bundle needs a sku and components"));
        }
        for c in &b.components {
            if !self.products.contains_key(&c.sku) {
                return Err(SimError::unprocessable(
                    codes::INVALID,
                    format!("bundle {}: component {} is not a known product", b.sku, c.sku),
                ));
            }
            if c.quantity == 0 {
                return Err(SimError::unprocessable(
                    codes::INVALID,
                    format!("bundle {}: component {} has quantity 0", b.sku, c.sku),
                ));
            }
        }
        self.bundles.insert(b.sku.clone(), b.clone());
        Ok(())
    }

    /// Applies a seed document (products, then bundles, then orders), all or nothing.
    pub fn apply_seed(&mut self, seed: &SeedDoc, now: DateTime<Utc>) -> SimResult<()> {
        self.atomically(|s| {
            for chunk in seed.products.chunks(wire::MAX_PRODUCTS_PER_REQUEST) {
                s.upsert_products(chunk, now)?;
            }
            for b in &seed.bundles {
                s.define_bundle(b)?;
            }
            if !seed.sales_orders.is_empty() {
                s.write_orders(&seed.sales_orders, now)?;
            }
            Ok(())
        })
    }

    // ----- sales orders ----------------------------------------------------------------------

    fn locked(&self, o: &OrderRec) -> bool {
        o.fulfillment_id.and_then(|f| self.fulfillments.get(&f)).is_some_and(|f| f.acknowledged || f.anything_shipped())
    }

    fn parse_lines(&mut self, lines: &[wire::NewSalesOrderLineItem]) -> SimResult<Vec<OrderLineRec>> {
        let mut out = Vec::with_capacity(lines.len());
        for (i, l) in lines.iter().enumerate() {
            if !self.products.contains_key(&l.sku) && !self.bundles.contains_key(&l.sku) {
                return Err(SimError::unprocessable(
                    codes::INVALID,
                    format!("line_items[{i}]: unknown SKU {:?}", l.sku),
                ));
            }
            let quantity = l.quantity.trim().parse::<u32>().ok().filter(|q| *q > 0).ok_or_else(|| {
                SimError::unprocessable(
                    codes::INVALID,
                    format!("line_items[{i}] {}: quantity {:?} is not a positive integer", l.sku, l.quantity),
                )
            })?;
            let id = self.alloc_id();
            out.push(OrderLineRec { id, sku: l.sku.clone(), quantity, price: l.price.clone().unwrap_or_default() });
        }
        Ok(out)
    }

    fn parse_speed(s: &str) -> SimResult<ShippingSpeed> {
        if s.trim().is_empty() {
            return Ok(ShippingSpeed::Standard);
        }
        ShippingSpeed::parse(s.trim()).ok_or_else(|| {
            SimError::unprocessable(
                codes::INVALID,
                format!("shipping_speed {s:?} is not Standard, Expedited or Priority"),
            )
        })
    }

    fn store_address(&mut self, a: &Address) -> Address {
        let mut a = a.clone();
        a.id = Some(self.alloc_id().to_string());
        a.kind = Some("shipping".into());
        a
    }

    /// `POST /api2/v1/SalesOrders`: creates (no `id`), updates, voids; all or nothing.
    pub fn write_orders(
        &mut self,
        writes: &[SalesOrderWrite],
        now: DateTime<Utc>,
    ) -> SimResult<SalesOrdersWriteResponse> {
        let ids = self.atomically(|s| {
            let mut ids = Vec::with_capacity(writes.len());
            for (i, w) in writes.iter().enumerate() {
                let id = s.write_order(w, now).map_err(|mut e| {
                    e.message = format!("SalesOrders[{i}]: {}", e.message);
                    e
                })?;
                ids.push(id);
            }
            s.release_pending(now);
            Ok(ids)
        })?;
        let mut resp = SalesOrdersWriteResponse {
            sales_orders: Vec::new(),
            line_items: BTreeMap::new(),
            addresses: BTreeMap::new(),
        };
        for id in ids {
            let o = &self.orders[&id];
            resp.sales_orders.push(self.order_to_wire(o, &mut resp.line_items, &mut resp.addresses));
        }
        Ok(resp)
    }

    fn write_order(&mut self, w: &SalesOrderWrite, now: DateTime<Utc>) -> SimResult<u64> {
        let Some(id) = &w.id else {
            return self.create_order(w, now);
        };
        let id = parse_id("sales order", id)?;
        let Some(order) = self.orders.get(&id).cloned() else {
            return Err(SimError::not_found(format!("no sales order with id {id}")));
        };
        let wants_void = match &w.void {
            Some(v) => Some(parse_flag("void", v)?),
            None => None,
        };
        if order.void && wants_void == Some(false) {
            return Err(SimError::unprocessable(codes::INVALID, format!("order {id} is void and cannot be reopened")));
        }
        let changes_content = w.local_id.is_some()
            || w.po_num.is_some()
            || w.order_date.is_some()
            || w.notes.is_some()
            || w.total.is_some()
            || w.currency_iso.is_some()
            || w.shipping_speed.is_some()
            || w.line_items.is_some()
            || w.shipping_address.is_some();
        if changes_content && self.locked(&order) {
            return Err(SimError::unprocessable(
                codes::ORDER_LOCKED,
                format!(
                    "order {id} is locked: its fulfillment {} was acknowledged by the warehouse; only void is accepted",
                    order.fulfillment_id.unwrap_or_default()
                ),
            ));
        }
        if changes_content && order.void {
            return Err(SimError::unprocessable(codes::INVALID, format!("order {id} is void")));
        }

        let mut o = order;
        if changes_content {
            // Nobody has seen an unacknowledged fulfillment: withdraw it and let release
            // re-evaluate the order as it now is.
            if let Some(fid) = o.fulfillment_id {
                if self.fulfillments.get(&fid).is_some_and(|f| f.state == FulfillmentState::Open) {
                    self.fulfillments.remove(&fid);
                    o.fulfillment_id = None;
                }
            }
            if let Some(v) = &w.local_id {
                o.local_id = v.clone();
            }
            if let Some(v) = &w.po_num {
                o.po_num = v.clone();
            }
            if let Some(v) = &w.order_date {
                o.order_date = v.clone();
            }
            if let Some(v) = &w.notes {
                o.notes = v.clone();
            }
            if let Some(v) = &w.total {
                o.total = v.clone();
            }
            if let Some(v) = &w.currency_iso {
                o.currency_iso = v.clone();
            }
            if let Some(v) = &w.shipping_speed {
                o.shipping_speed = Self::parse_speed(v)?;
            }
            if let Some(lines) = &w.line_items {
                o.lines = self.parse_lines(lines)?;
            }
            if let Some(a) = &w.shipping_address {
                o.shipping_address = Some(self.store_address(a));
            }
        }
        if let Some(v) = &w.archived {
            o.archived = parse_flag("archived", v)?;
        }
        if wants_void == Some(true) && !o.void {
            if let Some(fid) = o.fulfillment_id {
                let f = self.fulfillments.get_mut(&fid).expect("order's fulfillment exists");
                if f.anything_shipped() {
                    return Err(SimError::unprocessable(
                        codes::ALREADY_SHIPPED,
                        format!("order {id} cannot be voided: fulfillment {fid} has shipped items"),
                    ));
                }
                if f.state == FulfillmentState::Open {
                    f.state = FulfillmentState::Cancelled;
                    f.cancelled_at = Some(now);
                }
            }
            o.void = true;
        }
        self.orders.insert(id, o);
        Ok(id)
    }

    fn create_order(&mut self, w: &SalesOrderWrite, now: DateTime<Utc>) -> SimResult<u64> {
        let void = match &w.void {
            Some(v) => parse_flag("void", v)?,
            None => false,
        };
        let archived = match &w.archived {
            Some(v) => parse_flag("archived", v)?,
            None => false,
        };
        let shipping_speed = Self::parse_speed(w.shipping_speed.as_deref().unwrap_or(""))?;
        let lines = self.parse_lines(w.line_items.as_deref().unwrap_or(&[]))?;
        let shipping_address = w.shipping_address.as_ref().map(|a| self.store_address(a));
        let id = self.alloc_id();
        self.orders.insert(
            id,
            OrderRec {
                id,
                local_id: w.local_id.clone().unwrap_or_default(),
                po_num: w.po_num.clone().unwrap_or_default(),
                order_date: w.order_date.clone().unwrap_or_else(|| now.to_rfc3339()),
                notes: w.notes.clone().unwrap_or_default(),
                total: w.total.clone().unwrap_or_default(),
                currency_iso: w.currency_iso.clone().unwrap_or_default(),
                void,
                archived,
                shipping_speed,
                lines,
                shipping_address,
                fulfillment_id: None,
                created_at: now,
            },
        );
        Ok(id)
    }

    fn order_to_wire(
        &self,
        o: &OrderRec,
        line_items: &mut BTreeMap<String, SalesOrderLineItem>,
        addresses: &mut BTreeMap<String, Address>,
    ) -> SalesOrder {
        let mut links = SalesOrderLinks::default();
        for l in &o.lines {
            let id = l.id.to_string();
            links.line_items.push(IdLink { id: id.clone() });
            line_items.insert(
                id.clone(),
                SalesOrderLineItem { id, sku: l.sku.clone(), quantity: l.quantity.to_string(), price: l.price.clone() },
            );
        }
        if let Some(a) = &o.shipping_address {
            let id = a.id.clone().unwrap_or_default();
            links.addresses.push(AddressLink { id: id.clone(), kind: "shipping".into() });
            addresses.insert(id, a.clone());
        }
        SalesOrder {
            id: o.id.to_string(),
            local_id: o.local_id.clone(),
            po_num: o.po_num.clone(),
            order_date: o.order_date.clone(),
            notes: o.notes.clone(),
            total: o.total.clone(),
            currency_iso: o.currency_iso.clone(),
            void: flag(o.void),
            archived: flag(o.archived),
            locked: flag(self.locked(o)),
            shipping_speed: o.shipping_speed.as_str().to_string(),
            links,
        }
    }

    /// `POST /api2/v2/SalesOrders`: filter on `id`/`local_id`/`po_num` (exact), ordered by id.
    pub fn read_orders(&self, req: &SalesOrdersReadRequest) -> SimResult<SalesOrdersReadResponse> {
        if req.action != wire::Action::Read {
            return Err(SimError::bad_request("action must be \"read\" on the v2 read path"));
        }
        let size = req.page_size.unwrap_or(wire::STANDARD_DEFAULT_PAGE_SIZE);
        let page = req.page_num.unwrap_or(1);
        if size == 0 || page == 0 {
            return Err(SimError::bad_request("page_size and page_num must be at least 1"));
        }
        let size = size.min(wire::INTEGRATIONS_MAX_PAGE_SIZE);
        let conds: Vec<(&String, &String)> =
            req.filter.iter().flat_map(|f| f.and.iter()).flat_map(|m| m.iter()).collect();
        for (k, _) in &conds {
            if !matches!(k.as_str(), "id" | "local_id" | "po_num") {
                return Err(SimError::bad_request(format!(
                    "unsupported filter field {k:?}; the simulator filters on id, local_id, po_num"
                )));
            }
        }
        let matching: Vec<&OrderRec> = self
            .orders
            .values()
            .filter(|o| {
                conds.iter().all(|(k, v)| match k.as_str() {
                    "id" => o.id.to_string() == **v,
                    "local_id" => o.local_id == **v,
                    _ => o.po_num == **v,
                })
            })
            .collect();
        let total = matching.len();
        let w = window(total, page, size);
        let mut resp = SalesOrdersReadResponse {
            meta: StandardMeta {
                current_page: page.to_string(),
                last_page: total.div_ceil(size as usize).to_string(),
                per_page: size.to_string(),
                total: total.to_string(),
                from: if w.end > w.start { (w.start + 1).to_string() } else { "0".into() },
                to: if w.end > w.start { w.end.to_string() } else { "0".into() },
            },
            sales_orders: Vec::new(),
            line_items: BTreeMap::new(),
            addresses: BTreeMap::new(),
        };
        for o in &matching[w.start..w.end] {
            let so = self.order_to_wire(o, &mut resp.line_items, &mut resp.addresses);
            resp.sales_orders.push(so);
        }
        Ok(resp)
    }

    // ----- release ---------------------------------------------------------------------------

    /// Units of each SKU held by open fulfillments and not shipped yet.
    fn reserved(&self) -> HashMap<String, i64> {
        let mut r: HashMap<String, i64> = HashMap::new();
        for f in self.fulfillments.values().filter(|f| f.state == FulfillmentState::Open) {
            for l in &f.lines {
                *r.entry(l.sku.clone()).or_default() += (l.quantity - l.shipped) as i64;
            }
        }
        r
    }

    /// `on_hand - reserved`; may be negative when stock was lowered under reservations.
    pub fn available(&self, sku: &str) -> i64 {
        let on_hand = self.products.get(sku).map_or(0, |p| p.stock);
        on_hand - self.reserved().get(sku).copied().unwrap_or(0)
    }

    /// Component demand of an order's lines: bundles expanded, SKUs merged in first-seen order.
    fn demand(&self, lines: &[OrderLineRec]) -> Vec<(String, u32)> {
        let mut out: Vec<(String, u32)> = Vec::new();
        let mut add = |sku: &str, q: u32| match out.iter_mut().find(|(s, _)| s == sku) {
            Some((_, n)) => *n += q,
            None => out.push((sku.to_string(), q)),
        };
        for l in lines {
            match self.bundles.get(&l.sku) {
                Some(b) => b.components.iter().for_each(|c| add(&c.sku, c.quantity * l.quantity)),
                None => add(&l.sku, l.quantity),
            }
        }
        out
    }

    /// Releases a fulfillment for every eligible order whose demand is available, oldest first.
    pub fn release_pending(&mut self, now: DateTime<Utc>) {
        let mut reserved = self.reserved();
        let candidates: Vec<u64> = self
            .orders
            .values()
            .filter(|o| {
                o.fulfillment_id.is_none()
                    && !o.void
                    && !o.archived
                    && !o.lines.is_empty()
                    && address_populated(&o.shipping_address)
            })
            .map(|o| o.id)
            .collect();
        for oid in candidates {
            let demand = self.demand(&self.orders[&oid].lines);
            let fits = demand.iter().all(|(sku, q)| {
                let on_hand = self.products.get(sku).map_or(0, |p| p.stock);
                on_hand - reserved.get(sku).copied().unwrap_or(0) >= *q as i64
            });
            if !fits {
                continue;
            }
            let fid = self.alloc_id();
            let mut lines = Vec::with_capacity(demand.len());
            for (sku, q) in demand {
                *reserved.entry(sku.clone()).or_default() += q as i64;
                let id = self.alloc_id();
                let name = self.products.get(&sku).and_then(|p| p.name.clone());
                lines.push(FulfillmentLineRec { id, sku, name, quantity: q, shipped: 0 });
            }
            let o = self.orders.get_mut(&oid).expect("candidate order exists");
            o.fulfillment_id = Some(fid);
            let order_number = [&o.po_num, &o.local_id]
                .into_iter()
                .find(|s| !s.is_empty())
                .cloned()
                .unwrap_or_else(|| oid.to_string());
            let rec = FulfillmentRec {
                id: fid,
                order_id: oid,
                order_number,
                status: String::new(),
                shipping_speed: o.shipping_speed,
                created_at: now,
                order_date: o.order_date.clone(),
                acknowledged: false,
                state: FulfillmentState::Open,
                cancelled_at: None,
                ship_to: ship_to(o.shipping_address.as_ref().expect("address checked")),
                lines,
            };
            self.fulfillments.insert(fid, rec);
        }
    }

    // ----- fulfillments ----------------------------------------------------------------------

    fn fulfillment_to_wire(f: &FulfillmentRec) -> Fulfillment {
        Fulfillment {
            id: f.id.to_string(),
            order_number: f.order_number.clone(),
            order_id: f.order_id.to_string(),
            status: f.status.clone(),
            shipping_speed: f.shipping_speed,
            created_at: f.created_at,
            order_date: Some(f.order_date.clone()).filter(|d| !d.is_empty()),
            ship_to: f.ship_to.clone(),
            state: f.state,
            cancelled_at: f.cancelled_at,
        }
    }

    /// `GET /fulfillments`: open ones oldest first; those on the page become acknowledged.
    /// Returns the page and how many were newly acknowledged.
    pub fn list_open_fulfillments(&mut self, page: u32, size: u32) -> (wire::FulfillmentsPage, usize) {
        let open: Vec<u64> =
            self.fulfillments.values().filter(|f| f.state == FulfillmentState::Open).map(|f| f.id).collect();
        let w = window(open.len(), page, size);
        let mut newly = 0;
        let mut fulfillments = Vec::new();
        for id in &open[w.start..w.end] {
            let f = self.fulfillments.get_mut(id).expect("listed fulfillment exists");
            if !f.acknowledged {
                f.acknowledged = true;
                newly += 1;
            }
            fulfillments.push(Self::fulfillment_to_wire(f));
        }
        let meta = PageMeta { page: w.page, page_size: w.size, total: open.len() as u64 };
        (wire::FulfillmentsPage { fulfillments, meta }, newly)
    }

    fn fulfillment_rec(&self, id: &str) -> SimResult<&FulfillmentRec> {
        let n = parse_id("fulfillment", id)?;
        self.fulfillments.get(&n).ok_or_else(|| SimError::not_found(format!("no fulfillment with id {id}")))
    }

    /// `GET /fulfillments/{id}`, whatever its state.
    pub fn get_fulfillment(&self, id: &str) -> SimResult<Fulfillment> {
        self.fulfillment_rec(id).map(Self::fulfillment_to_wire)
    }

    /// `GET /fulfillments/{id}/line_items`.
    pub fn fulfillment_line_items(&self, id: &str) -> SimResult<Vec<FulfillmentLineItem>> {
        Ok(self
            .fulfillment_rec(id)?
            .lines
            .iter()
            .map(|l| FulfillmentLineItem {
                id: l.id.to_string(),
                sku: l.sku.clone(),
                name: l.name.clone(),
                quantity: l.quantity,
                quantity_shipped: l.shipped,
            })
            .collect())
    }

    /// `PUT /fulfillments/{id}`: the status string may be set in any state [doc: "at any point"].
    pub fn set_fulfillment_status(&mut self, id: &str, status: &str) -> SimResult<Fulfillment> {
        let n = self.fulfillment_rec(id)?.id;
        let f = self.fulfillments.get_mut(&n).expect("looked up above");
        f.status = status.to_string();
        Ok(Self::fulfillment_to_wire(f))
    }

    // ----- shipments -------------------------------------------------------------------------

    /// `POST /shipments`: every shipment is checked (against the state and the earlier ones in
    /// the same request) before any is recorded. Check order per shipment: fulfillment exists,
    /// tracking number not already recorded on it (so a retried POST is told `duplicate_shipment`
    /// even when its first attempt completed the fulfillment), fulfillment open, line items valid
    /// and not over-shipped.
    pub fn record_shipments(&mut self, shipments: &[NewShipment], now: DateTime<Utc>) -> SimResult<Vec<Shipment>> {
        if shipments.is_empty() {
            return Err(SimError::unprocessable(codes::INVALID, "no shipments in the request"));
        }
        self.atomically(|s| {
            let mut out = Vec::with_capacity(shipments.len());
            for (i, sh) in shipments.iter().enumerate() {
                let rec = s.record_shipment(sh, now).map_err(|mut e| {
                    e.message = format!("shipments[{i}]: {}", e.message);
                    e
                })?;
                out.push(rec);
            }
            Ok(out)
        })
    }

    fn record_shipment(&mut self, sh: &NewShipment, now: DateTime<Utc>) -> SimResult<Shipment> {
        let fid = sh.fulfillment_id.trim().parse::<u64>().ok().filter(|id| self.fulfillments.contains_key(id));
        let Some(fid) = fid else {
            return Err(SimError::unprocessable(
                codes::UNKNOWN_FULFILLMENT,
                format!("no fulfillment with id {:?}", sh.fulfillment_id),
            ));
        };
        let fid_s = fid.to_string();
        let tracking = sh.tracking_number.trim();
        if !tracking.is_empty()
            && self.shipments.values().any(|r| r.fulfillment_id == fid_s && r.tracking_number.trim() == tracking)
        {
            return Err(SimError::unprocessable(
                codes::DUPLICATE_SHIPMENT,
                format!("tracking number {tracking:?} is already recorded on fulfillment {fid}"),
            ));
        }
        let f = &self.fulfillments[&fid];
        if f.state != FulfillmentState::Open {
            let state = serde_json::to_value(f.state).ok().and_then(|v| v.as_str().map(String::from));
            return Err(SimError::unprocessable(
                codes::FULFILLMENT_NOT_OPEN,
                format!("fulfillment {fid} is {}", state.unwrap_or_default()),
            ));
        }
        if sh.line_items.is_empty() {
            return Err(SimError::unprocessable(codes::INVALID, "a shipment needs line_items"));
        }
        let mut shipped: Vec<(usize, u32)> = Vec::new();
        for li in &sh.line_items {
            let Some(idx) = f.lines.iter().position(|l| l.id.to_string() == li.line_item_id.trim()) else {
                return Err(SimError::unprocessable(
                    codes::UNKNOWN_LINE_ITEM,
                    format!("line item {:?} is not on fulfillment {fid}", li.line_item_id),
                ));
            };
            if li.quantity == 0 {
                return Err(SimError::unprocessable(
                    codes::INVALID,
                    format!("line item {}: quantity 0", li.line_item_id),
                ));
            }
            let line = &f.lines[idx];
            let already: u32 = shipped.iter().filter(|(i, _)| *i == idx).map(|(_, q)| q).sum();
            let remaining = line.quantity - line.shipped - already;
            if li.quantity > remaining {
                return Err(SimError::unprocessable(
                    codes::OVER_SHIPMENT,
                    format!(
                        "line item {} ({}) would be over-shipped: {} requested, {} of {} remaining",
                        line.id, line.sku, li.quantity, remaining, line.quantity
                    ),
                ));
            }
            shipped.push((idx, li.quantity));
        }
        // Valid: apply.
        let f = self.fulfillments.get_mut(&fid).expect("checked above");
        for (idx, q) in &shipped {
            let line = &mut f.lines[*idx];
            line.shipped += q;
            if let Some(p) = self.products.get_mut(&line.sku) {
                p.stock -= *q as i64;
            }
        }
        if f.lines.iter().all(|l| l.shipped == l.quantity) {
            f.state = FulfillmentState::Complete;
        }
        let id = self.alloc_id();
        let rec = Shipment {
            id: id.to_string(),
            fulfillment_id: fid_s,
            shipped_at: sh.shipped_at,
            carrier: sh.carrier.clone(),
            service: sh.service.clone(),
            tracking_number: sh.tracking_number.clone(),
            cost: sh.cost,
            line_items: sh.line_items.clone(),
            created_at: now,
        };
        self.shipments.insert(id, rec.clone());
        Ok(rec)
    }

    /// `GET /shipments?fulfillment_id=`: recorded shipments, oldest first.
    pub fn shipments_for(&self, fulfillment_id: &str) -> SimResult<Vec<Shipment>> {
        let f = self.fulfillment_rec(fulfillment_id)?.id.to_string();
        Ok(self.shipments.values().filter(|s| s.fulfillment_id == f).cloned().collect())
    }

    // ----- OAuth -----------------------------------------------------------------------------

    /// Records a code handed out by `/authorize`.
    pub fn begin_authorization(&mut self, code: &str, client_id: &str, redirect_uri: &str) {
        self.pending_codes.insert(
            code.to_string(),
            PendingCode { client_id: client_id.to_string(), redirect_uri: redirect_uri.to_string() },
        );
    }

    /// Exchanges a code once: creates a new channel + warehouse holding `token` [doc].
    pub fn exchange_code(
        &mut self,
        code: &str,
        client_id: &str,
        redirect_uri: &str,
        token: &str,
        now: DateTime<Utc>,
    ) -> SimResult<ChannelRec> {
        let ok =
            self.pending_codes.get(code).is_some_and(|p| p.client_id == client_id && p.redirect_uri == redirect_uri);
        if !ok {
            return Err(SimError::new(
                400,
                codes::INVALID_GRANT,
                "unknown or used code, or client_id/redirect_uri differ from the authorization",
            ));
        }
        self.pending_codes.remove(code);
        let id = self.alloc_id();
        let warehouse_id = self.alloc_id();
        let ch = ChannelRec {
            id,
            warehouse_id,
            client_id: client_id.to_string(),
            token: token.to_string(),
            revoked: false,
            created_at: now,
        };
        self.channels.push(ch.clone());
        Ok(ch)
    }

    /// Whether a token issued by an OAuth exchange is still valid.
    pub fn channel_token_valid(&self, token: &str) -> bool {
        self.channels.iter().any(|c| !c.revoked && c.token == token)
    }

    pub fn revoke_channel_tokens(&mut self) {
        self.channels.iter_mut().for_each(|c| c.revoked = true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wire::{NewSalesOrderLineItem, ShipmentLineItem};

    fn now() -> DateTime<Utc> {
        "2024-05-01T12:00:00Z".parse().unwrap()
    }

    fn p(sku: &str, stock: i64) -> ProductUpsert {
        ProductUpsert { sku: sku.into(), name: Some(format!("{sku} name")), barcode: None, stock }
    }

    fn addr() -> Address {
        Address {
            street1: Some("1 Main St".into()),
            city: Some("Springfield".into()),
            country_iso: Some("US".into()),
            contact: Some("Ann".into()),
            ..Default::default()
        }
    }

    fn order(po: &str, lines: &[(&str, u32)], with_addr: bool) -> SalesOrderWrite {
        SalesOrderWrite {
            po_num: Some(po.into()),
            line_items: Some(
                lines
                    .iter()
                    .map(|(s, q)| NewSalesOrderLineItem { sku: s.to_string(), quantity: q.to_string(), price: None })
                    .collect(),
            ),
            shipping_address: with_addr.then(addr),
            ..Default::default()
        }
    }

    fn state() -> SimState {
        let mut s = SimState::default();
        s.apply_seed(
            &SeedDoc {
                products: vec![p("A", 3), p("B", 10)],
                bundles: vec![BundleRec {
                    sku: "KIT".into(),
                    name: None,
                    components: vec![
                        BundleComponent { sku: "A".into(), quantity: 1 },
                        BundleComponent { sku: "B".into(), quantity: 2 },
                    ],
                }],
                sales_orders: vec![],
            },
            now(),
        )
        .unwrap();
        s
    }

    fn create(s: &mut SimState, w: SalesOrderWrite) -> u64 {
        s.write_orders(&[w], now()).unwrap().sales_orders[0].id.parse().unwrap()
    }

    fn fulfillment_of(s: &SimState, oid: u64) -> Option<&FulfillmentRec> {
        s.orders[&oid].fulfillment_id.map(|f| &s.fulfillments[&f])
    }

    #[test]
    fn release_needs_address_and_stock_and_reserves_oldest_first() {
        let mut s = state();
        let no_addr = create(&mut s, order("1", &[("A", 1)], false));
        assert!(fulfillment_of(&s, no_addr).is_none());
        let big = create(&mut s, order("2", &[("A", 3)], true));
        assert!(fulfillment_of(&s, big).is_some());
        assert_eq!(s.available("A"), 0);
        let starved = create(&mut s, order("3", &[("A", 1)], true));
        assert!(fulfillment_of(&s, starved).is_none(), "the last units are reserved");
        // Adding the address to the first order later must not steal from order 3, and new
        // stock goes to the oldest waiting order first.
        let mut upd = order("1", &[("A", 1)], true);
        upd.id = Some(no_addr.to_string());
        upd.line_items = None;
        s.write_orders(&[upd], now()).unwrap();
        assert!(fulfillment_of(&s, no_addr).is_none());
        s.upsert_products(&[p("A", 4)], now()).unwrap();
        assert!(fulfillment_of(&s, no_addr).is_some());
        assert!(fulfillment_of(&s, starved).is_none());
    }

    #[test]
    fn bundle_expands_into_merged_components() {
        let mut s = state();
        let o = create(&mut s, order("1", &[("KIT", 2), ("B", 1)], true));
        let f = fulfillment_of(&s, o).unwrap();
        let lines: Vec<(&str, u32)> = f.lines.iter().map(|l| (l.sku.as_str(), l.quantity)).collect();
        assert_eq!(lines, vec![("A", 2), ("B", 5)]);
    }

    #[test]
    fn shipments_complete_and_lower_stock_and_refuse_duplicates_first() {
        let mut s = state();
        let o = create(&mut s, order("1", &[("A", 2)], true));
        let f = fulfillment_of(&s, o).unwrap();
        let (fid, lid) = (f.id.to_string(), f.lines[0].id.to_string());
        let ship = |tn: &str, q: u32| NewShipment {
            fulfillment_id: fid.clone(),
            shipped_at: "2024-05-02T10:00:00+02:00".parse().unwrap(),
            carrier: "UPS".into(),
            service: None,
            tracking_number: tn.into(),
            cost: None,
            line_items: vec![ShipmentLineItem { line_item_id: lid.clone(), quantity: q }],
        };
        let e = s.record_shipments(&[ship("T1", 3)], now()).unwrap_err();
        assert_eq!(e.code, codes::OVER_SHIPMENT);
        // Two shipments in one request that together over-ship: nothing applied.
        let e = s.record_shipments(&[ship("T1", 1), ship("T2", 2)], now()).unwrap_err();
        assert_eq!(e.code, codes::OVER_SHIPMENT);
        assert!(s.shipments.is_empty());
        s.record_shipments(&[ship("T1", 2)], now()).unwrap();
        assert_eq!(s.products["A"].stock, 1);
        assert_eq!(s.fulfillments[&fid.parse::<u64>().unwrap()].state, FulfillmentState::Complete);
        let e = s.record_shipments(&[ship("T1", 2)], now()).unwrap_err();
        assert_eq!(e.code, codes::DUPLICATE_SHIPMENT);
        let e = s.record_shipments(&[ship("T9", 1)], now()).unwrap_err();
        assert_eq!(e.code, codes::FULFILLMENT_NOT_OPEN);
        assert_eq!(s.available("A"), 1);
    }

    #[test]
    fn unacknowledged_fulfillment_follows_order_changes_but_acknowledged_locks() {
        let mut s = state();
        let o = create(&mut s, order("1", &[("A", 1)], true));
        let mut upd = order("1", &[("A", 2)], true);
        upd.id = Some(o.to_string());
        s.write_orders(&[upd.clone()], now()).unwrap();
        assert_eq!(fulfillment_of(&s, o).unwrap().lines[0].quantity, 2);
        assert_eq!(s.fulfillments.len(), 1, "the withdrawn fulfillment is gone");
        let (page, newly) = s.list_open_fulfillments(1, 50);
        assert_eq!((page.fulfillments.len(), newly), (1, 1));
        let e = s.write_orders(&[upd], now()).unwrap_err();
        assert_eq!(e.code, codes::ORDER_LOCKED);
        let void = SalesOrderWrite { id: Some(o.to_string()), void: Some("1".into()), ..Default::default() };
        s.write_orders(&[void], now()).unwrap();
        let f = fulfillment_of(&s, o).unwrap();
        assert_eq!((f.state, f.cancelled_at), (FulfillmentState::Cancelled, Some(now())));
        assert_eq!(s.available("A"), 3, "cancelling frees the reservation");
    }

    #[test]
    fn failed_write_leaves_state_untouched() {
        let mut s = state();
        let before = s.clone();
        let e = s.write_orders(&[order("1", &[("A", 1)], true), order("2", &[("NOPE", 1)], true)], now());
        assert_eq!(e.unwrap_err().code, codes::INVALID);
        assert_eq!(s, before);
    }

    #[test]
    fn read_meta_is_strings_and_empty_has_last_page_zero() {
        let mut s = state();
        for i in 0..3 {
            create(&mut s, order(&i.to_string(), &[("B", 1)], false));
        }
        let r = s
            .read_orders(&SalesOrdersReadRequest {
                action: wire::Action::Read,
                page_size: Some(2),
                page_num: Some(2),
                filter: None,
            })
            .unwrap();
        assert_eq!((r.meta.last_page.as_str(), r.meta.from.as_str(), r.meta.to.as_str()), ("2", "3", "3"));
        let r = s.read_orders(&SalesOrdersReadRequest::filtered("po_num", "zzz", 15, 1)).unwrap();
        assert_eq!((r.meta.total.as_str(), r.meta.last_page.as_str()), ("0", "0"));
    }
}
