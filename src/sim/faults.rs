//! Fault injection: what can go wrong between a client and Stitch, on demand.
//!
//! Two modes, checked in this order for every non-admin request:
//! 1. a deterministic **queue**: the first entry matching the request (method and path prefix,
//!    both optional) is removed and injected, so tests are exact;
//! 2. probabilistic **rates** drawn from an RNG seeded with `seed`, so runs are reproducible.
//!
//! `latency_ms` delays every non-admin request in addition.
//!
//! JSON form (all fields optional):
//! ```json
//! {"latency_ms": 0, "retry_after": 1, "seed": 0,
//!  "rates": {"429": 0.0, "500": 0.0, "502": 0.0, "504": 0.0, "drop": 0.0,
//!            "lost_answer": 0.0, "lost_answer_504": 0.0},
//!  "queue": [{"fault": "429", "retry_after": 1, "method": "POST",
//!             "path_prefix": "/api2/v1/integrations/products"}]}
//! ```

use rand::{rngs::StdRng, Rng, SeedableRng};
use serde::{Deserialize, Serialize};

/// Kinds of fault. `drop`, `429`, `5xx` stop the request before it is applied; the two
/// `lost_answer` kinds apply it and then lose the answer, which is what makes retries unsafe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum FaultKind {
    /// Extra delay of `ms` before handling (queue only; rates use `latency_ms`).
    #[serde(rename = "latency")]
    Latency,
    /// 429 with `Retry-After`.
    #[serde(rename = "429")]
    RateLimited,
    #[serde(rename = "500")]
    ServerError,
    #[serde(rename = "502")]
    BadGateway,
    /// 504 without applying the request.
    #[serde(rename = "504")]
    GatewayTimeout,
    /// Connection closed without any answer; the request is not applied.
    #[serde(rename = "drop")]
    Drop,
    /// Request applied, then the connection closed without any answer.
    #[serde(rename = "lost_answer")]
    LostAnswer,
    /// Request applied, then answered 504 as a gateway that gave up waiting would.
    #[serde(rename = "lost_answer_504")]
    LostAnswer504,
}

impl FaultKind {
    /// Counter key under `faults_injected`.
    pub fn name(self) -> &'static str {
        match self {
            FaultKind::Latency => "latency",
            FaultKind::RateLimited => "429",
            FaultKind::ServerError => "500",
            FaultKind::BadGateway => "502",
            FaultKind::GatewayTimeout => "504",
            FaultKind::Drop => "drop",
            FaultKind::LostAnswer => "lost_answer",
            FaultKind::LostAnswer504 => "lost_answer_504",
        }
    }
}

/// Per-request probabilities; their sum must not exceed 1.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FaultRates {
    #[serde(rename = "429")]
    pub rate_limited: f64,
    #[serde(rename = "500")]
    pub server_error: f64,
    #[serde(rename = "502")]
    pub bad_gateway: f64,
    #[serde(rename = "504")]
    pub gateway_timeout: f64,
    pub drop: f64,
    pub lost_answer: f64,
    pub lost_answer_504: f64,
}

impl FaultRates {
    fn table(&self) -> [(FaultKind, f64); 7] {
        [
            (FaultKind::RateLimited, self.rate_limited),
            (FaultKind::ServerError, self.server_error),
            (FaultKind::BadGateway, self.bad_gateway),
            (FaultKind::GatewayTimeout, self.gateway_timeout),
            (FaultKind::Drop, self.drop),
            (FaultKind::LostAnswer, self.lost_answer),
            (FaultKind::LostAnswer504, self.lost_answer_504),
        ]
    }
}

/// One fault for the next matching request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueuedFault {
    pub fault: FaultKind,
    /// Seconds in `Retry-After` for `429`; defaults to the config's `retry_after`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
    /// Delay for `latency`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ms: Option<u64>,
    /// Matches when the request path starts with it (query excluded).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Matches this HTTP method, case-insensitive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
}

fn default_retry_after() -> u64 {
    1
}

/// The whole fault configuration; `POST /_admin/faults` replaces it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    #[serde(default)]
    pub latency_ms: u64,
    #[serde(default = "default_retry_after")]
    pub retry_after: u64,
    #[serde(default)]
    pub seed: u64,
    #[serde(default)]
    pub rates: FaultRates,
    #[serde(default)]
    pub queue: Vec<QueuedFault>,
}

impl Default for FaultConfig {
    fn default() -> Self {
        FaultConfig { latency_ms: 0, retry_after: 1, seed: 0, rates: FaultRates::default(), queue: Vec::new() }
    }
}

/// Why a fault configuration is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultConfigError {
    #[error("rate for {fault} must be within 0..=1, got {rate}")]
    RateOutOfRange { fault: &'static str, rate: f64 },
    #[error("fault rates sum to {0}, more than 1")]
    RatesAboveOne(f64),
    #[error("a queued latency fault needs \"ms\"")]
    LatencyWithoutMs,
}

impl FaultConfig {
    /// Rejects rates outside [0, 1] or summing above 1, which would make the draw meaningless.
    pub fn validate(&self) -> Result<(), FaultConfigError> {
        let mut sum = 0.0;
        for (kind, r) in self.rates.table() {
            if !(0.0..=1.0).contains(&r) {
                return Err(FaultConfigError::RateOutOfRange { fault: kind.name(), rate: r });
            }
            sum += r;
        }
        if sum > 1.0 + 1e-9 {
            return Err(FaultConfigError::RatesAboveOne(sum));
        }
        if self.queue.iter().any(|q| q.fault == FaultKind::Latency && q.ms.is_none()) {
            return Err(FaultConfigError::LatencyWithoutMs);
        }
        Ok(())
    }
}

/// A fault chosen for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Planned {
    pub kind: FaultKind,
    pub retry_after: u64,
    pub ms: u64,
}

/// The configuration plus its RNG and what is left of the queue.
#[derive(Debug)]
pub struct FaultEngine {
    config: FaultConfig,
    rng: StdRng,
}

impl FaultEngine {
    pub fn new(config: FaultConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        FaultEngine { config, rng }
    }

    pub fn config(&self) -> &FaultConfig {
        &self.config
    }

    /// Fixed latency for every non-admin request.
    pub fn latency_ms(&self) -> u64 {
        self.config.latency_ms
    }

    /// Picks the fault (if any) for a request; consumes a matching queue entry.
    pub fn pick(&mut self, method: &str, path: &str) -> Option<Planned> {
        let pos = self.config.queue.iter().position(|q| {
            q.method.as_deref().is_none_or(|m| m.eq_ignore_ascii_case(method))
                && q.path_prefix.as_deref().is_none_or(|p| path.starts_with(p))
        });
        if let Some(pos) = pos {
            let q = self.config.queue.remove(pos);
            return Some(Planned {
                kind: q.fault,
                retry_after: q.retry_after.unwrap_or(self.config.retry_after),
                ms: q.ms.unwrap_or(0),
            });
        }
        let table = self.config.rates.table();
        if table.iter().all(|(_, r)| *r <= 0.0) {
            return None;
        }
        let draw: f64 = self.rng.random();
        let mut acc = 0.0;
        for (kind, r) in table {
            acc += r;
            if draw < acc {
                return Some(Planned { kind, retry_after: self.config.retry_after, ms: 0 });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_matches_method_and_prefix_and_is_consumed() {
        let cfg: FaultConfig = serde_json::from_value(serde_json::json!({
            "queue": [{"fault":"429","retry_after":3,"method":"post","path_prefix":"/api2/v1/integrations/products"}]
        }))
        .unwrap();
        let mut e = FaultEngine::new(cfg);
        assert_eq!(e.pick("GET", "/api2/v1/integrations/products"), None);
        let p = e.pick("POST", "/api2/v1/integrations/products").unwrap();
        assert_eq!((p.kind, p.retry_after), (FaultKind::RateLimited, 3));
        assert_eq!(e.pick("POST", "/api2/v1/integrations/products"), None);
    }

    #[test]
    fn rates_are_reproducible_and_validated() {
        let cfg = FaultConfig {
            rates: FaultRates { server_error: 0.5, ..Default::default() },
            seed: 7,
            ..Default::default()
        };
        let run = |cfg: FaultConfig| {
            let mut e = FaultEngine::new(cfg);
            (0..64).map(|_| e.pick("GET", "/").is_some()).collect::<Vec<_>>()
        };
        let a = run(cfg.clone());
        assert_eq!(a, run(cfg));
        assert!(a.iter().any(|x| *x) && a.iter().any(|x| !*x));
        let bad = FaultConfig {
            rates: FaultRates { drop: 0.7, lost_answer: 0.7, ..Default::default() },
            ..Default::default()
        };
        assert!(matches!(bad.validate(), Err(FaultConfigError::RatesAboveOne(_))));
        let bad = FaultConfig { rates: FaultRates { drop: 1.5, ..Default::default() }, ..Default::default() };
        assert!(matches!(bad.validate(), Err(FaultConfigError::RateOutOfRange { rate, .. }) if rate == 1.5));
    }
}
