//! Nothing is lost under load: deliveries fired many at once, with
//! concurrent duplicates of one id (also at two graft instances sharing
//! one database), are each stored once and processed once, and every
//! answer says what became of its delivery. Counts only, no timings.

mod support;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::Value;
use sqlx::Row;
use support::{TestApp, TestDb, default_settings, eventually, fast_pool, fixture};

const CONCURRENCY: usize = 32;

/// One answered delivery: its id, the status answered and the row id.
type Answer = (String, String, i64);

/// Sends every `(app, delivery id)` in order, `CONCURRENCY` at a time,
/// and returns the answers; any answer but 202 fails the test.
async fn fire(apps: &[Arc<TestApp>], sends: Vec<(usize, String)>) -> Vec<Answer> {
    let body = Arc::new(fixture("github/push.json"));
    let sends = Arc::new(sends);
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..CONCURRENCY {
        let (apps, sends, next, body) = (apps.to_vec(), sends.clone(), next.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            let mut answers = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((app, id)) = sends.get(i) else {
                    return answers;
                };
                let response = apps[*app]
                    .github("push", id, &body)
                    .send()
                    .await
                    .expect("send");
                assert_eq!(response.status(), 202, "delivery {id}");
                let answer: Value = response.json().await.expect("json answer");
                assert_eq!(answer["delivery"], id.as_str());
                answers.push((
                    id.clone(),
                    answer["status"].as_str().unwrap_or_default().to_string(),
                    answer["id"].as_i64().expect("row id"),
                ));
            }
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.extend(task.await.expect("sender"));
    }
    answers
}

/// Per delivery id: one `queued` and the rest `duplicate`, all naming the
/// same stored row. Returns how many ids were answered.
fn assert_one_queued_per_id(answers: &[Answer], expected_sends: usize) -> usize {
    assert_eq!(answers.len(), expected_sends, "every send was answered");
    let mut by_id: HashMap<&str, Vec<(&str, i64)>> = HashMap::new();
    for (id, status, row) in answers {
        by_id.entry(id).or_default().push((status, *row));
    }
    for (id, answers) in &by_id {
        let queued = answers.iter().filter(|(s, _)| *s == "queued").count();
        let duplicate = answers.iter().filter(|(s, _)| *s == "duplicate").count();
        assert_eq!(
            (queued, duplicate),
            (1, answers.len() - 1),
            "delivery {id} answered {answers:?}"
        );
        assert!(
            answers.iter().all(|(_, row)| *row == answers[0].1),
            "delivery {id} answered with different rows: {answers:?}"
        );
    }
    by_id.len()
}

/// Waits for the queue to drain, then checks every answered delivery is
/// stored once, processed, and had one job that ran once.
async fn assert_stored_and_processed_once(app: &TestApp, answers: &[Answer], distinct: usize) {
    let pool = app.store.pool().clone();
    eventually("the queue to drain", Duration::from_secs(120), || {
        let pool = pool.clone();
        async move {
            let row = sqlx::query("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')")
                .fetch_one(&pool)
                .await
                .ok()?;
            (row.get::<i64, _>(0) == 0).then_some(())
        }
    })
    .await;
    let rows = sqlx::query("SELECT id, delivery_id, status FROM webhook_deliveries")
        .fetch_all(&pool)
        .await
        .unwrap();
    assert_eq!(rows.len(), distinct, "one stored delivery per answered id");
    let stored: HashMap<String, (i64, String)> = rows
        .iter()
        .map(|r| (r.get(1), (r.get(0), r.get(2))))
        .collect();
    assert_eq!(stored.len(), distinct, "no delivery id stored twice");
    for (id, _, row) in answers {
        let (stored_row, status) = stored
            .get(id)
            .unwrap_or_else(|| panic!("delivery {id} was answered but not stored"));
        assert_eq!(stored_row, row, "delivery {id} answered another row");
        assert_eq!(status, "processed", "delivery {id}");
    }
    let jobs = sqlx::query(
        "SELECT COUNT(*), COUNT(DISTINCT payload), \
         SUM(CASE WHEN state = 'done' AND attempts = 1 THEN 1 ELSE 0 END) \
         FROM jobs WHERE kind = 'webhook'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    let distinct = distinct as i64;
    assert_eq!(
        (
            jobs.get::<i64, _>(0),
            jobs.get::<i64, _>(1),
            jobs.get::<i64, _>(2)
        ),
        (distinct, distinct, distinct),
        "one job per delivery, run once"
    );
}

/// 2,000 deliveries, 32 at a time, with workers running: 1,500 unique
/// ids and 100 ids sent 5 times each, the copies side by side so they
/// arrive together.
async fn every_answered_delivery_is_stored_and_processed_once(db: TestDb) {
    let app = Arc::new(TestApp::start(&db, default_settings(), Some(fast_pool())).await);
    let run = support::webhooks::random_delivery_id();
    let mut sends = Vec::new();
    for i in 0..1_500 {
        sends.push((0, format!("{run}-{i}")));
        if i % 15 == 0 {
            for _ in 0..5 {
                sends.push((0, format!("{run}-twin-{}", i / 15)));
            }
        }
    }
    assert_eq!(sends.len(), 2_000);
    let answers = fire(std::slice::from_ref(&app), sends).await;
    let distinct = assert_one_queued_per_id(&answers, 2_000);
    assert_eq!(distinct, 1_600);
    assert_stored_and_processed_once(&app, &answers, distinct).await;
    Arc::into_inner(app).expect("no sender left").stop().await;
}

/// Two graft instances on one database (as two replicas), each sent every
/// delivery at the same moment: each id is queued by one of them only,
/// stored once and processed once by the workers of both.
async fn two_instances_receiving_the_same_deliveries_store_each_once(db: TestDb) {
    let first = Arc::new(TestApp::start(&db, default_settings(), Some(fast_pool())).await);
    let second = Arc::new(TestApp::start(&db, default_settings(), Some(fast_pool())).await);
    let run = support::webhooks::random_delivery_id();
    let mut sends = Vec::new();
    for i in 0..600 {
        let id = format!("{run}-{i}");
        // Alternate who hears first, so both win some.
        let (a, b) = if i % 2 == 0 { (0, 1) } else { (1, 0) };
        sends.push((a, id.clone()));
        sends.push((b, id));
    }
    let answers = fire(&[first.clone(), second.clone()], sends).await;
    let distinct = assert_one_queued_per_id(&answers, 1_200);
    assert_eq!(distinct, 600);
    assert_stored_and_processed_once(&first, &answers, distinct).await;
    Arc::into_inner(first).expect("no sender left").stop().await;
    Arc::into_inner(second)
        .expect("no sender left")
        .stop()
        .await;
}

both_backends!(
    every_answered_delivery_is_stored_and_processed_once,
    two_instances_receiving_the_same_deliveries_store_each_once,
);
