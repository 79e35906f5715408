//! Forge failures sorted into graft's failure classes (retried, or reported
//! with what to do). Each message says how to recover; none ever contains
//! a token.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ForgeKind {
    Github,
    Gitlab,
}

impl ForgeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ForgeKind::Github => "github",
            ForgeKind::Gitlab => "gitlab",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ForgeKind::Github => "GitHub",
            ForgeKind::Gitlab => "GitLab",
        }
    }
}

impl std::fmt::Display for ForgeKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ForgeError {
    /// A setting is missing or malformed; the message names it.
    #[error("{0}")]
    Config(String),

    /// The forge refused graft's credentials (401): revoked token, wrong
    /// private key, expired integration.
    #[error("{forge} rejected graft's credentials: {message}. {hint}")]
    AuthLost {
        forge: ForgeKind,
        message: String,
        hint: String,
    },

    /// The GitHub App is not installed on the repository (or the GitLab
    /// project is not visible to the token).
    #[error("{forge}: graft has no access to {repo}: {hint}")]
    NotInstalled {
        forge: ForgeKind,
        repo: String,
        hint: String,
    },

    /// Authenticated, but not allowed (403).
    #[error("{forge} denied the request: {message}. {hint}")]
    NoPermission {
        forge: ForgeKind,
        message: String,
        /// The permission the forge said is missing, e.g. `pull_requests=write`.
        permission: Option<String>,
        hint: String,
    },

    /// A resource that does not exist (or the token cannot see it).
    #[error("{forge}: {what} not found")]
    NotFound { forge: ForgeKind, what: String },

    #[error("{forge} rate limit reached{}", retry_hint(*.retry_after))]
    RateLimited {
        forge: ForgeKind,
        /// `true` for the hourly quota, `false` for secondary/abuse limits.
        primary: bool,
        retry_after: Option<Duration>,
    },

    #[error("{forge} server error {status}: {message}")]
    Server {
        forge: ForgeKind,
        status: u16,
        message: String,
    },

    #[error("cannot reach {forge}: {message}")]
    Network { forge: ForgeKind, message: String },

    /// The forge refused the request's content (422, 400, 409).
    #[error("{forge} refused the request: {message}")]
    Validation { forge: ForgeKind, message: String },

    /// Anything else: an unexpected status or a response graft cannot read.
    #[error("{forge} answered unexpectedly: {message}")]
    Unexpected { forge: ForgeKind, message: String },
}

fn retry_hint(after: Option<Duration>) -> String {
    match after {
        Some(after) => format!("; retry after {}s", after.as_secs().max(1)),
        None => String::new(),
    }
}

impl ForgeError {
    /// Whether the same request may succeed later without anyone acting.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            ForgeError::RateLimited { .. } | ForgeError::Server { .. } | ForgeError::Network { .. }
        )
    }

    /// How long the forge asked us to wait, if it said.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            ForgeError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A stable short name of the class, for metrics and tests.
    pub fn class(&self) -> &'static str {
        match self {
            ForgeError::Config(_) => "config",
            ForgeError::AuthLost { .. } => "auth_lost",
            ForgeError::NotInstalled { .. } => "not_installed",
            ForgeError::NoPermission { .. } => "no_permission",
            ForgeError::NotFound { .. } => "not_found",
            ForgeError::RateLimited { .. } => "rate_limited",
            ForgeError::Server { .. } => "server",
            ForgeError::Network { .. } => "network",
            ForgeError::Validation { .. } => "validation",
            ForgeError::Unexpected { .. } => "unexpected",
        }
    }
}

/// Cuts a forge's error text to something fit for a log line or a comment.
pub(crate) fn short(text: &str) -> String {
    const MAX: usize = 300;
    let text = text.trim();
    if text.len() <= MAX {
        return text.to_string();
    }
    let mut end = MAX;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_transient_classes_are_retryable() {
        let forge = ForgeKind::Github;
        let retryable = [
            ForgeError::RateLimited {
                forge,
                primary: true,
                retry_after: Some(Duration::from_secs(3)),
            },
            ForgeError::Server {
                forge,
                status: 502,
                message: "bad gateway".into(),
            },
            ForgeError::Network {
                forge,
                message: "reset".into(),
            },
        ];
        for error in &retryable {
            assert!(error.is_retryable(), "{error}");
        }
        let fatal = [
            ForgeError::AuthLost {
                forge,
                message: "Bad credentials".into(),
                hint: "re-install".into(),
            },
            ForgeError::Validation {
                forge,
                message: "no".into(),
            },
            ForgeError::NoPermission {
                forge,
                message: "no".into(),
                permission: None,
                hint: String::new(),
            },
            ForgeError::Config("x".into()),
        ];
        for error in &fatal {
            assert!(!error.is_retryable(), "{error}");
        }
        assert_eq!(retryable[0].retry_after(), Some(Duration::from_secs(3)));
        assert!(retryable[0].to_string().contains("retry after 3s"));
    }

    #[test]
    fn short_cuts_on_a_char_boundary() {
        let long = "é".repeat(400);
        let cut = short(&long);
        assert!(cut.ends_with('…'));
        assert!(cut.len() < 310);
        assert_eq!(short("  plain  "), "plain");
    }
}
