// The npm `@think-it-labs/edc-connector-client`'s standard journey against two Hanse connectors, unchanged: asset ->
// policy -> contract definition -> catalogue -> negotiation -> transfer -> EDR -> data, through the client's typed
// Management API v3 calls (the client speaks v3 only). Every response is read the way the client reads it: expanded
// by jsonld.js with the client's own document loader, which fetches any context it does not bundle from the web.
//
// Environment: PROVIDER_MANAGEMENT, PROVIDER_ID, PROVIDER_PROTOCOL, PROVIDER_API_KEY, the same for CONSUMER,
// BACKEND_URL (what the asset proxies), OUT (where the pulled bytes go). Prints one JSON line of what it saw.
"use strict";

const fs = require("node:fs");
const crypto = require("node:crypto");
const { EdcConnectorClient } = require("@think-it-labs/edc-connector-client");

// A response that needs a context from the web fails here, with or without internet: the client's loader falls back
// to jsonld.js's own network loader for every context it does not bundle, and that loader is replaced by a refusal.
const jsonld = require("jsonld");
jsonld.documentLoaders.node = () => async (url) => {
  throw new Error(`the client had to fetch the context ${url}: a Hanse response is not self-contained`);
};

function client(role) {
  return new EdcConnectorClient.Builder()
    .apiToken(process.env[`${role}_API_KEY`])
    .managementUrl(process.env[`${role}_MANAGEMENT`])
    .protocolUrl(process.env[`${role}_PROTOCOL`])
    .build();
}

async function wait(what, read, done) {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const value = await read();
    if (done(value)) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 200));
  }
}

async function main() {
  const provider = client("PROVIDER");
  const consumer = client("CONSUMER");
  const providerId = process.env.PROVIDER_ID;
  const providerProtocol = process.env.PROVIDER_PROTOCOL;
  const assetId = `interop-npm-${crypto.randomUUID().slice(0, 8)}`;

  await provider.management.assets.create({
    "@id": assetId,
    properties: { name: "interop npm asset", contenttype: "application/octet-stream" },
    dataAddress: { type: "HttpData", baseUrl: process.env.BACKEND_URL, proxyPath: "true", proxyQueryParams: "true" },
  });
  // The client's own fixture policy: EDC's allow-all.
  await provider.management.policyDefinitions.create({
    "@id": `${assetId}-policy`,
    policy: {
      "@context": "http://www.w3.org/ns/odrl.jsonld",
      "@type": "Set",
      permission: [],
      prohibition: [],
      obligation: [],
    },
  });
  await provider.management.contractDefinitions.create({
    "@id": `${assetId}-cd`,
    accessPolicyId: `${assetId}-policy`,
    contractPolicyId: `${assetId}-policy`,
    assetsSelector: [],
  });

  const catalog = await consumer.management.catalog.request({
    counterPartyAddress: providerProtocol,
    counterPartyId: providerId,
  });
  const dataset = catalog.datasets.find((d) => d.id === assetId);
  if (!dataset) throw new Error(`${assetId} is not in the catalogue: ${catalog.datasets.map((d) => d.id)}`);
  const offer = dataset.offers[0];

  const negotiation = await consumer.management.contractNegotiations.initiate({
    counterPartyAddress: providerProtocol,
    policy: {
      "@context": "http://www.w3.org/ns/odrl.jsonld",
      "@type": "Offer",
      "@id": offer.id,
      assigner: providerId,
      target: assetId,
    },
  });
  const finalized = await wait(
    "the negotiation",
    () => consumer.management.contractNegotiations.get(negotiation.id),
    (n) => n.state === "FINALIZED",
  );
  const agreementId = finalized.contractAgreementId;

  const transfer = await consumer.management.transferProcesses.initiate({
    counterPartyAddress: providerProtocol,
    contractId: agreementId,
    transferType: "HttpData-PULL",
  });
  await wait(
    "the transfer",
    () => consumer.management.transferProcesses.get(transfer.id),
    (t) => t.state === "STARTED",
  );
  const entries = await consumer.management.edrs.request({
    filterExpression: [{ operandLeft: "transferProcessId", operator: "=", operandRight: transfer.id }],
  });
  if (entries.length !== 1 || entries[0].transferProcessId !== transfer.id) {
    throw new Error(`the EDR cache has ${entries.length} entries for ${transfer.id}`);
  }
  const address = await consumer.management.edrs.dataAddress(transfer.id);
  const endpoint = address.mandatoryValue("edc", "endpoint");
  const authorization = address.mandatoryValue("edc", "authorization");
  if (!endpoint || !authorization) throw new Error(`the EDR has no endpoint or authorization: ${JSON.stringify(address)}`);

  // EDC's pull: the token as it is, no scheme; a sub-path and a query the asset lets through.
  const response = await fetch(`${endpoint}/part?x=1`, { headers: { Authorization: authorization } });
  if (!response.ok) throw new Error(`the data plane answered ${response.status}: ${await response.text()}`);
  const data = Buffer.from(await response.arrayBuffer());
  fs.writeFileSync(process.env.OUT, data);
  console.log(JSON.stringify({ asset: assetId, bytes: data.length, agreement: agreementId }));
}

main().catch((error) => {
  console.error(error.stack || String(error));
  process.exit(1);
});
