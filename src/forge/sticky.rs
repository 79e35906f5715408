//! The sticky status comment: found by a hidden marker in a comment graft's
//! own bot wrote, edited in place, never duplicated. Upserts are serialised
//! per PR inside the process ([`KeyedLocks`]); if another process raced us
//! anyway, the newer copies are removed after the fact ([`resolve`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

pub const STATUS_MARKER: &str = "<!-- graft:status -->";

/// A comment as the sticky logic needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommentInfo {
    pub id: i64,
    pub author: String,
    pub body: String,
}

/// The body with the marker on its first line (added if missing).
pub fn with_marker(body: &str) -> String {
    if body.contains(STATUS_MARKER) {
        body.to_string()
    } else {
        format!("{STATUS_MARKER}\n{body}")
    }
}

/// Ids of graft's own status comments, oldest first.
pub fn status_comments(comments: &[CommentInfo], bot: &str) -> Vec<i64> {
    let mut ids: Vec<i64> = comments
        .iter()
        .filter(|c| c.author.eq_ignore_ascii_case(bot) && c.body.contains(STATUS_MARKER))
        .map(|c| c.id)
        .collect();
    ids.sort_unstable();
    ids
}

/// Which status comment survives a race (the oldest, so links to it keep
/// working) and which copies go.
pub fn resolve(ids: &[i64]) -> Option<(i64, Vec<i64>)> {
    let (first, rest) = ids.split_first()?;
    Some((*first, rest.to_vec()))
}

/// One async mutex per key, created on demand and dropped when unused.
#[derive(Debug, Clone, Default)]
pub struct KeyedLocks(Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>);

impl KeyedLocks {
    pub async fn lock(&self, key: &str) -> OwnedMutexGuard<()> {
        let mutex = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.retain(|_, m| Arc::strong_count(m) > 1);
            map.entry(key.to_string()).or_default().clone()
        };
        mutex.lock_owned().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn comment(id: i64, author: &str, body: &str) -> CommentInfo {
        CommentInfo {
            id,
            author: author.into(),
            body: body.into(),
        }
    }

    #[test]
    fn only_the_bots_marked_comments_count() {
        let marked = with_marker("status");
        let comments = [
            comment(9, "graft[bot]", &marked),
            comment(3, "alice", &marked), // a human quoting the marker
            comment(5, "graft[bot]", "a plain reply"),
            comment(4, "GRAFT[bot]", &marked),
        ];
        assert_eq!(status_comments(&comments, "graft[bot]"), vec![4, 9]);
        assert_eq!(resolve(&[4, 9, 12]), Some((4, vec![9, 12])));
        assert_eq!(resolve(&[]), None);
    }

    #[test]
    fn marker_is_added_once() {
        let once = with_marker("hello");
        assert!(once.starts_with(STATUS_MARKER));
        assert_eq!(with_marker(&once), once);
    }

    #[tokio::test]
    async fn keyed_locks_serialise_one_key_only() {
        let locks = KeyedLocks::default();
        let a = locks.lock("a").await;
        // Another key is free while `a` is held.
        let _b = locks.lock("b").await;
        let second_a =
            tokio::time::timeout(std::time::Duration::from_millis(20), locks.lock("a")).await;
        assert!(second_a.is_err(), "same key must wait");
        drop(a);
        let _again = locks.lock("a").await;
    }
}
