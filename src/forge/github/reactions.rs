//! Reactions on issue comments: graft's 👀 / 👍 / 😕 on slash commands, and
//! taking back its own earlier one when an edited comment ran again.

use http::Method;
use serde::Deserialize;
use serde_json::json;

use super::{GithubRepo, UserJson};
use crate::forge::error::ForgeError;
use crate::forge::pages::Pages;
use crate::forge::{Reaction, Result};

/// GitHub's name for a reaction (`content`).
pub fn reaction_content(reaction: Reaction) -> &'static str {
    match reaction {
        Reaction::Eyes => "eyes",
        Reaction::ThumbsUp => "+1",
        Reaction::ThumbsDown => "-1",
        Reaction::Confused => "confused",
        Reaction::Rocket => "rocket",
        Reaction::Heart => "heart",
        Reaction::Hooray => "hooray",
        Reaction::Laugh => "laugh",
    }
}

#[derive(Deserialize)]
struct ReactionJson {
    id: i64,
    user: Option<UserJson>,
}

impl GithubRepo {
    /// Adds `reaction` (GitHub answers 200 when it is there already).
    pub async fn react(&self, _number: i64, comment_id: i64, reaction: Reaction) -> Result<()> {
        let uri = self.path(&format!("/issues/comments/{comment_id}/reactions"));
        let body = json!({"content": reaction_content(reaction)});
        self.call("adding a reaction", Method::POST, &uri, Some(&body))
            .await
            .map(|_| ())
    }

    /// Takes back graft's own `reaction` on the comment; others' reactions
    /// stay, and none there is nothing to do.
    pub async fn unreact(&self, _number: i64, comment_id: i64, reaction: Reaction) -> Result<()> {
        let bot = self.app.bot_login().await?;
        let uri = self.path(&format!(
            "/issues/comments/{comment_id}/reactions?content={}&per_page=100",
            super::segment(reaction_content(reaction))
        ));
        let reactions: Vec<ReactionJson> = self.get_all("listing reactions", &uri).await?;
        let own = reactions
            .iter()
            .filter(|r| r.user.as_ref().is_some_and(|u| u.login == bot));
        for reaction in own {
            let uri = self.path(&format!(
                "/issues/comments/{comment_id}/reactions/{}",
                reaction.id
            ));
            match self
                .call("removing a reaction", Method::DELETE, &uri, None)
                .await
            {
                Ok(_) | Err(ForgeError::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
