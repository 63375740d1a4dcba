//! Typed indicators: every value from a feed is parsed into one of these
//! before it can reach a rule or a dataset file.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::IpNet;

/// Longest domain name DNS allows (RFC 1035, without the trailing dot).
const MAX_DOMAIN_LEN: usize = 253;
const _: () = assert!(MAX_DOMAIN_LEN <= name::MAX_LEN);

mod name;
pub use name::Names;
/// Longest input we even look at; anything longer is refused before parsing.
const MAX_VALUE_LEN: usize = 2048;

/// The MISP attribute types this appliance turns into indicators.
pub const ENFORCED_MISP_TYPES: &[&str] = &[
    "ip-dst",
    "ip-src",
    "ip-dst|port",
    "ip-src|port",
    "domain",
    "hostname",
    "domain|ip",
    "hostname|port",
    "url",
    "uri",
    "link",
    "md5",
    "sha256",
    "filename|md5",
    "filename|sha256",
];

/// One indicator of compromise, parsed and normalised.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Ioc {
    /// A single IPv4 address.
    Ipv4(Ipv4Addr),
    /// A single IPv6 address (boxed, like every payload over 8 bytes: a 16-byte
    /// `Ioc` keeps a million-entry set in a Pi's memory).
    Ipv6(Box<Ipv6Addr>),
    /// A network wider than one address (expanded or refused at render time).
    Net(Box<IpNet>),
    /// A lower-case ASCII (punycode) domain name, no trailing dot.
    Domain(Domain),
    /// MD5 of a file.
    Md5(Md5),
    /// SHA-256 of a file.
    Sha256(Sha256),
}

/// The kinds of indicator, one Suricata rule family each.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    /// IPv4 addresses.
    Ipv4,
    /// IPv6 addresses.
    Ipv6,
    /// CIDR networks.
    Net,
    /// Domain names.
    Domain,
    /// MD5 file hashes.
    Md5,
    /// SHA-256 file hashes.
    Sha256,
}

impl Ioc {
    /// The rule family this indicator belongs to.
    pub fn kind(&self) -> Kind {
        match self {
            Ioc::Ipv4(_) => Kind::Ipv4,
            Ioc::Ipv6(_) => Kind::Ipv6,
            Ioc::Net(_) => Kind::Net,
            Ioc::Domain(_) => Kind::Domain,
            Ioc::Md5(_) => Kind::Md5,
            Ioc::Sha256(_) => Kind::Sha256,
        }
    }

    /// Guesses the type of a value from a plain list: IP, CIDR, hash, URL or domain.
    pub fn parse_any(raw: &str) -> Result<Ioc, ParseError> {
        let v = precheck(raw)?;
        if let Ok(ip) = v.parse::<IpAddr>() {
            return Ok(Ioc::from(ip));
        }
        if ends_in_number(v) {
            return Err(ParseError::NoncanonicalIp(truncate(v)));
        }
        if let (Some((head, _)), false) = (v.split_once('/'), v.contains("://")) {
            if head.parse::<IpAddr>().is_ok() {
                return parse_net(v);
            }
            if ends_in_number(head) {
                return Err(ParseError::NoncanonicalIp(truncate(v)));
            }
            if Domain::parse(head).is_ok() {
                return Err(ParseError::UrlWithoutScheme(truncate(v)));
            }
            return Err(ParseError::BadIp(truncate(v)));
        }
        if v.contains("://") {
            return parse_url_host(v);
        }
        if v.len() == 32 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return parse_md5(v);
        }
        if v.len() == 64 && v.bytes().all(|b| b.is_ascii_hexdigit()) {
            return parse_sha256(v);
        }
        Domain::parse(v).map(Ioc::Domain)
    }

    /// Parses a MISP attribute by its type; composite types yield several indicators.
    ///
    /// Types this appliance cannot enforce are [`ParseError::Unsupported`], not errors of the value.
    pub fn parse_misp(misp_type: &str, raw: &str) -> Result<Vec<Ioc>, ParseError> {
        // The type decides before the value is looked at: a multi-line YARA
        // rule is an unsupported type, not a value with control characters.
        if !ENFORCED_MISP_TYPES.contains(&misp_type) {
            return Err(ParseError::Unsupported(truncate(misp_type)));
        }
        let v = precheck(raw)?;
        let one = |r: Result<Ioc, ParseError>| r.map(|i| vec![i]);
        match misp_type {
            "ip-dst" | "ip-src" => one(parse_ip_or_net(v)),
            "ip-dst|port" | "ip-src|port" => {
                let ip = split_pipe(v)?.0;
                one(parse_ip_or_net(strip_brackets(ip)))
            }
            "domain" | "hostname" => one(Domain::parse(v).map(Ioc::Domain)),
            "domain|ip" | "hostname|port" => {
                let (name, rest) = split_pipe(v)?;
                let mut out = vec![Ioc::Domain(Domain::parse(name)?)];
                if misp_type == "domain|ip" {
                    out.push(parse_ip_or_net(rest)?);
                }
                Ok(out)
            }
            "url" | "uri" | "link" => one(parse_url_host(v)),
            "md5" => one(parse_md5(v)),
            "sha256" => one(parse_sha256(v)),
            "filename|md5" => one(parse_md5(split_pipe(v)?.1)),
            "filename|sha256" => one(parse_sha256(split_pipe(v)?.1)),
            other => Err(ParseError::Unsupported(truncate(other))),
        }
    }
}

impl Ioc {
    /// True if a hit on `hit` is explained by this indicator: the same value, an
    /// address inside this network, or a name at or under this domain.
    pub fn covers(&self, hit: &Ioc) -> bool {
        match (self, hit) {
            (Ioc::Net(n), Ioc::Ipv4(a)) => n.contains(&IpAddr::V4(*a)),
            (Ioc::Net(n), Ioc::Ipv6(a)) => n.contains(&IpAddr::V6(**a)),
            (Ioc::Domain(d), Ioc::Domain(h)) => h.is_within(d),
            (a, b) => a == b,
        }
    }
}

impl From<IpAddr> for Ioc {
    fn from(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(a) => Ioc::Ipv4(a),
            // An IPv4-mapped IPv6 address is the IPv4 host; Suricata sees it as such.
            IpAddr::V6(a) => match a.to_ipv4_mapped() {
                Some(v4) => Ioc::Ipv4(v4),
                None => Ioc::Ipv6(Box::new(a)),
            },
        }
    }
}

impl fmt::Display for Ioc {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ioc::Ipv4(a) => a.fmt(f),
            Ioc::Ipv6(a) => a.fmt(f),
            Ioc::Net(n) => n.fmt(f),
            Ioc::Domain(d) => f.write_str(d.as_str()),
            Ioc::Md5(h) => f.write_str(&hex(&h.0[..])),
            Ioc::Sha256(h) => f.write_str(&hex(&h.0[..])),
        }
    }
}

impl FromStr for Ioc {
    type Err = ParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ioc::parse_any(s)
    }
}

/// Why a value was refused. Counted per source; the value is never written anywhere.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// Empty after trimming.
    #[error("empty value")]
    Empty,
    /// Longer than anything legitimate.
    #[error("value longer than {MAX_VALUE_LEN} bytes")]
    TooLong,
    /// Control characters (NUL, newline…) inside the value.
    #[error("control character in value")]
    Control,
    /// Not an IP address or network.
    #[error("not an IP address or network: {0:?}")]
    BadIp(String),
    /// Not a valid domain name.
    #[error("not a domain name: {0:?}")]
    BadDomain(String),
    /// Not a URL with a host.
    #[error("not a URL with a host: {0:?}")]
    BadUrl(String),
    /// Not a hash of the expected length.
    #[error("not a {0} hash: {1:?}")]
    BadHash(&'static str, String),
    /// A composite value without its `|` separator.
    #[error("composite value without '|': {0:?}")]
    BadComposite(String),
    /// A MISP type this appliance does not enforce.
    #[error("unsupported attribute type {0:?}")]
    Unsupported(String),
    /// An IPv4 address in a form other than four decimal numbers (`10.1`,
    /// `0x7f.1`, `010.0.0.1`): readers disagree on what it means.
    #[error("IPv4 address in shorthand, octal or hex form: {0:?}")]
    NoncanonicalIp(String),
    /// A path after a host with no scheme in front (`evil.example/login`).
    #[error("URL without a scheme: {0:?}")]
    UrlWithoutScheme(String),
    /// A list line without the configured column.
    #[error("no column {0} on the line")]
    MissingColumn(usize),
}

impl ParseError {
    /// A short stable label for counters (`rejected.<label>`).
    pub fn label(&self) -> &'static str {
        match self {
            ParseError::Empty => "empty",
            ParseError::TooLong => "too_long",
            ParseError::Control => "control_char",
            ParseError::BadIp(_) => "bad_ip",
            ParseError::BadDomain(_) => "bad_domain",
            ParseError::BadUrl(_) => "bad_url",
            ParseError::BadHash(..) => "bad_hash",
            ParseError::BadComposite(_) => "bad_composite",
            ParseError::Unsupported(_) => "unsupported_type",
            ParseError::NoncanonicalIp(_) => "noncanonical_ip",
            ParseError::UrlWithoutScheme(_) => "url_without_scheme",
            ParseError::MissingColumn(_) => "missing_column",
        }
    }
}

/// A domain name that is safe to put into a dataset: lower-case ASCII letters,
/// digits, `-` and `_`, dot-separated labels of 1–63 bytes, at least two labels.
#[derive(Clone)]
// A thin pointer on purpose (see `Ioc`), shared: the effective set and the
// rendering hold the sources' names without copying them (a million names
// copied cost about 64 MB); a set's names are packed (see `name.rs`).
pub struct Domain(name::Name);

impl PartialEq for Domain {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for Domain {}

impl std::hash::Hash for Domain {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.as_str().hash(h)
    }
}

impl PartialOrd for Domain {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Domain {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.as_str().cmp(other.as_str())
    }
}

impl std::fmt::Debug for Domain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Domain").field(&self.as_str()).finish()
    }
}

impl Domain {
    /// Parses and normalises (IDNA to punycode, lower case, trailing dot removed).
    pub fn parse(raw: &str) -> Result<Domain, ParseError> {
        let v = precheck(raw)?;
        let bad = || ParseError::BadDomain(truncate(v));
        let v = v.strip_suffix('.').unwrap_or(v);
        let ascii = if v.is_ascii() {
            v.to_ascii_lowercase()
        } else {
            // url's host parser applies UTS #46 (IDNA) and refuses forbidden code points.
            match url::Host::parse(v) {
                Ok(url::Host::Domain(d)) => d,
                _ => return Err(bad()),
            }
        };
        if ascii.is_empty() || ascii.len() > MAX_DOMAIN_LEN {
            return Err(bad());
        }
        let labels: Vec<&str> = ascii.split('.').collect();
        if labels.len() < 2 {
            return Err(bad());
        }
        for label in &labels {
            let ok_len = !label.is_empty() && label.len() <= 63;
            let ok_chars = label
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
            if !ok_len || !ok_chars || label.starts_with('-') || label.ends_with('-') {
                return Err(bad());
            }
        }
        // A numeric last label is how URL parsers (and inet_aton) recognise an
        // IPv4 address: this is one in a form we do not guess at.
        if ends_in_number(&ascii) {
            return Err(ParseError::NoncanonicalIp(truncate(v)));
        }
        Ok(Domain(name::Name::single(&ascii)))
    }

    /// The same name, moved into `names` (a set packs the names it holds).
    pub fn packed(&self, names: &mut Names) -> Domain {
        Domain(names.name(self.as_str()))
    }

    /// The normalised name.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }

    /// True if `self` is `other` or a subdomain of it.
    pub fn is_within(&self, other: &Domain) -> bool {
        let (s, o) = (self.as_str(), other.as_str());
        s == o
            || (s.len() > o.len() && s.ends_with(o) && s.as_bytes()[s.len() - o.len() - 1] == b'.')
    }

    /// The names this one is under, nearest first (`a.b.c` → `b.c`, `c`).
    pub fn parents(&self) -> impl Iterator<Item = Domain> + '_ {
        let s = self.as_str();
        s.match_indices('.')
            .map(move |(i, _)| Domain(name::Name::single(&s[i + 1..])))
    }

    /// Number of labels (`a.b.c` has 3).
    pub fn labels(&self) -> usize {
        self.as_str().split('.').count()
    }
}

/// A file MD5.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Md5(pub std::sync::Arc<[u8; 16]>);

/// A file SHA-256 (behind a pointer: keeps `Ioc` small; shared, as names are).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Sha256(pub std::sync::Arc<[u8; 32]>);

/// Lower-case hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex<const N: usize>(v: &str) -> Option<[u8; N]> {
    if v.len() != N * 2 {
        return None;
    }
    let mut out = [0u8; N];
    for (i, pair) in v.as_bytes().chunks(2).enumerate() {
        let hi = (pair[0] as char).to_digit(16)?;
        let lo = (pair[1] as char).to_digit(16)?;
        out[i] = (hi * 16 + lo) as u8;
    }
    Some(out)
}

fn parse_md5(v: &str) -> Result<Ioc, ParseError> {
    unhex::<16>(v)
        .map(|h| Ioc::Md5(Md5(std::sync::Arc::new(h))))
        .ok_or_else(|| ParseError::BadHash("md5", truncate(v)))
}

fn parse_sha256(v: &str) -> Result<Ioc, ParseError> {
    unhex::<32>(v)
        .map(|h| Ioc::Sha256(Sha256(std::sync::Arc::new(h))))
        .ok_or_else(|| ParseError::BadHash("sha256", truncate(v)))
}

/// Trims, bounds the length and refuses control characters (NUL, CR, LF…),
/// which is what keeps a hostile value from ever splitting a line.
fn precheck(raw: &str) -> Result<&str, ParseError> {
    if raw.len() > MAX_VALUE_LEN {
        return Err(ParseError::TooLong);
    }
    let v = raw.trim();
    if v.is_empty() {
        return Err(ParseError::Empty);
    }
    if v.chars().any(char::is_control) {
        return Err(ParseError::Control);
    }
    Ok(v)
}

fn parse_ip_or_net(v: &str) -> Result<Ioc, ParseError> {
    match v.parse::<IpAddr>() {
        Ok(ip) => Ok(Ioc::from(ip)),
        Err(_) => {
            let head = v.split('/').next().unwrap_or(v);
            if head.parse::<IpAddr>().is_err() && ends_in_number(head) {
                return Err(ParseError::NoncanonicalIp(truncate(v)));
            }
            parse_net(v)
        }
    }
}

/// True if the last dot-separated label is a number (decimal or `0x` hex):
/// the WHATWG URL rule for "this host is an IPv4 address". Four decimal
/// numbers without leading zeros parse as an address before this is asked.
fn ends_in_number(host: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let last = host.rsplit('.').next().unwrap_or(host);
    let hex = last
        .strip_prefix("0x")
        .or_else(|| last.strip_prefix("0X"))
        .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit()));
    !last.is_empty() && (hex || last.bytes().all(|b| b.is_ascii_digit()))
}

/// The host part of a URL as written (`user@host:port` and brackets removed).
fn written_host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#', '\\']).next().unwrap_or(rest);
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(v6),
        None => host.split(':').next().unwrap_or(host),
    }
}

fn parse_net(v: &str) -> Result<Ioc, ParseError> {
    let net: IpNet = v.parse().map_err(|_| ParseError::BadIp(truncate(v)))?;
    // A host route is just the address; host bits set (10.0.0.7/8) means the writer
    // meant the network, and the network is what we enforce.
    let net = net.trunc();
    Ok(match net {
        IpNet::V4(n) if n.prefix_len() == 32 => Ioc::Ipv4(n.addr()),
        IpNet::V6(n) if n.prefix_len() == 128 => Ioc::from(IpAddr::V6(n.addr())),
        n => Ioc::Net(Box::new(n)),
    })
}

fn parse_url_host(v: &str) -> Result<Ioc, ParseError> {
    // MISP `url` attributes often lack a scheme ("evil.example/path").
    let with_scheme = if v.contains("://") {
        v.to_string()
    } else {
        format!("http://{v}")
    };
    let url = url::Url::parse(&with_scheme).map_err(|_| ParseError::BadUrl(truncate(v)))?;
    match url.host() {
        // The URL standard reads `http://107.183.86/` as 107.183.0.86: an
        // address nobody listed. Only the canonical form is taken.
        Some(url::Host::Ipv4(a)) => {
            let written = written_host(&with_scheme);
            if written.strip_suffix('.').unwrap_or(written) == a.to_string() {
                Ok(Ioc::Ipv4(a))
            } else {
                Err(ParseError::NoncanonicalIp(truncate(v)))
            }
        }
        Some(url::Host::Ipv6(a)) => Ok(Ioc::from(IpAddr::V6(a))),
        Some(url::Host::Domain(d)) => Domain::parse(d)
            .map(Ioc::Domain)
            .map_err(|_| ParseError::BadUrl(truncate(v))),
        None => Err(ParseError::BadUrl(truncate(v))),
    }
}

fn split_pipe(v: &str) -> Result<(&str, &str), ParseError> {
    v.split_once('|')
        .ok_or_else(|| ParseError::BadComposite(truncate(v)))
}

fn strip_brackets(v: &str) -> &str {
    v.strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(v)
}

/// Keeps error messages (and logs) short and free of control characters.
fn truncate(v: &str) -> String {
    let mut s: String = v
        .chars()
        .take(80)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect();
    if v.chars().count() > 80 {
        s.push('…');
    }
    s
}

#[cfg(test)]
mod tests;
