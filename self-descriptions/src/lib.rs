//! Self-descriptions of a Hanse connector and its datasets: DCAT-AP 3 / HealthDCAT-AP dataset descriptions (and, as
//! the identity work lands, Gaia-X credentials).
//!
//! Pure: values in, JSON-LD values and triples out. No I/O, no clock.

pub mod dcat;
