//! See `x12/mod.rs`.
