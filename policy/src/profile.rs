//! The Hanse health profile: `https://w3id.org/hanse/ns/`.
//!
//! # Actions
//! - `hanse:compute` — compute-to-data only: the provider runs an approved job on its own data and releases
//!   disclosure-controlled results. Declared `odrl:includedIn odrl:use`. It never permits a raw transfer.
//!   The IDS action `https://w3id.org/idsa/code/AGGREGATE_BY_PROVIDER` is treated as the same action.
//! - ODRL's `use` and `read` permit a raw transfer; an applicable prohibition of `distribute`, `reproduce`,
//!   `extract` or `transfer` means "no raw export" (see `evaluate_transfer`).
//!
//! # Purposes (the `purpose` left operand), with `isA` following each hierarchy
//! - EHDS secondary use, Regulation (EU) 2025/327 Art. 53(1):
//!   `hanse:ehds-public-health` (a), `hanse:ehds-policy-making` (b), `hanse:ehds-statistics` (c),
//!   `hanse:ehds-education` (d), `hanse:ehds-scientific-research` (e) with the narrower
//!   `hanse:ehds-product-development` and `hanse:ehds-ai-training`, and `hanse:ehds-care-improvement` (f).
//! - GA4GH Data Use Ontology: `DUO:0000007` disease-specific research isA `DUO:0000006` health/medical/biomedical
//!   research isA `DUO:0000042` general research use; `DUO:0000011` population origins or ancestry research isA
//!   `DUO:0000042`; `DUO:0000043` clinical care use.
//! - DPV: `dpv:AcademicResearch`, `dpv:CommercialResearch`, `dpv:NonCommercialResearch` and `dpv:ScientificResearch`
//!   isA `dpv:ResearchAndDevelopment` isA `dpv:Purpose`.
//!
//! # Compute constraints (rule constraints or refinements of `hanse:compute`)
//! - `hanse:minCellCount` (integer): the smallest cell count k the job releases; `minCellCount gteq 10` demands k ≥ 10.
//! - `hanse:jobTemplate` (name): the job's template, e.g. `jobTemplate isAnyOf ["aggregate", "glm"]`.
//! - `hanse:algorithmDigest` (`sha-256:<hex>` or hex): the job's algorithm digest.
//! - `hanse:maxJobs` (integer): resolves to the ordinal of this job under the agreement (jobs run so far + 1), so
//!   `maxJobs lteq 10` allows ten jobs.
//! - `hanse:disclosureMethod`: `hanse:suppress`, `hanse:round` or `hanse:noise`.
//! - `hanse:secureAggregation` (boolean): whether the job runs under secure aggregation, so that the consumer learns
//!   only sums over the sites (`secureAggregation eq true` demands it of every training job).
//! - `hanse:privacyEpsilon` (decimal): the differential privacy `ε` (at `δ` = 10⁻⁶) the agreement's jobs will have
//!   spent once this job ran, so `privacyEpsilon lteq 3` is a budget of ε = 3 per agreement. A job that is not
//!   differentially private has no `ε`: the constraint is not satisfied.
//!
//! Outside a compute job these constraints cannot be decided yet: they are *deferred* (recorded in the decision and
//! checked when a job runs), never silently dropped.
//!
//! # Claims
//! `hanse:claims/<path>` resolves to a verified credential claim (`<path>` dotted, e.g. `claims/address.country`); the
//! bare names `membership`, `role`, `country` and `organisationType` are shorthands for `hanse:claims/<name>`.
//! `hanse:credentialType` resolves to the set of verified credential types.

use crate::term::{HANSE, IDSC, ODRL, canonical, odrl_local};

/// `hanse:compute`.
pub const COMPUTE: &str = "https://w3id.org/hanse/ns/compute";
/// The IDS equivalent of `hanse:compute`.
pub const IDS_AGGREGATE_BY_PROVIDER: &str = "https://w3id.org/idsa/code/AGGREGATE_BY_PROVIDER";
/// `odrl:use`.
pub const USE: &str = "http://www.w3.org/ns/odrl/2/use";
/// `odrl:read`.
pub const READ: &str = "http://www.w3.org/ns/odrl/2/read";
/// `odrl:transfer`.
pub const TRANSFER: &str = "http://www.w3.org/ns/odrl/2/transfer";

/// ODRL 2.2 actions included in `use` (common vocabulary).
const ODRL_USE_ACTIONS: &[&str] = &[
    "aggregate",
    "annotate",
    "anonymize",
    "archive",
    "concurrentUse",
    "derive",
    "digitize",
    "display",
    "distribute",
    "execute",
    "extract",
    "grantUse",
    "index",
    "install",
    "modify",
    "move",
    "play",
    "present",
    "print",
    "read",
    "reproduce",
    "stream",
    "synchronize",
    "textToSpeech",
    "transform",
    "translate",
];
/// ODRL 2.2 actions included in `transfer`.
const ODRL_TRANSFER_ACTIONS: &[&str] = &["give", "sell"];
/// ODRL 2.2 actions that are duties a party performs (valid in duties and obligations).
const ODRL_DUTY_ACTIONS: &[&str] = &[
    "acceptTracking",
    "attribute",
    "compensate",
    "delete",
    "ensureExclusivity",
    "include",
    "inform",
    "nextPolicy",
    "obtainConsent",
    "reviewPolicy",
    "uninstall",
    "watermark",
];
/// Actions whose applicable prohibition forbids a raw export.
pub const EXPORT_ACTIONS: &[&str] = &[
    "http://www.w3.org/ns/odrl/2/distribute",
    "http://www.w3.org/ns/odrl/2/reproduce",
    "http://www.w3.org/ns/odrl/2/extract",
    "http://www.w3.org/ns/odrl/2/transfer",
];

/// The canonical IRI of an action; bare ODRL names become ODRL IRIs, `USE` (EDC) becomes `odrl:use`, and the IDS
/// provider-side aggregation becomes `hanse:compute`.
pub fn canonical_action(action: &str) -> String {
    let trimmed = action.trim();
    if trimmed.eq_ignore_ascii_case("use") {
        return USE.to_owned();
    }
    if trimmed == "compute" {
        return COMPUTE.to_owned();
    }
    let iri = canonical(trimmed);
    if iri == IDS_AGGREGATE_BY_PROVIDER || iri == format!("{IDSC}AGGREGATE_BY_PROVIDER") {
        return COMPUTE.to_owned();
    }
    if iri == "https://w3id.org/idsa/code/USE" || iri == "idsc:USE" {
        return USE.to_owned();
    }
    match odrl_local(&iri) {
        Some(local) if !iri.starts_with(ODRL) => format!("{ODRL}{local}"),
        _ => iri,
    }
}

/// Whether Hanse knows the action (ODRL 2.2 common vocabulary or the Hanse profile).
pub fn is_known_action(action: &str) -> bool {
    let action = canonical_action(action);
    if action == COMPUTE {
        return true;
    }
    match action.strip_prefix(ODRL) {
        Some(local) => {
            local == "use"
                || local == "transfer"
                || ODRL_USE_ACTIONS.contains(&local)
                || ODRL_TRANSFER_ACTIONS.contains(&local)
                || ODRL_DUTY_ACTIONS.contains(&local)
        }
        None => false,
    }
}

/// The action `action` is included in, if any (`odrl:includedIn`).
fn included_in(action: &str) -> Option<&'static str> {
    if action == COMPUTE {
        return Some(USE);
    }
    let local = action.strip_prefix(ODRL)?;
    if ODRL_USE_ACTIONS.contains(&local) {
        Some(USE)
    } else if ODRL_TRANSFER_ACTIONS.contains(&local) {
        Some(TRANSFER)
    } else {
        None
    }
}

/// Whether a rule on `rule_action` covers a request for `requested` (equal, or `requested` is included in it).
/// Both are canonical action IRIs.
pub fn action_covers(rule_action: &str, requested: &str) -> bool {
    let mut current = Some(requested);
    while let Some(action) = current {
        if action == rule_action {
            return true;
        }
        current = included_in(action);
    }
    false
}

/// EHDS Art. 53(1) purposes, DUO and DPV, as (term, broader term).
const PURPOSE_BROADER: &[(&str, &str)] = &[
    ("https://w3id.org/hanse/ns/ehds-product-development", "https://w3id.org/hanse/ns/ehds-scientific-research"),
    ("https://w3id.org/hanse/ns/ehds-ai-training", "https://w3id.org/hanse/ns/ehds-scientific-research"),
    ("http://purl.obolibrary.org/obo/DUO_0000007", "http://purl.obolibrary.org/obo/DUO_0000006"),
    ("http://purl.obolibrary.org/obo/DUO_0000006", "http://purl.obolibrary.org/obo/DUO_0000042"),
    ("http://purl.obolibrary.org/obo/DUO_0000011", "http://purl.obolibrary.org/obo/DUO_0000042"),
    ("https://w3id.org/dpv#AcademicResearch", "https://w3id.org/dpv#ResearchAndDevelopment"),
    ("https://w3id.org/dpv#CommercialResearch", "https://w3id.org/dpv#ResearchAndDevelopment"),
    ("https://w3id.org/dpv#NonCommercialResearch", "https://w3id.org/dpv#ResearchAndDevelopment"),
    ("https://w3id.org/dpv#ScientificResearch", "https://w3id.org/dpv#ResearchAndDevelopment"),
    ("https://w3id.org/dpv#ResearchAndDevelopment", "https://w3id.org/dpv#Purpose"),
];

/// Every purpose the profile knows (for validation messages and documentation).
pub fn known_purposes() -> Vec<&'static str> {
    let mut all: Vec<&str> = PURPOSE_BROADER.iter().flat_map(|(a, b)| [*a, *b]).collect();
    all.extend([
        "https://w3id.org/hanse/ns/ehds-public-health",
        "https://w3id.org/hanse/ns/ehds-policy-making",
        "https://w3id.org/hanse/ns/ehds-statistics",
        "https://w3id.org/hanse/ns/ehds-education",
        "https://w3id.org/hanse/ns/ehds-care-improvement",
        "http://purl.obolibrary.org/obo/DUO_0000043",
    ]);
    all.sort_unstable();
    all.dedup();
    all
}

/// The purpose a known purpose is a narrower case of, if any (one step up its hierarchy).
pub fn broader_purpose(purpose: &str) -> Option<&'static str> {
    let canonical = canonical_purpose(purpose);
    PURPOSE_BROADER.iter().find(|(narrower, _)| *narrower == canonical).map(|(_, broader)| *broader)
}

/// The canonical IRI of a purpose: bare Hanse EHDS names (`ehds-statistics`) are Hanse terms.
pub fn canonical_purpose(purpose: &str) -> String {
    let iri = canonical(purpose);
    if iri.starts_with("ehds-") {
        return format!("{HANSE}{iri}");
    }
    iri
}

/// `narrower isA broader` in the purpose hierarchies (reflexive), in any spelling.
pub fn purpose_is_a(narrower: &str, broader: &str) -> bool {
    canonical_purpose_is_a(&canonical_purpose(narrower), &canonical_purpose(broader))
}

/// [`purpose_is_a`] for purposes already in canonical form (no allocation: the evaluation hot path).
pub(crate) fn canonical_purpose_is_a(narrower: &str, broader: &str) -> bool {
    let mut current = narrower;
    loop {
        if current == broader {
            return true;
        }
        match PURPOSE_BROADER.iter().find(|(n, _)| *n == current) {
            Some((_, b)) => current = b,
            None => return false,
        }
    }
}

/// EU member states (ISO 3166-1 alpha-2).
const EU: &[&str] = &[
    "AT", "BE", "BG", "CY", "CZ", "DE", "DK", "EE", "ES", "FI", "FR", "GR", "HR", "HU", "IE", "IT", "LT", "LU", "LV",
    "MT", "NL", "PL", "PT", "RO", "SE", "SI", "SK",
];
/// EEA members beyond the EU.
const EEA_ONLY: &[&str] = &["IS", "LI", "NO"];

/// A spatial value as a region code when it names one (`DE`, `EU`, `EEA`, or an IRI ending in one); else as given.
pub fn canonical_region(value: &str) -> String {
    let last = value.rsplit(['/', '#', ':']).next().unwrap_or(value);
    let upper = last.to_ascii_uppercase();
    if upper == "EU" || upper == "EEA" || EU.contains(&upper.as_str()) || EEA_ONLY.contains(&upper.as_str()) {
        upper
    } else {
        canonical(value)
    }
}

/// `part isPartOf whole` over regions (reflexive): a member state is part of the EU and the EEA; the EU of the EEA.
pub fn region_is_part_of(part: &str, whole: &str) -> bool {
    canonical_region_is_part_of(&canonical_region(part), &canonical_region(whole))
}

/// [`region_is_part_of`] for regions already in canonical form (no allocation).
pub(crate) fn canonical_region_is_part_of(part: &str, whole: &str) -> bool {
    if part == whole {
        return true;
    }
    match whole {
        "EU" => EU.contains(&part),
        "EEA" => part == "EU" || EU.contains(&part) || EEA_ONLY.contains(&part),
        _ => false,
    }
}

/// The disclosure methods of compute jobs.
pub const DISCLOSURE_METHODS: &[&str] =
    &["https://w3id.org/hanse/ns/suppress", "https://w3id.org/hanse/ns/round", "https://w3id.org/hanse/ns/noise"];

/// A disclosure method's canonical IRI (`suppress` → `hanse:suppress`).
pub fn canonical_disclosure_method(value: &str) -> String {
    let iri = canonical(value);
    if matches!(iri.as_str(), "suppress" | "round" | "noise") { format!("{HANSE}{iri}") } else { iri }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_is_included_in_use_but_does_not_cover_it() {
        assert!(action_covers(USE, COMPUTE));
        assert!(action_covers(COMPUTE, COMPUTE));
        assert!(!action_covers(COMPUTE, USE));
        assert!(!action_covers(COMPUTE, READ));
        assert_eq!(canonical_action("https://w3id.org/idsa/code/AGGREGATE_BY_PROVIDER"), COMPUTE);
        assert_eq!(canonical_action("USE"), USE);
        assert_eq!(canonical_action("read"), READ);
    }

    #[test]
    fn disease_specific_research_is_general_research_use() {
        assert!(purpose_is_a("DUO:0000007", "DUO:0000042"));
        assert!(purpose_is_a("DUO:0000007", "DUO:0000006"));
        assert!(!purpose_is_a("DUO:0000042", "DUO:0000007"));
        assert!(purpose_is_a("dpv:AcademicResearch", "dpv:Purpose"));
        assert!(purpose_is_a("ehds-ai-training", "hanse:ehds-scientific-research"));
        assert!(!purpose_is_a("hanse:ehds-statistics", "hanse:ehds-scientific-research"));
    }

    #[test]
    fn member_states_are_part_of_the_eu() {
        assert!(region_is_part_of("DE", "EU"));
        assert!(region_is_part_of("http://example.org/DE", "http://example.org/EU"));
        assert!(region_is_part_of("NO", "EEA"));
        assert!(!region_is_part_of("NO", "EU"));
        assert!(!region_is_part_of("US", "EU"));
    }
}
