//! Command line and environment (12-factor): every setting is a flag and an
//! environment variable. Secrets are `SecretString`s and never printed.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::SecretString;

use crate::forge::error::short;
use crate::forge::github::GithubAppConfig;
use crate::forge::{ForgeError, ForgeSettings, GitlabConfig};
use crate::store::tokens::TokenScope;

pub const DEFAULT_DATABASE_URL: &str = "sqlite://graft-data/graft.db";

const ABOUT: &str = "Keeps generated infrastructure code under Git review.";

const LONG_ABOUT: &str = "\
graft keeps generated infrastructure code (Terraform/OpenTofu, Ansible, Kubernetes
manifests) under Git review. A generator hands graft files through its API; graft
overlays them onto the target repository under a base path, validates, commits,
pushes a branch, opens a pull request (GitHub) or merge request (GitLab), keeps a
status comment on it current and answers reviewers' /graft commands.

Start here:
  graft serve                      run the server on ./graft-data/graft.db (SQLite)
  graft keys generate              make an ENCRYPTION_KEY (needed to store forge tokens)
  graft token create --name ci     make an API token for a generator
  graft github manifest            register the GitHub App (or open /setup/github)
  graft gitlab connect --url URL --token-file F
                                   connect a GitLab instance
  graft push --project ID DIR      upload a directory of generated files

Every option is also an environment variable (shown as [env: NAME=]).";

#[derive(Parser, Debug)]
#[command(name = "graft", version, about = ABOUT, long_about = LONG_ABOUT, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

fn parse_secret(text: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(text.to_string()))
}

fn parse_scope(text: &str) -> Result<TokenScope, String> {
    TokenScope::parse(text)
        .ok_or_else(|| format!("`{text}` is not a token scope; use `admin` or `generator`"))
}

/// Job leases in seconds: renewals come every third of one, and each is a
/// database round trip that must land in time; a day is already longer
/// than anyone would wait for a dead replica's job.
pub const JOB_LEASE_SECS: std::ops::RangeInclusive<u64> = 5..=86_400;

fn parse_job_lease(text: &str) -> Result<u64, String> {
    match text.trim().parse::<u64>() {
        Ok(secs) if JOB_LEASE_SECS.contains(&secs) => Ok(secs),
        _ => Err(format!(
            "GRAFT_JOB_LEASE is whole seconds from {} to {} (default 60): how long a job \
             of a dead replica waits before another replica takes it over",
            JOB_LEASE_SECS.start(),
            JOB_LEASE_SECS.end()
        )),
    }
}

#[derive(Args, Debug, Clone)]
pub struct GlobalArgs {
    /// Database: `sqlite://PATH` (embedded, one machine) or
    /// `postgres://USER:PASSWORD@HOST:PORT/DB` (several replicas).
    #[arg(long, env = "DATABASE_URL", default_value = DEFAULT_DATABASE_URL, global = true, hide_env_values = true)]
    pub database_url: String,

    /// Key that encrypts stored forge tokens and keys: 32 random bytes as
    /// base64 or hex. Make one with `graft keys generate`. Without it graft
    /// runs but refuses to store secrets.
    #[arg(long, env = "ENCRYPTION_KEY", global = true, hide_env_values = true, value_parser = parse_secret)]
    pub encryption_key: Option<SecretString>,

    /// The previous ENCRYPTION_KEY during a rotation: values sealed with it
    /// stay readable, and `graft keys rotate` re-encrypts them.
    #[arg(long, env = "ENCRYPTION_KEY_OLD", global = true, hide_env_values = true, value_parser = parse_secret)]
    pub encryption_key_old: Option<SecretString>,

    /// Log format: `text` for people, `json` for log collectors.
    #[arg(long, env = "GRAFT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run the HTTP server and the background workers in one process.
    ///
    /// With no configuration at all it starts on SQLite under ./graft-data/,
    /// prints where it listens and what is not configured yet.
    Serve(Box<ServeArgs>),
    /// Apply database migrations to DATABASE_URL and exit (serve does this too).
    Migrate,
    /// Manage ENCRYPTION_KEY.
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Manage API tokens for generators and admins.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Register graft as a GitHub App.
    #[command(subcommand)]
    Github(GithubCommand),
    /// Connect graft to a GitLab instance.
    #[command(subcommand)]
    Gitlab(GitlabCommand),
    /// Upload a directory of generated files to a project.
    ///
    /// Walks DIR (skipping what `.graftignore` and `.gitignore` files
    /// exclude, and `.git`), sends every file in one request to a running
    /// graft (PUT /api/v1/projects/ID/files) and prints which paths changed.
    /// Paths are relative to DIR and land under the project's base path.
    /// Exits non-zero when any file is rejected, naming the file and why;
    /// then nothing is uploaded.
    ///
    /// Example: `GRAFT_URL=https://graft.example.com GRAFT_TOKEN=...
    /// graft push --project 3 --delete-missing ./out`
    Push(PushArgs),
    /// Take files the repository already has into management.
    ///
    /// Reads the head of the project's target branch and makes the files
    /// under its base path managed and `synced` (labelled `discovery`),
    /// with no commit: a generator that later sends the same content
    /// changes nothing. Without PATHs, every file under the base path;
    /// PATHs are relative to the base path. Prints each adopted and
    /// skipped file (already managed, not in the repository, over 1 MiB).
    /// Needs an admin token.
    ///
    /// Example: `graft adopt --project 3 main.tf modules/vpc/main.tf`
    Adopt(AdoptArgs),
    /// Write a project's managed files into a directory.
    ///
    /// The inverse of `graft push`: downloads the project's export
    /// (GET /api/v1/projects/ID/export) and writes each file under DIR,
    /// creating DIR if needed; a file an earlier pull wrote that the
    /// project no longer has is removed. A file graft would replace or
    /// remove that differs from what `graft pull` wrote there (and from
    /// the server's version) is a local change: the pull refuses, naming
    /// them, and writes nothing, unless --force. What graft wrote
    /// is remembered in DIR/.graft-pull.json (which `graft push` skips),
    /// also when a pull stops part-way. Files graft never wrote are left
    /// alone; symlinks in DIR are never followed.
    ///
    /// Example: `graft pull --project 3 ./infra`
    Pull(PullArgs),
}

/// How CLI commands reach a running graft.
#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// Base URL of the running graft.
    #[arg(long, env = "GRAFT_URL", default_value = "http://localhost:8080")]
    pub graft_url: String,

    /// API token (make one with `graft token create --name NAME` on the server).
    #[arg(long, env = "GRAFT_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub graft_token: Option<SecretString>,
}

#[derive(Args, Debug, Clone)]
pub struct PushArgs {
    /// Project id (see the dashboard or GET /api/v1/projects).
    #[arg(long)]
    pub project: i64,

    /// Directory of generated files.
    pub dir: PathBuf,

    /// Show which paths would be added, modified (and with
    /// --delete-missing deleted), compared with graft's current files;
    /// upload nothing.
    #[arg(long)]
    pub dry_run: bool,

    /// Remove managed files of the project that are not in DIR.
    #[arg(long)]
    pub delete_missing: bool,

    /// Name of the generator, shown in graft's audit log and PR comments.
    #[arg(long, default_value = "graft push")]
    pub source: String,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Args, Debug, Clone)]
pub struct AdoptArgs {
    /// Project id (see the dashboard or GET /api/v1/projects).
    #[arg(long)]
    pub project: i64,

    /// Files to adopt, relative to the project's base path (default:
    /// every file under it).
    pub paths: Vec<String>,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Args, Debug, Clone)]
pub struct PullArgs {
    /// Project id (see the dashboard or GET /api/v1/projects).
    #[arg(long)]
    pub project: i64,

    /// Directory to write the files into (created if missing).
    pub dir: PathBuf,

    /// Overwrite files changed locally since the last pull.
    #[arg(long)]
    pub force: bool,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Subcommand, Debug)]
pub enum GithubCommand {
    /// Print the GitHub App manifest for this graft and where to register it.
    ///
    /// The easy way is the one-click page /setup/github of a running graft;
    /// this prints the same manifest for registering by hand or reviewing.
    Manifest(ManifestArgs),
}

#[derive(Args, Debug, Clone)]
pub struct ManifestArgs {
    /// Public base URL of graft (GitHub sends webhooks and the browser there).
    #[arg(long, env = "GRAFT_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// GitHub REST API; for GitHub Enterprise Server https://HOST/api/v3.
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,

    /// App name (unique across GitHub; at most 34 characters).
    #[arg(long)]
    pub name: Option<String>,

    /// Organization that will own the app (default: your personal account).
    #[arg(long)]
    pub org: Option<String>,
}

#[derive(Subcommand, Debug)]
pub enum GitlabCommand {
    /// Store a GitLab integration in a running graft and print the webhook
    /// to configure.
    ///
    /// The token is checked against GitLab first (it must work and have the
    /// `api` scope). A webhook secret is generated unless given; graft
    /// prints the webhook URL and secret to enter in each GitLab project
    /// (Settings → Webhooks), or creates the webhooks itself with
    /// --create-hook (the token's user needs the Maintainer role there).
    ///
    /// Example: `graft gitlab connect --url https://gitlab.example.com
    /// --token-file ~/gitlab-token --create-hook infra/live`
    Connect(GitlabConnectArgs),
}

#[derive(Args, Debug, Clone)]
pub struct GitlabConnectArgs {
    /// GitLab base URL, e.g. https://gitlab.com.
    #[arg(long)]
    pub url: String,

    /// File holding the access token (scope `api`; a project or group
    /// access token is best). A file keeps the token out of shell history.
    #[arg(long)]
    pub token_file: PathBuf,

    /// File holding the webhook secret (default: a fresh random one).
    #[arg(long)]
    pub webhook_secret_file: Option<PathBuf>,

    /// A name for the integration (default: the URL).
    #[arg(long)]
    pub name: Option<String>,

    /// Create (or update) the webhook of this GitLab project (`group/name`);
    /// repeat for several projects.
    #[arg(long = "create-hook", value_name = "PROJECT")]
    pub create_hooks: Vec<String>,

    #[command(flatten)]
    pub remote: RemoteArgs,
}

#[derive(Subcommand, Debug)]
pub enum KeysCommand {
    /// Print a fresh ENCRYPTION_KEY (32 random bytes, base64).
    Generate,
    /// Re-encrypt every stored secret from ENCRYPTION_KEY_OLD to ENCRYPTION_KEY.
    ///
    /// Runs in one transaction: if any secret does not open with the old key,
    /// nothing changes. Secrets already under the new key are left as they are,
    /// so running it twice is harmless.
    Rotate,
}

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Create an API token and print it once (only its hash is stored).
    ///
    /// An `admin` token may do everything; a `generator` token may only
    /// read its projects, read and write their files and queue their syncs.
    ///
    /// Example: `graft token create --name tf-gen --scope generator
    /// --project 3 --project 4`
    Create {
        /// A name that says who uses the token, e.g. `terraform-generator`.
        #[arg(long)]
        name: String,
        /// `admin` (everything) or `generator` (only the files of the
        /// projects given with --project).
        #[arg(long, default_value = "admin", value_parser = parse_scope)]
        scope: TokenScope,
        /// A project a generator token may write (repeat for several).
        #[arg(long = "project", value_name = "ID")]
        projects: Vec<i64>,
    },
    /// List tokens (names and dates, never the tokens).
    List,
    /// Revoke the active token with this name.
    Revoke {
        #[arg(long)]
        name: String,
    },
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// TCP port to listen on.
    #[arg(long, env = "PORT", default_value_t = 8080)]
    pub port: u16,

    /// Address to bind.
    #[arg(long, env = "GRAFT_BIND", default_value = "0.0.0.0")]
    pub bind: String,

    /// Public base URL of this graft (for webhook URLs and links), e.g.
    /// https://graft.example.com.
    #[arg(long, env = "GRAFT_PUBLIC_URL")]
    pub public_url: Option<String>,

    /// GitHub App id (from the app's settings page).
    #[arg(long, env = "GITHUB_APP_ID")]
    pub github_app_id: Option<String>,

    /// GitHub App private key: the PEM text, or a path to the .pem file.
    #[arg(long, env = "GITHUB_APP_PRIVATE_KEY", hide_env_values = true, value_parser = parse_secret)]
    pub github_app_private_key: Option<SecretString>,

    /// GitHub webhook secret; several comma-separated values are all
    /// accepted, so a secret can be rotated without dropping deliveries.
    #[arg(long, env = "GITHUB_WEBHOOK_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub github_webhook_secret: Option<SecretString>,

    /// GitHub REST API base URL; for GitHub Enterprise Server use
    /// https://HOST/api/v3.
    #[arg(long, env = "GITHUB_API_URL", default_value = "https://api.github.com")]
    pub github_api_url: String,

    /// Base URL of the default GitLab integration, e.g. https://gitlab.com.
    #[arg(long, env = "GITLAB_URL")]
    pub gitlab_url: Option<String>,

    /// Access token of the default GitLab integration (scope `api`).
    #[arg(long, env = "GITLAB_TOKEN", hide_env_values = true, value_parser = parse_secret)]
    pub gitlab_token: Option<SecretString>,

    /// Let GitLab integrations (GITLAB_URL and those added through the API)
    /// use plain http:// URLs. Their token then crosses the network in
    /// clear: only for a GitLab on a trusted private network, or tests.
    #[arg(long, env = "GRAFT_ALLOW_HTTP_GITLAB")]
    pub allow_http_gitlab: bool,

    /// Secret GitLab sends in X-Gitlab-Token; comma-separated for rotation.
    #[arg(long, env = "GITLAB_WEBHOOK_SECRET", hide_env_values = true, value_parser = parse_secret)]
    pub gitlab_webhook_secret: Option<SecretString>,

    /// Prefix of slash commands in PR/MR comments.
    #[arg(long, env = "GRAFT_COMMAND_PREFIX", default_value = "/graft")]
    pub command_prefix: String,

    /// Where repository mirrors and temporary worktrees live
    /// (default: graft-data/work).
    #[arg(long, env = "GRAFT_WORK_DIR")]
    pub work_dir: Option<PathBuf>,

    /// Optional command run in a checkout of the overlaid tree to validate it
    /// (e.g. `tofu validate`); admin configuration only.
    #[arg(long, env = "GRAFT_CHECK_COMMAND", hide_env_values = true)]
    pub check_command: Option<String>,

    /// Author and committer name of graft's commits.
    #[arg(long, env = "GRAFT_COMMIT_NAME", default_value = "graft[bot]")]
    pub commit_name: String,

    /// Author and committer email of graft's commits. For a GitHub App use
    /// `<app-id>+<app-slug>[bot]@users.noreply.github.com` so GitHub shows
    /// the app as the author.
    #[arg(
        long,
        env = "GRAFT_COMMIT_EMAIL",
        default_value = "graft[bot]@users.noreply.github.com"
    )]
    pub commit_email: String,

    /// Seconds the check command may run before it is stopped.
    #[arg(long, env = "GRAFT_CHECK_TIMEOUT", default_value_t = 300)]
    pub check_timeout: u64,

    /// How the check command is confined: `required` runs it in a kernel
    /// sandbox (Landlock, Linux 6.2+: it reads only its worktree and the
    /// system's toolchain folders, writes only its temporary folder) and
    /// refuses to run it where the host cannot; `off` runs it unconfined, as
    /// graft's user, for hosts without Landlock.
    #[arg(long, env = "GRAFT_CHECK_SANDBOX", default_value_t = crate::git::sandbox::SandboxMode::Required)]
    pub check_sandbox: crate::git::sandbox::SandboxMode,

    /// What the sandboxed check command may reach over the network: `https`
    /// (TCP connections to ports 443 and 80 only, no listening; Landlock,
    /// Linux 6.12+), `none` (a network namespace of its own: no network at
    /// all; recommended when the command downloads nothing) or `open`
    /// (whatever graft's host can reach, including its database and graft's
    /// own port). Where the host cannot enforce it the command does not run.
    /// Ports 80 and 443 still reach cloud metadata services.
    #[arg(long, env = "GRAFT_CHECK_NETWORK", default_value_t = crate::git::sandbox::NetworkMode::Https)]
    pub check_network: crate::git::sandbox::NetworkMode,

    /// Seconds between safety-net reconciles of every project (±20% jitter),
    /// for webhooks that never arrived; 0 turns polling off.
    #[arg(long, env = "GRAFT_POLL_INTERVAL", default_value_t = 300)]
    pub poll_interval: u64,

    /// Seconds between passes that recover webhooks which never reached
    /// graft (GitHub redeliveries, disabled GitLab hooks, missed GitLab
    /// notes); one pass also runs at start-up. 0 turns recovery off.
    #[arg(long, env = "GRAFT_RECOVERY_INTERVAL", default_value_t = 600)]
    pub recovery_interval: u64,

    /// Number of background workers in this process.
    #[arg(long, env = "GRAFT_WORKERS", default_value_t = 4)]
    pub workers: usize,

    /// Seconds a running job is leased to its replica (5 to 86400). The
    /// replica renews the lease every third of it; when a replica dies
    /// (killed, its machine lost), its jobs wait this long before another
    /// replica takes them over. Shorter recovers sooner; longer rides out
    /// longer database or network stalls before a job is stopped and
    /// handed over.
    #[arg(
        long,
        env = "GRAFT_JOB_LEASE",
        default_value_t = 60,
        value_parser = parse_job_lease
    )]
    pub job_lease: u64,

    /// Days to keep finished jobs and handled webhook deliveries (whose
    /// payloads can be large), and repository mirrors no sync has fetched;
    /// 0 keeps them for ever. The audit log is always kept.
    #[arg(long, env = "GRAFT_RETENTION_DAYS", default_value_t = 30)]
    pub retention_days: u64,
}

impl ServeArgs {
    /// The forge clients' settings from these flags; errors name the
    /// setting and the fix.
    pub fn forge_settings(&self) -> Result<ForgeSettings, ForgeError> {
        let args = self;
        let github = match (&args.github_app_id, &args.github_app_private_key) {
            (Some(id), Some(key)) => Some(GithubAppConfig::new(id, key, &args.github_api_url)?),
            (Some(_), None) => {
                return Err(ForgeError::Config(
                    "GITHUB_APP_ID is set but GITHUB_APP_PRIVATE_KEY is not; set it to the \
                     app's .pem contents or its path"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(ForgeError::Config(
                    "GITHUB_APP_PRIVATE_KEY is set but GITHUB_APP_ID is not; set it to the \
                     numeric App ID from the app's settings page"
                        .into(),
                ));
            }
            (None, None) => None,
        };
        if let Some(url) = &args.gitlab_url
            && crate::forge::gitlab::client::plain_http_refused(url, args.allow_http_gitlab)
        {
            return Err(ForgeError::Config(format!(
                "GITLAB_URL `{}` is plain http, so the GitLab token would cross the network \
                 in clear; use its https:// URL, or set GRAFT_ALLOW_HTTP_GITLAB=true for a \
                 GitLab on a trusted private network",
                short(url)
            )));
        }
        let gitlab = match (&args.gitlab_url, &args.gitlab_token) {
            (Some(url), Some(token)) => Some(GitlabConfig {
                base_url: url.clone(),
                token: token.clone(),
            }),
            (Some(_), None) => {
                return Err(ForgeError::Config(
                    "GITLAB_URL is set but GITLAB_TOKEN is not; create an access token with the \
                     `api` scope and set GITLAB_TOKEN"
                        .into(),
                ));
            }
            (None, Some(_)) => {
                return Err(ForgeError::Config(
                    "GITLAB_TOKEN is set but GITLAB_URL is not; set GITLAB_URL, e.g. https://gitlab.com"
                        .into(),
                ));
            }
            (None, None) => None,
        };
        Ok(ForgeSettings {
            github,
            gitlab,
            ..ForgeSettings::default()
        })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_command_line_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
