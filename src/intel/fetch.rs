//! Reading a source's bytes from an http(s) URL or a local path, bounded in size.

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::IntelError;

/// Largest body we accept from one URL or file (a full CIRCL feed event is a few MB).
pub const MAX_BODY: usize = 512 * 1024 * 1024;

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

    /// Reads the whole body, refusing more than [`MAX_BODY`] bytes.
    pub async fn read(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
    ) -> Result<Vec<u8>, IntelError> {
        let mut body = Vec::new();
        self.for_each_chunk(http, timeout, |chunk| body.extend_from_slice(chunk))
            .await?;
        Ok(body)
    }

    /// Calls `f` with each line (lossily decoded, without its newline) as the body
    /// streams in, so a list of a million lines is never held whole in memory.
    pub async fn for_each_line(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        mut f: impl FnMut(&str),
    ) -> Result<(), IntelError> {
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
        self.for_each_chunk(http, timeout, |chunk| split(chunk, &mut carry))
            .await?;
        if !carry.is_empty() {
            carry.push(b'\n');
            split(&[], &mut carry);
        }
        Ok(())
    }

    /// Streams the body chunk by chunk, refusing more than [`MAX_BODY`] bytes.
    async fn for_each_chunk(
        &self,
        http: &reqwest::Client,
        timeout: Duration,
        mut f: impl FnMut(&[u8]),
    ) -> Result<(), IntelError> {
        let mut total = 0usize;
        let mut take = |chunk: &[u8], name: &dyn fmt::Display| {
            total += chunk.len();
            if total > MAX_BODY {
                return Err(IntelError::TooLarge(name.to_string()));
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
                let mut buf = vec![0u8; 1 << 16];
                loop {
                    let n = file
                        .read(&mut buf)
                        .await
                        .map_err(|e| IntelError::io(p, e))?;
                    if n == 0 {
                        return Ok(());
                    }
                    take(&buf[..n], &p.display())?;
                }
            }
            Location::Url(u) => {
                let mut resp = http
                    .get(u.clone())
                    .timeout(timeout)
                    .send()
                    .await
                    .map_err(|e| IntelError::http(u.as_str(), e))?;
                let status = resp.status();
                if !status.is_success() {
                    return Err(IntelError::Status {
                        url: u.to_string(),
                        status: status.as_u16(),
                        body: String::new(),
                    });
                }
                while let Some(chunk) = resp
                    .chunk()
                    .await
                    .map_err(|e| IntelError::http(u.as_str(), e))?
                {
                    take(&chunk, u)?;
                }
                Ok(())
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
