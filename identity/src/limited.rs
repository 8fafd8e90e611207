//! Answers read within a size: whatever a peer's server sends, a connector reads at most so many bytes of it (a
//! DID document, a status list, a peer list, a catalogue page), so that a hostile or broken server cannot grow the
//! connector's memory with one answer.

use serde_json::Value as Json;

/// The most of a DID document, a presentation or a status list that is read.
pub const DOCUMENT: usize = 1024 * 1024;
/// The most of a DSP answer (a catalogue page, a process) or a compute round's result that is read.
pub const MESSAGE: usize = 32 * 1024 * 1024;
/// The most of an error answer's text that is kept for a log line or an error message.
pub const ERROR_TEXT: usize = 64 * 1024;

/// The body of `response`, at most `limit` bytes: a longer one (declared or sent) is an error saying so.
pub async fn bytes(mut response: reqwest::Response, limit: usize) -> Result<Vec<u8>, String> {
    let too_long = || format!("the answer is larger than {} KiB, more than is read", limit / 1024);
    if response.content_length().is_some_and(|length| length > limit as u64) {
        return Err(too_long());
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| hanse_core::error_chain(&e))? {
        if body.len() + chunk.len() > limit {
            return Err(too_long());
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The body of `response` as text, at most `limit` bytes (invalid UTF-8 replaced).
pub async fn text(response: reqwest::Response, limit: usize) -> Result<String, String> {
    bytes(response, limit).await.map(|body| String::from_utf8_lossy(&body).into_owned())
}

/// The body of `response` as JSON, at most `limit` bytes.
pub async fn json(response: reqwest::Response, limit: usize) -> Result<Json, String> {
    let body = bytes(response, limit).await?;
    serde_json::from_slice(&body).map_err(|e| format!("the answer is not JSON: {e}"))
}

/// The start of an error answer's text, for a message: at most [`ERROR_TEXT`] bytes, never an error itself.
pub async fn error_text(mut response: reqwest::Response) -> String {
    let mut body = Vec::new();
    while body.len() < ERROR_TEXT {
        match response.chunk().await {
            Ok(Some(chunk)) => body.extend_from_slice(&chunk[..chunk.len().min(ERROR_TEXT - body.len())]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&body).into_owned()
}
