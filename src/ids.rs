//! The identifiers that cross modules, as types: a project's `ProjectId`,
//! a pull or merge request's `PrNumber`, the `RepoPath` of a repository
//! (checked for its forge) and the `Provider` a project lives on. A leaf:
//! it depends on no other module of graft. Each is stored and serialised
//! as its plain value (a number or a text), so the types change no column
//! and no JSON.

use std::fmt;

use serde::{Deserialize, Serialize};
use sqlx::any::{Any, AnyTypeInfo};
use sqlx::encode::IsNull;
use sqlx::error::BoxDynError;
use sqlx::{Database, Decode, Encode, Type};
use utoipa::ToSchema;

/// The forge a repository lives on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Provider {
    Github,
    Gitlab,
}

impl Provider {
    pub fn as_str(self) -> &'static str {
        match self {
            Provider::Github => "github",
            Provider::Gitlab => "gitlab",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "github" => Some(Provider::Github),
            "gitlab" => Some(Provider::Gitlab),
            _ => None,
        }
    }
}

impl fmt::Display for Provider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Stored as its name in a text column; an unknown name read back is a
// decode error (the store reports it), never a panic.
impl Type<Any> for Provider {
    fn type_info() -> AnyTypeInfo {
        <str as Type<Any>>::type_info()
    }
}

impl<'q> Encode<'q, Any> for Provider {
    fn encode_by_ref(
        &self,
        buf: &mut <Any as Database>::ArgumentBuffer,
    ) -> Result<IsNull, BoxDynError> {
        <&str as Encode<Any>>::encode(self.as_str(), buf)
    }
}

impl<'r> Decode<'r, Any> for Provider {
    fn decode(value: <Any as Database>::ValueRef<'r>) -> Result<Self, BoxDynError> {
        let text = <&str as Decode<Any>>::decode(value)?;
        Provider::parse(text).ok_or_else(|| format!("unknown provider `{text}`").into())
    }
}

/// A number newtype: stored as an integer column, serialised and shown as
/// the plain number; `get` gives the number where one must be formatted
/// into a URL or bound to a foreign API.
macro_rules! number_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(
            Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
            ToSchema, sqlx::Type,
        )]
        #[serde(transparent)]
        #[sqlx(transparent)]
        pub struct $name(pub i64);

        impl $name {
            pub const fn get(self) -> i64 {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }

        impl From<$name> for i64 {
            fn from(id: $name) -> i64 {
                id.0
            }
        }
    };
}

number_id!(
    /// A project's row id: what `/api/v1/projects/{id}` names and jobs,
    /// files and the audit log are kept under.
    ProjectId
);

number_id!(
    /// A pull request's number (GitHub) or a merge request's iid (GitLab):
    /// unique within its repository.
    PrNumber
);

/// A repository's path on its forge: GitHub `owner/name`, GitLab
/// `group/sub/name`. Built from outside input only through `parse`, which
/// checks the shape for the provider; read back from the store as stored.
#[derive(
    Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema, sqlx::Type,
)]
#[serde(transparent)]
#[sqlx(transparent)]
pub struct RepoPath(String);

impl RepoPath {
    /// `owner/name` on GitHub; `group/sub/name` (two or more parts) on
    /// GitLab. The error names what to fix.
    pub fn parse(provider: Provider, repo: &str) -> Result<Self, String> {
        let parts: Vec<&str> = repo.split('/').collect();
        let shape_ok = match provider {
            Provider::Github => parts.len() == 2,
            Provider::Gitlab => parts.len() >= 2 && parts.len() <= 20,
        };
        // GitHub repository names may start with `.` (`acme/.github`);
        // owners and GitLab paths may not.
        let part_ok = |(index, p): (usize, &&str)| {
            let leading_dot_ok = provider == Provider::Github && index == 1;
            !p.is_empty()
                && p.len() <= 100
                && !matches!(*p, "." | "..")
                && (leading_dot_ok || !p.starts_with('.'))
                && !p.ends_with(".git")
                && p.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        };
        if shape_ok && parts.iter().enumerate().all(part_ok) {
            Ok(Self(repo.to_string()))
        } else {
            Err(match provider {
                Provider::Github => {
                    format!("repo `{repo}` must be `owner/name` (letters, digits, `-`, `_`, `.`)")
                }
                Provider::Gitlab => format!(
                    "repo `{repo}` must be a GitLab project path like `group/subgroup/name`"
                ),
            })
        }
    }

    /// A path graft already holds (from its store or a forge's event),
    /// taken as it is.
    pub fn trusted(repo: impl Into<String>) -> Self {
        Self(repo.into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for RepoPath {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

impl AsRef<str> for RepoPath {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for RepoPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl PartialEq<str> for RepoPath {
    fn eq(&self, other: &str) -> bool {
        self.0 == other
    }
}

impl PartialEq<&str> for RepoPath {
    fn eq(&self, other: &&str) -> bool {
        self.0 == *other
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_paths_are_checked_for_their_provider() {
        assert!(RepoPath::parse(Provider::Github, "acme/.github").is_ok());
        assert!(RepoPath::parse(Provider::Github, "acme/infra/sub").is_err());
        assert!(RepoPath::parse(Provider::Gitlab, "group/sub/name").is_ok());
        assert!(RepoPath::parse(Provider::Gitlab, ".group/name").is_err());
        let err = RepoPath::parse(Provider::Github, "acme").unwrap_err();
        assert!(err.contains("owner/name"), "{err}");
        let repo = RepoPath::parse(Provider::Github, "acme/infra").unwrap();
        assert_eq!(serde_json::to_string(&repo).unwrap(), "\"acme/infra\"");
    }

    #[test]
    fn number_ids_are_plain_numbers() {
        let id = ProjectId(42);
        assert_eq!(serde_json::to_string(&id).unwrap(), "42");
        assert_eq!(serde_json::from_str::<ProjectId>("42").unwrap(), id);
        assert_eq!(id.to_string(), "42");
        assert_eq!(format!("#{}", PrNumber(7)), "#7");
        assert!(serde_json::from_str::<PrNumber>("\"7\"").is_err());
    }

    #[test]
    fn provider_names_round_trip() {
        for p in [Provider::Github, Provider::Gitlab] {
            assert_eq!(Provider::parse(p.as_str()), Some(p));
        }
        assert_eq!(Provider::parse("bitbucket"), None);
    }
}
