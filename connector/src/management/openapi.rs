//! The management listener's OpenAPI 3.1 document (decision 0028): generated from the handlers themselves — each
//! route is registered through its `#[utoipa::path]` annotation (`utoipa_axum::routes!`), so a route cannot exist
//! undocumented nor a documented one unserved — and served at `GET /management/openapi.json`, with Swagger UI (its
//! files vendored in the binary) at `/management/docs`.
//!
//! The schemas below describe the EDC JSON-LD bodies as Hanse reads and writes them: compacted with the EDC
//! vocabulary as `@vocab`, the members Hanse requires marked required, anything else allowed (JSON-LD documents carry
//! `@context` and may carry more).

use serde_json::Value as Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{IntoResponses, Modify, OpenApi, ToSchema};

/// The tags, in the order the documentation page shows them.
pub const TAGS: &[(&str, &str)] = &[
    ("Assets", "Datasets and their data addresses (EDC assets), described with DCAT / HealthDCAT-AP properties."),
    ("Policy definitions", "ODRL policies, with validation and explained decisions."),
    ("Contract definitions", "Which policies offer which assets."),
    ("Catalogue", "Another participant's catalogue, asked over the Dataspace Protocol."),
    ("Contract negotiations", "Negotiations in both roles, and the agreements they made."),
    ("Transfer processes", "Transfers in both roles, and the endpoint data references (EDRs) of pulls."),
    ("Credentials", "Verifiable credentials held and issued."),
    ("Access", "Named management keys with roles, and apps' access tokens."),
    ("Lineage", "Where data went: PROV-O lineage of datasets, agreements, transfers, jobs and app uses."),
    ("Compute", "Tables for compute-to-data and federated jobs."),
    ("Audit", "The tamper-evident log: entries with proofs, signed heads, receipts, witnessing."),
    ("Peers and broker", "The peer network, the broker's crawls and federated search."),
    ("SPARQL", "Read-only SPARQL over the catalogue graph."),
    ("Connector", "Who this connector is, its health and its measurements."),
];

/// The management API's document: title, security schemes and tags; the paths come from the router.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "Hanse management API",
        description = "The operator's API of a Hanse connector: the EDC Management API v3 (and v4, whose answers carry \
                       EDC's v4 context) where EDC has the call, and Hanse's own calls for credentials, compute, the \
                       audit log, peers, the broker and SPARQL. Every call but the health probes needs `X-Api-Key`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    modifiers(&Security),
    security(("api_key" = [])),
    components(schemas(ApiError))
)]
pub struct ManagementDoc;

struct Security;

impl Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components
            .add_security_scheme("api_key", SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("X-Api-Key"))));
        components.add_security_scheme(
            "auditor_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).bearer_format("JWT").build()),
        );
        components.add_security_scheme(
            "metrics_key",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
        openapi.tags = Some(
            TAGS.iter()
                .map(|(name, description)| {
                    utoipa::openapi::tag::TagBuilder::new().name(*name).description(Some(*description)).build()
                })
                .collect(),
        );
    }
}

/// One problem with a request, in the EDC Management API's error shape (answers are arrays of these).
#[derive(ToSchema)]
#[schema(example = json!({"message": "is required", "type": "InvalidRequest", "path": "dataAddress", "invalidValue": null}))]
#[allow(dead_code)]
pub struct ApiError {
    /// What is wrong, for a person.
    message: String,
    /// `InvalidRequest`, `AuthenticationFailed`, `ObjectNotFound`, `ObjectConflict`, `PayloadTooLarge`,
    /// `CounterPartyError`, `NotAcceptable` or `InternalError`.
    #[schema(rename = "type")]
    kind: String,
    /// The offending member of the body (`InvalidRequest`).
    path: Option<String>,
    /// The value refused (`InvalidRequest`; `null` when none is shown).
    #[schema(rename = "invalidValue", required = false)]
    invalid_value: Json,
    /// A process's state, when a call does not fit it (`ObjectConflict`).
    state: Option<String>,
    /// The calls the process allows in that state (`ObjectConflict`).
    #[schema(rename = "allowedCalls")]
    allowed_calls: Option<Vec<String>>,
}

/// What a call that reads may answer besides success.
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum ReadErrors {
    /// The request is malformed (a path or query parameter).
    #[response(status = 400)]
    Invalid(Vec<ApiError>),
    /// `X-Api-Key` is missing or wrong.
    #[response(status = 401)]
    Unauthorized(Vec<ApiError>),
    /// The key is valid, but its role does not allow this call.
    #[response(status = 403)]
    Forbidden(Vec<ApiError>),
    /// No such resource.
    #[response(status = 404)]
    NotFound(Vec<ApiError>),
    /// The store failed (see the connector's log).
    #[response(status = 500)]
    Internal(Vec<ApiError>),
}

/// What a call that changes something may answer besides success and [`ReadErrors`].
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum WriteErrors {
    /// The call conflicts with what exists (an id taken, a resource in use, a process in another state).
    #[response(status = 409)]
    Conflict(Vec<ApiError>),
    /// The body is larger than `http.management_max_body_kb`.
    #[response(status = 413)]
    TooLarge(Vec<ApiError>),
}

/// What a call that asks a counter-party may answer besides success, [`ReadErrors`] and [`WriteErrors`].
#[derive(IntoResponses)]
#[allow(dead_code)]
pub enum PeerErrors {
    /// The counter-party could not be reached or refused; the message says which and why.
    #[response(status = 502)]
    Upstream(Vec<ApiError>),
}

/// The EDC `IdResponse` of a created resource or process.
#[derive(ToSchema)]
#[schema(example = json!({"@type": "IdResponse", "@id": "diabetes-cohort", "createdAt": 1764547200000u64}))]
#[allow(dead_code)]
pub struct IdResponse {
    #[schema(rename = "@context", required = false)]
    context: Json,
    #[schema(rename = "@type")]
    kind: String,
    #[schema(rename = "@id")]
    id: String,
    /// Epoch milliseconds.
    #[schema(rename = "createdAt")]
    created_at: i64,
}

/// An EDC criterion: `operandLeft operator operandRight`.
#[derive(ToSchema)]
#[schema(example = json!({"operandLeft": "keyword", "operator": "=", "operandRight": "diabetes"}))]
#[allow(dead_code)]
pub struct Criterion {
    #[schema(rename = "operandLeft")]
    operand_left: String,
    /// `=`, `!=`, `<`, `<=`, `>`, `>=`, `in`, `like`, `ilike`, `contains`.
    operator: String,
    #[schema(rename = "operandRight", required = false)]
    operand_right: Json,
}

/// The EDC `QuerySpec` of a `.../request` call; an empty body selects everything.
#[derive(ToSchema)]
#[schema(example = json!({"offset": 0, "limit": 50, "filterExpression": [{"operandLeft": "id", "operator": "=", "operandRight": "diabetes-cohort"}]}))]
#[allow(dead_code)]
pub struct QuerySpec {
    #[schema(rename = "@context", required = false)]
    context: Json,
    /// `QuerySpec` (ignored).
    #[schema(rename = "@type", required = false)]
    kind: Json,
    #[schema(required = false)]
    offset: Json,
    #[schema(required = false)]
    limit: Json,
    /// `ASC` or `DESC`.
    #[schema(rename = "sortOrder")]
    sort_order: Option<String>,
    #[schema(rename = "sortField")]
    sort_field: Option<String>,
    #[schema(rename = "filterExpression", required = false)]
    filter_expression: Json,
}

/// Which jobs a job query lists.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct JobQuery {
    /// `consumer` (the jobs this connector ran across sites; the default) or `provider` (the jobs it ran for others).
    role: Option<JobRole>,
}

#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
#[allow(dead_code)]
enum JobRole {
    Consumer,
    Provider,
}

/// A SPARQL query sent as a form or as JSON.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct SparqlQuery {
    /// The query (SPARQL 1.1; updates are refused).
    query: String,
}

/// Where an asset's data comes from.
#[derive(ToSchema)]
#[schema(example = json!({"@type": "DataAddress", "type": "HttpData", "baseUrl": "https://ehr.hospital.example/cohort"}))]
#[allow(dead_code)]
pub struct DataAddress {
    /// `HttpData` (with `baseUrl`), `File` (with `path` under the file root) or `HanseTable` (an ingested table,
    /// for compute only). Every member is a string, number or boolean.
    #[schema(rename = "type")]
    kind: String,
    /// `HttpData`: the backend's URL.
    #[schema(rename = "baseUrl")]
    base_url: Option<String>,
    /// `File`: the file's path under `dataplane.file_root`.
    path: Option<String>,
}

/// An EDC asset (`POST`/`PUT /assets`): its DCAT / HealthDCAT-AP description in `properties`.
#[derive(ToSchema)]
#[schema(example = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@id": "diabetes-cohort",
    "properties": {"title": "Type 2 diabetes adults cohort", "keyword": ["diabetes", "adults"], "numberOfRecords": 1200},
    "dataAddress": {"type": "HttpData", "baseUrl": "https://ehr.hospital.example/diabetes-cohort"}}))]
#[allow(dead_code)]
pub struct AssetInput {
    #[schema(rename = "@context", required = false)]
    context: Json,
    /// The asset's id (generated when absent on create; required to replace).
    #[schema(rename = "@id")]
    id: Option<String>,
    /// DCAT / HealthDCAT-AP properties by their EDC short names or full IRIs.
    #[schema(required = false)]
    properties: Json,
    /// Properties never shown to peers.
    #[schema(rename = "privateProperties", required = false)]
    private_properties: Json,
    #[schema(rename = "dataAddress")]
    data_address: DataAddress,
}

/// An ODRL policy definition (`POST`/`PUT /policydefinitions`).
#[derive(ToSchema)]
#[schema(example = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@id": "research-only",
    "policy": {"@context": "http://www.w3.org/ns/odrl.jsonld", "@type": "Set",
        "permission": [{"action": "use", "constraint": [{"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"}]}]}}))]
#[allow(dead_code)]
pub struct PolicyDefinitionInput {
    #[schema(rename = "@context", required = false)]
    context: Json,
    #[schema(rename = "@id")]
    id: Option<String>,
    /// The ODRL 2.2 policy (`Set`, `Offer` or `Agreement`), with the Hanse health profile's operands.
    policy: Json,
}

/// A contract definition (`POST`/`PUT /contractdefinitions`): which policies offer which assets.
#[derive(ToSchema)]
#[schema(example = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@id": "diabetes-offer",
    "accessPolicyId": "members-only", "contractPolicyId": "research-only",
    "assetsSelector": [{"operandLeft": "https://w3id.org/edc/v0.0.1/ns/id", "operator": "=", "operandRight": "diabetes-cohort"}]}))]
#[allow(dead_code)]
pub struct ContractDefinitionInput {
    #[schema(rename = "@context", required = false)]
    context: Json,
    #[schema(rename = "@id")]
    id: Option<String>,
    /// The policy deciding who sees the offer.
    #[schema(rename = "accessPolicyId")]
    access_policy_id: String,
    /// The policy offered as contract terms.
    #[schema(rename = "contractPolicyId")]
    contract_policy_id: String,
    /// Criteria on asset properties; none selects every asset.
    #[schema(rename = "assetsSelector", required = false)]
    assets_selector: Json,
}

/// A catalogue request to a counter-party (`POST /catalog/request`).
#[derive(ToSchema)]
#[schema(example = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "CatalogRequest",
    "counterPartyAddress": "https://hospital.example/protocol/2025-1", "protocol": "dataspace-protocol-http:2025-1"}))]
#[allow(dead_code)]
pub struct CatalogRequest {
    #[schema(rename = "@context", required = false)]
    context: Json,
    /// The counter-party's DSP address.
    #[schema(rename = "counterPartyAddress")]
    counter_party_address: String,
    /// The counter-party's participant id (found from its address when absent).
    #[schema(rename = "counterPartyId")]
    counter_party_id: Option<String>,
    /// `dataspace-protocol-http:2025-1`.
    protocol: Option<String>,
    #[schema(rename = "querySpec", required = false)]
    query_spec: Json,
}

/// A request for one dataset of a counter-party (`POST /catalog/dataset/request`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct DatasetRequest {
    #[schema(rename = "@context", required = false)]
    context: Json,
    /// The dataset's id.
    #[schema(rename = "@id")]
    id: String,
    #[schema(rename = "counterPartyAddress")]
    counter_party_address: String,
    #[schema(rename = "counterPartyId")]
    counter_party_id: Option<String>,
    protocol: Option<String>,
}

/// A contract request (`POST /contractnegotiations`, `POST /edrs`): the offer as the catalogue lists it.
#[derive(ToSchema)]
#[schema(example = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "ContractRequest",
    "counterPartyAddress": "https://hospital.example/protocol/2025-1", "counterPartyId": "did:web:hospital.example",
    "protocol": "dataspace-protocol-http:2025-1", "purpose": "DUO:0000007",
    "policy": {"@id": "b2ZmZXI=", "@type": "Offer", "target": "diabetes-cohort", "assigner": "did:web:hospital.example",
        "permission": [{"action": "use"}]}}))]
#[allow(dead_code)]
pub struct ContractRequest {
    #[schema(rename = "@context", required = false)]
    context: Json,
    /// The provider's DSP address.
    #[schema(rename = "counterPartyAddress")]
    counter_party_address: String,
    /// The provider's participant id (or `policy.assigner`).
    #[schema(rename = "counterPartyId")]
    counter_party_id: Option<String>,
    protocol: Option<String>,
    /// The purpose the consumer declares (a DUO, EHDS or DPV term), which purpose constraints are decided against.
    purpose: Option<String>,
    /// The offer (`@id`, `target` and its rules) from the provider's catalogue.
    policy: Json,
}

/// A transfer request (`POST /transferprocesses`).
#[derive(ToSchema)]
#[schema(example = json!({"@context": {"@vocab": "https://w3id.org/edc/v0.0.1/ns/"}, "@type": "TransferRequest",
    "contractId": "urn:uuid:5e0c6d1e-8f0a-4f8e-9f64-1d2f0c3b4a5d", "transferType": "HttpData-PULL",
    "protocol": "dataspace-protocol-http:2025-1"}))]
#[allow(dead_code)]
pub struct TransferRequest {
    #[schema(rename = "@context", required = false)]
    context: Json,
    /// The agreement the transfer runs under.
    #[schema(rename = "contractId")]
    contract_id: String,
    /// `HttpData-PULL` (the default), `HttpData-PUSH` (with `dataDestination`) or `Compute-PULL`.
    #[schema(rename = "transferType")]
    transfer_type: Option<String>,
    /// The provider's DSP address (the agreement's by default).
    #[schema(rename = "counterPartyAddress")]
    counter_party_address: Option<String>,
    protocol: Option<String>,
    /// `HttpData-PUSH`: where the provider posts the data (`baseUrl`, optional `authKey`/`authCode`).
    #[schema(rename = "dataDestination", required = false)]
    data_destination: Json,
    /// Complete the transfer once the data has been delivered (default true).
    #[schema(rename = "autoComplete")]
    auto_complete: Option<bool>,
}

/// A credential to hold (`POST /credentials`).
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct CredentialImport {
    /// The verifiable credential as a JWT (VC 2.0, `vc+jwt`).
    credential: String,
}

/// A credential to issue (`POST /credentials/issue`).
#[derive(ToSchema)]
#[schema(example = json!({"type": "MembershipCredential", "subject": "did:web:research.example",
    "claims": {"membership": "active"}, "validUntil": "2027-12-31T00:00:00Z"}))]
#[allow(dead_code)]
pub struct CredentialIssue {
    /// The credential type, e.g. `MembershipCredential`.
    #[schema(rename = "type")]
    kind: String,
    /// The holder's DID.
    subject: String,
    /// Claims about the subject.
    #[schema(required = false)]
    claims: Json,
    /// RFC 3339.
    #[schema(rename = "validUntil")]
    valid_until: Option<String>,
    /// Also deliver it to the subject's credential service (the DCP Storage API); the answer says whether it arrived.
    #[schema(required = false)]
    deliver: Option<bool>,
}

/// A federated compute job (`POST /jobs`).
#[derive(ToSchema)]
#[schema(example = json!({"template": "aggregate", "parameters": {"metrics": [{"column": "age", "statistics": ["count"]}]},
    "sites": [{"agreementId": "urn:uuid:5e0c6d1e-8f0a-4f8e-9f64-1d2f0c3b4a5d"}]}))]
#[allow(dead_code)]
pub struct JobInput {
    /// `aggregate`, `crosstab`, `glm`, `fedavg` or `module` (a provider's algorithm, decision 0048).
    template: String,
    /// The template's parameters (`glm` and `fedavg`: `family`, `outcome`, `covariates`, `filters` and
    /// `secureAggregation`: the sites release only masked updates whose sum alone this connector learns; `fedavg` also
    /// `learningRate`, `localEpochs`, `seed`, `proximalMu`, FedProx's proximal weight, `differentialPrivacy`: `clip`,
    /// `noiseMultiplier` and `rounds` of each site's clipped, noised update, and `standardise`; `module`: `algorithm`,
    /// the `sha-256:` digest of an algorithm the sites admit, `columns`, `values`, `cells` and `rounds`).
    #[schema(required = false)]
    parameters: Json,
    /// One entry per site: `agreementId` and optionally `counterPartyAddress`.
    sites: Vec<Json>,
    /// The smallest cell the consumer asks for (never below a site's own).
    #[schema(rename = "minCellCount")]
    min_cell_count: Option<u64>,
    /// `fedavg`: training rounds; `glm`: the most Newton rounds.
    rounds: Option<u32>,
}

/// A peer to add (`POST /peers`): exactly one of `did` and `url`.
#[derive(ToSchema)]
#[allow(dead_code)]
pub struct PeerInput {
    /// A did:web.
    did: Option<String>,
    /// The peer's public URL.
    url: Option<String>,
}

/// Any JSON object (a JSON-LD node whose members this document does not list one by one).
pub type Object = serde_json::Map<String, Json>;

/// The document as served: the v4 copies of the EDC calls get operation ids and tags of their own (operation ids
/// must be unique), and every operation that names no security of its own needs the API key.
pub fn finish(mut document: utoipa::openapi::OpenApi) -> utoipa::openapi::OpenApi {
    for (path, item) in document.paths.paths.iter_mut() {
        let v4 = path.starts_with("/management/v4/");
        for operation in operations(item) {
            if v4 {
                operation.operation_id = operation.operation_id.take().map(|id| format!("{id} (v4)"));
                operation.tags =
                    operation.tags.take().map(|tags| tags.into_iter().map(|t| format!("{t} (v4)")).collect());
            }
        }
    }
    if let Some(tags) = &mut document.tags {
        let v4: Vec<_> = tags
            .iter()
            .filter(|t| EDC_TAGS.contains(&t.name.as_str()))
            .map(|t| {
                let mut tag = t.clone();
                tag.name = format!("{} (v4)", t.name);
                tag.description = Some(format!("{} EDC Management API v4.", t.description.clone().unwrap_or_default()));
                tag
            })
            .collect();
        tags.extend(v4);
    }
    document
}

/// The tags of the EDC Management API's calls, which `/management/v4` serves again.
const EDC_TAGS: &[&str] = &[
    "Assets",
    "Policy definitions",
    "Contract definitions",
    "Catalogue",
    "Contract negotiations",
    "Transfer processes",
];

fn operations(item: &mut utoipa::openapi::PathItem) -> impl Iterator<Item = &mut utoipa::openapi::path::Operation> {
    [&mut item.get, &mut item.put, &mut item.post, &mut item.delete, &mut item.options, &mut item.head, &mut item.patch]
        .into_iter()
        .filter_map(Option::as_mut)
}

/// `GET /management/openapi.json` and the documentation page `/management/docs` (Swagger UI, vendored), open
/// without a key: they describe the API every Hanse serves, nothing of this connector.
pub fn routes(document: &utoipa::openapi::OpenApi) -> axum::Router<crate::state::Shared> {
    utoipa_swagger_ui::SwaggerUi::new("/management/docs").url("/management/openapi.json", document.clone()).into()
}
