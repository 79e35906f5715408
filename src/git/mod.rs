//! The git engine: persistent bare mirrors fetched with gix, the overlay of
//! managed files built on objects (no checkout), validation of the result,
//! and the push (graft's own over smart HTTP for the usual case, the git
//! CLI for the rest: gix cannot push yet).

pub mod check;
pub mod mirror;
pub mod overlay;
pub mod paths;
pub mod pipeline;
pub mod push;
pub mod push_refusal;
pub mod read;
pub mod sandbox;
pub mod scrub;
pub mod validate;

use base64::Engine;
use secrecy::{ExposeSecret, SecretString};

pub use paths::PathError;

/// Credentials for one remote: sent as an `Authorization: Basic` header
/// through git configuration in memory or in the environment, never in a
/// URL or on a command line.
#[derive(Clone)]
pub struct GitAuth {
    pub username: String,
    pub token: SecretString,
}

impl std::fmt::Debug for GitAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "GitAuth({}:<redacted>)", self.username)
    }
}

impl GitAuth {
    pub fn new(username: &str, token: SecretString) -> Self {
        GitAuth {
            username: username.to_string(),
            token,
        }
    }

    /// The credentials as HTTP Basic, base64 of `username:token`.
    fn basic(&self) -> String {
        base64::engine::general_purpose::STANDARD.encode(format!(
            "{}:{}",
            self.username,
            self.token.expose_secret()
        ))
    }

    /// The value of the `Authorization` header: `Basic …`.
    pub(crate) fn authorization(&self) -> SecretString {
        SecretString::from(format!("Basic {}", self.basic()))
    }

    /// The value of `http.extraHeader`.
    pub(crate) fn header(&self) -> String {
        format!("Authorization: {}", self.authorization().expose_secret())
    }

    /// Strings that must never appear in output shown to anyone.
    pub(crate) fn secrets(&self) -> Vec<String> {
        vec![self.token.expose_secret().to_string(), self.basic()]
    }
}

/// Who graft's commits are by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub email: String,
}

impl Default for Identity {
    fn default() -> Self {
        Identity {
            name: "graft[bot]".into(),
            email: "graft[bot]@users.noreply.github.com".into(),
        }
    }
}

/// Why a git operation failed, in the classes the sync engine reacts to.
/// Messages come from the remote or gix with credentials scrubbed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitError {
    #[error(
        "the git server refused the credentials (token expired, revoked or lacking `contents: write`): {0}"
    )]
    Auth(String),
    #[error("the branch is protected and refused a direct push: {0}")]
    ProtectedBranch(String),
    #[error("the remote branch moved (non-fast-forward or stale lease): {0}")]
    NonFastForward(String),
    #[error("repository or ref not found: {0}")]
    NotFound(String),
    #[error("network error or timeout talking to the git server: {0}")]
    Network(String),
    #[error(transparent)]
    Path(#[from] PathError),
    #[error(transparent)]
    Unsafe(#[from] overlay::PlacementError),
    /// An object the mirror should hold is not there (or unreadable): the
    /// mirror is not trusted and the next fetch re-creates it.
    #[error("the mirror is missing an object: {0}")]
    MissingObject(String),
    #[error("local repository problem: {0}")]
    Local(String),
    #[error("git failed: {0}")]
    Other(String),
}

pub(crate) fn local(error: impl std::fmt::Display) -> GitError {
    GitError::Local(error.to_string())
}

/// For reading objects: a failure there means the mirror lacks them.
pub(crate) fn missing(error: impl std::fmt::Display) -> GitError {
    GitError::MissingObject(error.to_string())
}
