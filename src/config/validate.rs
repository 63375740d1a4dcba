//! Checks of a parsed config, once at start: each error names the key and
//! the value; what is valid but weakens the appliance becomes a warning.

use super::*;

impl Config {
    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        self.allowlist()?;
        self.warninglists
            .check()
            .map_err(|(key, message)| self.err(key, message))?;
        self.control_access
            .check()
            .map_err(|(key, message)| self.err(key, message))?;
        self.limits
            .check()
            .map_err(|(key, message)| self.err(key, message))?;
        self.metrics
            .check()
            .map_err(|(key, message)| self.err(key, message))?;
        notify::check(&self.notify).map_err(|(key, message)| self.err(key, message))?;
        self.mqtt
            .check()
            .map_err(|(key, message)| self.err(key, message))?;
        self.devices
            .check()
            .map_err(|(key, message)| self.err(key, message))?;
        self.signatures
            .check()
            .map_err(|(key, message)| self.err(key, message))?;
        let e = &self.enforcement;
        // Each listed network becomes one dataset entry per address: a /8 or
        // a /64 from a feed would be millions (or 2^64) of them.
        if !(MIN_IPV4_PREFIX..=32).contains(&e.max_ipv4_prefix) {
            return Err(self.err(
                "enforcement.max_ipv4_prefix",
                format!("{} is not a prefix length of {MIN_IPV4_PREFIX}-32 (each network is expanded into its addresses: at most 65,536)", e.max_ipv4_prefix),
            ));
        }
        if e.max_shrink > 100 {
            return Err(self.err(
                "enforcement.max_shrink",
                format!("{} is not a percentage (0-100)", e.max_shrink),
            ));
        }
        if !(MIN_IPV6_PREFIX..=128).contains(&e.max_ipv6_prefix) {
            return Err(self.err(
                "enforcement.max_ipv6_prefix",
                format!("{} is not a prefix length of {MIN_IPV6_PREFIX}-128 (each network is expanded into its addresses: at most 65,536)", e.max_ipv6_prefix),
            ));
        }
        // Suricata's socket path is a sun_path: 107 bytes at most.
        for (key, p) in [
            ("control_socket", &self.control_socket),
            ("suricata.command_socket", &self.suricata.command_socket),
            ("alerts.eve_socket", &self.alerts.eve_socket),
            ("suricata.dns_socket", &self.dns_socket()),
        ] {
            if p.as_os_str().len() > 107 {
                return Err(self.err(
                    key,
                    format!(
                        "{:?} is longer than a unix socket path may be (107 bytes)",
                        p
                    ),
                ));
            }
        }
        for (i, t) in self.alerts.high_threat_levels.iter().enumerate() {
            if !(1..=4).contains(t) {
                return Err(self.err(
                    format!("alerts.high_threat_levels[{i}]"),
                    format!(
                        "{t} is not a MISP threat level (1 High, 2 Medium, 3 Low, 4 Undefined)"
                    ),
                ));
            }
        }
        if !(1..=4).contains(&self.alerts.high_severity) {
            return Err(self.err(
                "alerts.high_severity",
                format!(
                    "{} is not a Suricata severity (1-4)",
                    self.alerts.high_severity
                ),
            ));
        }
        let retry = self.alerts.retry_first;
        if retry < Duration::from_secs(1) || retry > Duration::from_secs(respond::MAX_BACKOFF_SECS)
        {
            return Err(self.err(
                "alerts.retry_first",
                format!(
                    "{} is out of range: write 1s to 1h",
                    humantime::format_duration(retry)
                ),
            ));
        }
        self.validate_network()?;
        self.mail.check().map_err(|(k, m)| self.err(k, m))?;
        if let Some(u) = &self.advisor.url {
            check_url(u).map_err(|m| self.err("advisor.url", m))?;
        }
        if self.advisor.tries == 0 {
            return Err(self.err("advisor.tries", "must be at least 1"));
        }
        for (key, ca) in [
            ("advisor.ca_file", &self.advisor.ca_file),
            ("mail.ca_file", &self.mail.ca_file),
        ] {
            if let Some(ca) = ca {
                if !ca.is_file() {
                    return Err(self.err(key, format!("{ca:?} is not a readable file")));
                }
            }
        }
        let mut names = HashSet::new();
        for (i, s) in self.sources.iter().enumerate() {
            let at = |k: &str| format!("sources[{i}].{k}");
            let name = s.name();
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.');
            if !name_ok {
                return Err(self.err(
                    at("name"),
                    format!("{name:?} must be 1-64 of [A-Za-z0-9._-]"),
                ));
            }
            if !names.insert(name) {
                return Err(self.err(at("name"), format!("{name:?} is used by another source")));
            }
            if s.interval() < Duration::from_secs(1) {
                return Err(self.err(at("interval"), "must be at least 1s"));
            }
            match s {
                SourceConfig::Misp(m) => {
                    let u = check_url(&m.url).map_err(|msg| self.err(at("url"), msg))?;
                    if u.scheme() == "http" && !m.allow_plain_http {
                        return Err(self.err(
                            at("url"),
                            format!("{:?} is plain http: the API key would cross the network in clear (set allow_plain_http: true to accept)", m.url),
                        ));
                    }
                    if m.types.is_empty() {
                        return Err(self.err(at("types"), "must name at least one attribute type"));
                    }
                    if m.page_limit == 0 {
                        return Err(self.err(at("page_limit"), "must be at least 1"));
                    }
                    if let Some(ca) = &m.ca_file {
                        if !ca.is_file() {
                            return Err(
                                self.err(at("ca_file"), format!("{:?} is not a readable file", ca))
                            );
                        }
                    }
                }
                SourceConfig::List(l) if l.max_refused > 100 => {
                    return Err(self.err(
                        at("max_refused"),
                        format!("{} is not a percentage (0-100)", l.max_refused),
                    ));
                }
                SourceConfig::List(l)
                    if l.column != Column::Index(0)
                        && matches!(l.format, Format::Plain | Format::Hosts) =>
                {
                    return Err(self.err(
                        at("column"),
                        format!(
                            "a {} list has no columns (column is for csv, columns and auto)",
                            l.format
                        ),
                    ));
                }
                SourceConfig::MispFeed(FeedSource { url, path, .. })
                | SourceConfig::List(ListSource { url, path, .. }) => match (url, path) {
                    (Some(u), None) => {
                        check_url(u).map_err(|msg| self.err(at("url"), msg))?;
                    }
                    (None, Some(_)) => {}
                    _ => return Err(self.err(at("url"), "give exactly one of url and path")),
                },
            }
        }
        Ok(())
    }

    fn validate_network(&self) -> Result<(), ConfigError> {
        let n = &self.network;
        // Linux interface names: at most 15 bytes, no '/', no whitespace.
        let iface_ok = |i: &str| {
            !i.is_empty()
                && i.len() <= 15
                && i.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-@".contains(&b))
        };
        if !iface_ok(&n.uplink) {
            return Err(self.err(
                "network.uplink",
                format!(
                    "{:?} is not an interface name (1-15 of [A-Za-z0-9._@-])",
                    n.uplink
                ),
            ));
        }
        if let Some(l) = &n.lan {
            if !iface_ok(l) {
                return Err(self.err(
                    "network.lan",
                    format!("{l:?} is not an interface name (1-15 of [A-Za-z0-9._@-])"),
                ));
            }
        }
        if n.lan() == n.uplink && n.placement != Placement::Gateway {
            return Err(self.err(
                "network.lan",
                format!(
                    "{:?} is also the uplink: {} placement needs two interfaces",
                    n.lan(),
                    match n.placement {
                        Placement::Ap => "the ap",
                        _ => "the bridge",
                    }
                ),
            ));
        }
        let ssid = &n.ap.ssid;
        if ssid.is_empty() || ssid.len() > 32 || ssid.chars().any(char::is_control) {
            return Err(self.err(
                "network.ap.ssid",
                format!("{ssid:?} must be 1-32 bytes without control characters"),
            ));
        }
        let cc = &n.ap.country;
        if cc.len() != 2 || !cc.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(self.err(
                "network.ap.country",
                format!("{cc:?} is not a two-letter country code such as \"GB\" or \"DE\""),
            ));
        }
        let ch = n.ap.channel;
        if !((1..=14).contains(&ch) || (36..=177).contains(&ch)) {
            return Err(self.err(
                "network.ap.channel",
                format!("{ch} is not a Wi-Fi channel (1-14 or 36-177)"),
            ));
        }
        let a = n.lan_address;
        let host = a.addr();
        if !(8..=30).contains(&a.prefix_len()) || host == a.network() || host == a.broadcast() {
            return Err(self.err(
                "network.lan_address",
                format!("\"{a}\" must be the Pi's own address with a /8 to /30 prefix, such as \"192.168.73.1/24\""),
            ));
        }
        Ok(())
    }

    /// Settings that are valid but weaken the appliance: the agent logs them
    /// at start and `status` shows them, so a lab setting left on is seen.
    pub fn warnings(&self) -> Vec<String> {
        let mut out: Vec<String> = self.metrics.warning().into_iter().collect();
        out.extend(self.notify.iter().filter_map(PushTarget::warning));
        out.extend(self.mqtt.warnings());
        let plain = |url: &str| {
            url.get(..7)
                .is_some_and(|s| s.eq_ignore_ascii_case("http://"))
        };
        for (i, s) in self.sources.iter().enumerate() {
            let at = format!("sources[{i}] ({})", s.name());
            let url = match s {
                SourceConfig::Misp(m) => {
                    if !m.verify_tls {
                        out.push(format!("{at}: verify_tls is off: anyone on the path can pose as the MISP server and read its API key"));
                    }
                    Some(m.url.as_str())
                }
                SourceConfig::MispFeed(f) => f.url.as_deref(),
                SourceConfig::List(l) => l.url.as_deref(),
            };
            if url.is_some_and(plain) {
                out.push(format!(
                    "{at}: plain http: anyone on the path can change what is blocked"
                ));
            }
        }
        let m = &self.mail;
        if !m.to.is_empty() && m.security == respond::Security::None && !is_local_host(&m.host) {
            out.push(format!("mail: security none to {}: mail (incident details) crosses the network unencrypted and unauthenticated", m.host));
        }
        out
    }
}

/// `localhost` or a loopback address: a relay on the Pi itself.
fn is_local_host(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn check_url(u: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(u).map_err(|e| format!("{u:?} is not a URL ({e})"))?;
    match url.scheme() {
        "http" | "https" if url.host().is_some() => Ok(url),
        _ => Err(format!("{u:?} must be an http(s) URL with a host")),
    }
}
