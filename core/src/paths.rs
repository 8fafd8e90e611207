//! Well-known paths of a Hanse connector's public listener.

/// Where the DSP 2025-1 endpoints live.
pub const DSP_BASE: &str = "/protocol/2025-1";
