//! Well-known paths of a Hanse connector's public listener.

/// Where the DSP 2025-1 endpoints live.
pub const DSP_BASE: &str = "/protocol/2025-1";

/// A transfer's data endpoint on the public listener at `public_url`.
pub fn data_endpoint(public_url: &str, transfer_id: &str) -> String {
    format!("{}/data/{transfer_id}", public_url.trim_end_matches('/'))
}

/// A compute transfer's session endpoint on the public listener at `public_url`.
pub fn compute_endpoint(public_url: &str, transfer_id: &str) -> String {
    format!("{}/compute/{transfer_id}", public_url.trim_end_matches('/'))
}
