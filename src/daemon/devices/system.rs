//! The system around the devices' owner: the vendor classes the lease
//! script kept, the kernel's neighbour table, the Pi's own addresses and
//! gateways, and a leftover quarantine table taken away when the inventory is off.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use super::VENDOR_DIR;
use crate::devices::quarantine;
use crate::devices::sight::{self, Sighting};
use crate::devices::{clean, Mac};

/// The vendor classes the lease script left beside the leases (a file per MAC).
pub(super) async fn read_vendor_classes(leases: &Path) -> HashMap<Mac, String> {
    let Some(dir) = leases.parent().map(|p| p.join(VENDOR_DIR)) else {
        return HashMap::new();
    };
    let mut out = HashMap::new();
    let Ok(mut entries) = tokio::fs::read_dir(&dir).await else {
        return out;
    };
    while let Ok(Some(e)) = entries.next_entry().await {
        let Some(mac) = e.file_name().to_str().and_then(|n| n.parse::<Mac>().ok()) else {
            continue;
        };
        if let Ok(text) = tokio::fs::read_to_string(e.path()).await {
            if let Some(c) = clean(text.lines().next().unwrap_or(""), 64) {
                out.insert(mac, c);
            }
        }
        if out.len() >= crate::config::devices::MAX_DEVICES {
            break;
        }
    }
    out
}

/// The neighbours of `dev` from `ip -json neigh`.
pub(super) async fn neighbours(dev: &str) -> Result<Vec<Sighting>, String> {
    let json = ip_json(&["neigh", "show", "dev", dev]).await?;
    sight::neighbours(&json).map_err(|e| format!("ip neigh: {e}"))
}

/// The Pi's own addresses and its default gateways, as the kernel has them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct Local {
    /// Every address of every interface.
    pub own: Vec<IpAddr>,
    /// The next hops of the default routes (IPv4 and IPv6).
    pub gateways: Vec<IpAddr>,
}

/// Runs `ip -json ARGS` with a bound.
async fn ip_json(args: &[&str]) -> Result<Vec<u8>, String> {
    let out = tokio::time::timeout(
        Duration::from_secs(5),
        crate::child::tokio_command("ip")
            .arg("-json")
            .args(args)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .map_err(|_| format!("ip {}: no answer within 5 s", args.join(" ")))?
    .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if !out.status.success() {
        return Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(out.stdout)
}

/// Reads [`Local`] from `ip -json addr` and the default routes.
pub(super) async fn local_infrastructure() -> Result<Local, String> {
    let addrs = ip_json(&["addr", "show"]).await?;
    let mut gateways = Vec::new();
    for family in ["-4", "-6"] {
        gateways.extend(parse_gateways(
            &ip_json(&[family, "route", "show", "default"]).await?,
        )?);
    }
    Ok(Local {
        own: parse_own(&addrs)?,
        gateways,
    })
}

fn parse_own(json: &[u8]) -> Result<Vec<IpAddr>, String> {
    #[derive(serde::Deserialize)]
    struct Link {
        #[serde(default)]
        addr_info: Vec<Info>,
    }
    #[derive(serde::Deserialize)]
    struct Info {
        local: Option<IpAddr>,
    }
    let links: Vec<Link> = serde_json::from_slice(json).map_err(|e| format!("ip addr: {e}"))?;
    Ok(links
        .into_iter()
        .flat_map(|l| l.addr_info)
        .filter_map(|i| i.local)
        .collect())
}

fn parse_gateways(json: &[u8]) -> Result<Vec<IpAddr>, String> {
    #[derive(serde::Deserialize)]
    struct Route {
        gateway: Option<IpAddr>,
    }
    let routes: Vec<Route> = serde_json::from_slice(json).map_err(|e| format!("ip route: {e}"))?;
    Ok(routes.into_iter().filter_map(|r| r.gateway).collect())
}

/// With the inventory off no hold may outlive it, unseen in status: a
/// quarantine table an earlier run left (it lasts until a reboot) is taken
/// away, and the log says so.
pub async fn lift_leftover() {
    let table = crate::child::tokio_command("nft")
        .args(["list", "table", "inet", quarantine::TABLE])
        .kill_on_drop(true)
        .output();
    let listed = tokio::time::timeout(Duration::from_secs(5), table)
        .await
        .is_ok_and(|o| o.is_ok_and(|o| o.status.success()));
    if !listed {
        return;
    }
    let script = quarantine::render(&[], &quarantine::Leave::default());
    let r = tokio::task::spawn_blocking(move || crate::enforce::firewall::load(&script))
        .await
        .map_err(|e| e.to_string())
        .and_then(|r| r.map_err(|e| e.to_string()));
    match r {
        Ok(()) => tracing::warn!("devices.enabled is false: every quarantine lifted"),
        Err(e) => tracing::error!(
            "devices.enabled is false, but the quarantine's table (inet {}) stays: {e}",
            quarantine::TABLE
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pis_own_addresses_and_gateways_are_read_from_ip_json() {
        let addrs = br#"[{"ifindex":1,"ifname":"lo","addr_info":[{"family":"inet","local":"127.0.0.1","prefixlen":8}]},
{"ifindex":2,"ifname":"eth0","addr_info":[{"family":"inet","local":"192.168.1.5","prefixlen":24},{"family":"inet6","local":"fe80::5","prefixlen":64}]},
{"ifindex":3,"ifname":"eth1"}]"#;
        let own = parse_own(addrs).unwrap();
        assert_eq!(own.len(), 3);
        assert!(own.contains(&"192.168.1.5".parse().unwrap()));
        let routes = br#"[{"dst":"default","gateway":"192.168.1.1","dev":"eth0"},{"dst":"default","dev":"wg0"}]"#;
        assert_eq!(
            parse_gateways(routes).unwrap(),
            ["192.168.1.1".parse::<IpAddr>().unwrap()]
        );
        assert!(parse_gateways(b"[]").unwrap().is_empty());
        assert!(parse_own(b"nope").is_err());
    }
}
