//! The `graft` command: parses arguments and runs a subcommand. This is the
//! edge of the program, so errors here are `anyhow` with a readable message.

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;

use crate::config::{
    Cli, Command, GithubCommand, GitlabCommand, GlobalArgs, KeysCommand, TokenCommand,
};
use crate::crypto::{self, Key, Keyring};
use crate::store::{Store, now_ms, redact_url};
use crate::{keys, push, remote, server, telemetry};

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

async fn token(global: &GlobalArgs, command: TokenCommand) -> Result<()> {
    let store = open_store(global).await?;
    let result = match command {
        TokenCommand::Create { name } => {
            let name = name.trim();
            if name.is_empty() {
                bail!("--name must not be empty");
            }
            let (_, token) = store.create_token(name, now_ms()).await?;
            eprintln!("API token `{name}` created. It is shown only this once; store it now:");
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
                println!("{}\t{}\t{}", t.id, t.name, state);
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
