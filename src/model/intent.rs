//! What the outbox holds: the identity of each remote write (`IntentKey`) and what it sent
//! (`Payload`). Both are stored as text, so both are the ledger's on-disk format: the key
//! strings are those release 0.1 wrote, and payloads carry a version (`v`, absent = 1) so a
//! later release can change them and an older one refuses what it cannot read instead of
//! guessing.

use super::{FulfillmentStatus, OrderAction};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The payload version this code writes; it reads this one and every earlier one.
pub const PAYLOAD_VERSION: u32 = 1;

/// Identity of one remote write. Derived from content, never from a run or a row id, so the
/// same write planned twice (a retried file, a re-dropped copy) is one intent.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IntentKey {
    /// A product's stock from one file (`content` is the file's SHA-256): a delta is applied
    /// once per file, never once per run.
    Product { content: String, sku: String },
    /// An order write from one file.
    Order { content: String, order_ref: String },
    /// A shipment: one tracking number on one fulfillment, whichever file carries it.
    Shipment { fulfillment_id: String, tracking_number: String },
    /// A status set on a fulfillment.
    Status { fulfillment_id: String, status: FulfillmentStatus },
}

impl IntentKey {
    pub fn shipment(fulfillment_id: &str, tracking_number: &str) -> Self {
        IntentKey::Shipment { fulfillment_id: fulfillment_id.to_string(), tracking_number: tracking_number.to_string() }
    }

    pub fn status(fulfillment_id: &str, status: FulfillmentStatus) -> Self {
        IntentKey::Status { fulfillment_id: fulfillment_id.to_string(), status }
    }

    pub fn kind(&self) -> IntentKind {
        match self {
            IntentKey::Product { .. } => IntentKind::Product,
            IntentKey::Order { .. } => IntentKind::Order,
            IntentKey::Shipment { .. } => IntentKind::Shipment,
            IntentKey::Status { .. } => IntentKind::Status,
        }
    }

    /// The record key shown in result files: SKU, order reference, `fulfillment/tracking`.
    pub fn record_key(&self) -> String {
        match self {
            IntentKey::Product { sku, .. } => sku.clone(),
            IntentKey::Order { order_ref, .. } => order_ref.clone(),
            IntentKey::Shipment { fulfillment_id, tracking_number } => format!("{fulfillment_id}/{tracking_number}"),
            IntentKey::Status { fulfillment_id, status } => format!("{fulfillment_id}:{}", status.tag()),
        }
    }
}

impl fmt::Display for IntentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            IntentKey::Product { content, sku } => write!(f, "inv:{content}:{sku}"),
            IntentKey::Order { content, order_ref } => write!(f, "ord:{content}:{order_ref}"),
            IntentKey::Shipment { fulfillment_id, tracking_number } => {
                write!(f, "shp:{fulfillment_id}/{tracking_number}")
            }
            IntentKey::Status { fulfillment_id, status } => write!(f, "sts:{fulfillment_id}:{}", status.tag()),
        }
    }
}

/// Why stored outbox text could not be read back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ContentError {
    #[error("intent key {0:?} is not one this release knows")]
    Key(String),
    #[error("intent kind {0:?} is not one this release knows")]
    Kind(String),
    #[error("the {kind} payload of intent {key} cannot be read: {reason}")]
    Payload { key: String, kind: &'static str, reason: String },
    #[error(
        "the {kind} payload of intent {key} has version {version}, newer than this release reads ({PAYLOAD_VERSION}); run the newer stitch-bridge"
    )]
    Newer { key: String, kind: &'static str, version: u32 },
}

impl FromStr for IntentKey {
    type Err = ContentError;
    /// The separators: a content hash and a fulfillment id never hold them, so a SKU, order
    /// reference or tracking number may (everything after the first separator is theirs).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || ContentError::Key(s.to_string());
        let (prefix, rest) = s.split_once(':').ok_or_else(bad)?;
        let nonempty = |a: &str, b: &str| !a.is_empty() && !b.is_empty();
        match prefix {
            "inv" | "ord" => {
                let (content, id) = rest.split_once(':').filter(|(a, b)| nonempty(a, b)).ok_or_else(bad)?;
                let (content, id) = (content.to_string(), id.to_string());
                Ok(if prefix == "inv" {
                    IntentKey::Product { content, sku: id }
                } else {
                    IntentKey::Order { content, order_ref: id }
                })
            }
            "shp" => {
                let (fid, t) = rest.split_once('/').filter(|(a, b)| nonempty(a, b)).ok_or_else(bad)?;
                Ok(IntentKey::Shipment { fulfillment_id: fid.to_string(), tracking_number: t.to_string() })
            }
            "sts" => {
                let (fid, tag) = rest.rsplit_once(':').filter(|(a, b)| nonempty(a, b)).ok_or_else(bad)?;
                let status = FulfillmentStatus::from_tag(tag).ok_or_else(bad)?;
                Ok(IntentKey::Status { fulfillment_id: fid.to_string(), status })
            }
            _ => Err(bad()),
        }
    }
}

/// The `kind` column: which resolver asks Stitch about a pending intent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IntentKind {
    Product,
    Order,
    Shipment,
    Status,
}

impl IntentKind {
    pub const ALL: [IntentKind; 4] = [IntentKind::Product, IntentKind::Order, IntentKind::Shipment, IntentKind::Status];

    pub fn as_str(self) -> &'static str {
        match self {
            IntentKind::Product => "product",
            IntentKind::Order => "order",
            IntentKind::Shipment => "shipment",
            IntentKind::Status => "status",
        }
    }
}

impl FromStr for IntentKind {
    type Err = ContentError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|k| k.as_str() == s).ok_or_else(|| ContentError::Kind(s.to_string()))
    }
}

fn v1() -> u32 {
    1
}

/// A product upsert: the stock sent, and whether it created the product (for the outcome a
/// confirmation after a crash reports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProductPayload {
    #[serde(default = "v1")]
    pub v: u32,
    pub sku: String,
    pub stock: i64,
    pub creates: bool,
}

/// An order write. Only a `create` can be found again by asking Stitch for its reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderPayload {
    #[serde(default = "v1")]
    pub v: u32,
    pub po_num: String,
    pub action: OrderAction,
}

/// A shipment post; `file` is the SHA-256 of the file that sent it (a re-run of that same file
/// still owes the fulfillment its status).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipmentPayload {
    #[serde(default = "v1")]
    pub v: u32,
    pub fulfillment_id: String,
    pub tracking_number: String,
    pub file: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusPayload {
    #[serde(default = "v1")]
    pub v: u32,
    pub fulfillment_id: String,
    pub status: FulfillmentStatus,
}

/// What an intent sent, by kind.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Payload {
    Product(ProductPayload),
    Order(OrderPayload),
    Shipment(ShipmentPayload),
    Status(StatusPayload),
}

impl Payload {
    pub fn product(sku: &str, stock: i64, creates: bool) -> Self {
        Payload::Product(ProductPayload { v: PAYLOAD_VERSION, sku: sku.to_string(), stock, creates })
    }

    pub fn order(po_num: &str, action: OrderAction) -> Self {
        Payload::Order(OrderPayload { v: PAYLOAD_VERSION, po_num: po_num.to_string(), action })
    }

    pub fn shipment(fulfillment_id: &str, tracking_number: &str, file: &str) -> Self {
        Payload::Shipment(ShipmentPayload {
            v: PAYLOAD_VERSION,
            fulfillment_id: fulfillment_id.to_string(),
            tracking_number: tracking_number.to_string(),
            file: file.to_string(),
        })
    }

    pub fn status(fulfillment_id: &str, status: FulfillmentStatus) -> Self {
        Payload::Status(StatusPayload { v: PAYLOAD_VERSION, fulfillment_id: fulfillment_id.to_string(), status })
    }

    pub fn kind(&self) -> IntentKind {
        match self {
            Payload::Product(_) => IntentKind::Product,
            Payload::Order(_) => IntentKind::Order,
            Payload::Shipment(_) => IntentKind::Shipment,
            Payload::Status(_) => IntentKind::Status,
        }
    }

    /// The stored text (JSON).
    pub fn to_json(&self) -> String {
        let r = match self {
            Payload::Product(p) => serde_json::to_string(p),
            Payload::Order(p) => serde_json::to_string(p),
            Payload::Shipment(p) => serde_json::to_string(p),
            Payload::Status(p) => serde_json::to_string(p),
        };
        r.expect("payloads are plain structs of strings and numbers")
    }

    /// Read a stored payload of `kind` (`key` names the intent in errors). A missing field, a
    /// field of the wrong type or a newer version is an error, never a silent default.
    pub fn from_json(kind: IntentKind, key: &str, text: &str) -> Result<Self, ContentError> {
        let err = |reason: String| ContentError::Payload { key: key.to_string(), kind: kind.as_str(), reason };
        let version = serde_json::from_str::<Versioned>(text).map_err(|e| err(e.to_string()))?.v;
        if version > PAYLOAD_VERSION {
            return Err(ContentError::Newer { key: key.to_string(), kind: kind.as_str(), version });
        }
        let p = match kind {
            IntentKind::Product => serde_json::from_str(text).map(Payload::Product),
            IntentKind::Order => serde_json::from_str(text).map(Payload::Order),
            IntentKind::Shipment => serde_json::from_str(text).map(Payload::Shipment),
            IntentKind::Status => serde_json::from_str(text).map(Payload::Status),
        };
        p.map_err(|e| err(e.to_string()))
    }
}

#[derive(Deserialize)]
struct Versioned {
    #[serde(default = "v1")]
    v: u32,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn status() -> impl Strategy<Value = FulfillmentStatus> {
        prop::sample::select(FulfillmentStatus::ALL.to_vec())
    }

    /// Ids as Stitch and SHA-256 make them: no separators.
    fn id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_-]{1,24}"
    }

    /// What a warehouse may put in a SKU, order reference or tracking number: anything
    /// printable, separators included.
    fn free() -> impl Strategy<Value = String> {
        "[^\\x00-\\x1f]{1,40}"
    }

    fn key() -> impl Strategy<Value = IntentKey> {
        prop_oneof![
            (id(), free()).prop_map(|(content, sku)| IntentKey::Product { content, sku }),
            (id(), free()).prop_map(|(content, order_ref)| IntentKey::Order { content, order_ref }),
            (id(), free())
                .prop_map(|(fulfillment_id, tracking_number)| IntentKey::Shipment { fulfillment_id, tracking_number }),
            (free().prop_filter("no ':' at the end", |s| !s.ends_with(':')), status())
                .prop_map(|(fulfillment_id, status)| IntentKey::Status { fulfillment_id, status }),
        ]
    }

    proptest! {
        #[test]
        fn keys_round_trip(k in key()) {
            let text = k.to_string();
            prop_assert_eq!(text.parse::<IntentKey>(), Ok(k));
        }

        #[test]
        fn payloads_round_trip(sku in free(), stock in any::<i64>(), creates in any::<bool>(), s in status()) {
            for p in [
                Payload::product(&sku, stock, creates),
                Payload::order(&sku, OrderAction::Cancel),
                Payload::shipment("F1", &sku, "abc"),
                Payload::status(&sku, s),
            ] {
                prop_assert_eq!(Payload::from_json(p.kind(), "k", &p.to_json()), Ok(p.clone()));
            }
        }
    }

    /// The exact strings release 0.1 wrote (see tests/fixtures/ledger-v1) still read.
    #[test]
    fn release_0_1_text_reads() {
        let k: IntentKey = "inv:9f2c:WIDGET:RED".parse().unwrap();
        assert_eq!(k, IntentKey::Product { content: "9f2c".into(), sku: "WIDGET:RED".into() });
        let k: IntentKey = "shp:1001/1Z/99".parse().unwrap();
        assert_eq!(k, IntentKey::Shipment { fulfillment_id: "1001".into(), tracking_number: "1Z/99".into() });
        let k: IntentKey = "sts:1001:partially-shipped".parse().unwrap();
        assert_eq!(k.record_key(), "1001:partially-shipped");
        let p = Payload::from_json(IntentKind::Order, "k", r#"{"po_num":"PO-1","action":"create"}"#).unwrap();
        assert_eq!(p, Payload::order("PO-1", OrderAction::Create));
        let p = Payload::from_json(IntentKind::Status, "k", r#"{"fulfillment_id":"F","status":"Sent to warehouse"}"#);
        assert_eq!(p, Ok(Payload::status("F", FulfillmentStatus::SentToWarehouse)));
    }

    #[test]
    fn damaged_or_newer_text_is_refused() {
        for bad in ["", "inv:", "inv:abc", "inv::X", "shp:F1", "sts:F1:done", "xyz:1:2", "shp:/T"] {
            assert!(bad.parse::<IntentKey>().is_err(), "{bad:?}");
        }
        let missing = Payload::from_json(IntentKind::Product, "inv:a:B", r#"{"sku":"B","creates":true}"#);
        assert!(
            matches!(missing, Err(ContentError::Payload { ref reason, .. }) if reason.contains("stock")),
            "{missing:?}"
        );
        let newer = Payload::from_json(IntentKind::Product, "k", r#"{"v":2,"sku":"B","stock":1,"creates":true}"#);
        assert!(matches!(newer, Err(ContentError::Newer { version: 2, .. })));
        assert!(Payload::from_json(IntentKind::Order, "k", r#"{"po_num":"P","action":"Create"}"#).is_err());
        assert!("parcel".parse::<IntentKind>().is_err());
    }
}
