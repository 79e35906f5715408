//! Webhook requests signed the way GitHub and GitLab sign them.

use graft::signature::github_signature;

use super::{GITHUB_SECRET, GITLAB_SECRET, TestApp};

pub fn random_delivery_id() -> String {
    format!("{:032x}", rand::random::<u128>())
}

impl TestApp {
    /// A GitHub delivery signed with the configured secret.
    pub fn github(&self, event: &str, delivery: &str, body: &[u8]) -> reqwest::RequestBuilder {
        self.github_unsigned(event, delivery, body)
            .header("X-Hub-Signature-256", github_signature(GITHUB_SECRET, body))
    }

    pub fn github_unsigned(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
    ) -> reqwest::RequestBuilder {
        self.http
            .post(self.url("/webhooks/github"))
            .header("X-GitHub-Event", event)
            .header("X-GitHub-Delivery", delivery)
            .header("User-Agent", "GitHub-Hookshot/test")
            .header("Content-Type", "application/json")
            .body(body.to_vec())
    }

    /// A GitLab delivery with the configured token.
    pub fn gitlab(&self, event: &str, delivery: &str, body: &[u8]) -> reqwest::RequestBuilder {
        self.gitlab_with_token(event, delivery, body, Some(GITLAB_SECRET))
    }

    pub fn gitlab_with_token(
        &self,
        event: &str,
        delivery: &str,
        body: &[u8],
        token: Option<&str>,
    ) -> reqwest::RequestBuilder {
        let request = self
            .http
            .post(self.url("/webhooks/gitlab"))
            .header("X-Gitlab-Event", event)
            .header("X-Gitlab-Event-UUID", delivery)
            .header("Content-Type", "application/json")
            .body(body.to_vec());
        match token {
            Some(token) => request.header("X-Gitlab-Token", token),
            None => request,
        }
    }
}
