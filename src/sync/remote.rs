//! The forge side of a project's git access: the client, the clone URL,
//! the credentials, and which mirror holds the repository.

use crate::context::Context;
use crate::forge::RepoClient;
use crate::git::GitAuth;
use crate::store::projects::Project;

use super::errors::SyncError;
use super::publish;

/// Everything a sync needs from the forge for git.
pub struct Remote {
    pub client: RepoClient,
    pub url: String,
    pub auth: GitAuth,
    pub key: String,
}

pub async fn remote_for(ctx: &Context, project: &Project) -> Result<Remote, SyncError> {
    let client = publish::client_for(ctx, project).await?;
    let info = client.repo_info().await?;
    let credentials = client.git_credentials().await?;
    Ok(Remote {
        key: mirror_key(project.provider.as_str(), &info.clone_url, &project.repo),
        url: info.clone_url,
        auth: GitAuth::new(&credentials.username, credentials.token.clone()),
        client,
    })
}

/// One mirror per repository *of a host*: `group/app` on two GitLab
/// instances are two repositories and must not share refs.
fn mirror_key(provider: &str, clone_url: &str, repo: &str) -> String {
    let host = reqwest::Url::parse(clone_url)
        .ok()
        .and_then(|url| {
            let host = url.host_str()?.to_ascii_lowercase();
            Some(match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            })
        })
        .unwrap_or_default();
    format!("{provider}/{host}/{}", repo.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::mirror_key;

    #[test]
    fn mirrors_are_per_host_and_repository() {
        let a = mirror_key(
            "gitlab",
            "https://gitlab.example.com/group/app.git",
            "group/app",
        );
        let b = mirror_key(
            "gitlab",
            "https://git.other.org:8443/group/app.git",
            "Group/App",
        );
        assert_eq!(a, "gitlab/gitlab.example.com/group/app");
        assert_eq!(b, "gitlab/git.other.org:8443/group/app");
        // Credentials in a URL never reach the key (or the folder name).
        let c = mirror_key("github", "https://x:secret@github.com/o/r.git", "o/r");
        assert_eq!(c, "github/github.com/o/r");
    }
}
