//! `graft serve`: the HTTP server and the workers in one process, with a
//! graceful stop on SIGTERM / Ctrl-C.

use std::time::Duration;

use anyhow::{Context, Result};
use tokio::sync::watch;
use tracing::{info, warn};

use crate::app::{AppSettings, AppState, GitSettings, OperatorSettings};
use crate::cli::config::{GlobalArgs, ServeArgs};
use crate::cli::{keyring, open_store};
use crate::forge::GithubAppSource;
use crate::forge::github::manifest;
use crate::git::Identity;
use crate::jobs::PoolConfig;
use crate::signature::split_secrets;
use crate::slash::CommandSettings;
use crate::store::operator::StoredGithubApp;
use crate::store::redact_url;

/// What an operator still has to set, one line each. `stored_app` tells
/// whether a GitHub App registered through /setup/github is in use.
pub fn missing_settings(
    global: &GlobalArgs,
    args: &ServeArgs,
    stored_app: Option<&StoredGithubApp>,
) -> Vec<&'static str> {
    let mut missing = Vec::new();
    if global.encryption_key.is_none() {
        missing.push(
            "ENCRYPTION_KEY: not set, so graft will not store forge tokens (make one with `graft keys generate`)",
        );
    }
    let env_app = args.github_app_id.is_some() && args.github_app_private_key.is_some();
    if !env_app && stored_app.is_none() {
        missing.push(
            "GitHub App: open /setup/github to register one in a few clicks, or set \
             GITHUB_APP_ID and GITHUB_APP_PRIVATE_KEY",
        );
    }
    let stored_secret = stored_app.is_some_and(|a| a.webhook_secret_sealed.is_some());
    if args.github_webhook_secret.is_none() && !stored_secret {
        missing
            .push("GitHub webhooks: set GITHUB_WEBHOOK_SECRET (deliveries are refused until then)");
    }
    if args.gitlab_url.is_none() || args.gitlab_token.is_none() {
        missing.push("GitLab: set GITLAB_URL and GITLAB_TOKEN, or add an integration via the API");
    }
    if args.gitlab_webhook_secret.is_none() {
        missing.push("GitLab webhooks: set GITLAB_WEBHOOK_SECRET (or add an integration with one)");
    }
    if args.public_url.is_none() {
        missing.push("GRAFT_PUBLIC_URL: not set, so links and webhook URLs use the listen address");
    }
    missing
}

pub async fn serve(global: &GlobalArgs, args: ServeArgs) -> Result<()> {
    let keyring = keyring(global)?;
    let store = open_store(global).await?;
    info!(database = %redact_url(&global.database_url), "database ready, migrations applied");
    let secrets = |value: &Option<secrecy::SecretString>| {
        value
            .as_ref()
            .map(|s| split_secrets(secrecy::ExposeSecret::expose_secret(s)))
            .unwrap_or_default()
    };
    let public_url = args
        .public_url
        .as_deref()
        .filter(|u| !u.trim().is_empty())
        .map(manifest::normalize_public_url)
        .transpose()?;
    let mut forge_settings = args.forge_settings()?;
    let stored_app = store.github_app().await?;
    if forge_settings.github.is_none()
        && let Some(stored) = &stored_app
    {
        match crate::forge::forges::stored_github_config(stored, keyring.as_ref()) {
            Ok(config) => {
                info!(app_id = %stored.app_id, "using the GitHub App registered through /setup/github");
                forge_settings.github = Some(config);
                forge_settings.github_source = GithubAppSource::Stored;
            }
            Err(e) => warn!(error = %e, "the stored GitHub App cannot be used"),
        }
    }
    let state = AppState::with_forges(
        store.clone(),
        AppSettings {
            keyring,
            github_webhook_secrets: secrets(&args.github_webhook_secret),
            gitlab_webhook_secrets: secrets(&args.gitlab_webhook_secret),
            git: GitSettings {
                work_dir: args
                    .work_dir
                    .clone()
                    .unwrap_or_else(|| GitSettings::default().work_dir),
                identity: Identity {
                    name: args.commit_name.clone(),
                    email: args.commit_email.clone(),
                },
                check: args
                    .check_command
                    .clone()
                    .filter(|c| !c.trim().is_empty())
                    .map(|command| crate::git::check::Check {
                        command,
                        timeout: Duration::from_secs(args.check_timeout),
                        sandbox: args.check_sandbox,
                        network: args.check_network,
                    }),
            },
            commands: CommandSettings::new(&args.command_prefix).map_err(anyhow::Error::msg)?,
            operator: OperatorSettings {
                public_url,
                github_api_url: args.github_api_url.clone(),
            },
            allow_http_gitlab: args.allow_http_gitlab,
            http: crate::app::HttpSettings::default(),
        },
        forge_settings,
    )?;
    let address = format!("{}:{}", args.bind, args.port);
    let listener = tokio::net::TcpListener::bind(&address)
        .await
        .with_context(|| format!("cannot listen on {address} (set PORT or GRAFT_BIND)"))?;
    let local = listener.local_addr()?;
    println!("graft listening on http://{local}");
    for line in missing_settings(global, &args, stored_app.as_ref()) {
        println!("  not configured: {line}");
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let stop_rx_for_poll = stop_rx.clone();
    // Names this replica in job leases and periodic-task runs alike.
    let replica = crate::jobs::default_worker_prefix();
    let mut workers = state.spawn_workers(
        PoolConfig {
            workers: args.workers,
            lease: Duration::from_secs(args.job_lease),
            worker_prefix: replica.clone(),
            ..PoolConfig::default()
        },
        stop_rx,
    );
    let retention = tokio::spawn(crate::retention::run(
        store.clone(),
        state.context.mirrors.clone(),
        args.retention_days,
        crate::retention::EVERY,
        replica.clone(),
        stop_rx_for_poll.clone(),
    ));
    let poller = (args.poll_interval > 0).then(|| {
        tokio::spawn(crate::sync::poll::run_poller(
            state.context.clone(),
            Duration::from_secs(args.poll_interval),
            replica.clone(),
            stop_rx_for_poll.clone(),
        ))
    });
    let recovery = (args.recovery_interval > 0).then(|| {
        tokio::spawn(crate::recovery::run(
            state.context.clone(),
            Duration::from_secs(args.recovery_interval),
            replica.clone(),
            stop_rx_for_poll.clone(),
        ))
    });
    crate::http::serve::serve(
        listener,
        state.router(),
        state.http.timeouts.header_timeout,
        async move {
            stop_signal().await;
            info!("stopping: no new requests or jobs; letting running jobs finish");
            let _ = stop_tx.send(true);
        },
    )
    .await;
    let drained = tokio::time::timeout(Duration::from_secs(60), async {
        while workers.join_next().await.is_some() {}
    })
    .await;
    if let Some(poller) = poller {
        poller.abort();
    }
    if let Some(recovery) = recovery {
        recovery.abort();
    }
    retention.abort();
    if drained.is_err() {
        warn!("workers did not stop in time; their leases will expire and the jobs run again");
    }
    store.close().await;
    info!("stopped");
    Ok(())
}

async fn stop_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate => {}
    }
}
