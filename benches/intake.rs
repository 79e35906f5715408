//! Webhook intake under load, end to end: the real `graft serve` binary
//! (workers on, as in production) on a loopback port, driven over real
//! sockets by `INTAKE_CONNECTIONS` keep-alive connections for
//! `INTAKE_SECONDS`, first with `GET /healthz` (the HTTP stack without the
//! database), then with signed GitHub `push` deliveries, each with its own
//! `X-GitHub-Delivery`. Afterwards it waits for the queue to drain and
//! checks that every delivery answered 202 is stored exactly once and its
//! job ran exactly once; the run fails otherwise.
//!
//! Run: `cargo bench --bench intake` (SQLite, its file on /dev/shm when
//! there is one); with `TEST_DATABASE_URL=postgres://...` PostgreSQL too.
//! Knobs: `INTAKE_SECONDS` (default 10), `INTAKE_CONNECTIONS` (default 32),
//! `INTAKE_WORKERS` (graft's GRAFT_WORKERS, default 4).

use std::collections::HashSet;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use graft::signature::github_signature;
use sqlx::{Executor, Row};

const SECRET: &str = "bench-secret";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A running `graft serve`; killed when dropped.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_server(database_url: &str, work_dir: &std::path::Path, workers: u64) -> Server {
    let mut child = Command::new(env!("CARGO_BIN_EXE_graft"))
        .arg("serve")
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", database_url)
        .env("PORT", "0")
        .env("GRAFT_BIND", "127.0.0.1")
        .env("GITHUB_WEBHOOK_SECRET", SECRET)
        .env("GRAFT_WORKERS", workers.to_string())
        .env("GRAFT_WORK_DIR", work_dir)
        .env(
            "RUST_LOG",
            std::env::var("INTAKE_LOG").unwrap_or("info".into()),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start graft serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let base = loop {
        let line = lines
            .next()
            .expect("graft serve exited before listening")
            .expect("read stdout");
        if let Some(url) = line.strip_prefix("graft listening on ") {
            break url.trim().to_string();
        }
    };
    // Keep draining stdout so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Server { child, base }
}

struct Figures {
    answered: usize,
    per_second: f64,
    p50: Duration,
    p99: Duration,
    errors: usize,
}

/// Drives `connections` clients (one keep-alive connection each) for
/// `seconds`; `send(client, n)` makes the n-th request of the run and says
/// which delivery id it answered 202 for, if any.
async fn load<F, Fut>(connections: u64, seconds: u64, send: F) -> (Figures, Vec<String>)
where
    F: Fn(reqwest::Client, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Option<String>, String>> + Send,
{
    let send = Arc::new(send);
    let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let send = send.clone();
        let next = next.clone();
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()
            .expect("client");
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut ids = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let n = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let t = Instant::now();
                match send(client.clone(), n).await {
                    Ok(id) => {
                        latencies.push(t.elapsed());
                        ids.extend(id);
                    }
                    Err(e) => {
                        if errors == 0 {
                            eprintln!("intake-bench: request failed: {e}");
                        }
                        errors += 1;
                    }
                }
            }
            (latencies, ids, errors)
        }));
    }
    let mut latencies = Vec::new();
    let mut ids = Vec::new();
    let mut errors = 0;
    for task in tasks {
        let (l, i, e) = task.await.expect("load task");
        latencies.extend(l);
        ids.extend(i);
        errors += e;
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let at = |q: f64| {
        latencies
            .get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    let figures = Figures {
        answered: latencies.len(),
        per_second: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
        errors,
    };
    (figures, ids)
}

/// Waits until no webhook job is queued or running, then checks that the
/// answered ids are exactly the stored ones, each processed by one job.
async fn verify(database_url: &str, answered: &[String]) -> Duration {
    sqlx::any::install_default_drivers();
    let db = sqlx::AnyPool::connect(database_url)
        .await
        .expect("connect for checks");
    let started = Instant::now();
    let deadline = started + Duration::from_secs(300);
    loop {
        let row = db
            .fetch_one(
                "SELECT COUNT(*) FROM jobs WHERE kind = 'webhook' AND state IN ('queued', 'running')",
            )
            .await
            .expect("count pending jobs");
        if row.get::<i64, _>(0) == 0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the queue did not drain within 300 s"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let drained = started.elapsed();
    let answered: HashSet<&str> = answered.iter().map(String::as_str).collect();
    let stored = db
        .fetch_all("SELECT delivery_id, status FROM webhook_deliveries")
        .await
        .expect("read deliveries");
    let mut seen = HashSet::new();
    for row in &stored {
        let id: String = row.get(0);
        let status: String = row.get(1);
        assert!(
            answered.contains(id.as_str()),
            "stored but never answered: {id}"
        );
        assert_eq!(status, "processed", "delivery {id} ended {status}");
        assert!(seen.insert(id.clone()), "stored twice: {id}");
    }
    assert_eq!(seen.len(), answered.len(), "answered but not stored");
    let jobs = db
        .fetch_one(
            "SELECT COUNT(*), COUNT(DISTINCT payload), \
             SUM(CASE WHEN state = 'done' AND attempts = 1 THEN 1 ELSE 0 END) \
             FROM jobs WHERE kind = 'webhook'",
        )
        .await
        .expect("count jobs");
    let (count, distinct, done_once): (i64, i64, i64) = (jobs.get(0), jobs.get(1), jobs.get(2));
    let expected = answered.len() as i64;
    assert_eq!(
        (count, distinct, done_once),
        (expected, expected, expected),
        "every delivery has one job, run once"
    );
    db.close().await;
    drained
}

async fn bench(label: &str, database_url: &str, connections: u64, seconds: u64, workers: u64) {
    let work = tempfile::tempdir().expect("work dir");
    let server = start_server(database_url, work.path(), workers);
    let base = server.base.clone();

    let health_url = format!("{base}/healthz");
    let (health, _) = load(connections, seconds, move |client, _| {
        let url = health_url.clone();
        async move {
            let response = client.get(&url).send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            response.bytes().await.map_err(|e| e.to_string())?;
            if status.is_success() {
                Ok(None)
            } else {
                Err(format!("healthz answered {status}"))
            }
        }
    })
    .await;

    let body = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/webhooks/github/push.json"
    ))
    .expect("fixture");
    let signature = github_signature(SECRET, &body);
    // One shared buffer for every request's body (a clone is a refcount).
    let body = axum::body::Bytes::from(body);
    let hook_url = format!("{base}/webhooks/github");
    let run = format!("{:08x}", rand::random::<u32>());
    let (intake, ids) = load(connections, seconds, move |client, n| {
        let id = format!("{run}-{n}");
        let request = client
            .post(&hook_url)
            .header("X-GitHub-Event", "push")
            .header("X-GitHub-Delivery", &id)
            .header("X-Hub-Signature-256", &signature)
            .header("Content-Type", "application/json")
            .body(body.clone());
        async move {
            let response = request.send().await.map_err(|e| e.to_string())?;
            let status = response.status();
            let text = response.text().await.map_err(|e| e.to_string())?;
            if status.as_u16() == 202 && text.contains("\"queued\"") {
                Ok(Some(id))
            } else {
                Err(format!("delivery {id} answered {status}: {text}"))
            }
        }
    })
    .await;
    let drained = verify(database_url, &ids).await;
    drop(server);
    println!(
        "intake-bench: backend={label} deliveries_per_s={:.0} p50_ms={:.2} p99_ms={:.2} \
         healthz_per_s={:.0} connections={connections} seconds={seconds} workers={workers} \
         answered={} errors={} drained_after_s={:.1} healthz_p99_ms={:.2}",
        intake.per_second,
        intake.p50.as_secs_f64() * 1e3,
        intake.p99.as_secs_f64() * 1e3,
        health.per_second,
        intake.answered,
        intake.errors + health.errors,
        drained.as_secs_f64(),
        health.p99.as_secs_f64() * 1e3,
    );
}

#[tokio::main]
async fn main() {
    let seconds = env_number("INTAKE_SECONDS", 10);
    let connections = env_number("INTAKE_CONNECTIONS", 32);
    let workers = env_number("INTAKE_WORKERS", 4);
    let shm = std::path::Path::new("/dev/shm");
    let dir = if shm.is_dir() {
        tempfile::tempdir_in(shm)
    } else {
        tempfile::tempdir()
    }
    .expect("temp dir");
    bench(
        "sqlite",
        &format!("sqlite://{}/bench.db", dir.path().display()),
        connections,
        seconds,
        workers,
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
            connections,
            seconds,
            workers,
        )
        .await;
        admin
            .execute(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .await
            .expect("drop");
    }
}
