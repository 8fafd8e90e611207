//! The management resources as the connector keeps them: assets (datasets), policy definitions and contract
//! definitions. Each is read from a JSON-LD request body (any context that expands correctly), stored as its expanded
//! meaning, and answered in the EDC Management API v3 compacted shape.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use hanse_policy::{Policy, Severity};
use hanse_self_descriptions::dcat::{self, PrefixStyle, Properties, Term};
use hanse_vocab::ns::{DCAT, DCT, DSPACE, EDC, FOAF, HEALTHDCATAP, ODRL, VCARD, XSD};
use serde_json::{Map, Value as Json, json};

pub use hanse_core::query::{Criterion, OPERATORS};
pub use hanse_core::{FieldError, Invalid};

/// The prefixes every management body may use without declaring them; the body's own context comes after and wins.
fn default_context() -> Json {
    json!({
        "@vocab": EDC, "edc": EDC, "odrl": ODRL, "dcat": DCAT, "dct": DCT, "dcterms": DCT, "xsd": XSD,
        "dspace": DSPACE, "healthdcatap": HEALTHDCATAP, "foaf": FOAF, "vcard": VCARD,
    })
}

/// EDC's Management API v4 context (`https://w3id.org/edc/connector/management/v2`), which Hanse does not bundle,
/// read as what it means for the bodies Hanse takes: EDC's vocabulary, `dct:conformsTo`, and the DSP ODRL profile
/// inside `policy` (decision 0020). Any other entry is kept as it is.
fn v2_read(entry: Json) -> Json {
    if entry.as_str() != Some(hanse_vocab::contexts::EDC_MANAGEMENT_V2) {
        return entry;
    }
    json!({
        "@version": 1.1,
        "@vocab": EDC, "edc": EDC, "dct": DCT, "dcat": DCAT,
        "conformsTo": {"@id": "dct:conformsTo", "@type": "@id"},
        "policy": {"@id": "edc:policy", "@context": hanse_vocab::contexts::DSPACE_2025_1_ODRL_PROFILE},
    })
}

/// Expands a management body to the one node it describes. A body without `@context` is read with the EDC vocabulary.
pub fn expand_body(body: &Json) -> Result<Map<String, Json>, Invalid> {
    let Json::Object(object) = body else {
        return Err(vec![FieldError::new("", "the body must be a JSON object")]);
    };
    let mut object = object.clone();
    let context = match object.remove("@context") {
        None | Some(Json::Null) => vec![default_context()],
        Some(Json::Array(items)) => std::iter::once(default_context()).chain(items.into_iter().map(v2_read)).collect(),
        Some(other) => vec![default_context(), v2_read(other)],
    };
    object.insert("@context".into(), Json::Array(context));
    let expanded = hanse_vocab::jsonld::expand(&Json::Object(object))
        .map_err(|e| vec![FieldError::new("@context", e.to_string())])?;
    match expanded {
        // A body with nothing but an id expands to nothing; it still names its resource.
        Json::Array(nodes) if nodes.is_empty() && body.get("@id").is_some_and(Json::is_string) => {
            Ok(Map::from_iter([("@id".to_owned(), body["@id"].clone())]))
        }
        Json::Array(mut nodes) if nodes.len() == 1 => match nodes.remove(0) {
            Json::Object(node) => Ok(node),
            _ => Err(vec![FieldError::new("", "the body does not describe a resource")]),
        },
        _ => Err(vec![FieldError::new("", "the body must describe exactly one resource")]),
    }
}

fn edc(name: &str) -> String {
    format!("{EDC}{name}")
}

/// The values of an EDC-vocabulary member of an expanded node.
pub(crate) fn member<'a>(node: &'a Map<String, Json>, name: &str) -> &'a [Json] {
    node.get(&edc(name)).and_then(Json::as_array).map(Vec::as_slice).unwrap_or_default()
}

/// A single literal or IRI of an expanded member, as text.
pub(crate) fn text(node: &Map<String, Json>, name: &str) -> Option<String> {
    member(node, name).first().and_then(|v| {
        v.get("@value")
            .map(|v| match v {
                Json::String(s) => s.clone(),
                other => other.to_string(),
            })
            .or_else(|| v.get("@id").and_then(Json::as_str).map(str::to_owned))
    })
}

/// Refuses into `errors` each of `names` that the body as written (compact: the name itself or `edc:`-prefixed)
/// gives as something other than a string or `null` — JSON-LD expansion would drop a list of nulls or an empty object
/// silently, and the member would read as absent.
pub(crate) fn refuse_non_text(body: &Json, names: &[&str], errors: &mut Invalid) {
    for name in names {
        let given = body.get(*name).or_else(|| body.get(format!("edc:{name}").as_str()));
        if given.is_some_and(|value| !value.is_string() && !value.is_null()) {
            errors.push(FieldError::new(*name, "must be a string").with_value(given));
        }
    }
}

pub(crate) fn nested<'a>(node: &'a Map<String, Json>, name: &str) -> Option<&'a Map<String, Json>> {
    member(node, name).first().and_then(Json::as_object)
}

/// The resource's id: `@id` of the body, or a fresh one.
fn id_of(node: &Map<String, Json>, errors: &mut Invalid) -> String {
    match node.get("@id").and_then(Json::as_str) {
        Some(id) if id.trim().is_empty() || id.starts_with("_:") => {
            errors.push(FieldError::new("@id", "must be a non-empty identifier").with_value(node.get("@id")));
            String::new()
        }
        Some(id) => match hanse_core::ids::check_id(id) {
            Ok(()) => id.to_owned(),
            Err(reason) => {
                errors.push(FieldError::new("@id", reason).with_value(node.get("@id")));
                String::new()
            }
        },
        None => uuid::Uuid::new_v4().to_string(),
    }
}

fn properties_of(node: &Map<String, Json>, name: &str, errors: &mut Invalid) -> Properties {
    match nested(node, name) {
        None => Properties::new(),
        Some(properties) => match dcat::properties_from_expanded(properties) {
            Ok(p) => p,
            Err(message) => {
                errors.push(FieldError::new(name, message));
                Properties::new()
            }
        },
    }
}

/// Where a dataset's bytes come from.
#[derive(Debug, Clone, PartialEq)]
pub enum DataAddress {
    /// An HTTP backend; the data plane proxies it (with the asset's private auth header, if any).
    Http { base_url: String, fields: BTreeMap<String, String> },
    /// A file under the connector's file root.
    File { path: PathBuf, fields: BTreeMap<String, String> },
    /// An ingested table (`hanse dataset ingest`): a file in the connector's table folder, named by its digest. Its
    /// rows never leave; compute jobs run on it.
    Table { file: String, fields: BTreeMap<String, String> },
}

impl DataAddress {
    /// `HttpData`, `File` or `HanseTable`.
    pub fn kind(&self) -> &'static str {
        match self {
            DataAddress::Http { .. } => "HttpData",
            DataAddress::File { .. } => "File",
            DataAddress::Table { .. } => TABLE,
        }
    }

    /// The transfer types the dataset is offered with: pull and push, or compute only for a table.
    pub fn formats(&self) -> &'static [&'static str] {
        use hanse_core::formats::{COMPUTE, PULL, PUSH};
        match self {
            DataAddress::Table { .. } => &[COMPUTE],
            _ => &[PULL, PUSH],
        }
    }

    pub(crate) fn fields(&self) -> &BTreeMap<String, String> {
        match self {
            DataAddress::Http { fields, .. } | DataAddress::File { fields, .. } | DataAddress::Table { fields, .. } => {
                fields
            }
        }
    }

    /// What an `HttpData` address lets a consumer's request carry on to its backend (EDC's proxy switches).
    pub fn proxy(&self) -> Proxy {
        let on = |name: &str| self.fields().get(name).is_some_and(|v| v.eq_ignore_ascii_case("true"));
        Proxy { path: on("proxyPath"), query: on("proxyQueryParams"), method: on("proxyMethod"), body: on("proxyBody") }
    }

    /// The data address of an ingested table file.
    pub fn table(file: &str) -> Json {
        json!({"type": TABLE, "file": file})
    }

    fn read(node: Option<&Map<String, Json>>, file_root: &Path, errors: &mut Invalid) -> Option<DataAddress> {
        let Some(node) = node else {
            errors.push(FieldError::new("dataAddress", "is required: where the data comes from (HttpData or File)"));
            return None;
        };
        let mut fields = BTreeMap::new();
        for (key, values) in node {
            let Some(local) = key.strip_prefix(EDC) else { continue };
            match values.as_array().and_then(|v| v.first()).and_then(|v| v.get("@value")) {
                Some(Json::String(s)) => {
                    fields.insert(local.to_owned(), s.clone());
                }
                Some(scalar @ (Json::Number(_) | Json::Bool(_)))
                    if !matches!(local, "type" | "baseUrl" | "path" | "file") =>
                {
                    fields.insert(local.to_owned(), scalar.to_string());
                }
                Some(Json::Number(_) | Json::Bool(_)) => {
                    errors.push(FieldError::new(format!("dataAddress.{local}"), "must be a string"));
                }
                _ => errors.push(FieldError::new(
                    format!("dataAddress.{local}"),
                    "must be a string, number or boolean (a data address holds settings, not objects)",
                )),
            }
        }
        for name in PROXY_SWITCHES {
            if let Some(value) = fields.get(name)
                && !value.eq_ignore_ascii_case("true")
                && !value.eq_ignore_ascii_case("false")
            {
                errors.push(
                    FieldError::new(format!("dataAddress.{name}"), "must be true or false")
                        .with_value(Some(&json!(value))),
                );
            }
        }
        match fields.get("type").map(String::as_str) {
            Some("HttpData") => {
                let Some(base_url) = fields.get("baseUrl").cloned() else {
                    errors.push(FieldError::new("dataAddress.baseUrl", "is required for HttpData"));
                    return None;
                };
                match reqwest::Url::parse(&base_url) {
                    Ok(url) if matches!(url.scheme(), "http" | "https") => Some(DataAddress::Http { base_url, fields }),
                    _ => {
                        errors.push(
                            FieldError::new("dataAddress.baseUrl", "must be an http(s) URL")
                                .with_value(Some(&json!(base_url))),
                        );
                        None
                    }
                }
            }
            Some("File") => {
                let Some(path) = fields.get("path").cloned() else {
                    errors.push(FieldError::new("dataAddress.path", "is required for File"));
                    return None;
                };
                match under_root(file_root, Path::new(&path)) {
                    Some(resolved) => Some(DataAddress::File { path: resolved, fields }),
                    None => {
                        errors.push(
                            FieldError::new(
                                "dataAddress.path",
                                format!("must lie under the connector's file root {}", file_root.display()),
                            )
                            .with_value(Some(&json!(path))),
                        );
                        None
                    }
                }
            }
            Some(TABLE) => match fields.get("file").cloned() {
                Some(file) if hanse_compute::table::is_table_file(&file) => Some(DataAddress::Table { file, fields }),
                _ => {
                    errors.push(FieldError::new(
                        "dataAddress.file",
                        "must name an ingested table (`<sha-256>.table`); tables are made by `hanse dataset ingest`",
                    ));
                    None
                }
            },
            Some(other) => {
                errors.push(
                    FieldError::new("dataAddress.type", "Hanse serves HttpData, File and HanseTable data addresses")
                        .with_value(Some(&json!(other))),
                );
                None
            }
            None => {
                errors.push(FieldError::new("dataAddress.type", "is required (HttpData or File)"));
                None
            }
        }
    }

    fn to_json(&self) -> Json {
        let mut out = Map::new();
        out.insert("@type".into(), json!("DataAddress"));
        for (key, value) in self.fields() {
            out.insert(key.clone(), json!(value));
        }
        Json::Object(out)
    }
}

/// EDC's `HttpData` switches that let a consumer's sub-path, query, method and body through to the backend.
const PROXY_SWITCHES: [&str; 4] = ["proxyPath", "proxyQueryParams", "proxyMethod", "proxyBody"];

/// Which parts of a consumer's request an `HttpData` address passes on to its backend (all off unless set `true`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Proxy {
    pub path: bool,
    pub query: bool,
    pub method: bool,
    pub body: bool,
}

/// The data address type of an ingested table.
pub const TABLE: &str = "HanseTable";

/// `path` resolved against `root` without touching the file system; `None` when it would leave the root.
pub fn under_root(root: &Path, path: &Path) -> Option<PathBuf> {
    let relative = if path.is_absolute() { path.strip_prefix(root).ok()? } else { path };
    let mut resolved = root.to_path_buf();
    let mut depth = 0usize;
    for component in relative.components() {
        match component {
            Component::Normal(part) => {
                resolved.push(part);
                depth += 1;
            }
            Component::CurDir => {}
            Component::ParentDir if depth > 0 => {
                resolved.pop();
                depth -= 1;
            }
            _ => return None,
        }
    }
    (depth > 0).then_some(resolved)
}

/// A dataset the connector offers.
#[derive(Debug, Clone, PartialEq)]
pub struct Asset {
    pub id: String,
    /// Public description (DCAT / DCT / HealthDCAT-AP and EDC terms): what peers see.
    pub properties: Properties,
    /// Never sent to peers.
    pub private_properties: Properties,
    pub data_address: DataAddress,
    /// The expanded JSON-LD it was read from: what the store keeps.
    pub expanded: Json,
}

impl Asset {
    /// Reads an asset from a management request body.
    pub fn from_body(body: &Json, file_root: &Path) -> Result<Asset, Invalid> {
        Asset::from_expanded(expand_body(body)?, file_root)
    }

    /// Reads an asset from its expanded JSON-LD node.
    pub fn from_expanded(node: Map<String, Json>, file_root: &Path) -> Result<Asset, Invalid> {
        let mut errors = Vec::new();
        let id = id_of(&node, &mut errors);
        let properties = properties_of(&node, "properties", &mut errors);
        let private_properties = properties_of(&node, "privateProperties", &mut errors);
        let data_address = DataAddress::read(nested(&node, "dataAddress"), file_root, &mut errors);
        match data_address {
            Some(data_address) if errors.is_empty() => {
                let mut node = node;
                node.insert("@id".into(), json!(id));
                Ok(Asset { id, properties, private_properties, data_address, expanded: Json::Object(node) })
            }
            _ => Err(errors),
        }
    }

    /// The EDC Management API shape.
    pub fn to_management_json(&self, created_at: i64) -> Json {
        let mut properties = dcat::properties_json(&self.properties, PrefixStyle::Management);
        properties.entry("id").or_insert_with(|| json!(self.id));
        json!({
            "@context": dcat::management_context(),
            "@id": self.id,
            "@type": "Asset",
            "properties": properties,
            "privateProperties": dcat::properties_json(&self.private_properties, PrefixStyle::Management),
            "dataAddress": self.data_address.to_json(),
            "createdAt": created_at,
        })
    }
}

/// What a QuerySpec or an asset selector reads of an asset: its id, its data address's settings and the values of its
/// properties. The typed [`Asset`] and the catalogue's packed form ([`super::packed::PackedAsset`]) both answer, so
/// filters read either the same way.
pub trait AssetFields {
    fn asset_id(&self) -> &str;
    /// A setting of the data address (`type`, `baseUrl`, ...), by its EDC name.
    fn address_field(&self, name: &str) -> Option<&str>;
    /// The values of a property (by IRI) as a filter compares them; `private`: among the private properties.
    fn property_json(&self, private: bool, iri: &str) -> Vec<Json>;

    /// The values a QuerySpec or asset selector can filter on: `id`, public and private properties (by IRI, prefixed
    /// name or EDC name), and `dataAddress.<field>`.
    fn field(&self, path: &str) -> Vec<Json> {
        let path = path.trim_start_matches("properties.").trim_start_matches("'").trim_end_matches("'");
        if path == "id" || path == "@id" || path == edc("id") {
            return vec![json!(self.asset_id())];
        }
        if let Some(field) = path.strip_prefix("dataAddress.") {
            let field = field.strip_prefix(EDC).unwrap_or(field);
            return self.address_field(field).map(|v| vec![json!(v)]).unwrap_or_default();
        }
        if let Some(key) = path.strip_prefix("privateProperties.") {
            return self.property_json(true, &property_iri(key));
        }
        self.property_json(false, &property_iri(path))
    }
}

impl AssetFields for Asset {
    fn asset_id(&self) -> &str {
        &self.id
    }
    fn address_field(&self, name: &str) -> Option<&str> {
        self.data_address.fields().get(name).map(String::as_str)
    }
    fn property_json(&self, private: bool, iri: &str) -> Vec<Json> {
        let properties = if private { &self.private_properties } else { &self.properties };
        properties.get(iri).into_iter().flatten().map(term_json).collect()
    }
}

/// A property key in any spelling (full IRI, `prefix:local`, EDC name, known short name) as its IRI.
pub fn property_iri(key: &str) -> String {
    let key = key.strip_prefix(EDC).unwrap_or(key);
    if let Some((iri, _)) = dcat::known_term(key) {
        return iri.to_owned();
    }
    if let Some((prefix, local)) = key.split_once(':')
        && !local.starts_with("//")
        && let Some(ns) = default_context().get(prefix).and_then(Json::as_str)
    {
        return format!("{ns}{local}");
    }
    if key.contains(':') { key.to_owned() } else { edc(key) }
}

/// A property's value as a filter compares it: an IRI as text, a literal as a number when it reads as one.
fn term_json(term: &Term) -> Json {
    match term {
        Term::Iri(iri) => json!(iri),
        Term::Literal { value, .. } => literal_json(value),
        Term::Node(_) => Json::Null,
    }
}

/// A literal as a filter compares it: a number when it reads as one, else its text.
pub(crate) fn literal_json(value: &str) -> Json {
    match value.parse::<f64>() {
        Ok(n) if n.is_finite() && !value.is_empty() => json!(n),
        _ => json!(value),
    }
}

/// An ODRL policy under an id, as operators manage them.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDefinition {
    pub id: String,
    pub policy: Policy,
    pub private_properties: Properties,
    pub expanded: Json,
    /// The stored policy had no rule at all: EDC's allow-all, read as a `use` permission without constraints.
    pub allow_all: bool,
}

/// What an operator is told about a policy without any rule.
pub const ALLOW_ALL_NOTE: &str = "a policy without any permission, prohibition or obligation is EDC's allow-all: \
    Hanse reads it as a `use` permission without constraints, so any participant the access policy admits may use \
    the data";

impl PolicyDefinition {
    /// Reads and validates a policy definition; ODRL problems are reported per constraint with their place.
    pub fn from_body(body: &Json, now: chrono::DateTime<chrono::Utc>) -> Result<PolicyDefinition, Invalid> {
        let node = expand_body(body)?;
        let definition = PolicyDefinition::from_expanded(node)?;
        let errors: Invalid = hanse_policy::validate_at(&definition.policy, now)
            .into_iter()
            .filter(|issue| issue.severity == Severity::Error)
            .map(|issue| FieldError::new(format!("policy.{}", issue.path), issue.message))
            .collect();
        if errors.is_empty() { Ok(definition) } else { Err(errors) }
    }

    /// Reads a policy definition from its expanded node (without the time-dependent checks: a stored policy that has
    /// expired is still a policy).
    pub fn from_expanded(node: Map<String, Json>) -> Result<PolicyDefinition, Invalid> {
        let mut errors = Vec::new();
        let id = id_of(&node, &mut errors);
        let private_properties = properties_of(&node, "privateProperties", &mut errors);
        let policy = match member(&node, "policy").first() {
            None => {
                errors.push(FieldError::new("policy", "is required: the ODRL policy"));
                None
            }
            Some(policy) => match Policy::from_json(policy) {
                Ok(policy) => Some(policy),
                Err(e) => {
                    errors.push(FieldError::new(format!("policy.{}", e.path), e.message));
                    None
                }
            },
        };
        match policy {
            Some(mut policy) if errors.is_empty() => {
                let allow_all = policy.read_edc_allow_all();
                let mut node = node;
                node.insert("@id".into(), json!(id));
                Ok(PolicyDefinition { id, policy, private_properties, expanded: Json::Object(node), allow_all })
            }
            _ => Err(errors),
        }
    }

    /// The EDC Management API shape; the policy in the ODRL context.
    pub fn to_management_json(&self, created_at: i64) -> Json {
        let mut policy = self.policy.to_dsp_json();
        if let Json::Object(map) = &mut policy {
            map.insert("@context".into(), dcat::policy_context());
        }
        json!({
            "@context": dcat::management_context(),
            "@id": self.id,
            "@type": "PolicyDefinition",
            "policy": policy,
            "privateProperties": dcat::properties_json(&self.private_properties, PrefixStyle::Management),
            "createdAt": created_at,
        })
    }
}

/// A selector criterion of an expanded contract definition, or the errors naming what is wrong with it.
fn read_criterion(node: &Map<String, Json>, path: &str, errors: &mut Invalid) -> Option<Criterion> {
    let operand_left = text(node, "operandLeft");
    let operator = text(node, "operator");
    let values: Vec<Json> = member(node, "operandRight")
        .iter()
        .filter_map(|v| v.get("@value").cloned().or_else(|| v.get("@id").cloned()))
        .collect();
    let (Some(operand_left), Some(operator)) = (operand_left, operator) else {
        errors.push(FieldError::new(path, "a criterion needs operandLeft, operator and operandRight"));
        return None;
    };
    if !OPERATORS.contains(&operator.as_str()) {
        errors.push(
            FieldError::new(format!("{path}.operator"), format!("must be one of {}", OPERATORS.join(", ")))
                .with_value(Some(&json!(operator))),
        );
        return None;
    }
    let operand_right = match (operator.as_str(), values.len()) {
        (_, 0) => {
            errors.push(FieldError::new(format!("{path}.operandRight"), "is required"));
            return None;
        }
        ("in", _) => Json::Array(values),
        (_, 1) => values.into_iter().next().unwrap_or_default(),
        _ => {
            errors.push(FieldError::new(format!("{path}.operandRight"), "takes one value (a list only with `in`)"));
            return None;
        }
    };
    Some(Criterion { operand_left, operator, operand_right })
}

/// Which assets are offered under which policies.
#[derive(Debug, Clone, PartialEq)]
pub struct ContractDefinition {
    pub id: String,
    /// Who may see the offer (evaluated for each catalogue request).
    pub access_policy_id: String,
    /// The terms offered.
    pub contract_policy_id: String,
    /// Which assets; empty selects every asset.
    pub assets_selector: Vec<Criterion>,
    /// Negotiations under this definition wait for the operator at every provider turn.
    pub manual_approval: bool,
    /// Transfers under this definition wait for the operator before starting.
    pub manual_start: bool,
    pub private_properties: Properties,
    pub expanded: Json,
}

fn flag(node: &Map<String, Json>, name: &str, errors: &mut Invalid) -> bool {
    match member(node, name).first().and_then(|v| v.get("@value")) {
        None => false,
        Some(Json::Bool(b)) => *b,
        Some(Json::String(s)) if s == "true" || s == "false" => s == "true",
        Some(other) => {
            errors.push(FieldError::new(name, "must be true or false").with_value(Some(other)));
            false
        }
    }
}

impl ContractDefinition {
    /// The documents this definition names, which may not be deleted while it does: its access and contract policies.
    pub fn references(&self) -> Vec<(crate::store::DocumentKind, &str)> {
        let mut policies = vec![self.access_policy_id.as_str(), self.contract_policy_id.as_str()];
        policies.dedup();
        policies.into_iter().map(|id| (crate::store::DocumentKind::PolicyDefinition, id)).collect()
    }

    pub fn from_body(body: &Json) -> Result<ContractDefinition, Invalid> {
        ContractDefinition::from_expanded(expand_body(body)?)
    }

    pub fn from_expanded(node: Map<String, Json>) -> Result<ContractDefinition, Invalid> {
        let mut errors = Vec::new();
        let id = id_of(&node, &mut errors);
        let access_policy_id = text(&node, "accessPolicyId");
        let contract_policy_id = text(&node, "contractPolicyId");
        if access_policy_id.is_none() {
            errors.push(FieldError::new("accessPolicyId", "is required: the policy that decides who sees the offer"));
        }
        if contract_policy_id.is_none() {
            errors.push(FieldError::new("contractPolicyId", "is required: the policy offered as contract terms"));
        }
        let mut assets_selector = Vec::new();
        for (i, criterion) in member(&node, "assetsSelector").iter().enumerate() {
            match criterion.as_object() {
                Some(c) => assets_selector.extend(read_criterion(c, &format!("assetsSelector[{i}]"), &mut errors)),
                None => errors.push(FieldError::new(format!("assetsSelector[{i}]"), "must be a criterion object")),
            }
        }
        let manual_approval = flag(&node, "manualApproval", &mut errors);
        let manual_start = flag(&node, "manualStart", &mut errors);
        let private_properties = properties_of(&node, "privateProperties", &mut errors);
        match (access_policy_id, contract_policy_id) {
            (Some(access_policy_id), Some(contract_policy_id)) if errors.is_empty() => {
                let mut node = node;
                node.insert("@id".into(), json!(id));
                Ok(ContractDefinition {
                    id,
                    access_policy_id,
                    contract_policy_id,
                    assets_selector,
                    manual_approval,
                    manual_start,
                    private_properties,
                    expanded: Json::Object(node),
                })
            }
            _ => Err(errors),
        }
    }

    /// Whether the selector selects `asset` (every criterion holds; no criteria select everything).
    pub fn selects(&self, asset: &impl AssetFields) -> bool {
        self.assets_selector
            .iter()
            .all(|c| crate::catalog::query::matches(&asset.field(&c.operand_left), &c.operator, &c.operand_right))
    }

    pub fn to_management_json(&self, created_at: i64) -> Json {
        json!({
            "@context": dcat::management_context(),
            "@id": self.id,
            "@type": "ContractDefinition",
            "accessPolicyId": self.access_policy_id,
            "contractPolicyId": self.contract_policy_id,
            "assetsSelector": self.assets_selector.iter().map(Criterion::to_json).collect::<Vec<_>>(),
            "manualApproval": self.manual_approval,
            "manualStart": self.manual_start,
            "privateProperties": dcat::properties_json(&self.private_properties, PrefixStyle::Management),
            "createdAt": created_at,
        })
    }

    /// The values a QuerySpec can filter on.
    pub fn field(&self, path: &str) -> Vec<Json> {
        match path.strip_prefix(EDC).unwrap_or(path) {
            "id" | "@id" => vec![json!(self.id)],
            "accessPolicyId" => vec![json!(self.access_policy_id)],
            "contractPolicyId" => vec![json!(self.contract_policy_id)],
            "assetsSelector.operandRight" => self.assets_selector.iter().map(|c| c.operand_right.clone()).collect(),
            _ => Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_paths_must_stay_under_the_root() {
        let root = Path::new("/srv/hanse/files");
        assert_eq!(under_root(root, Path::new("cohort.csv")), Some(PathBuf::from("/srv/hanse/files/cohort.csv")));
        assert_eq!(under_root(root, Path::new("a/../b.csv")), Some(PathBuf::from("/srv/hanse/files/b.csv")));
        assert_eq!(
            under_root(root, Path::new("/srv/hanse/files/x/y.csv")),
            Some(PathBuf::from("/srv/hanse/files/x/y.csv"))
        );
        assert_eq!(under_root(root, Path::new("../secrets")), None);
        assert_eq!(under_root(root, Path::new("/etc/passwd")), None);
        assert_eq!(under_root(root, Path::new("a/../../b")), None);
        assert_eq!(under_root(root, Path::new(".")), None, "the root itself is not a file");
    }

    #[test]
    fn an_edc_asset_body_reads_with_dcat_properties() {
        let body = json!({
            "@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"},
            "@id": "cohort-1",
            "properties": {"name": "Diabetes cohort", "title": "Type 2 diabetes, adults", "dct:description": "EHR extract",
                           "keyword": ["diabetes", "adults"], "numberOfRecords": 1200},
            "privateProperties": {"internalTable": "t2d_2024"},
            "dataAddress": {"type": "HttpData", "baseUrl": "https://ehr.hospital.example/export"}
        });
        let asset = Asset::from_body(&body, Path::new("/srv/files")).unwrap();
        assert_eq!(asset.id, "cohort-1");
        assert_eq!(asset.field("title"), vec![json!("Type 2 diabetes, adults")]);
        assert_eq!(asset.field("dct:description"), vec![json!("EHR extract")]);
        assert_eq!(asset.field("https://w3id.org/edc/v0.0.1/ns/id"), vec![json!("cohort-1")]);
        assert_eq!(asset.field("healthdcatap:numberOfRecords"), vec![json!(1200.0)]);
        let shown = asset.to_management_json(1);
        assert_eq!(shown["properties"]["dct:title"], "Type 2 diabetes, adults");
        assert_eq!(shown["privateProperties"]["internalTable"], "t2d_2024");
        assert_eq!(shown["dataAddress"]["baseUrl"], "https://ehr.hospital.example/export");
    }

    #[test]
    fn every_invalid_field_is_named() {
        let body = json!({"@id": "x", "properties": {"numberOfRecords": "lots"},
                          "dataAddress": {"type": "File", "path": "../../etc/passwd"}});
        let errors = Asset::from_body(&body, Path::new("/srv/files")).unwrap_err();
        let paths: Vec<&str> = errors.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["properties", "dataAddress.path"], "{errors:#?}");
    }
}
