//! graft's own push over smart HTTP, for the usual case: one commit on a
//! commit the server has as a ref (the target's head or graft's branch).
//! The pack is the commit's new objects, known from its tree and its
//! parent's; git's push from the shallow mirror instead walks the parent's
//! whole tree to find them (~70 ms on a 100k-file tree) and tells the
//! server the mirror's shallow boundary. Anything else (another transport,
//! an old server, history to work out) is left to the git CLI.
//!
//! Same terms as the CLI push: the credentials in one `Authorization`
//! header, no redirect followed, no proxy, git's wording of failures.

use std::sync::OnceLock;
use std::time::Instant;

use gix::ObjectId;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};

use super::plan::{Plan, plan};
use super::{PushRequest, classify_push_failure, pack, wire};
use crate::git::scrub::scrub;
use crate::git::{GitError, local};

#[derive(Debug)]
pub enum Outcome {
    Done,
    /// Not pushed: the git CLI takes it, for this reason.
    Cli(&'static str),
}

fn client() -> Result<&'static reqwest::Client, GitError> {
    static CLIENT: OnceLock<Result<reqwest::Client, String>> = OnceLock::new();
    CLIENT
        .get_or_init(|| {
            crate::crypto::install_crypto_provider();
            reqwest::Client::builder()
                .user_agent(concat!("git/2.0 (graft ", env!("CARGO_PKG_VERSION"), ")"))
                .redirect(reqwest::redirect::Policy::none())
                .no_proxy()
                .http1_only()
                .connect_timeout(std::time::Duration::from_secs(20))
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| GitError::Local(format!("cannot set up the HTTP client: {e}")))
}

/// Pushes as [`super::push`] does, or says why the git CLI should.
pub async fn push(request: &PushRequest<'_>) -> Result<Outcome, GitError> {
    let Some(base) = smart_http_base(request.url) else {
        return Ok(Outcome::Cli("not an http(s) URL without credentials"));
    };
    let refname = format!("refs/heads/{}", request.branch);
    if gix::refs::FullName::try_from(refname.as_str()).is_err() {
        return Ok(Outcome::Cli("not a valid branch name"));
    }
    let Ok(parents) = parents(request).await else {
        return Ok(Outcome::Cli("the commit is not in the mirror"));
    };
    let http = Http::new(request)?;
    let started = Instant::now();
    let response = http
        .send(
            http.client
                .get(format!("{base}/info/refs?service=git-receive-pack")),
        )
        .await?;
    if content_type(&response) != Some(wire::ADVERTISEMENT_TYPE) {
        return Ok(Outcome::Cli("not a smart HTTP server"));
    }
    let body = http.body(response).await?;
    let Ok(ad) = wire::parse_advertisement(&body) else {
        return Ok(Outcome::Cli("an unreadable ref advertisement"));
    };
    let advertised_ms = started.elapsed().as_millis() as u64;
    let (old, base_commit) = match plan(&ad, &refname, request.commit, &parents, request.mode) {
        Plan::UpToDate => return Ok(Outcome::Done),
        Plan::Refused(text) => return Err(classify_push_failure(&text)),
        Plan::Cli(reason) => return Ok(Outcome::Cli(reason)),
        Plan::Send { old, base } => (old, base),
    };
    let packed = Instant::now();
    let (objects, pack) = pack_for(request, base_commit, old).await?;
    let pack_ms = packed.elapsed().as_millis() as u64;
    let sideband = ad.capability("side-band-64k").is_some();
    let mut capabilities = vec!["report-status".to_string()];
    for wanted in ["side-band-64k", "quiet"] {
        if ad.capability(wanted).is_some() {
            capabilities.push(wanted.to_string());
        }
    }
    if ad.capability("agent").is_some() {
        capabilities.push(concat!("agent=graft/", env!("CARGO_PKG_VERSION")).to_string());
    }
    let sent = Instant::now();
    let response = http
        .send(
            http.client
                .post(format!("{base}/git-receive-pack"))
                .header(CONTENT_TYPE, wire::REQUEST_TYPE)
                .header(ACCEPT, wire::RESULT_TYPE)
                .body(wire::request(
                    old,
                    request.commit,
                    &refname,
                    &capabilities,
                    &pack,
                )),
        )
        .await?;
    let body = http.body(response).await?;
    tracing::debug!(
        objects,
        pack_bytes = pack.len(),
        advertised_ms,
        pack_ms,
        receive_ms = sent.elapsed().as_millis() as u64,
        "push sent"
    );
    let report = wire::parse_report(&body, sideband).map_err(|e| GitError::Other(e.to_string()))?;
    match wire::failure_text(&report, request.commit, &refname, request.url) {
        None => Ok(Outcome::Done),
        Some(text) => Err(classify_push_failure(&scrub(&text, &http.secrets))),
    }
}

/// `url` without a trailing slash, if it is an http(s) URL that carries no
/// credentials, query or fragment of its own.
fn smart_http_base(url: &str) -> Option<&str> {
    let parsed = reqwest::Url::parse(url).ok()?;
    let plain = matches!(parsed.scheme(), "http" | "https")
        && parsed.username().is_empty()
        && parsed.password().is_none()
        && parsed.query().is_none()
        && parsed.fragment().is_none();
    plain.then(|| url.trim_end_matches('/'))
}

async fn parents(request: &PushRequest<'_>) -> Result<Vec<ObjectId>, GitError> {
    let (path, commit) = (request.mirror.to_path_buf(), request.commit);
    tokio::task::spawn_blocking(move || {
        let repo = crate::git::mirror::open(&path)?;
        let commit = repo.find_commit(commit).map_err(local)?;
        Ok(commit.parent_ids().map(|id| id.detach()).collect())
    })
    .await
    .map_err(local)?
}

/// How many objects, and the pack of what the commit adds to `base` (and
/// to the branch's `old` head, which the server has too, when the mirror
/// has it: graft's files from the last sync are mostly there).
async fn pack_for(
    request: &PushRequest<'_>,
    base: Option<ObjectId>,
    old: Option<ObjectId>,
) -> Result<(usize, Vec<u8>), GitError> {
    let (path, commit) = (request.mirror.to_path_buf(), request.commit);
    tokio::task::spawn_blocking(move || {
        let repo = crate::git::mirror::open(&path)?;
        let ids = match base {
            Some(base) => {
                let mut bases = vec![base];
                let readable = |id: &ObjectId| {
                    let tree = repo.find_commit(*id).ok().and_then(|c| c.tree_id().ok());
                    tree.is_some_and(|tree| repo.find_tree(tree).is_ok())
                };
                bases.extend(old.filter(readable));
                pack::added_objects(&repo, commit, &bases)?
            }
            None => Vec::new(),
        };
        Ok((ids.len(), pack::write(&repo, &ids)?))
    })
    .await
    .map_err(local)?
}

fn content_type(response: &reqwest::Response) -> Option<&str> {
    let value = response.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    Some(value.split(';').next().unwrap_or(value).trim())
}

/// The requests of one push, with its credentials and its URL for errors.
struct Http<'a> {
    client: &'static reqwest::Client,
    authorization: HeaderValue,
    url: &'a str,
    secrets: Vec<String>,
}

impl<'a> Http<'a> {
    fn new(request: &PushRequest<'a>) -> Result<Self, GitError> {
        let header = request.auth.header();
        let value = header.trim_start_matches("Authorization:").trim();
        let mut authorization = HeaderValue::from_str(value)
            .map_err(|_| GitError::Auth("the credentials do not fit in an HTTP header".into()))?;
        authorization.set_sensitive(true);
        Ok(Http {
            client: client()?,
            authorization,
            url: request.url,
            secrets: request.auth.secrets(),
        })
    }

    /// Sends with the credentials; a status other than 2xx (a redirect
    /// included: none is followed) is the push's failure.
    async fn send(&self, builder: reqwest::RequestBuilder) -> Result<reqwest::Response, GitError> {
        let response = builder
            .header(reqwest::header::AUTHORIZATION, self.authorization.clone())
            .send()
            .await
            .map_err(|e| self.transport_error(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let said = response.text().await.unwrap_or_default();
        let said: String = said.trim().chars().take(300).collect();
        let text = format!(
            "remote: {said}\nfatal: unable to access '{}': The requested URL returned error: {}",
            self.url,
            status.as_u16()
        );
        Err(classify_push_failure(&scrub(&text, &self.secrets)))
    }

    async fn body(&self, response: reqwest::Response) -> Result<Vec<u8>, GitError> {
        Ok(response
            .bytes()
            .await
            .map_err(|e| self.transport_error(&e))?
            .to_vec())
    }

    fn transport_error(&self, error: &reqwest::Error) -> GitError {
        let text = scrub(&format!("git push to {}: {error}", self.url), &self.secrets);
        if error.is_timeout() {
            GitError::Network(format!("{text} (timed out)"))
        } else {
            GitError::Network(text)
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

    use super::super::PushMode;
    use super::super::pack::tests::commit;
    use super::*;
    use crate::git::GitAuth;

    type Seen = Arc<Mutex<Vec<(String, Vec<u8>)>>>;

    /// Answers every GET with `advertisement` and every POST with `report`
    /// (HTTP/1.1, kept alive), keeping each request's head and body.
    async fn server(advertisement: Vec<u8>, report: Vec<u8>) -> (String, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/acme/infra.git", listener.local_addr().unwrap());
        let seen = Seen::default();
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (record, ad, report) = (record.clone(), advertisement.clone(), report.clone());
                tokio::spawn(async move {
                    let mut stream = tokio::io::BufReader::new(stream);
                    loop {
                        let mut head = String::new();
                        loop {
                            let mut line = String::new();
                            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                                return;
                            }
                            if line == "\r\n" {
                                break;
                            }
                            head.push_str(&line);
                        }
                        let length = head
                            .lines()
                            .find_map(|l| {
                                let l = l.to_ascii_lowercase();
                                l.strip_prefix("content-length:")
                                    .map(|v| v.trim().parse::<usize>().unwrap())
                            })
                            .unwrap_or(0);
                        let mut body = vec![0; length];
                        stream.read_exact(&mut body).await.unwrap();
                        let (kind, answer) = if head.starts_with("GET") {
                            (wire::ADVERTISEMENT_TYPE, &ad)
                        } else {
                            (wire::RESULT_TYPE, &report)
                        };
                        record.lock().unwrap().push((head, body));
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
                            answer.len()
                        );
                        let out = stream.get_mut();
                        out.write_all(reply.as_bytes()).await.unwrap();
                        out.write_all(answer).await.unwrap();
                    }
                });
            }
        });
        (url, seen)
    }

    fn pkt_lines(lines: &[String]) -> Vec<u8> {
        let mut out: Vec<u8> = lines
            .iter()
            .flat_map(|l| wire::pkt_line(l.as_bytes()))
            .collect();
        out.extend_from_slice(b"0000");
        out
    }

    #[tokio::test]
    async fn sends_what_the_commit_adds_with_the_lease_as_the_old_value() {
        let dir = tempfile::tempdir().unwrap();
        let mirror = dir.path().join("m.git");
        let repo = gix::init_bare(&mirror).unwrap();
        let base = commit(&repo, None, &[("src/a", "a"), ("src/b", "b")]);
        let old = commit(&repo, Some(base), &[("infra/x.tf", "0")]);
        let new = commit(&repo, Some(base), &[("infra/x.tf", "1")]);
        let mut advertisement = pkt_lines(&["# service=git-receive-pack\n".into()]);
        advertisement.extend(pkt_lines(&[
            format!("{base} refs/heads/main\0report-status side-band-64k quiet agent=git/2\n"),
            format!("{old} refs/heads/graft/p\n"),
        ]));
        let status = pkt_lines(&["unpack ok\n".into(), "ok refs/heads/graft/p\n".into()]);
        let mut report = wire::pkt_line(&[&[1u8][..], &status].concat());
        report.extend_from_slice(b"0000");
        let (url, seen) = server(advertisement, report).await;
        let auth = GitAuth::new("x-access-token", "sekret-token".to_string().into());
        let request = |mode| PushRequest {
            mirror: &mirror,
            url: &url,
            auth: &auth,
            commit: new,
            branch: "graft/p",
            mode,
            timeout: Duration::from_secs(10),
        };
        let lease = |expected| PushMode::ForceWithLease { expected };

        let outcome = push(&request(lease(Some(old)))).await.unwrap();
        assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
        let requests = seen.lock().unwrap().clone();
        assert_eq!(requests.len(), 2);
        let (get, post) = (&requests[0].0, &requests[1].0);
        assert!(
            get.starts_with("GET /acme/infra.git/info/refs?service=git-receive-pack "),
            "{get}"
        );
        assert!(
            post.starts_with("POST /acme/infra.git/git-receive-pack "),
            "{post}"
        );
        assert!(
            post.contains(&auth.header()["Authorization: ".len()..]),
            "{post}"
        );
        let body = &requests[1].1;
        let length = usize::from_str_radix(std::str::from_utf8(&body[..4]).unwrap(), 16).unwrap();
        let command = String::from_utf8_lossy(&body[4..length]);
        assert!(
            command.starts_with(&format!(
                "{old} {new} refs/heads/graft/p\0report-status side-band-64k quiet"
            )),
            "{command}"
        );
        let pack = &body[length + 4..];
        assert_eq!(&body[length..length + 4], b"0000");
        assert_eq!(&pack[..4], b"PACK");
        // The commit, its root tree, `infra` and the new blob.
        assert_eq!(u32::from_be_bytes(pack[8..12].try_into().unwrap()), 4);

        // A stale lease is refused without sending anything.
        let stale = push(&request(lease(Some(base)))).await.unwrap_err();
        assert!(matches!(stale, GitError::NonFastForward(_)), "{stale:?}");
        // Whether a plain push is a fast-forward from elsewhere: git's call.
        let other = push(&request(PushMode::FastForward)).await.unwrap();
        assert!(matches!(other, Outcome::Cli(_)), "{other:?}");
        let posts = seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(h, _)| h.starts_with("POST"))
            .count();
        assert_eq!(posts, 1);
    }

    #[test]
    fn only_plain_http_urls_are_pushed_natively() {
        assert_eq!(
            smart_http_base("https://github.com/acme/infra.git/"),
            Some("https://github.com/acme/infra.git")
        );
        assert_eq!(
            smart_http_base("http://127.0.0.1:9/acme/infra.git"),
            Some("http://127.0.0.1:9/acme/infra.git")
        );
        for other in [
            "file:///srv/infra.git",
            "ssh://git@github.com/acme/infra.git",
            "https://user:secret@github.com/acme/infra.git",
            "https://github.com/acme/infra.git?x=1",
            "/srv/infra.git",
        ] {
            assert_eq!(smart_http_base(other), None, "{other}");
        }
    }
}
