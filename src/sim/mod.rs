//! Simulator of the Stitch Labs API.
pub mod state;
