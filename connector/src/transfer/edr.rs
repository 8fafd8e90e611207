//! EDC's `POST /edrs` on the consumer side: a negotiation started with `pull_on_agreement` starts its pull transfer
//! by itself once it is FINALIZED, and the data address that transfer receives is the endpoint data reference the
//! consumer's tools read from `/edrs/{id}/dataaddress`.
//!
//! The transfer is derived, not remembered: an agreement with a consumer transfer under it needs nothing more, so a
//! stop between the agreement and the transfer request is mended by the scan at start-up. One task does the scan and
//! then follows the negotiation events, so two starts for one agreement never race inside a connector; across replicas
//! of one connector, each start is decided under the agreement's lease (`pull:{agreement}`).

use std::sync::Arc;

use tokio::sync::watch;

use super::{PULL, Start, Transfers, machine::Role};
use crate::cluster::Cluster;
use crate::negotiation::{Negotiation, machine::State as NegotiationState};
use crate::store::ProcessKind;

/// Starts the task that turns agreed `POST /edrs` negotiations into pull transfers.
pub fn spawn(state: Transfers, cluster: Arc<Cluster>, mut stop: watch::Receiver<bool>) {
    let mut events = state.negotiations.events();
    tokio::spawn(async move {
        scan(&state, &cluster).await;
        loop {
            let event = tokio::select! {
                _ = stop.wait_for(|stop| *stop) => return,
                event = events.recv() => event,
            };
            match event {
                Ok((id, NegotiationState::Finalized)) => match state.negotiations.get(&id).await {
                    Ok(negotiation) => pull_if_due(&state, &cluster, negotiation).await,
                    Err(error) => tracing::error!(%error, negotiation = id, "cannot read a finalized negotiation"),
                },
                Ok(_) => {}
                // Events were dropped while this task was busy: the scan finds what they announced.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => scan(&state, &cluster).await,
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
}

/// Every finalized consumer negotiation still waiting for its pull transfer gets it: at start-up, and when events
/// were dropped while the task was busy.
async fn scan(state: &Transfers, cluster: &Cluster) {
    let finalized =
        state.store.processes_in(ProcessKind::Negotiation, Role::Consumer.name(), NegotiationState::Finalized.name());
    match finalized.await {
        Ok(rows) => {
            for row in rows {
                let id = row.id.clone();
                match Negotiation::from_row(row) {
                    Ok(negotiation) => pull_if_due(state, cluster, negotiation).await,
                    Err(error) => tracing::error!(%error, negotiation = id, "cannot read a negotiation"),
                }
            }
        }
        Err(error) => tracing::error!(%error, "cannot look for agreements still waiting for their pull transfer"),
    }
}

/// Starts the pull transfer of a finalized consumer negotiation that asked for one and has none yet.
async fn pull_if_due(state: &Transfers, cluster: &Cluster, negotiation: Negotiation) {
    let due = negotiation.role == crate::negotiation::machine::Role::Consumer
        && negotiation.state == NegotiationState::Finalized
        && negotiation.details.pull_on_agreement;
    let Some(agreement_id) = negotiation.details.agreement_id.clone().filter(|_| due) else {
        return;
    };
    // Held until the transfer is recorded: another replica deciding for the same agreement at the same time leaves it
    // to this one.
    let Some(_lease) = cluster.hold(&format!("pull:{agreement_id}")).await else {
        return tracing::debug!(agreement = agreement_id, "another replica starts this agreement's pull transfer");
    };
    match state.store.processes_of_agreement(ProcessKind::Transfer, &agreement_id).await {
        Ok(transfers) if transfers.is_empty() => {}
        Ok(_) => return,
        Err(error) => {
            tracing::error!(%error, agreement = agreement_id, "cannot look for the agreement's transfers");
            return;
        }
    }
    let agreement = match state.store.agreement(&agreement_id).await {
        Ok(Some(agreement)) => agreement,
        Ok(None) => return tracing::error!(agreement = agreement_id, "a finalized negotiation's agreement is missing"),
        Err(error) => return tracing::error!(%error, agreement = agreement_id, "cannot read an agreement"),
    };
    let start = Start {
        provider_address: negotiation.row.counter_party_address.clone(),
        agreement,
        format: PULL.to_owned(),
        destination: None,
        // As a transfer started through the management API without `autoComplete`.
        auto_complete: true,
        job: None,
    };
    match state.start(start).await {
        Ok(transfer) => {
            tracing::info!(negotiation = %negotiation.row.id, transfer = %transfer.row.id, "pull transfer started for an EDR")
        }
        Err(error) => {
            tracing::error!(%error, negotiation = %negotiation.row.id, "cannot start the EDR's pull transfer")
        }
    }
}
