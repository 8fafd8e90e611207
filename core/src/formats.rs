//! The transfer types (DSP `format`s) Hanse offers and the endpoint type of its HTTP data addresses.

/// The EDC transfer type of an HTTP pull: the consumer fetches from the provider's data plane.
pub const PULL: &str = "HttpData-PULL";
/// The EDC transfer type of an HTTP push: the provider sends to the consumer's endpoint.
pub const PUSH: &str = "HttpData-PUSH";
/// The transfer type of compute-to-data: the transfer carries no rows; once started, its data address points at the
/// provider's compute endpoint, where the consumer submits jobs under the agreement (the connector's compute service).
pub const COMPUTE: &str = "Hanse-Compute";
/// The transfer types Hanse offers (a file or HTTP dataset offers pull and push, a table dataset compute only).
pub const FORMATS: [&str; 3] = [PULL, PUSH, COMPUTE];
/// The DSP `endpointType` of HTTP data addresses.
pub const HTTP_ENDPOINT: &str = "https://w3id.org/idsa/v4.1/HTTP";
