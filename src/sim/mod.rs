//! A faithful simulator of the Stitch Labs API (Standard API sales orders + Integrations API),
//! served over real HTTP so the client, tests, demos and users' dry runs exercise the same code
//! paths as against the live service. Paths and shapes come from [`crate::stitch::wire`].
//!
//! - [`state`]: the account as a pure state machine (release, reservation, lock, shipments).
//! - [`faults`]: latency, 429/500/502/504, dropped connections, applied-but-lost answers.
//! - `routes`: API handlers; `admin`: `/_admin/*` (admin token, never faulted); [`cli`]: `sim`.
//!
//! Admin endpoints need the admin token ([`SimOptions::admin_token`], random unless given; see
//! [`SimHandle::admin_token`]) in the [`ADMIN_TOKEN_HEADER`] header (401 otherwise), and POST
//! bodies need `Content-Type: application/json` (415 otherwise):
//! - `GET /_admin/counters` → [`Counters`]; `POST /_admin/reset-counters`.
//! - `GET /_admin/state` → [`state::SimState`] as JSON (the state file has the same shape).
//! - `GET|POST /_admin/faults` → read / replace the [`faults::FaultConfig`] (resets its RNG).
//! - `POST /_admin/features` `{"integrations_enabled": bool}`.
//! - `POST /_admin/token` `{"token": "T" | null}`: the accepted token becomes exactly this one
//!   (null: none); tokens issued by OAuth exchanges are revoked.
//! - `POST /_admin/seed` → applies a [`state::SeedDoc`] (products, bundles, sales orders).
//!
//! Counter names (stable; tests and the demo rely on them):
//! - `requests["METHOD /path/template"]`: every non-admin request, faulted ones included;
//! - `statuses["200"]`…: answers sent, by status; `statuses["dropped"]`: connections closed
//!   instead of answering;
//! - `writes_applied[kind]`: objects applied, kind ∈ `products`, `sales_orders`, `shipments`,
//!   `fulfillment_status`, `fulfillments_acknowledged`;
//! - `duplicate_shipments_refused`: `POST /shipments` refused with `duplicate_shipment`;
//! - `channels_created`: successful OAuth exchanges (each one a new channel + warehouse);
//! - `faults_injected[kind]`: kind ∈ `latency`, `429`, `500`, `502`, `504`, `drop`,
//!   `lost_answer`, `lost_answer_504`.

pub mod faults;
pub mod state;

mod admin;
mod conn;
mod routes;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::Context;
use serde::{Deserialize, Serialize};

use faults::{FaultConfig, FaultEngine};
use state::{SeedDoc, SimState};

/// Header that carries the admin token on `/_admin/*` requests.
pub const ADMIN_TOKEN_HEADER: &str = "x-admin-token";

/// Where `sim` listens unless told otherwise; `init` points its config here.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8750";
/// The token `sim` accepts unless told otherwise; `init` tells the operator to export it.
pub const DEFAULT_TOKEN: &str = "sim-token";

/// A fresh random admin token: 32 hex digits (128 bits).
pub fn random_admin_token() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

/// Where seed data comes from; applied only when no state file content was loaded.
#[derive(Debug, Clone)]
pub enum Seed {
    File(PathBuf),
    Json(serde_json::Value),
}

impl From<PathBuf> for Seed {
    fn from(p: PathBuf) -> Self {
        Seed::File(p)
    }
}

impl From<serde_json::Value> for Seed {
    fn from(v: serde_json::Value) -> Self {
        Seed::Json(v)
    }
}

#[derive(Debug, Clone)]
pub struct SimOptions {
    /// Port 0 picks a free port; see [`SimHandle::base_url`].
    pub listen: SocketAddr,
    /// Value the `access_token` header must carry.
    pub token: String,
    /// Value the [`ADMIN_TOKEN_HEADER`] header must carry on `/_admin/*`; `None`: a random one,
    /// readable from the handle.
    pub admin_token: Option<String>,
    pub seed: Option<Seed>,
    /// Loaded at start if it exists; saved atomically after each write and at shutdown.
    pub state_file: Option<PathBuf>,
    pub faults: FaultConfig,
    /// Multi-warehousing + Third-Party Stock Control enabled; otherwise integrations answer 403.
    pub integrations_enabled: bool,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            token: "sim-token".into(),
            admin_token: None,
            seed: None,
            state_file: None,
            faults: FaultConfig::default(),
            integrations_enabled: true,
        }
    }
}

/// Observable counters; see the module docs for the names.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    pub requests: BTreeMap<String, u64>,
    pub statuses: BTreeMap<String, u64>,
    pub writes_applied: BTreeMap<String, u64>,
    pub duplicate_shipments_refused: u64,
    pub channels_created: u64,
    pub faults_injected: BTreeMap<String, u64>,
}

impl Counters {
    pub(crate) fn bump(map: &mut BTreeMap<String, u64>, key: &str, n: u64) {
        if n > 0 {
            *map.entry(key.to_string()).or_default() += n;
        }
    }
}

/// Settings changeable at run time through the admin endpoints.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub token: Option<String>,
    pub integrations_enabled: bool,
}

/// Everything the handlers share. Locks are never held across an `.await`.
pub(crate) struct Shared {
    pub state: Mutex<SimState>,
    pub counters: Mutex<Counters>,
    pub faults: Mutex<FaultEngine>,
    pub runtime: Mutex<Runtime>,
    pub state_file: Option<PathBuf>,
    pub admin_token: String,
}

/// Locks a mutex, recovering from poisoning: a panicked handler must not take the simulator down.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Saves the state if a state file is configured; failures are reported, not fatal, so a
    /// full disk degrades persistence rather than the API.
    pub fn persist(&self, state: &SimState) {
        if let Some(path) = &self.state_file {
            if let Err(e) = save_state(path, state) {
                tracing::warn!("saving simulator state to {}: {e:#}", path.display());
            }
        }
    }
}

/// Writes to a sibling temporary file then renames, so a crash never leaves a torn state file.
pub fn save_state(path: &Path, state: &SimState) -> anyhow::Result<()> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).context("creating temporary state file")?;
    serde_json::to_writer_pretty(&mut tmp, state)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path).context("replacing state file")?;
    Ok(())
}

fn load_seed(seed: &Seed) -> anyhow::Result<SeedDoc> {
    let doc = match seed {
        Seed::File(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("reading seed {}", p.display()))?;
            serde_json::from_str(&text).with_context(|| format!("parsing seed {}", p.display()))?
        }
        Seed::Json(v) => serde_json::from_value(v.clone()).context("parsing seed JSON")?,
    };
    Ok(doc)
}

/// Initial state: the state file if it exists, else the seed, else empty.
fn initial_state(opts: &SimOptions) -> anyhow::Result<SimState> {
    if let Some(path) = &opts.state_file {
        if path.exists() {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading state {}", path.display()))?;
            return serde_json::from_str(&text).with_context(|| format!("parsing state {}", path.display()));
        }
    }
    let mut st = SimState::default();
    if let Some(seed) = &opts.seed {
        let doc = load_seed(seed)?;
        st.apply_seed(&doc, chrono::Utc::now()).map_err(|e| anyhow::anyhow!("applying seed: {e}"))?;
    }
    Ok(st)
}

/// A running simulator on the caller's tokio runtime. Dropping it stops serving.
pub struct SimHandle {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

/// Starts serving on `opts.listen`; returns once the socket is bound.
pub async fn start(opts: SimOptions) -> anyhow::Result<SimHandle> {
    opts.faults.validate().map_err(|e| anyhow::anyhow!("fault config: {e}"))?;
    let st = initial_state(&opts)?;
    let shared = Arc::new(Shared {
        state: Mutex::new(st),
        counters: Mutex::new(Counters::default()),
        faults: Mutex::new(FaultEngine::new(opts.faults.clone())),
        runtime: Mutex::new(Runtime {
            token: Some(opts.token.clone()),
            integrations_enabled: opts.integrations_enabled,
        }),
        state_file: opts.state_file.clone(),
        admin_token: opts.admin_token.clone().unwrap_or_else(random_admin_token),
    });
    shared.persist(&lock(&shared.state));
    let listener =
        tokio::net::TcpListener::bind(opts.listen).await.with_context(|| format!("binding {}", opts.listen))?;
    let addr = listener.local_addr()?;
    let app = routes::router(shared.clone()).merge(admin::router(shared.clone()));
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let serve =
            axum::serve(conn::SimListener(listener), app.into_make_service_with_connect_info::<conn::ConnCtl>())
                .with_graceful_shutdown(async {
                    let _ = stop_rx.await;
                });
        if let Err(e) = serve.await {
            tracing::error!("simulator server: {e}");
        }
    });
    Ok(SimHandle { addr, shared, stop: Some(stop_tx), task: Some(task) })
}

impl SimHandle {
    /// `http://127.0.0.1:PORT`, no trailing slash.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token `/_admin/*` requests must carry in [`ADMIN_TOKEN_HEADER`].
    pub fn admin_token(&self) -> &str {
        &self.shared.admin_token
    }

    /// A copy of the whole state (same as `GET /_admin/state`).
    pub fn snapshot(&self) -> SimState {
        lock(&self.shared.state).clone()
    }

    /// A copy of the counters (same as `GET /_admin/counters`).
    pub fn counters(&self) -> Counters {
        lock(&self.shared.counters).clone()
    }

    /// Replaces the fault configuration (same as `POST /_admin/faults`).
    pub fn set_faults(&self, config: FaultConfig) -> anyhow::Result<()> {
        config.validate()?;
        *lock(&self.shared.faults) = FaultEngine::new(config);
        Ok(())
    }

    /// Stops accepting, lets in-flight requests finish, and saves the state.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
        self.shared.persist(&lock(&self.shared.state));
    }
}

impl Drop for SimHandle {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
    }
}

/// A simulator on its own thread and runtime, for synchronous callers; stops on drop.
pub struct BackgroundSim {
    base_url: String,
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// Starts a simulator on a dedicated thread; returns once it is listening.
pub fn start_in_background(opts: SimOptions) -> anyhow::Result<BackgroundSim> {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<anyhow::Result<(SocketAddr, Arc<Shared>)>>();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name("stitch-sim".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e.into()));
                return;
            }
        };
        rt.block_on(async move {
            match start(opts).await {
                Ok(h) => {
                    let _ = ready_tx.send(Ok((h.addr, h.shared.clone())));
                    let _ = stop_rx.await;
                    h.shutdown().await;
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                }
            }
        });
    })?;
    let (addr, shared) = ready_rx.recv().context("simulator thread died while starting")??;
    Ok(BackgroundSim { base_url: format!("http://{addr}"), addr, shared, stop: Some(stop_tx), thread: Some(thread) })
}

impl BackgroundSim {
    pub fn base_url(&self) -> String {
        self.base_url.clone()
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The token `/_admin/*` requests must carry in [`ADMIN_TOKEN_HEADER`].
    pub fn admin_token(&self) -> &str {
        &self.shared.admin_token
    }

    pub fn snapshot(&self) -> SimState {
        lock(&self.shared.state).clone()
    }

    pub fn counters(&self) -> Counters {
        lock(&self.shared.counters).clone()
    }
}

impl Drop for BackgroundSim {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
