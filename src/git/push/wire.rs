//! What a push of one ref says over git's smart HTTP protocol (v0, the
//! only one `receive-pack` speaks): pkt-lines, the server's ref
//! advertisement, the request, and the server's report, side-band
//! demultiplexed. Pure: the exchange itself is in `native`.

use gix::ObjectId;

pub const ADVERTISEMENT_TYPE: &str = "application/x-git-receive-pack-advertisement";
pub const REQUEST_TYPE: &str = "application/x-git-receive-pack-request";
pub const RESULT_TYPE: &str = "application/x-git-receive-pack-result";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unreadable answer from the git server: {0}")]
pub struct WireError(pub String);

fn wire(message: impl Into<String>) -> WireError {
    WireError(message.into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    Data(&'a [u8]),
    Flush,
}

/// Splits `input` into pkt-lines (delimiter and response-end packets, which
/// v0 does not use, are refused).
pub fn packets(mut input: &[u8]) -> Result<Vec<Packet<'_>>, WireError> {
    let mut out = Vec::new();
    while !input.is_empty() {
        let head = input
            .get(..4)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| usize::from_str_radix(h, 16).ok())
            .ok_or_else(|| wire("a pkt-line without a length"))?;
        match head {
            0 => {
                out.push(Packet::Flush);
                input = &input[4..];
            }
            1..=3 => return Err(wire(format!("unexpected special packet {head:04x}"))),
            len => {
                let data = input
                    .get(4..len)
                    .ok_or_else(|| wire("a pkt-line cut short"))?;
                out.push(Packet::Data(data));
                input = &input[len..];
            }
        }
    }
    Ok(out)
}

/// `payload` as one pkt-line.
pub fn pkt_line(payload: &[u8]) -> Vec<u8> {
    let mut line = format!("{:04x}", payload.len() + 4).into_bytes();
    line.extend_from_slice(payload);
    line
}

fn text(data: &[u8]) -> &str {
    let text = std::str::from_utf8(data).unwrap_or("");
    text.strip_suffix('\n').unwrap_or(text)
}

/// The refs and capabilities `receive-pack` advertised.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Advertisement {
    pub refs: Vec<(String, ObjectId)>,
    /// Commits the server has without a ref here (`.have`: alternates).
    pub haves: Vec<ObjectId>,
    pub capabilities: Vec<String>,
}

impl Advertisement {
    pub fn ref_value(&self, name: &str) -> Option<ObjectId> {
        self.refs.iter().find(|(n, _)| n == name).map(|(_, id)| *id)
    }

    /// The server holds `id` and everything it reaches: some ref (or
    /// alternate) points at it.
    pub fn has_tip(&self, id: ObjectId) -> bool {
        self.refs.iter().any(|(_, tip)| *tip == id) || self.haves.contains(&id)
    }

    pub fn capability(&self, name: &str) -> Option<&str> {
        self.capabilities.iter().find_map(|c| {
            if c == name {
                Some("")
            } else {
                c.strip_prefix(name)?.strip_prefix('=')
            }
        })
    }
}

/// Reads the answer to `GET info/refs?service=git-receive-pack`.
pub fn parse_advertisement(body: &[u8]) -> Result<Advertisement, WireError> {
    let mut ad = Advertisement::default();
    let mut first = true;
    for packet in packets(body)? {
        let Packet::Data(data) = packet else {
            continue; // after the service line, and at the end
        };
        let line = text(data);
        if line.starts_with("# service=") {
            continue;
        }
        let (line, capabilities) = match line.split_once('\0') {
            Some((line, caps)) if first => (line, Some(caps)),
            Some(_) => return Err(wire("capabilities after the first ref")),
            None => (line, None),
        };
        first = false;
        if let Some(caps) = capabilities {
            ad.capabilities = caps.split(' ').map(str::to_string).collect();
        }
        if line.starts_with("shallow ") {
            continue;
        }
        let (id, name) = line
            .split_once(' ')
            .ok_or_else(|| wire(format!("a ref line without a name: {line}")))?;
        let id = ObjectId::from_hex(id.as_bytes())
            .map_err(|_| wire(format!("not an object id: {id}")))?;
        match name {
            "capabilities^{}" => {} // an empty repository
            ".have" => ad.haves.push(id),
            name => ad.refs.push((name.to_string(), id)),
        }
    }
    if first {
        return Err(wire("no refs and no capabilities"));
    }
    Ok(ad)
}

/// The body of `POST git-receive-pack`: set `refname` from `old` (`None`:
/// it does not exist) to `new`, asking for `capabilities`, then the pack.
pub fn request(
    old: Option<ObjectId>,
    new: ObjectId,
    refname: &str,
    capabilities: &[String],
    pack: &[u8],
) -> Vec<u8> {
    let old = old.unwrap_or_else(|| ObjectId::null(new.kind()));
    let command = format!("{old} {new} {refname}\0{}", capabilities.join(" "));
    let mut body = pkt_line(command.as_bytes());
    body.extend_from_slice(b"0000");
    body.extend_from_slice(pack);
    body
}

/// What the server said about a push.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Report {
    /// `None`: the server stopped before saying.
    pub unpack: Option<Result<(), String>>,
    /// Each ref's outcome (`Err`: the reason it was refused).
    pub refs: Vec<(String, Result<(), String>)>,
    /// What hooks and the server printed (side band 2).
    pub messages: String,
    /// A fatal error (side band 3).
    pub fatal: Option<String>,
}

/// Reads the answer to the `POST`; `sideband` if it was asked for.
pub fn parse_report(body: &[u8], sideband: bool) -> Result<Report, WireError> {
    let mut report = Report::default();
    let status = if sideband {
        let mut status = Vec::new();
        for packet in packets(body)? {
            let Packet::Data(data) = packet else { continue };
            match data.split_first() {
                Some((1, rest)) => status.extend_from_slice(rest),
                Some((2, rest)) => report.messages.push_str(&String::from_utf8_lossy(rest)),
                Some((3, rest)) => report.fatal = Some(text(rest).to_string()),
                _ => return Err(wire("a packet on no known side band")),
            }
        }
        status
    } else {
        body.to_vec()
    };
    for packet in packets(&status)? {
        let Packet::Data(data) = packet else { continue };
        let line = text(data);
        if let Some(outcome) = line.strip_prefix("unpack ") {
            report.unpack = Some(match outcome {
                "ok" => Ok(()),
                reason => Err(reason.to_string()),
            });
        } else if let Some(name) = line.strip_prefix("ok ") {
            report.refs.push((name.to_string(), Ok(())));
        } else if let Some(rest) = line.strip_prefix("ng ") {
            let (name, reason) = rest.split_once(' ').unwrap_or((rest, "failed"));
            report
                .refs
                .push((name.to_string(), Err(reason.to_string())));
        }
    }
    Ok(report)
}

/// `None` when the server took `new` for `refname`; otherwise what went
/// wrong, worded as git's own push prints it (what the failure classes
/// are told apart by).
pub fn failure_text(report: &Report, new: ObjectId, refname: &str, url: &str) -> Option<String> {
    let status = report.refs.iter().find(|(name, _)| name == refname);
    if matches!(report.unpack, Some(Ok(()))) && matches!(status, Some((_, Ok(())))) {
        return None;
    }
    let mut text = String::new();
    for line in report
        .messages
        .split(['\n', '\r'])
        .filter(|l| !l.is_empty())
    {
        text.push_str(&format!("remote: {line}\n"));
    }
    if let Some(fatal) = &report.fatal {
        text.push_str(&format!("remote error: {fatal}\n"));
    }
    if let Some(Err(reason)) = &report.unpack {
        text.push_str(&format!("error: remote unpack failed: {reason}\n"));
    }
    let reason = match status {
        Some((_, Err(reason))) => reason.as_str(),
        Some((_, Ok(()))) => "unpacker error",
        None => "remote failed to report status",
    };
    text.push_str(&format!(
        " ! [remote rejected] {new} -> {refname} ({reason})\nerror: failed to push some refs to '{url}'"
    ));
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(hex: char) -> ObjectId {
        ObjectId::from_hex(hex.to_string().repeat(40).as_bytes()).unwrap()
    }

    fn lines(lines: &[&str]) -> Vec<u8> {
        let mut out = Vec::new();
        for line in lines {
            match *line {
                "0000" => out.extend_from_slice(b"0000"),
                line => out.extend(pkt_line(line.as_bytes())),
            }
        }
        out
    }

    #[test]
    fn reads_an_advertisement_as_http_backend_sends_it() {
        let body = lines(&[
            "# service=git-receive-pack\n",
            "0000",
            &format!(
                "{} refs/heads/main\0report-status delete-refs side-band-64k quiet ofs-delta agent=git/2.47.3\n",
                id('a')
            ),
            &format!("{} refs/pull/1/head\n", id('b')),
            &format!("{} .have\n", id('c')),
            "0000",
        ]);
        let ad = parse_advertisement(&body).unwrap();
        assert_eq!(ad.ref_value("refs/heads/main"), Some(id('a')));
        assert_eq!(ad.ref_value("refs/heads/other"), None);
        assert!(ad.has_tip(id('b')) && ad.has_tip(id('c')) && !ad.has_tip(id('d')));
        assert_eq!(ad.capability("report-status"), Some(""));
        assert_eq!(ad.capability("agent"), Some("git/2.47.3"));
        assert_eq!(ad.capability("report"), None);
    }

    #[test]
    fn an_empty_repository_advertises_capabilities_only() {
        let zero = "0".repeat(40);
        let body = lines(&[
            "# service=git-receive-pack\n",
            "0000",
            &format!("{zero} capabilities^{{}}\0report-status\n"),
            "0000",
        ]);
        let ad = parse_advertisement(&body).unwrap();
        assert!(ad.refs.is_empty());
        assert_eq!(ad.capability("report-status"), Some(""));
    }

    #[test]
    fn garbage_is_not_an_advertisement() {
        assert!(parse_advertisement(b"<html>sign in</html>").is_err());
        assert!(parse_advertisement(b"").is_err());
        assert!(parse_advertisement(&lines(&["# service=git-receive-pack\n", "0000"])).is_err());
        assert!(parse_advertisement(b"00ffshort").is_err());
    }

    #[test]
    fn the_request_names_the_old_and_new_value_then_carries_the_pack() {
        let body = request(
            None,
            id('b'),
            "refs/heads/x",
            &["report-status".into(), "quiet".into()],
            b"PACK",
        );
        let expected = format!(
            "{} {} refs/heads/x\0report-status quiet",
            "0".repeat(40),
            id('b')
        );
        let mut want = pkt_line(expected.as_bytes());
        want.extend_from_slice(b"0000PACK");
        assert_eq!(body, want);
    }

    fn banded(band: u8, payload: &[u8]) -> Vec<u8> {
        let mut data = vec![band];
        data.extend_from_slice(payload);
        pkt_line(&data)
    }

    #[test]
    fn a_report_is_read_through_the_side_band() {
        let status = lines(&[
            "unpack ok\n",
            "ng refs/heads/main protected branch hook declined\n",
            "0000",
        ]);
        let mut body = banded(2, b"error: GH006: Protected branch update failed\n");
        body.extend(banded(1, &status[..10]));
        body.extend(banded(1, &status[10..]));
        body.extend_from_slice(b"0000");
        let report = parse_report(&body, true).unwrap();
        assert_eq!(report.unpack, Some(Ok(())));
        let refused = Err("protected branch hook declined".to_string());
        assert_eq!(report.refs, vec![("refs/heads/main".to_string(), refused)]);
        let text = failure_text(&report, id('b'), "refs/heads/main", "http://h/r.git").unwrap();
        assert!(text.starts_with("remote: error: GH006"), "{text}");
        assert!(
            text.contains("[remote rejected]") && text.contains("(protected branch hook declined)")
        );
    }

    #[test]
    fn a_report_without_side_band_and_its_failures() {
        let ok = lines(&["unpack ok\n", "ok refs/heads/x\n", "0000"]);
        let report = parse_report(&ok, false).unwrap();
        assert_eq!(failure_text(&report, id('b'), "refs/heads/x", "u"), None);
        // Told about another ref only: not a success for ours.
        assert!(
            failure_text(&report, id('b'), "refs/heads/y", "u")
                .unwrap()
                .contains("failed to report status")
        );
        let unpack = lines(&[
            "unpack index-pack abnormal exit\n",
            "ng refs/heads/x unpacker error\n",
            "0000",
        ]);
        let text = failure_text(
            &parse_report(&unpack, false).unwrap(),
            id('b'),
            "refs/heads/x",
            "u",
        )
        .unwrap();
        assert!(
            text.contains("remote unpack failed: index-pack abnormal exit"),
            "{text}"
        );
        let mut fatal = banded(3, b"disk full\n");
        fatal.extend_from_slice(b"0000");
        let report = parse_report(&fatal, true).unwrap();
        assert_eq!(report.unpack, None);
        assert!(
            failure_text(&report, id('b'), "refs/heads/x", "u")
                .unwrap()
                .contains("remote error: disk full")
        );
        assert!(parse_report(&banded(7, b"x"), true).is_err());
    }
}
