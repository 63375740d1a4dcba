//! Reading a source's bytes from an http(s) URL or a local path, bounded in size.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::IntelError;

/// Default of `limits.body_mb`: the largest body read from one URL or file
/// (a full CIRCL feed event is a few MB, a million-domain list about 25 MB).
pub const DEFAULT_MAX_BODY: usize = 64 * 1024 * 1024;

/// How a source is fetched: its client, how long one request may take, and
/// the largest body it may send (`limits.body_mb`): a feed or list server
/// cannot make the agent hold more than that.
#[derive(Clone, Debug)]
pub struct Fetch {
    /// The HTTP client (TLS settings, bearer token).
    pub http: reqwest::Client,
    /// Timeout of one request.
    pub timeout: Duration,
    /// Most bytes read from one URL or file.
    pub max_body: usize,
}

impl Fetch {
    /// A fetch with the default body cap.
    pub fn new(http: reqwest::Client, timeout: Duration) -> Fetch {
        Fetch {
            http,
            timeout,
            max_body: DEFAULT_MAX_BODY,
        }
    }
}

/// Reads an HTTP response's body, refusing more than `max` bytes: told by
/// Content-Length before a byte is read, else counted as it streams in.
pub async fn capped_body(mut resp: reqwest::Response, max: usize) -> Result<Vec<u8>, CappedError> {
    if resp.content_length().is_some_and(|n| n > max as u64) {
        return Err(CappedError::TooLarge);
    }
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(CappedError::Transport)? {
        if body.len() + chunk.len() > max {
            return Err(CappedError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// A transport error as status, logs and the outbox show it: without the
/// URL reqwest puts in its message, which may carry a secret (a webhook's
/// path, an `?access_token=`).
pub fn transport_text(e: reqwest::Error) -> String {
    crate::error_chain(&e.without_url())
}

/// Why [`capped_body`] failed.
#[derive(Debug)]
pub enum CappedError {
    /// Over the cap.
    TooLarge,
    /// The connection broke.
    Transport(reqwest::Error),
}

/// What tells whether a list changed since it was read, without reading it
/// again: a re-pull of a million-line list that did not change would build
/// a second set beside the one in force (about 45 MB) for nothing.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Validators {
    /// What these validate: the location and how it is read (a new layout reads it again).
    pub of: u64,
    /// The HTTP entity tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    /// The HTTP `Last-Modified`, kept only when it was older than the reply.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_modified: Option<String>,
    /// A file's size, inode, and modification and change times (ns).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<[u64; 4]>,
}

/// How long a date must lie behind "now" before it identifies a content:
/// a file rewritten within the same second keeps its one-second
/// `Last-Modified` (or a coarse file system's time).
const SETTLED: Duration = Duration::from_secs(2);

/// Longest `ETag` or `Last-Modified` kept (real ones are tens of bytes).
const MAX_VALIDATOR: usize = 256;

impl Validators {
    fn for_file(of: u64, meta: &std::fs::Metadata) -> Option<Validators> {
        use std::os::unix::fs::MetadataExt;
        let nanos = |secs: i64, ns: i64| {
            u64::try_from(secs)
                .ok()?
                .checked_mul(1_000_000_000)?
                .checked_add(u64::try_from(ns).ok()?)
        };
        let modified = nanos(meta.mtime(), meta.mtime_nsec())?;
        let changed = nanos(meta.ctime(), meta.ctime_nsec())?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .ok()?;
        let newest = Duration::from_nanos(modified.max(changed));
        (newest + SETTLED <= now).then_some(Validators {
            of,
            file: Some([meta.len(), meta.ino(), modified, changed]),
            ..Validators::default()
        })
    }

    fn for_reply(of: u64, headers: &reqwest::header::HeaderMap) -> Option<Validators> {
        use reqwest::header::{DATE, ETAG, LAST_MODIFIED};
        // A server's own words, saved in the state: short ones only.
        let text = |name| {
            (headers.get(name))
                .and_then(|v| v.to_str().ok())
                .filter(|t| t.len() <= MAX_VALIDATOR)
        };
        let date = |name| text(name).and_then(|t| httpdate::parse_http_date(t).ok());
        let last_modified = match (date(LAST_MODIFIED), date(DATE)) {
            (Some(modified), Some(now)) if modified + SETTLED <= now => {
                text(LAST_MODIFIED).map(str::to_string)
            }
            _ => None,
        };
        let etag = text(ETAG).map(str::to_string);
        (etag.is_some() || last_modified.is_some()).then_some(Validators {
            of,
            etag,
            last_modified,
            file: None,
        })
    }
}

/// What a conditional read found.
#[derive(Debug, PartialEq, Eq)]
pub enum Read {
    /// The content is the one the given validators were of; nothing was read.
    Unchanged,
    /// The content was read; its validators, if it has usable ones.
    Read(Option<Validators>),
}

/// Where a list or feed lives.
#[derive(Clone, Debug)]
pub enum Location {
    /// An http(s) URL.
    Url(url::Url),
    /// A local file or directory.
    Path(PathBuf),
}

impl Location {
    /// Builds a location from a config's `url` or `path`.
    pub fn new(url: Option<&str>, path: Option<&Path>) -> Result<Location, IntelError> {
        match (url, path) {
            (Some(u), _) => url::Url::parse(u)
                .map(Location::Url)
                .map_err(|e| IntelError::Config(format!("{u:?} is not a URL: {e}"))),
            (None, Some(p)) => Ok(Location::Path(p.to_path_buf())),
            (None, None) => Err(IntelError::Config("neither url nor path".into())),
        }
    }

    /// Interprets a command-line `--source` argument: a URL if it has a scheme, else a path.
    pub fn from_arg(arg: &str) -> Result<Location, IntelError> {
        if arg.starts_with("http://") || arg.starts_with("https://") {
            Location::new(Some(arg), None)
        } else {
            Ok(Location::Path(PathBuf::from(arg)))
        }
    }

    /// A location below this one (`manifest.json` of a feed).
    pub fn join(&self, rel: &str) -> Result<Location, IntelError> {
        match self {
            Location::Url(u) => {
                let mut base = u.clone();
                if !base.path().ends_with('/') {
                    base.set_path(&format!("{}/", base.path()));
                }
                base.join(rel)
                    .map(Location::Url)
                    .map_err(|e| IntelError::Config(format!("{rel:?} below {u}: {e}")))
            }
            Location::Path(p) => Ok(Location::Path(p.join(rel))),
        }
    }

    /// Reads the whole body, refusing more than `fetch.max_body` bytes.
    pub async fn read(&self, fetch: &Fetch) -> Result<Vec<u8>, IntelError> {
        let mut body = Vec::new();
        self.for_each_chunk(fetch, 0, None, |chunk| body.extend_from_slice(chunk))
            .await?;
        Ok(body)
    }

    /// Calls `f` with each line (lossily decoded, without its newline) as the body
    /// streams in, so a list of a million lines is never held whole in memory.
    pub async fn for_each_line(
        &self,
        fetch: &Fetch,
        f: impl FnMut(&str),
    ) -> Result<(), IntelError> {
        self.for_each_line_since(fetch, 0, None, f).await.map(drop)
    }

    /// [`Self::for_each_line`], unless `known` (validators of an earlier read
    /// of `of`) shows the content has not changed: a file's size and times, an
    /// HTTP conditional request (`If-None-Match`, `If-Modified-Since`).
    pub async fn for_each_line_since(
        &self,
        fetch: &Fetch,
        of: u64,
        known: Option<&Validators>,
        mut f: impl FnMut(&str),
    ) -> Result<Read, IntelError> {
        // `carry` holds the unfinished last line of what has arrived so far.
        let mut split = |chunk: &[u8], carry: &mut Vec<u8>| {
            carry.extend_from_slice(chunk);
            let mut start = 0;
            while let Some(pos) = carry[start..].iter().position(|&b| b == b'\n') {
                f(&String::from_utf8_lossy(&carry[start..start + pos]));
                start += pos + 1;
            }
            carry.drain(..start);
        };
        let mut carry = Vec::new();
        let known = known.filter(|k| k.of == of);
        let read = self
            .for_each_chunk(fetch, of, known, |chunk| split(chunk, &mut carry))
            .await?;
        if !carry.is_empty() {
            carry.push(b'\n');
            split(&[], &mut carry);
        }
        Ok(read)
    }

    /// Streams the body chunk by chunk, refusing more than `fetch.max_body`
    /// bytes; nothing if `known` shows it unchanged.
    async fn for_each_chunk(
        &self,
        fetch: &Fetch,
        of: u64,
        known: Option<&Validators>,
        mut f: impl FnMut(&[u8]),
    ) -> Result<Read, IntelError> {
        let (http, timeout, max) = (&fetch.http, fetch.timeout, fetch.max_body);
        let too_large = |name: &dyn fmt::Display| IntelError::TooLarge {
            what: super::masked(&name.to_string()),
            limit_mb: max / 1024 / 1024,
        };
        let mut total = 0usize;
        let mut take = |chunk: &[u8], name: &dyn fmt::Display| {
            total += chunk.len();
            if total > max {
                return Err(too_large(name));
            }
            f(chunk);
            Ok(())
        };
        match self {
            Location::Path(p) => {
                use tokio::io::AsyncReadExt;
                let mut file = tokio::fs::File::open(p)
                    .await
                    .map_err(|e| IntelError::io(p, e))?;
                // Stamped before reading: a change while it is read shows next time.
                let meta = file.metadata().await.map_err(|e| IntelError::io(p, e))?;
                let stamp = Validators::for_file(of, &meta);
                if stamp.is_some() && stamp.as_ref() == known {
                    return Ok(Read::Unchanged);
                }
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = file
                        .read(&mut buf)
                        .await
                        .map_err(|e| IntelError::io(p, e))?;
                    if n == 0 {
                        return Ok(Read::Read(stamp));
                    }
                    take(&buf[..n], &p.display())?;
                }
            }
            Location::Url(u) => {
                use reqwest::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH};
                let mut req = http.get(u.clone()).timeout(timeout);
                if let Some(k) = known {
                    if let Some(etag) = &k.etag {
                        req = req.header(IF_NONE_MATCH, etag);
                    }
                    if let Some(date) = &k.last_modified {
                        req = req.header(IF_MODIFIED_SINCE, date);
                    }
                }
                let mut resp = req
                    .send()
                    .await
                    .map_err(|e| IntelError::http(u.as_str(), e))?;
                let status = resp.status();
                if status == reqwest::StatusCode::NOT_MODIFIED && known.is_some() {
                    return Ok(Read::Unchanged);
                }
                if !status.is_success() {
                    return Err(IntelError::Status {
                        url: super::masked(u.as_str()),
                        status: status.as_u16(),
                        body: String::new(),
                    });
                }
                if resp.content_length().is_some_and(|n| n > max as u64) {
                    return Err(too_large(u));
                }
                let validators = Validators::for_reply(of, resp.headers());
                while let Some(chunk) = resp
                    .chunk()
                    .await
                    .map_err(|e| IntelError::http(u.as_str(), e))?
                {
                    take(&chunk, u)?;
                }
                Ok(Read::Read(validators))
            }
        }
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Url(u) => u.fmt(f),
            Location::Path(p) => p.display().fmt(f),
        }
    }
}

/// An HTTP client for intel sources: rustls, our user agent, an optional private CA.
pub fn client(ca_file: Option<&Path>, verify_tls: bool) -> Result<reqwest::Client, IntelError> {
    builder(ca_file, verify_tls)?
        .build()
        .map_err(|e| IntelError::Config(format!("cannot build HTTP client: {e}")))
}

/// The builder behind [`client`], for callers that set more (timeouts).
pub fn builder(
    ca_file: Option<&Path>,
    verify_tls: bool,
) -> Result<reqwest::ClientBuilder, IntelError> {
    let mut b = reqwest::Client::builder()
        .user_agent(concat!("homewarden/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(10))
        .use_rustls_tls();
    if let Some(ca) = ca_file {
        let pem = std::fs::read(ca).map_err(|e| IntelError::io(ca, e))?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| {
            IntelError::Config(format!("{}: not a PEM certificate: {e}", ca.display()))
        })?;
        if certs.is_empty() {
            return Err(IntelError::Config(format!(
                "{}: no certificate in file",
                ca.display()
            )));
        }
        for c in certs {
            b = b.add_root_certificate(c);
        }
    }
    if !verify_tls {
        b = b.danger_accept_invalid_certs(true);
    }
    Ok(b)
}

/// A canned HTTP peer for tests: answers every request with `reply` (status
/// line, headers, body as given) and then holds the connection open, so a
/// reader that waits for more bytes than were sent hangs. Its base URL.
#[cfg(test)]
pub(crate) async fn canned_server(reply: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            let reply = reply.clone();
            tokio::spawn(async move {
                let mut buf = vec![0u8; 65536];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(&reply).await;
                tokio::time::sleep(Duration::from_secs(30)).await;
            });
        }
    });
    url
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    async fn server(head: String, body: Vec<u8>) -> String {
        canned_server([head.into_bytes(), body].concat()).await + "/list.txt"
    }

    fn fetch(max_body: usize) -> Fetch {
        Fetch {
            http: reqwest::Client::new(),
            timeout: Duration::from_secs(5),
            max_body,
        }
    }

    fn too_large(r: Result<Vec<u8>, IntelError>) -> String {
        let e = r.unwrap_err();
        assert!(matches!(e, IntelError::TooLarge { .. }), "{e}");
        e.to_string()
    }

    #[tokio::test]
    async fn a_body_over_the_cap_is_refused_whether_announced_streamed_or_on_disk() {
        // Announced: refused on the headers, before a byte of the body (the
        // server never sends one: waiting for it would take the whole timeout).
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 10000000\r\n\r\n".to_string();
        let url = Location::from_arg(&server(head, Vec::new()).await).unwrap();
        let started = std::time::Instant::now();
        let e = too_large(url.read(&fetch(1024 * 1024)).await);
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(
            e.contains("list.txt: larger than the 1 MiB limit (limits.body_mb)"),
            "{e}"
        );

        // Streamed without a length: counted as it comes, cut at the cap.
        let chunked = "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_string();
        let url = Location::from_arg(&server(chunked, vec![b'a'; 3 << 20]).await).unwrap();
        too_large(url.read(&fetch(1024 * 1024)).await);
        let mut lines = 0;
        let streamed = url.for_each_line(&fetch(1024 * 1024), |_| lines += 1).await;
        assert!(matches!(streamed, Err(IntelError::TooLarge { .. })));

        // A local file.
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("big.txt");
        std::fs::write(&p, vec![b'\n'; (1 << 20) + 1]).unwrap();
        too_large(Location::Path(p.clone()).read(&fetch(1 << 20)).await);
        std::fs::write(&p, vec![b'\n'; 1 << 20]).unwrap();
        assert_eq!(
            Location::Path(p).read(&fetch(1 << 20)).await.unwrap().len(),
            1 << 20
        );
    }

    /// Answers `304` to a request that names `"v1"`, else `200` with `head`
    /// (extra headers) and `body`; keeps each request's text.
    async fn conditional_server(
        head: String,
        body: &'static str,
    ) -> (String, Arc<Mutex<Vec<String>>>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/list.txt", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = vec![0u8; 65536];
                let n = s.read(&mut buf).await.unwrap_or(0);
                let req = String::from_utf8_lossy(&buf[..n]).to_lowercase();
                let reply = if req.contains("if-none-match: \"v1\"") {
                    "HTTP/1.1 304 Not Modified\r\nConnection: close\r\n\r\n".to_string()
                } else {
                    format!("HTTP/1.1 200 OK\r\n{head}Content-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                };
                log.lock().unwrap().push(req);
                let _ = s.write_all(reply.as_bytes()).await;
            }
        });
        (url, seen)
    }

    #[tokio::test]
    async fn an_http_list_is_asked_for_only_if_it_changed() {
        let now = std::time::SystemTime::now();
        let date = httpdate::fmt_http_date(now);
        let old = httpdate::fmt_http_date(now - Duration::from_secs(60));
        let head = format!("ETag: \"v1\"\r\nDate: {date}\r\nLast-Modified: {old}\r\n");
        let (url, seen) = conditional_server(head, "203.0.113.5\n").await;
        let at = Location::from_arg(&url).unwrap();
        let mut lines = Vec::new();
        let read = at
            .for_each_line_since(&fetch(1 << 20), 7, None, |l| lines.push(l.to_string()))
            .await
            .unwrap();
        assert_eq!(lines, ["203.0.113.5"]);
        let Read::Read(Some(v)) = read else {
            panic!("{read:?}")
        };
        assert_eq!((v.of, v.etag.as_deref()), (7, Some("\"v1\"")));
        assert_eq!(v.last_modified.as_deref(), Some(old.as_str()));

        let again = at
            .for_each_line_since(&fetch(1 << 20), 7, Some(&v), |_| panic!("read"))
            .await;
        assert_eq!(again.unwrap(), Read::Unchanged);
        let asked = seen.lock().unwrap()[1].clone();
        assert!(asked.contains("if-none-match: \"v1\""), "{asked}");
        assert!(
            asked.contains(&format!("if-modified-since: {}", old.to_lowercase())),
            "{asked}"
        );
        // Validators of another reading of it are not sent.
        let other = at
            .for_each_line_since(&fetch(1 << 20), 8, Some(&v), |_| ())
            .await;
        assert!(matches!(other.unwrap(), Read::Read(Some(_))));
        assert!(!seen.lock().unwrap()[2].contains("if-none-match"));

        // A Last-Modified as new as the reply does not tell a rewrite in the
        // same second apart: without an ETag, nothing to ask with next time.
        let head = format!("Date: {date}\r\nLast-Modified: {date}\r\n");
        let (url, _) = conditional_server(head, "203.0.113.5\n").await;
        let read = Location::from_arg(&url)
            .unwrap()
            .for_each_line_since(&fetch(1 << 20), 7, None, |_| ())
            .await;
        assert_eq!(read.unwrap(), Read::Read(None));
    }

    #[tokio::test]
    async fn capped_body_reads_what_fits_and_refuses_what_does_not() {
        let head = "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_string();
        let url = server(head, b"hello".to_vec()).await;
        let resp = reqwest::get(&url).await.unwrap();
        assert_eq!(capped_body(resp, 5).await.unwrap(), b"hello");
        let resp = reqwest::get(&url).await.unwrap();
        assert!(matches!(
            capped_body(resp, 4).await,
            Err(CappedError::TooLarge)
        ));
    }
}
