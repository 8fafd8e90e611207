//! Every negotiation message Hanse builds validates against the official DSP 2025-1 schema.

use hanse::negotiation::machine::Message;
use hanse::negotiation::{PURPOSE, message};
use hanse_policy::Policy;
use hanse_vocab::schema::DspSchemas;
use serde_json::{Value, json};

fn offer() -> Value {
    let policy = Policy::from_json(&json!({"@type": "Offer", "permission": [{"action": "use", "constraint": [
        {"leftOperand": "purpose", "operator": "isA", "rightOperand": "DUO:0000042"},
        {"leftOperand": "hanse:minCellCount", "operator": "gteq", "rightOperand": 10},
        {"leftOperand": "dateTime", "operator": "lteq", "rightOperand": {"@value": "2027-12-31T23:59:59Z", "@type": "xsd:dateTime"}}]}],
        "prohibition": [{"action": "distribute"}], "obligation": [{"action": "inform"}]}))
    .unwrap();
    let mut offer = policy.to_dsp_json();
    offer["@id"] = json!("urn:hanse:offer:cd:abc");
    offer["target"] = json!("t2d");
    offer
}

#[test]
fn every_negotiation_message_validates() {
    let agreement = {
        let mut a = offer();
        a["@type"] = json!("Agreement");
        a["@id"] = json!("urn:uuid:agreement");
        a["assigner"] = json!("did:web:hospital.example");
        a["assignee"] = json!("did:web:research.example");
        a["timestamp"] = json!("2026-11-23T12:00:00Z");
        a
    };
    let cases = [
        message(
            Message::ContractRequest,
            "-",
            "urn:uuid:c",
            json!({"offer": offer(), "callbackAddress": "https://research.example/protocol/2025-1", PURPOSE: "DUO:0000007"}),
        ),
        message(Message::ContractRequest, "urn:uuid:p", "urn:uuid:c", json!({"offer": offer()})),
        message(Message::ContractOffer, "urn:uuid:p", "urn:uuid:c", json!({"offer": offer()})),
        message(
            Message::ContractOffer,
            "urn:uuid:p",
            "-",
            json!({"offer": offer(), "callbackAddress": "https://hospital.example/protocol/2025-1"}),
        ),
        message(Message::AcceptedEvent, "urn:uuid:p", "urn:uuid:c", json!({})),
        message(Message::ContractAgreement, "urn:uuid:p", "urn:uuid:c", json!({"agreement": agreement})),
        message(Message::ContractAgreementVerification, "urn:uuid:p", "urn:uuid:c", json!({})),
        message(Message::FinalizedEvent, "urn:uuid:p", "urn:uuid:c", json!({})),
        message(
            Message::ContractNegotiationTermination,
            "urn:uuid:p",
            "urn:uuid:c",
            json!({"code": "PolicyDenied", "reason": ["purpose"]}),
        ),
    ];
    for case in cases {
        if let Err(errors) = DspSchemas::get().validate_message(&case) {
            panic!("{errors:#?}\n{case:#}");
        }
    }
}
