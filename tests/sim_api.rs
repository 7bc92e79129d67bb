//! The simulator over real HTTP on loopback, driven only through the public paths of the
//! contract (plus `/_admin/*` for assertions and fault control).

use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::{json, Value};
use stitch_bridge::sim::{self, Counters, SimHandle, SimOptions};
use stitch_bridge::stitch::wire::{self, codes};

const TOKEN: &str = "test-token";

struct Sim {
    h: SimHandle,
    c: Client,
}

fn seed() -> Value {
    json!({
        "products": [
            {"sku": "WIDGET-RED", "name": "Widget, red", "stock": 5},
            {"sku": "WIDGET-BLUE", "stock": 1},
            {"sku": "GADGET-1", "name": "Gadget", "stock": 10}
        ],
        "bundles": [{"sku": "KIT-STARTER", "components": [
            {"sku": "WIDGET-RED", "quantity": 1}, {"sku": "GADGET-1", "quantity": 2}]}]
    })
}

async fn sim_with(opts: SimOptions) -> Sim {
    let h = sim::start(opts).await.expect("simulator starts");
    let c = Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    Sim { h, c }
}

async fn sim() -> Sim {
    sim_with(SimOptions { token: TOKEN.into(), seed: Some(seed().into()), ..Default::default() }).await
}

fn address() -> Value {
    json!({"contact": "Ann Smith", "street1": "1 Main St", "city": "Springfield", "zip": "12345", "country_iso": "US"})
}

impl Sim {
    fn url(&self, path: &str) -> String {
        format!("{}{}", self.h.base_url(), path)
    }

    async fn send(&self, method: Method, path: &str, body: Option<Value>) -> reqwest::Result<(StatusCode, Value)> {
        let mut rb = self.c.request(method, self.url(path)).header(wire::ACCESS_TOKEN_HEADER, TOKEN);
        if let Some(b) = body {
            rb = rb.header(reqwest::header::CONTENT_TYPE, wire::CONTENT_TYPE_JSON).body(b.to_string());
        }
        let r = rb.send().await?;
        let status = r.status();
        let text = r.text().await?;
        Ok((status, serde_json::from_str(&text).unwrap_or(Value::String(text))))
    }

    async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.send(Method::GET, path, None).await.expect("answer")
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::POST, path, Some(body)).await.expect("answer")
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.send(Method::PUT, path, Some(body)).await.expect("answer")
    }

    async fn admin(&self, path: &str, body: Value) -> StatusCode {
        self.c
            .post(self.url(path))
            .header(sim::ADMIN_TOKEN_HEADER, self.h.admin_token())
            .json(&body)
            .send()
            .await
            .unwrap()
            .status()
    }

    async fn counters(&self) -> Counters {
        self.c
            .get(self.url("/_admin/counters"))
            .header(sim::ADMIN_TOKEN_HEADER, self.h.admin_token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    async fn admin_state(&self) -> Value {
        self.c
            .get(self.url("/_admin/state"))
            .header(sim::ADMIN_TOKEN_HEADER, self.h.admin_token())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap()
    }

    /// Creates one order; returns its id.
    async fn create_order(&self, po: &str, lines: &[(&str, u32)], with_address: bool) -> String {
        let mut o = json!({"po_num": po, "local_id": format!("L{po}"),
            "line_items": lines.iter().map(|(s, q)| json!({"sku": s, "quantity": q.to_string(), "price": "1.00"})).collect::<Vec<_>>()});
        if with_address {
            o["shipping_address"] = address();
        }
        let (st, body) = self.post(wire::SALES_ORDERS_WRITE, json!({"action": "write", "SalesOrders": [o]})).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        body["SalesOrders"][0]["id"].as_str().unwrap().to_string()
    }

    async fn read_order(&self, id: &str) -> wire::SalesOrdersReadResponse {
        let req = wire::SalesOrdersReadRequest::filtered("id", id, 15, 1);
        let (st, body) = self.post(wire::SALES_ORDERS_READ, serde_json::to_value(req).unwrap()).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    /// The fulfillment released for an order, seen through the admin state (without acknowledging).
    async fn fulfillment_of(&self, order_id: &str) -> Option<String> {
        let s = self.admin_state().await;
        s["orders"][order_id]["fulfillment_id"].as_u64().map(|f| f.to_string())
    }

    async fn open_fulfillments(&self) -> wire::FulfillmentsPage {
        let (st, body) = self.get(wire::FULFILLMENTS).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        serde_json::from_value(body).unwrap()
    }

    async fn line_items(&self, fid: &str) -> Vec<wire::FulfillmentLineItem> {
        let (st, body) = self.get(&wire::fulfillment_line_items(fid)).await;
        assert_eq!(st, StatusCode::OK, "{body}");
        serde_json::from_value::<wire::FulfillmentLineItems>(body).unwrap().line_items
    }

    async fn stock(&self, sku: &str) -> i64 {
        self.admin_state().await["products"][sku]["stock"].as_i64().unwrap()
    }
}

fn shipment(fid: &str, tracking: &str, lines: &[(&str, u32)]) -> Value {
    json!({"shipments": [{
        "fulfillment_id": fid, "shipped_at": "2024-05-02T10:00:00-07:00", "carrier": "UPS",
        "tracking_number": tracking,
        "line_items": lines.iter().map(|(id, q)| json!({"line_item_id": id, "quantity": q})).collect::<Vec<_>>()
    }]})
}

fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test]
async fn token_is_required_and_can_be_revoked() {
    let s = sim().await;
    let r = s.c.get(s.url(wire::PRODUCTS)).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    let body: Value = r.json().await.unwrap();
    assert_eq!(code(&body), codes::UNAUTHORIZED);
    let r = s.c.get(s.url(wire::PRODUCTS)).header(wire::ACCESS_TOKEN_HEADER, "nope").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    // `Authorization: Bearer` is not how Stitch authenticates.
    let r = s.c.get(s.url(wire::PRODUCTS)).bearer_auth(TOKEN).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(s.get(wire::PRODUCTS).await.0, StatusCode::OK);
    assert_eq!(s.admin("/_admin/token", json!({"token": null})).await, StatusCode::NO_CONTENT);
    assert_eq!(s.get(wire::PRODUCTS).await.0, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn admin_routes_need_the_admin_token_and_json() {
    let s = sim().await;
    let token = s.h.admin_token().to_string();
    assert!(token.len() >= 32, "a random admin token: {token:?}");
    let body = json!({"token": "taken-over"}).to_string();
    let post = |t: Option<&str>, ct: &str| {
        let mut rb = s.c.post(s.url("/_admin/token")).header(reqwest::header::CONTENT_TYPE, ct).body(body.clone());
        if let Some(t) = t {
            rb = rb.header(sim::ADMIN_TOKEN_HEADER, t);
        }
        rb.send()
    };
    let json_ct = "application/json";
    // No token, a wrong one, the API token, a prefix of the right one: 401, nothing changed.
    for t in [None, Some("wrong"), Some(TOKEN), Some(&token[..token.len() - 1])] {
        assert_eq!(post(t, json_ct).await.unwrap().status(), StatusCode::UNAUTHORIZED, "{t:?}");
    }
    for path in ["/_admin/state", "/_admin/counters", "/_admin/faults"] {
        let r = s.c.get(s.url(path)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
        let r = s.c.get(s.url(path)).header(sim::ADMIN_TOKEN_HEADER, "wrong").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::UNAUTHORIZED, "{path}");
    }
    // What a web page can send without a preflight: the right token cannot be there, and even
    // with it a text/plain (or form) body is refused.
    for ct in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
        assert_eq!(post(Some(&token), ct).await.unwrap().status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{ct}");
    }
    let r = s.c.post(s.url("/_admin/reset-counters")).header(sim::ADMIN_TOKEN_HEADER, &token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "a POST without a content type");
    assert_eq!(s.get(wire::PRODUCTS).await.0, StatusCode::OK, "the API token still works");
    // The right token and JSON: it works.
    assert_eq!(post(Some(&token), "application/json; charset=utf-8").await.unwrap().status(), StatusCode::NO_CONTENT);
    assert_eq!(s.get(wire::PRODUCTS).await.0, StatusCode::UNAUTHORIZED, "the token was replaced");
    let r = s.c.get(s.url("/_admin/state")).header(sim::ADMIN_TOKEN_HEADER, &token).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
}

#[tokio::test]
async fn a_given_admin_token_is_the_one_accepted() {
    let s =
        sim_with(SimOptions { token: TOKEN.into(), admin_token: Some("chosen-admin".into()), ..Default::default() })
            .await;
    assert_eq!(s.h.admin_token(), "chosen-admin");
    let r = s.c.get(s.url("/_admin/counters")).header(sim::ADMIN_TOKEN_HEADER, "chosen-admin").send().await.unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    let other = sim().await;
    assert_ne!(other.h.admin_token(), s.h.admin_token());
    let r =
        s.c.get(s.url("/_admin/counters")).header(sim::ADMIN_TOKEN_HEADER, other.h.admin_token()).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn integrations_disabled_answers_403_with_the_reason() {
    let s = sim().await;
    assert_eq!(s.admin("/_admin/features", json!({"integrations_enabled": false})).await, StatusCode::NO_CONTENT);
    let (st, body) = s.get(wire::FULFILLMENTS).await;
    assert_eq!(st, StatusCode::FORBIDDEN);
    let msg = body["error"]["message"].as_str().unwrap();
    assert!(msg.contains("Multi-warehousing") && msg.contains("Third-Party Stock Control"), "{msg}");
    // The Standard API is not an integration feature.
    let (st, _) = s.post(wire::SALES_ORDERS_READ, json!({"action": "read"})).await;
    assert_eq!(st, StatusCode::OK);
    s.admin("/_admin/features", json!({"integrations_enabled": true})).await;
    assert_eq!(s.get(wire::FULFILLMENTS).await.0, StatusCode::OK);
}

#[tokio::test]
async fn products_upsert_by_sku_and_paginate() {
    let s = sim().await;
    let (st, body) = s
        .post(
            wire::PRODUCTS,
            json!({"products": [{"sku": "GADGET-1", "stock": 7}, {"sku": "NEW-1", "name": "New", "stock": 3}]}),
        )
        .await;
    assert_eq!(st, StatusCode::OK, "{body}");
    let r: wire::ProductsUpsertResponse = serde_json::from_value(body).unwrap();
    assert_eq!(r.products.iter().map(|p| p.created).collect::<Vec<_>>(), vec![false, true]);

    let (_, body) = s.get(&format!("{}?page=1&page_size=3", wire::PRODUCTS)).await;
    let p1: wire::ProductsPage = serde_json::from_value(body).unwrap();
    let (_, body) = s.get(&format!("{}?page=2&page_size=3", wire::PRODUCTS)).await;
    let p2: wire::ProductsPage = serde_json::from_value(body).unwrap();
    assert_eq!(p1.meta, wire::PageMeta { page: 1, page_size: 3, total: 4 });
    assert!(p1.meta.has_more() && !p2.meta.has_more());
    let skus: Vec<_> = p1.products.iter().chain(&p2.products).map(|p| p.sku.as_str()).collect();
    assert_eq!(skus, vec!["GADGET-1", "NEW-1", "WIDGET-BLUE", "WIDGET-RED"]);
    let gadget = &p1.products[0];
    assert_eq!((gadget.stock, gadget.name.as_deref()), (7, Some("Gadget")), "update keeps the name");

    let too_many: Vec<Value> = (0..501).map(|i| json!({"sku": format!("S{i}"), "stock": 1})).collect();
    let (st, body) = s.post(wire::PRODUCTS, json!({"products": too_many})).await;
    assert_eq!((st, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, codes::TOO_MANY_PRODUCTS));
    let (st, body) = s.post(wire::PRODUCTS, json!({"products": [{"sku": "X"}]})).await;
    assert_eq!((st, code(&body)), (StatusCode::BAD_REQUEST, codes::BAD_REQUEST), "missing stock");
    let (st, _) = s.get(&format!("{}?page=0", wire::PRODUCTS)).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn release_needs_address_and_stock_and_reserves_the_last_unit() {
    let s = sim().await;
    let no_addr = s.create_order("1", &[("WIDGET-BLUE", 1)], false).await;
    assert_eq!(s.fulfillment_of(&no_addr).await, None, "no shipping address: not released");
    let first = s.create_order("2", &[("WIDGET-BLUE", 1)], true).await;
    let second = s.create_order("3", &[("WIDGET-BLUE", 1)], true).await;
    assert!(s.fulfillment_of(&first).await.is_some());
    assert_eq!(s.fulfillment_of(&second).await, None, "the only unit is reserved by the first order");
    assert_eq!(s.open_fulfillments().await.fulfillments.len(), 1);

    // Stock arriving through the API releases the waiting order.
    s.post(wire::PRODUCTS, json!({"products": [{"sku": "WIDGET-BLUE", "stock": 2}]})).await;
    let fid = s.fulfillment_of(&second).await.expect("released on stock change");
    let (_, body) = s.get(&wire::fulfillment(&fid)).await;
    let f: wire::FulfillmentEnvelope = serde_json::from_value(body).unwrap();
    assert_eq!((f.fulfillment.order_number.as_str(), f.fulfillment.order_id.as_str()), ("3", second.as_str()));
    assert_eq!(f.fulfillment.ship_to.address1.as_deref(), Some("1 Main St"));
    assert_eq!(f.fulfillment.state, wire::FulfillmentState::Open);
}

#[tokio::test]
async fn bundles_appear_as_components() {
    let s = sim().await;
    let o = s.create_order("10", &[("KIT-STARTER", 2), ("GADGET-1", 1)], true).await;
    let fid = s.fulfillment_of(&o).await.unwrap();
    let items = s.line_items(&fid).await;
    let got: Vec<_> = items.iter().map(|l| (l.sku.as_str(), l.quantity, l.quantity_shipped)).collect();
    assert_eq!(got, vec![("WIDGET-RED", 2, 0), ("GADGET-1", 5, 0)]);
    // The order itself still shows the bundle line.
    let r = s.read_order(&o).await;
    let skus: Vec<_> = r.sales_orders[0].links.line_items.iter().map(|l| r.line_items[&l.id].sku.as_str()).collect();
    assert_eq!(skus, vec!["KIT-STARTER", "GADGET-1"]);
}

#[tokio::test]
async fn listing_acknowledges_and_locks_the_order() {
    let s = sim().await;
    let o = s.create_order("20", &[("WIDGET-RED", 1)], true).await;
    assert_eq!(s.read_order(&o).await.sales_orders[0].locked, "0");
    let page = s.open_fulfillments().await;
    assert_eq!(page.fulfillments.len(), 1);
    let r = s.read_order(&o).await;
    assert_eq!(r.sales_orders[0].locked, "1");
    assert_eq!(r.meta.total, "1");
    assert_eq!(r.addresses.values().next().unwrap().city.as_deref(), Some("Springfield"));
    let upd = json!({"action": "write", "SalesOrders": [{"id": o, "notes": "gift wrap"}]});
    let (st, body) = s.post(wire::SALES_ORDERS_WRITE, upd).await;
    assert_eq!((st, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, codes::ORDER_LOCKED));
    assert_eq!(s.counters().await.writes_applied.get("fulfillments_acknowledged"), Some(&1));
}

#[tokio::test]
async fn shipments_partial_then_complete_with_over_and_duplicate_refused() {
    let s = sim().await;
    let o = s.create_order("30", &[("GADGET-1", 3)], true).await;
    let fid = s.open_fulfillments().await.fulfillments[0].id.clone();
    assert_eq!(s.fulfillment_of(&o).await.as_deref(), Some(fid.as_str()));
    let lid = s.line_items(&fid).await[0].id.clone();

    let (st, body) = s.post(wire::SHIPMENTS, shipment(&fid, "1Z1", &[(&lid, 4)])).await;
    assert_eq!((st, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, codes::OVER_SHIPMENT));
    assert!(body["error"]["message"].as_str().unwrap().contains("GADGET-1"), "{body}");

    let (st, body) = s.post(wire::SHIPMENTS, shipment(&fid, "1Z1", &[(&lid, 1)])).await;
    assert_eq!(st, StatusCode::CREATED, "{body}");
    assert_eq!(s.line_items(&fid).await[0].quantity_shipped, 1);
    assert_eq!(s.stock("GADGET-1").await, 9);
    assert_eq!(s.open_fulfillments().await.fulfillments.len(), 1, "partially shipped stays open");

    let (st, body) = s.post(wire::SHIPMENTS, shipment(&fid, "1Z1", &[(&lid, 1)])).await;
    assert_eq!((st, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, codes::DUPLICATE_SHIPMENT));
    assert_eq!(s.counters().await.duplicate_shipments_refused, 1);

    let (st, _) = s.put(&wire::fulfillment(&fid), json!({"status": "Packed"})).await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = s.post(wire::SHIPMENTS, shipment(&fid, "1Z2", &[(&lid, 2)])).await;
    assert_eq!(st, StatusCode::CREATED);
    assert!(s.open_fulfillments().await.fulfillments.is_empty(), "complete leaves the open list");
    let (_, body) = s.get(&wire::fulfillment(&fid)).await;
    assert_eq!(
        (body["fulfillment"]["state"].as_str(), body["fulfillment"]["status"].as_str()),
        (Some("complete"), Some("Packed"))
    );
    assert_eq!(s.stock("GADGET-1").await, 7);

    let (_, body) = s.get(&wire::shipments_for(&fid)).await;
    let recorded: wire::ShipmentsResponse = serde_json::from_value(body).unwrap();
    let tracking: Vec<_> = recorded.shipments.iter().map(|x| x.tracking_number.as_str()).collect();
    assert_eq!(tracking, vec!["1Z1", "1Z2"]);

    let (st, body) = s.post(wire::SHIPMENTS, shipment(&fid, "1Z3", &[(&lid, 1)])).await;
    assert_eq!((st, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, codes::FULFILLMENT_NOT_OPEN));
    let (st, body) = s.post(wire::SHIPMENTS, shipment("999999", "1Z4", &[(&lid, 1)])).await;
    assert_eq!((st, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, codes::UNKNOWN_FULFILLMENT));
    assert_eq!(s.counters().await.writes_applied.get("shipments"), Some(&2));
}

#[tokio::test]
async fn void_cancels_open_fulfillment_but_not_after_shipping() {
    let s = sim().await;
    let a = s.create_order("40", &[("WIDGET-RED", 1)], true).await;
    let b = s.create_order("41", &[("WIDGET-RED", 1)], true).await;
    let page = s.open_fulfillments().await;
    let fa = page.fulfillments.iter().find(|f| f.order_id == a).unwrap().id.clone();
    let fb = page.fulfillments.iter().find(|f| f.order_id == b).unwrap().id.clone();

    let (st, body) =
        s.post(wire::SALES_ORDERS_WRITE, json!({"action": "write", "SalesOrders": [{"id": a, "void": "1"}]})).await;
    assert_eq!(st, StatusCode::OK, "{body}");
    assert_eq!(body["SalesOrders"][0]["void"], "1");
    let (_, body) = s.get(&wire::fulfillment(&fa)).await;
    let f: wire::FulfillmentEnvelope = serde_json::from_value(body).unwrap();
    assert_eq!(f.fulfillment.state, wire::FulfillmentState::Cancelled);
    assert!(f.fulfillment.cancelled_at.is_some());
    assert!(s.open_fulfillments().await.fulfillments.iter().all(|f| f.id != fa));

    let lid = s.line_items(&fb).await[0].id.clone();
    s.post(wire::SHIPMENTS, shipment(&fb, "T-B", &[(&lid, 1)])).await;
    let (st, body) =
        s.post(wire::SALES_ORDERS_WRITE, json!({"action": "write", "SalesOrders": [{"id": b, "void": "1"}]})).await;
    assert_eq!((st, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, codes::ALREADY_SHIPPED));
    assert_eq!(s.read_order(&b).await.sales_orders[0].void, "0");
}

#[tokio::test]
async fn standard_read_filters_and_paginates_with_string_meta() {
    let s = sim().await;
    for po in ["50", "51", "52"] {
        s.create_order(po, &[("GADGET-1", 1)], false).await;
    }
    let (_, body) = s.post(wire::SALES_ORDERS_READ, json!({"action": "read", "page_size": 2, "page_num": 2})).await;
    assert_eq!(
        body["meta"],
        json!({"current_page":"2","last_page":"2","per_page":"2","total":"3","from":"3","to":"3"})
    );
    let (_, body) = s
        .post(
            wire::SALES_ORDERS_READ,
            serde_json::to_value(wire::SalesOrdersReadRequest::filtered("local_id", "L51", 50, 1)).unwrap(),
        )
        .await;
    assert_eq!(body["SalesOrders"][0]["po_num"], "51");
    let (_, body) = s
        .post(
            wire::SALES_ORDERS_READ,
            serde_json::to_value(wire::SalesOrdersReadRequest::filtered("po_num", "nope", 50, 1)).unwrap(),
        )
        .await;
    assert_eq!(
        (body["meta"]["last_page"].as_str(), body["SalesOrders"].as_array().map(Vec::len)),
        (Some("0"), Some(0))
    );
    let (st, body) = s
        .post(
            wire::SALES_ORDERS_WRITE,
            json!({"action": "write", "SalesOrders": [{"line_items": [{"sku": "NOPE", "quantity": "1"}]}]}),
        )
        .await;
    assert_eq!((st, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, codes::INVALID));
    let (st, _) = s.post(wire::SALES_ORDERS_WRITE, json!("not an object")).await;
    assert_eq!(st, StatusCode::BAD_REQUEST);
}

async fn queue(s: &Sim, faults: Value) {
    assert_eq!(s.admin("/_admin/faults", json!({"queue": faults})).await, StatusCode::OK);
}

#[tokio::test]
async fn queued_status_faults_are_exact_and_not_applied() {
    let s = sim().await;
    let prefix = wire::PRODUCTS;
    queue(
        &s,
        json!([
            {"fault": "429", "retry_after": 3, "method": "POST", "path_prefix": prefix},
            {"fault": "500", "method": "POST", "path_prefix": prefix},
            {"fault": "502", "method": "POST", "path_prefix": prefix},
            {"fault": "504", "method": "POST", "path_prefix": prefix}
        ]),
    )
    .await;
    // A GET on the same path does not match the queued POST faults.
    assert_eq!(s.get(prefix).await.0, StatusCode::OK);
    let body = json!({"products": [{"sku": "NEW-1", "stock": 1}]});
    let r = s.c.post(s.url(prefix)).header(wire::ACCESS_TOKEN_HEADER, TOKEN).json(&body).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.headers().get(wire::RETRY_AFTER_HEADER).unwrap(), "3");
    for expected in [500, 502, 504] {
        assert_eq!(s.post(prefix, body.clone()).await.0.as_u16(), expected);
    }
    assert!(s.admin_state().await["products"].get("NEW-1").is_none(), "faulted requests are not applied");
    assert_eq!(s.post(prefix, body.clone()).await.0, StatusCode::OK, "queue exhausted");
    let c = s.counters().await;
    for k in ["429", "500", "502", "504"] {
        assert_eq!(c.faults_injected.get(k), Some(&1), "{k}");
    }
    assert_eq!(c.statuses.get("429"), Some(&1));
    assert_eq!(c.requests.get(&format!("POST {prefix}")), Some(&5));
}

#[tokio::test]
async fn dropped_connection_is_an_error_and_nothing_is_applied() {
    let s = sim().await;
    queue(&s, json!([{"fault": "drop", "method": "POST"}])).await;
    let body = json!({"products": [{"sku": "NEW-1", "stock": 1}]});
    // `send` itself fails: not even a status line was written.
    let err = s.c.post(s.url(wire::PRODUCTS)).header(wire::ACCESS_TOKEN_HEADER, TOKEN).json(&body).send().await;
    assert!(err.is_err(), "client must see a transport error, got {err:?}");
    assert!(s.admin_state().await["products"].get("NEW-1").is_none());
    assert_eq!(s.counters().await.statuses.get("dropped"), Some(&1));
    // The simulator keeps serving.
    assert_eq!(s.get(wire::PRODUCTS).await.0, StatusCode::OK);
}

#[tokio::test]
async fn lost_answer_applies_the_write_and_a_retry_is_refused_as_duplicate() {
    let s = sim().await;
    let o = s.create_order("60", &[("GADGET-1", 2)], true).await;
    let fid = s.fulfillment_of(&o).await.unwrap();
    let lid = s.line_items(&fid).await[0].id.clone();
    queue(&s, json!([{"fault": "lost_answer", "method": "POST", "path_prefix": wire::SHIPMENTS}])).await;
    let res =
        s.c.post(s.url(wire::SHIPMENTS))
            .header(wire::ACCESS_TOKEN_HEADER, TOKEN)
            .json(&shipment(&fid, "LOST-1", &[(&lid, 2)]))
            .send()
            .await;
    assert!(res.is_err(), "the answer must be lost, got {res:?}");
    // ... yet the shipment landed: visible through the public API and the state.
    assert_eq!(s.line_items(&fid).await[0].quantity_shipped, 2);
    let (_, body) = s.get(&wire::shipments_for(&fid)).await;
    assert_eq!(body["shipments"][0]["tracking_number"], "LOST-1");
    let (st, body) = s.post(wire::SHIPMENTS, shipment(&fid, "LOST-1", &[(&lid, 2)])).await;
    assert_eq!((st, code(&body)), (StatusCode::UNPROCESSABLE_ENTITY, codes::DUPLICATE_SHIPMENT));
    let c = s.counters().await;
    assert_eq!((c.writes_applied.get("shipments"), c.duplicate_shipments_refused), (Some(&1), 1));
    assert_eq!(c.faults_injected.get("lost_answer"), Some(&1));

    queue(&s, json!([{"fault": "lost_answer_504", "method": "POST", "path_prefix": wire::PRODUCTS}])).await;
    let (st, _) = s.post(wire::PRODUCTS, json!({"products": [{"sku": "NEW-2", "stock": 4}]})).await;
    assert_eq!(st, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(s.stock("NEW-2").await, 4, "applied despite the 504");
}

#[tokio::test]
async fn latency_delays_api_requests_but_not_admin() {
    let s = sim().await;
    assert_eq!(s.admin("/_admin/faults", json!({"latency_ms": 300})).await, StatusCode::OK);
    let t = Instant::now();
    assert_eq!(s.get(wire::PRODUCTS).await.0, StatusCode::OK);
    assert!(t.elapsed() >= Duration::from_millis(300), "{:?}", t.elapsed());
    let t = Instant::now();
    s.counters().await;
    assert!(t.elapsed() < Duration::from_millis(300), "admin is never delayed");
    queue(&s, json!([{"fault": "latency", "ms": 200}])).await;
    let t = Instant::now();
    s.get(wire::PRODUCTS).await;
    assert!(t.elapsed() >= Duration::from_millis(200));
    assert_eq!(s.counters().await.faults_injected.get("latency"), Some(&2));
    let st = s.admin("/_admin/faults", json!({"rates": {"500": 2.0}})).await;
    assert_eq!(st, StatusCode::UNPROCESSABLE_ENTITY, "rates above 1 are refused");
}

#[tokio::test]
async fn probabilistic_faults_are_reproducible() {
    async fn statuses(seed: u64) -> Vec<u16> {
        let mut opts = SimOptions { token: TOKEN.into(), seed: Some(seed_doc()), ..Default::default() };
        opts.faults.seed = seed;
        opts.faults.rates.server_error = 0.5;
        let s = sim_with(opts).await;
        let mut out = Vec::new();
        for _ in 0..16 {
            out.push(s.get(wire::PRODUCTS).await.0.as_u16());
        }
        out
    }
    fn seed_doc() -> sim::Seed {
        seed().into()
    }
    let a = statuses(42).await;
    assert_eq!(a, statuses(42).await);
    assert!(a.contains(&500) && a.contains(&200), "{a:?}");
}

#[tokio::test]
async fn state_file_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sim-state.json");
    let opts = SimOptions {
        token: TOKEN.into(),
        seed: Some(seed().into()),
        state_file: Some(path.clone()),
        ..Default::default()
    };
    let s = sim_with(opts.clone()).await;
    let o = s.create_order("70", &[("WIDGET-RED", 2)], true).await;
    s.open_fulfillments().await;
    s.post(wire::PRODUCTS, json!({"products": [{"sku": "NEW-9", "stock": 9}]})).await;
    let before = s.h.snapshot();
    s.h.shutdown().await;

    // The seed is ignored once a state file exists: the saved state wins.
    let s = sim_with(opts).await;
    assert_eq!(s.h.snapshot(), before);
    assert_eq!(s.read_order(&o).await.sales_orders[0].locked, "1");
    assert_eq!(s.stock("NEW-9").await, 9);
}

#[tokio::test]
async fn oauth_exchange_creates_a_channel_each_time() {
    let s = sim().await;
    let mut tokens = Vec::new();
    for i in 0..2 {
        let r =
            s.c.get(s.url(wire::AUTHORIZE))
                .query(&[
                    ("response_type", "code"),
                    ("client_id", "bridge"),
                    ("redirect_uri", "http://localhost:9/cb"),
                    ("state", "xyz"),
                ])
                .send()
                .await
                .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        let loc = reqwest::Url::parse(r.headers()[reqwest::header::LOCATION].to_str().unwrap()).unwrap();
        let q: std::collections::HashMap<_, _> = loc.query_pairs().into_owned().collect();
        assert_eq!(q["state"], "xyz");
        let form = [
            ("grant_type", "authorization_code"),
            ("code", q["code"].as_str()),
            ("client_id", "bridge"),
            ("client_secret", "s3cret"),
            ("redirect_uri", "http://localhost:9/cb"),
        ];
        let r = s.c.post(s.url(wire::OAUTH_TOKEN)).form(&form).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let t: wire::TokenResponse = r.json().await.unwrap();
        let r = s.c.get(s.url(wire::PRODUCTS)).header(wire::ACCESS_TOKEN_HEADER, &t.access_token).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK, "issued token works");
        // A code is good for one exchange only.
        let r = s.c.post(s.url(wire::OAUTH_TOKEN)).form(&form).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::BAD_REQUEST);
        assert_eq!(s.counters().await.channels_created, i + 1);
        tokens.push(t.access_token);
    }
    assert_ne!(tokens[0], tokens[1]);
    assert_eq!(s.admin_state().await["channels"].as_array().unwrap().len(), 2);
}

#[tokio::test]
async fn sample_seed_loads_and_releases_its_order() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/sim-seed.json");
    let s = sim_with(SimOptions { token: TOKEN.into(), seed: Some(path.into()), ..Default::default() }).await;
    let page = s.open_fulfillments().await;
    assert_eq!(page.fulfillments.len(), 1);
    assert_eq!(page.fulfillments[0].order_number, "1001");
    let skus: Vec<_> = s.line_items(&page.fulfillments[0].id).await.into_iter().map(|l| (l.sku, l.quantity)).collect();
    assert_eq!(skus, vec![("WIDGET-RED".into(), 1), ("GADGET-1".into(), 2), ("WIDGET-BLUE".into(), 2)]);
}

#[test]
fn background_sim_serves_sync_callers_and_stops_on_drop() {
    let bg = sim::start_in_background(SimOptions { token: TOKEN.into(), ..Default::default() }).unwrap();
    let addr = bg.addr();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let status = rt.block_on(async {
        Client::new()
            .get(format!("{}{}", bg.base_url(), wire::PRODUCTS))
            .header(wire::ACCESS_TOKEN_HEADER, TOKEN)
            .send()
            .await
            .unwrap()
            .status()
    });
    assert_eq!(status, StatusCode::OK);
    drop(bg);
    assert!(std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(500)).is_err(), "listener closed");
}
