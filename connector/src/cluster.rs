//! Replicas of one connector on one database (decision 0040): what only one of them may do at a time is done under a
//! lease. A lease is taken in the store, renewed by its holder at a third of its lifetime, and taken over by another
//! replica once it expires — its holder died, or lost the database long enough to stop renewing. A single node holds
//! every lease itself; nothing changes for it.
//!
//! - [`Cluster::hold`] claims one piece of work (a compute job, a push): the work runs only while the lease is held,
//!   and is stopped when the lease is lost.
//! - [`Cluster::leader`] runs a loop that must run once per cluster (the convergence sweep, witnessing, the peer
//!   exchange, ...) on whichever replica holds its lease, and starts it on another when that one dies.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use crate::store::Leases;

/// This replica and its leases.
pub struct Cluster {
    leases: Leases,
    /// This replica's name, unique to this process: a restarted replica does not hold its previous life's leases.
    pub replica: String,
    /// How long a lease lasts unrenewed.
    pub ttl: Duration,
}

/// A lease this replica holds, renewed in the background until it is dropped (then given up) or lost.
pub struct Held {
    lost: watch::Receiver<bool>,
    renewal: tokio::task::JoinHandle<()>,
    release: Option<(Leases, String, String)>,
}

impl Held {
    /// Resolves when the lease was lost (another replica may hold it now): the work must stop.
    pub async fn lost(&mut self) {
        let _ = self.lost.wait_for(|lost| *lost).await;
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewal.abort();
        if let Some((leases, name, holder)) = self.release.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if let Err(error) = leases.release(&name, &holder).await {
                    tracing::warn!(%error, lease = name, "cannot give a lease up; it expires instead");
                }
            });
        }
    }
}

impl Cluster {
    /// `replica`: the configured name, if any; a process id and random suffix are added either way.
    pub fn new(leases: Leases, replica: Option<&str>, ttl: Duration) -> Cluster {
        let base = replica
            .map(str::to_owned)
            .or_else(|| std::env::var("HOSTNAME").ok().filter(|h| !h.is_empty()))
            .unwrap_or_else(|| "replica".into());
        let suffix: u32 = rand::random();
        Cluster { leases, replica: format!("{base}/{}/{suffix:08x}", std::process::id()), ttl }
    }

    fn ttl_ms(&self) -> i64 {
        self.ttl.as_millis() as i64
    }

    /// Takes lease `name` if no other replica holds it: answers it held and renewed until dropped, or `None`.
    pub async fn hold(&self, name: &str) -> Option<Held> {
        match self.leases.acquire(name, &self.replica, self.ttl_ms()).await {
            Ok(true) => Some(self.renewed(name.to_owned())),
            Ok(false) => None,
            Err(error) => {
                tracing::warn!(%error, lease = name, "cannot take a lease");
                None
            }
        }
    }

    /// Who holds lease `name` now, if anyone (this replica or another).
    pub async fn holder(&self, name: &str) -> Result<Option<String>, crate::store::StoreError> {
        self.leases.holder(name).await
    }

    /// Renews lease `name` at a third of its lifetime; reports it lost when a renewal is refused, or when renewals
    /// have failed for longer than the lease lasts (another replica may have taken it by then).
    fn renewed(&self, name: String) -> Held {
        let (tell, lost) = watch::channel(false);
        let release = (self.leases.clone(), name, self.replica.clone());
        let renewal = tokio::spawn({
            let ((leases, name, holder), ttl) = (release.clone(), self.ttl);
            async move {
                let mut renewed = tokio::time::Instant::now();
                loop {
                    tokio::time::sleep(ttl / 3).await;
                    match leases.acquire(&name, &holder, ttl.as_millis() as i64).await {
                        Ok(true) => renewed = tokio::time::Instant::now(),
                        Ok(false) => break,
                        Err(error) if renewed.elapsed() + ttl / 3 >= ttl => {
                            tracing::warn!(%error, lease = name, "cannot renew a lease; giving its work up");
                            break;
                        }
                        Err(error) => tracing::warn!(%error, lease = name, "cannot renew a lease; trying again"),
                    }
                }
                tracing::warn!(lease = name, "lease lost");
                let _ = tell.send(true);
            }
        });
        Held { lost, renewal, release: Some(release) }
    }

    /// Runs the loop `start` makes on whichever replica holds lease `loop:{name}`, until `stop`. `start` gets a stop
    /// signal of its own, raised when this replica stops or loses the lease; the replica then tries to take it again.
    pub fn leader(
        self: &Arc<Self>,
        name: &'static str,
        mut stop: watch::Receiver<bool>,
        start: impl Fn(watch::Receiver<bool>) + Send + 'static,
    ) {
        let cluster = self.clone();
        let lease = format!("loop:{name}");
        tokio::spawn(async move {
            loop {
                let mut held = loop {
                    if let Some(held) = cluster.hold(&lease).await {
                        break held;
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(cluster.ttl / 3) => {}
                        _ = stop.wait_for(|s| *s) => return,
                    }
                };
                tracing::info!(lease, replica = cluster.replica, "running a cluster-wide loop here");
                let (term, signal) = watch::channel(false);
                start(signal);
                let stopping = tokio::select! {
                    _ = held.lost() => false,
                    _ = stop.wait_for(|s| *s) => true,
                };
                let _ = term.send(true);
                if stopping {
                    return; // dropping `held` gives the lease up for the next replica
                }
            }
        });
    }

    /// Gives up every lease this replica holds (a graceful stop).
    pub async fn release_all(&self) {
        if let Err(error) = self.leases.release_all(&self.replica).await {
            tracing::warn!(%error, "cannot give the leases up; they expire instead");
        }
    }

    /// A single node on SQLite (one process by construction): the leases of its previous life are its own and are
    /// dropped at start, so that a restart after a crash does not wait for them to expire.
    pub async fn start_alone(&self) {
        if let Err(error) = self.leases.release_all_holders().await {
            tracing::warn!(%error, "cannot drop the leases of a previous run; they expire instead");
        }
    }

    /// Removes leases that expired long ago (their holders are gone), on the leader of the sweeps.
    pub async fn sweep(&self) {
        if let Err(error) = self.leases.sweep(self.ttl_ms() * 4).await {
            tracing::warn!(%error, "cannot remove expired leases");
        }
    }
}
