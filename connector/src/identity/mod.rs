//! Who is asking, and what the federation says about them: `hanse-identity` (keys, DIDs, tokens, credentials, the
//! [`Identity`] of a running connector), and [`gaiax`], this connector's Gaia-X self-description, which is made from
//! its catalogue.

pub use hanse_identity::*;

pub mod gaiax;
