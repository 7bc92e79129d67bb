//! `/_admin/*`: inspection and control for tests and demos. Never faulted, not counted, so
//! assertions never disturb what they observe. Endpoints are listed in the module docs of `sim`.
//!
//! These routes show OAuth tokens and replace the accepted one, so they need the admin token in
//! the `x-admin-token` header (compared in constant time), and a POST must say
//! `Content-Type: application/json`: a web page can make a browser send a "simple" cross-origin
//! POST (`text/plain`, no custom header) to a loopback port, but not one with either of these
//! without a CORS preflight, which the simulator never grants.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::Utc;
use serde::Deserialize;

use super::faults::{FaultConfig, FaultEngine};
use super::routes::{error_response, parse_json, ApiError};
use super::state::{SeedDoc, SimError};
use super::{lock, Counters, Shared, ADMIN_TOKEN_HEADER};
use crate::stitch::wire::codes;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/_admin/counters", get(counters))
        .route("/_admin/reset-counters", post(reset_counters))
        .route("/_admin/state", get(state))
        .route("/_admin/faults", get(get_faults).post(set_faults))
        .route("/_admin/features", post(features))
        .route("/_admin/token", post(token))
        .route("/_admin/seed", post(seed))
        .route_layer(middleware::from_fn_with_state(shared.clone(), guard))
        .with_state(shared)
}

/// 401 without the right admin token; 415 for a POST that is not `application/json`.
async fn guard(State(shared): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let given = req.headers().get(ADMIN_TOKEN_HEADER).map(|v| v.as_bytes()).unwrap_or_default();
    if !token_matches(given, shared.admin_token.as_bytes()) {
        return error_response(
            StatusCode::UNAUTHORIZED,
            codes::UNAUTHORIZED,
            format!("admin routes need the simulator's admin token in the {ADMIN_TOKEN_HEADER} header"),
        );
    }
    if req.method() == Method::POST && !is_json(req.headers().get(header::CONTENT_TYPE)) {
        return error_response(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "admin POST bodies must be sent as Content-Type: application/json",
        );
    }
    next.run(req).await
}

/// Constant-time in the token's content: both sides are hashed to a fixed length first, so
/// neither a differing byte's position nor the expected length shows in the timing.
fn token_matches(given: &[u8], expected: &[u8]) -> bool {
    use sha2::{Digest, Sha256};
    use subtle::ConstantTimeEq;
    Sha256::digest(given).ct_eq(&Sha256::digest(expected)).into()
}

/// `application/json`, with or without parameters (`; charset=utf-8`), any case.
fn is_json(v: Option<&axum::http::HeaderValue>) -> bool {
    v.and_then(|v| v.to_str().ok())
        .and_then(|s| s.split(';').next())
        .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
}

async fn counters(State(shared): State<Arc<Shared>>) -> Json<Counters> {
    Json(lock(&shared.counters).clone())
}

async fn reset_counters(State(shared): State<Arc<Shared>>) -> StatusCode {
    *lock(&shared.counters) = Counters::default();
    StatusCode::NO_CONTENT
}

async fn state(State(shared): State<Arc<Shared>>) -> Response {
    Json(lock(&shared.state).clone()).into_response()
}

async fn get_faults(State(shared): State<Arc<Shared>>) -> Json<FaultConfig> {
    Json(lock(&shared.faults).config().clone())
}

async fn set_faults(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<Json<FaultConfig>, ApiError> {
    let cfg: FaultConfig = parse_json(&body)?;
    cfg.validate().map_err(|e| SimError::unprocessable(codes::INVALID, e.to_string()))?;
    *lock(&shared.faults) = FaultEngine::new(cfg.clone());
    Ok(Json(cfg))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Features {
    integrations_enabled: bool,
}

async fn features(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<StatusCode, ApiError> {
    let f: Features = parse_json(&body)?;
    lock(&shared.runtime).integrations_enabled = f.integrations_enabled;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TokenSet {
    token: Option<String>,
}

/// Makes `token` the only accepted one (none if null) and revokes OAuth-issued tokens, to model
/// a revoked or replaced authorisation.
async fn token(State(shared): State<Arc<Shared>>, body: Bytes) -> Result<StatusCode, ApiError> {
    let t: TokenSet = parse_json(&body)?;
    if t.token.as_deref() == Some("") {
        return Err(SimError::unprocessable(codes::INVALID, "token must not be empty; use null to revoke").into());
    }
    lock(&shared.runtime).token = t.token;
    let mut st = lock(&shared.state);
    st.revoke_channel_tokens();
    shared.persist(&st);
    Ok(StatusCode::NO_CONTENT)
}

/// Applies a seed document at run time, e.g. to define bundles, which the public API cannot.
async fn seed(State(shared): State<Arc<Shared>>, body: Bytes) -> Response {
    let doc: SeedDoc = match parse_json(&body) {
        Ok(d) => d,
        Err(e) => return ApiError(e).into_response(),
    };
    let mut st = lock(&shared.state);
    match st.apply_seed(&doc, Utc::now()) {
        Ok(()) => {
            shared.persist(&st);
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => error_response(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNPROCESSABLE_ENTITY),
            e.code,
            e.message,
        ),
    }
}
