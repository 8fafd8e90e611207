//! The ODRL 2.2 policy model, parsed from JSON-LD in any of the forms peers send (DSP compact, prefixed, EDC
//! management, expanded) and written back in the DSP 2025-1 compact form.
//!
//! Parsing is lenient about *content* (an unknown operand or a missing action is kept, and reported by
//! `validate` and denied by `evaluate`) and strict about *structure* (a rule that is not an object is
//! a [`ParseError`]).

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value as Json, json};

use crate::profile::{self, canonical_action};
use crate::term::{self, HANSE, HANSE_CLAIMS, ODRL, XSD};
use crate::value::{Value, ValueKind, parse_as};

/// `Set`, `Offer` or `Agreement`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum PolicyKind {
    Set,
    Offer,
    Agreement,
}

/// ODRL 2.2 conflict strategy; `invalid` when the policy names none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum ConflictStrategy {
    /// Permissions override prohibitions.
    Perm,
    /// Prohibitions override permissions.
    Prohibit,
    /// A conflict voids the whole policy.
    #[default]
    Invalid,
}

/// A policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    pub uid: Option<String>,
    pub kind: PolicyKind,
    pub assigner: Option<String>,
    pub assignee: Option<String>,
    pub target: Option<String>,
    pub profile: Vec<String>,
    pub conflict: ConflictStrategy,
    pub permissions: Vec<Rule>,
    pub prohibitions: Vec<Rule>,
    pub obligations: Vec<Rule>,
    /// Agreements carry the time they were made.
    pub timestamp: Option<String>,
}

/// A permission, prohibition, obligation or duty.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    pub uid: Option<String>,
    /// The canonical action IRI; `None` when the rule names no action.
    pub action: Option<String>,
    /// Refinements of the action (evaluated like constraints).
    pub refinements: Vec<Constraint>,
    pub constraints: Vec<Constraint>,
    /// Duties of a permission, remedies of a prohibition, consequences of a duty.
    pub duties: Vec<Rule>,
    pub target: Option<String>,
    pub assigner: Option<String>,
    pub assignee: Option<String>,
}

/// An atomic or logical constraint.
#[derive(Debug, Clone, PartialEq)]
pub enum Constraint {
    Atomic(Box<AtomicConstraint>),
    Logical { operator: LogicalOperator, constraints: Vec<Constraint> },
}

/// `and`, `or`, `xone`, `andSequence`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum LogicalOperator {
    And,
    Or,
    Xone,
    AndSequence,
}

impl LogicalOperator {
    pub fn term(self) -> &'static str {
        match self {
            LogicalOperator::And => "and",
            LogicalOperator::Or => "or",
            LogicalOperator::Xone => "xone",
            LogicalOperator::AndSequence => "andSequence",
        }
    }
}

/// `leftOperand operator rightOperand`. Two constraints are equal when they mean the same: the right operand's
/// spelling (`5`, `"5"`, `{"@value": "5"}`) and declared datatype only count when the value could not be typed.
#[derive(Debug, Clone)]
pub struct AtomicConstraint {
    pub left: LeftOperand,
    pub operator: Operator,
    /// The right operand, typed for the left operand; `Err` says why it could not be read.
    pub right: Result<Value, String>,
    /// The right operand as written (for messages and re-serialisation of unreadable values).
    pub right_raw: Json,
    pub right_reference: Option<String>,
    pub unit: Option<String>,
    pub data_type: Option<String>,
}

impl PartialEq for AtomicConstraint {
    fn eq(&self, other: &Self) -> bool {
        self.left == other.left
            && self.operator == other.operator
            && self.right == other.right
            && self.right_reference == other.right_reference
            && self.unit == other.unit
            && (self.right.is_ok() || (self.right_raw == other.right_raw && self.data_type == other.data_type))
    }
}

/// Left operands Hanse can resolve; anything else is `Unknown` and denies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LeftOperand {
    DateTime,
    ElapsedTime,
    Count,
    Purpose,
    Spatial,
    Recipient,
    Event,
    PayAmount,
    /// A verified claim by dotted path.
    Claim(String),
    CredentialType,
    MinCellCount,
    JobTemplate,
    AlgorithmDigest,
    MaxJobs,
    DisclosureMethod,
    /// Whether the job runs under secure aggregation (the orchestrator learns only sums over sites).
    SecureAggregation,
    /// The differential privacy `ε` spent under the agreement once the job ran.
    PrivacyEpsilon,
    /// The purpose of the requester's data permit (EHDS Art. 53), taxonomic like `purpose`.
    PermitPurpose,
    /// The health data access body that issued the permit.
    PermitIssuer,
    /// The permit's identifier.
    PermitId,
    /// Whether the requester is one of the permit's named users.
    PermitHolder,
    Unknown(String),
}

const EDC_NS: &str = "https://w3id.org/edc/v0.0.1/ns/";
const CLAIM_SHORTHANDS: &[&str] = &["membership", "role", "country", "organisationType"];

impl LeftOperand {
    /// Reads a left operand in any spelling.
    pub fn parse(term: &str) -> LeftOperand {
        let term = term.trim();
        if let Some(local) = term::odrl_local(term) {
            match local {
                "dateTime" => return LeftOperand::DateTime,
                "elapsedTime" => return LeftOperand::ElapsedTime,
                "count" => return LeftOperand::Count,
                "purpose" => return LeftOperand::Purpose,
                "spatial" => return LeftOperand::Spatial,
                "recipient" => return LeftOperand::Recipient,
                "event" => return LeftOperand::Event,
                "payAmount" => return LeftOperand::PayAmount,
                _ => {}
            }
        }
        // EDC management bodies put bare names under the EDC vocabulary: read those as bare names.
        if let Some(local) = term.strip_prefix(EDC_NS).filter(|l| !l.contains([':', '/', '#']))
            && !local.is_empty()
        {
            return LeftOperand::parse(local);
        }
        let iri = term::canonical(term);
        if let Some(path) = iri.strip_prefix(HANSE_CLAIMS).filter(|p| !p.is_empty()) {
            return LeftOperand::Claim(path.to_owned());
        }
        let hanse_local = iri.strip_prefix(HANSE).or((!term.contains(':')).then_some(term));
        match hanse_local {
            Some("minCellCount") => LeftOperand::MinCellCount,
            Some("jobTemplate") => LeftOperand::JobTemplate,
            Some("algorithmDigest") => LeftOperand::AlgorithmDigest,
            Some("maxJobs") => LeftOperand::MaxJobs,
            Some("disclosureMethod") => LeftOperand::DisclosureMethod,
            Some("secureAggregation") => LeftOperand::SecureAggregation,
            Some("privacyEpsilon") => LeftOperand::PrivacyEpsilon,
            Some("credentialType") => LeftOperand::CredentialType,
            Some("permitPurpose") => LeftOperand::PermitPurpose,
            Some("permitIssuer") => LeftOperand::PermitIssuer,
            Some("permitId") => LeftOperand::PermitId,
            Some("permitHolder") => LeftOperand::PermitHolder,
            Some(name) if CLAIM_SHORTHANDS.contains(&name) => LeftOperand::Claim(name.to_owned()),
            _ => LeftOperand::Unknown(iri),
        }
    }

    /// The spelling written into DSP messages: bare ODRL names, full IRIs otherwise.
    pub fn term(&self) -> String {
        match self {
            LeftOperand::DateTime => "dateTime".into(),
            LeftOperand::ElapsedTime => "elapsedTime".into(),
            LeftOperand::Count => "count".into(),
            LeftOperand::Purpose => "purpose".into(),
            LeftOperand::Spatial => "spatial".into(),
            LeftOperand::Recipient => "recipient".into(),
            LeftOperand::Event => "event".into(),
            LeftOperand::PayAmount => "payAmount".into(),
            LeftOperand::Claim(path) => format!("{HANSE_CLAIMS}{path}"),
            LeftOperand::CredentialType => format!("{HANSE}credentialType"),
            LeftOperand::MinCellCount => format!("{HANSE}minCellCount"),
            LeftOperand::JobTemplate => format!("{HANSE}jobTemplate"),
            LeftOperand::AlgorithmDigest => format!("{HANSE}algorithmDigest"),
            LeftOperand::MaxJobs => format!("{HANSE}maxJobs"),
            LeftOperand::DisclosureMethod => format!("{HANSE}disclosureMethod"),
            LeftOperand::SecureAggregation => format!("{HANSE}secureAggregation"),
            LeftOperand::PrivacyEpsilon => format!("{HANSE}privacyEpsilon"),
            LeftOperand::PermitPurpose => format!("{HANSE}permitPurpose"),
            LeftOperand::PermitIssuer => format!("{HANSE}permitIssuer"),
            LeftOperand::PermitId => format!("{HANSE}permitId"),
            LeftOperand::PermitHolder => format!("{HANSE}permitHolder"),
            LeftOperand::Unknown(iri) => iri.clone(),
        }
    }

    /// What its values are.
    pub fn kind(&self) -> ValueKind {
        match self {
            LeftOperand::DateTime => ValueKind::DateTime,
            LeftOperand::ElapsedTime => ValueKind::Duration,
            LeftOperand::Count | LeftOperand::MinCellCount | LeftOperand::MaxJobs => ValueKind::Integer,
            LeftOperand::PayAmount | LeftOperand::PrivacyEpsilon => ValueKind::Decimal,
            LeftOperand::Purpose
            | LeftOperand::Spatial
            | LeftOperand::Recipient
            | LeftOperand::Event
            | LeftOperand::CredentialType
            | LeftOperand::DisclosureMethod
            | LeftOperand::PermitPurpose
            | LeftOperand::PermitIssuer => ValueKind::Iri,
            LeftOperand::JobTemplate | LeftOperand::AlgorithmDigest | LeftOperand::PermitId => ValueKind::String,
            LeftOperand::PermitHolder | LeftOperand::SecureAggregation => ValueKind::Boolean,
            LeftOperand::Claim(_) | LeftOperand::Unknown(_) => ValueKind::Any,
        }
    }

    /// Whether the operand reads the requester's data permit.
    pub fn is_permit(&self) -> bool {
        matches!(
            self,
            LeftOperand::PermitPurpose | LeftOperand::PermitIssuer | LeftOperand::PermitId | LeftOperand::PermitHolder
        )
    }

    /// Whether the operand can only be decided while a compute job runs.
    pub fn needs_job(&self) -> bool {
        matches!(
            self,
            LeftOperand::MinCellCount
                | LeftOperand::JobTemplate
                | LeftOperand::AlgorithmDigest
                | LeftOperand::MaxJobs
                | LeftOperand::DisclosureMethod
                | LeftOperand::SecureAggregation
                | LeftOperand::PrivacyEpsilon
        )
    }

    /// Canonical form of one right-operand value for this operand (purposes, regions, digests).
    fn normalise(&self, value: Value) -> Value {
        match (self, value) {
            (LeftOperand::Purpose | LeftOperand::PermitPurpose, Value::Iri(v)) => {
                Value::Iri(profile::canonical_purpose(&v))
            }
            (LeftOperand::Spatial, Value::Iri(v)) => Value::Iri(profile::canonical_region(&v)),
            (LeftOperand::DisclosureMethod, Value::Iri(v)) => Value::Iri(profile::canonical_disclosure_method(&v)),
            (LeftOperand::AlgorithmDigest, Value::String(v)) => Value::String(canonical_digest(&v)),
            (_, value) => value,
        }
    }
}

/// `sha-256:<hex>`, `sha256:<hex>` and `<hex>` name the same digest.
pub fn canonical_digest(value: &str) -> String {
    let hex = value.trim();
    let hex = hex.strip_prefix("sha-256:").or_else(|| hex.strip_prefix("sha256:")).unwrap_or(hex);
    hex.to_ascii_lowercase()
}

impl fmt::Display for LeftOperand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LeftOperand::Claim(path) => write!(f, "claim {path}"),
            other => f.write_str(&term::short(&other.term())),
        }
    }
}

/// ODRL 2.2 operators plus DSP's `term-lteq`; anything else is `Unknown` and denies.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Operator {
    Eq,
    Neq,
    Lt,
    Lteq,
    Gt,
    Gteq,
    IsA,
    HasPart,
    IsPartOf,
    IsAllOf,
    IsAnyOf,
    IsNoneOf,
    /// Listed by the DSP schema without further definition; evaluated as `lteq`.
    TermLteq,
    Unknown(String),
}

impl Operator {
    pub fn parse(term: &str) -> Operator {
        let local = term::odrl_local(term.trim()).or_else(|| term.strip_prefix("https://w3id.org/dspace/2025/1/"));
        match local {
            Some("eq") => Operator::Eq,
            Some("neq") => Operator::Neq,
            Some("lt") => Operator::Lt,
            Some("lteq") => Operator::Lteq,
            Some("gt") => Operator::Gt,
            Some("gteq") => Operator::Gteq,
            Some("isA") => Operator::IsA,
            Some("hasPart") => Operator::HasPart,
            Some("isPartOf") => Operator::IsPartOf,
            Some("isAllOf") => Operator::IsAllOf,
            Some("isAnyOf") => Operator::IsAnyOf,
            Some("isNoneOf") => Operator::IsNoneOf,
            Some("term-lteq") => Operator::TermLteq,
            _ => Operator::Unknown(term::canonical(term)),
        }
    }

    pub fn term(&self) -> String {
        match self {
            Operator::Eq => "eq".into(),
            Operator::Neq => "neq".into(),
            Operator::Lt => "lt".into(),
            Operator::Lteq => "lteq".into(),
            Operator::Gt => "gt".into(),
            Operator::Gteq => "gteq".into(),
            Operator::IsA => "isA".into(),
            Operator::HasPart => "hasPart".into(),
            Operator::IsPartOf => "isPartOf".into(),
            Operator::IsAllOf => "isAllOf".into(),
            Operator::IsAnyOf => "isAnyOf".into(),
            Operator::IsNoneOf => "isNoneOf".into(),
            Operator::TermLteq => "term-lteq".into(),
            Operator::Unknown(iri) => iri.clone(),
        }
    }

    /// Whether the right operand is a set (a single value counts as a one-element set).
    pub fn takes_set(&self) -> bool {
        matches!(self, Operator::IsAllOf | Operator::IsAnyOf | Operator::IsNoneOf)
    }

    /// Whether the operator orders values.
    pub fn is_ordering(&self) -> bool {
        matches!(self, Operator::Lt | Operator::Lteq | Operator::Gt | Operator::Gteq | Operator::TermLteq)
    }
}

impl fmt::Display for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&term::short(&self.term()))
    }
}

impl fmt::Display for AtomicConstraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.right {
            Ok(value) => write!(f, "{} {} {}", self.left, self.operator, value),
            Err(_) => write!(f, "{} {} {}", self.left, self.operator, self.right_raw),
        }
    }
}

/// `a and b`; a nested logical constraint in parentheses.
impl fmt::Display for Constraint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Constraint::Atomic(atomic) => write!(f, "{atomic}"),
            Constraint::Logical { operator, constraints } => {
                for (i, member) in constraints.iter().enumerate() {
                    if i > 0 {
                        write!(f, " {} ", operator.term())?;
                    }
                    match member {
                        Constraint::Logical { .. } => write!(f, "({member})")?,
                        Constraint::Atomic(_) => write!(f, "{member}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// A policy that cannot be read at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ParseError {
    /// Where, e.g. `permission[0].constraint[1]`.
    pub path: String,
    pub message: String,
}

fn error(path: &str, message: impl Into<String>) -> ParseError {
    ParseError { path: if path.is_empty() { "policy".into() } else { path.into() }, message: message.into() }
}

/// The members of `object` that name `name` in any spelling (bare, `odrl:`, full ODRL IRI; `@`-keywords as aliases).
fn member<'a>(object: &'a Map<String, Json>, name: &str) -> Option<&'a Json> {
    let aliases: &[&str] = match name {
        "@id" => &["@id", "uid", "odrl:uid", "http://www.w3.org/ns/odrl/2/uid"],
        "@type" => &["@type", "type"],
        "action" => &["action", "odrl:action", "http://www.w3.org/ns/odrl/2/action"],
        _ => &[],
    };
    for alias in aliases {
        if let Some(v) = object.get(*alias) {
            return Some(v);
        }
    }
    object
        .get(name)
        .or_else(|| object.get(&format!("odrl:{name}")))
        .or_else(|| object.get(&format!("{ODRL}{name}")))
        .or_else(|| object.get(&format!("dspace:{name}")))
        .or_else(|| object.get(&format!("https://w3id.org/dspace/2025/1/{name}")))
}

/// A member as a list: arrays as they are, `null` as empty, anything else as one element.
fn many(value: Option<&Json>) -> Vec<&Json> {
    match value {
        None | Some(Json::Null) => Vec::new(),
        Some(Json::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
    }
}

/// A node's identifier or a term: `"x"`, `{"@id": "x"}`, `{"uid": "x"}`, `{"@value": "x"}`, `["x"]`.
fn text(value: &Json) -> Option<String> {
    match value {
        Json::String(s) => Some(s.clone()),
        Json::Array(items) if items.len() == 1 => text(&items[0]),
        Json::Object(map) => member(map, "@id").or_else(|| map.get("@value")).and_then(text),
        _ => None,
    }
}

fn text_member(object: &Map<String, Json>, name: &str) -> Option<String> {
    member(object, name).and_then(text)
}

impl Policy {
    /// Whether deciding this policy may need the requester's verified claims or credential types, so that a
    /// connector fetches them only when a policy asks.
    pub fn uses_claims(&self) -> bool {
        self.any_constraint(&|atomic| {
            matches!(atomic.left, LeftOperand::Claim(_) | LeftOperand::CredentialType) || atomic.left.is_permit()
        })
    }

    /// Whether any constraint reads the requester's data permit (`hanse:permit*`).
    pub fn uses_permit(&self) -> bool {
        self.any_constraint(&|atomic| atomic.left.is_permit())
    }

    /// Whether any atomic constraint of any rule (duties included) passes `test`.
    fn any_constraint(&self, test: &dyn Fn(&AtomicConstraint) -> bool) -> bool {
        fn constraint(c: &Constraint, test: &dyn Fn(&AtomicConstraint) -> bool) -> bool {
            match c {
                Constraint::Atomic(atomic) => test(atomic),
                Constraint::Logical { constraints, .. } => constraints.iter().any(|c| constraint(c, test)),
            }
        }
        fn rule(r: &Rule, test: &dyn Fn(&AtomicConstraint) -> bool) -> bool {
            r.conditions().any(|c| constraint(c, test)) || r.duties.iter().any(|d| rule(d, test))
        }
        self.permissions.iter().chain(&self.prohibitions).chain(&self.obligations).any(|r| rule(r, test))
    }

    /// Whether the policy has no permission, prohibition or obligation at all.
    pub fn has_no_rules(&self) -> bool {
        self.permissions.is_empty() && self.prohibitions.is_empty() && self.obligations.is_empty()
    }

    /// EDC's allow-all made explicit: a policy without any rule (`"permission": [], "prohibition": [], "obligation":
    /// []`, EDC's most common policy) means "no constraints" in EDC, so it becomes one `use` permission without
    /// constraints; ODRL alone would permit nothing. Answers whether the policy was rewritten.
    pub fn read_edc_allow_all(&mut self) -> bool {
        if !self.has_no_rules() {
            return false;
        }
        self.permissions.push(Rule {
            uid: None,
            action: Some(crate::profile::USE.to_owned()),
            refinements: Vec::new(),
            constraints: Vec::new(),
            duties: Vec::new(),
            target: None,
            assigner: None,
            assignee: None,
        });
        true
    }

    /// Reads a policy from JSON(-LD). An expanded document (a one-element array) is accepted as well.
    pub fn from_json(value: &Json) -> Result<Policy, ParseError> {
        let object = match value {
            Json::Object(map) => map,
            Json::Array(items) if items.len() == 1 => return Policy::from_json(&items[0]),
            _ => return Err(error("", "a policy must be a JSON object")),
        };
        let kind = match member(object, "@type").and_then(text).as_deref().map(|t| {
            let iri = term::canonical(t);
            iri.strip_prefix(ODRL).map(str::to_owned).unwrap_or(iri)
        }) {
            None => PolicyKind::Set,
            Some(t) if t == "Set" || t == "Policy" => PolicyKind::Set,
            Some(t) if t == "Offer" => PolicyKind::Offer,
            Some(t) if t == "Agreement" => PolicyKind::Agreement,
            Some(other) => {
                return Err(error("@type", format!("`{other}` is not an ODRL policy type (Set, Offer, Agreement)")));
            }
        };
        let conflict = match text_member(object, "conflict").as_deref().map(term::canonical) {
            None => ConflictStrategy::Invalid,
            Some(c) => match c.strip_prefix(ODRL).unwrap_or(&c) {
                "perm" => ConflictStrategy::Perm,
                "prohibit" => ConflictStrategy::Prohibit,
                "invalid" => ConflictStrategy::Invalid,
                other => {
                    return Err(error(
                        "conflict",
                        format!("`{other}` is not a conflict strategy (perm, prohibit, invalid)"),
                    ));
                }
            },
        };
        let rules = |name: &str| -> Result<Vec<Rule>, ParseError> {
            let mut rules = Vec::new();
            for (i, rule) in many(member(object, name)).into_iter().enumerate() {
                rules.extend(Rule::parse(rule, &format!("{name}[{i}]"), duty_member(name))?);
            }
            Ok(rules)
        };
        Ok(Policy {
            uid: text_member(object, "@id"),
            kind,
            assigner: text_member(object, "assigner"),
            assignee: text_member(object, "assignee"),
            target: text_member(object, "target"),
            profile: many(member(object, "profile")).into_iter().filter_map(text).collect(),
            conflict,
            permissions: rules("permission")?,
            prohibitions: rules("prohibition")?,
            obligations: rules("obligation")?,
            timestamp: text_member(object, "timestamp"),
        })
    }

    /// The policy in the DSP 2025-1 compact form (no `@context`): terms without prefixes where the DSP context defines
    /// them, full IRIs otherwise, right operands as strings, refinements folded into the rule's constraints.
    pub fn to_dsp_json(&self) -> Json {
        let mut out = Map::new();
        if let Some(uid) = &self.uid {
            out.insert("@id".into(), json!(uid));
        }
        out.insert(
            "@type".into(),
            json!(match self.kind {
                PolicyKind::Set => "Set",
                PolicyKind::Offer => "Offer",
                PolicyKind::Agreement => "Agreement",
            }),
        );
        for (name, value) in [("assigner", &self.assigner), ("assignee", &self.assignee), ("target", &self.target)] {
            if let Some(v) = value {
                out.insert(name.into(), json!(v));
            }
        }
        if let Some(ts) = &self.timestamp {
            out.insert("timestamp".into(), json!(ts));
        }
        if !self.profile.is_empty() {
            out.insert("profile".into(), json!(self.profile));
        }
        if self.conflict != ConflictStrategy::Invalid {
            let term = match self.conflict {
                ConflictStrategy::Perm => "odrl:perm",
                ConflictStrategy::Prohibit => "odrl:prohibit",
                ConflictStrategy::Invalid => "odrl:invalid",
            };
            out.insert("odrl:conflict".into(), json!({"@id": term}));
        }
        for (name, rules) in
            [("permission", &self.permissions), ("prohibition", &self.prohibitions), ("obligation", &self.obligations)]
        {
            if !rules.is_empty() {
                out.insert(name.into(), Json::Array(rules.iter().map(|r| r.to_dsp_json(duty_member(name))).collect()));
            }
        }
        Json::Object(out)
    }
}

/// The member under which a rule of this kind lists its dependent rules.
fn duty_member(kind: &str) -> &'static str {
    match kind {
        "permission" => "duty",
        "prohibition" => "remedy",
        _ => "consequence",
    }
}

/// The DSP spelling of an action: bare ODRL names, full IRIs otherwise.
pub fn action_term(action: &str) -> String {
    match action.strip_prefix(ODRL) {
        Some(local) => local.to_owned(),
        None => action.to_owned(),
    }
}

impl Rule {
    /// Reads a rule; a rule with several actions becomes one rule per action (same meaning in ODRL).
    fn parse(value: &Json, path: &str, duties_name: &str) -> Result<Vec<Rule>, ParseError> {
        let Json::Object(object) = value else {
            return Err(error(path, "a rule must be a JSON object"));
        };
        let mut constraints = Vec::new();
        for (i, c) in many(member(object, "constraint")).into_iter().enumerate() {
            constraints.push(Constraint::parse(c, &format!("{path}.constraint[{i}]"))?);
        }
        let mut duties = Vec::new();
        for (i, d) in many(member(object, duties_name)).into_iter().enumerate() {
            duties.extend(Rule::parse(d, &format!("{path}.{duties_name}[{i}]"), "consequence")?);
        }
        let base = Rule {
            uid: text_member(object, "@id"),
            action: None,
            refinements: Vec::new(),
            constraints,
            duties,
            target: text_member(object, "target"),
            assigner: text_member(object, "assigner"),
            assignee: text_member(object, "assignee"),
        };
        let actions = many(member(object, "action"));
        if actions.is_empty() {
            return Ok(vec![base]);
        }
        let mut rules = Vec::new();
        for (i, action) in actions.into_iter().enumerate() {
            let action_path = format!("{path}.action[{i}]");
            let (name, refinements) = match action {
                Json::Object(a) if a.get("@id").is_none() => {
                    let name = member(a, "action")
                        .or_else(|| a.get("rdf:value"))
                        .or_else(|| a.get("http://www.w3.org/1999/02/22-rdf-syntax-ns#value"))
                        .and_then(text);
                    let mut refinements = Vec::new();
                    for (j, r) in many(member(a, "refinement")).into_iter().enumerate() {
                        refinements.push(Constraint::parse(r, &format!("{action_path}.refinement[{j}]"))?);
                    }
                    (name, refinements)
                }
                other => (text(other), Vec::new()),
            };
            let name = name.ok_or_else(|| error(&action_path, "an action must be a term or an object naming one"))?;
            rules.push(Rule { action: Some(canonical_action(&name)), refinements, ..base.clone() });
        }
        Ok(rules)
    }

    pub(crate) fn to_dsp_json(&self, duties_name: &str) -> Json {
        let mut out = Map::new();
        if let Some(uid) = &self.uid {
            out.insert("@id".into(), json!(uid));
        }
        if let Some(action) = &self.action {
            out.insert("action".into(), json!(action_term(action)));
        }
        for (name, value) in [("target", &self.target), ("assigner", &self.assigner), ("assignee", &self.assignee)] {
            if let Some(v) = value {
                out.insert(name.into(), json!(v));
            }
        }
        let constraints: Vec<Json> =
            self.refinements.iter().chain(&self.constraints).map(Constraint::to_dsp_json).collect();
        if !constraints.is_empty() {
            out.insert("constraint".into(), Json::Array(constraints));
        }
        if !self.duties.is_empty() {
            out.insert(
                duties_name.into(),
                Json::Array(self.duties.iter().map(|d| d.to_dsp_json("consequence")).collect()),
            );
        }
        Json::Object(out)
    }

    /// Refinements and constraints together: everything that must hold for the rule.
    pub fn conditions(&self) -> impl Iterator<Item = &Constraint> {
        self.refinements.iter().chain(&self.constraints)
    }
}

impl Constraint {
    fn parse(value: &Json, path: &str) -> Result<Constraint, ParseError> {
        let Json::Object(object) = value else {
            return Err(error(path, "a constraint must be a JSON object"));
        };
        for operator in [LogicalOperator::And, LogicalOperator::Or, LogicalOperator::Xone, LogicalOperator::AndSequence]
        {
            if let Some(members) = member(object, operator.term()) {
                // Expanded JSON-LD writes lists as {"@list": [...]}.
                let members = match members {
                    Json::Object(m) if m.contains_key("@list") => m.get("@list"),
                    other => Some(other),
                };
                let mut constraints = Vec::new();
                for (i, c) in many(members).into_iter().enumerate() {
                    constraints.push(Constraint::parse(c, &format!("{path}.{}[{i}]", operator.term()))?);
                }
                return Ok(Constraint::Logical { operator, constraints });
            }
        }
        let left = text_member(object, "leftOperand").ok_or_else(|| error(path, "leftOperand is missing"))?;
        let operator = text_member(object, "operator").ok_or_else(|| error(path, "operator is missing"))?;
        let left = LeftOperand::parse(&left);
        let operator = Operator::parse(&operator);
        let data_type = text_member(object, "dataType").map(|t| term::canonical(&t));
        let right_reference = text_member(object, "rightOperandReference");
        let right_raw = member(object, "rightOperand").cloned().unwrap_or(Json::Null);
        let right = if right_raw.is_null() {
            match &right_reference {
                Some(_) => Err("the right operand is a reference Hanse does not dereference".to_owned()),
                None => Err("rightOperand is missing".to_owned()),
            }
        } else {
            typed_right(&left, &operator, &right_raw, data_type.as_deref())
        };
        Ok(Constraint::Atomic(Box::new(AtomicConstraint {
            left,
            operator,
            right,
            right_raw,
            right_reference,
            unit: text_member(object, "unit"),
            data_type,
        })))
    }

    pub(crate) fn to_dsp_json(&self) -> Json {
        match self {
            Constraint::Logical { operator, constraints } => {
                json!({ operator.term(): constraints.iter().map(Constraint::to_dsp_json).collect::<Vec<_>>() })
            }
            Constraint::Atomic(c) => {
                let right = match &c.right {
                    Ok(Value::List(items)) => Json::Array(items.iter().map(|v| json!(v.lexical())).collect()),
                    Ok(value) => json!(value.lexical()),
                    Err(_) => c.right_raw.clone(),
                };
                let mut out = Map::new();
                out.insert("leftOperand".into(), json!(c.left.term()));
                out.insert("operator".into(), json!(c.operator.term()));
                out.insert("rightOperand".into(), right);
                if let Some(reference) = &c.right_reference {
                    out.insert("odrl:rightOperandReference".into(), json!({"@id": reference}));
                }
                if let Some(unit) = &c.unit {
                    out.insert("odrl:unit".into(), json!({"@id": unit}));
                }
                if let Some(data_type) = &c.data_type {
                    out.insert("odrl:dataType".into(), json!({"@id": data_type}));
                }
                Json::Object(out)
            }
        }
    }
}

/// The kind a datatype IRI names, if it is one Hanse reads.
fn kind_of_datatype(datatype: &str) -> Option<ValueKind> {
    let local = datatype.strip_prefix(XSD)?;
    Some(match local {
        "integer" | "int" | "long" | "nonNegativeInteger" | "positiveInteger" | "short" => ValueKind::Integer,
        "decimal" | "double" | "float" => ValueKind::Decimal,
        "boolean" => ValueKind::Boolean,
        "string" => ValueKind::String,
        "anyURI" => ValueKind::Iri,
        "dateTime" | "date" | "dateTimeStamp" => ValueKind::DateTime,
        "duration" | "dayTimeDuration" | "yearMonthDuration" => ValueKind::Duration,
        _ => return None,
    })
}

/// Reads a right operand as the left operand's kind of value.
fn typed_right(left: &LeftOperand, operator: &Operator, raw: &Json, data_type: Option<&str>) -> Result<Value, String> {
    let expected = left.kind();
    let one = |item: &Json| -> Result<Value, String> {
        let (lexical, declared) = match item {
            Json::String(s) => (s.clone(), data_type.map(str::to_owned)),
            Json::Number(n) => (n.to_string(), None),
            Json::Bool(b) => (b.to_string(), None),
            Json::Object(map) => {
                if let Some(id) = map.get("@id").and_then(Json::as_str) {
                    return Ok(left.normalise(Value::Iri(term::canonical(id))));
                }
                let value = map.get("@value").ok_or("a right operand object needs @value or @id")?;
                let lexical = match value {
                    Json::String(s) => s.clone(),
                    other => other.to_string(),
                };
                (lexical, map.get("@type").and_then(Json::as_str).map(term::canonical).or(data_type.map(str::to_owned)))
            }
            _ => return Err(format!("{item} is not a value")),
        };
        let kind = match declared.as_deref().and_then(kind_of_datatype) {
            Some(declared) if expected != ValueKind::Any && !compatible(declared, expected) => {
                return Err(format!("{left} takes {expected}, but the value is declared {declared}"));
            }
            Some(declared) => declared,
            None => expected,
        };
        let kind = match (kind, &item) {
            (ValueKind::Any, Json::Number(n)) if n.is_i64() => ValueKind::Integer,
            (ValueKind::Any, Json::Number(_)) => ValueKind::Decimal,
            (ValueKind::Any, Json::Bool(_)) => ValueKind::Boolean,
            (kind, _) => kind,
        };
        parse_as(&lexical, kind).map(|v| left.normalise(v)).map_err(|e| format!("{left} takes {expected}: {e}"))
    };
    match raw {
        Json::Array(items) if items.len() == 1 && !operator.takes_set() => one(&items[0]),
        Json::Array(items) => items.iter().map(one).collect::<Result<Vec<_>, _>>().map(Value::List),
        Json::Object(map) if map.contains_key("@list") => typed_right(left, operator, &map["@list"], data_type),
        other => {
            let value = one(other)?;
            Ok(if operator.takes_set() { Value::List(vec![value]) } else { value })
        }
    }
}

fn compatible(declared: ValueKind, expected: ValueKind) -> bool {
    declared == expected
        || matches!(
            (declared, expected),
            (ValueKind::Integer, ValueKind::Decimal) | (ValueKind::String, ValueKind::Iri)
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_dsp_catalogue_example_offer_parses() {
        let offer = json!({
            "@id": "urn:uuid:3dd1add8", "@type": "Offer",
            "permission": [{"action": "use", "constraint": [
                {"leftOperand": "spatial", "operator": "eq", "rightOperand": "http://example.org/EU"}]}]
        });
        let policy = Policy::from_json(&offer).unwrap();
        assert_eq!(policy.kind, PolicyKind::Offer);
        assert_eq!(policy.permissions[0].action.as_deref(), Some(profile::USE));
        let Constraint::Atomic(c) = &policy.permissions[0].constraints[0] else { panic!() };
        assert_eq!(c.left, LeftOperand::Spatial);
        assert_eq!(c.right, Ok(Value::Iri("EU".into())));
    }

    #[test]
    fn a_policy_uses_claims_only_when_a_constraint_names_one() {
        let with = |constraint: Json| {
            Policy::from_json(&json!({"@type": "Set", "permission": [{"action": "use", "constraint": [constraint]}]}))
                .unwrap()
                .uses_claims()
        };
        assert!(with(json!({"leftOperand": "membership", "operator": "eq", "rightOperand": "active"})));
        assert!(with(json!({"or": [{"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"},
            {"leftOperand": "https://w3id.org/hanse/ns/credentialType", "operator": "eq",
             "rightOperand": "MembershipCredential"}]})));
        assert!(!with(json!({"leftOperand": "purpose", "operator": "eq", "rightOperand": "research"})));
    }

    #[test]
    fn prefixed_and_expanded_spellings_read_the_same() {
        let compact = json!({"@type": "Set", "permission": [{"action": "use",
            "constraint": [{"leftOperand": "count", "operator": "lteq", "rightOperand": "5"}]}]});
        let prefixed = json!({"@type": "odrl:Set", "odrl:permission": {"odrl:action": {"@id": "odrl:use"},
            "odrl:constraint": {"odrl:leftOperand": {"@id": "odrl:count"}, "odrl:operator": {"@id": "odrl:lteq"},
            "odrl:rightOperand": 5}}});
        let expanded = json!([{"@type": ["http://www.w3.org/ns/odrl/2/Set"],
            "http://www.w3.org/ns/odrl/2/permission": [{
                "http://www.w3.org/ns/odrl/2/action": [{"@id": "http://www.w3.org/ns/odrl/2/use"}],
                "http://www.w3.org/ns/odrl/2/constraint": [{
                    "http://www.w3.org/ns/odrl/2/leftOperand": [{"@id": "http://www.w3.org/ns/odrl/2/count"}],
                    "http://www.w3.org/ns/odrl/2/operator": [{"@id": "http://www.w3.org/ns/odrl/2/lteq"}],
                    "http://www.w3.org/ns/odrl/2/rightOperand": [{"@value": "5"}]}]}]}]);
        let a = Policy::from_json(&compact).unwrap();
        assert_eq!(a, Policy::from_json(&prefixed).unwrap());
        let c = Policy::from_json(&expanded).unwrap();
        assert_eq!(a.permissions, c.permissions);
    }

    #[test]
    fn a_value_of_the_wrong_type_is_kept_with_the_reason() {
        let policy = Policy::from_json(&json!({"permission": [{"action": "use", "constraint": [
            {"leftOperand": "dateTime", "operator": "lt", "rightOperand": "end of 2027"}]}]}))
        .unwrap();
        let Constraint::Atomic(c) = &policy.permissions[0].constraints[0] else { panic!() };
        assert!(c.right.as_ref().unwrap_err().contains("date-time"), "{:?}", c.right);
    }

    #[test]
    fn several_actions_become_several_rules_and_refinements_are_kept() {
        let policy = Policy::from_json(&json!({"permission": [{"action": ["read",
            {"action": "hanse:compute", "refinement": [{"leftOperand": "hanse:minCellCount", "operator": "gteq", "rightOperand": 10}]}]}]}))
        .unwrap();
        assert_eq!(policy.permissions.len(), 2);
        assert_eq!(policy.permissions[1].action.as_deref(), Some(profile::COMPUTE));
        assert_eq!(policy.permissions[1].refinements.len(), 1);
    }

    #[test]
    fn dsp_output_reads_back_to_the_same_policy() {
        let policy = Policy::from_json(&json!({"@id": "p1", "@type": "Offer", "permission": [{"action": "use",
            "constraint": [{"or": [
                {"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"},
                {"leftOperand": "dateTime", "operator": "lt", "rightOperand": {"@value": "2027-12-31T23:59:59Z", "@type": "xsd:dateTime"}}]}],
            "duty": [{"action": "inform"}]}],
            "prohibition": [{"action": "distribute"}]}))
        .unwrap();
        let again = Policy::from_json(&policy.to_dsp_json()).unwrap();
        assert_eq!(policy.uid, again.uid);
        assert_eq!(policy.kind, again.kind);
        assert_eq!(policy.permissions, again.permissions);
        assert_eq!(policy.prohibitions, again.prohibitions);
    }

    #[test]
    fn edc_vocabulary_names_read_as_bare_names() {
        assert_eq!(LeftOperand::parse("https://w3id.org/edc/v0.0.1/ns/minCellCount"), LeftOperand::MinCellCount);
        assert_eq!(
            LeftOperand::parse("https://w3id.org/edc/v0.0.1/ns/membership"),
            LeftOperand::Claim("membership".into())
        );
        assert_eq!(LeftOperand::parse("https://w3id.org/edc/v0.0.1/ns/purpose"), LeftOperand::Purpose);
    }

    #[test]
    fn structure_errors_name_the_place() {
        let error = Policy::from_json(&json!({"permission": [{"action": "use", "constraint": ["x"]}]})).unwrap_err();
        assert_eq!(error.path, "permission[0].constraint[0]");
        let error = Policy::from_json(&json!({"@type": "Ticket"})).unwrap_err();
        assert!(error.message.contains("Ticket"));
    }
}
