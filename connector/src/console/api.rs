//! The console's one way to read and change anything: a call to the management API in this process, with the
//! session's key, through the same router, guards and checks as a call from outside (decision 0039).

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use serde_json::{Value as Json, json};
use tower::ServiceExt;

use hanse_vocab::ns::EDC;

use super::session::Session;

/// The largest answer the console reads.
const MAX_ANSWER: usize = 32 * 1024 * 1024;

/// What a call could not do: the API's status and its message, for the page to show.
#[derive(Debug, Clone)]
pub struct Problem {
    pub status: StatusCode,
    pub message: String,
}

impl From<crate::error::ManagementError> for Problem {
    fn from(error: crate::error::ManagementError) -> Problem {
        Problem { status: error.status(), message: error.to_string() }
    }
}

impl Problem {
    fn from_answer(status: StatusCode, body: &Json) -> Problem {
        Problem { status, message: message_of(body).unwrap_or_else(|| status.to_string()) }
    }
}

/// The human part of an error body: the EDC list of `{message, path}`, `{message}`, `{error}` or a DSP reason.
fn message_of(body: &Json) -> Option<String> {
    let one = |item: &Json| -> Option<String> {
        let message = item.get("message").or_else(|| item.get("error")).and_then(Json::as_str)?;
        Some(match item.get("path").and_then(Json::as_str).filter(|p| !p.is_empty()) {
            Some(path) => format!("{path}: {message}"),
            None => message.to_owned(),
        })
    };
    match body {
        Json::Array(items) => {
            let all: Vec<String> = items.iter().filter_map(one).collect();
            (!all.is_empty()).then(|| all.join("; "))
        }
        Json::Object(_) => one(body).or_else(|| body.get("reason").map(|r| r.to_string())),
        Json::String(text) if !text.is_empty() => Some(text.clone()),
        _ => None,
    }
}

/// The management API as the console calls it.
#[derive(Clone)]
pub struct Api {
    router: Router,
}

impl Api {
    pub fn new(router: Router) -> Api {
        Api { router }
    }

    /// One call with `session`'s key: the answer's JSON, or the API's refusal.
    pub async fn call(
        &self,
        session: &Session,
        method: Method,
        uri: &str,
        content_type: &str,
        body: Body,
    ) -> Result<Json, Problem> {
        let (status, body) = self.exchange(session, method, uri, content_type, body).await?;
        if status.is_success() { Ok(body) } else { Err(Problem::from_answer(status, &body)) }
    }

    /// A GET whose answer is read whatever its status (a readiness probe's 503 says which component is down).
    pub async fn answer(&self, session: &Session, uri: &str) -> Result<(StatusCode, Json), Problem> {
        self.exchange(session, Method::GET, uri, "application/json", Body::empty()).await
    }

    async fn exchange(
        &self,
        session: &Session,
        method: Method,
        uri: &str,
        content_type: &str,
        body: Body,
    ) -> Result<(StatusCode, Json), Problem> {
        let request = Request::builder()
            .method(method)
            .uri(uri)
            .header("x-api-key", &session.key)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::ACCEPT, "application/json")
            .body(body)
            .map_err(|e| Problem { status: StatusCode::BAD_REQUEST, message: e.to_string() })?;
        let internal = |message: String| Problem { status: StatusCode::INTERNAL_SERVER_ERROR, message };
        let response = self.router.clone().oneshot(request).await.map_err(|e| internal(e.to_string()))?;
        let status = response.status();
        let bytes =
            axum::body::to_bytes(response.into_body(), MAX_ANSWER).await.map_err(|e| internal(e.to_string()))?;
        let body = serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Json::String(String::from_utf8_lossy(&bytes).into_owned()));
        Ok((status, body))
    }

    pub async fn get(&self, session: &Session, uri: &str) -> Result<Json, Problem> {
        self.call(session, Method::GET, uri, "application/json", Body::empty()).await
    }

    pub async fn post(&self, session: &Session, uri: &str, body: &Json) -> Result<Json, Problem> {
        self.call(session, Method::POST, uri, "application/json", Body::from(body.to_string())).await
    }

    pub async fn put(&self, session: &Session, uri: &str, body: &Json) -> Result<Json, Problem> {
        self.call(session, Method::PUT, uri, "application/json", Body::from(body.to_string())).await
    }

    pub async fn delete(&self, session: &Session, uri: &str) -> Result<Json, Problem> {
        self.call(session, Method::DELETE, uri, "application/json", Body::empty()).await
    }

    /// A `.../request` query: one page of `limit` items (plus one, to tell whether another page follows).
    pub async fn page(
        &self,
        session: &Session,
        uri: &str,
        page: &Paging,
        filters: Vec<Json>,
        sort: Option<&str>,
    ) -> Result<(Vec<Json>, bool), Problem> {
        let mut body = json!({"@context": {"@vocab": EDC}, "offset": page.offset(), "limit": page.size + 1,
                              "filterExpression": filters});
        if let Some(field) = sort {
            body["sortField"] = json!(field);
            body["sortOrder"] = json!("DESC");
        }
        let answer = self.post(session, uri, &body).await?;
        let mut items = match answer {
            Json::Array(items) => items,
            _ => Vec::new(),
        };
        let more = items.len() > page.size;
        items.truncate(page.size);
        Ok((items, more))
    }
}

/// A criterion of a QuerySpec.
pub fn criterion(field: &str, operator: &str, value: impl Into<Json>) -> Json {
    json!({"operandLeft": field, "operator": operator, "operandRight": value.into()})
}

/// Which page of a list is shown.
#[derive(Debug, Clone, Copy)]
pub struct Paging {
    /// From 0.
    pub number: usize,
    pub size: usize,
}

impl Paging {
    pub const SIZE: usize = 25;

    pub fn new(number: Option<usize>) -> Paging {
        Paging { number: number.unwrap_or(0).min(100_000), size: Self::SIZE }
    }

    pub fn offset(&self) -> usize {
        self.number * self.size
    }
}

/// A path segment or query value, percent-encoded.
pub fn encode(value: &str) -> String {
    hanse_core::encode::percent(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_read_as_one_message() {
        let edc = json!([{"message": "is required", "path": "title", "type": "InvalidRequest"}, {"message": "bad"}]);
        assert_eq!(message_of(&edc).unwrap(), "title: is required; bad");
        assert_eq!(message_of(&json!({"error": "too large"})).unwrap(), "too large");
        assert_eq!(message_of(&json!("plain")).unwrap(), "plain");
        assert_eq!(message_of(&json!({})), None);
        assert_eq!(encode("did:web:a b/c"), "did%3Aweb%3Aa%20b%2Fc");
    }
}
