//! End-to-end tests across several real Hanse connectors: each with its own identity, folder and database (SQLite
//! or PostgreSQL), talking real HTTP on loopback. The scenarios live in `tests/tests/`; this library holds the helpers
//! that build a federation.

use hanse::testing::{Backend, TestConnector};

/// A set of running connectors.
pub struct Federation {
    pub connectors: Vec<TestConnector>,
    pub client: reqwest::Client,
}

impl Federation {
    /// Starts one connector per backend given, all at once.
    pub async fn start(backends: &[Backend]) -> Federation {
        let connectors = futures_join(backends.iter().map(|b| TestConnector::start(*b))).await;
        Federation { connectors, client: reqwest::Client::new() }
    }

    /// `n` hospitals, alternating SQLite and PostgreSQL (SQLite only when PostgreSQL is skipped).
    pub async fn with_hospitals(n: usize) -> Federation {
        let available = hanse::testing::backends();
        let backends: Vec<Backend> = (0..n).map(|i| available[i % available.len()]).collect();
        Federation::start(&backends).await
    }

    /// Stops every connector gracefully.
    pub async fn shutdown(self) {
        for connector in self.connectors {
            connector.running.shutdown().await;
        }
    }
}

async fn futures_join<F: std::future::Future<Output = T> + Send + 'static, T: Send + 'static>(
    futures: impl Iterator<Item = F>,
) -> Vec<T> {
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for handle in handles {
        out.push(handle.await.expect("connector start task"));
    }
    out
}
