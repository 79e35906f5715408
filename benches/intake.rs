//! Webhook intake under load: signed GitHub deliveries against a graft on a
//! loopback port (router + store, no workers, so only the ack path is
//! measured), compared in the same run with `GET /healthz`, the HTTP stack
//! without the database.
//!
//! Run: `cargo bench --bench intake` (SQLite); with
//! `TEST_DATABASE_URL=postgres://...` it measures PostgreSQL too.
//! Knobs: `INTAKE_REQUESTS` (default 2000), `INTAKE_CONCURRENCY` (default 16).

use std::sync::Arc;
use std::time::{Duration, Instant};

use graft::app::{AppSettings, AppState};
use graft::signature::{github_signature, split_secrets};
use graft::store::Store;
use sqlx::Executor;

const SECRET: &str = "bench-secret";

fn env_number(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

async fn load(
    requests: usize,
    concurrency: usize,
    make: Arc<dyn Fn(usize) -> reqwest::RequestBuilder + Send + Sync>,
) -> Figures {
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..concurrency {
        let next = next.clone();
        let make = make.clone();
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= requests {
                    return latencies;
                }
                let t = Instant::now();
                let response = make(i).send().await.expect("request");
                assert!(
                    response.status().is_success(),
                    "status {}",
                    response.status()
                );
                latencies.push(t.elapsed());
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.expect("task"));
    }
    let elapsed = started.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Figures {
        per_second: requests as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

async fn bench(label: &str, url: &str, requests: usize, concurrency: usize) {
    let store = Store::open(url).await.expect("open store");
    let state = AppState::new(
        store,
        AppSettings {
            github_webhook_secrets: split_secrets(SECRET),
            ..AppSettings::default()
        },
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("addr"));
    let router = state.router();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, router).await;
    });
    let client = reqwest::Client::new();
    let body = Arc::new(
        std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/webhooks/github/push.json"
        ))
        .expect("fixture"),
    );
    let signature = github_signature(SECRET, &body);

    let health_client = client.clone();
    let health_url = format!("{base}/healthz");
    let baseline = load(
        requests,
        concurrency,
        Arc::new(move |_| health_client.get(&health_url)),
    )
    .await;

    let hook_url = format!("{base}/webhooks/github");
    let run = format!("{:x}", rand::random::<u32>());
    let intake = load(
        requests,
        concurrency,
        Arc::new(move |i| {
            client
                .post(&hook_url)
                .header("X-GitHub-Event", "push")
                .header("X-GitHub-Delivery", format!("{run}-{i}"))
                .header("X-Hub-Signature-256", &signature)
                .body(body.as_ref().clone())
        }),
    )
    .await;
    server.abort();
    println!(
        "intake-bench: db={label} requests={requests} concurrency={concurrency} \
         deliveries_per_s={:.0} p50_ack_ms={:.2} p99_ack_ms={:.2} \
         baseline_healthz_per_s={:.0} baseline_p99_ms={:.2}",
        intake.per_second,
        intake.p50.as_secs_f64() * 1e3,
        intake.p99.as_secs_f64() * 1e3,
        baseline.per_second,
        baseline.p99.as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes --bench; `cargo test --benches` passes nothing we use.
    let requests = env_number("INTAKE_REQUESTS", 2000);
    let concurrency = env_number("INTAKE_CONCURRENCY", 16);
    let dir = tempfile::tempdir().expect("temp dir");
    bench(
        "sqlite",
        &format!("sqlite://{}/bench.db", dir.path().display()),
        requests,
        concurrency,
    )
    .await;
    if let Ok(base) = std::env::var("TEST_DATABASE_URL") {
        sqlx::any::install_default_drivers();
        let schema = format!("bench_{:x}", rand::random::<u32>());
        let admin = sqlx::AnyPool::connect(&base).await.expect("connect");
        admin
            .execute(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .await
            .expect("schema");
        let separator = if base.contains('?') { '&' } else { '?' };
        bench(
            "postgres",
            &format!("{base}{separator}options=-csearch_path%3D{schema}"),
            requests,
            concurrency,
        )
        .await;
        admin
            .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .await
            .expect("drop");
    }
}
