//! The DSP 2025-1 contract negotiation state machine, as one table.
//!
//! Every message moves *both* sides from the same state to the same next state; what differs is who may send it.
//! So one table serves both roles: a side may send a message when [`sender`] is its role and the table has a row for
//! the current state, and accepts a received message when the sender is the other role and the table has a row.
//! Termination is allowed from every state but the two terminal ones, by either side.

use serde::{Deserialize, Serialize};

/// Negotiation states (DSP 2025-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Requested,
    Offered,
    Accepted,
    Agreed,
    Verified,
    Finalized,
    Terminated,
}

impl State {
    /// The DSP name (`REQUESTED`, ...).
    pub fn name(self) -> &'static str {
        match self {
            State::Requested => "REQUESTED",
            State::Offered => "OFFERED",
            State::Accepted => "ACCEPTED",
            State::Agreed => "AGREED",
            State::Verified => "VERIFIED",
            State::Finalized => "FINALIZED",
            State::Terminated => "TERMINATED",
        }
    }

    pub fn parse(name: &str) -> Option<State> {
        ALL_STATES.iter().copied().find(|s| s.name() == name)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, State::Finalized | State::Terminated)
    }
}

/// Every state.
pub const ALL_STATES: [State; 7] = [
    State::Requested,
    State::Offered,
    State::Accepted,
    State::Agreed,
    State::Verified,
    State::Finalized,
    State::Terminated,
];

/// Which side of a negotiation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Provider,
    Consumer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Provider => "provider",
            Role::Consumer => "consumer",
        }
    }

    pub fn other(self) -> Role {
        match self {
            Role::Provider => Role::Consumer,
            Role::Consumer => Role::Provider,
        }
    }
}

/// The negotiation messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    ContractRequest,
    ContractOffer,
    /// `ContractNegotiationEventMessage` with `eventType: ACCEPTED`.
    AcceptedEvent,
    ContractAgreement,
    ContractAgreementVerification,
    /// `ContractNegotiationEventMessage` with `eventType: FINALIZED`.
    FinalizedEvent,
    ContractNegotiationTermination,
}

impl Message {
    /// The message's `@type`.
    pub fn type_name(self) -> &'static str {
        match self {
            Message::ContractRequest => "ContractRequestMessage",
            Message::ContractOffer => "ContractOfferMessage",
            Message::AcceptedEvent | Message::FinalizedEvent => "ContractNegotiationEventMessage",
            Message::ContractAgreement => "ContractAgreementMessage",
            Message::ContractAgreementVerification => "ContractAgreementVerificationMessage",
            Message::ContractNegotiationTermination => "ContractNegotiationTerminationMessage",
        }
    }

    /// A short name for messages and logs.
    pub fn label(self) -> &'static str {
        match self {
            Message::ContractRequest => "contract request",
            Message::ContractOffer => "contract offer",
            Message::AcceptedEvent => "ACCEPTED event",
            Message::ContractAgreement => "contract agreement",
            Message::ContractAgreementVerification => "agreement verification",
            Message::FinalizedEvent => "FINALIZED event",
            Message::ContractNegotiationTermination => "termination",
        }
    }
}

/// Every negotiation message.
pub const ALL_MESSAGES: [Message; 7] = [
    Message::ContractRequest,
    Message::ContractOffer,
    Message::AcceptedEvent,
    Message::ContractAgreement,
    Message::ContractAgreementVerification,
    Message::FinalizedEvent,
    Message::ContractNegotiationTermination,
];

/// Who sends a message; termination is sent by either side.
pub fn sender(message: Message) -> Option<Role> {
    match message {
        Message::ContractRequest | Message::AcceptedEvent | Message::ContractAgreementVerification => {
            Some(Role::Consumer)
        }
        Message::ContractOffer | Message::ContractAgreement | Message::FinalizedEvent => Some(Role::Provider),
        Message::ContractNegotiationTermination => None,
    }
}

use Message::*;
use State::*;

/// `(state before, message, state after)`; `None` before means the message starts a negotiation.
#[rustfmt::skip]
pub const TRANSITIONS: &[(Option<State>, Message, State)] = &[
    (None,            ContractRequest,               Requested), // consumer starts
    (Some(Offered),   ContractRequest,               Requested), // consumer counter-request
    (None,            ContractOffer,                 Offered),   // provider starts
    (Some(Requested), ContractOffer,                 Offered),   // provider counter-offer
    (Some(Offered),   AcceptedEvent,                 Accepted),  // consumer accepts the last offer
    (Some(Requested), ContractAgreement,             Agreed),    // provider agrees to the request
    (Some(Accepted),  ContractAgreement,             Agreed),    // provider agrees to the accepted offer
    (Some(Agreed),    ContractAgreementVerification, Verified),  // consumer verifies the agreement
    (Some(Verified),  FinalizedEvent,                Finalized), // provider finalizes
];

/// The state after `message` in `state`, if the message is legal there.
pub fn next(state: Option<State>, message: Message) -> Option<State> {
    if message == ContractNegotiationTermination {
        return state.filter(|s| !s.is_terminal()).map(|_| Terminated);
    }
    TRANSITIONS.iter().find(|(from, m, _)| *from == state && *m == message).map(|(_, _, to)| *to)
}

/// Whether `role` may send `message` in `state`.
pub fn may_send(role: Role, state: Option<State>, message: Message) -> bool {
    sender(message).is_none_or(|s| s == role) && next(state, message).is_some()
}

/// Whether `role` accepts `message` from its peer in `state`.
pub fn may_receive(role: Role, state: Option<State>, message: Message) -> bool {
    sender(message).is_none_or(|s| s == role.other()) && next(state, message).is_some()
}

/// The operator calls (management API) and the message each sends.
pub const CALLS: &[(&str, Role, Message)] = &[
    ("approve", Role::Provider, ContractAgreement),
    ("offer", Role::Provider, ContractOffer),
    ("finalize", Role::Provider, FinalizedEvent),
    ("accept", Role::Consumer, AcceptedEvent),
    ("offer", Role::Consumer, ContractRequest),
    ("verify", Role::Consumer, ContractAgreementVerification),
    ("terminate", Role::Provider, ContractNegotiationTermination),
    ("terminate", Role::Consumer, ContractNegotiationTermination),
];

/// The operator calls `role` may make in `state`.
pub fn allowed_calls(role: Role, state: State) -> Vec<&'static str> {
    CALLS.iter().filter(|(_, r, m)| *r == role && may_send(role, Some(state), *m)).map(|(name, _, _)| *name).collect()
}

/// The message an operator call sends for `role`.
pub fn call_message(role: Role, call: &str) -> Option<Message> {
    CALLS.iter().find(|(name, r, _)| *name == call && *r == role).map(|(_, _, m)| *m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_straight_path_runs_to_finalized() {
        let mut state = None;
        for (message, role) in [
            (ContractRequest, Role::Consumer),
            (ContractAgreement, Role::Provider),
            (ContractAgreementVerification, Role::Consumer),
            (FinalizedEvent, Role::Provider),
        ] {
            assert!(may_send(role, state, message));
            assert!(may_receive(role.other(), state, message));
            state = next(state, message);
        }
        assert_eq!(state, Some(State::Finalized));
    }

    #[test]
    fn offers_and_counter_offers_go_both_ways() {
        let mut state = next(None, ContractRequest);
        for message in [ContractOffer, ContractRequest, ContractOffer, AcceptedEvent, ContractAgreement] {
            state = next(state, message);
            assert!(state.is_some(), "{message:?}");
        }
        assert_eq!(state, Some(Agreed));
        assert_eq!(next(None, ContractOffer), Some(Offered), "a provider may start");
    }

    #[test]
    fn nothing_but_termination_leaves_a_non_terminal_state_and_nothing_leaves_a_terminal_one() {
        for state in ALL_STATES {
            let terminated = next(Some(state), ContractNegotiationTermination);
            assert_eq!(terminated.is_some(), !state.is_terminal(), "{state:?}");
            if state.is_terminal() {
                for message in ALL_MESSAGES {
                    assert_eq!(next(Some(state), message), None, "{state:?} {message:?}");
                }
            }
        }
    }

    #[test]
    fn a_side_never_receives_its_own_kind_of_message() {
        for state in ALL_STATES {
            for message in ALL_MESSAGES {
                if let Some(role) = sender(message) {
                    assert!(!may_receive(role, Some(state), message), "{role:?} receiving {message:?}");
                }
            }
        }
    }

    #[test]
    fn operator_calls_follow_the_table() {
        assert_eq!(allowed_calls(Role::Provider, Requested), ["approve", "offer", "terminate"]);
        assert_eq!(allowed_calls(Role::Provider, Accepted), ["approve", "terminate"]);
        assert_eq!(allowed_calls(Role::Provider, Verified), ["finalize", "terminate"]);
        assert_eq!(allowed_calls(Role::Consumer, Offered), ["accept", "offer", "terminate"]);
        assert_eq!(allowed_calls(Role::Consumer, Agreed), ["verify", "terminate"]);
        assert!(allowed_calls(Role::Consumer, Finalized).is_empty());
        assert!(allowed_calls(Role::Provider, Terminated).is_empty());
    }
}
