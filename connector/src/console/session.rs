//! Console sessions: a random token in an HttpOnly, SameSite=Strict cookie; the session it names lives in this
//! process only, with its CSRF token, its idle and absolute deadlines, and what the wizard has gathered so far.
//! The management key a session signed in with is kept here and sent on each of its API calls, so that a key
//! revoked or rotated meanwhile stops the session at its next click.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::http::HeaderMap;

/// The session cookie's name.
pub const COOKIE: &str = "hanse_console";
/// A session ends this long after sign-in, however busy.
const LIFETIME: Duration = Duration::from_secs(12 * 3600);

/// A signed-in operator.
#[derive(Clone)]
pub struct Session {
    /// The management key the session calls the API with.
    pub key: String,
    /// The key's role (`operator`, `steward`, `approver`, `reader`, `auditor`).
    pub role: String,
    /// The key's id (`management` for the configured key).
    pub who: String,
    /// The token every form and every script request must echo.
    pub csrf: String,
    /// A message for the next page (what the last action did).
    pub notice: Option<Notice>,
    /// The "add a data source" wizard's answers so far.
    pub draft: Option<super::wizard::Draft>,
    created: Instant,
    last_seen: Instant,
}

/// What the last action did, shown once on the next page.
#[derive(Clone, Debug)]
pub struct Notice {
    pub ok: bool,
    pub text: String,
}

/// The sessions of one console, at most `max`, each ending after `idle` without a request.
pub struct Sessions {
    by_digest: Mutex<HashMap<String, Session>>,
    idle: Duration,
    max: usize,
}

impl Sessions {
    pub fn new(idle: Duration, max: usize) -> Sessions {
        Sessions { by_digest: Mutex::new(HashMap::new()), idle, max }
    }

    /// How long a session may go without a request.
    pub fn idle(&self) -> Duration {
        self.idle
    }

    /// Opens a session and answers its cookie token. Past the cap, the least recently used session ends.
    pub fn open(&self, key: String, role: String, who: String) -> Result<String, openssl::error::ErrorStack> {
        let token = crate::init::random_hex(32)?;
        let csrf = crate::init::random_hex(32)?;
        let now = Instant::now();
        let session = Session { key, role, who, csrf, notice: None, draft: None, created: now, last_seen: now };
        let mut sessions = self.lock();
        sessions.retain(|_, s| self.alive(s, now));
        while sessions.len() >= self.max {
            let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_seen).map(|(d, _)| d.clone()) else { break };
            sessions.remove(&oldest);
        }
        sessions.insert(digest(&token), session);
        Ok(token)
    }

    /// The live session a request's cookie names, its idle deadline moved on; an expired one is removed.
    pub fn find(&self, headers: &HeaderMap) -> Option<(String, Session)> {
        let token = cookie(headers)?;
        let digest = digest(&token);
        let now = Instant::now();
        let mut sessions = self.lock();
        let session = sessions.get_mut(&digest)?;
        if !self.alive(session, now) {
            sessions.remove(&digest);
            return None;
        }
        session.last_seen = now;
        Some((token, session.clone()))
    }

    /// Changes a live session.
    pub fn update(&self, token: &str, change: impl FnOnce(&mut Session)) {
        if let Some(session) = self.lock().get_mut(&digest(token)) {
            change(session);
        }
    }

    /// Takes the notice waiting for the next page.
    pub fn take_notice(&self, token: &str) -> Option<Notice> {
        self.lock().get_mut(&digest(token)).and_then(|s| s.notice.take())
    }

    /// Ends a session.
    pub fn close(&self, token: &str) {
        self.lock().remove(&digest(token));
    }

    /// How many sessions are open.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock().len()
    }

    fn alive(&self, session: &Session, now: Instant) -> bool {
        now.duration_since(session.last_seen) < self.idle && now.duration_since(session.created) < LIFETIME
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Session>> {
        self.by_digest.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Sessions are kept by their token's SHA-256: the map holds nothing a cookie could be made from.
fn digest(token: &str) -> String {
    hanse_core::encode::sha256_hex(token.as_bytes())
}

/// The session token in a request's `Cookie` header.
fn cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value.to_owned())
        .filter(|value| value.len() == 64 && value.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The `Set-Cookie` value of a new session (`secure` over HTTPS).
pub fn set_cookie(token: &str, idle: Duration, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!("{COOKIE}={token}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={}{secure}", idle.as_secs())
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Whether `given` is the session's CSRF token (compared in constant time).
pub fn csrf_ok(session: &Session, given: Option<&str>) -> bool {
    given.is_some_and(|given| {
        given.len() == session.csrf.len() && openssl::memcmp::eq(given.as_bytes(), session.csrf.as_bytes())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(cookie: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(axum::http::header::COOKIE, cookie.parse().unwrap());
        headers
    }

    #[test]
    fn a_session_ends_when_idle_and_past_the_cap() {
        let sessions = Sessions::new(Duration::from_millis(50), 2);
        let first = sessions.open("k1".into(), "operator".into(), "a".into()).unwrap();
        assert!(sessions.find(&headers(&format!("other=1; {COOKIE}={first}"))).is_some());
        let second = sessions.open("k2".into(), "reader".into(), "b".into()).unwrap();
        let _third = sessions.open("k3".into(), "reader".into(), "c".into()).unwrap();
        assert_eq!(sessions.len(), 2, "the cap holds");
        assert!(sessions.find(&headers(&format!("{COOKIE}={first}"))).is_none(), "the least recently used ended");
        std::thread::sleep(Duration::from_millis(60));
        assert!(sessions.find(&headers(&format!("{COOKIE}={second}"))).is_none(), "idle sessions end");
        assert!(sessions.find(&headers(&format!("{COOKIE}=not-a-token"))).is_none());
    }

    #[test]
    fn the_csrf_token_must_match() {
        let sessions = Sessions::new(Duration::from_secs(60), 10);
        let token = sessions.open("k".into(), "operator".into(), "a".into()).unwrap();
        let (_, session) = sessions.find(&headers(&format!("{COOKIE}={token}"))).unwrap();
        assert!(csrf_ok(&session, Some(&session.csrf.clone())));
        assert!(!csrf_ok(&session, Some("0")));
        assert!(!csrf_ok(&session, None));
        sessions.close(&token);
        assert!(sessions.find(&headers(&format!("{COOKIE}={token}"))).is_none(), "signed out");
    }
}
