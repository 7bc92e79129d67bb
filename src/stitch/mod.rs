//! Stitch Labs API access: the wire contract and the HTTP client.

pub mod client;
pub mod wire;

pub use client::{ApiError, ClientOptions, Deadline, HaltKind, OrderView, StitchClient};
