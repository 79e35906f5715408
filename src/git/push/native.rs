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
use std::time::{Duration, Instant};

use gix::ObjectId;
use reqwest::header::{ACCEPT, CONTENT_TYPE, HeaderValue};
use secrecy::ExposeSecret;

use super::plan::{Plan, plan};
use super::wire::Advertisement;
use super::{PushRequest, classify_push_failure, pack, wire};
use crate::git::scrub::scrub;
use crate::git::{GitAuth, GitError, local};

/// The most of a ref advertisement read: far above any real repository's
/// refs, a bound on a server that never stops.
const MAX_ADVERTISEMENT_BYTES: usize = 64 * 1024 * 1024;
/// The most of the server's report on one ref read.
const MAX_REPORT_BYTES: usize = 1024 * 1024;
/// The most of an error answer read; it only feeds the message.
const MAX_ERROR_BYTES: usize = 64 * 1024;

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

/// How long an advertisement read ahead of the push is used: the sync's
/// fetch and build in between take well under a second, a slow validation
/// longer; past this the push reads a fresh one.
const EARLY_ADVERTISEMENT_MAX_AGE: Duration = Duration::from_secs(10);

/// The server's receive-pack ref advertisement, read while the sync
/// fetches (see [`super::advertise`]): the push then starts with the
/// pack instead of a round trip.
#[derive(Debug, Clone)]
pub struct Advertised {
    ad: Advertisement,
    read_at: Instant,
}

/// Reads the advertisement for a later push of `url`, or `None` where the
/// push would not use it (not plain smart HTTP, any failure: the push
/// reads its own and reports what went wrong).
pub async fn advertise(url: &str, auth: &GitAuth) -> Option<Advertised> {
    let base = smart_http_base(url)?;
    let http = Http::new(url, auth).ok()?;
    let started = Instant::now();
    let ad = match http.advertisement(base).await {
        Ok(Ok(ad)) => ad,
        Ok(Err(_)) | Err(_) => return None,
    };
    tracing::debug!(
        advertised_ms = started.elapsed().as_millis() as u64,
        "push advertisement read ahead"
    );
    Some(Advertised {
        ad,
        read_at: Instant::now(),
    })
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
    let Ok((mirror, parents)) = parents(request).await else {
        return Ok(Outcome::Cli("the commit is not in the mirror"));
    };
    let http = Http::new(request.url, request.auth)?;
    let push = OnePush {
        http: &http,
        base,
        refname: &refname,
        request,
        parents: &parents,
        mirror: &mirror,
    };
    // An advertisement read ahead is used only to send: a refusal (its
    // branch value may have moved since) or any other plan is decided
    // again on a fresh one, exactly as without it.
    let early = request
        .advertised
        .as_ref()
        .filter(|early| early.read_at.elapsed() < EARLY_ADVERTISEMENT_MAX_AGE);
    if let Some(early) = early
        && let Plan::Send { old, base } = push.plan(&early.ad)
    {
        match push.send(&early.ad, old, base, 0).await? {
            Sent::Done => return Ok(Outcome::Done),
            Sent::Refused(_) => {
                tracing::debug!("push refused against the early advertisement; reading it again");
            }
        }
    }
    let started = Instant::now();
    let ad = match http.advertisement(base).await? {
        Ok(ad) => ad,
        Err(reason) => return Ok(Outcome::Cli(reason)),
    };
    let advertised_ms = started.elapsed().as_millis() as u64;
    let (old, base_commit) = match push.plan(&ad) {
        Plan::UpToDate => return Ok(Outcome::Done),
        Plan::Refused(text) => return Err(classify_push_failure(&text)),
        Plan::Cli(reason) => return Ok(Outcome::Cli(reason)),
        Plan::Send { old, base } => (old, base),
    };
    match push.send(&ad, old, base_commit, advertised_ms).await? {
        Sent::Done => Ok(Outcome::Done),
        Sent::Refused(text) => Err(classify_push_failure(&scrub(&text, &http.secrets))),
    }
}

/// What the server said of a pack sent.
enum Sent {
    Done,
    /// Refused, in git's words.
    Refused(String),
}

/// One push's fixed parts: where, what, and the commit's parents.
struct OnePush<'p, 'r> {
    http: &'p Http<'r>,
    base: &'p str,
    refname: &'p str,
    request: &'p PushRequest<'r>,
    parents: &'p [ObjectId],
    mirror: &'p gix::ThreadSafeRepository,
}

impl OnePush<'_, '_> {
    fn plan(&self, ad: &Advertisement) -> Plan {
        plan(
            ad,
            self.refname,
            self.request.commit,
            self.parents,
            self.request.mode,
        )
    }

    /// Sends the pack moving the branch from `old`, and reads the report.
    async fn send(
        &self,
        ad: &Advertisement,
        old: Option<ObjectId>,
        base: Option<ObjectId>,
        advertised_ms: u64,
    ) -> Result<Sent, GitError> {
        let commit = self.request.commit;
        let packed = Instant::now();
        let (objects, pack) = pack_for(self.mirror.clone(), commit, base, old).await?;
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
        let http = self.http;
        let response = http
            .send(
                http.client
                    .post(format!("{}/git-receive-pack", self.base))
                    .header(CONTENT_TYPE, wire::REQUEST_TYPE)
                    .header(ACCEPT, wire::RESULT_TYPE)
                    .body(wire::request(
                        old,
                        commit,
                        self.refname,
                        &capabilities,
                        &pack,
                    )),
            )
            .await?;
        let body = http.body(response, MAX_REPORT_BYTES, "push report").await?;
        tracing::debug!(
            objects,
            pack_bytes = pack.len(),
            advertised_ms,
            pack_ms,
            receive_ms = sent.elapsed().as_millis() as u64,
            "push sent"
        );
        let report =
            wire::parse_report(&body, sideband).map_err(|e| GitError::Other(e.to_string()))?;
        Ok(
            match wire::failure_text(&report, commit, self.refname, self.request.url) {
                None => Sent::Done,
                Some(text) => Sent::Refused(text),
            },
        )
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

/// The mirror, opened once for the whole push, and the commit's parents.
async fn parents(
    request: &PushRequest<'_>,
) -> Result<(gix::ThreadSafeRepository, Vec<ObjectId>), GitError> {
    let (path, commit) = (request.mirror.to_path_buf(), request.commit);
    tokio::task::spawn_blocking(move || {
        let repo = crate::git::mirror::open(&path)?;
        let parents = repo
            .find_commit(commit)
            .map_err(local)?
            .parent_ids()
            .map(|id| id.detach())
            .collect();
        Ok((repo.into_sync(), parents))
    })
    .await
    .map_err(local)?
}

/// How many objects, and the pack of what the commit adds to `base` (and
/// to the branch's `old` head, which the server has too, when the mirror
/// has it: graft's files from the last sync are mostly there).
async fn pack_for(
    mirror: gix::ThreadSafeRepository,
    commit: ObjectId,
    base: Option<ObjectId>,
    old: Option<ObjectId>,
) -> Result<(usize, Vec<u8>), GitError> {
    tokio::task::spawn_blocking(move || {
        let repo = mirror.to_thread_local();
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
    fn new(url: &'a str, auth: &GitAuth) -> Result<Self, GitError> {
        let mut authorization = HeaderValue::from_str(auth.authorization().expose_secret())
            .map_err(|_| GitError::Auth("the credentials do not fit in an HTTP header".into()))?;
        authorization.set_sensitive(true);
        Ok(Http {
            client: client()?,
            authorization,
            url,
            secrets: auth.secrets(),
        })
    }

    /// The server's receive-pack ref advertisement, or why the git CLI
    /// should push instead.
    async fn advertisement(
        &self,
        base: &str,
    ) -> Result<Result<Advertisement, &'static str>, GitError> {
        let response = self
            .send(
                self.client
                    .get(format!("{base}/info/refs?service=git-receive-pack")),
            )
            .await?;
        if content_type(&response) != Some(wire::ADVERTISEMENT_TYPE) {
            return Ok(Err("not a smart HTTP server"));
        }
        let body = self
            .body(response, MAX_ADVERTISEMENT_BYTES, "ref advertisement")
            .await?;
        Ok(wire::parse_advertisement(&body).map_err(|_| "an unreadable ref advertisement"))
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
        // Only the start is shown; a server that never stops is cut off.
        let said = match read_capped(response, MAX_ERROR_BYTES).await {
            Ok(Capped::Whole(bytes) | Capped::Over(bytes)) => bytes,
            Err(_) => Vec::new(),
        };
        let said = String::from_utf8_lossy(&said);
        let said: String = said.trim().chars().take(300).collect();
        let text = format!(
            "remote: {said}\nfatal: unable to access '{}': The requested URL returned error: {}",
            self.url,
            status.as_u16()
        );
        Err(classify_push_failure(&scrub(&text, &self.secrets)))
    }

    /// The whole body, or an error once it passes `limit` bytes (`what`
    /// names it in the error).
    async fn body(
        &self,
        response: reqwest::Response,
        limit: usize,
        what: &str,
    ) -> Result<Vec<u8>, GitError> {
        match read_capped(response, limit)
            .await
            .map_err(|e| self.transport_error(&e))?
        {
            Capped::Whole(bytes) => Ok(bytes),
            Capped::Over(_) => Err(GitError::Other(scrub(
                &format!(
                    "git push to {}: the server's {what} is larger than {} KiB; graft stopped \
                     reading it (is the URL a git server?)",
                    self.url,
                    limit / 1024
                ),
                &self.secrets,
            ))),
        }
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

enum Capped {
    Whole(Vec<u8>),
    /// The first `limit` bytes of a longer body.
    Over(Vec<u8>),
}

/// Reads `response`'s body chunk by chunk, never holding more than `limit`
/// bytes: a server that sends without end costs `limit`, not all memory.
async fn read_capped(
    mut response: reqwest::Response,
    limit: usize,
) -> Result<Capped, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = limit - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok(Capped::Over(body));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(Capped::Whole(body))
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
        serve(Answer::Fixed(advertisement), Answer::Fixed(report)).await
    }

    #[derive(Clone)]
    enum Answer {
        /// 200 with these bytes.
        Fixed(Vec<u8>),
        /// This status, then a chunked body that never ends (until the
        /// client hangs up).
        Endless(u16),
        /// 200 with each in turn, the last one for good.
        Series(Arc<Mutex<Vec<Vec<u8>>>>),
    }

    async fn serve(get: Answer, post: Answer) -> (String, Seen) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/acme/infra.git", listener.local_addr().unwrap());
        let seen = Seen::default();
        let record = seen.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (record, ad, report) = (record.clone(), get.clone(), post.clone());
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
                        let out = stream.get_mut();
                        let next;
                        let answer = match answer {
                            Answer::Fixed(answer) => answer,
                            Answer::Series(series) => {
                                let mut series = series.lock().unwrap();
                                next = if series.len() > 1 {
                                    series.remove(0)
                                } else {
                                    series[0].clone()
                                };
                                &next
                            }
                            Answer::Endless(status) => {
                                let head = format!(
                                    "HTTP/1.1 {status} X\r\nContent-Type: {kind}\r\nTransfer-Encoding: chunked\r\n\r\n"
                                );
                                let chunk =
                                    [b"10000\r\n".as_slice(), &[b'0'; 0x10000], b"\r\n"].concat();
                                if out.write_all(head.as_bytes()).await.is_ok() {
                                    while out.write_all(&chunk).await.is_ok() {}
                                }
                                return;
                            }
                        };
                        let reply = format!(
                            "HTTP/1.1 200 OK\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\r\n",
                            answer.len()
                        );
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

    /// A mirror with `main` at `base`, graft's branch at `old` and the
    /// commit `new` on `base` to push; what a server says to it.
    struct Fixture {
        _dir: tempfile::TempDir,
        mirror: std::path::PathBuf,
        base: ObjectId,
        old: ObjectId,
        new: ObjectId,
        advertisement: Vec<u8>,
        report: Vec<u8>,
    }

    fn fixture() -> Fixture {
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
        Fixture {
            _dir: dir,
            mirror,
            base,
            old,
            new,
            advertisement,
            report,
        }
    }

    /// Pushes `f.new` onto graft's branch (with its lease) to `url`.
    async fn push_fixture(f: &Fixture, url: &str) -> Result<Outcome, GitError> {
        let auth = GitAuth::new("x-access-token", "sekret-token".to_string().into());
        push(&PushRequest {
            mirror: &f.mirror,
            url,
            auth: &auth,
            commit: f.new,
            branch: "graft/p",
            mode: PushMode::ForceWithLease {
                expected: Some(f.old),
            },
            timeout: Duration::from_secs(30),
            advertised: None,
        })
        .await
    }

    #[tokio::test]
    async fn an_endless_ref_advertisement_is_cut_off() {
        let f = fixture();
        let (url, _) = serve(Answer::Endless(200), Answer::Fixed(f.report.clone())).await;
        let error = push_fixture(&f, &url).await.unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("ref advertisement is larger than 65536 KiB"),
            "{text}"
        );
    }

    #[tokio::test]
    async fn an_endless_push_report_is_cut_off() {
        let f = fixture();
        let (url, seen) = serve(Answer::Fixed(f.advertisement.clone()), Answer::Endless(200)).await;
        let error = push_fixture(&f, &url).await.unwrap_err();
        let text = error.to_string();
        assert!(
            text.contains("push report is larger than 1024 KiB"),
            "{text}"
        );
        assert_eq!(seen.lock().unwrap().len(), 2, "the pack was sent");
    }

    #[tokio::test]
    async fn an_endless_error_answer_is_cut_off_and_still_classified() {
        let f = fixture();
        let (url, _) = serve(Answer::Endless(503), Answer::Fixed(f.report.clone())).await;
        let error = push_fixture(&f, &url).await.unwrap_err();
        assert!(matches!(error, GitError::Network(_)), "{error:?}");
        let text = error.to_string();
        assert!(text.contains("returned error: 503"), "{text}");
        assert!(
            text.len() < 2_000,
            "only the start is shown: {} bytes",
            text.len()
        );
    }

    #[test]
    fn the_authorization_value_is_the_header_without_its_name() {
        let auth = GitAuth::new("x-access-token", "sekret-token".to_string().into());
        assert_eq!(
            format!("Authorization: {}", auth.authorization().expose_secret()),
            auth.header()
        );
    }

    #[tokio::test]
    async fn sends_what_the_commit_adds_with_the_lease_as_the_old_value() {
        let f = fixture();
        let (mirror, base, old, new) = (f.mirror.clone(), f.base, f.old, f.new);
        let (url, seen) = server(f.advertisement.clone(), f.report.clone()).await;
        let auth = GitAuth::new("x-access-token", "sekret-token".to_string().into());
        let request = |mode| PushRequest {
            mirror: &mirror,
            url: &url,
            auth: &auth,
            commit: new,
            branch: "graft/p",
            mode,
            timeout: Duration::from_secs(10),
            advertised: None,
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

    fn lease_push<'a>(
        f: &'a Fixture,
        url: &'a str,
        auth: &'a GitAuth,
        advertised: Option<Advertised>,
    ) -> PushRequest<'a> {
        PushRequest {
            mirror: &f.mirror,
            url,
            auth,
            commit: f.new,
            branch: "graft/p",
            mode: PushMode::ForceWithLease {
                expected: Some(f.old),
            },
            timeout: Duration::from_secs(10),
            advertised,
        }
    }

    fn heads(requests: &Seen) -> Vec<String> {
        let requests = requests.lock().unwrap();
        requests
            .iter()
            .map(|(head, _)| head.split(' ').take(2).collect::<Vec<_>>().join(" "))
            .collect()
    }

    #[tokio::test]
    async fn an_advertisement_read_ahead_lets_the_push_start_with_the_pack() {
        let f = fixture();
        let (url, seen) = server(f.advertisement.clone(), f.report.clone()).await;
        let auth = GitAuth::new("x-access-token", "sekret-token".to_string().into());

        let early = advertise(&url, &auth).await.expect("advertised");
        assert_eq!(heads(&seen).len(), 1);
        let outcome = push(&lease_push(&f, &url, &auth, Some(early)))
            .await
            .unwrap();

        assert!(matches!(outcome, Outcome::Done), "{outcome:?}");
        assert_eq!(
            heads(&seen),
            [
                "GET /acme/infra.git/info/refs?service=git-receive-pack",
                "POST /acme/infra.git/git-receive-pack"
            ]
        );
    }

    #[tokio::test]
    async fn a_refusal_on_an_early_advertisement_is_decided_again_on_a_fresh_one() {
        let f = fixture();
        // Between the early read and the push, someone moved graft's
        // branch: the server refuses the old value, and the fresh
        // advertisement shows the branch elsewhere (the lease is stale).
        let mut moved = pkt_lines(&["# service=git-receive-pack\n".into()]);
        moved.extend(pkt_lines(&[
            format!(
                "{} refs/heads/main\0report-status side-band-64k quiet agent=git/2\n",
                f.base
            ),
            format!("{} refs/heads/graft/p\n", f.base),
        ]));
        let status = pkt_lines(&[
            "unpack ok\n".into(),
            "ng refs/heads/graft/p failed to update ref\n".into(),
        ]);
        let mut refused = wire::pkt_line(&[&[1u8][..], &status].concat());
        refused.extend_from_slice(b"0000");
        let ads = Answer::Series(Arc::new(Mutex::new(vec![f.advertisement.clone(), moved])));
        let (url, seen) = serve(ads, Answer::Fixed(refused)).await;
        let auth = GitAuth::new("x-access-token", "sekret-token".to_string().into());

        let early = advertise(&url, &auth).await.expect("advertised");
        let error = push(&lease_push(&f, &url, &auth, Some(early)))
            .await
            .unwrap_err();

        // As without the early read: a stale lease, nothing sent again.
        assert!(matches!(error, GitError::NonFastForward(_)), "{error:?}");
        let heads = heads(&seen);
        assert_eq!(heads.len(), 3, "{heads:?}");
        assert!(heads[2].starts_with("GET "), "{heads:?}");
    }

    #[tokio::test]
    async fn no_advertisement_is_read_ahead_where_the_git_cli_would_push() {
        let auth = GitAuth::new("x-access-token", "sekret-token".to_string().into());
        assert!(advertise("file:///srv/infra.git", &auth).await.is_none());
        assert!(
            advertise("https://user:pw@github.com/acme/infra.git", &auth)
                .await
                .is_none()
        );
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
