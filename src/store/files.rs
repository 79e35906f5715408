//! Managed files: what graft owns in a project, by path relative to the
//! base path, with the git blob id that tells a real change from a re-put
//! of the same content.

use serde::Serialize;
use sqlx::AnyConnection;

use super::{Result, Store, flag};
use crate::git::read::blob_id;
use crate::ids::ProjectId;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileState {
    /// Content graft has not pushed yet.
    Pending,
    /// What the repository has, as of the last sync or import.
    Synced,
    /// Removed from the project; the deletion is not pushed yet.
    DeletedPending,
}

impl FileState {
    pub fn as_str(self) -> &'static str {
        match self {
            FileState::Pending => "pending",
            FileState::Synced => "synced",
            FileState::DeletedPending => "deleted_pending",
        }
    }
    fn parse(text: &str) -> Self {
        match text {
            "synced" => FileState::Synced,
            "deleted_pending" => FileState::DeletedPending,
            _ => FileState::Pending,
        }
    }
}

/// Where a managed file came from, so reviewers can tell generated files
/// from existing ones graft took over.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum FileSource {
    /// Uploaded through the API or `graft push`.
    #[default]
    Generator,
    /// Found in the repository (adopt) or produced by a discovery of
    /// existing infrastructure.
    Discovery,
}

impl FileSource {
    pub const NAMES: [&'static str; 2] = ["generator", "discovery"];

    pub fn as_str(self) -> &'static str {
        match self {
            FileSource::Generator => "generator",
            FileSource::Discovery => "discovery",
        }
    }

    /// `None` for a name that is not a source.
    pub fn from_name(text: &str) -> Option<Self> {
        match text {
            "generator" => Some(FileSource::Generator),
            "discovery" => Some(FileSource::Discovery),
            _ => None,
        }
    }

    fn parse(text: &str) -> Self {
        Self::from_name(text).unwrap_or_default()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileInput {
    pub path: String,
    pub content: Vec<u8>,
    pub sync_on_change: Option<bool>,
    pub executable: Option<bool>,
    /// `None` keeps a stored file's source; a new file is `generator`.
    pub source: Option<FileSource>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagedFileRow {
    pub path: String,
    #[serde(skip)]
    pub content: Vec<u8>,
    pub blob_sha: String,
    pub state: FileState,
    pub size: i64,
    pub sync_on_change: bool,
    pub executable: bool,
    /// Blob the repository had at the last sync (None: never synced).
    #[serde(skip)]
    pub synced_blob_sha: Option<String>,
    pub source: FileSource,
}

/// A managed file without its content: what listings show. Reading a
/// project's listing costs memory in proportion to its file count, not to
/// the size of its files.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileMeta {
    pub path: String,
    pub blob_sha: String,
    pub state: FileState,
    pub size: i64,
    pub sync_on_change: bool,
    pub executable: bool,
    pub source: FileSource,
}

impl ManagedFileRow {
    pub fn meta(&self) -> FileMeta {
        FileMeta {
            path: self.path.clone(),
            blob_sha: self.blob_sha.clone(),
            state: self.state,
            size: self.size,
            sync_on_change: self.sync_on_change,
            executable: self.executable,
            source: self.source,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Modified,
    Deleted,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ChangedPath {
    pub path: String,
    pub change: Change,
    #[serde(skip)]
    pub sync_on_change: bool,
}

/// The listing columns of a `managed_files` row as stored: flags as
/// integers, the state as text.
#[derive(sqlx::FromRow)]
struct MetaRow {
    path: String,
    blob_sha: String,
    state: String,
    size: i64,
    sync_on_change: i64,
    executable: i64,
    source: String,
}

impl From<MetaRow> for FileMeta {
    fn from(r: MetaRow) -> Self {
        FileMeta {
            state: FileState::parse(&r.state),
            sync_on_change: r.sync_on_change != 0,
            executable: r.executable != 0,
            path: r.path,
            blob_sha: r.blob_sha,
            size: r.size,
            source: FileSource::parse(&r.source),
        }
    }
}

/// A whole `managed_files` row as stored.
#[derive(sqlx::FromRow)]
struct FileRow {
    #[sqlx(flatten)]
    meta: MetaRow,
    content: Vec<u8>,
    synced_blob_sha: Option<String>,
}

impl From<FileRow> for ManagedFileRow {
    fn from(r: FileRow) -> Self {
        let meta = FileMeta::from(r.meta);
        ManagedFileRow {
            path: meta.path,
            content: r.content,
            blob_sha: meta.blob_sha,
            state: meta.state,
            size: meta.size,
            sync_on_change: meta.sync_on_change,
            executable: meta.executable,
            synced_blob_sha: r.synced_blob_sha,
            source: meta.source,
        }
    }
}

const COLUMNS: &str =
    "path, content, blob_sha, state, size, sync_on_change, executable, synced_blob_sha, source";

async fn current(
    conn: &mut AnyConnection,
    project: ProjectId,
    path: &str,
) -> Result<Option<ManagedFileRow>> {
    let sql = format!("SELECT {COLUMNS} FROM managed_files WHERE project_id = $1 AND path = $2");
    let row: Option<FileRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(project)
        .bind(path)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(ManagedFileRow::from))
}

/// A stored file as [`change_for`] needs it.
#[derive(Debug, Clone, Copy)]
pub struct Stored<'a> {
    pub blob_sha: &'a str,
    pub executable: bool,
    pub pending_deletion: bool,
}

/// What putting content with git blob id `blob` does to a file: a new one
/// (or one pending deletion) is added, a different blob or mode modifies,
/// the same is no change. The API's rule, also used by `graft push
/// --dry-run` to predict it.
pub fn change_for(existing: Option<Stored<'_>>, blob: &str, executable: bool) -> Option<Change> {
    match existing {
        None => Some(Change::Added),
        Some(e) if e.pending_deletion => Some(Change::Added),
        Some(e) if e.blob_sha != blob || e.executable != executable => Some(Change::Modified),
        Some(_) => None,
    }
}

/// Writes one file; returns the change it made, if any.
async fn put_in(
    conn: &mut AnyConnection,
    project: ProjectId,
    file: &FileInput,
    now: i64,
) -> Result<Option<ChangedPath>> {
    let blob = blob_id(&file.content).to_string();
    let existing = current(conn, project, &file.path).await?;
    let sync_on_change = file
        .sync_on_change
        .or(existing.as_ref().map(|e| e.sync_on_change))
        .unwrap_or(false);
    let executable = file
        .executable
        .or(existing.as_ref().map(|e| e.executable))
        .unwrap_or(false);
    let change = change_for(
        existing.as_ref().map(|e| Stored {
            blob_sha: &e.blob_sha,
            executable: e.executable,
            pending_deletion: e.state == FileState::DeletedPending,
        }),
        &blob,
        executable,
    );
    let source = file
        .source
        .or(existing.as_ref().map(|e| e.source))
        .unwrap_or_default();
    let flags_changed = existing
        .as_ref()
        .is_some_and(|e| e.sync_on_change != sync_on_change || e.source != source);
    if change.is_none() && !flags_changed {
        return Ok(None);
    }
    // Back to exactly what the repository has: nothing to push.
    let state = match &existing {
        Some(e)
            if e.synced_blob_sha.as_deref() == Some(blob.as_str())
                && e.executable == executable =>
        {
            FileState::Synced
        }
        Some(e) if change.is_none() => e.state,
        _ => FileState::Pending,
    };
    sqlx::query(
        "INSERT INTO managed_files (project_id, path, content, blob_sha, size, executable, state, \
         sync_on_change, updated_at, source) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
         ON CONFLICT (project_id, path) DO UPDATE SET content = excluded.content, \
         blob_sha = excluded.blob_sha, size = excluded.size, executable = excluded.executable, \
         state = excluded.state, sync_on_change = excluded.sync_on_change, \
         updated_at = excluded.updated_at, source = excluded.source",
    )
    .bind(project)
    .bind(&file.path)
    .bind(file.content.as_slice())
    .bind(&blob)
    .bind(i64::try_from(file.content.len()).unwrap_or(i64::MAX))
    .bind(flag(executable))
    .bind(state.as_str())
    .bind(flag(sync_on_change))
    .bind(now)
    .bind(source.as_str())
    .execute(&mut *conn)
    .await?;
    Ok(change.map(|change| ChangedPath {
        path: file.path.clone(),
        change,
        sync_on_change,
    }))
}

/// Removes one file from the project: forgotten if it never reached the
/// repository, otherwise kept as `deleted_pending` until a sync removes it.
async fn delete_in(
    conn: &mut AnyConnection,
    project: ProjectId,
    path: &str,
    now: i64,
) -> Result<Option<ChangedPath>> {
    let Some(existing) = current(conn, project, path).await? else {
        return Ok(None);
    };
    if existing.state == FileState::DeletedPending {
        return Ok(None);
    }
    if existing.synced_blob_sha.is_none() {
        sqlx::query("DELETE FROM managed_files WHERE project_id = $1 AND path = $2")
            .bind(project)
            .bind(path)
            .execute(&mut *conn)
            .await?;
    } else {
        sqlx::query(
            "UPDATE managed_files SET state = 'deleted_pending', updated_at = $1 \
             WHERE project_id = $2 AND path = $3",
        )
        .bind(now)
        .bind(project)
        .bind(path)
        .execute(&mut *conn)
        .await?;
    }
    Ok(Some(ChangedPath {
        path: path.to_string(),
        change: Change::Deleted,
        sync_on_change: existing.sync_on_change,
    }))
}

/// Replaces or extends the managed set; with `delete_missing`, files not
/// named are removed. The caller's transaction makes it all or nothing.
pub async fn put_files_in(
    conn: &mut AnyConnection,
    project: ProjectId,
    files: &[FileInput],
    delete_missing: bool,
    now: i64,
) -> Result<Vec<ChangedPath>> {
    let mut changes = Vec::new();
    for file in files {
        changes.extend(put_in(conn, project, file, now).await?);
    }
    if delete_missing {
        let named: std::collections::HashSet<&str> =
            files.iter().map(|f| f.path.as_str()).collect();
        let existing: Vec<String> =
            sqlx::query_scalar("SELECT path FROM managed_files WHERE project_id = $1")
                .bind(project)
                .fetch_all(&mut *conn)
                .await?;
        for path in existing.iter().filter(|p| !named.contains(p.as_str())) {
            changes.extend(delete_in(conn, project, path, now).await?);
        }
    }
    changes.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(changes)
}

/// Removes one file (see `delete_in`); `None` when nothing changed.
pub async fn delete_file_in(
    conn: &mut AnyConnection,
    project: ProjectId,
    path: &str,
    now: i64,
) -> Result<Option<ChangedPath>> {
    delete_in(conn, project, path, now).await
}

/// [`Store::file_listing`] inside the caller's transaction.
pub async fn file_listing_in(
    conn: &mut AnyConnection,
    project: ProjectId,
) -> Result<Vec<FileMeta>> {
    let rows: Vec<MetaRow> = sqlx::query_as(
        "SELECT path, blob_sha, state, size, sync_on_change, executable, source \
         FROM managed_files WHERE project_id = $1 ORDER BY path",
    )
    .bind(project)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows.into_iter().map(FileMeta::from).collect())
}

/// Paths of the files that stay in the repository (not
/// `deleted_pending`), without their contents.
pub async fn live_paths_in(conn: &mut AnyConnection, project: ProjectId) -> Result<Vec<String>> {
    let paths = sqlx::query_scalar(
        "SELECT path FROM managed_files WHERE project_id = $1 AND state <> 'deleted_pending'",
    )
    .bind(project)
    .fetch_all(&mut *conn)
    .await?;
    Ok(paths)
}

impl Store {
    /// [`put_files_in`] in a transaction of its own.
    pub async fn put_files(
        &self,
        project: ProjectId,
        files: &[FileInput],
        delete_missing: bool,
        now: i64,
    ) -> Result<Vec<ChangedPath>> {
        let mut tx = self.begin_write().await?;
        let changes = put_files_in(&mut tx, project, files, delete_missing, now).await?;
        tx.commit().await?;
        Ok(changes)
    }

    pub async fn delete_file(
        &self,
        project: ProjectId,
        path: &str,
        now: i64,
    ) -> Result<Option<ChangedPath>> {
        let mut tx = self.begin_write().await?;
        let change = delete_in(&mut tx, project, path, now).await?;
        tx.commit().await?;
        Ok(change)
    }

    pub async fn files(&self, project: ProjectId) -> Result<Vec<ManagedFileRow>> {
        let sql =
            format!("SELECT {COLUMNS} FROM managed_files WHERE project_id = $1 ORDER BY path");
        let rows: Vec<FileRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(project)
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(ManagedFileRow::from).collect())
    }

    /// Every managed file of `project` by path, without contents (the
    /// query does not read them).
    pub async fn file_listing(&self, project: ProjectId) -> Result<Vec<FileMeta>> {
        let mut conn = self.pool.acquire().await?;
        file_listing_in(&mut conn, project).await
    }

    pub async fn live_paths(&self, project: ProjectId) -> Result<Vec<String>> {
        let mut conn = self.pool.acquire().await?;
        live_paths_in(&mut conn, project).await
    }

    pub async fn file(&self, project: ProjectId, path: &str) -> Result<Option<ManagedFileRow>> {
        let mut conn = self.pool.acquire().await?;
        current(&mut conn, project, path).await
    }

    /// After a successful push: these files are what the repository has.
    /// Only rows still holding the pushed blob change, so an edit that
    /// arrived during the sync stays pending.
    pub async fn mark_synced(
        &self,
        project: ProjectId,
        pushed: &[(String, Option<String>)],
        now: i64,
    ) -> Result<()> {
        let mut tx = self.begin_write().await?;
        for (path, blob) in pushed {
            match blob {
                Some(blob) => {
                    sqlx::query(
                        "UPDATE managed_files SET state = 'synced', synced_blob_sha = blob_sha, updated_at = $1 \
                         WHERE project_id = $2 AND path = $3 AND blob_sha = $4 AND state = 'pending'",
                    )
                    .bind(now)
                    .bind(project)
                    .bind(path)
                    .bind(blob)
                    .execute(&mut *tx)
                    .await?;
                }
                None => {
                    sqlx::query(
                        "DELETE FROM managed_files WHERE project_id = $1 AND path = $2 AND state = 'deleted_pending'",
                    )
                    .bind(project)
                    .bind(path)
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    /// Takes the repository's version of a file (an upstream edit or a
    /// reviewer's `/graft import`): stored as synced. `None` removes it.
    pub async fn import_file(
        &self,
        project: ProjectId,
        path: &str,
        content: Option<&[u8]>,
        executable: bool,
        now: i64,
    ) -> Result<()> {
        match content {
            Some(content) => {
                let blob = blob_id(content).to_string();
                sqlx::query(
                    "INSERT INTO managed_files (project_id, path, content, blob_sha, size, executable, \
                     state, sync_on_change, synced_blob_sha, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, 'synced', 0, $4, $7) \
                     ON CONFLICT (project_id, path) DO UPDATE SET content = excluded.content, \
                     blob_sha = excluded.blob_sha, size = excluded.size, executable = excluded.executable, \
                     state = 'synced', synced_blob_sha = excluded.synced_blob_sha, updated_at = excluded.updated_at",
                )
                .bind(project)
                .bind(path)
                .bind(content)
                .bind(&blob)
                .bind(i64::try_from(content.len()).unwrap_or(i64::MAX))
                .bind(flag(executable))
                .bind(now)
                .execute(&self.pool)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM managed_files WHERE project_id = $1 AND path = $2")
                    .bind(project)
                    .bind(path)
                    .execute(&self.pool)
                    .await?;
            }
        }
        Ok(())
    }

    /// Files not in their synced state, per project (projects with none are
    /// left out), in one query for the dashboard's project list.
    pub async fn pending_counts(&self) -> Result<std::collections::HashMap<ProjectId, i64>> {
        let rows: Vec<(ProjectId, i64)> = sqlx::query_as(
            "SELECT project_id, COUNT(*) FROM managed_files WHERE state <> 'synced' \
             GROUP BY project_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().collect())
    }

    /// Pending files of one project.
    pub async fn pending_count(&self, project: ProjectId) -> Result<i64> {
        let value: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM managed_files WHERE project_id = $1 AND state <> 'synced'",
        )
        .bind(project)
        .fetch_one(&self.pool)
        .await?;
        Ok(value)
    }
}

/// graft's PR was closed unmerged: what it pushed did not land. Each row
/// learns what the repository really has (`None`: not there) in place of
/// what graft pushed; a synced file that differs from it is pending again,
/// and a deletion of a file the repository does not have is moot.
pub async fn record_unlanded_in(
    conn: &mut AnyConnection,
    project: ProjectId,
    in_repository: &[(String, Option<String>)],
    now: i64,
) -> Result<()> {
    for (path, blob) in in_repository {
        sqlx::query(
            "UPDATE managed_files SET synced_blob_sha = $1, updated_at = $2, \
             state = CASE WHEN state = 'synced' AND blob_sha <> COALESCE($1, '') \
             THEN 'pending' ELSE state END \
             WHERE project_id = $3 AND path = $4",
        )
        .bind(blob.as_deref())
        .bind(now)
        .bind(project)
        .bind(path)
        .execute(&mut *conn)
        .await?;
        if blob.is_none() {
            sqlx::query(
                "DELETE FROM managed_files WHERE project_id = $1 AND path = $2 \
                 AND state = 'deleted_pending'",
            )
            .bind(project)
            .bind(path)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}
