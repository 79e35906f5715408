//! Adopting files the repository already has: they become managed and
//! `synced` at the target head graft read them from, labelled
//! `discovery`, in one transaction with the audit event.

use super::audit::{NewEvent, record_event_in};
use super::{Store, StoreError, flag};
use crate::git::read::blob_id;
use crate::ids::ProjectId;

/// A file read from the target head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundFile {
    pub path: String,
    pub content: Vec<u8>,
    pub executable: bool,
}

/// What [`Store::adopt_files`] stored: `(path, blob_sha)` of each adopted
/// file, and the paths a concurrent change made managed meanwhile.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stored {
    pub adopted: Vec<(String, String)>,
    pub raced: Vec<String>,
}

/// Why nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum AdoptStoreError {
    /// graft's record of the target branch is not the head the files were
    /// read from: upstream changes to managed files may not be in the
    /// database yet, so adopting now would mix two points in time.
    #[error("the target branch is at {head}, graft last followed it at {recorded}")]
    Moved { head: String, recorded: String },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl Store {
    /// Stores `files` as managed, `synced` and `discovery`, skipping any
    /// path already managed; records `head` as the project's
    /// `last_synced_commit_sha` when it had none, and refuses (storing
    /// nothing) when it had another.
    pub async fn adopt_files(
        &self,
        project: ProjectId,
        head: &str,
        files: &[FoundFile],
        actor: &str,
        now: i64,
    ) -> std::result::Result<Stored, AdoptStoreError> {
        let mut tx = self.begin_write().await?;
        let updated = sqlx::query(
            "UPDATE projects SET last_synced_commit_sha = $1, updated_at = $2 WHERE id = $3 \
             AND (last_synced_commit_sha IS NULL OR last_synced_commit_sha = $1)",
        )
        .bind(head)
        .bind(now)
        .bind(project)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::from)?;
        if updated.rows_affected() == 0 {
            let recorded: Option<String> =
                sqlx::query_scalar("SELECT last_synced_commit_sha FROM projects WHERE id = $1")
                    .bind(project)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(StoreError::from)?
                    .flatten();
            return Err(AdoptStoreError::Moved {
                head: head.to_string(),
                recorded: recorded.unwrap_or_default(),
            });
        }
        let mut stored = Stored::default();
        for file in files {
            let blob = blob_id(&file.content).to_string();
            // A path that became managed since it was listed stays as it is.
            let inserted = sqlx::query(
                "INSERT INTO managed_files (project_id, path, content, blob_sha, size, executable, \
                 state, sync_on_change, synced_blob_sha, updated_at, source) \
                 VALUES ($1, $2, $3, $4, $5, $6, 'synced', 0, $4, $7, 'discovery') \
                 ON CONFLICT (project_id, path) DO NOTHING",
            )
            .bind(project)
            .bind(&file.path)
            .bind(file.content.as_slice())
            .bind(&blob)
            .bind(i64::try_from(file.content.len()).unwrap_or(i64::MAX))
            .bind(flag(file.executable))
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::from)?;
            if inserted.rows_affected() == 0 {
                stored.raced.push(file.path.clone());
            } else {
                stored.adopted.push((file.path.clone(), blob));
            }
        }
        if !stored.adopted.is_empty() {
            let paths: Vec<&str> = stored.adopted.iter().map(|(p, _)| p.as_str()).collect();
            record_event_in(
                &mut tx,
                &NewEvent {
                    project_id: Some(project),
                    actor,
                    kind: "files.adopted",
                    message: &format!(
                        "adopted {} file(s) from the repository at {}",
                        paths.len(),
                        &head[..head.len().min(12)]
                    ),
                    commit_sha: Some(head),
                    details: Some(serde_json::json!({ "paths": paths })),
                    ..NewEvent::default()
                },
                now,
            )
            .await?;
        }
        tx.commit().await.map_err(StoreError::from)?;
        Ok(stored)
    }
}
