//! Prometheus metrics for long-running `watch` processes.
//!
//! Code anywhere records through the `metrics` macros (cheap no-ops until a recorder is
//! installed); `install` sets up the Prometheus recorder once and `serve` exposes `/metrics`
//! and `/healthz` on a loopback address of the operator's choosing.

use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Install the recorder (idempotent). Cycle durations get buckets suited to seconds-long cycles.
pub fn install() -> Result<PrometheusHandle, metrics_exporter_prometheus::BuildError> {
    if let Some(h) = HANDLE.get() {
        return Ok(h.clone());
    }
    let handle = PrometheusBuilder::new()
        .set_buckets_for_metric(
            Matcher::Full("stitch_bridge_cycle_duration_seconds".into()),
            &[0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0],
        )?
        .install_recorder()?;
    Ok(HANDLE.get_or_init(|| handle).clone())
}

/// Accounts that are not healthy, by name: "halted: …" or "needs attention: <reason>". What
/// `/healthz` answers from; cycles update it as they end.
static UNHEALTHY: std::sync::Mutex<std::collections::BTreeMap<String, String>> =
    std::sync::Mutex::new(std::collections::BTreeMap::new());

fn set_health(account: &str, problem: Option<String>) {
    let mut m = UNHEALTHY.lock().unwrap_or_else(|e| e.into_inner());
    match problem {
        Some(p) => {
            m.insert(account.to_string(), p);
        }
        None => {
            m.remove(account);
        }
    }
}

/// `/healthz`: 200 `ok` when every account is fine, else 503 listing the halted accounts and
/// those that need attention (one per line), so a load balancer or pager sees a person is needed.
pub fn health() -> (u16, String) {
    let m = UNHEALTHY.lock().unwrap_or_else(|e| e.into_inner());
    if m.is_empty() {
        return (200, "ok\n".into());
    }
    (503, m.iter().map(|(a, p)| format!("{a}: {p}\n")).collect())
}

/// Serve `/metrics` (Prometheus text) and `/healthz` on an already bound listener (binding
/// first lets the caller report a taken port before anything starts) until the process ends.
pub async fn serve(listener: tokio::net::TcpListener, handle: PrometheusHandle) -> std::io::Result<()> {
    use axum::{http::StatusCode, routing::get, Router};
    let app = Router::new().route("/metrics", get(move || std::future::ready(handle.render()))).route(
        "/healthz",
        get(|| {
            let (code, body) = health();
            std::future::ready((StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE), body))
        }),
    );
    axum::serve(listener, app).await
}

/// The account's "needs attention" state: `stitch_bridge_account_attention{account,reason}` is 1
/// for the current reason and 0 for every other of `all_reasons` (every label the engine knows),
/// so a cleared state shows as 0, not as a stale 1.
pub fn record_attention(account: &str, reason: Option<&str>, all_reasons: &[&'static str]) {
    for &r in all_reasons {
        let on = reason == Some(r);
        metrics::gauge!("stitch_bridge_account_attention", "account" => account.to_string(), "reason" => r)
            .set(if on { 1.0 } else { 0.0 });
    }
    let mut m = UNHEALTHY.lock().unwrap_or_else(|e| e.into_inner());
    match reason {
        Some(r) => {
            m.insert(account.to_string(), format!("needs attention: {r}"));
        }
        None => {
            if m.get(account).is_some_and(|p| p.starts_with("needs attention")) {
                m.remove(account);
            }
        }
    }
}

/// API paths with ids folded, so the endpoint label has a bounded set of values.
pub fn endpoint_label(method: &str, path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    let mut out = String::from(method);
    out.push(' ');
    let mut after_fulfillments = false;
    for seg in path.split('/').filter(|s| !s.is_empty()) {
        out.push('/');
        if after_fulfillments {
            out.push_str("{id}");
        } else {
            out.push_str(seg);
        }
        after_fulfillments = seg == "fulfillments" && !after_fulfillments;
    }
    out
}

/// One file a cycle finished, as the metrics count it.
#[derive(Debug, Clone, Copy)]
pub struct FileDone<'a> {
    pub kind: &'a str,
    /// Where it ended (`archived`, `rejected`, `pending`, `skipped`).
    pub outcome: &'a str,
    pub accepted: u64,
    pub rejected: u64,
}

/// What a finished cycle did, in plain values (the engine fills it from its report).
#[derive(Debug, Clone, Default)]
pub struct CycleDone<'a> {
    pub account: &'a str,
    pub files: Vec<FileDone<'a>>,
    pub orders_sent: u64,
    pub cancels_sent: u64,
    /// Why the account is halted, if it is.
    pub halted: Option<&'a str>,
    /// The "needs attention" reason label, if the account needs a person.
    pub attention: Option<&'a str>,
    pub seconds: f64,
    pub oldest_waiting_secs: Option<f64>,
}

/// Record what a finished cycle did (files and records by outcome, duration, halt state).
pub fn record_cycle(c: &CycleDone<'_>) {
    let account = c.account.to_string();
    for f in &c.files {
        let (kind, outcome) = (f.kind.to_string(), f.outcome.to_string());
        metrics::counter!("stitch_bridge_files_total", "account" => account.clone(), "kind" => kind.clone(), "outcome" => outcome).increment(1);
        metrics::counter!("stitch_bridge_records_total", "account" => account.clone(), "kind" => kind.clone(), "outcome" => "accepted").increment(f.accepted);
        metrics::counter!("stitch_bridge_records_total", "account" => account.clone(), "kind" => kind, "outcome" => "rejected").increment(f.rejected);
    }
    metrics::counter!("stitch_bridge_orders_sent_total", "account" => account.clone()).increment(c.orders_sent);
    metrics::counter!("stitch_bridge_cancellations_sent_total", "account" => account.clone()).increment(c.cancels_sent);
    metrics::histogram!("stitch_bridge_cycle_duration_seconds", "account" => account.clone()).record(c.seconds);
    metrics::gauge!("stitch_bridge_account_halted", "account" => account.clone()).set(if c.halted.is_some() {
        1.0
    } else {
        0.0
    });
    match (c.halted, c.attention) {
        (Some(h), _) => set_health(&account, Some(format!("halted: {h}"))),
        (None, Some(reason)) => set_health(&account, Some(format!("needs attention: {reason}"))),
        (None, None) => set_health(&account, None),
    }
    metrics::gauge!("stitch_bridge_oldest_unprocessed_file_age_seconds", "account" => account)
        .set(c.oldest_waiting_secs.unwrap_or(0.0));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_labels_fold_ids() {
        assert_eq!(
            endpoint_label("GET", "/api2/v1/integrations/fulfillments/123/line_items"),
            "GET /api2/v1/integrations/fulfillments/{id}/line_items"
        );
        assert_eq!(
            endpoint_label("GET", "/api2/v1/integrations/fulfillments?page=2"),
            "GET /api2/v1/integrations/fulfillments"
        );
        assert_eq!(
            endpoint_label("PUT", "/api2/v1/integrations/fulfillments/9"),
            "PUT /api2/v1/integrations/fulfillments/{id}"
        );
        assert_eq!(
            endpoint_label("GET", "/api2/v1/integrations/shipments?fulfillment_id=9"),
            "GET /api2/v1/integrations/shipments"
        );
    }
}
