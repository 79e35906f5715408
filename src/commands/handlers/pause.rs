//! `/graft pause`: stop automatic syncs; syncs on request still run.

use crate::sync::errors::SyncError;

use super::super::reply::Outcome;
use super::{Call, refresh_sticky};

pub async fn run(call: &Call<'_>) -> Result<Outcome, SyncError> {
    if call.project.paused {
        return Ok(call.done(already(call.prefix)));
    }
    let id = call.project_id();
    call.ctx.store.set_paused(id, true, call.now).await?;
    refresh_sticky(call.ctx, id).await;
    Ok(call.done(paused(call.prefix)))
}

fn already(prefix: &str) -> String {
    format!("Automatic syncs are already paused. `{prefix} resume` turns them back on.")
}

fn paused(prefix: &str) -> String {
    format!(
        "Paused: graft no longer syncs this project on its own. `{prefix} sync` \
         still syncs on request; `{prefix} resume` turns automatic syncs back on."
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_say_how_to_undo_with_the_prefix() {
        assert!(paused("!g").contains("`!g sync` still syncs on request; `!g resume`"));
        assert!(already("!g").contains("`!g resume` turns them back on"));
    }
}
