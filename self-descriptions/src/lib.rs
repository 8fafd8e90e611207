//! Self-descriptions of a Hanse connector and its datasets: DCAT-AP 3 / HealthDCAT-AP dataset descriptions and
//! Gaia-X 25.11 credentials, with the SHACL validation that checks them.
//!
//! Pure: values in, JSON-LD values, triples and validation results out. No I/O, no clock.

pub mod dcat;
pub mod gaiax;
pub mod shacl;
