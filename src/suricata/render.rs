//! Pure rendering: effective IoC set → one rules file plus one dataset file per
//! IoC kind. One rule per kind and field, never one rule per IoC: Suricata
//! loads a million-entry dataset in seconds, a million rules in minutes.

use std::fmt::Write as _;

use base64::Engine as _;

use crate::config::{Action, Mode};
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::intel::ioc::{hex, Domain, Md5, Sha256};
use crate::intel::set::Effective;

mod networks;

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
    /// Base64 strings, ascending as strings.
    Base64(Vec<String>),
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
            Values::Base64(v) => v.len(),
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
            Values::Base64(v) => v[i].clone(),
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
#[derive(Clone, Copy, Debug)]
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
}

impl From<&crate::config::Config> for Options {
    fn from(cfg: &crate::config::Config) -> Options {
        Options {
            mode: cfg.enforcement.mode,
            action: cfg.enforcement.action,
            match_subdomains: cfg.enforcement.match_subdomains,
            sid_base: cfg.suricata.sid_base,
            flow_bypass: cfg.suricata.flow_bypass,
        }
    }
}

/// The base64 form Suricata's string datasets use, in files and on the socket.
pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// Renders rules and lists; `shadow` holds indicators still being observed
/// (alert only, in datasets of their own) when shadow mode is on.
pub fn render<'a>(
    eff: &'a Effective,
    shadow: Option<&'a Effective>,
    allow_domains: &[Domain],
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
            values: Values::Base64(sorted(
                enforced_names(&eff.domains, &[], opts.match_subdomains).map(|d| b64(d.as_str())),
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
                values: Values::Base64(sorted(
                    enforced_names(&sh.domains, &eff.domains, opts.match_subdomains)
                        .map(|d| b64(d.as_str())),
                )),
            },
        ]);
    }
    if !allow_domains.is_empty() {
        lists.push(ListFile {
            name: "hw-allow-domain",
            kind: ListKind::String,
            values: Values::Base64(sorted(allow_domains.iter().map(|d| b64(d.as_str())))),
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
    let protos = [
        ("dns", "dns.query", 10, "DNS query"),
        ("tls", "tls.sni", 20, "TLS SNI"),
        ("http", "http.host", 30, "HTTP host"),
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
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |b: &[u8]| {
        for &x in b {
            h ^= u64::from(x);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    eat(r.rules.as_bytes());
    for l in &r.lists {
        eat(l.name.as_bytes());
        for i in 0..l.values.len() {
            eat(l.values.line(i).as_bytes());
            eat(b"\n");
        }
    }
    h
}

/// The names of `names` a dataset must hold for one query to raise one
/// alert: with subdomain matching, a name under another listed one (within
/// the suffix depths) is already caught by its parent's rule, so listing it
/// too would fire two rules; `covered_by` names another set that catches them
/// as well (the blocklist, for the shadow set).
pub fn enforced_names<'a>(
    names: &'a [Domain],
    covered_by: &'a [Domain],
    match_subdomains: bool,
) -> impl Iterator<Item = &'a Domain> {
    let listed: std::collections::HashSet<&str> =
        names.iter().chain(covered_by).map(Domain::as_str).collect();
    let outer: std::collections::HashSet<&str> = covered_by.iter().map(Domain::as_str).collect();
    names.iter().filter(move |d| {
        let name = d.as_str();
        if outer.contains(name) {
            return false;
        }
        !match_subdomains || !parents(name).any(|p| listed.contains(p))
    })
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

fn sorted(it: impl Iterator<Item = String>) -> Vec<String> {
    let mut v: Vec<String> = it.collect();
    v.sort_unstable();
    v.dedup();
    v
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
mod tests {
    use super::*;
    use crate::intel::ioc::Ioc;
    use crate::intel::set::{Allowlist, ExpandLimits, Guard, SourceSet};

    fn eff(values: &[&str]) -> Effective {
        let mut s = SourceSet::new();
        for v in values {
            s.push(Ioc::parse_any(v).unwrap(), None, None);
        }
        Effective::build(
            [&s],
            Guard::new(&Allowlist::default(), ExpandLimits::default()),
        )
        .0
    }

    fn opts(mode: Mode, action: Action) -> Options {
        Options {
            mode,
            action,
            match_subdomains: true,
            sid_base: 1_666_000,
            flow_bypass: false,
        }
    }

    #[test]
    fn shadow_mode_observes_in_datasets_of_its_own() {
        let e = eff(&["203.0.113.1", "evil.example"]);
        let sh = eff(&["203.0.113.2", "new.example"]);
        let r = render(&e, Some(&sh), &[], &opts(Mode::Ips, Action::Drop));
        let shadow_rules: Vec<&str> = r
            .rules
            .lines()
            .filter(|l| l.contains("hw-shadow-"))
            .collect();
        assert_eq!(shadow_rules.len(), 4 + 3 * 6, "{}", r.rules);
        assert!(
            shadow_rules.iter().all(|l| l.starts_with("alert ")),
            "{}",
            r.rules
        );
        assert!(r
            .rules
            .lines()
            .any(|l| l.starts_with("drop ") && l.contains("hw-ipv4")));
        let mut sids: Vec<&str> = r
            .rules
            .lines()
            .filter_map(|l| l.split("sid:").nth(1))
            .collect();
        let n = sids.len();
        sids.sort();
        sids.dedup();
        assert_eq!(sids.len(), n, "sids must be unique");
        let names: Vec<&str> = r.lists.iter().map(|l| l.name).collect();
        for n in ["hw-shadow-ipv4", "hw-shadow-ipv6", "hw-shadow-domain"] {
            assert!(names.contains(&n), "{names:?}");
        }
        let shadow4 = r.lists.iter().find(|l| l.name == "hw-shadow-ipv4").unwrap();
        assert_eq!(shadow4.values.line(0), "203.0.113.2");
        // Without shadow mode nothing of it is rendered.
        let plain = render(&e, None, &[], &opts(Mode::Ips, Action::Drop));
        assert!(!plain.rules.contains("shadow"));
    }

    #[test]
    fn one_rule_per_kind_whatever_the_size() {
        let many: Vec<String> = (0..5000)
            .map(|i| format!("203.0.{}.{}", i / 256, i % 256))
            .collect();
        let refs: Vec<&str> = many.iter().map(String::as_str).collect();
        let (e_small, e_big) = (eff(&["203.0.113.1"]), eff(&refs));
        let small = render(&e_small, None, &[], &opts(Mode::Ips, Action::Drop));
        let big = render(&e_big, None, &[], &opts(Mode::Ips, Action::Drop));
        assert_eq!(small.rules, big.rules);
        assert_eq!(big.lists[0].values.len(), 5000);
    }

    #[test]
    fn only_a_big_set_gets_a_bigger_hash() {
        let e = Effective {
            ipv4: (0..=BIG_SET as u32).map(Ipv4Addr::from).collect(),
            domains: vec![Domain::parse("evil.example").unwrap()],
            ..Effective::default()
        };
        let r = render(&e, None, &[], &opts(Mode::Ips, Action::Drop));
        let sized: Vec<&str> = r
            .rules
            .lines()
            .filter(|l| l.contains(&format!(",hashsize {BIG_HASH};")))
            .collect();
        // ip.dst and ip.src on hw-ipv4, nothing else.
        assert_eq!(sized.len(), 2, "{}", r.rules);
        assert!(sized
            .iter()
            .all(|l| l.contains("load hw-ipv4.lst,hashsize")));
        let small = Effective {
            ipv4: e.ipv4[..BIG_SET].to_vec(),
            ..e.clone()
        };
        let r = render(&small, None, &[], &opts(Mode::Ips, Action::Drop));
        assert!(!r.rules.contains("hashsize"));
    }

    #[test]
    fn action_follows_mode() {
        let e = eff(&["evil.example"]);
        let count = |r: &Rendered, a: &str| {
            r.rules
                .lines()
                .filter(|l| l.starts_with(&format!("{a} ")))
                .count()
        };
        let ips = render(&e, None, &[], &opts(Mode::Ips, Action::Drop));
        let rej = render(&e, None, &[], &opts(Mode::Ips, Action::Reject));
        let ids = render(&e, None, &[], &opts(Mode::Ids, Action::Reject));
        let rules = ips.rules.lines().filter(|l| !l.starts_with('#')).count();
        assert_eq!(count(&ips, "drop"), rules);
        assert_eq!(count(&rej, "reject"), rules);
        assert_eq!(count(&ids, "alert"), rules);
        // 4 IP rules, 3 protocols × (exact + 5 suffix depths).
        assert_eq!(rules, 4 + 3 * 6);
    }

    #[test]
    fn sids_are_unique_and_stable() {
        let allow = [Domain::parse("good.example").unwrap()];
        let e = eff(&["evil.example", "d41d8cd98f00b204e9800998ecf8427e"]);
        let r = render(&e, None, &allow, &opts(Mode::Ips, Action::Drop));
        let sids: Vec<&str> = r
            .rules
            .lines()
            .filter_map(|l| l.split("sid:").nth(1))
            .collect();
        let unique: std::collections::HashSet<_> = sids.iter().collect();
        assert_eq!(sids.len(), unique.len());
        assert!(r.rules.contains("pass dns any any -> any any"));
        assert!(r.rules.contains("filemd5:hw-md5.lst;"));
        assert!(!r.rules.contains("filesha256"));
    }

    #[test]
    fn domains_are_base64_and_sorted() {
        let e = eff(&["b.example", "A.example"]);
        let r = render(&e, None, &[], &opts(Mode::Ips, Action::Drop));
        let d = r.lists.iter().find(|l| l.name == "hw-domain").unwrap();
        assert_eq!(
            d.values,
            Values::Base64(vec![b64("a.example"), b64("b.example")])
        );
        assert_eq!(b64("a.example"), "YS5leGFtcGxl");
    }

    #[test]
    fn suffix_transform_captures_the_parent() {
        assert_eq!(
            suffix_transform(2),
            r#"pcrexform:"^(?:.+?\.(?=[^.]+(?:\.[^.]+){1}$)|.*)(.*)$";"#
        );
    }

    #[test]
    fn blocks_name_follows_the_rules() {
        let d = |s: &str| Domain::parse(s).unwrap();
        let mut listed = vec![d("evil.example"), d("a.b.c.d.e.f.g.test")];
        listed.sort();
        let allowed = [d("ok.evil.example")];
        let blocks = |n: &str, sub: bool| blocks_name(&listed, &allowed, &d(n), sub);
        assert!(blocks("evil.example", false));
        assert!(blocks("x.y.evil.example", true));
        assert!(!blocks("x.y.evil.example", false));
        assert!(!blocks("ok.evil.example", true) && !blocks("a.ok.evil.example", true));
        assert!(!blocks("notevil.example", true));
        // Suffix rules stop at 6 labels: deeper listings match exactly only.
        assert!(!blocks("x.a.b.c.d.e.f.g.test", true));
        assert!(blocks("a.b.c.d.e.f.g.test", true));
    }

    #[test]
    fn a_name_under_a_listed_parent_is_left_to_the_parent() {
        let names: Vec<Domain> = [
            "evil.example",
            "c2.evil.example",
            "a.b.c.d.e.evil.example",
            "deep.a.b.c.d.e.f.example",
            "a.b.c.d.e.f.example",
            "other.example",
        ]
        .iter()
        .map(|d| Domain::parse(d).unwrap())
        .collect();
        let kept = |covered: &[Domain], sub: bool| -> Vec<String> {
            enforced_names(&names, covered, sub)
                .map(|d| d.as_str().to_string())
                .collect()
        };
        // `a.b.c.d.e.f.example` has 7 labels: beyond the suffix rules, so it
        // only catches itself and `deep.…` stays.
        assert_eq!(
            kept(&[], true),
            [
                "evil.example",
                "deep.a.b.c.d.e.f.example",
                "a.b.c.d.e.f.example",
                "other.example"
            ]
        );
        assert_eq!(kept(&[], false).len(), names.len());
        // The shadow set: what the blocklist catches is not observed twice.
        let blocked = [Domain::parse("other.example").unwrap()];
        assert_eq!(
            kept(&blocked, true),
            [
                "evil.example",
                "deep.a.b.c.d.e.f.example",
                "a.b.c.d.e.f.example"
            ]
        );
        assert_eq!(
            parents("y.x.a.b.c.d.e.f").collect::<Vec<_>>(),
            ["a.b.c.d.e.f", "b.c.d.e.f", "c.d.e.f", "d.e.f", "e.f"]
        );
    }

    #[test]
    fn bypass_rules_only_when_asked_and_http_only_without_file_hashes() {
        let mut o = opts(Mode::Ips, Action::Drop);
        let e = eff(&["evil.example"]);
        assert!(!render(&e, None, &[], &o).rules.contains("bypass"));
        o.flow_bypass = true;
        let r = render(&e, None, &[], &o).rules;
        let bypass: Vec<&str> = r.lines().filter(|l| l.contains(" bypass;")).collect();
        assert_eq!(bypass.len(), 4, "{r}");
        assert!(bypass
            .iter()
            .all(|l| l.starts_with("alert ") && l.contains("noalert;")));
        assert!(bypass.iter().any(|l| l.starts_with("alert http")));
        // A file hash is read from the response body: HTTP stays in the queue.
        let files = eff(&["evil.example", "d41d8cd98f00b204e9800998ecf8427e"]);
        let r = render(&files, None, &[], &o).rules;
        assert!(r.contains("filemd5:"));
        assert!(!r
            .lines()
            .any(|l| l.starts_with("alert http") && l.contains(" bypass;")));
        assert_eq!(r.lines().filter(|l| l.contains(" bypass;")).count(), 3);
    }

    #[test]
    fn no_subdomain_rules_when_disabled() {
        let mut o = opts(Mode::Ips, Action::Drop);
        o.match_subdomains = false;
        let e = eff(&["evil.example"]);
        let r = render(&e, None, &[], &o);
        assert!(!r.rules.contains("pcrexform"));
    }
}
