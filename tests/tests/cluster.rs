//! Leases between replicas (decision 0040), on both backends: a lease has one holder at a time; one held by a replica
//! that died is taken over once it expires, not before; a cluster-wide loop runs on exactly one replica and moves to
//! another when that one stops.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hanse::cluster::Cluster;
use hanse::testing::{TestDatabase, backends};
use tokio::sync::watch;

const TTL: Duration = Duration::from_millis(1500);

async fn eventually(what: &str, within: Duration, check: impl Fn() -> bool) -> Duration {
    let started = Instant::now();
    while !check() {
        assert!(started.elapsed() < within, "{what} not within {within:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    started.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leases_have_one_holder_and_move_only_when_they_expire() {
    for backend in backends() {
        let database = TestDatabase::new(backend);
        let store = database.open().await;
        let (a, b) =
            (Cluster::new(store.leases.clone(), Some("a"), TTL), Cluster::new(store.leases.clone(), Some("b"), TTL));
        assert_ne!(a.replica, b.replica);

        // One holder at a time; renewed while held, so it outlives its first lifetime.
        let held = a.hold("job:1").await.expect("a free lease is taken");
        assert!(b.hold("job:1").await.is_none(), "{backend:?}: a held lease was taken twice");
        tokio::time::sleep(TTL * 2).await;
        assert!(b.hold("job:1").await.is_none(), "{backend:?}: a renewed lease expired");
        assert_eq!(b.holder("job:1").await.unwrap().as_deref(), Some(a.replica.as_str()));
        // Given up on drop: free at once.
        drop(held);
        let mut taken = None;
        let started = Instant::now();
        while taken.is_none() {
            taken = b.hold("job:1").await;
            assert!(started.elapsed() < TTL, "{backend:?}: a lease given up was not free");
        }

        // A holder that died (it never renews): its lease is taken only after it expires.
        assert!(store.leases.acquire("push:7", "dead/1/0", TTL.as_millis() as i64).await.unwrap());
        let died = Instant::now();
        while b.hold("push:7").await.is_none() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let waited = died.elapsed();
        assert!(waited >= TTL - Duration::from_millis(100), "{backend:?}: taken after {waited:?}, before it expired");
        assert!(waited < TTL * 3, "{backend:?}: taken only after {waited:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_wide_loop_runs_on_one_replica_and_moves_when_it_stops() {
    for backend in backends() {
        let database = TestDatabase::new(backend);
        let store = database.open().await;
        // Which replicas run the loop now, and in which order they started it.
        let running = Arc::new(Mutex::new(Vec::<usize>::new()));
        let order = Arc::new(Mutex::new(Vec::<usize>::new()));
        let mut stops = Vec::new();
        for replica in 0..3 {
            let cluster = Arc::new(Cluster::new(store.leases.clone(), Some(&format!("r{replica}")), TTL));
            let (stop, signal) = watch::channel(false);
            let (running, order) = (running.clone(), order.clone());
            cluster.leader("sweep", signal, move |mut term| {
                order.lock().unwrap().push(replica);
                let running = running.clone();
                running.lock().unwrap().push(replica);
                tokio::spawn(async move {
                    let _ = term.wait_for(|t| *t).await;
                    running.lock().unwrap().retain(|r| *r != replica);
                });
            });
            stops.push(stop);
        }
        let now = || running.lock().unwrap().clone();
        eventually("a loop started", TTL, || now().len() == 1).await;
        tokio::time::sleep(TTL * 2).await;
        assert_eq!(now().len(), 1, "{backend:?}: the loop runs on {:?}", now());
        assert_eq!(order.lock().unwrap().len(), 1, "{backend:?}: the loop was started again while it ran");

        // The replica running it stops: another takes it over (the lease is given up, not left to expire), twice.
        for takeover in 1..3 {
            let leader = now()[0];
            stops[leader].send(true).unwrap();
            let moved = eventually("the loop moved", TTL * 2, || {
                order.lock().unwrap().len() == takeover + 1 && now().len() == 1
            })
            .await;
            let successor = now()[0];
            assert_ne!(successor, leader, "{backend:?}");
            eprintln!("{backend:?}: the loop moved from r{leader} to r{successor} in {moved:?}");
            tokio::time::sleep(TTL).await;
            assert_eq!(now(), vec![successor], "{backend:?}: the loop runs on {:?}", now());
        }
    }
}
