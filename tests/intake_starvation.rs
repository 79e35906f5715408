//! Slow clients cannot starve intake: bodies must arrive within a
//! deadline, and a client trickling its body holds none of the permits a
//! real delivery needs; stalled large bodies leave memory for small
//! deliveries; requests that cannot be deliveries are refused before their
//! body is read; API uploads hold nothing webhooks need. The server caps
//! its connections, drops clients that do not read their responses and
//! stops within a time limit.

mod support;

use std::time::Duration;

use graft::app::{AppSettings, HttpSettings};
use graft::http::serve::Limits;
use graft::store::tokens::{TokenAccess, TokenScope};
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
    trickle_every(address, head, Duration::from_millis(100)).await
}

async fn trickle_every(address: &str, head: String, pace: Duration) -> JoinHandle<Vec<u8>> {
    let stream = TcpStream::connect(address).await.unwrap();
    let (mut reader, mut writer) = stream.into_split();
    writer.write_all(head.as_bytes()).await.unwrap();
    writer.write_all(b"{").await.unwrap();
    tokio::spawn(async move {
        let pacing = tokio::spawn(async move {
            let mut tick = tokio::time::interval(pace);
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
        || async { (app.state.http.body_budget.held() >= SLOW_CLIENTS).then_some(()) },
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
        || async { (app.state.http.body_budget.held() == 0).then_some(()) },
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
        state.http.timeouts.header_timeout,
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

/// Reads everything the server sends until it closes the connection.
async fn read_to_close(mut reader: impl tokio::io::AsyncRead + Unpin) -> Vec<u8> {
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    while let Ok(n) = reader.read(&mut buffer).await {
        if n == 0 {
            break;
        }
        answer.extend_from_slice(&buffer[..n]);
    }
    answer
}

/// Signed, small, and answered 202 within a second.
async fn a_signed_delivery_is_answered_promptly(app: &TestApp) {
    let body = fixture("github/ping.json");
    let response = tokio::time::timeout(
        Duration::from_secs(1),
        app.github("ping", &random_delivery_id(), &body).send(),
    )
    .await
    .expect("the signed delivery was answered within a second")
    .unwrap();
    assert_eq!(response.status(), 202);
}

const MIB: usize = 1024 * 1024;

/// Connections that each announce a 25 MiB webhook body, send most of it and
/// stall hold at most the large bodies' share of the webhook memory: a small
/// signed delivery still finds room at once.
async fn stalled_large_bodies_do_not_delay_a_signed_delivery(db: TestDb) {
    const STALLED: usize = 7;
    const SENT: usize = 24 * MIB;
    let deadline = Duration::from_secs(10);
    let app = TestApp::start(
        &db,
        AppSettings {
            http: HttpSettings {
                body_timeout: deadline,
                header_timeout: Duration::from_secs(2),
            },
            ..default_settings()
        },
        None,
    )
    .await;
    let address = app.base.trim_start_matches("http://").to_string();
    let mut stalled = Vec::new();
    for n in 0..STALLED {
        let stream = TcpStream::connect(&address).await.unwrap();
        let (reader, mut writer) = stream.into_split();
        let head = webhook_head("/webhooks/github", n).replace(
            "Content-Length: 1000000",
            &format!("Content-Length: {}", 25 * MIB - 1),
        );
        writer.write_all(head.as_bytes()).await.unwrap();
        // Sends most of the body, then keeps the connection open.
        let sending = tokio::spawn(async move {
            let chunk = vec![b' '; MIB];
            for _ in 0..SENT / MIB {
                if writer.write_all(&chunk).await.is_err() {
                    break;
                }
            }
            std::future::pending::<()>().await;
            drop(writer);
        });
        stalled.push((sending, tokio::spawn(read_to_close(reader))));
    }
    // The bodies are read until the large share is used up.
    eventually(
        "the stalled bodies holding the large share",
        Duration::from_secs(8),
        || async {
            (app.state.http.body_budget.webhooks.held() >= graft::http::intake::LARGE_SHARE - MIB)
                .then_some(())
        },
    )
    .await;
    a_signed_delivery_is_answered_promptly(&app).await;
    assert!(app.state.http.body_budget.webhooks.held() <= graft::http::intake::LARGE_SHARE);

    for (n, (sending, answer)) in stalled.into_iter().enumerate() {
        let answer = tokio::time::timeout(deadline + Duration::from_secs(10), answer)
            .await
            .expect("the stalled client was closed after the body deadline")
            .unwrap();
        sending.abort();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "client {n}: {answer}");
    }
    assert_eq!(app.store.delivery_count().await.unwrap(), 1);
    eventually(
        "the body budget given back",
        Duration::from_secs(5),
        || async { (app.state.http.body_budget.held() == 0).then_some(()) },
    )
    .await;
    app.stop().await;
}

both_backends!(stalled_large_bodies_do_not_delay_a_signed_delivery);

/// A wrong GitLab token, or GitHub headers no delivery could carry, are
/// refused as soon as the headers are in: the announced body is never
/// waited for nor held, and nothing is stored.
#[tokio::test]
async fn requests_that_cannot_be_deliveries_are_refused_before_their_body() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let app = TestApp::start(&db, settings(), None).await;
    let address = app.base.trim_start_matches("http://").to_string();
    let signature = format!("X-Hub-Signature-256: sha256={}\r\n", "0".repeat(64));
    let github = "POST /webhooks/github HTTP/1.1\r\nHost: graft\r\n";
    let gitlab = "POST /webhooks/gitlab HTTP/1.1\r\nHost: graft\r\n";
    let cases = [
        (
            format!("{gitlab}X-Gitlab-Token: wrong\r\nX-Gitlab-Event: Push Hook\r\n"),
            "401",
            "bad_signature",
        ),
        (
            format!("{gitlab}X-Gitlab-Event: Push Hook\r\n"),
            "401",
            "bad_signature",
        ),
        (
            format!("{gitlab}X-Gitlab-Token: {}\r\n", support::GITLAB_SECRET),
            "400",
            "missing_header",
        ),
        (
            format!("{github}X-GitHub-Event: push\r\nX-GitHub-Delivery: d1\r\n"),
            "401",
            "bad_signature",
        ),
        (
            format!(
                "{github}X-Hub-Signature-256: sha256=abc\r\nX-GitHub-Event: push\r\n\
                 X-GitHub-Delivery: d1\r\n"
            ),
            "401",
            "bad_signature",
        ),
        (
            format!("{github}{signature}X-GitHub-Delivery: d1\r\n"),
            "400",
            "missing_header",
        ),
        (
            format!("{github}{signature}X-GitHub-Event: push\r\n"),
            "400",
            "missing_header",
        ),
        (
            format!(
                "{github}{signature}X-GitHub-Event: push\r\nX-GitHub-Delivery: {}\r\n",
                "d".repeat(200)
            ),
            "400",
            "malformed_header",
        ),
    ];
    for (head, status, code) in cases {
        let stream = TcpStream::connect(&address).await.unwrap();
        let (reader, mut writer) = stream.into_split();
        // The body is announced but never sent.
        let head = format!("{head}Content-Length: {}\r\n\r\n", 20 * MIB);
        writer.write_all(head.as_bytes()).await.unwrap();
        let answer = tokio::time::timeout(Duration::from_secs(1), read_to_close(reader))
            .await
            .expect("refused without waiting for the body");
        let answer = String::from_utf8_lossy(&answer);
        assert!(
            answer.starts_with(&format!("HTTP/1.1 {status}")),
            "{head}: {answer}"
        );
        assert!(answer.contains(code), "{head}: {answer}");
        assert!(!answer.contains(support::GITLAB_SECRET), "{answer}");
        assert_eq!(app.state.http.body_budget.held(), 0);
        drop(writer);
    }
    assert_eq!(app.store.delivery_count().await.unwrap(), 0);
    app.stop().await;
}

/// More slow authenticated uploads than graft serves requests at once: they
/// are read under the API's own deadline and memory before taking any
/// permit, so a signed delivery and the health check are answered at once,
/// and the uploads get 408 at the API body deadline.
async fn slow_api_uploads_do_not_delay_a_signed_delivery(db: TestDb) {
    const UPLOADS: usize = 520;
    let body_timeout = Duration::from_secs(1);
    // The API's bodies get six times the webhook deadline.
    let api_deadline = body_timeout * 6;
    let app = TestApp::start(
        &db,
        AppSettings {
            http: HttpSettings {
                body_timeout,
                header_timeout: Duration::from_secs(2),
            },
            ..default_settings()
        },
        None,
    )
    .await;
    let project = support::ui::create_project(&app, "acme/slow").await.id;
    let access = TokenAccess::new(TokenScope::Generator, &[project]).unwrap();
    let (_, token) = app
        .store
        .create_scoped_token("slow-gen", &access, graft::store::now_ms())
        .await
        .unwrap();
    let address = app.base.trim_start_matches("http://").to_string();
    let head = format!(
        "PUT /api/v1/projects/{project}/files HTTP/1.1\r\nHost: graft\r\n\
         Authorization: Bearer {token}\r\nContent-Type: application/json\r\n\
         Content-Length: 100000\r\n\r\n"
    );
    let mut slow = Vec::new();
    for _ in 0..UPLOADS {
        slow.push(trickle_every(&address, head.clone(), Duration::from_millis(500)).await);
    }
    eventually(
        "the slow uploads being read",
        Duration::from_secs(5),
        || async { (app.state.http.body_budget.api.held() >= UPLOADS).then_some(()) },
    )
    .await;
    a_signed_delivery_is_answered_promptly(&app).await;
    let health = tokio::time::timeout(
        Duration::from_secs(1),
        app.http.get(app.url("/healthz")).send(),
    )
    .await
    .expect("the health check was answered within a second")
    .unwrap();
    assert_eq!(health.status(), 200);

    for (n, client) in slow.into_iter().enumerate() {
        let answer = tokio::time::timeout(api_deadline + Duration::from_secs(10), client)
            .await
            .expect("the slow upload was closed after the API body deadline")
            .unwrap();
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.starts_with("HTTP/1.1 408"), "upload {n}: {answer}");
        assert!(answer.contains("body_timeout"), "upload {n}: {answer}");
    }
    // No upload changed the project's files.
    let files = app
        .http
        .get(app.url(&format!("/api/v1/projects/{project}/files")))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(files.status(), 200);
    let files: serde_json::Value = files.json().await.unwrap();
    assert_eq!(files["files"].as_array().map(Vec::len), Some(0), "{files}");
    eventually(
        "the body budget given back",
        Duration::from_secs(5),
        || async { (app.state.http.body_budget.held() == 0).then_some(()) },
    )
    .await;
    app.stop().await;
}

both_backends!(slow_api_uploads_do_not_delay_a_signed_delivery);

/// graft's server on a loopback port with `limits`; `stop` ends it.
struct Server {
    address: String,
    stop: tokio::sync::oneshot::Sender<()>,
    task: JoinHandle<()>,
}

async fn serve(db: &TestDb, limits: Limits) -> Server {
    let state = graft::app::AppState::new(db.store().await, settings());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(graft::http::serve::serve_with(
        listener,
        state.router(),
        limits,
        async move {
            let _ = stop_rx.await;
        },
    ));
    Server {
        address,
        stop,
        task,
    }
}

/// A client with a tiny receive buffer that pipelines requests and never
/// reads a response, until the server no longer takes its requests (it is
/// stuck writing responses nobody reads).
async fn never_reading_client(address: &str) -> TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut stream = socket.connect(address.parse().unwrap()).await.unwrap();
    let requests = format!("GET {} HTTP/1.1\r\nHost: graft\r\n\r\n", OPENAPI).repeat(100);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    loop {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the server kept reading requests"
        );
        let wrote = tokio::time::timeout(
            Duration::from_millis(500),
            stream.write_all(requests.as_bytes()),
        )
        .await;
        if wrote.is_err() {
            return stream;
        }
    }
}

const OPENAPI: &str = graft::http::openapi::DOCUMENT_PATH;

fn limits() -> Limits {
    Limits::new(Duration::from_secs(30))
}

/// A client that never reads its responses is dropped at the write
/// timeout, so stopping the server does not wait for it.
#[tokio::test]
async fn a_client_that_never_reads_is_dropped_at_the_write_timeout() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let server = serve(
        &db,
        Limits {
            write_timeout: Duration::from_secs(1),
            shutdown_limit: Duration::from_secs(600),
            ..limits()
        },
    )
    .await;
    let client = never_reading_client(&server.address).await;
    let _ = server.stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("the server stopped without waiting for the client")
        .unwrap();
    // The client finds its connection closed once it reads what was sent.
    tokio::time::timeout(Duration::from_secs(10), read_to_close(client))
        .await
        .expect("the connection was closed");
}

/// Stopping waits for open requests no longer than the shutdown limit,
/// even for a client that never reads its response.
#[tokio::test]
async fn shutdown_completes_within_its_limit() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let limit = Duration::from_secs(1);
    let server = serve(
        &db,
        Limits {
            write_timeout: Duration::from_secs(600),
            shutdown_limit: limit,
            ..limits()
        },
    )
    .await;
    let client = never_reading_client(&server.address).await;
    let started = tokio::time::Instant::now();
    let _ = server.stop.send(());
    tokio::time::timeout(limit + Duration::from_secs(5), server.task)
        .await
        .expect("the server stopped at its shutdown limit")
        .unwrap();
    assert!(started.elapsed() >= limit, "{:?}", started.elapsed());
    tokio::time::timeout(Duration::from_secs(10), read_to_close(client))
        .await
        .expect("the connection was dropped");
}

/// Past the connection cap, a new connection waits (unanswered) until an
/// open one closes.
#[tokio::test]
async fn connections_beyond_the_cap_wait_for_one_to_close() {
    let Some(db) = TestDb::new(Backend::Sqlite).await else {
        return;
    };
    let server = serve(
        &db,
        Limits {
            max_connections: 2,
            ..limits()
        },
    )
    .await;
    let request = b"GET /healthz HTTP/1.1\r\nHost: graft\r\n\r\n";
    async fn answered(stream: &mut TcpStream) -> String {
        let mut buffer = [0u8; 1024];
        let n = stream.read(&mut buffer).await.unwrap();
        String::from_utf8_lossy(&buffer[..n]).into_owned()
    }
    // Two kept-alive connections fill the cap.
    let mut open = Vec::new();
    for _ in 0..2 {
        let mut stream = TcpStream::connect(&server.address).await.unwrap();
        stream.write_all(request).await.unwrap();
        assert!(answered(&mut stream).await.starts_with("HTTP/1.1 200"));
        open.push(stream);
    }
    let mut third = TcpStream::connect(&server.address).await.unwrap();
    third.write_all(request).await.unwrap();
    let early = tokio::time::timeout(Duration::from_secs(1), answered(&mut third)).await;
    assert!(early.is_err(), "answered past the cap: {early:?}");
    // One closes: the third is served.
    drop(open.pop());
    let answer = tokio::time::timeout(Duration::from_secs(5), answered(&mut third))
        .await
        .expect("served once a connection closed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let _ = server.stop.send(());
    tokio::time::timeout(Duration::from_secs(10), server.task)
        .await
        .expect("the server stopped")
        .unwrap();
}
