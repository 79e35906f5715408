//! Slash commands: reviewers steer graft from the PR/MR conversation.
//!
//! The language itself (grammar, parser, help table) is the leaf
//! [`crate::slash`]; this module runs what it reads.
//!
//! # Flow
//!
//! 1. [`intake`] (in the webhook job): skip bots, graft's own comments
//!    and PRs graft does not own, parse, keep only command lines that are
//!    new (edits: not in the previous text), check the per-person rate
//!    limit, record them under a dedupe key and queue one `command` job
//!    per comment, all in one transaction.
//! 2. [`execute`] (the `command` job, exclusive per project): on GitLab,
//!    re-read the note and run nothing unless it matches ([`verify`]);
//!    👀, look up the permission of the person who caused the run (the
//!    editor of an edit) if a command changes anything, run it through
//!    its module in [`handlers`], store each outcome, answer with one
//!    reply (or the sticky comment for `status`), then 👍 or 😕.

pub mod execute;
pub mod handlers;
pub mod intake;
pub mod reply;
pub mod verify;

/// Starts every reply graft writes, so it never reads its own comments
/// as commands (the status comment has its own marker).
pub const REPLY_MARKER: &str = "<!-- graft:reply -->";
