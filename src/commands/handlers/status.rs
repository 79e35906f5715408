//! `/graft status`: rewrite the sticky status comment; no reply.

use crate::sync::errors::SyncError;
use crate::sync::ops;

use super::super::reply::Outcome;
use super::Call;

pub async fn run(call: &Call<'_>) -> Result<Outcome, SyncError> {
    ops::refresh_status(call.ctx, call.project_id()).await?;
    Ok(Outcome {
        reply: false,
        ..call.done("Refreshed the status comment.".to_string())
    })
}
