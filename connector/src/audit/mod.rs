//! The tamper-evident audit log.

pub mod merkle;
