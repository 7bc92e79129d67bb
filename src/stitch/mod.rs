//! Stitch Labs API access.

pub mod wire;
