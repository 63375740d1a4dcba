//! The effective blocklist: every source's set, less what the allowlist,
//! the warninglists and the guards keep out, with what was kept out and why.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::SourceSet;
use crate::intel::ioc::{Domain, Ioc, Md5, Sha256};
use crate::intel::warninglist::{Verdict, Warninglists};

/// What may never be blocked: configured networks and domains plus, by default,
/// the special-purpose ranges a home network lives in.
#[derive(Clone, Debug, Default)]
pub struct Allowlist {
    nets: Vec<IpNet>,
    domains: Vec<Domain>,
}

/// Ranges that are never a remote attacker from a home's point of view:
/// blocking them would cut the LAN, the gateway or multicast discovery.
pub const BUILTIN_ALLOW: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.168.0.0/16",
    "224.0.0.0/4",
    "240.0.0.0/4",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

impl Allowlist {
    /// Builds an allowlist.
    pub fn new(nets: Vec<IpNet>, domains: Vec<Domain>, builtin: bool) -> Self {
        let mut nets = nets;
        if builtin {
            nets.extend(BUILTIN_ALLOW.iter().filter_map(|s| s.parse::<IpNet>().ok()));
        }
        Allowlist { nets, domains }
    }

    /// Adds more never-block networks and domains (the owner's own allowances).
    pub fn extend(&mut self, nets: Vec<IpNet>, domains: Vec<Domain>) {
        self.nets.extend(nets);
        self.domains.extend(domains);
    }

    /// True if the address must never be blocked.
    pub fn allows_ip(&self, ip: IpAddr) -> bool {
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// True if the domain is, or is under, an allowlisted domain.
    pub fn allows_domain(&self, d: &Domain) -> bool {
        self.domains.iter().any(|a| d.is_within(a))
    }

    /// Allowlisted domains (rendered as pass rules so subdomain blocking never catches them).
    pub fn domains(&self) -> &[Domain] {
        &self.domains
    }

    /// True if any allowlisted network overlaps `net`.
    fn overlaps(&self, net: &IpNet) -> bool {
        self.nets.iter().any(|a| a.contains(net) || net.contains(a))
    }
}

/// Limits on expanding networks into single addresses (Suricata datasets hold addresses, not CIDRs).
#[derive(Clone, Copy, Debug)]
pub struct ExpandLimits {
    /// Widest IPv4 network expanded (prefix length); wider ones are refused.
    pub max_v4_prefix: u8,
    /// Widest IPv6 network expanded (prefix length); wider ones are refused.
    pub max_v6_prefix: u8,
}

impl Default for ExpandLimits {
    fn default() -> Self {
        // /20 = 4096 addresses: a hosting range, never a whole provider.
        ExpandLimits {
            max_v4_prefix: 20,
            max_v6_prefix: 116,
        }
    }
}

/// What keeps listed values out of the effective set.
#[derive(Clone, Copy)]
pub struct Guard<'a> {
    /// Never blocked.
    pub allow: &'a Allowlist,
    /// How far networks are expanded.
    pub limits: ExpandLimits,
    /// Warninglists: exempt values are left out, warn values counted.
    pub lists: &'a Warninglists,
}

impl<'a> Guard<'a> {
    /// An allowlist and expansion limits, no warninglists.
    pub fn new(allow: &'a Allowlist, limits: ExpandLimits) -> Self {
        Guard {
            allow,
            limits,
            lists: Warninglists::none(),
        }
    }
}

/// The blocklist Suricata enforces, by kind, sorted and de-duplicated.
///
/// Sorted vectors rather than trees: a million addresses take 4 MB, not 40.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Effective {
    /// IPv4 addresses.
    pub ipv4: Vec<Ipv4Addr>,
    /// IPv6 addresses.
    pub ipv6: Vec<Ipv6Addr>,
    /// Domains (subdomains match too, unless allowlisted).
    pub domains: Vec<Domain>,
    /// File MD5s.
    pub md5: Vec<Md5>,
    /// File SHA-256s.
    pub sha256: Vec<Sha256>,
    /// Networks too wide to expand, enforced as address groups in rules.
    pub wide: Vec<WideNet>,
}

/// A network wider than the expansion limit, with the parts of it that are
/// never blocked (the allowlist's networks, exempt warninglist ranges).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct WideNet {
    /// The listed network.
    pub net: IpNet,
    /// Never-blocked networks inside it.
    pub except: Vec<IpNet>,
}

impl WideNet {
    /// True if `ip` is in the network and in none of its exceptions.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.net.contains(&ip) && !self.except.iter().any(|e| e.contains(&ip))
    }
}

/// Widest networks enforced at all (as address groups): a /8 or a /16 of
/// IPv6 is a whole provider; anything wider is refused as `too_wide`.
pub const MIN_WIDE_V4_PREFIX: u8 = 8;
/// The IPv6 counterpart of [`MIN_WIDE_V4_PREFIX`].
pub const MIN_WIDE_V6_PREFIX: u8 = 16;
/// Most wide networks enforced (Spamhaus DROP, EDROP and DROPv6 together
/// hold ~1,800); more are refused as `too_wide`.
pub const MAX_WIDE_NETS: usize = 10_000;
/// Most warninglist exceptions kept inside one wide network (a /8 may hold
/// thousands of public resolvers; beyond this many they are blocked with it).
pub const MAX_EXCEPTIONS: usize = 64;

/// Addresses in a network (saturating at 2^128 - 1 for ::/0).
fn size(n: &IpNet) -> u128 {
    let host_bits = u32::from(n.max_prefix_len() - n.prefix_len());
    1u128.checked_shl(host_bits).unwrap_or(u128::MAX)
}

fn sort_dedup<T: Ord>(v: &mut Vec<T>) {
    v.sort_unstable();
    v.dedup();
    v.shrink_to_fit();
}

/// Counts of what did not make it into the effective set, and why.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Dropped {
    /// Matched the allowlist (or the gateway/DNS addresses).
    pub allowlisted: u64,
    /// Networks wider than the expansion limit.
    pub too_wide: u64,
    /// Not enforced: on an exempt warninglist, by list.
    #[serde(default)]
    pub warninglisted: BTreeMap<String, u64>,
    /// Enforced, but on a warn warninglist, by list.
    #[serde(default)]
    pub warned: BTreeMap<String, u64>,
}

impl Dropped {
    /// Adds another count (shadow mode builds two sets).
    pub fn merge(&mut self, other: Dropped) {
        self.allowlisted += other.allowlisted;
        self.too_wide += other.too_wide;
        for (k, v) in other.warninglisted {
            *self.warninglisted.entry(k).or_insert(0) += v;
        }
        for (k, v) in other.warned {
            *self.warned.entry(k).or_insert(0) += v;
        }
    }

    /// One line on what the warninglists did, if anything.
    pub fn warninglists_line(&self) -> Option<String> {
        let list = |m: &BTreeMap<String, u64>| {
            let total: u64 = m.values().sum();
            let each: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
            (total, each.join(", "))
        };
        let mut parts = Vec::new();
        if !self.warninglisted.is_empty() {
            let (n, each) = list(&self.warninglisted);
            parts.push(format!("{n} not enforced ({each})"));
        }
        if !self.warned.is_empty() {
            let (n, each) = list(&self.warned);
            parts.push(format!("{n} enforced on a warn list ({each})"));
        }
        (!parts.is_empty()).then(|| format!("warninglists: {}", parts.join("; ")))
    }

    /// Counts a warninglist verdict; true if the value is to be left out.
    fn judged(&mut self, v: Verdict<'_>) -> bool {
        match v {
            Verdict::Clear => false,
            Verdict::Exempt(name) => {
                *self.warninglisted.entry(name.to_string()).or_insert(0) += 1;
                true
            }
            Verdict::Warn(name) => {
                *self.warned.entry(name.to_string()).or_insert(0) += 1;
                false
            }
        }
    }
}

impl Effective {
    /// Merges all sources, applies the allowlist and expands networks.
    pub fn build<'a>(
        sources: impl IntoIterator<Item = &'a SourceSet>,
        guard: Guard<'_>,
    ) -> (Effective, Dropped) {
        Effective::from_iocs(sources.into_iter().flat_map(|s| s.iocs()), guard)
    }

    /// The same from indicators picked one by one (shadow mode splits sources).
    pub fn from_iocs<'a>(
        iocs: impl IntoIterator<Item = &'a Ioc>,
        guard: Guard<'_>,
    ) -> (Effective, Dropped) {
        let mut eff = Effective::default();
        let mut dropped = Dropped::default();
        for ioc in iocs {
            eff.add(ioc, guard, &mut dropped);
        }
        sort_dedup(&mut eff.ipv4);
        sort_dedup(&mut eff.ipv6);
        sort_dedup(&mut eff.domains);
        sort_dedup(&mut eff.md5);
        sort_dedup(&mut eff.sha256);
        sort_dedup(&mut eff.wide);
        (eff, dropped)
    }

    fn add(&mut self, ioc: &Ioc, guard: Guard<'_>, dropped: &mut Dropped) {
        let Guard {
            allow,
            limits,
            lists,
        } = guard;
        match ioc {
            Ioc::Ipv4(a) => {
                if allow.allows_ip(IpAddr::V4(*a)) {
                    dropped.allowlisted += 1;
                } else if !dropped.judged(lists.verdict(ioc)) {
                    self.ipv4.push(*a);
                }
            }
            Ioc::Ipv6(a) => {
                if allow.allows_ip(IpAddr::V6(**a)) {
                    dropped.allowlisted += 1;
                } else if !dropped.judged(lists.verdict(ioc)) {
                    self.ipv6.push(**a);
                }
            }
            Ioc::Net(net) => {
                let (max, min) = match **net {
                    IpNet::V4(_) => (limits.max_v4_prefix, MIN_WIDE_V4_PREFIX),
                    IpNet::V6(_) => (limits.max_v6_prefix, MIN_WIDE_V6_PREFIX),
                };
                if net.prefix_len() < max {
                    if net.prefix_len() < min || self.wide.len() >= MAX_WIDE_NETS {
                        dropped.too_wide += 1;
                    } else {
                        self.add_wide(ioc, net, guard, dropped);
                    }
                    return;
                }
                let check_each = allow.overlaps(net);
                // Addresses of the network one by one only where a list
                // holds some of them; counted once per network.
                let listed = lists.verdict(ioc);
                let anyway = lists.enforced_anyway(ioc);
                let mut exempted = None;
                for host in net.hosts_all() {
                    if check_each && allow.allows_ip(host) {
                        continue;
                    }
                    if listed != Verdict::Clear && !anyway {
                        if let Verdict::Exempt(name) = lists.verdict_ip(host) {
                            exempted = Some(name);
                            continue;
                        }
                    }
                    match host {
                        IpAddr::V4(a) => self.ipv4.push(a),
                        IpAddr::V6(a) => self.ipv6.push(a),
                    };
                }
                if check_each {
                    dropped.allowlisted += 1;
                }
                match (exempted, listed) {
                    (Some(name), _) => {
                        dropped.judged(Verdict::Exempt(name));
                    }
                    (None, Verdict::Warn(_)) if !anyway => {
                        dropped.judged(listed);
                    }
                    _ => {}
                }
            }
            Ioc::Domain(d) => {
                if allow.allows_domain(d) {
                    dropped.allowlisted += 1;
                } else if !dropped.judged(lists.verdict(ioc)) {
                    self.domains.push(d.clone());
                }
            }
            Ioc::Md5(h) => {
                if !dropped.judged(lists.verdict(ioc)) {
                    self.md5.push(h.clone());
                }
            }
            Ioc::Sha256(h) => {
                if !dropped.judged(lists.verdict(ioc)) {
                    self.sha256.push(h.clone());
                }
            }
        }
    }

    /// A wide network with its never-blocked parts cut out; left out when
    /// nothing of it would be blocked.
    fn add_wide(&mut self, ioc: &Ioc, net: &IpNet, guard: Guard<'_>, dropped: &mut Dropped) {
        let Guard { allow, lists, .. } = guard;
        if allow.nets.iter().any(|a| a.contains(net)) {
            dropped.allowlisted += 1;
            return;
        }
        let mut except: Vec<IpNet> = allow
            .nets
            .iter()
            .filter(|a| net.contains(*a))
            .copied()
            .collect();
        let allowed_inside = !except.is_empty();
        if !lists.enforced_anyway(ioc) {
            let (exempt, name) = lists.exempt_within(net);
            if exempt.first() == Some(net) {
                dropped.judged(Verdict::Exempt(name.unwrap_or_default()));
                return;
            }
            if exempt.len() <= MAX_EXCEPTIONS {
                except.extend(exempt);
            }
            if let Verdict::Warn(name) = lists.verdict(ioc) {
                dropped.judged(Verdict::Warn(name));
            }
        }
        // Only the outermost exceptions: one inside another adds nothing.
        except.sort_by_key(|n| (n.network(), n.prefix_len()));
        except.dedup_by(|inner, outer| outer.contains(&*inner));
        let covered: u128 = except.iter().map(size).sum();
        if covered >= size(net) {
            dropped.allowlisted += 1;
            return;
        }
        if allowed_inside {
            dropped.allowlisted += 1;
        }
        self.wide.push(WideNet { net: *net, except });
    }

    /// Removes every value `other` holds (what is enforced need not be shadowed).
    pub fn remove_all(&mut self, other: &Effective) {
        fn minus<T: Ord>(v: &mut Vec<T>, o: &[T]) {
            v.retain(|x| o.binary_search(x).is_err());
        }
        minus(&mut self.ipv4, &other.ipv4);
        minus(&mut self.ipv6, &other.ipv6);
        minus(&mut self.domains, &other.domains);
        minus(&mut self.md5, &other.md5);
        minus(&mut self.sha256, &other.sha256);
        minus(&mut self.wide, &other.wide);
    }

    /// True if `ip` is on the address blocklist.
    pub fn contains_ip(&self, ip: std::net::IpAddr) -> bool {
        let single = match ip {
            std::net::IpAddr::V4(a) => self.ipv4.binary_search(&a).is_ok(),
            std::net::IpAddr::V6(a) => self.ipv6.binary_search(&a).is_ok(),
        };
        single || self.wide.iter().any(|w| w.contains(ip))
    }

    /// Total number of blocked values.
    pub fn len(&self) -> usize {
        self.ipv4.len()
            + self.ipv6.len()
            + self.domains.len()
            + self.md5.len()
            + self.sha256.len()
            + self.wide.len()
    }

    /// True when nothing is blocked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Every address of a network, network and broadcast included (an attacker's /28
/// uses all of them, unlike a LAN).
trait HostsAll {
    fn hosts_all(&self) -> Box<dyn Iterator<Item = IpAddr>>;
}

impl HostsAll for IpNet {
    fn hosts_all(&self) -> Box<dyn Iterator<Item = IpAddr>> {
        match *self {
            IpNet::V4(n) => {
                let start = u32::from(n.network());
                let end = u32::from(n.broadcast());
                Box::new((start..=end).map(|x| IpAddr::V4(Ipv4Addr::from(x))))
            }
            IpNet::V6(n) => {
                let start = u128::from(n.network());
                let end = u128::from(n.broadcast());
                Box::new((start..=end).map(|x| IpAddr::V6(Ipv6Addr::from(x))))
            }
        }
    }
}
