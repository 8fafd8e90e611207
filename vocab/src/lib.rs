//! Vocabulary for Hanse: namespace IRIs, the JSON-LD contexts bundled with the connector, and an offline JSON-LD
//! toolkit (expand, compact to the DSP wire form, N-Quads for the RDF catalogue).
//!
//! Pure: no I/O, no async runtime, no logging. Values in, values out.

pub mod contexts;
pub mod jsonld;
pub mod ns;
#[cfg(feature = "schema")]
pub mod schema;
