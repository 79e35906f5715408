//! Slow clients cannot starve intake: bodies must arrive within a
//! deadline, and a client trickling its body holds none of the permits a
//! real delivery needs.

mod support;

use std::time::Duration;

use graft::app::{AppSettings, HttpSettings};
use support::webhooks::random_delivery_id;
use support::{Backend, TestApp, TestDb, default_settings, eventually, fixture};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;

const SLOW_CLIENTS: usize = 50;
const BODY_TIMEOUT: Duration = Duration::from_secs(3);

fn settings() -> AppSettings {
    AppSettings {
        http: HttpSettings {
            body_timeout: BODY_TIMEOUT,
            header_timeout: Duration::from_secs(2),
        },
        ..default_settings()
    }
}

/// A client that sends `head` at once and then its body a byte every
/// 100 ms, forever; the handle answers everything the server sent back.
async fn trickle(address: &str, head: String) -> JoinHandle<Vec<u8>> {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    writer.write_all(b"{").await.unwrap();
    tokio::spawn(async move {
        let pacing = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(100));
            loop {
                tick.tick().await;
                if writer.write_all(b" ").await.is_err() {
                    break;
                }
            }
        });
        let mut answer = Vec::new();
        let mut buffer = [0u8; 1024];
        // Until the server closes (or resets) the connection.
        while let Ok(n) = reader.read(&mut buffer).await {
            if n == 0 {
                break;
            }
            answer.extend_from_slice(&buffer[..n]);
        }
        pacing.abort();
        answer
    })
}

fn webhook_head(path: &str, n: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: graft\r\nContent-Type: application/json\r\n\
         X-GitHub-Event: ping\r\nX-GitHub-Delivery: slow-{n}\r\n\
         X-Hub-Signature-256: sha256={zeros}\r\nContent-Length: 1000000\r\n\r\n",
        zeros = "0".repeat(64)
    )
}

async fn trickling_clients_do_not_delay_a_signed_delivery(db: TestDb) {
    let app = TestApp::start(&db, settings(), None).await;
    let address = app.base.trim_start_matches("http://").to_string();
    let mut slow = Vec::new();
    for n in 0..SLOW_CLIENTS {
        slow.push(trickle(&address, webhook_head("/webhooks/github", n)).await);
    }
    // Every slow body is being read (each holds the bytes it sent).
    eventually(
        "the slow bodies being read",
        Duration::from_secs(10),
        || async { (app.state.body_budget.held() >= SLOW_CLIENTS).then_some(()) },
    )
    .await;

    let body = fixture("github/ping.json");
    let id = random_delivery_id();
    let response = tokio::time::timeout(
        Duration::from_secs(1),
        app.github("ping", &id, &body).send(),
    )
    .await
    .expect("the signed delivery was answered within a second")
    .unwrap();
    assert_eq!(response.status(), 202);

    for (n, client) in slow.into_iter().enumerate() {
        let answer = tokio::time::timeout(BODY_TIMEOUT + Duration::from_secs(10), client)
            .await
            .expect("the slow client was closed after the body deadline")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "client {n}: {answer}");
        assert!(answer.contains("body_timeout"), "client {n}: {answer}");
    }
    // Only the signed delivery was stored; no slow body is still held.
    assert_eq!(app.store.delivery_count().await.unwrap(), 1);
    assert_eq!(
        app.store
            .job_counts()
            .await
            .unwrap()
            .iter()
            .map(|(_, n)| n)
            .sum::<i64>(),
        1
    );
    eventually(
        "the body budget given back",
        Duration::from_secs(5),
        || async { (app.state.body_budget.held() == 0).then_some(()) },
    )
    .await;
    let metrics = app.http.get(app.url("/metrics")).send().await.unwrap();
    let metrics = metrics.text().await.unwrap();
    assert!(metrics.contains("too_slow"), "{metrics}");
    app.stop().await;
}

both_backends!(trickling_clients_do_not_delay_a_signed_delivery);

/// The login form and other routes anyone can reach take small bodies
/// only, refused before a byte of them is read.
#[tokio::test]
async fn unauthenticated_routes_refuse_large_bodies() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let app = TestApp::start(&db, settings(), None).await;
    let form = format!("token={}&csrf=x", "a".repeat(20 * 1024));
    for path in ["/login", "/logout", "/healthz", "/setup/github"] {
        let response = app
            .http
            .post(app.url(path))
            .header("Content-Type", "application/x-www-form-urlencoded")
            .body(form.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 413, "{path}");
        let text = response.text().await.unwrap();
        assert!(text.contains("16 KiB"), "{path}: {text}");
    }
    // A normal login form still arrives.
    let response = app
        .http
        .post(app.url("/login"))
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body("token=nope&csrf=x")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    app.stop().await;
}

/// A slow login body is answered 408 at the deadline, like a webhook.
#[tokio::test]
async fn a_slow_login_body_times_out() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let app = TestApp::start(&db, settings(), None).await;
    let address = app.base.trim_start_matches("http://").to_string();
    let head = "POST /login HTTP/1.1\r\nHost: graft\r\n\
                Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 9000\r\n\r\n"
        .to_string();
    let client = trickle(&address, head).await;
    let answer = tokio::time::timeout(BODY_TIMEOUT + Duration::from_secs(10), client)
        .await
        .expect("closed after the body deadline")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    app.stop().await;
}

/// Headers sent a byte at a time: graft's server closes the connection at
/// the header deadline.
#[tokio::test]
async fn slow_headers_are_cut_off() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let state = graft::app::AppState::new(db.store().await, settings());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(graft::http::serve::serve(
        listener,
        state.router(),
        state.http.header_timeout,
        async move {
            let _ = stop_rx.await;
        },
    ));
    let started = tokio::time::Instant::now();
    let stream = TcpStream::connect(&address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer
        .write_all(b"GET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let pacing = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        loop {
            tick.tick().await;
            if writer.write_all(b"s").await.is_err() {
                break;
            }
        }
    });
    let mut buffer = [0u8; 256];
    let closed = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match reader.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(closed.is_ok(), "the connection stayed open");
    assert!(started.elapsed() >= Duration::from_secs(2));
    pacing.abort();

    // A normal request is still served, and the server stops when told.
    let healthy = reqwest::get(format!("http://{address}/healthz"))
        .await
        .unwrap();
    assert_eq!(healthy.status(), 200);
    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("the server stopped")
        .unwrap();
}
