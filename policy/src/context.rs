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
    /// Whether the job runs under secure aggregation.
    pub secure_aggregation: bool,
    /// A differentially private job: the `ε` (at `δ` = 10⁻⁶) spent under the agreement once it ran, its own
    /// included. `None`: the job is not differentially private.
    pub privacy_epsilon: Option<f64>,
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
    /// The requester's data permit (EHDS Art. 68): the `dataPermit` claim of a verified `DataPermitCredential`,
    /// within its validity. An error says why there is none.
    pub fn data_permit(&self) -> Result<&Map<String, Json>, &'static str> {
        if !self.credential_types.iter().any(|t| t == "DataPermitCredential" || t.ends_with("/DataPermitCredential")) {
            return Err("the requester holds no verified data permit (DataPermitCredential)");
        }
        let permit = self.claims.get("dataPermit").and_then(Json::as_object);
        let permit = permit.ok_or("the data permit credential carries no dataPermit")?;
        let until = permit.get("validUntil").and_then(Json::as_str);
        if let (Some(until), Some(now)) = (until, self.now) {
            match DateTime::parse_from_rfc3339(until) {
                Ok(until) if until < now => return Err("the data permit has expired"),
                Ok(_) => {}
                Err(_) => return Err("the data permit's validUntil is not a time"),
            }
        }
        Ok(permit)
    }

    pub fn claim(&self, path: &str) -> Option<&Json> {
        let mut parts = path.split('.');
        let mut current = self.claims.get(parts.next()?)?;
        for part in parts {
            current = current.get(part)?;
        }
        Some(current)
    }
}
