//! The `graft` command: parses arguments and runs a subcommand. This is the
//! edge of the program, so errors here are `anyhow` with a readable message.
//! Its settings ([`config`]), the server's wiring ([`server`]) and the
//! other subcommands live beside it; nothing else in graft imports them.

pub mod adopt;
pub mod config;
pub mod keys;
pub mod pull;
pub mod push;
pub mod remote;
pub mod server;
pub mod telemetry;

use anyhow::{Context, Result, anyhow, bail};
use clap::{CommandFactory, Parser};

use crate::crypto::{self, Key, Keyring};
use crate::ids::ProjectId;
use crate::store::tokens::{TokenAccess, TokenScope};
use crate::store::{Store, StoreError, now_ms, redact_url};
use config::{Cli, Command, GithubCommand, GitlabCommand, GlobalArgs, KeysCommand, TokenCommand};

pub async fn main() -> Result<()> {
    let cli = Cli::parse();
    telemetry::init(cli.global.log_format);
    match cli.command {
        Command::Serve(args) => server::serve(&cli.global, *args).await,
        Command::Migrate => {
            let store = open_store(&cli.global).await?;
            println!(
                "migrations applied to {}",
                redact_url(&cli.global.database_url)
            );
            store.close().await;
            Ok(())
        }
        Command::Keys(KeysCommand::Generate) => {
            println!("{}", crypto::generate_key_text()?);
            Ok(())
        }
        Command::Keys(KeysCommand::Rotate) => rotate_keys(&cli.global).await,
        Command::Token(command) => token(&cli.global, command).await,
        Command::Github(GithubCommand::Manifest(args)) => remote::github_manifest(&args),
        Command::Gitlab(GitlabCommand::Connect(args)) => remote::gitlab_connect(&args).await,
        Command::Push(args) => push::push(&args).await,
        Command::Adopt(args) => adopt::adopt(&args).await,
        Command::Pull(args) => pull::pull(&args).await,
    }
}

pub async fn open_store(global: &GlobalArgs) -> Result<Store> {
    Store::open(&global.database_url)
        .await
        .with_context(|| "graft cannot start without its database (set DATABASE_URL)".to_string())
}

/// The keyring from ENCRYPTION_KEY (and ENCRYPTION_KEY_OLD), if configured.
pub fn keyring(global: &GlobalArgs) -> Result<Option<Keyring>> {
    let Some(current) = &global.encryption_key else {
        return Ok(None);
    };
    let current = Key::parse(current).context("ENCRYPTION_KEY is not usable")?;
    let previous = global
        .encryption_key_old
        .as_ref()
        .map(Key::parse)
        .transpose()
        .context("ENCRYPTION_KEY_OLD is not usable")?;
    Ok(Some(Keyring { current, previous }))
}

async fn rotate_keys(global: &GlobalArgs) -> Result<()> {
    let ring = keyring(global)?.ok_or_else(|| {
        anyhow!("set ENCRYPTION_KEY to the new key (make one with `graft keys generate`)")
    })?;
    let old = ring.previous.ok_or_else(|| {
        anyhow!("set ENCRYPTION_KEY_OLD to the key the secrets are sealed with now")
    })?;
    let store = open_store(global).await?;
    let report = keys::rotate(&store, &old, &ring.current, now_ms()).await;
    store.close().await;
    let report = report?;
    println!(
        "re-encrypted {} secret(s); {} were already under the new key. \
         ENCRYPTION_KEY_OLD can be removed now.",
        report.resealed, report.already_current
    );
    Ok(())
}

/// A scope and projects that do not go together are a usage error (exit
/// code 2, with the usage), caught before the database is opened.
fn token_access(scope: TokenScope, projects: &[i64]) -> TokenAccess {
    let projects: Vec<ProjectId> = projects.iter().copied().map(ProjectId).collect();
    TokenAccess::new(scope, &projects).unwrap_or_else(|e| {
        Cli::command()
            .error(clap::error::ErrorKind::ArgumentConflict, e)
            .exit()
    })
}

/// `admin`, or `generator` with its projects, as `token list` shows it.
fn describe(access: &TokenAccess) -> String {
    if access.is_admin() {
        return access.scope().to_string();
    }
    let projects: Vec<String> = access.projects().iter().map(ProjectId::to_string).collect();
    format!("{} (projects {})", access.scope(), projects.join(", "))
}

async fn token(global: &GlobalArgs, command: TokenCommand) -> Result<()> {
    let access = match &command {
        TokenCommand::Create {
            scope, projects, ..
        } => Some(token_access(*scope, projects)),
        _ => None,
    };
    let store = open_store(global).await?;
    let result = match command {
        TokenCommand::Create { name, .. } => {
            let name = name.trim();
            if name.is_empty() {
                bail!("--name must not be empty");
            }
            let access = access.unwrap_or_else(TokenAccess::admin);
            let (_, token) = store
                .create_scoped_token(name, &access, now_ms())
                .await
                .map_err(|e| match e {
                    StoreError::NotFound(what) => anyhow!(
                        "{what} does not exist; see the project ids with GET /api/v1/projects \
                         or on the dashboard"
                    ),
                    other => other.into(),
                })?;
            eprintln!(
                "API token `{name}` ({}) created. It is shown only this once; store it now:",
                describe(&access)
            );
            println!("{token}");
            Ok(())
        }
        TokenCommand::List => {
            for t in store.list_tokens().await? {
                let state = if t.revoked_at.is_some() {
                    "revoked"
                } else {
                    "active"
                };
                println!("{}\t{}\t{}\t{}", t.id, t.name, state, describe(&t.access));
            }
            Ok(())
        }
        TokenCommand::Revoke { name } => {
            if store.revoke_token(&name, now_ms()).await? {
                println!("token `{name}` revoked");
                Ok(())
            } else {
                Err(anyhow!(
                    "no active token named `{name}` (see `graft token list`)"
                ))
            }
        }
    };
    store.close().await;
    result
}
