//! A project's commit mode: how a sync writes its commit to the forge.

use serde::Serialize;

use crate::ids::ProjectId;

use super::{Result, Store};

/// `git`: a git push (the default). `api`: the forge's API creates the
/// commit (GitHub's `createCommitOnBranch`, GitLab's commits API) and signs
/// it, for branches that require signed commits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CommitVia {
    #[default]
    Git,
    Api,
}

impl CommitVia {
    pub fn as_str(self) -> &'static str {
        match self {
            CommitVia::Git => "git",
            CommitVia::Api => "api",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "git" => Some(CommitVia::Git),
            "api" => Some(CommitVia::Api),
            _ => None,
        }
    }
}

impl Store {
    pub async fn set_commit_via(&self, id: ProjectId, via: CommitVia, now: i64) -> Result<()> {
        sqlx::query("UPDATE projects SET commit_via = $1, updated_at = $2 WHERE id = $3")
            .bind(via.as_str())
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_others_are_refused() {
        for via in [CommitVia::Git, CommitVia::Api] {
            assert_eq!(CommitVia::parse(via.as_str()), Some(via));
        }
        assert_eq!(CommitVia::parse("API"), None);
        assert_eq!(CommitVia::default(), CommitVia::Git);
    }
}
