//! What graft's own push does with the server's ref advertisement, before
//! anything is sent: the same decisions git's push makes for one ref, in
//! the cases where the objects to send are known without walking history;
//! every other case is left to the git CLI.

use gix::ObjectId;

use super::PushMode;
use super::wire::Advertisement;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Plan {
    /// The branch is at the commit already (git: "up to date").
    UpToDate,
    /// Refused before sending, in git's words.
    Refused(String),
    /// Move the branch from `old` to the commit, sending what the commit
    /// adds to `base` (`None`: the server has the commit already).
    Send {
        old: Option<ObjectId>,
        base: Option<ObjectId>,
    },
    /// Left to the git CLI, for this reason.
    Cli(&'static str),
}

/// Decides the push of `commit` (whose parents are `parents`) to `refname`.
pub fn plan(
    ad: &Advertisement,
    refname: &str,
    commit: ObjectId,
    parents: &[ObjectId],
    mode: PushMode,
) -> Plan {
    if ad.capability("report-status").is_none() {
        return Plan::Cli("the server does not report the outcome");
    }
    if ad.capability("object-format").is_some_and(|f| f != "sha1") {
        return Plan::Cli("the server uses another object format");
    }
    let old = ad.ref_value(refname);
    if old == Some(commit) {
        return Plan::UpToDate;
    }
    match mode {
        PushMode::ForceWithLease { expected } if old != expected => {
            return Plan::Refused(format!(" ! [rejected] {commit} -> {refname} (stale info)"));
        }
        // Whether another commit is an ancestor takes a history walk.
        PushMode::FastForward if old.is_some_and(|old| !parents.contains(&old)) => {
            return Plan::Cli("the branch is not at the commit's parent");
        }
        _ => {}
    }
    if ad.has_tip(commit) {
        return Plan::Send { old, base: None };
    }
    match parents {
        // A ref at the parent: the server holds it and all it reaches, so
        // the commit's new trees and blobs are all it lacks.
        [parent] if ad.has_tip(*parent) => Plan::Send {
            old,
            base: Some(*parent),
        },
        _ => Plan::Cli("the commit's parent is not a ref on the server"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(hex: char) -> ObjectId {
        ObjectId::from_hex(hex.to_string().repeat(40).as_bytes()).unwrap()
    }

    fn ad(refs: &[(&str, char)]) -> Advertisement {
        Advertisement {
            refs: refs.iter().map(|(n, c)| (n.to_string(), id(*c))).collect(),
            haves: Vec::new(),
            capabilities: vec!["report-status".into(), "side-band-64k".into()],
        }
    }

    const BRANCH: &str = "refs/heads/graft/p";
    const MAIN: &str = "refs/heads/main";

    #[test]
    fn a_lease_is_checked_against_the_advertised_value() {
        let server = ad(&[(MAIN, 'a'), (BRANCH, 'b')]);
        let lease = |expected| PushMode::ForceWithLease { expected };
        assert_eq!(
            plan(&server, BRANCH, id('c'), &[id('a')], lease(Some(id('b')))),
            Plan::Send {
                old: Some(id('b')),
                base: Some(id('a'))
            }
        );
        for stale in [None, Some(id('e'))] {
            let Plan::Refused(text) = plan(&server, BRANCH, id('c'), &[id('a')], lease(stale))
            else {
                panic!("a stale lease is refused");
            };
            assert!(text.contains("stale info"), "{text}");
        }
        // A new branch: the lease says it must not exist, and it does not.
        assert_eq!(
            plan(&server, "refs/heads/new", id('c'), &[id('a')], lease(None)),
            Plan::Send {
                old: None,
                base: Some(id('a'))
            }
        );
    }

    #[test]
    fn a_fast_forward_from_the_parent_only_the_rest_goes_to_git() {
        let server = ad(&[(MAIN, 'a')]);
        let ff = PushMode::FastForward;
        assert_eq!(
            plan(&server, MAIN, id('c'), &[id('a')], ff),
            Plan::Send {
                old: Some(id('a')),
                base: Some(id('a'))
            }
        );
        assert_eq!(plan(&server, MAIN, id('a'), &[id('f')], ff), Plan::UpToDate);
        assert!(matches!(
            plan(&server, MAIN, id('c'), &[id('e')], ff),
            Plan::Cli(_)
        ));
    }

    #[test]
    fn what_the_server_has_decides_what_is_sent() {
        let server = ad(&[(MAIN, 'a'), ("refs/pull/1/head", 'c')]);
        let new = PushMode::ForceWithLease { expected: None };
        assert_eq!(
            plan(&server, BRANCH, id('c'), &[id('a')], new),
            Plan::Send {
                old: None,
                base: None
            },
            "a commit the server has: nothing to send"
        );
        for parents in [&[][..], &[id('e')], &[id('a'), id('c')]] {
            assert!(
                matches!(plan(&server, BRANCH, id('d'), parents, new), Plan::Cli(_)),
                "{parents:?}"
            );
        }
        let mut old_server = server.clone();
        old_server.capabilities = vec!["side-band-64k".into()];
        assert!(matches!(
            plan(&old_server, BRANCH, id('d'), &[id('a')], new),
            Plan::Cli(_)
        ));
        let mut sha256 = server;
        sha256.capabilities.push("object-format=sha256".into());
        assert!(matches!(
            plan(&sha256, BRANCH, id('d'), &[id('a')], new),
            Plan::Cli(_)
        ));
    }
}
