//! API tokens. The token is shown once when created; only its SHA-256 is
//! stored (tokens are 256 random bits, so a fast hash is enough).
//!
//! A token's scope says what it may do: `admin` everything, `generator`
//! only the files (and syncs) of the projects it names.

use base64::Engine;
use sha2::{Digest, Sha256};

use crate::ids::ProjectId;

use super::{Result, Store, StoreError, is_unique_violation};

const TOKEN_PREFIX: &str = "graft_";

/// The two kinds of API token, stored as their name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenScope {
    /// Everything: projects, integrations, set-up, the dashboard.
    Admin,
    /// The managed files of its projects, reading them, queuing their syncs.
    Generator,
}

impl TokenScope {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenScope::Admin => "admin",
            TokenScope::Generator => "generator",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "admin" => Some(TokenScope::Admin),
            "generator" => Some(TokenScope::Generator),
            _ => None,
        }
    }
}

impl std::fmt::Display for TokenScope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A scope with the projects it covers; only consistent pairs can be made
/// (an admin names no project, a generator at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenAccess {
    scope: TokenScope,
    projects: Vec<ProjectId>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error(
        "--project applies to generator tokens only (an admin token reaches every project); \
         add --scope generator"
    )]
    ProjectsNeedGenerator,
    #[error(
        "a generator token needs at least one --project ID (the projects whose files it may \
         write); repeat --project for several"
    )]
    GeneratorNeedsProjects,
    #[error("--project {0} is not a project id (a positive integer)")]
    BadProject(ProjectId),
}

impl TokenAccess {
    pub fn admin() -> Self {
        TokenAccess {
            scope: TokenScope::Admin,
            projects: Vec::new(),
        }
    }

    pub fn new(scope: TokenScope, projects: &[ProjectId]) -> Result<Self, AccessError> {
        if let Some(bad) = projects.iter().find(|id| id.get() <= 0) {
            return Err(AccessError::BadProject(*bad));
        }
        match (scope, projects.is_empty()) {
            (TokenScope::Admin, true) => Ok(Self::admin()),
            (TokenScope::Admin, false) => Err(AccessError::ProjectsNeedGenerator),
            (TokenScope::Generator, true) => Err(AccessError::GeneratorNeedsProjects),
            (TokenScope::Generator, false) => {
                let mut projects = projects.to_vec();
                projects.sort_unstable();
                projects.dedup();
                Ok(TokenAccess { scope, projects })
            }
        }
    }

    pub fn scope(&self) -> TokenScope {
        self.scope
    }

    /// The projects of a generator token (empty for an admin).
    pub fn projects(&self) -> &[ProjectId] {
        &self.projects
    }

    pub fn is_admin(&self) -> bool {
        self.scope == TokenScope::Admin
    }

    /// Whether the token may see and change project `id`.
    pub fn reaches(&self, id: ProjectId) -> bool {
        self.is_admin() || self.projects.binary_search(&id).is_ok()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiToken {
    pub id: i64,
    pub name: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub access: TokenAccess,
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token_text() -> Result<String> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)
        .map_err(|e| StoreError::Conflict(format!("no randomness available: {e}")))?;
    Ok(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    ))
}

const TOKEN_COLUMNS: &str = "id, name, created_at, last_used_at, revoked_at, scope";

/// A token row with its projects. A scope graft does not know (the schema
/// forbids one) reaches nothing rather than everything.
#[derive(sqlx::FromRow)]
struct TokenRow {
    id: i64,
    name: String,
    created_at: i64,
    last_used_at: Option<i64>,
    revoked_at: Option<i64>,
    scope: String,
}

fn token_of(row: TokenRow, projects: Vec<ProjectId>) -> ApiToken {
    let access = match TokenScope::parse(&row.scope) {
        Some(TokenScope::Admin) => TokenAccess::admin(),
        _ => TokenAccess {
            scope: TokenScope::Generator,
            projects,
        },
    };
    ApiToken {
        id: row.id,
        name: row.name,
        created_at: row.created_at,
        last_used_at: row.last_used_at,
        revoked_at: row.revoked_at,
        access,
    }
}

impl Store {
    /// Creates an admin token named `name` and returns it in clear, the
    /// only time it exists so.
    pub async fn create_token(&self, name: &str, now: i64) -> Result<(i64, String)> {
        self.create_scoped_token(name, &TokenAccess::admin(), now)
            .await
    }

    /// Creates a token with `access`; every project it names must exist.
    pub async fn create_scoped_token(
        &self,
        name: &str,
        access: &TokenAccess,
        now: i64,
    ) -> Result<(i64, String)> {
        let token = new_token_text()?;
        let mut tx = self.begin_write().await?;
        for project in access.projects() {
            sqlx::query("SELECT id FROM projects WHERE id = $1")
                .bind(project)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("project {project}")))?;
        }
        let (id,): (i64,) = sqlx::query_as(
            "INSERT INTO api_tokens (name, token_hash, created_at, scope) \
             VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(hash_token(&token))
        .bind(now)
        .bind(access.scope().as_str())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| {
            if is_unique_violation(&e) {
                StoreError::Conflict(format!(
                    "an active token named `{name}` exists already; revoke it first or pick another name"
                ))
            } else {
                e.into()
            }
        })?;
        for project in access.projects() {
            sqlx::query("INSERT INTO api_token_projects (token_id, project_id) VALUES ($1, $2)")
                .bind(id)
                .bind(project)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok((id, token))
    }

    async fn token_projects(&self, token_id: i64) -> Result<Vec<ProjectId>> {
        let rows: Vec<(ProjectId,)> = sqlx::query_as(
            "SELECT project_id FROM api_token_projects WHERE token_id = $1 ORDER BY project_id",
        )
        .bind(token_id)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(id,)| id).collect())
    }

    /// The token of `row` with its projects (none to load for an admin).
    async fn with_projects(&self, row: Option<TokenRow>) -> Result<Option<ApiToken>> {
        let Some(row) = row else {
            return Ok(None);
        };
        let projects = if row.scope == TokenScope::Admin.as_str() {
            Vec::new()
        } else {
            self.token_projects(row.id).await?
        };
        Ok(Some(token_of(row, projects)))
    }

    /// The active token matching `token`, if any; notes when it was last used.
    pub async fn authenticate_token(&self, token: &str, now: i64) -> Result<Option<ApiToken>> {
        let hash = hash_token(token);
        let row: Option<TokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
        )))
        .bind(&hash)
        .fetch_optional(&self.pool)
        .await?;
        let Some(token) = self.with_projects(row).await? else {
            return Ok(None);
        };
        // Write at most once a minute per token, not on every request.
        if token.last_used_at.is_none_or(|t| now - t > 60_000) {
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(token.id)
                .execute(&self.pool)
                .await?;
        }
        Ok(Some(token))
    }

    /// The token behind a dashboard session, if it is still active.
    pub async fn active_token(&self, id: i64) -> Result<Option<ApiToken>> {
        let row: Option<TokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1 AND revoked_at IS NULL"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        self.with_projects(row).await
    }

    /// Revokes the active token called `name`; `false` if there is none.
    pub async fn revoke_token(&self, name: &str, now: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 WHERE name = $2 AND revoked_at IS NULL",
        )
        .bind(now)
        .bind(name)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn list_tokens(&self) -> Result<Vec<ApiToken>> {
        let rows: Vec<TokenRow> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"
        )))
        .fetch_all(&self.pool)
        .await?;
        let links: Vec<(i64, ProjectId)> = sqlx::query_as(
            "SELECT token_id, project_id FROM api_token_projects ORDER BY token_id, project_id",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut projects: std::collections::HashMap<i64, Vec<ProjectId>> = Default::default();
        for (token, project) in links {
            projects.entry(token).or_default().push(project);
        }
        Ok(rows
            .into_iter()
            .map(|r| {
                let own = projects.remove(&r.id).unwrap_or_default();
                token_of(r, own)
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_and_projects_must_agree() {
        assert_eq!(
            TokenAccess::new(TokenScope::Admin, &[]),
            Ok(TokenAccess::admin())
        );
        assert_eq!(
            TokenAccess::new(TokenScope::Admin, &[ProjectId(1)]),
            Err(AccessError::ProjectsNeedGenerator)
        );
        assert_eq!(
            TokenAccess::new(TokenScope::Generator, &[]),
            Err(AccessError::GeneratorNeedsProjects)
        );
        assert_eq!(
            TokenAccess::new(TokenScope::Generator, &[ProjectId(3), ProjectId(0)]),
            Err(AccessError::BadProject(ProjectId(0)))
        );
        let generator = TokenAccess::new(
            TokenScope::Generator,
            &[ProjectId(7), ProjectId(3), ProjectId(7)],
        )
        .unwrap();
        assert_eq!(generator.projects(), &[ProjectId(3), ProjectId(7)]);
        assert!(generator.reaches(ProjectId(3)) && generator.reaches(ProjectId(7)));
        assert!(!generator.reaches(ProjectId(4)) && !generator.is_admin());
        assert!(TokenAccess::admin().reaches(ProjectId(4)));
    }

    #[test]
    fn scope_names_round_trip() {
        for scope in [TokenScope::Admin, TokenScope::Generator] {
            assert_eq!(TokenScope::parse(scope.as_str()), Some(scope));
        }
        assert_eq!(TokenScope::parse("Admin"), None);
    }

    #[test]
    fn a_generator_without_projects_reaches_nothing() {
        let access = TokenAccess {
            scope: TokenScope::Generator,
            projects: Vec::new(),
        };
        assert!(!access.reaches(ProjectId(1)) && !access.is_admin());
    }
}
