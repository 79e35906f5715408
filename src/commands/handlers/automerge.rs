//! `/graft automerge on|off`: whether graft asks the forge to merge its
//! PR/MR once checks pass. graft only ever asks for the commit it pushed.

use crate::forge::AutoMerge;
use crate::git::validate::{Finding, passed};
use crate::ids::PrNumber;
use crate::store::projects::{Project, SyncStatus};
use crate::sync::errors::SyncError;

use super::super::reply::{Forge, Outcome};
use super::Call;

pub async fn run(call: &Call<'_>, on: bool) -> Result<Outcome, SyncError> {
    call.ctx
        .store
        .set_auto_merge(call.project_id(), on, call.now)
        .await?;
    let message = if on {
        turn_on(call).await?
    } else {
        turn_off(call).await?
    };
    Ok(call.done(message))
}

async fn turn_off(call: &Call<'_>) -> Result<String, SyncError> {
    let Some(number) = call.project.pull_request_number else {
        return Ok(off_reply(call.forge, None));
    };
    match call.client.disable_auto_merge(number).await {
        Err(e) if e.is_retryable() => Err(e.into()),
        result => Ok(off_reply(
            call.forge,
            Some(result.map_err(|e| e.to_string())),
        )),
    }
}

async fn turn_on(call: &Call<'_>) -> Result<String, SyncError> {
    let (forge, pr) = (call.forge.name(), call.forge.pr());
    let message = match on_plan(&call.project) {
        OnPlan::NextSync => {
            format!("Auto-merge is on: graft asks {forge} to merge once the next sync validates.")
        }
        OnPlan::OthersCommitted => format!(
            "Auto-merge is on for this project, but others committed to this {pr}'s \
             branch and graft only merges what it built: review their commits and \
             merge by hand."
        ),
        OnPlan::Ask { number, sha } => match call.client.enable_auto_merge(number, sha).await {
            Err(e) if e.is_retryable() => return Err(e.into()),
            result => on_reply(call.forge, result.map_err(|e| e.to_string())),
        },
    };
    Ok(message)
}

/// What turning auto-merge on does now for the project's open PR/MR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnPlan<'a> {
    /// Ask the forge to merge PR `number` at graft's commit `sha`.
    Ask { number: PrNumber, sha: &'a str },
    /// The PR is ready, but others committed to its branch: graft merges
    /// only what it built, so it asks for nothing.
    OthersCommitted,
    /// No PR, or its last sync did not validate: the next sync asks.
    NextSync,
}

pub fn on_plan(project: &Project) -> OnPlan<'_> {
    let findings: Option<Vec<Finding>> = project
        .last_findings
        .clone()
        .and_then(|f| serde_json::from_value(f).ok());
    let ready =
        project.sync_status == SyncStatus::Success && findings.as_deref().is_some_and(passed);
    // Only graft's own commit on a branch nobody else committed to.
    let ours = match (
        project.sync_branch_shared,
        project.sync_branch_sha.as_deref(),
    ) {
        (false, Some(sha)) => Some(sha),
        _ => None,
    };
    match (project.pull_request_number, ready, ours) {
        (Some(_), true, None) => OnPlan::OthersCommitted,
        (Some(number), true, Some(sha)) => OnPlan::Ask { number, sha },
        _ => OnPlan::NextSync,
    }
}

/// The reply once the forge answered graft's request to merge
/// (`Err`: its refusal, which graft retries on the next sync).
fn on_reply(forge: Forge, answer: Result<AutoMerge, String>) -> String {
    let (name, pr) = (forge.name(), forge.pr());
    match answer {
        Ok(AutoMerge::Enabled) => format!(
            "Auto-merge is on: {name} merges this {pr} once its checks pass, and \
             graft asks for it on every sync."
        ),
        Ok(AutoMerge::Merged) => format!(
            "Auto-merge is on, and nothing was pending, so this {pr} was merged \
             right away."
        ),
        Ok(AutoMerge::HeadMoved { .. }) => format!(
            "Auto-merge is on for this project, but this {pr}'s head is not the \
             commit graft pushed (someone pushed after graft), so graft did not ask \
             {name} to merge it: review the new commits and merge by hand."
        ),
        Err(e) => format!(
            "Auto-merge is on for this project, but {name} refused it for this \
             {pr} ({e}). graft asks again on the next sync."
        ),
    }
}

/// The reply to `off`: `answer` is how turning it off on the open PR/MR
/// went (`None`: there is none).
fn off_reply(forge: Forge, answer: Option<Result<(), String>>) -> String {
    let (name, pr) = (forge.name(), forge.pr());
    match answer {
        None => format!(
            "Auto-merge is off for this project: graft no longer asks {name} to merge \
             its {pr}s."
        ),
        Some(Ok(())) => format!(
            "Auto-merge is off: graft turned it off on this {pr} and no longer asks \
             {name} to merge its {pr}s."
        ),
        Some(Err(e)) => format!(
            "Auto-merge is off for this project, but {name} did not turn it off on \
             this {pr} ({e}); disable it there."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::project;
    use super::*;
    use crate::git::validate::Severity;

    #[test]
    fn only_graft_s_validated_commit_on_its_own_branch_is_asked_for() {
        let mut p = project();
        let sha = "b".repeat(40);
        assert_eq!(
            on_plan(&p),
            OnPlan::Ask {
                number: PrNumber(3),
                sha: &sha
            }
        );
        p.sync_branch_shared = true;
        assert_eq!(on_plan(&p), OnPlan::OthersCommitted);
        p.sync_branch_shared = false;
        p.sync_branch_sha = None;
        assert_eq!(on_plan(&p), OnPlan::OthersCommitted, "no commit known");
    }

    #[test]
    fn anything_not_validated_waits_for_the_next_sync() {
        let failing = vec![Finding {
            file: "main.tf".into(),
            line: None,
            message: "bad".into(),
            severity: Severity::Error,
        }];
        type Change = fn(&mut Project);
        let cases: [(&str, Change); 4] = [
            ("no PR", |p| p.pull_request_number = None),
            ("sync failed", |p| p.sync_status = SyncStatus::Error),
            ("never validated", |p| p.last_findings = None),
            ("unreadable findings", |p| {
                p.last_findings = Some(serde_json::json!("nonsense"))
            }),
        ];
        for (why, change) in cases {
            let mut p = project();
            change(&mut p);
            assert_eq!(on_plan(&p), OnPlan::NextSync, "{why}");
        }
        let mut p = project();
        p.last_findings = serde_json::to_value(failing).ok();
        assert_eq!(on_plan(&p), OnPlan::NextSync, "validation failed");
    }

    #[test]
    fn replies_use_the_forge_s_words() {
        let gitlab = on_reply(Forge::Gitlab, Ok(AutoMerge::Enabled));
        assert!(
            gitlab.contains("GitLab merges this merge request"),
            "{gitlab}"
        );
        let refused = on_reply(Forge::Github, Err("not allowed".into()));
        assert!(refused.contains("GitHub refused it for this pull request (not allowed)"));
        let moved = on_reply(Forge::Github, Ok(AutoMerge::HeadMoved { head: "c".into() }));
        assert!(moved.contains("merge by hand"), "{moved}");
        assert!(off_reply(Forge::Gitlab, None).contains("merge its merge requests"));
        let failed = off_reply(Forge::Github, Some(Err("gone".into())));
        assert!(failed.contains("did not turn it off on this pull request (gone)"));
    }
}
