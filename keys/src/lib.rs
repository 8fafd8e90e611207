//! The participant's signing keys and JOSE (decision 0021): below both the audit log, which signs tree heads and
//! checks receipts, and identity, which signs tokens and credentials, so that neither imports the other for them.
//!
//! - [`jose`]: the one place Hanse touches josekit;
//! - [`ring`]: the current signing key and the keys it replaced (`hanse keys rotate`);
//! - [`agree`]: pairwise secrets between sites (X25519) and secrets derived from the participant key.

pub mod agree;
pub mod jose;
pub mod ring;

use openssl::ec::{EcGroup, EcKey};
use openssl::nid::Nid;
use openssl::pkey::{PKey, Private};

/// How long a token we issue is valid, and the longest lifetime we accept (a retired key signs nothing newer).
pub const TOKEN_LIFETIME_SECONDS: i64 = 300;
/// How far the clocks of two participants may disagree.
pub const CLOCK_SKEW_SECONDS: i64 = 30;

/// A new EC P-256 key.
pub fn generate_p256() -> Result<PKey<Private>, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    PKey::from_ec_key(EcKey::generate(&group)?)
}
