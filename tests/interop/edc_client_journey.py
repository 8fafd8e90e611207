"""The PyPI `edc-client`'s standard journey against two Hanse connectors, unchanged.

v3: the client's own hand-written `Connector` (asset -> policy -> contract definition -> catalogue -> negotiation ->
transfer -> EDR -> data). v4: the client's generated Management API v4 classes for the same journey (EDC 0.17's
`/v4` bodies with the `https://w3id.org/edc/connector/management/v2` context), the EDR through the v3 EDR API as EDC
serves it beside v4.

Arguments: v3|v4; environment: PROVIDER_MANAGEMENT, PROVIDER_ID, PROVIDER_PROTOCOL, PROVIDER_API_KEY, the same for
CONSUMER, BACKEND_URL (what the asset proxies), OUT (where the pulled bytes go). Prints one JSON line of what it saw.
"""

import json
import os
import sys
import time
import uuid

import edc_client
from edc_client.api_client import ApiClient
from edc_client.connector import Connector

V2 = "https://w3id.org/edc/connector/management/v2"


def connector(role):
    return Connector(
        "samples",
        os.environ[f"{role}_MANAGEMENT"],
        os.environ[f"{role}_ID"],
        os.environ[f"{role}_PROTOCOL"],
        os.environ[f"{role}_API_KEY"],
    )


def v3(provider, consumer, asset_id, backend):
    provider.create_asset(asset_id, backend)
    provider.create_policy(f"{asset_id}-policy")
    provider.create_contract_definition(f"{asset_id}-cd", f"{asset_id}-policy", f"{asset_id}-policy")
    response = consumer.negotiate_and_transfer(provider, asset_id, poll_interval=0.2, poll_timeout=30)
    return response.data


def wait(what, read, done, timeout=30):
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = read()
        if done(value):
            return value
        time.sleep(0.2)
    raise TimeoutError(f"timed out waiting for {what}")


def v4(provider, consumer, asset_id, backend):
    # EDC 0.17's v4 asset carries no data address (its data plane holds it); EDC 0.15-0.16's v4 accepted one. The
    # generated model drops unknown members, so the asset goes through the client's own serialiser as a plain body.
    asset = {
        "@context": [V2],
        "@type": "Asset",
        "@id": asset_id,
        "properties": {"name": "interop v4 asset", "contenttype": "application/octet-stream"},
        "dataAddress": {"@type": "DataAddress", "type": "HttpData", "baseUrl": backend, "proxyPath": "true"},
    }
    params = provider.client.param_serialize(
        method="POST", resource_path="/v4/assets", body=asset, header_params={"Content-Type": "application/json"},
        auth_settings=[],
    )
    raw = provider.client.call_api(*params)
    raw.read()
    assert raw.status == 200, (raw.status, raw.data)

    policy = edc_client.PolicyDefinitionSchema.from_dict({
        "@context": [V2],
        "@type": "PolicyDefinition",
        "@id": f"{asset_id}-policy",
        "policy": {"@type": "Set", "permission": [{"action": "use"}]},
    })
    edc_client.PolicyDefinitionV4Api(provider.client).create_policy_definition_v4(policy_definition_schema=policy)
    definition = edc_client.ContractDefinitionSchema.from_dict({
        "@context": [V2],
        "@type": "ContractDefinition",
        "@id": f"{asset_id}-cd",
        "accessPolicyId": f"{asset_id}-policy",
        "contractPolicyId": f"{asset_id}-policy",
        "assetsSelector": [{"@type": "Criterion", "operandLeft": "https://w3id.org/edc/v0.0.1/ns/id",
                            "operator": "=", "operandRight": asset_id}],
    })
    edc_client.ContractDefinitionV4Api(provider.client).create_contract_definition_v4(
        contract_definition_schema=definition)

    request = edc_client.CatalogRequestSchema.from_dict({
        "@context": [V2],
        "@type": "CatalogRequest",
        "counterPartyAddress": provider.protocol_address,
        "counterPartyId": provider.participant_id,
        "protocol": consumer.dsp_protocol,
    })
    response = edc_client.CatalogV4Api(consumer.client).request_catalog_v4_with_http_info(catalog_request_schema=request)
    catalog = json.loads(response.raw_data)
    datasets = catalog.get("dataset") or catalog.get("dcat:dataset") or []
    datasets = [datasets] if isinstance(datasets, dict) else datasets
    dataset = next(d for d in datasets if d.get("@id") == asset_id)
    offers = dataset.get("hasPolicy") or dataset.get("odrl:hasPolicy")
    offer = offers[0] if isinstance(offers, list) else offers

    contract_request = edc_client.ContractRequestSchema.from_dict({
        "@context": [V2],
        "@type": "ContractRequest",
        "counterPartyAddress": provider.protocol_address,
        "protocol": consumer.dsp_protocol,
        "policy": {
            "@type": "Offer",
            "@id": offer["@id"],
            "assigner": provider.participant_id,
            "target": asset_id,
            "permission": offer.get("permission"),
        },
    })
    negotiations = edc_client.ContractNegotiationV4Api(consumer.client)
    negotiation_id = negotiations.initiate_contract_negotiation_v4(contract_request_schema=contract_request).id
    # The generated ContractNegotiationSchema reads `@type` as the CONSUMER/PROVIDER enum (two fields named `type`),
    # so it cannot read EDC's own answers either; the raw call is how this client reads a negotiation against EDC.
    negotiation = wait(
        "the v4 negotiation",
        lambda: json.loads(negotiations.get_negotiation_v4_without_preload_content(negotiation_id).read()),
        lambda n: n.get("state") == "FINALIZED",
    )
    agreement_id = negotiation["contractAgreementId"]

    transfer_request = edc_client.TransferRequestSchema.from_dict({
        "@context": [V2],
        "@type": "TransferRequest",
        "counterPartyAddress": provider.protocol_address,
        "protocol": consumer.dsp_protocol,
        "contractId": agreement_id,
        "transferType": "HttpData-PULL",
    })
    transfers = edc_client.TransferProcessV4Api(consumer.client)
    transfer_id = transfers.initiate_transfer_process_v4(transfer_request_schema=transfer_request).id
    wait(
        "the v4 transfer",
        lambda: json.loads(transfers.get_transfer_process_v4_without_preload_content(transfer_id).read()),
        lambda t: t.get("state") == "STARTED",
    )
    endpoint, authorization = consumer.edr_endpoint_auth(consumer.get_edr(transfer_id))
    return Connector.pull_data(endpoint, authorization).data


def main():
    version = sys.argv[1]
    provider, consumer = connector("PROVIDER"), connector("CONSUMER")
    asset_id = f"interop-{version}-{uuid.uuid4().hex[:8]}"
    journey = {"v3": v3, "v4": v4}[version]
    data = journey(provider, consumer, asset_id, os.environ["BACKEND_URL"])
    with open(os.environ["OUT"], "wb") as out:
        out.write(data)
    print(json.dumps({"asset": asset_id, "bytes": len(data)}))


if __name__ == "__main__":
    main()
