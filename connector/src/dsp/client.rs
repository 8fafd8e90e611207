//! The consumer side of the DSP: talking to a peer's public listener.

use std::sync::Arc;

use serde_json::{Value as Json, json};

use crate::identity::Identity;

/// The DSP version Hanse speaks.
pub const VERSION: &str = "2025-1";

/// Why a peer could not be asked.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach {url}: {}", hanse_core::error_chain(source))]
    Unreachable { url: String, source: reqwest::Error },
    #[error("{url} answered HTTP {status}: {body}")]
    Refused { url: String, status: u16, body: String },
    #[error("{address} offers DSP {}, not {VERSION}", offered.join(", "))]
    Incompatible { address: String, offered: Vec<String> },
    #[error("{0}")]
    Protocol(String),
}

/// An HTTP client for peers; every request carries our self-issued token for the peer.
#[derive(Clone)]
pub struct DspClient {
    http: reqwest::Client,
    identity: Arc<Identity>,
}

impl DspClient {
    pub fn new(http: reqwest::Client, identity: Arc<Identity>) -> DspClient {
        DspClient { http, identity }
    }

    /// The HTTP client for peers (with the configured trust and client certificate).
    pub fn http(&self) -> &reqwest::Client {
        &self.http
    }

    /// The peer's DID: `counter_party` when given, else what the peer's `/.well-known/did.json` names.
    pub async fn counter_party(&self, address: &str, counter_party: Option<&str>) -> Result<String, ClientError> {
        match counter_party {
            Some(did) => Ok(did.to_owned()),
            None => self.identity.discover(address).await.ok_or_else(|| {
                ClientError::Protocol(format!(
                    "{address} names no participant in /.well-known/did.json; give counterPartyId (its DID)"
                ))
            }),
        }
    }

    /// The versioned DSP base of a peer: `address` itself when it names version 2025-1, else what the peer's
    /// `/.well-known/dspace-version` says (under `address`, then at its origin). A peer that offers no version Hanse
    /// speaks is reported with what it offers.
    pub async fn resolve_base(&self, address: &str) -> Result<String, ClientError> {
        let address = address.trim_end_matches('/');
        if address.ends_with(&format!("/{VERSION}")) {
            return Ok(address.to_owned());
        }
        let url = reqwest::Url::parse(address)
            .map_err(|e| ClientError::Protocol(format!("`{address}` is not a URL: {e}")))?;
        let origin = url.origin().ascii_serialization();
        let mut offered = Vec::new();
        for candidate in
            [format!("{address}/.well-known/dspace-version"), format!("{origin}/.well-known/dspace-version")]
        {
            let Ok(response) = self.http.get(&candidate).send().await else { continue };
            if !response.status().is_success() {
                continue;
            }
            let Ok(body) = crate::identity::limited::json(response, crate::identity::limited::DOCUMENT).await else {
                continue;
            };
            for version in body["protocolVersions"].as_array().into_iter().flatten() {
                let name = version["version"].as_str().unwrap_or_default();
                if name == VERSION
                    && let Some(path) = version["path"].as_str()
                {
                    return Ok(format!("{origin}{}", path.trim_end_matches('/')));
                }
                offered.push(name.to_owned());
            }
        }
        if offered.is_empty() {
            Err(ClientError::Protocol(format!("{address} publishes no /.well-known/dspace-version")))
        } else {
            Err(ClientError::Incompatible { address: address.to_owned(), offered })
        }
    }

    /// Posts a DSP message and returns the answer's status, `Link` header and JSON body.
    pub async fn post(
        &self,
        url: &str,
        audience: &str,
        message: &Json,
    ) -> Result<(u16, Option<String>, Json), ClientError> {
        self.send(url, self.http.post(url).json(message), audience).await
    }

    /// A `GET` of a DSP resource (a process's state): the answer's status, `Link` header and JSON body.
    pub async fn get(&self, url: &str, audience: &str) -> Result<(u16, Option<String>, Json), ClientError> {
        self.send(url, self.http.get(url), audience).await
    }

    /// One dataset of a peer's catalogue (`GET {base}/catalog/datasets/{id}`), as the peer shows it to us.
    pub async fn dataset(&self, address: &str, counter_party_id: Option<&str>, id: &str) -> Result<Json, ClientError> {
        let base = self.resolve_base(address).await?;
        let audience = self.counter_party(address, counter_party_id).await?;
        let url = format!("{base}/catalog/datasets/{}", hanse_core::encode::percent(id));
        Ok(self.send(&url, self.http.get(&url), &audience).await?.2)
    }

    /// Sends `request` to `url` with our self-issued token for `audience`: the answer's status, `Link` header and
    /// JSON body (`Null` when empty), or why there is none.
    async fn send(
        &self,
        url: &str,
        request: reqwest::RequestBuilder,
        audience: &str,
    ) -> Result<(u16, Option<String>, Json), ClientError> {
        let unreachable = |source| ClientError::Unreachable { url: url.to_owned(), source };
        let request = crate::telemetry::traced(request.header("Authorization", self.identity.authorization(audience)));
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status().as_u16();
        let link = response.headers().get("link").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let text = crate::identity::limited::text(response, crate::identity::limited::MESSAGE)
            .await
            .map_err(|reason| ClientError::Protocol(format!("{url}: {reason}")))?;
        if !(200..300).contains(&status) {
            return Err(ClientError::Refused { url: url.to_owned(), status, body: text.chars().take(2000).collect() });
        }
        let body = if text.trim().is_empty() {
            Json::Null
        } else {
            serde_json::from_str(&text)
                .map_err(|e| ClientError::Protocol(format!("{url} answered with invalid JSON: {e}")))?
        };
        Ok((status, link, body))
    }

    /// A peer's whole catalogue (following `rel="next"` links), filtered as the DSP filter form says.
    pub async fn catalog(
        &self,
        address: &str,
        counter_party_id: Option<&str>,
        filter: Json,
    ) -> Result<Json, ClientError> {
        self.fetch_catalog(address, counter_party_id, filter, None).await
    }

    /// Like [`DspClient::catalog`], asking for pages of `page` datasets (`?limit=`, which Hanse peers honour).
    pub async fn catalog_paged(
        &self,
        address: &str,
        counter_party_id: Option<&str>,
        filter: Json,
        page: usize,
    ) -> Result<Json, ClientError> {
        self.fetch_catalog(address, counter_party_id, filter, Some(page)).await
    }

    async fn fetch_catalog(
        &self,
        address: &str,
        counter_party_id: Option<&str>,
        filter: Json,
        page: Option<usize>,
    ) -> Result<Json, ClientError> {
        let base = self.resolve_base(address).await?;
        let counter_party_id = self.counter_party(address, counter_party_id).await?;
        let mut message = json!({"@context": [hanse_vocab::contexts::DSPACE_2025_1], "@type": "CatalogRequestMessage"});
        if !filter.is_null() {
            message["filter"] = filter;
        }
        let mut url = match page {
            Some(limit) => format!("{base}/catalog/request?limit={limit}"),
            None => format!("{base}/catalog/request"),
        };
        let mut catalog: Option<Json> = None;
        for _ in 0..10_000 {
            let (_, link, page) = self.post(&url, &counter_party_id, &message).await?;
            if page.get("@type").and_then(Json::as_str) != Some("Catalog") {
                return Err(ClientError::Protocol(format!("{url} did not answer with a Catalog")));
            }
            match &mut catalog {
                None => catalog = Some(page),
                Some(all) => {
                    let more = page.get("dataset").and_then(Json::as_array).cloned().unwrap_or_default();
                    match all.get_mut("dataset").and_then(Json::as_array_mut) {
                        Some(datasets) => datasets.extend(more),
                        None if !more.is_empty() => all["dataset"] = Json::Array(more),
                        None => {}
                    }
                }
            }
            match link.as_deref().and_then(next_link) {
                Some(next) => url = next,
                None => break,
            }
        }
        catalog.ok_or_else(|| ClientError::Protocol("no catalogue received".into()))
    }
}

/// The URL of the `rel="next"` entry of a `Link` header.
pub fn next_link(header: &str) -> Option<String> {
    header.split(',').find_map(|part| {
        let (url, params) = part.split_once(';')?;
        params.contains("rel=\"next\"").then(|| url.trim().trim_start_matches('<').trim_end_matches('>').to_owned())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_next_link_is_found_among_others() {
        let header = "<https://a/catalog/request?limit=50&before=x>; rel=\"previous\", <https://a/catalog/request?limit=50&after=y>; rel=\"next\"";
        assert_eq!(next_link(header).as_deref(), Some("https://a/catalog/request?limit=50&after=y"));
        assert_eq!(next_link("<https://a>; rel=\"previous\""), None);
    }

    #[tokio::test]
    async fn a_peer_that_cannot_be_reached_is_reported_with_the_cause() {
        // A port nobody listens on: bound, then released.
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let url = format!("http://127.0.0.1:{port}/protocol/2025-1/catalog/request");
        let source = reqwest::Client::new().get(&url).send().await.unwrap_err();
        let error = ClientError::Unreachable { url: url.clone(), source };
        let text = error.to_string();
        assert!(text.starts_with(&format!("cannot reach {url}: ")), "{text}");
        assert!(text.to_lowercase().contains("connection refused"), "the cause is named: {text}");
    }
}
