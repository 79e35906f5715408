//! Dashboard sessions: an API token exchanged for a signed cookie, and the
//! CSRF tokens of the forms.
//!
//! The cookie is `v1.<token id>.<expires ms>.<nonce>.<mac>`, the MAC being
//! HMAC-SHA256 under the session key over everything before it. The key is
//! derived from ENCRYPTION_KEY (label `graft session v1`), so sessions
//! survive restarts and work across replicas; without ENCRYPTION_KEY it is
//! random per process (everyone logs in again after a restart). The cookie
//! carries no secret: it names the token, which must still be active on
//! every request, so revoking the token ends its sessions.
//!
//! CSRF: a form of a session carries HMAC("csrf", nonce); the login form,
//! before any session exists, a signed double submit (a random cookie and
//! its HMAC in the form).

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::crypto::Keyring;

pub const SESSION_COOKIE: &str = "graft_session";
pub const LOGIN_COOKIE: &str = "graft_login";
/// A session lasts this long (then the token is asked for again).
pub const SESSION_TTL_MS: i64 = 12 * 60 * 60 * 1000;
const VERSION: &str = "v1";

#[derive(Clone)]
pub struct SessionKey {
    key: [u8; 32],
    /// True when derived from ENCRYPTION_KEY, false when random.
    pub durable: bool,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey")
            .field("durable", &self.durable)
            .finish_non_exhaustive()
    }
}

/// A valid session, as read from its cookie.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub token_id: i64,
    pub expires_at: i64,
    nonce: String,
}

fn random_hex() -> String {
    hex::encode(rand::random::<[u8; 16]>())
}

fn equal(a: &str, b: &str) -> bool {
    a.len() == b.len() && bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

impl SessionKey {
    /// Derived from ENCRYPTION_KEY when there is one, random otherwise.
    pub fn new(keyring: Option<&Keyring>) -> Self {
        match keyring {
            Some(ring) => SessionKey {
                key: ring.current.derive("graft session v1"),
                durable: true,
            },
            None => SessionKey {
                key: rand::random::<[u8; 32]>(),
                durable: false,
            },
        }
    }

    fn mac(&self, label: &str, data: &str) -> String {
        let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&self.key)
            .expect("HMAC takes any key length");
        mac.update(label.as_bytes());
        mac.update(b"\0");
        mac.update(data.as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// A new session for token `token_id`, as its cookie value.
    pub fn issue(&self, token_id: i64, now: i64) -> String {
        let payload = format!(
            "{VERSION}.{token_id}.{}.{}",
            now + SESSION_TTL_MS,
            random_hex()
        );
        let mac = self.mac("session", &payload);
        format!("{payload}.{mac}")
    }

    /// The session in `value`, if the cookie is intact and not expired.
    pub fn verify(&self, value: &str, now: i64) -> Option<Session> {
        let (payload, mac) = value.rsplit_once('.')?;
        if !equal(&self.mac("session", payload), mac) {
            return None;
        }
        let mut parts = payload.split('.');
        let (version, id, expires, nonce) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version != VERSION || parts.next().is_some() {
            return None;
        }
        let session = Session {
            token_id: id.parse().ok()?,
            expires_at: expires.parse().ok()?,
            nonce: nonce.to_string(),
        };
        (session.expires_at > now).then_some(session)
    }

    /// The CSRF token the forms of `session` carry.
    pub fn csrf_token(&self, session: &Session) -> String {
        self.mac("csrf", &session.nonce)
    }

    pub fn check_csrf(&self, session: &Session, given: &str) -> bool {
        equal(&self.csrf_token(session), given.trim())
    }

    /// For the login form: a fresh cookie value and the form's token.
    pub fn login_challenge(&self) -> (String, String) {
        let nonce = random_hex();
        let token = self.mac("login", &nonce);
        (nonce, token)
    }

    pub fn check_login(&self, cookie: &str, given: &str) -> bool {
        !cookie.is_empty() && equal(&self.mac("login", cookie), given.trim())
    }
}

/// The value of cookie `name` in a `Cookie` header.
pub fn cookie<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        (key == name).then_some(value.trim())
    })
}

/// A `Set-Cookie` value: `HttpOnly; SameSite=Strict; Path=/`, `Secure`
/// when graft is served over https. `max_age = 0` deletes the cookie.
pub fn set_cookie(name: &str, value: &str, max_age_secs: i64, secure: bool) -> String {
    format!(
        "{name}={value}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age_secs}{}",
        if secure { "; Secure" } else { "" }
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SessionKey {
        SessionKey::new(None)
    }

    #[test]
    fn sessions_verify_and_expire() {
        let k = key();
        let cookie = k.issue(7, 1_000);
        let session = k.verify(&cookie, 2_000).unwrap();
        assert_eq!(session.token_id, 7);
        assert!(k.verify(&cookie, 1_000 + SESSION_TTL_MS).is_none());
        assert!(key().verify(&cookie, 2_000).is_none(), "other key");
        let forged = cookie.replacen("v1.7.", "v1.8.", 1);
        assert!(k.verify(&forged, 2_000).is_none());
        assert!(k.verify("", 0).is_none());
        assert!(k.verify("v1.7", 0).is_none());
    }

    #[test]
    fn csrf_tokens_are_bound_to_the_session() {
        let k = key();
        let a = k.verify(&k.issue(1, 0), 1).unwrap();
        let b = k.verify(&k.issue(1, 0), 1).unwrap();
        assert!(k.check_csrf(&a, &k.csrf_token(&a)));
        assert!(!k.check_csrf(&a, &k.csrf_token(&b)));
        assert!(!k.check_csrf(&a, ""));
        let (cookie, token) = k.login_challenge();
        assert!(k.check_login(&cookie, &token));
        assert!(!k.check_login("", &token));
        assert!(!k.check_login(&cookie, "00"));
    }

    #[test]
    fn derived_keys_are_durable() {
        let ring = Keyring {
            current: crate::crypto::Key::parse(&"a".repeat(64).into()).unwrap(),
            previous: None,
        };
        let (a, b) = (SessionKey::new(Some(&ring)), SessionKey::new(Some(&ring)));
        assert!(a.durable);
        assert!(b.verify(&a.issue(1, 0), 1).is_some());
    }

    #[test]
    fn cookies_parse_and_render() {
        assert_eq!(
            cookie("a=1; graft_session=x.y; b=2", SESSION_COOKIE),
            Some("x.y")
        );
        assert_eq!(cookie("a=1", SESSION_COOKIE), None);
        let set = set_cookie(SESSION_COOKIE, "v", 60, true);
        assert!(
            set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Secure")
        );
        assert!(!set_cookie("n", "v", 0, false).contains("Secure"));
    }
}
