//! Sessions, the console token and CSRF.
//!
//! Each browser gets a random session id (`sb_sid` cookie). Signing in with the token sets
//! `sb_auth` = HMAC(key, "auth:" + sid); every form carries `csrf` = HMAC(key, "csrf:" + sid).
//! The key is random per process, so a restart signs everyone out. Cookies are HttpOnly and
//! SameSite=Strict; a POST must also come from this origin when the browser says where it comes
//! from (Origin, Sec-Fetch-Site). Tokens and MACs are compared in constant time.

use super::{Fail, State};
use axum::extract::Request;
use axum::http::{header, HeaderMap, HeaderValue, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use subtle::ConstantTimeEq;

const SID: &str = "sb_sid";
const AUTH: &str = "sb_auth";

/// This request's session: its id, and whether it is signed in (cookie or bearer token).
#[derive(Debug, Clone)]
pub struct Sid {
    pub id: String,
    pub authed: bool,
    /// The CSRF value every form of this session carries.
    pub csrf: String,
    /// The session id to set as a cookie (new session).
    fresh: bool,
}

impl State {
    fn mac(&self, purpose: &str, sid: &str) -> String {
        hex::encode(hmac_sha256(&self.key, &[purpose.as_bytes(), b":", sid.as_bytes()]))
    }

    /// Whether `given` is the console token (false when none is configured).
    pub(crate) fn token_matches(&self, given: &str) -> bool {
        match &self.token {
            Some(t) => bool::from(t.as_bytes().ct_eq(given.as_bytes())),
            None => false,
        }
    }

    pub(crate) fn auth_cookie_value(&self, sid: &str) -> String {
        self.mac("auth", sid)
    }

    pub(crate) fn csrf_for(&self, sid: &str) -> String {
        self.mac("csrf", sid)
    }

    fn session(&self, headers: &HeaderMap) -> Sid {
        let sid = cookie(headers, SID).filter(|s| s.len() == 32 && s.bytes().all(|b| b.is_ascii_hexdigit()));
        let (id, fresh) = match sid {
            Some(s) => (s, false),
            None => (new_sid(), true),
        };
        let by_cookie = !fresh
            && self.token.is_some()
            && cookie(headers, AUTH)
                .is_some_and(|a| bool::from(a.as_bytes().ct_eq(self.auth_cookie_value(&id).as_bytes())));
        let by_bearer = bearer(headers).is_some_and(|t| self.token_matches(t));
        let csrf = self.csrf_for(&id);
        Sid { id, authed: by_cookie || by_bearer, csrf, fresh }
    }

    /// The checks every action makes before anything changes: a token is configured, the
    /// request is same-origin, its CSRF value is this session's, and it carries the token
    /// (signed-in cookie, bearer header or form field).
    pub(crate) fn check_action(
        &self,
        headers: &HeaderMap,
        sid: &Sid,
        csrf: Option<&str>,
        form_token: Option<&str>,
    ) -> Result<(), Fail> {
        if !self.token_configured() {
            return Err(Fail::Forbidden(NO_TOKEN.into()));
        }
        same_origin(headers)?;
        let ok = csrf.is_some_and(|c| bool::from(c.as_bytes().ct_eq(sid.csrf.as_bytes())));
        if !ok {
            return Err(Fail::Forbidden(
                "The form's security value is missing or belongs to another session. Reload the page and try again."
                    .into(),
            ));
        }
        if !(sid.authed || form_token.is_some_and(|t| self.token_matches(t))) {
            return Err(Fail::Unauthorized("This action needs the console token: sign in first.".into()));
        }
        Ok(())
    }
}

/// Shown when an action is asked of a console without a token.
pub const NO_TOKEN: &str = "The console has no token, so it cannot act (reading works). Set [ui] token_env in the configuration to the name of an environment variable, put a long random token in that variable (e.g. `export STITCH_BRIDGE_UI_TOKEN=$(openssl rand -hex 24)`), and restart the console.";

/// HMAC-SHA256 over the concatenated `parts`.
fn hmac_sha256(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    use hmac::{KeyInit, Mac};
    let mut mac = hmac::Hmac::<sha2_011::Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    for p in parts {
        mac.update(p);
    }
    mac.finalize().into_bytes().into()
}

fn new_sid() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

fn bearer(headers: &HeaderMap) -> Option<&str> {
    headers.get(header::AUTHORIZATION)?.to_str().ok()?.strip_prefix("Bearer ").map(str::trim)
}

/// Refuse a request a browser says comes from another site. Absent headers (scripts, old
/// browsers) pass here; the CSRF value still has to match.
pub(crate) fn same_origin(headers: &HeaderMap) -> Result<(), Fail> {
    let cross = || Fail::Forbidden("Refused: the request comes from another site.".into());
    if let Some(site) = headers.get("sec-fetch-site") {
        if !matches!(site.to_str().unwrap_or(""), "same-origin" | "none") {
            return Err(cross());
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().map_err(|_| cross())?;
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok()).ok_or_else(cross)?;
        let same = origin.strip_prefix("http://").or_else(|| origin.strip_prefix("https://")) == Some(host);
        if !same {
            return Err(cross());
        }
    }
    Ok(())
}

/// `Set-Cookie` for the session id.
pub(crate) fn sid_cookie(id: &str) -> HeaderValue {
    HeaderValue::from_str(&format!("{SID}={id}; Path=/; HttpOnly; SameSite=Strict")).expect("hex is a valid header")
}

/// `Set-Cookie` for a signed-in session (`None`: signed out).
pub(crate) fn auth_cookie(value: Option<&str>) -> HeaderValue {
    let v = match value {
        Some(v) => format!("{AUTH}={v}; Path=/; HttpOnly; SameSite=Strict"),
        None => format!("{AUTH}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    };
    HeaderValue::from_str(&v).expect("hex is a valid header")
}

/// Whether the request names this console by a loopback name (`localhost`, `127.0.0.1`,
/// `[::1]`, any port). A loopback console refuses other names: a page on another site whose
/// name has been re-pointed at 127.0.0.1 (DNS rebinding) would otherwise read it as its own.
fn loopback_host(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|h| h.to_str().ok()) else { return false };
    let name = match host.strip_prefix('[') {
        Some(rest) => rest.split(']').next().unwrap_or(""),
        None => host
            .rsplit_once(':')
            .map_or(host, |(h, port)| if port.bytes().all(|b| b.is_ascii_digit()) { h } else { host }),
    };
    name.eq_ignore_ascii_case("localhost") || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Paths open without the token on a console bound beyond loopback.
fn open_path(path: &str) -> bool {
    path == "/login" || path.starts_with("/assets/")
}

/// The layer every request passes: its session, the token for every page beyond loopback,
/// and the headers that keep pages out of frames, caches and other origins' scripts.
pub(crate) async fn layer(
    axum::extract::State(state): axum::extract::State<Arc<State>>,
    mut req: Request,
    next: Next,
) -> Response {
    let sid = state.session(req.headers());
    let path = req.uri().path().to_string();
    let mut resp = if !state.pages_need_token && !loopback_host(req.headers()) {
        Fail::Forbidden("This console answers only to a loopback address (127.0.0.1, localhost).".into())
            .into_response()
    } else if state.pages_need_token && !sid.authed && !open_path(&path) && req.method() != Method::POST {
        Fail::Unauthorized("This console listens beyond loopback: every page needs the console token.".into())
            .into_response()
    } else {
        req.extensions_mut().insert(sid.clone());
        next.run(req).await
    };
    let h = resp.headers_mut();
    if sid.fresh {
        h.append(header::SET_COOKIE, sid_cookie(&sid.id));
    }
    if !path.starts_with("/assets/") {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; \
             form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    // Not `no-referrer`: under it browsers send `Origin: null` with a plain form POST, which
    // the same-origin check must refuse; `same-origin` still sends nothing to other sites.
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    resp
}

#[cfg(test)]
mod tests {
    #[test]
    fn loopback_names_only() {
        let h = |v: &str| {
            let mut m = super::HeaderMap::new();
            m.insert(super::header::HOST, v.parse().unwrap());
            super::loopback_host(&m)
        };
        assert!(h("127.0.0.1:8760") && h("localhost:1") && h("[::1]:8760") && h("LOCALHOST") && h("127.0.0.2:9"));
        assert!(!h("evil.example:8760") && !h("192.168.1.4:8760") && !h("localhost.evil.example"));
        assert!(!super::loopback_host(&super::HeaderMap::new()), "no Host, no page");
    }

    #[test]
    fn hmac_matches_rfc_4231_case_2_shape() {
        // RFC 4231 test case 2 uses a 4-byte key; zero-padded to 32 bytes the HMAC is the same.
        let mut key = [0u8; 32];
        key[..4].copy_from_slice(b"Jefe");
        let mac = super::hmac_sha256(&key, &[b"what do ya want ", b"for nothing?"]);
        assert_eq!(hex::encode(mac), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    }
}
