//! The operator console: `stitch-bridge ui` and `watch --ui-listen`. Server-side HTML (maud,
//! which escapes every value it is given) with htmx, vendored and embedded, only enhancing: every
//! page reads with JavaScript off, every action is a plain form POST.
//!
//! The console reads the ledger and the drops; it changes things only through the actions in
//! `actions.rs`, each of which needs the console token and a CSRF check (`auth.rs`) and is
//! recorded in the ledger. Bound beyond loopback, it asks for the token on every page too.

mod actions;
mod auth;
mod chart;
mod download;
mod errfile;
mod pages;
mod stitch_lookup;

use crate::config::Config;
use crate::ledger::{Ledger, LedgerError};
use axum::extract::DefaultBodyLimit;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

pub use auth::Sid;

/// Why the console cannot start.
#[derive(Debug, thiserror::Error)]
pub enum UiError {
    #[error("the console would listen on {addr}, beyond loopback, without a token: set [ui] token_env to the name of an environment variable holding one (and export it), or listen on 127.0.0.1")]
    RemoteWithoutToken { addr: SocketAddr },
    #[error("[ui] token_env names {var}, which is not set or empty: export the console token in it")]
    TokenMissing { var: String },
    #[error("cannot open the ledger: {0}")]
    Ledger(#[from] LedgerError),
}

/// Everything a request needs: the config, the token, the signing key and a few ledger handles.
pub struct State {
    pub(crate) config: Config,
    /// The console token, when `[ui] token_env` names a set variable.
    token: Option<String>,
    /// Who the token is (`[ui] token_label`), recorded with each action.
    pub(crate) label: String,
    /// Random per process: session, auth and CSRF values are HMACs under it.
    key: [u8; 32],
    /// Listening beyond loopback: every page needs the token.
    pub(crate) pages_need_token: bool,
    /// Ledger handles kept between requests: opening one checks the whole SQLite file.
    ledgers: Mutex<Vec<Ledger>>,
}

impl State {
    /// Check the settings for `listen` and open the ledger once (so a bad one fails at start).
    pub fn new(config: Config, listen: SocketAddr) -> Result<Arc<State>, UiError> {
        let token = match &config.ui.token_env {
            None => None,
            Some(var) => match std::env::var(var) {
                Ok(t) if !t.trim().is_empty() => Some(t),
                _ => return Err(UiError::TokenMissing { var: var.clone() }),
            },
        };
        let pages_need_token = !listen.ip().is_loopback();
        if pages_need_token && token.is_none() {
            return Err(UiError::RemoteWithoutToken { addr: listen });
        }
        let ledger = Ledger::open_at(&config.ledger)?;
        let label = config.ui.token_label.clone();
        Ok(Arc::new(State {
            config,
            token,
            label,
            key: rand::random(),
            pages_need_token,
            ledgers: Mutex::new(vec![ledger]),
        }))
    }

    /// Run `f` with a ledger handle on this (blocking) thread, opening one if all are in use.
    pub(crate) fn with_ledger<T>(&self, f: impl FnOnce(&Ledger) -> T) -> Result<T, LedgerError> {
        let held = self.ledgers.lock().unwrap_or_else(|e| e.into_inner()).pop();
        let ledger = match held {
            Some(l) => l,
            None => Ledger::open_at(&self.config.ledger)?,
        };
        let out = f(&ledger);
        // SQLite handles are kept (opening one checks the file); a PostgreSQL ledger goes back
        // to its connection pool, which replaces a connection that broke meanwhile.
        if ledger.backend() == "sqlite" {
            let mut pool = self.ledgers.lock().unwrap_or_else(|e| e.into_inner());
            if pool.len() < 8 {
                pool.push(ledger);
            }
        }
        Ok(out)
    }

    pub(crate) fn token_configured(&self) -> bool {
        self.token.is_some()
    }

    /// Where the ledger is, for the footer: a path or a URL with its password masked.
    pub(crate) fn ledger_at(&self) -> String {
        self.config.ledger.describe()
    }
}

/// Run a blocking closure (ledger, drop) off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, Fail> {
    tokio::task::spawn_blocking(f).await.map_err(|e| Fail::Internal(format!("a request's task failed: {e}")))
}

/// A request that did not succeed, rendered as a page with its status.
#[derive(Debug)]
pub enum Fail {
    NotFound(String),
    BadRequest(String),
    /// No or a wrong token (the page offers the login form).
    Unauthorized(String),
    /// Refused whatever the token: cross-site, a bad CSRF value, no token configured.
    Forbidden(String),
    Conflict(String),
    Internal(String),
}

impl From<LedgerError> for Fail {
    fn from(e: LedgerError) -> Self {
        Fail::Internal(e.to_string())
    }
}

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        let (status, title, message) = match self {
            Fail::NotFound(m) => (StatusCode::NOT_FOUND, "Not found", m),
            Fail::BadRequest(m) => (StatusCode::BAD_REQUEST, "Bad request", m),
            Fail::Unauthorized(m) => (StatusCode::UNAUTHORIZED, "Sign in needed", m),
            Fail::Forbidden(m) => (StatusCode::FORBIDDEN, "Refused", m),
            Fail::Conflict(m) => (StatusCode::CONFLICT, "Not done", m),
            Fail::Internal(m) => {
                tracing::warn!("console: {m}");
                (StatusCode::INTERNAL_SERVER_ERROR, "Error", m)
            }
        };
        let login = status == StatusCode::UNAUTHORIZED;
        (status, Html(pages::message_page(title, &message, login).into_string())).into_response()
    }
}

const HTMX: &[u8] = include_bytes!("assets/htmx.min.js");
const CSS: &str = include_str!("assets/console.css");

fn asset(content_type: &'static str, body: &'static [u8]) -> Response {
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static(content_type)),
            (header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=31536000, immutable")),
        ],
        body,
    )
        .into_response()
}

/// The console's routes; every one goes through the session and header layer in `auth.rs`.
pub fn router(state: Arc<State>) -> Router {
    Router::new()
        .route("/", get(pages::accounts))
        .route("/files", get(pages::files))
        .route("/files/{id}", get(pages::file))
        .route("/files/{id}/{which}", get(download::download))
        .route("/files/{id}/reprocess", post(actions::reprocess))
        .route("/orders", get(pages::orders))
        .route("/alerts", get(pages::alerts))
        .route("/lookup", get(pages::lookup))
        .route("/upload", get(pages::upload_form).post(actions::upload).layer(DefaultBodyLimit::max(64 << 20)))
        .route("/accounts/{name}/resume", post(actions::resume))
        .route("/accounts/{name}/clear", post(actions::clear))
        .route("/login", get(pages::login_form).post(actions::login))
        .route("/logout", post(actions::logout))
        .route("/assets/htmx.min.js", get(|| async { asset("text/javascript; charset=utf-8", HTMX) }))
        .route("/assets/console.css", get(|| async { asset("text/css; charset=utf-8", CSS.as_bytes()) }))
        .fallback(|| async { Fail::NotFound("No such page.".into()) })
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::layer))
        .with_state(state)
}

/// Serve the console on `listener` until the future is dropped.
pub async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) -> std::io::Result<()> {
    axum::serve(listener, router(state)).await
}

/// What [`resume_account`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resumed {
    pub was_halted: bool,
    /// Rejected or overdue X12 940s dismissed (the operator has now looked at them).
    pub dismissed: u64,
}

/// `resume`'s effect, shared with the console's Resume button: X12 problems dismissed, the
/// halt lifted, and the halt's alert file removed from the drop.
pub fn resume_account(acct: &crate::config::Account, ledger: &crate::ledger::Ledger) -> crate::ledger::Result<Resumed> {
    let mut dismissed = 0;
    if let Some(x12) = &acct.x12 {
        let cutoff =
            chrono::Utc::now() - chrono::Duration::from_std(x12.ack_timeout).unwrap_or(chrono::Duration::hours(24));
        dismissed = ledger.dismiss_x12_problems(&acct.name, cutoff)?;
    }
    let was_halted = ledger.resume(&acct.name)?;
    if was_halted {
        if let Ok(mut d) = crate::engine::account::open_drop(acct) {
            let _ = d.remove(&crate::engine::halt::alert_name(&acct.name));
        }
    }
    Ok(Resumed { was_halted, dismissed })
}

/// Say so on stderr when the console is reachable from other machines.
pub fn warn_if_remote(addr: SocketAddr) {
    if !addr.ip().is_loopback() {
        eprintln!(
            "warning: the console listens on {addr}, beyond loopback: every page asks for the console token, and the traffic is plain HTTP (put a TLS proxy in front for use across a network)"
        );
    }
}
