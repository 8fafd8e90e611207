//! Compute-to-data, pure: values in, results out (decision 0021). No I/O beyond the readers and writers a caller
//! hands in, no async, no clock but the deadline a caller sets.
//!
//! - [`table`]: the typed schema, CSV ingestion (every bad row named, all or nothing) and the columnar table format;
//! - [`columnar`]: Parquet files read against a schema (and written, for synthetic data);
//! - [`analysis`]: the templates (`aggregate`, `crosstab`, a `glm` Newton round, `fedavg` local SGD) as functions of a
//!   table, and the small linear algebra they need;
//! - [`disclosure`]: the release rules (cell counts, dominance) a provider applies before anything leaves;
//! - [`fhir`]: FHIR R4 exports (NDJSON, Bundles) read into a table of patients by a declarative mapping;
//! - [`privacy`]: differential privacy of training rounds (clipping, Gaussian noise, zCDP accounting);
//! - [`sandbox`]: providers' own algorithms as WebAssembly modules, under fuel and memory limits;
//! - [`secure`]: secure aggregation's fixed-point encoding and masks;
//! - [`synth`]: synthetic cohorts for demonstrations and tests.

pub mod analysis;
pub mod columnar;
pub mod disclosure;
pub mod fhir;
pub mod privacy;
pub mod sandbox;
pub mod secure;
pub mod synth;
pub mod table;
