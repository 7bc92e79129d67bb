//! Shared vocabulary: the plain types that several layers speak (formats, reconcile, the
//! ledger, the engine, reports). Nothing here does I/O, and nothing here imports a layer above
//! it: every file is a leaf.

mod attention;
mod intent;
mod order;
mod outcome;
mod status;

pub use attention::{Reason, Recorded};
pub use intent::{
    ContentError, IntentKey, IntentKind, OrderPayload, Payload, ProductPayload, ShipmentPayload, StatusPayload,
    PAYLOAD_VERSION,
};
pub use order::{OrderAction, ShippingSpeed};
pub use outcome::Outcome;
pub use status::{FulfillmentStatus, SentState, UnknownWord};
