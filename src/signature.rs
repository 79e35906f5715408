//! Webhook authentication on the raw request bytes, before anything is
//! parsed. Both checks are constant-time and accept several secrets so they
//! can be rotated without dropping deliveries.

use hmac::{Hmac, KeyInit, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SignatureError {
    #[error("missing {0} header")]
    Missing(&'static str),
    #[error("{0} header is malformed: expected `sha256=` followed by 64 hex characters")]
    Malformed(&'static str),
    #[error("{0} does not match any configured webhook secret")]
    Mismatch(&'static str),
    #[error("no webhook secret is configured for this provider; {0}")]
    NotConfigured(&'static str),
}

pub const GITHUB_SIGNATURE_HEADER: &str = "X-Hub-Signature-256";
pub const GITLAB_TOKEN_HEADER: &str = "X-Gitlab-Token";

/// Checks GitHub's `X-Hub-Signature-256: sha256=<hex hmac of body>` against
/// each configured secret; returns the index of the secret that matched.
pub fn verify_github(
    header: Option<&str>,
    body: &[u8],
    secrets: &[SecretString],
) -> Result<usize, SignatureError> {
    if secrets.is_empty() {
        return Err(SignatureError::NotConfigured("set GITHUB_WEBHOOK_SECRET"));
    }
    let header = header.ok_or(SignatureError::Missing(GITHUB_SIGNATURE_HEADER))?;
    let given = header
        .trim()
        .strip_prefix("sha256=")
        .and_then(|hex_part| hex::decode(hex_part).ok())
        .filter(|bytes| bytes.len() == 32)
        .ok_or(SignatureError::Malformed(GITHUB_SIGNATURE_HEADER))?;
    secrets
        .iter()
        .position(|secret| {
            let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.expose_secret().as_bytes())
            else {
                return false;
            };
            mac.update(body);
            mac.verify_slice(&given).is_ok()
        })
        .ok_or(SignatureError::Mismatch(GITHUB_SIGNATURE_HEADER))
}

/// The hex signature GitHub would send for `body` (used by tests and fakes).
pub fn github_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

/// Compares GitLab's `X-Gitlab-Token` to each candidate secret in constant
/// time (digests first, so unequal lengths leak nothing); returns the index
/// of the matching candidate.
pub fn verify_gitlab_token(
    header: Option<&str>,
    candidates: &[SecretString],
) -> Result<usize, SignatureError> {
    if candidates.is_empty() {
        return Err(SignatureError::NotConfigured(
            "set GITLAB_WEBHOOK_SECRET or add a GitLab integration",
        ));
    }
    let given = header.ok_or(SignatureError::Missing(GITLAB_TOKEN_HEADER))?;
    let given_digest = Sha256::digest(given.as_bytes());
    let mut matched = None;
    for (index, candidate) in candidates.iter().enumerate() {
        let digest = Sha256::digest(candidate.expose_secret().as_bytes());
        if bool::from(digest.as_slice().ct_eq(given_digest.as_slice())) && matched.is_none() {
            matched = Some(index);
        }
    }
    matched.ok_or(SignatureError::Mismatch(GITLAB_TOKEN_HEADER))
}

/// Splits a comma-separated list of secrets (rotation), ignoring blanks.
pub fn split_secrets(list: &str) -> Vec<SecretString> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::from(s.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secrets(list: &str) -> Vec<SecretString> {
        split_secrets(list)
    }

    /// GitHub's published test vector (docs: "Validating webhook deliveries").
    #[test]
    fn github_published_test_vector() {
        let expected = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert_eq!(
            github_signature("It's a Secret to Everybody", b"Hello, World!"),
            expected
        );
        assert_eq!(
            verify_github(
                Some(expected),
                b"Hello, World!",
                &secrets("It's a Secret to Everybody")
            ),
            Ok(0)
        );
    }

    #[test]
    fn github_rotation_accepts_any_listed_secret() {
        let sig = github_signature("new", b"{}");
        assert_eq!(
            verify_github(Some(&sig), b"{}", &secrets("old, new")),
            Ok(1)
        );
    }

    #[test]
    fn github_rejections_are_distinguished() {
        let s = secrets("s");
        let sig = github_signature("s", b"body");
        assert_eq!(
            verify_github(None, b"body", &s),
            Err(SignatureError::Missing(GITHUB_SIGNATURE_HEADER))
        );
        for garbled in ["", "sha1=abc", "sha256=xyz", "sha256=abcd", &sig[7..]] {
            assert_eq!(
                verify_github(Some(garbled), b"body", &s),
                Err(SignatureError::Malformed(GITHUB_SIGNATURE_HEADER)),
                "{garbled}"
            );
        }
        assert_eq!(
            verify_github(Some(&sig), b"other body", &s),
            Err(SignatureError::Mismatch(GITHUB_SIGNATURE_HEADER))
        );
        assert_eq!(
            verify_github(Some(&github_signature("wrong", b"body")), b"body", &s),
            Err(SignatureError::Mismatch(GITHUB_SIGNATURE_HEADER))
        );
        assert!(matches!(
            verify_github(Some(&sig), b"body", &[]),
            Err(SignatureError::NotConfigured(_))
        ));
    }

    #[test]
    fn gitlab_token_checks() {
        let s = secrets("first,second");
        assert_eq!(verify_gitlab_token(Some("second"), &s), Ok(1));
        assert_eq!(
            verify_gitlab_token(Some("secon"), &s),
            Err(SignatureError::Mismatch(GITLAB_TOKEN_HEADER))
        );
        assert_eq!(
            verify_gitlab_token(None, &s),
            Err(SignatureError::Missing(GITLAB_TOKEN_HEADER))
        );
        assert!(matches!(
            verify_gitlab_token(Some("x"), &[]),
            Err(SignatureError::NotConfigured(_))
        ));
    }

    #[test]
    fn secret_lists_ignore_blanks() {
        assert_eq!(split_secrets(" a, ,b,").len(), 2);
        assert!(split_secrets("").is_empty());
    }
}
