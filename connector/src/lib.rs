//! Hanse: a sovereign data space connector.
//!
//! The library behind the `hanse` binary: configuration, the store, the two listeners (public: DSP protocol; management:
//! operators), and the command line. See ARCHITECTURE.md for the code map.

pub mod apps;
pub mod audit;
pub mod broker;
pub mod catalog;
pub mod cli;
pub mod client;
pub mod cluster;
pub mod compute;
pub mod config;
pub mod console;
pub mod converge;
pub mod dataplane;
pub mod demo;
pub mod dispatch;
pub mod dsp;
pub mod error;
pub mod fetch;
pub mod files;
pub mod health;
pub mod identity;
pub mod init;
pub mod lineage;
pub mod management;
pub mod measure;
pub mod memory;
pub mod negotiation;
pub mod peers;
pub mod problem;
pub mod process;
pub mod protocol;
pub mod server;
pub mod sparql;
pub mod state;
pub use hanse_store as store;
pub mod telemetry;
#[cfg(feature = "testing")]
pub mod testing;
pub mod transfer;
pub mod transport;
