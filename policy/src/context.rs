//! What a decision is made about: who asks, with which verified claims, for what purpose, when, and how often.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

/// The facts a policy is evaluated against. The connector fills it from the verified token, the credentials, the
/// negotiation or transfer, and the clock; the engine itself reads no clock.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestContext {
    /// The requesting participant's verified identifier (a DID).
    pub participant: Option<String>,
    /// Verified claims (`membership`, `role`, `country`, `organisationType`, ...), by name; nested objects are
    /// reached by dotted paths.
    pub claims: Map<String, Json>,
    /// Types of the requester's verified credentials (e.g. `MembershipCredential`).
    pub credential_types: Vec<String>,
    /// The declared purpose (an IRI or a known term such as `DUO:0000007`).
    pub purpose: Option<String>,
    /// Where the data will be used (a region code such as `DE`, or an IRI).
    pub spatial: Option<String>,
    /// The time of the request.
    pub now: Option<DateTime<Utc>>,
    /// When the agreement was made (for `elapsedTime`; before an agreement, no time has elapsed).
    pub agreed_at: Option<DateTime<Utc>>,
    /// How often the agreement has been used so far (for `count`).
    pub usage_count: u64,
    /// An event that has occurred (for `event`).
    pub event: Option<String>,
    /// The amount the requester declares it will pay (compared, never charged).
    pub pay_amount: Option<f64>,
    /// The compute job being decided, if any.
    pub job: Option<JobContext>,
}

/// A compute-to-data job under an agreement.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct JobContext {
    /// The template's name (`aggregate`, `crosstab`, `glm`, `fedavg`).
    pub template: String,
    /// The algorithm's sha-256 digest.
    pub algorithm_digest: Option<String>,
    /// The smallest cell count the job will release.
    pub min_cell_count: u64,
    /// `suppress`, `round` or `noise`.
    pub disclosure_method: Option<String>,
    /// Jobs already run under the agreement.
    pub jobs_run: u64,
}

impl RequestContext {
    /// A context for `participant` at `now`.
    pub fn new(participant: impl Into<String>, now: DateTime<Utc>) -> RequestContext {
        RequestContext { participant: Some(participant.into()), now: Some(now), ..RequestContext::default() }
    }

    /// With a declared purpose.
    pub fn with_purpose(mut self, purpose: impl Into<String>) -> Self {
        self.purpose = Some(purpose.into());
        self
    }

    /// With a verified claim.
    pub fn with_claim(mut self, name: impl Into<String>, value: Json) -> Self {
        self.claims.insert(name.into(), value);
        self
    }

    /// With a compute job.
    pub fn with_job(mut self, job: JobContext) -> Self {
        self.job = Some(job);
        self
    }

    /// The claim at a dotted path.
    pub fn claim(&self, path: &str) -> Option<&Json> {
        let mut parts = path.split('.');
        let mut current = self.claims.get(parts.next()?)?;
        for part in parts {
            current = current.get(part)?;
        }
        Some(current)
    }
}
