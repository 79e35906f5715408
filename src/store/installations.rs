//! GitHub App installations and the repositories each can reach, kept in
//! step with `installation` / `installation_repositories` webhooks.

use super::{Result, Store, flag};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Installation {
    pub id: i64,
    pub account: String,
    pub suspended: bool,
    pub repositories: Vec<String>,
}

impl Store {
    pub async fn upsert_installation(&self, id: i64, account: &str, now: i64) -> Result<()> {
        sqlx::query(
            "INSERT INTO installations (id, account, suspended, created_at, updated_at) \
             VALUES ($1, $2, 0, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET account = excluded.account, updated_at = excluded.updated_at",
        )
        .bind(id)
        .bind(account)
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn set_installation_suspended(
        &self,
        id: i64,
        suspended: bool,
        now: i64,
    ) -> Result<()> {
        sqlx::query("UPDATE installations SET suspended = $1, updated_at = $2 WHERE id = $3")
            .bind(flag(suspended))
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn delete_installation(&self, id: i64) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM installation_repositories WHERE installation_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM installations WHERE id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn add_installation_repositories(&self, id: i64, repos: &[String]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for repo in repos {
            sqlx::query(
                "INSERT INTO installation_repositories (installation_id, repo) VALUES ($1, $2) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(repo)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn remove_installation_repositories(&self, id: i64, repos: &[String]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for repo in repos {
            sqlx::query(
                "DELETE FROM installation_repositories WHERE installation_id = $1 AND repo = $2",
            )
            .bind(id)
            .bind(repo)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn installation(&self, id: i64) -> Result<Option<Installation>> {
        let Some((id, account, suspended)): Option<(i64, String, i64)> =
            sqlx::query_as("SELECT id, account, suspended FROM installations WHERE id = $1")
                .bind(id)
                .fetch_optional(&self.pool)
                .await?
        else {
            return Ok(None);
        };
        let repos: Vec<(String,)> = sqlx::query_as(
            "SELECT repo FROM installation_repositories WHERE installation_id = $1 ORDER BY repo",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        Ok(Some(Installation {
            id,
            account,
            suspended: suspended != 0,
            repositories: repos.into_iter().map(|(repo,)| repo).collect(),
        }))
    }

    /// The installation that can reach `repo` (`owner/name`), if known.
    pub async fn installation_for_repo(&self, repo: &str) -> Result<Option<i64>> {
        let row: Option<(i64,)> = sqlx::query_as(
            "SELECT installation_id FROM installation_repositories WHERE repo = $1 LIMIT 1",
        )
        .bind(repo)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|(id,)| id))
    }
}
