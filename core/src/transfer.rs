//! The DSP 2025-1 transfer process state machine, as one table.
//!
//! As for negotiations, every message moves *both* sides from the same state to the same next state. Unlike
//! negotiations, most transfer messages may be sent by either side (suspend, resume, complete, terminate), so each row
//! names its sender, or `None` for either. Only the provider starts a requested transfer; either side resumes a
//! suspended one with a new start message.

use serde::{Deserialize, Serialize};

pub use crate::negotiation::Role;

/// Transfer process states (DSP 2025-1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    Requested,
    Started,
    Suspended,
    Completed,
    Terminated,
}

impl State {
    /// The DSP name (`REQUESTED`, ...).
    pub fn name(self) -> &'static str {
        match self {
            State::Requested => "REQUESTED",
            State::Started => "STARTED",
            State::Suspended => "SUSPENDED",
            State::Completed => "COMPLETED",
            State::Terminated => "TERMINATED",
        }
    }

    pub fn parse(name: &str) -> Option<State> {
        ALL_STATES.iter().copied().find(|s| s.name() == name)
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, State::Completed | State::Terminated)
    }
}

/// Every state.
pub const ALL_STATES: [State; 5] =
    [State::Requested, State::Started, State::Suspended, State::Completed, State::Terminated];

/// The transfer messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Message {
    TransferRequest,
    TransferStart,
    TransferSuspension,
    TransferCompletion,
    TransferTermination,
}

impl Message {
    /// The message's `@type`.
    pub fn type_name(self) -> &'static str {
        match self {
            Message::TransferRequest => "TransferRequestMessage",
            Message::TransferStart => "TransferStartMessage",
            Message::TransferSuspension => "TransferSuspensionMessage",
            Message::TransferCompletion => "TransferCompletionMessage",
            Message::TransferTermination => "TransferTerminationMessage",
        }
    }

    /// A short name for messages and logs.
    pub fn label(self) -> &'static str {
        match self {
            Message::TransferRequest => "transfer request",
            Message::TransferStart => "start",
            Message::TransferSuspension => "suspension",
            Message::TransferCompletion => "completion",
            Message::TransferTermination => "termination",
        }
    }

    /// The path segment a message is posted to (`{base}/transfers/{pid}/<segment>`).
    pub fn path(self) -> &'static str {
        match self {
            Message::TransferRequest => "request",
            Message::TransferStart => "start",
            Message::TransferSuspension => "suspension",
            Message::TransferCompletion => "completion",
            Message::TransferTermination => "termination",
        }
    }

    pub fn from_type(type_name: &str) -> Option<Message> {
        ALL_MESSAGES.iter().copied().find(|m| m.type_name() == type_name)
    }
}

/// Every transfer message.
pub const ALL_MESSAGES: [Message; 5] = [
    Message::TransferRequest,
    Message::TransferStart,
    Message::TransferSuspension,
    Message::TransferCompletion,
    Message::TransferTermination,
];

use Message::*;
use State::*;

const PROVIDER: Option<Role> = Some(Role::Provider);
const CONSUMER: Option<Role> = Some(Role::Consumer);
const EITHER: Option<Role> = None;

/// `(state before, message, sender, state after)`; `None` before means the message starts a transfer; sender `None`
/// means either side.
#[rustfmt::skip]
pub const TRANSITIONS: &[(Option<State>, Message, Option<Role>, State)] = &[
    (None,            TransferRequest,     CONSUMER, Requested),  // consumer asks for the data
    (Some(Requested), TransferStart,       PROVIDER, Started),    // provider starts (with a data address for pull)
    (Some(Suspended), TransferStart,       EITHER,   Started),    // either side resumes
    (Some(Started),   TransferSuspension,  EITHER,   Suspended),  // either side pauses
    (Some(Started),   TransferCompletion,  EITHER,   Completed),  // either side says the data is through
    (Some(Requested), TransferTermination, EITHER,   Terminated),
    (Some(Started),   TransferTermination, EITHER,   Terminated),
    (Some(Suspended), TransferTermination, EITHER,   Terminated),
];

fn row(state: Option<State>, message: Message) -> Option<&'static (Option<State>, Message, Option<Role>, State)> {
    TRANSITIONS.iter().find(|(from, m, _, _)| *from == state && *m == message)
}

/// The state after `message` in `state`, if the message is legal there (for some sender).
pub fn next(state: Option<State>, message: Message) -> Option<State> {
    row(state, message).map(|(_, _, _, to)| *to)
}

/// Whether `role` may send `message` in `state`.
pub fn may_send(role: Role, state: Option<State>, message: Message) -> bool {
    row(state, message).is_some_and(|(_, _, sender, _)| sender.is_none_or(|s| s == role))
}

/// Whether `role` accepts `message` from its peer in `state`.
pub fn may_receive(role: Role, state: Option<State>, message: Message) -> bool {
    may_send(role.other(), state, message)
}

/// The operator calls (management API): name, the state it applies in, and the message it sends.
pub const CALLS: &[(&str, State, Message)] = &[
    ("start", Requested, TransferStart),
    ("resume", Suspended, TransferStart),
    ("suspend", Started, TransferSuspension),
    ("complete", Started, TransferCompletion),
    ("terminate", Requested, TransferTermination),
    ("terminate", Started, TransferTermination),
    ("terminate", Suspended, TransferTermination),
];

/// The operator calls `role` may make in `state`.
pub fn allowed_calls(role: Role, state: State) -> Vec<&'static str> {
    CALLS
        .iter()
        .filter(|(_, from, m)| *from == state && may_send(role, Some(state), *m))
        .map(|(name, _, _)| *name)
        .collect()
}

/// The message an operator call sends in `state`, if the call fits.
pub fn call_message(role: Role, state: State, call: &str) -> Option<Message> {
    CALLS
        .iter()
        .find(|(name, from, m)| *name == call && *from == state && may_send(role, Some(state), *m))
        .map(|(_, _, m)| *m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_start_suspend_resume_complete() {
        let mut state = None;
        for (message, role) in [
            (TransferRequest, Role::Consumer),
            (TransferStart, Role::Provider),
            (TransferSuspension, Role::Consumer),
            (TransferStart, Role::Consumer),
            (TransferSuspension, Role::Provider),
            (TransferStart, Role::Provider),
            (TransferCompletion, Role::Consumer),
        ] {
            assert!(may_send(role, state, message), "{role:?} {message:?} in {state:?}");
            assert!(may_receive(role.other(), state, message));
            state = next(state, message);
        }
        assert_eq!(state, Some(Completed));
    }

    #[test]
    fn only_the_provider_starts_a_requested_transfer() {
        assert!(may_send(Role::Provider, Some(Requested), TransferStart));
        assert!(!may_send(Role::Consumer, Some(Requested), TransferStart));
        assert!(!may_receive(Role::Provider, Some(Requested), TransferStart));
        assert!(!may_send(Role::Provider, None, TransferRequest));
    }

    #[test]
    fn terminal_states_accept_nothing_and_only_started_completes() {
        for state in ALL_STATES {
            for message in ALL_MESSAGES {
                if state.is_terminal() {
                    assert_eq!(next(Some(state), message), None, "{state:?} {message:?}");
                }
            }
            assert_eq!(next(Some(state), TransferTermination).is_some(), !state.is_terminal());
            assert_eq!(next(Some(state), TransferCompletion).is_some(), state == Started);
        }
    }

    #[test]
    fn operator_calls_follow_the_table() {
        assert_eq!(allowed_calls(Role::Provider, Requested), ["start", "terminate"]);
        assert_eq!(allowed_calls(Role::Consumer, Requested), ["terminate"]);
        assert_eq!(allowed_calls(Role::Consumer, Started), ["suspend", "complete", "terminate"]);
        assert_eq!(allowed_calls(Role::Provider, Suspended), ["resume", "terminate"]);
        assert!(allowed_calls(Role::Consumer, Completed).is_empty());
        assert_eq!(call_message(Role::Consumer, Suspended, "resume"), Some(TransferStart));
        assert_eq!(call_message(Role::Consumer, Requested, "start"), None);
    }
}
