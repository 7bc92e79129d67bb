//! stitch-bridge: warehouses' CSV files on a drop <-> the Stitch Labs Integrations API.
//!
//! The pure core (`formats`, `reconcile`) never does I/O; the shell (`drop`, `stitch`, `ledger`,
//! `engine`, `cli`) does nothing but I/O and sequencing. See ARCHITECTURE.md for the map.

pub mod cli;
pub mod config;
pub mod drop;
pub mod engine;
pub mod formats;
pub mod ledger;
pub mod metrics;
pub mod model;
pub mod reconcile;
pub mod report;
pub mod sim;
pub mod stitch;
pub mod ui;
pub mod wrap;
pub mod x12;
