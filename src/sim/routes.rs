//! API handlers, and the layer in front of them that counts, injects faults and authenticates.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{FormRejection, QueryRejection};
use axum::extract::{ConnectInfo, MatchedPath, Path, Query, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Form, Json, Router};
use chrono::Utc;
use rand::Rng;
use serde::de::DeserializeOwned;

use super::conn::ConnCtl;
use super::faults::FaultKind;
use super::state::SimError;
use super::{lock, Counters, Shared};
use crate::stitch::wire::{self, codes, ErrorBody};

/// A [`SimError`] as an HTTP answer with the wire error body.
pub(crate) struct ApiError(pub SimError);

impl From<SimError> for ApiError {
    fn from(e: SimError) -> Self {
        ApiError(e)
    }
}

pub(crate) fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    (status, Json(ErrorBody::new(code, message))).into_response()
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.0.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        error_response(status, self.0.code, self.0.message)
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// Parses a JSON body into a wire type; a body that doesn't fit is a 400 with the serde reason.
pub(crate) fn parse_json<T: DeserializeOwned>(body: &Bytes) -> Result<T, SimError> {
    serde_json::from_slice(body).map_err(|e| SimError::bad_request(format!("invalid JSON body: {e}")))
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, SimError> {
    q.map(|Query(v)| v).map_err(|e| SimError::bad_request(format!("invalid query: {}", e.body_text())))
}

fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let fulfillment = format!("{}/{{id}}", wire::FULFILLMENTS);
    let line_items = format!("{}/{{id}}/line_items", wire::FULFILLMENTS);
    Router::new()
        .route(wire::PRODUCTS, get(list_products).post(upsert_products))
        .route(wire::FULFILLMENTS, get(list_fulfillments))
        .route(&fulfillment, get(get_fulfillment).put(put_fulfillment))
        .route(&line_items, get(fulfillment_line_items))
        .route(wire::SHIPMENTS, get(list_shipments).post(post_shipments))
        .route(wire::SALES_ORDERS_READ, post(read_orders))
        .route(wire::SALES_ORDERS_WRITE, post(write_orders))
        .route(wire::AUTHORIZE, get(authorize))
        .route(wire::OAUTH_TOKEN, post(oauth_token))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(shared.clone(), api_layer))
        .with_state(shared)
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, codes::NOT_FOUND, "no such endpoint")
}

async fn method_not_allowed() -> Response {
    error_response(StatusCode::METHOD_NOT_ALLOWED, codes::BAD_REQUEST, "method not allowed on this endpoint")
}

fn is_oauth(path: &str) -> bool {
    path == wire::AUTHORIZE || path == wire::OAUTH_TOKEN
}

/// Checks `access_token` and the integration features; `None` means the request may proceed.
fn refuse(shared: &Shared, req: &Request) -> Option<Response> {
    let path = req.uri().path();
    if is_oauth(path) {
        return None;
    }
    let Some(given) = req.headers().get(wire::ACCESS_TOKEN_HEADER) else {
        return Some(error_response(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, "missing access_token header"));
    };
    let given = given.to_str().unwrap_or("");
    let rt = lock(&shared.runtime);
    let ok =
        rt.token.as_deref() == Some(given) || (!given.is_empty() && lock(&shared.state).channel_token_valid(given));
    if !ok {
        return Some(error_response(StatusCode::UNAUTHORIZED, codes::UNAUTHORIZED, "invalid or revoked access token"));
    }
    if !rt.integrations_enabled && path.starts_with(wire::INTEGRATIONS_PREFIX) {
        return Some(error_response(
            StatusCode::FORBIDDEN,
            codes::INTEGRATIONS_DISABLED,
            wire::INTEGRATIONS_DISABLED_MESSAGE,
        ));
    }
    None
}

/// Counts, delays, injects faults, authenticates, then runs the handler.
async fn api_layer(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let template = req.extensions().get::<MatchedPath>().map_or("<unmatched>", |m| m.as_str()).to_string();
    let conn = req.extensions().get::<ConnectInfo<ConnCtl>>().map(|c| c.0.clone());
    Counters::bump(&mut lock(&shared.counters).requests, &format!("{method} {template}"), 1);

    let (latency, planned) = {
        let mut f = lock(&shared.faults);
        (f.latency_ms(), f.pick(method.as_str(), &path))
    };
    let delay = latency + planned.filter(|p| p.kind == FaultKind::Latency).map_or(0, |p| p.ms);
    if let Some(p) = planned {
        Counters::bump(&mut lock(&shared.counters).faults_injected, p.kind.name(), 1);
    }
    if delay > 0 {
        if latency > 0 {
            Counters::bump(&mut lock(&shared.counters).faults_injected, FaultKind::Latency.name(), 1);
        }
        tokio::time::sleep(Duration::from_millis(delay)).await;
    }

    let kind = planned.map(|p| p.kind);
    let early = match kind {
        Some(FaultKind::RateLimited) => {
            let secs = planned.map_or(1, |p| p.retry_after);
            let mut r = error_response(
                StatusCode::TOO_MANY_REQUESTS,
                codes::RATE_LIMITED,
                format!("rate limited; retry after {secs} s"),
            );
            r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
            Some(r)
        }
        Some(FaultKind::ServerError) => {
            Some(error_response(StatusCode::INTERNAL_SERVER_ERROR, codes::SERVER_ERROR, "injected server error"))
        }
        Some(FaultKind::BadGateway) => {
            Some(error_response(StatusCode::BAD_GATEWAY, codes::BAD_GATEWAY, "injected bad gateway"))
        }
        Some(FaultKind::GatewayTimeout) => {
            Some(error_response(StatusCode::GATEWAY_TIMEOUT, codes::GATEWAY_TIMEOUT, "injected gateway timeout"))
        }
        Some(FaultKind::Drop) => match &conn {
            Some(c) => {
                c.kill();
                Counters::bump(&mut lock(&shared.counters).statuses, "dropped", 1);
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            None => Some(error_response(StatusCode::GATEWAY_TIMEOUT, codes::GATEWAY_TIMEOUT, "injected drop")),
        },
        _ => None,
    };
    let resp = match early {
        Some(r) => r,
        None => match refuse(&shared, &req) {
            Some(r) => r,
            None => next.run(req).await,
        },
    };
    let resp = match (kind, &conn) {
        (Some(FaultKind::LostAnswer), Some(c)) => {
            c.kill();
            Counters::bump(&mut lock(&shared.counters).statuses, "dropped", 1);
            return resp;
        }
        (Some(FaultKind::LostAnswer), None) | (Some(FaultKind::LostAnswer504), _) => error_response(
            StatusCode::GATEWAY_TIMEOUT,
            codes::GATEWAY_TIMEOUT,
            "injected gateway timeout after the request was applied",
        ),
        _ => resp,
    };
    Counters::bump(&mut lock(&shared.counters).statuses, resp.status().as_str(), 1);
    resp
}

fn count_writes(shared: &Shared, kind: &str, n: usize) {
    Counters::bump(&mut lock(&shared.counters).writes_applied, kind, n as u64);
}

// ----- products ------------------------------------------------------------------------------

async fn upsert_products(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> ApiResult<Json<wire::ProductsUpsertResponse>> {
    let req: wire::ProductsUpsertRequest = parse_json(&body)?;
    let mut st = lock(&shared.state);
    let products = st.upsert_products(&req.products, Utc::now())?;
    shared.persist(&st);
    count_writes(&shared, "products", products.len());
    Ok(Json(wire::ProductsUpsertResponse { products }))
}

async fn list_products(
    State(shared): State<Arc<Shared>>,
    q: Result<Query<wire::PageQuery>, QueryRejection>,
) -> ApiResult<Json<wire::ProductsPage>> {
    let (page, size) = super::state::integrations_page(&query(q)?)?;
    Ok(Json(lock(&shared.state).list_products(page, size)))
}

// ----- fulfillments --------------------------------------------------------------------------

async fn list_fulfillments(
    State(shared): State<Arc<Shared>>,
    q: Result<Query<wire::PageQuery>, QueryRejection>,
) -> ApiResult<Json<wire::FulfillmentsPage>> {
    let (page, size) = super::state::integrations_page(&query(q)?)?;
    let mut st = lock(&shared.state);
    let (out, newly) = st.list_open_fulfillments(page, size);
    if newly > 0 {
        shared.persist(&st);
        count_writes(&shared, "fulfillments_acknowledged", newly);
    }
    Ok(Json(out))
}

async fn get_fulfillment(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::FulfillmentEnvelope>> {
    let fulfillment = lock(&shared.state).get_fulfillment(&id)?;
    Ok(Json(wire::FulfillmentEnvelope { fulfillment }))
}

async fn put_fulfillment(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    body: Bytes,
) -> ApiResult<Json<wire::FulfillmentEnvelope>> {
    let req: wire::FulfillmentStatusUpdate = parse_json(&body)?;
    let mut st = lock(&shared.state);
    let fulfillment = st.set_fulfillment_status(&id, &req.status)?;
    shared.persist(&st);
    count_writes(&shared, "fulfillment_status", 1);
    Ok(Json(wire::FulfillmentEnvelope { fulfillment }))
}

async fn fulfillment_line_items(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> ApiResult<Json<wire::FulfillmentLineItems>> {
    let line_items = lock(&shared.state).fulfillment_line_items(&id)?;
    Ok(Json(wire::FulfillmentLineItems { line_items }))
}

// ----- shipments -----------------------------------------------------------------------------

async fn post_shipments(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<wire::ShipmentsResponse>)> {
    let req: wire::ShipmentsRequest = parse_json(&body)?;
    let mut st = lock(&shared.state);
    match st.record_shipments(&req.shipments, Utc::now()) {
        Ok(shipments) => {
            shared.persist(&st);
            count_writes(&shared, "shipments", shipments.len());
            Ok((StatusCode::CREATED, Json(wire::ShipmentsResponse { shipments })))
        }
        Err(e) => {
            if e.code == codes::DUPLICATE_SHIPMENT {
                lock(&shared.counters).duplicate_shipments_refused += 1;
            }
            Err(e.into())
        }
    }
}

async fn list_shipments(
    State(shared): State<Arc<Shared>>,
    q: Result<Query<wire::ShipmentsQuery>, QueryRejection>,
) -> ApiResult<Json<wire::ShipmentsResponse>> {
    let q = query(q)?;
    let shipments = lock(&shared.state).shipments_for(&q.fulfillment_id)?;
    Ok(Json(wire::ShipmentsResponse { shipments }))
}

// ----- sales orders (Standard API) -----------------------------------------------------------

async fn read_orders(State(shared): State<Arc<Shared>>, body: Bytes) -> ApiResult<Json<wire::SalesOrdersReadResponse>> {
    let req: wire::SalesOrdersReadRequest = parse_json(&body)?;
    Ok(Json(lock(&shared.state).read_orders(&req)?))
}

async fn write_orders(
    State(shared): State<Arc<Shared>>,
    body: Bytes,
) -> ApiResult<Json<wire::SalesOrdersWriteResponse>> {
    let req: wire::SalesOrdersWriteRequest = parse_json(&body)?;
    if req.action != wire::Action::Write {
        return Err(SimError::bad_request("action must be \"write\" on the v1 write path").into());
    }
    let mut st = lock(&shared.state);
    let resp = st.write_orders(&req.sales_orders, Utc::now())?;
    shared.persist(&st);
    count_writes(&shared, "sales_orders", resp.sales_orders.len());
    Ok(Json(resp))
}

// ----- OAuth ---------------------------------------------------------------------------------

/// Skips the login page (subdomain, username, password [doc]) and approves at once: 302 to
/// `redirect_uri?code=…&state=…`.
async fn authorize(
    State(shared): State<Arc<Shared>>,
    q: Result<Query<wire::AuthorizeQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let q = query(q)?;
    if q.response_type != "code" {
        return Err(SimError::bad_request("response_type must be \"code\"").into());
    }
    let mut url = reqwest::Url::parse(&q.redirect_uri)
        .map_err(|e| SimError::bad_request(format!("redirect_uri is not a URL: {e}")))?;
    let code = random_hex(16);
    {
        let mut st = lock(&shared.state);
        st.begin_authorization(&code, &q.client_id, &q.redirect_uri);
        shared.persist(&st);
    }
    {
        let mut pairs = url.query_pairs_mut();
        pairs.append_pair("code", &code);
        if let Some(s) = &q.state {
            pairs.append_pair("state", s);
        }
    }
    Ok((StatusCode::FOUND, [(header::LOCATION, url.to_string())]).into_response())
}

/// Each successful exchange creates a new channel + warehouse [doc]; hence `channels_created`.
async fn oauth_token(
    State(shared): State<Arc<Shared>>,
    form: Result<Form<wire::TokenRequest>, FormRejection>,
) -> ApiResult<Json<wire::TokenResponse>> {
    let Form(req) = form.map_err(|e| SimError::bad_request(format!("invalid token request: {}", e.body_text())))?;
    if req.grant_type != "authorization_code" {
        return Err(SimError::bad_request("grant_type must be authorization_code").into());
    }
    let token = random_hex(20);
    let mut st = lock(&shared.state);
    st.exchange_code(&req.code, &req.client_id, &req.redirect_uri, &token, Utc::now())?;
    shared.persist(&st);
    lock(&shared.counters).channels_created += 1;
    Ok(Json(wire::TokenResponse { access_token: token, token_type: "bearer".into() }))
}
