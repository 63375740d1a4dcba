//! Pure rendering: effective IoC set → one rules file plus one dataset file per
//! IoC kind. One rule per kind and field, never one rule per IoC: Suricata
//! loads a million-entry dataset in seconds, a million rules in minutes.

use std::fmt::Write as _;

use crate::config::{Action, DnsBypass, Mode};
use ipnet::IpNet;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::intel::ioc::{hex, Domain, Md5, Sha256};
use crate::intel::set::Effective;

mod b64;
pub mod encrypted_dns;
mod networks;
pub use b64::b64;

/// The rules file Suricata loads (`rule-files: [homewarden.rules]`).
pub const RULES_FILE: &str = "homewarden.rules";

/// Deepest domain suffix matched (`a.b.c.d.e.f` blocks below it); deeper IoCs match exactly only.
pub const MAX_SUFFIX_LABELS: usize = 6;

/// Above this many entries a dataset gets [`BIG_HASH`] buckets.
pub const BIG_SET: usize = 131_072;

/// Buckets of a big set's hash: Suricata 7's largest for one set
/// (`datasets.limits.single-hashsize`), ~4 entries a chain at a million.
/// Each bucket is a cache line (64 bytes): 16 MB, beside ~100 MB of entries.
pub const BIG_HASH: u32 = 262_144;

/// How a dataset file is read by Suricata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListKind {
    /// `type ipv4` dataset.
    Ipv4,
    /// `type ip` dataset (IPv6 here).
    Ip,
    /// `type string` dataset, values base64-encoded.
    String,
    /// `filemd5` list: loaded with the rules, changed by reload only.
    Md5,
    /// `filesha256` list: loaded with the rules, changed by reload only.
    Sha256,
}

impl ListKind {
    /// Suricata's dataset type name (socket `settype`), if this is a dataset.
    pub fn settype(self) -> Option<&'static str> {
        match self {
            ListKind::Ipv4 => Some("ipv4"),
            ListKind::Ip => Some("ip"),
            ListKind::String => Some("string"),
            ListKind::Md5 | ListKind::Sha256 => None,
        }
    }
}

/// The values of one list file, borrowed from the effective set (a million
/// addresses are never copied into a million strings).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Values<'a> {
    /// IPv4 addresses, ascending.
    Ipv4(&'a [Ipv4Addr]),
    /// IPv6 addresses, ascending.
    Ipv6(&'a [Ipv6Addr]),
    /// Names, written in base64, ascending as base64 text.
    Names(b64::Sorted<'a>),
    /// MD5s, ascending.
    Md5(&'a [Md5]),
    /// SHA-256s, ascending.
    Sha256(&'a [Sha256]),
}

/// The order of a list file: numeric for addresses, textual for the rest.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Key {
    /// An address as a number.
    Num(u128),
    /// A line as text.
    Text(String),
}

impl Values<'_> {
    /// Number of values.
    pub fn len(&self) -> usize {
        match self {
            Values::Ipv4(v) => v.len(),
            Values::Ipv6(v) => v.len(),
            Values::Names(v) => v.len(),
            Values::Md5(v) => v.len(),
            Values::Sha256(v) => v.len(),
        }
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Value `i` as a line of the file (and a socket `datavalue`).
    pub fn line(&self, i: usize) -> String {
        match self {
            Values::Ipv4(v) => v[i].to_string(),
            Values::Ipv6(v) => v[i].to_string(),
            Values::Names(v) => b64(v.get(i).as_str()),
            Values::Md5(v) => hex(&v[i].0[..]),
            Values::Sha256(v) => hex(&v[i].0[..]),
        }
    }

    /// Sort key of value `i`.
    pub fn key(&self, i: usize) -> Key {
        match self {
            Values::Ipv4(v) => Key::Num(u128::from(u32::from(v[i]))),
            Values::Ipv6(v) => Key::Num(u128::from(v[i])),
            _ => Key::Text(self.line(i)),
        }
    }

    /// Sort key of a line read back from a file; `None` if it is not one of ours.
    pub fn parse_key(&self, line: &str) -> Option<Key> {
        match self {
            Values::Ipv4(_) => line
                .parse::<Ipv4Addr>()
                .ok()
                .map(|a| Key::Num(u128::from(u32::from(a)))),
            Values::Ipv6(_) => line
                .parse::<Ipv6Addr>()
                .ok()
                .map(|a| Key::Num(u128::from(a))),
            _ => Some(Key::Text(line.to_string())),
        }
    }
}

/// One list file: dataset or hash list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListFile<'a> {
    /// Dataset name; the file is `<name>.lst`.
    pub name: &'static str,
    /// How Suricata reads it.
    pub kind: ListKind,
    /// The values, in file order.
    pub values: Values<'a>,
}

impl ListFile<'_> {
    /// File name in the rules directory.
    pub fn file_name(&self) -> String {
        format!("{}.lst", self.name)
    }
}

/// Everything Suricata needs from us.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rendered<'a> {
    /// Text of `homewarden.rules`.
    pub rules: String,
    /// Dataset and hash-list files.
    pub lists: Vec<ListFile<'a>>,
}

/// Rendering choices from the config.
#[derive(Clone, Debug)]
pub struct Options {
    /// IPS or IDS.
    pub mode: Mode,
    /// Drop or reject (IPS).
    pub action: Action,
    /// Match subdomains of listed domains.
    pub match_subdomains: bool,
    /// First sid of ours.
    pub sid_base: u32,
    /// Flows of a protocol no rule of ours reads leave the queue once
    /// Suricata knows it (`suricata.flow_bypass`).
    pub flow_bypass: bool,
    /// Encrypted DNS past the home's resolver (`enforcement.dns_bypass`).
    pub dns_bypass: DnsBypass,
    /// Devices whose encrypted DNS is let be.
    pub dns_bypass_allow: Vec<IpNet>,
    /// The home's upstream resolvers (`network.dns`): encrypted DNS to them
    /// is the home's own.
    pub dns_trusted: Vec<std::net::IpAddr>,
}

impl From<&crate::config::Config> for Options {
    fn from(cfg: &crate::config::Config) -> Options {
        Options {
            mode: cfg.enforcement.mode,
            action: cfg.enforcement.action,
            match_subdomains: cfg.enforcement.match_subdomains,
            sid_base: cfg.suricata.sid_base,
            flow_bypass: cfg.suricata.flow_bypass,
            dns_bypass: cfg.enforcement.dns_bypass,
            dns_bypass_allow: cfg.enforcement.dns_bypass_allow.clone(),
            dns_trusted: cfg.network.dns.clone(),
        }
    }
}

/// Renders rules and lists; `shadow` holds indicators still being observed
/// (alert only, in datasets of their own) when shadow mode is on.
pub fn render<'a>(
    eff: &'a Effective,
    shadow: Option<&'a Effective>,
    allow_domains: &'a [Domain],
    opts: &Options,
) -> Rendered<'a> {
    let action = match (opts.mode, opts.action) {
        (Mode::Ids, _) => "alert",
        (Mode::Ips, Action::Drop) => "drop",
        (Mode::Ips, Action::Reject) => "reject",
    };
    let mut lists = vec![
        ListFile {
            name: "hw-ipv4",
            kind: ListKind::Ipv4,
            values: Values::Ipv4(&eff.ipv4),
        },
        ListFile {
            name: "hw-ipv6",
            kind: ListKind::Ip,
            values: Values::Ipv6(&eff.ipv6),
        },
        ListFile {
            name: "hw-domain",
            kind: ListKind::String,
            values: Values::Names(b64::sorted(
                &eff.domains,
                enforced(&eff.domains, &[], opts.match_subdomains),
            )),
        },
        ListFile {
            name: "hw-md5",
            kind: ListKind::Md5,
            values: Values::Md5(&eff.md5),
        },
        ListFile {
            name: "hw-sha256",
            kind: ListKind::Sha256,
            values: Values::Sha256(&eff.sha256),
        },
    ];
    if let Some(sh) = shadow {
        lists.extend([
            ListFile {
                name: "hw-shadow-ipv4",
                kind: ListKind::Ipv4,
                values: Values::Ipv4(&sh.ipv4),
            },
            ListFile {
                name: "hw-shadow-ipv6",
                kind: ListKind::Ip,
                values: Values::Ipv6(&sh.ipv6),
            },
            ListFile {
                name: "hw-shadow-domain",
                kind: ListKind::String,
                values: Values::Names(b64::sorted(
                    &sh.domains,
                    enforced(&sh.domains, &eff.domains, opts.match_subdomains),
                )),
            },
        ]);
    }
    if !allow_domains.is_empty() {
        lists.push(ListFile {
            name: "hw-allow-domain",
            kind: ListKind::String,
            values: Values::Names(b64::sorted(allow_domains, |_| true)),
        });
    }
    let mut r = Rules {
        text: String::new(),
        base: opts.sid_base,
        sizes: lists.iter().map(|l| (l.name, l.values.len())).collect(),
    };
    r.text.push_str(
        "# Generated by homewarden; do not edit: the agent rewrites this file.\n\
         # One rule per indicator kind; the indicators live in the .lst dataset files beside it.\n",
    );

    r.address_rules(action, 0, "on blocklist", "hw", "");
    // QUIC's SNI is in its Initial packet, which Suricata decrypts (the keys
    // come from the packet itself): Chrome, Android and YouTube send much of
    // their traffic so. Its block starts past the networks' (200..1000).
    let protos = [
        ("dns", "dns.query", 10, "DNS query"),
        ("tls", "tls.sni", 20, "TLS SNI"),
        ("http", "http.host", 30, "HTTP host"),
        ("quic", "quic.sni", 1000, "QUIC SNI"),
    ];
    // Blocked domains, and (sids +40) pass rules for allowlisted ones, so subdomain
    // matching of a blocked parent never catches an allowlisted child.
    let mut families = vec![(action, 0, "blocklisted", "hw-domain", "domain")];
    if !allow_domains.is_empty() {
        families.push(("pass", 40, "allowlisted", "hw-allow-domain", "allow-domain"));
    }
    if shadow.is_some() {
        families.push((
            "alert",
            100,
            "shadowed",
            "hw-shadow-domain",
            "shadow-domain",
        ));
    }
    // Depth 0: the name itself; 2..: the name's parent with that many labels.
    let depths: Vec<usize> = if opts.match_subdomains {
        std::iter::once(0).chain(2..=MAX_SUFFIX_LABELS).collect()
    } else {
        vec![0]
    };
    for (proto, buffer, off, what) in protos {
        for &(act, family_off, listed, set, kind) in &families {
            for &depth in &depths {
                let (xform, relation) = match depth {
                    0 => (String::new(), "for"),
                    d => (suffix_transform(d) + " ", "under"),
                };
                // Depths stop at 6, so offsets stay inside the family's block of 10.
                let sid_off = off + family_off + depth.saturating_sub(1) as u32;
                r.rule(
                    act,
                    proto,
                    sid_off,
                    &format!("{what} {relation} {listed} domain"),
                    &format!(
                        "{buffer}; to_lowercase; {xform}dataset:isset,{set},type string,load {set}.lst{};",
                        r.hash_option(set)
                    ),
                    kind,
                );
            }
        }
    }

    if shadow.is_some() {
        // Shadow mode: newly listed addresses only raise alerts until they are promoted.
        r.address_rules(
            "alert",
            100,
            "in shadow (observed, not blocked)",
            "hw-shadow",
            "shadow-",
        );
    }

    if !eff.md5.is_empty() {
        r.rule(
            action,
            "ip",
            90,
            "file with blocklisted MD5",
            "filemd5:hw-md5.lst;",
            "md5",
        );
    }
    if !eff.sha256.is_empty() {
        r.rule(
            action,
            "ip",
            91,
            "file with blocklisted SHA-256",
            "filesha256:hw-sha256.lst;",
            "sha256",
        );
    }

    networks::rules(&mut r, action, &eff.wide, 200, "a listed", "net");
    if let Some(sh) = shadow {
        networks::rules(
            &mut r,
            "alert",
            &sh.wide,
            600,
            "an observed (shadow)",
            "shadow-net",
        );
    }

    encrypted_dns::rules(&mut r, opts);
    if opts.flow_bypass {
        bypass_rules(&mut r, eff.md5.is_empty() && eff.sha256.is_empty());
    }

    Rendered {
        rules: r.text,
        lists,
    }
}

/// A digest of a whole rendering (rules and every list line), to recognise
/// one that already failed its self-test.
pub fn fingerprint(r: &Rendered<'_>) -> u64 {
    let mut h = crate::fnv::Fnv1a::default();
    h.eat(r.rules.as_bytes());
    for l in &r.lists {
        h.eat(l.name.as_bytes());
        for i in 0..l.values.len() {
            h.eat(l.values.line(i).as_bytes());
            h.eat(b"\n");
        }
    }
    h.finish()
}

/// The names of `names` a dataset must hold for one query to raise one
/// alert: with subdomain matching, a name under another listed one (within
/// the suffix depths) is already caught by its parent's rule, so listing it
/// too would fire two rules; `covered_by` names another set that catches them
/// as well (the blocklist, for the shadow set). Both are sorted (as
/// [`Effective::domains`] is) and searched, not copied into hash sets (a
/// million names took 36 MB that way).
pub fn enforced_names<'a>(
    names: &'a [Domain],
    covered_by: &'a [Domain],
    match_subdomains: bool,
) -> impl Iterator<Item = &'a Domain> {
    names
        .iter()
        .filter(enforced(names, covered_by, match_subdomains))
}

/// The test behind [`enforced_names`], for one name of `names`.
fn enforced<'a>(
    names: &'a [Domain],
    covered_by: &'a [Domain],
    match_subdomains: bool,
) -> impl Fn(&&Domain) -> bool + 'a {
    debug_assert!(names.is_sorted() && covered_by.is_sorted());
    let on = |list: &[Domain], n: &str| list.binary_search_by(|d| d.as_str().cmp(n)).is_ok();
    move |d| {
        let name = d.as_str();
        if on(covered_by, name) {
            return false;
        }
        !match_subdomains || !parents(name).any(|p| on(names, p) || on(covered_by, p))
    }
}

/// True if the rendered rules block `name`: it is listed, or (with
/// `match_subdomains`) a parent a suffix rule reaches is, and no allowed
/// domain covers it. `listed` is sorted (as [`Effective::domains`] is).
pub fn blocks_name(
    listed: &[Domain],
    allowed: &[Domain],
    name: &Domain,
    match_subdomains: bool,
) -> bool {
    let on = |n: &str| listed.binary_search_by(|d| d.as_str().cmp(n)).is_ok();
    let hit = on(name.as_str()) || (match_subdomains && parents(name.as_str()).any(on));
    hit && !allowed.iter().any(|a| name.is_within(a))
}

/// The parents of `name` that a suffix rule can match: those of 2 to
/// `MAX_SUFFIX_LABELS` labels, nearest first.
fn parents(name: &str) -> impl Iterator<Item = &str> {
    let labels = name.split('.').count();
    name.match_indices('.')
        .map(move |(i, _)| &name[i + 1..])
        .enumerate()
        .filter(move |(n, _)| (2..=MAX_SUFFIX_LABELS).contains(&(labels - n - 1)))
        .map(|(_, parent)| parent)
}

/// A transform keeping the last `labels` labels of a name that has more than
/// that, so the dataset lookup sees the parent domain (`x.evil.example` →
/// `evil.example`). A name with `labels` labels or fewer becomes empty, which
/// no dataset holds: a pcrexform that does not match leaves the whole name in
/// the buffer, and every depth would then fire on a listed name once more.
fn suffix_transform(labels: usize) -> String {
    format!(
        "pcrexform:\"^(?:.+?\\.(?=[^.]+(?:\\.[^.]+){{{}}}$)|.*)(.*)$\";",
        labels - 1
    )
}

struct Rules {
    text: String,
    base: u32,
    /// Entries in each list, by dataset name: sizes the datasets' hashes.
    sizes: Vec<(&'static str, usize)>,
}

/// Rules that only let a flow leave the queue once nothing of ours can
/// match the rest of it (Suricata's stream and TLS bypass cover the others).
/// A flow dropped on the same packet stays dropped: Suricata's flow drop
/// wins over bypass. `http` when no file-hash rule needs the responses.
fn bypass_rules(r: &mut Rules, http: bool) {
    let mut rules = vec![
        // A protocol Suricata could not tell (a game, a video call, a
        // proprietary IoT protocol) holds no DNS name, SNI or Host: the
        // address rules have seen its first packets.
        (
            "tcp",
            95,
            "protocol without names",
            "flow:established; app-layer-protocol:failed;",
        ),
        (
            "udp",
            96,
            "protocol without names",
            "flow:established; app-layer-protocol:failed;",
        ),
        // The SNI is in the ClientHello: the rest of the handshake and the
        // session hold nothing the rules read.
        (
            "tls",
            97,
            "TLS SNI inspected",
            "flow:established,to_server; tls.sni; bsize:>0;",
        ),
    ];
    // Likewise QUIC: its SNI is in the Initial; all after it is encrypted.
    rules.push((
        "quic",
        99,
        "QUIC SNI inspected",
        "flow:to_server; quic.sni; bsize:>0;",
    ));
    if http {
        // The Host is in the request; what follows is the response, read by
        // the file-hash rules only. Short connections gain the most: in the
        // lab, requests a second on a new connection each went from ~37 % of
        // plain forwarding to ~60 %.
        rules.push((
            "http",
            98,
            "HTTP request inspected",
            "flow:established,to_server; http.host; bsize:>0;",
        ));
    }
    for (proto, sid_off, why, body) in rules {
        let _ = writeln!(
            r.text,
            "alert {proto} any any -> any any (msg:\"homewarden: flow bypass, {why}\"; \
             {body} noalert; bypass; sid:{}; rev:1;)",
            r.base + sid_off
        );
    }
}

impl Rules {
    /// The dataset option that sizes a big set's hash: Suricata's default
    /// (`datasets.defaults.hashsize`, 65,536 buckets) would chain a million
    /// addresses about 15 deep, and every packet walks such a chain twice
    /// (source and destination). A changed size changes the rules, so the
    /// set is rebuilt by a reload, never grown into a hash too small.
    fn hash_option(&self, set: &str) -> String {
        let entries = self
            .sizes
            .iter()
            .find(|(name, _)| *name == set)
            .map_or(0, |&(_, n)| n);
        if entries > BIG_SET {
            format!(",hashsize {BIG_HASH}")
        } else {
            String::new()
        }
    }

    /// Source and destination rules on the IPv4 and IPv6 datasets `<prefix>-ipv4` / `<prefix>-ipv6`.
    fn address_rules(&mut self, action: &str, base: u32, what: &str, prefix: &str, kind: &str) {
        for (off, field, dir) in [(1, "ip.dst", "destination"), (2, "ip.src", "source")] {
            for (family, settype, extra) in [("ipv4", "ipv4", 0), ("ipv6", "ip", 2)] {
                self.rule(
                    action,
                    "ip",
                    base + off + extra,
                    &format!("{} {dir} {what}", if family == "ipv4" { "IPv4" } else { "IPv6" }),
                    &format!(
                        "{field}; dataset:isset,{prefix}-{family},type {settype},load {prefix}-{family}.lst{};",
                        self.hash_option(&format!("{prefix}-{family}"))
                    ),
                    &format!("{kind}{family}"),
                );
            }
        }
    }

    fn rule(
        &mut self,
        action: &str,
        proto: &str,
        sid_offset: u32,
        msg: &str,
        body: &str,
        kind: &str,
    ) {
        // Everything here is our own constant text: no value from a feed is ever part of a rule.
        let _ = writeln!(
            self.text,
            "{action} {proto} any any -> any any (msg:\"homewarden: {msg}\"; {body} \
             classtype:trojan-activity; metadata:homewarden_kind {kind}; sid:{}; rev:1;)",
            self.base + sid_offset
        );
    }
}

#[cfg(test)]
mod tests;
