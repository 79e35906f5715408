//! Projects: one mapping from graft to a folder of a branch of a
//! repository, with the sync state users see (status, error, last synced
//! commit, the PR/MR).

use serde::Serialize;
use sqlx::AnyConnection;

use crate::ids::{PrNumber, ProjectId, Provider};

use super::commit_via::CommitVia;
use super::{Result, Store, StoreError, flag, is_unique_violation};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Iac,
    Configuration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    PullRequest,
    Direct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncStatus {
    Idle,
    Syncing,
    Success,
    Error,
    Paused,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Iac => "iac",
            Kind::Configuration => "configuration",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "iac" => Some(Kind::Iac),
            "configuration" => Some(Kind::Configuration),
            _ => None,
        }
    }
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::PullRequest => "pull_request",
            Mode::Direct => "direct",
        }
    }
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "pull_request" => Some(Mode::PullRequest),
            "direct" => Some(Mode::Direct),
            _ => None,
        }
    }
}

impl SyncStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncStatus::Idle => "idle",
            SyncStatus::Syncing => "syncing",
            SyncStatus::Success => "success",
            SyncStatus::Error => "error",
            SyncStatus::Paused => "paused",
        }
    }
    fn parse(text: &str) -> Self {
        match text {
            "syncing" => SyncStatus::Syncing,
            "success" => SyncStatus::Success,
            "error" => SyncStatus::Error,
            "paused" => SyncStatus::Paused,
            _ => SyncStatus::Idle,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewProject {
    pub provider: Provider,
    pub integration_id: Option<i64>,
    pub repo: String,
    pub branch: String,
    pub base_path: String,
    pub kind: Kind,
    pub mode: Mode,
    pub auto_sync: bool,
    pub auto_merge: bool,
    /// `None`: `graft/<slug>`.
    pub sync_branch: Option<String>,
    pub commit_via: CommitVia,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Project {
    pub id: ProjectId,
    pub provider: Provider,
    pub integration_id: Option<i64>,
    pub repo: String,
    pub branch: String,
    pub base_path: String,
    pub kind: Kind,
    pub mode: Mode,
    pub auto_sync: bool,
    pub auto_merge: bool,
    /// How a sync writes its commit (`git` push or the forge's `api`).
    pub commit_via: CommitVia,
    pub paused: bool,
    pub slug: String,
    pub sync_branch: String,
    pub sync_status: SyncStatus,
    pub sync_error: Option<String>,
    pub last_synced_commit_sha: Option<String>,
    pub last_pulled_at: Option<i64>,
    pub pull_request_number: Option<PrNumber>,
    pub pull_request_url: Option<String>,
    pub auto_sync_held: bool,
    pub sync_branch_shared: bool,
    #[serde(skip)]
    pub sync_branch_sha: Option<String>,
    #[serde(skip)]
    pub status_comment_id: Option<i64>,
    pub conflicts: Option<Vec<String>>,
    #[serde(skip)]
    pub last_failed_job_id: Option<i64>,
    pub source: Option<String>,
    pub last_findings: Option<serde_json::Value>,
    /// What the open PR changes (for the status comment's table).
    #[serde(skip)]
    pub last_changes: Vec<crate::git::read::FileChange>,
    /// While paused: the status and error from before the pause.
    #[serde(skip)]
    pub status_before_pause: Option<SyncStatus>,
    #[serde(skip)]
    pub error_before_pause: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl Project {
    /// The status as if the project were not paused (what `/graft resume`
    /// would bring back): a pause does not make a failure go away.
    pub fn unpaused_status(&self) -> SyncStatus {
        match (self.sync_status, self.status_before_pause) {
            (SyncStatus::Paused, Some(before)) => before,
            (status, _) => status,
        }
    }
}

const COLUMNS: &str = "id, provider, integration_id, repo, branch, base_path, kind, mode, \
    auto_sync, auto_merge, paused, slug, sync_branch, sync_status, sync_error, \
    last_synced_commit_sha, last_pulled_at, pull_request_number, pull_request_url, \
    auto_sync_held, sync_branch_shared, sync_branch_sha, status_comment_id, conflicts, \
    last_failed_job_id, source, last_findings, created_at, updated_at, last_changes, \
    status_before_pause, error_before_pause, commit_via";

/// A `projects` row as stored: flags as integers, enums and JSON as text.
#[derive(sqlx::FromRow)]
struct ProjectRow {
    id: ProjectId,
    provider: Provider,
    integration_id: Option<i64>,
    repo: String,
    branch: String,
    base_path: String,
    kind: String,
    mode: String,
    auto_sync: i64,
    auto_merge: i64,
    paused: i64,
    slug: String,
    sync_branch: String,
    sync_status: String,
    sync_error: Option<String>,
    last_synced_commit_sha: Option<String>,
    last_pulled_at: Option<i64>,
    pull_request_number: Option<PrNumber>,
    pull_request_url: Option<String>,
    auto_sync_held: i64,
    sync_branch_shared: i64,
    sync_branch_sha: Option<String>,
    status_comment_id: Option<i64>,
    conflicts: Option<String>,
    last_failed_job_id: Option<i64>,
    source: Option<String>,
    last_findings: Option<String>,
    created_at: i64,
    updated_at: i64,
    last_changes: Option<String>,
    status_before_pause: Option<String>,
    error_before_pause: Option<String>,
    commit_via: String,
}

/// JSON columns are graft's own writing; one that does not parse reads as
/// absent, as before.
fn json<T: serde::de::DeserializeOwned>(text: Option<&str>) -> Option<T> {
    text.and_then(|t| serde_json::from_str(t).ok())
}

impl From<ProjectRow> for Project {
    fn from(r: ProjectRow) -> Self {
        Project {
            id: r.id,
            provider: r.provider,
            integration_id: r.integration_id,
            kind: Kind::parse(&r.kind).unwrap_or(Kind::Iac),
            mode: Mode::parse(&r.mode).unwrap_or(Mode::PullRequest),
            auto_sync: r.auto_sync != 0,
            auto_merge: r.auto_merge != 0,
            paused: r.paused != 0,
            sync_status: SyncStatus::parse(&r.sync_status),
            auto_sync_held: r.auto_sync_held != 0,
            sync_branch_shared: r.sync_branch_shared != 0,
            conflicts: json(r.conflicts.as_deref()),
            last_findings: json(r.last_findings.as_deref()),
            last_changes: json(r.last_changes.as_deref()).unwrap_or_default(),
            status_before_pause: r.status_before_pause.as_deref().map(SyncStatus::parse),
            repo: r.repo,
            branch: r.branch,
            base_path: r.base_path,
            slug: r.slug,
            sync_branch: r.sync_branch,
            sync_error: r.sync_error,
            commit_via: CommitVia::parse(&r.commit_via).unwrap_or_default(),
            last_synced_commit_sha: r.last_synced_commit_sha,
            last_pulled_at: r.last_pulled_at,
            pull_request_number: r.pull_request_number,
            pull_request_url: r.pull_request_url,
            sync_branch_sha: r.sync_branch_sha,
            status_comment_id: r.status_comment_id,
            last_failed_job_id: r.last_failed_job_id,
            source: r.source,
            created_at: r.created_at,
            updated_at: r.updated_at,
            error_before_pause: r.error_before_pause,
        }
    }
}

/// `a-b-c` from any text: lowercase ASCII letters, digits and dashes.
pub fn slugify(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.ends_with('-') && !slug.is_empty() {
            slug.push('-');
        }
    }
    let slug = slug.trim_end_matches('-');
    let slug: String = slug.chars().take(60).collect();
    if slug.is_empty() {
        "project".into()
    } else {
        slug
    }
}

/// The branches other projects of `new`'s repository hold: (id, target
/// branch, sync branch). One read, for every check and candidate below.
async fn repository_branches(
    conn: &mut AnyConnection,
    new: &NewProject,
) -> Result<Vec<(i64, String, String)>> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT id, branch, sync_branch FROM projects WHERE provider = $1 \
         AND LOWER(repo) = LOWER($2) AND COALESCE(integration_id, 0) = COALESCE($3, 0) \
         ORDER BY id",
    )
    .bind(new.provider)
    .bind(&new.repo)
    .bind(new.integration_id)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows)
}

/// Why `new` may not use `sync_branch`: graft force-pushes a sync branch,
/// so it must be no other project's sync branch nor any project's target.
fn sync_branch_conflict(
    others: &[(i64, String, String)],
    repo: &str,
    sync_branch: &str,
) -> Option<String> {
    others.iter().find_map(|(id, target, theirs)| {
        if theirs == sync_branch {
            Some(format!(
                "`sync_branch` `{sync_branch}` is already project {id}'s sync branch in {repo}; \
                 choose another `sync_branch` (or leave it out for graft's default)"
            ))
        } else if target == sync_branch {
            Some(format!(
                "`sync_branch` `{sync_branch}` is project {id}'s target branch in {repo}; graft \
                 rewrites its sync branch, so choose another `sync_branch`"
            ))
        } else {
            None
        }
    })
}

/// A value to match in [`Store::projects_where`].
enum Value<'a> {
    Text(&'a str),
    Number(PrNumber),
}

/// A repository as events name it: the forge, the integration the event
/// came through (`None`: GitHub, or GitLab's default integration) and the
/// path. Repository names compare case-insensitively, as forges treat them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RepoKey<'a> {
    pub provider: &'a str,
    pub integration_id: Option<i64>,
    pub repo: &'a str,
}

impl Store {
    pub async fn create_project(&self, new: &NewProject, now: i64) -> Result<Project> {
        let name_part = if new.base_path.is_empty() {
            new.repo.rsplit('/').next().unwrap_or(&new.repo).to_string()
        } else {
            new.base_path.clone()
        };
        let base_slug = slugify(&name_part);
        let mut tx = self.begin_write().await?;
        // Two projects of one repository must not share a sync branch, nor
        // may one's sync branch be another's target: an explicit branch
        // that clashes is refused; the default one gets a suffix
        // (`infra/gen` and `infra-gen` slug alike).
        let others = repository_branches(&mut tx, new).await?;
        if let Some((id, ..)) = others.iter().find(|o| o.2 == new.branch) {
            return Err(StoreError::Conflict(format!(
                "`branch` `{}` is project {id}'s sync branch in {}, which graft rewrites; \
                 target another branch",
                new.branch, new.repo
            )));
        }
        let (slug, sync_branch) = match &new.sync_branch {
            Some(branch) => {
                if let Some(why) = sync_branch_conflict(&others, &new.repo, branch) {
                    return Err(StoreError::Conflict(why));
                }
                (base_slug, branch.clone())
            }
            None => {
                let branch_slug = format!("{base_slug}-{}", slugify(&new.branch));
                std::iter::once(base_slug.clone())
                    .chain(std::iter::once(branch_slug))
                    .chain((2..100).map(|n| format!("{base_slug}-{n}")))
                    .map(|slug| {
                        let branch = format!("graft/{slug}");
                        (slug, branch)
                    })
                    .find(|(_, branch)| sync_branch_conflict(&others, &new.repo, branch).is_none())
                    .ok_or_else(|| {
                        StoreError::Conflict(format!(
                            "no free sync branch `graft/{base_slug}-N` in {}; set `sync_branch`",
                            new.repo
                        ))
                    })?
            }
        };
        let (id,): (ProjectId,) = sqlx::query_as(
            "INSERT INTO projects (provider, integration_id, repo, branch, base_path, kind, mode, \
             auto_sync, auto_merge, slug, sync_branch, commit_via, sync_status, created_at, \
             updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, 'idle', $13, $13) \
             RETURNING id",
        )
        .bind(new.provider)
        .bind(new.integration_id)
        .bind(&new.repo)
        .bind(&new.branch)
        .bind(&new.base_path)
        .bind(new.kind.as_str())
        .bind(new.mode.as_str())
        .bind(flag(new.auto_sync))
        .bind(flag(new.auto_merge))
        .bind(&slug)
        .bind(&sync_branch)
        .bind(new.commit_via.as_str())
        .bind(now)
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!(
                    "a project for {} {} branch `{}` base path `{}` exists already",
                    new.provider, new.repo, new.branch, new.base_path
                ))
            } else {
                e.into()
            }
        })?;
        tx.commit().await?;
        self.project(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project {id}")))
    }

    pub async fn project(&self, id: ProjectId) -> Result<Option<Project>> {
        let mut conn = self.pool.acquire().await?;
        project_in(&mut conn, id).await
    }

    pub async fn require_project(&self, id: ProjectId) -> Result<Project> {
        self.project(id)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("project {id}")))
    }

    pub async fn list_projects(&self) -> Result<Vec<Project>> {
        let sql = format!("SELECT {COLUMNS} FROM projects ORDER BY id");
        let rows: Vec<ProjectRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .fetch_all(&self.pool)
            .await?;
        Ok(rows.into_iter().map(Project::from).collect())
    }

    /// Projects on `branch` of the repository (every base path).
    pub async fn projects_on_branch(
        &self,
        repo: &RepoKey<'_>,
        branch: &str,
    ) -> Result<Vec<Project>> {
        self.projects_where(repo, "branch = $4", Value::Text(branch))
            .await
    }

    /// The project whose sync branch this is, if any.
    pub async fn project_by_sync_branch(
        &self,
        repo: &RepoKey<'_>,
        branch: &str,
    ) -> Result<Option<Project>> {
        Ok(self
            .projects_where(repo, "sync_branch = $4", Value::Text(branch))
            .await?
            .into_iter()
            .next())
    }

    /// The project whose open PR/MR is `number`, if any.
    pub async fn project_by_pull_request(
        &self,
        repo: &RepoKey<'_>,
        number: PrNumber,
    ) -> Result<Option<Project>> {
        Ok(self
            .projects_where(repo, "pull_request_number = $4", Value::Number(number))
            .await?
            .into_iter()
            .next())
    }

    /// Projects of the repository matching one more condition on `$4`.
    async fn projects_where(
        &self,
        repo: &RepoKey<'_>,
        condition: &str,
        value: Value<'_>,
    ) -> Result<Vec<Project>> {
        let sql = format!(
            "SELECT {COLUMNS} FROM projects WHERE provider = $1 AND LOWER(repo) = LOWER($2) \
             AND COALESCE(integration_id, 0) = COALESCE($3, 0) AND {condition} ORDER BY id"
        );
        let query = sqlx::query_as::<_, ProjectRow>(sqlx::AssertSqlSafe(sql))
            .bind(repo.provider)
            .bind(repo.repo)
            .bind(repo.integration_id);
        let query = match value {
            Value::Text(text) => query.bind(text),
            Value::Number(number) => query.bind(number),
        };
        let rows = query.fetch_all(&self.pool).await?;
        Ok(rows.into_iter().map(Project::from).collect())
    }
}

/// Project `id` as `conn` sees it (inside the caller's transaction).
pub async fn project_in(conn: &mut AnyConnection, id: ProjectId) -> Result<Option<Project>> {
    let sql = format!("SELECT {COLUMNS} FROM projects WHERE id = $1");
    let row: Option<ProjectRow> = sqlx::query_as(sqlx::AssertSqlSafe(sql))
        .bind(id)
        .fetch_optional(&mut *conn)
        .await?;
    Ok(row.map(Project::from))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_are_branch_safe() {
        assert_eq!(slugify("infra/Generated_Stuff"), "infra-generated-stuff");
        assert_eq!(slugify("--a--b--"), "a-b");
        assert_eq!(slugify("ñ"), "project");
    }
}
