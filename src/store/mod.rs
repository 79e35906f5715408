//! Persistence over SQLite (the embedded default) and PostgreSQL with one
//! implementation: portable SQL through `sqlx::Any` (`$n` placeholders,
//! integer/text/blob columns, booleans as 0/1, times as Unix milliseconds).
//! The few statements that must differ per backend live next to each other
//! and switch on [`Backend`].

pub mod adopt;
pub mod audit;
pub mod commands;
pub mod commit_via;
pub mod deliveries;
pub mod files;
mod group_commit;
pub mod installations;
pub mod integrations;
pub mod jobs;
pub mod operator;
pub mod periodic;
pub mod project_state;
pub mod projects;
pub mod tokens;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::migrate::Migrator;
use sqlx::{AnyPool, Executor};

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("migrations/postgres");

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "DATABASE_URL `{0}` is not supported: use `sqlite://PATH` (the default is \
         sqlite://graft-data/graft.db) or `postgres://USER@HOST:PORT/DB`"
    )]
    UnsupportedUrl(String),
    #[error(
        "cannot open the database at {url}: {source}. Check DATABASE_URL and that the server is up"
    )]
    Connect {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("cannot create the data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
    #[error("{0}")]
    Conflict(String),
    #[error("{0} not found")]
    NotFound(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone, Debug)]
pub struct Store {
    pool: AnyPool,
    /// Where the hot writes go (intake, job claims and outcomes). On
    /// SQLite one connection: writers queue here in order instead of
    /// polling for the file's write lock in the busy handler's sleeps.
    /// On PostgreSQL the same pool as `pool`.
    writer: AnyPool,
    backend: Backend,
    intake: std::sync::Arc<group_commit::IntakeQueue>,
}

/// Current time as Unix milliseconds, the unit of every stored timestamp.
pub fn now_ms() -> i64 {
    let since_epoch = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(since_epoch.as_millis()).unwrap_or(i64::MAX)
}

/// Removes any password from a database URL before it is shown: the one
/// in the user info and `password=` / `sslpassword=` parameters. The URL is
/// parsed as the database driver parses it; one that cannot be parsed, or
/// that has an `@` anywhere but the user info and a password (a password
/// written without percent-encoding, split by the parser), shows only its
/// scheme.
pub fn redact_url(url: &str) -> String {
    let hidden = || match url.split_once("://") {
        Some((scheme, _)) => format!("{scheme}://***"),
        None if url.contains(['@', ':']) => "***".to_string(),
        None => url.to_string(),
    };
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return hidden();
    };
    let is_password = |key: &str| key.to_ascii_lowercase().contains("password");
    let pairs: Vec<(String, String)> = parsed
        .query_pairs()
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect();
    let stray_at = parsed.path().contains('@')
        || parsed.fragment().is_some_and(|f| f.contains('@'))
        || pairs
            .iter()
            .any(|(key, value)| key.contains('@') || (value.contains('@') && !is_password(key)));
    if stray_at {
        return hidden();
    }
    if (!parsed.username().is_empty() || parsed.password().is_some())
        && parsed.set_password(Some("***")).is_err()
    {
        return hidden();
    }
    if pairs.iter().any(|(key, _)| is_password(key)) {
        let redacted = pairs.into_iter().map(|(key, value)| {
            let value = if is_password(&key) {
                "***".to_string()
            } else {
                value
            };
            (key, value)
        });
        parsed.query_pairs_mut().clear().extend_pairs(redacted);
    }
    parsed.to_string()
}

fn backend_of(url: &str) -> Result<Backend> {
    if url.starts_with("sqlite:") {
        Ok(Backend::Sqlite)
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Backend::Postgres)
    } else {
        Err(StoreError::UnsupportedUrl(redact_url(url)))
    }
}

/// For SQLite: creates the file's folder and lets sqlx create the file.
fn prepare_sqlite(url: &str) -> Result<String> {
    let rest = url.trim_start_matches("sqlite:").trim_start_matches("//");
    let (path, query) = rest.split_once('?').unwrap_or((rest, ""));
    if path != ":memory:"
        && let Some(parent) = Path::new(path).parent()
        && !parent.as_os_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(|source| StoreError::DataDir {
            path: parent.display().to_string(),
            source,
        })?;
    }
    if query.split('&').any(|kv| kv.starts_with("mode=")) {
        Ok(url.to_string())
    } else if query.is_empty() {
        Ok(format!("sqlite://{path}?mode=rwc"))
    } else {
        Ok(format!("sqlite://{path}?{query}&mode=rwc"))
    }
}

/// WAL lets readers proceed during a write and makes a commit an append
/// to the log; with `synchronous = NORMAL` the log is synced at
/// checkpoints, not on every commit: a committed delivery survives graft
/// crashing or being killed, and only a power loss or kernel crash may
/// take back the last commits. The busy timeout makes writers in other
/// connections (or processes) wait for each other instead of failing.
fn sqlite_pragmas(options: AnyPoolOptions) -> AnyPoolOptions {
    options.after_connect(|conn, _| {
        Box::pin(async move {
            conn.execute(
                "PRAGMA journal_mode = WAL; PRAGMA busy_timeout = 10000; \
                 PRAGMA foreign_keys = ON; PRAGMA synchronous = NORMAL;",
            )
            .await?;
            Ok(())
        })
    })
}

impl Store {
    /// Connects and applies pending migrations.
    pub async fn open(url: &str) -> Result<Self> {
        let store = Self::connect(url).await?;
        store.migrate().await?;
        Ok(store)
    }

    /// Connects without migrating (for `/readyz` to report honestly).
    pub async fn connect(url: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let backend = backend_of(url)?;
        let url = match backend {
            Backend::Sqlite => prepare_sqlite(url)?,
            Backend::Postgres => url.to_string(),
        };
        let options = AnyConnectOptions::from_str(&url).map_err(|source| StoreError::Connect {
            url: redact_url(&url),
            source,
        })?;
        let pool_options = AnyPoolOptions::new()
            .acquire_timeout(Duration::from_secs(10))
            .max_connections(match backend {
                Backend::Sqlite => 8,
                Backend::Postgres => 16,
            });
        let connect_error = |source| StoreError::Connect {
            url: redact_url(&url),
            source,
        };
        let (pool, writer) = match backend {
            Backend::Sqlite => {
                let pool = sqlite_pragmas(pool_options)
                    .connect_with(options.clone())
                    .await
                    .map_err(connect_error)?;
                let writer = sqlite_pragmas(
                    AnyPoolOptions::new()
                        .acquire_timeout(Duration::from_secs(10))
                        .max_connections(1),
                )
                .connect_with(options)
                .await
                .map_err(connect_error)?;
                (pool, writer)
            }
            Backend::Postgres => {
                let pool = pool_options
                    .connect_with(options)
                    .await
                    .map_err(connect_error)?;
                (pool.clone(), pool)
            }
        };
        Ok(Store {
            pool,
            writer,
            backend,
            intake: std::sync::Arc::new(group_commit::IntakeQueue::new(match backend {
                Backend::Sqlite => 1,
                Backend::Postgres => 8,
            })),
        })
    }

    fn migrator(&self) -> &'static Migrator {
        match self.backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        }
    }

    pub async fn migrate(&self) -> Result<()> {
        self.migrator().run(&self.pool).await?;
        Ok(())
    }

    /// The database answers and every migration this build knows is applied.
    pub async fn ready(&self) -> Result<bool> {
        let applied: Vec<(i64,)> =
            sqlx::query_as("SELECT version FROM _sqlx_migrations WHERE success = $1")
                .bind(true)
                .fetch_all(&self.pool)
                .await
                .or_else(|e| match e {
                    // No migration table yet: reachable but not migrated.
                    sqlx::Error::Database(_) => Ok(Vec::new()),
                    other => Err(other),
                })?;
        let applied: std::collections::HashSet<i64> = applied.into_iter().map(|r| r.0).collect();
        Ok(self.migrator().iter().all(|m| applied.contains(&m.version)))
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// Starts a write transaction. On SQLite it takes the write lock up
    /// front (`BEGIN IMMEDIATE`) so two writers queue on the busy timeout
    /// instead of failing when a read lock would have to be upgraded.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(match self.backend {
            Backend::Sqlite => self.writer.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.writer.begin().await?,
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
        self.writer.close().await;
    }
}

/// Booleans are stored as 0/1 integers so both backends decode them alike.
pub(crate) fn flag(value: bool) -> i64 {
    i64::from(value)
}

/// True when an error is a unique-constraint violation (on either backend).
pub(crate) fn is_unique_violation(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Database(db) => {
            db.is_unique_violation()
                || db
                    .code()
                    .is_some_and(|c| c == "23505" || c == "2067" || c == "1555")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_redacted_before_display() {
        assert_eq!(
            redact_url("postgres://app:hunter2@db:5432/graft"),
            "postgres://app:***@db:5432/graft"
        );
        assert_eq!(redact_url("sqlite://x.db"), "sqlite://x.db");
        // Written without percent-encoding, '@' and '?' make the password
        // ambiguous: only the scheme is shown.
        assert_eq!(
            redact_url("postgres://app:p@ss?w0rd@db/graft?sslmode=require"),
            "postgres://***"
        );
        assert_eq!(
            redact_url("postgres://app@db/graft?password=hunter2&sslpassword=x&application_name=g"),
            "postgres://app:***@db/graft?password=***&sslpassword=***&application_name=g"
        );
        assert_eq!(
            redact_url("sqlite://x.db?mode=rwc"),
            "sqlite://x.db?mode=rwc"
        );
    }

    #[test]
    fn an_at_sign_in_a_password_leaks_no_part_of_it() {
        let cases = [
            // In the user info: raw (the last '@' ends it) and encoded.
            (
                "postgres://app:p@ss@db:5432/graft",
                "postgres://app:***@db:5432/graft",
            ),
            (
                "postgres://app:p%40ss@db/graft",
                "postgres://app:***@db/graft",
            ),
            // In query values.
            (
                "postgres://app@db/graft?password=hun@ter2",
                "postgres://app:***@db/graft?password=***",
            ),
            (
                "postgres://db/graft?sslmode=require&password=a@b@c&sslpassword=x@y",
                "postgres://db/graft?sslmode=require&password=***&sslpassword=***",
            ),
            (
                "postgres://db/graft?Password=p%40ss",
                "postgres://db/graft?Password=***",
            ),
            // A raw '/' or '#' in the password: the parser cannot find the
            // host, or finds a '@' where none belongs.
            ("postgres://app:12/ss@db/graft", "postgres://***"),
            ("postgres://app:p#ss@db/graft", "postgres://***"),
            ("postgres://db/graft?x=p@ss", "postgres://***"),
        ];
        for (url, shown) in cases {
            let redacted = redact_url(url);
            assert_eq!(redacted, shown, "{url}");
            for secret in ["ss", "ter2", "hun", "c&", "y"] {
                if url.contains(secret) && !shown.contains(secret) {
                    assert!(!redacted.contains(secret), "{url}: {redacted}");
                }
            }
        }
    }

    #[test]
    fn sqlite_urls_gain_create_mode() {
        let dir = std::env::temp_dir().join(format!("graft-url-{}", std::process::id()));
        let url = format!("sqlite://{}/a/b.db", dir.display());
        assert_eq!(prepare_sqlite(&url).unwrap(), format!("{url}?mode=rwc"));
        assert!(dir.join("a").is_dir());
        let with_mode = format!("sqlite://{}/a/b.db?mode=ro", dir.display());
        assert_eq!(prepare_sqlite(&with_mode).unwrap(), with_mode);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn unknown_schemes_are_refused_with_a_hint() {
        let err = backend_of("mysql://root:pw@localhost/x").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("sqlite://") && msg.contains("postgres://"),
            "{msg}"
        );
        assert!(!msg.contains("pw"), "{msg}");
    }
}
