//! Network placement: the systemd-networkd, hostapd, dnsmasq and nftables
//! files that put the Pi between the home's devices and the internet, rendered
//! from `network:` of the config.
//!
//! Everything lands under /run, so each boot renders afresh from the config
//! and nothing stale survives a change of placement. `render` is pure;
//! `apply` writes the files and removes the ones a previous placement left.

use std::fmt::Write as _;
use std::fs;
use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::config::{Canaries, Network, Placement, BRIDGE};
use crate::fsutil::write_atomic_mode;

/// Where systemd-networkd reads runtime network files.
pub const NETWORKD_DIR: &str = "run/systemd/network";
/// Where the hostapd, dnsmasq and nftables files go.
pub const RUN_DIR: &str = "run/homewarden";
/// The nftables table holding the NAT of `ap` and `gateway`.
pub const NAT_TABLE: &str = "homewarden_nat";

/// Every file name this module may write: what `apply` removes when the
/// current placement does not render it.
const OWNED: [&str; 8] = [
    "run/systemd/network/10-homewarden-uplink.network",
    "run/systemd/network/10-homewarden-lan.network",
    "run/systemd/network/10-homewarden-bridge.netdev",
    "run/systemd/network/10-homewarden-bridge.network",
    "run/homewarden/hostapd.conf",
    "run/homewarden/dnsmasq.conf",
    "run/homewarden/network.nft",
    "run/homewarden/placement",
];

/// One rendered file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct File {
    /// Path relative to the root (`run/…`).
    pub path: &'static str,
    /// Unix permission bits.
    pub mode: u32,
    /// The contents.
    pub contents: String,
}

/// Why a placement cannot be rendered or applied.
#[derive(Debug, thiserror::Error)]
pub enum PlacementError {
    /// The `ap` placement without a usable Wi-Fi passphrase.
    #[error("network.placement: ap needs the Wi-Fi passphrase HOMEWARDEN_WIFI_PASSPHRASE (secrets.wifi_passphrase on the boot partition): {0}")]
    Passphrase(String),
    /// A file could not be written or removed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
}

/// Checks a WPA2 passphrase the way hostapd reads it: 8-63 printable ASCII
/// characters (anything else would be taken as a different key or refused).
pub fn check_passphrase(p: Option<&str>) -> Result<&str, PlacementError> {
    let p = p.unwrap_or("");
    if p.is_empty() {
        return Err(PlacementError::Passphrase("it is not set".into()));
    }
    if !(8..=63).contains(&p.len()) {
        return Err(PlacementError::Passphrase(format!(
            "it has {} characters, WPA2 needs 8 to 63",
            p.chars().count()
        )));
    }
    if !p.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(PlacementError::Passphrase(
            "it may hold printable ASCII characters only (no accents, emoji or control characters)"
                .into(),
        ));
    }
    Ok(p)
}

/// The files for the configured placement. `root` is where `/` is (the
/// paths inside the files point there); `passphrase` is the Wi-Fi secret.
pub fn render(
    net: &Network,
    root: &Path,
    passphrase: Option<&str>,
) -> Result<Vec<File>, PlacementError> {
    let header = "# Rendered by `homewarden network apply` from network: of /etc/homewarden/homewarden.yaml\n# at every boot: edit that file, not this one.\n";
    let uplink = net.uplink.as_str();
    let lan = net.lan();
    let mut files = vec![File {
        path: "run/homewarden/placement",
        mode: 0o644,
        contents: format!(
            "placement={}\nuplink={uplink}\nlan={lan}\n",
            net.placement.as_str()
        ),
    }];
    let networkd = |name: &'static str, body: String| File {
        path: name,
        mode: 0o644,
        contents: format!("{header}{body}"),
    };
    let dhcp_client = "[Network]\nDHCP=yes\nLinkLocalAddressing=ipv6\n\n[DHCPv4]\nUseDomains=yes\n";
    let uplink_dhcp = networkd(
        "run/systemd/network/10-homewarden-uplink.network",
        format!("[Match]\nName={uplink}\n\n{dhcp_client}"),
    );
    // What the NAT masquerades, if anything.
    let masquerade = match net.placement {
        Placement::Bridge => {
            files.push(networkd(
                "run/systemd/network/10-homewarden-bridge.netdev",
                format!("[NetDev]\nName={BRIDGE}\nKind=bridge\n\n[Bridge]\n# Forward at once: a device should not wait 15 s for its link.\nForwardDelaySec=0\nSTP=no\n"),
            ));
            for (file, iface) in [
                ("run/systemd/network/10-homewarden-uplink.network", uplink),
                ("run/systemd/network/10-homewarden-lan.network", lan),
            ] {
                files.push(networkd(
                    file,
                    format!("[Match]\nName={iface}\n\n[Network]\nBridge={BRIDGE}\n"),
                ));
            }
            // The Pi's own address (SSH, MISP, mail) is the bridge's.
            files.push(networkd(
                "run/systemd/network/10-homewarden-bridge.network",
                format!("[Match]\nName={BRIDGE}\n\n{dhcp_client}"),
            ));
            None
        }
        Placement::Gateway if !net.routes_own_subnet() => {
            files.push(uplink_dhcp);
            // One arm: devices that route through the Pi send and receive on the
            // same link. Masquerading the hairpin makes the replies come back
            // through the Pi too, so Suricata sees both directions; without it
            // the router would answer the device directly.
            Some(format!("iifname \"{uplink}\" oifname \"{uplink}\""))
        }
        Placement::Gateway | Placement::Ap => {
            let a = net.lan_address;
            files.push(uplink_dhcp);
            // Up without carrier: dnsmasq binds to the address before a
            // device plugs in (or before hostapd brings the Wi-Fi up). Not
            // required for "online": with no device yet, boot (and the agent,
            // which waits for network-online) would stall for two minutes.
            files.push(networkd(
                "run/systemd/network/10-homewarden-lan.network",
                format!("[Match]\nName={lan}\n\n[Link]\nRequiredForOnline=no\n\n[Network]\nAddress={a}\nConfigureWithoutCarrier=yes\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n"),
            ));
            files.push(File {
                path: "run/homewarden/dnsmasq.conf",
                mode: 0o644,
                contents: format!("{header}{}", dnsmasq(lan, a, root, net.canaries)),
            });
            if net.placement == Placement::Ap {
                let pass = check_passphrase(passphrase)?;
                files.push(File {
                    path: "run/homewarden/hostapd.conf",
                    mode: 0o600,
                    contents: format!("{header}{}", hostapd(net, pass)),
                });
            }
            Some(format!("oifname \"{uplink}\" ip saddr {}", a.trunc()))
        }
    };
    // Declare-then-delete empties the table whether or not it exists, so
    // loading the file is idempotent and a placement change leaves no NAT behind.
    let mut nft = format!("{header}table ip {NAT_TABLE}\ndelete table ip {NAT_TABLE}\n");
    if let Some(m) = masquerade {
        let _ = write!(
            nft,
            "table ip {NAT_TABLE} {{\n    chain postrouting {{\n        type nat hook postrouting priority srcnat; policy accept;\n        {m} masquerade\n    }}\n}}\n"
        );
    }
    files.push(File {
        path: "run/homewarden/network.nft",
        mode: 0o644,
        contents: nft,
    });
    Ok(files)
}

/// DHCP (and DNS) for the devices' subnet.
fn dnsmasq(lan: &str, a: ipnet::Ipv4Net, root: &Path, canaries: Canaries) -> String {
    let (first, last) = pool(a);
    let at = |p: &str| root.join(p).display().to_string();
    // The Pi answers DNS itself, forwarding to the resolvers the uplink
    // learned by DHCP: the devices' queries reach Suricata through the
    // firewall's input queue (port 53), so domain indicators are enforced
    // on them as on forwarded traffic.
    // A domain with no address answers NXDOMAIN, for it and its subdomains.
    let mut canary = String::new();
    if canaries.firefox {
        canary.push_str(
            "# Firefox: its default DNS over HTTPS stays off on this network (network.canaries.firefox).\n\
             address=/use-application-dns.net/\n",
        );
    }
    if canaries.private_relay {
        canary.push_str(
            "# iCloud Private Relay: this network must see DNS (network.canaries.private_relay).\n\
             address=/mask.icloud.com/mask-h2.icloud.com/\n",
        );
    }
    format!(
        "interface={lan}\n\
         # Only the devices' side, and an interface that may come up late.\n\
         bind-dynamic\n\
         except-interface=lo\n\
         dhcp-range={first},{last},{},12h\n\
         dhcp-option=option:router,{pi}\n\
         dhcp-option=option:dns-server,{pi}\n\
         dhcp-authoritative\n\
         # Leases in RAM: the SD card is not written on every renewal.\n\
         dhcp-leasefile={}\n\
         # Keeps each device's vendor class for the agent's inventory, as\n\
         # dnsmasq's user (not root) into a directory made for it.\n\
         dhcp-script={}\n\
         dhcp-scriptuser=dnsmasq\n\
         resolv-file={}\n\
         no-hosts\n\
         domain-needed\n\
         bogus-priv\n\
         cache-size=1000\n\
         {canary}",
        a.netmask(),
        at("run/homewarden/dnsmasq.leases"),
        at("usr/lib/homewarden/dhcp-lease"),
        at("run/systemd/resolve/resolv.conf"),
        pi = a.addr(),
    )
}

/// The lease pool: the larger run of host addresses on either side of the
/// Pi's own.
fn pool(a: ipnet::Ipv4Net) -> (Ipv4Addr, Ipv4Addr) {
    let pi = u32::from(a.addr());
    let lo = u32::from(a.network()) + 1;
    let hi = u32::from(a.broadcast()) - 1;
    // Validation keeps the Pi inside (network, broadcast) and the prefix at
    // most /30, so one side has at least one address.
    if hi - pi >= pi - lo {
        (Ipv4Addr::from(pi + 1), Ipv4Addr::from(hi))
    } else {
        (Ipv4Addr::from(lo), Ipv4Addr::from(pi - 1))
    }
}

/// The access point. The SSID is written in hex (`ssid2`) so that no
/// character of it can end the line or change its meaning.
fn hostapd(net: &Network, passphrase: &str) -> String {
    let ap = &net.ap;
    let hw_mode = if ap.channel <= 14 { "g" } else { "a" };
    let ssid_hex: String = ap.ssid.bytes().map(|b| format!("{b:02x}")).collect();
    let ac = if hw_mode == "a" {
        "ieee80211ac=1\n"
    } else {
        ""
    };
    format!(
        "interface={lan}\n\
         driver=nl80211\n\
         ssid2={ssid_hex}\n\
         # The regulatory domain decides the legal channels and power.\n\
         country_code={cc}\n\
         ieee80211d=1\n\
         hw_mode={hw_mode}\n\
         channel={ch}\n\
         ieee80211n=1\n\
         {ac}wmm_enabled=1\n\
         auth_algs=1\n\
         wpa=2\n\
         wpa_key_mgmt=WPA-PSK\n\
         rsn_pairwise=CCMP\n\
         wpa_passphrase={passphrase}\n",
        lan = net.lan(),
        cc = ap.country,
        ch = ap.channel,
    )
}

/// One line for `homewarden status` from the rendered placement file and
/// dnsmasq's lease file (`expiry mac ip name client-id` a line): where the Pi
/// sits and how many devices hold a lease now.
pub fn describe(placement: &str, leases: Option<&str>, now: u64) -> String {
    let get = |k: &str| {
        placement
            .lines()
            .find_map(|l| l.strip_prefix(k)?.strip_prefix('='))
            .unwrap_or("?")
    };
    let mut line = format!(
        "network: {} placement, uplink {}, devices on {}",
        get("placement"),
        get("uplink"),
        get("lan")
    );
    if let Some(leases) = leases {
        // Expiry 0 is an infinite lease.
        let live = leases
            .lines()
            .filter_map(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .filter(|&exp| exp == 0 || exp > now)
            .count();
        line.push_str(&format!(
            " ({live} DHCP lease{})",
            if live == 1 { "" } else { "s" }
        ));
    }
    line
}

/// Writes the placement's files under `root` (each atomically, with its
/// mode) and removes the ones of another placement. Returns the written paths.
pub fn apply(files: &[File], root: &Path) -> Result<Vec<PathBuf>, PlacementError> {
    let io_err = |path: &Path, source| PlacementError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut written = Vec::new();
    for f in files {
        let path = root.join(f.path);
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        }
        // The mode is set before the contents land: the passphrase is never
        // readable by others, not even for a moment.
        write_atomic_mode(&path, f.contents.as_bytes(), f.mode).map_err(|e| io_err(&path, e))?;
        written.push(path);
    }
    for stale in OWNED
        .iter()
        .filter(|p| !files.iter().any(|f| f.path == **p))
    {
        let path = root.join(stale);
        match fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err(&path, e)),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests;
