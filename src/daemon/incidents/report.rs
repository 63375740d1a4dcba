//! What the incidents' owner tells MISP: the event for a new high-severity
//! incident, and when its count is worth an update.

use std::net::IpAddr;

use crate::alerts::triage::{Incident, Matched};
use crate::intel::ioc::{Domain, Ioc};
use crate::intel::misp::{EventBody, NewAttribute, NewEvent, TagName};

/// Ports resolvers answer on (DNS, DNS over TLS): an address contacted there
/// looked a name up for the device, whatever else it is.
const RESOLVER_PORTS: &[u16] = &[53, 853];

/// Whether an incident's MISP event is updated at this many alerts: 10, 100, 1000…
pub(super) fn update_due(count: u64) -> bool {
    count >= 10 && 10u64.pow(count.ilog10()) == count
}

/// One attribute of the event.
fn attribute(kind: &str, value: String, to_ids: bool, comment: &str) -> NewAttribute {
    let category = match kind {
        "md5" | "sha256" => "Payload delivery",
        _ => "Network activity",
    };
    NewAttribute {
        kind: kind.into(),
        category: category.into(),
        value,
        to_ids,
        comment: comment.into(),
    }
}

/// The MISP event for a high-severity incident: your organisation only,
/// TLP:AMBER. Only the indicator that matched is to_ids, as it was listed
/// (the name of a name hit, the address of an address hit, the hash of a
/// hash hit): others who take the event into their IDS would otherwise block
/// the resolver that looked a name up, or the CDN address a client chose.
/// Everything else is context: the address contacted for a name, hash or
/// network, the remote of someone else's rule, any address on a resolver
/// port, the home device.
pub(super) fn misp_event(inc: &Incident) -> NewEvent {
    // ET's own rating where a signature carries one (see triage).
    let threat = match (inc.signature_severity.as_deref(), inc.severity) {
        (Some("Critical" | "Major"), _) => "1",
        (Some("Minor"), _) => "2",
        (Some(_), _) => "3",
        (None, 1) => "1",
        (None, 2) => "2",
        (None, _) => "3",
    };
    let home = |ip: &IpAddr| {
        crate::intel::set::BUILTIN_ALLOW
            .iter()
            .filter_map(|n| n.parse::<ipnet::IpNet>().ok())
            .any(|n| n.contains(ip))
    };
    let resolver = inc.remote_port.is_some_and(|p| RESOLVER_PORTS.contains(&p));
    // The value as the source listed it (a hit on `x.evil.example` may come from `evil.example`).
    let listed = inc
        .ioc
        .as_ref()
        .and_then(|p| Ioc::parse_any(&p.indicator).ok());
    let remote = inc.remote_ip.to_string();
    let mut attributes = Vec::new();
    match inc.matched {
        Some(Matched::Address) => {
            let (to_ids, comment) = if resolver {
                (
                    false,
                    "the listed address, contacted on a DNS port: context, as a resolver",
                )
            } else {
                (!home(&inc.remote_ip), "the listed address")
            };
            attributes.push(attribute("ip-dst", remote, to_ids, comment));
        }
        Some(Matched::Network) => {
            if let Some(Ioc::Net(net)) = &listed {
                attributes.push(attribute(
                    "ip-dst",
                    net.to_string(),
                    !resolver,
                    "the listed network",
                ));
            }
            attributes.push(attribute(
                "ip-dst",
                remote,
                false,
                "the address contacted in the listed network: context, not what was listed",
            ));
        }
        Some(Matched::Name) => {
            // Only a name that parses as a domain: an opaque hostname (see
            // `triage::name_or_opaque`) is the device's or an attacker's text.
            let seen = Domain::parse(&inc.remote).ok();
            let name = match &listed {
                Some(Ioc::Domain(d)) => Some(d.clone()),
                _ => seen.clone(),
            };
            if let Some(name) = &name {
                attributes.push(attribute(
                    "domain",
                    name.as_str().to_string(),
                    true,
                    "the listed name",
                ));
            }
            if let Some(seen) = seen.filter(|s| Some(s) != name.as_ref()) {
                attributes.push(attribute(
                    "domain",
                    seen.as_str().to_string(),
                    false,
                    "the name the device used, under the listed name: context",
                ));
            }
            attributes.push(attribute(
                "ip-dst",
                remote,
                false,
                "the address contacted for the listed name (a resolver, or the server the \
                 device chose): context, not an indicator",
            ));
        }
        Some(Matched::Hash) => {
            match &listed {
                Some(h @ Ioc::Md5(_)) => attributes.push(attribute(
                    "md5",
                    h.to_string(),
                    true,
                    "the listed file hash",
                )),
                Some(h @ Ioc::Sha256(_)) => attributes.push(attribute(
                    "sha256",
                    h.to_string(),
                    true,
                    "the listed file hash",
                )),
                // The alert does not carry the file's hash: the event says where it came from.
                _ => {}
            }
            attributes.push(attribute(
                "ip-dst",
                remote,
                false,
                "the address the listed file came from: context, not an indicator",
            ));
        }
        None => attributes.push(attribute(
            "ip-dst",
            remote,
            false,
            &format!(
                "the remote of a flow signature {} matched: context, not a listed indicator",
                inc.sid
            ),
        )),
    }
    attributes.push(attribute(
        "ip-src",
        inc.local.to_string(),
        false,
        "home device",
    ));
    NewEvent {
        event: EventBody {
            uuid: inc.uuid(),
            info: format!("homewarden: {}", inc.signature),
            threat_level_id: threat.into(),
            distribution: "0".into(),
            analysis: "0".into(),
            published: false,
            tags: ["tlp:amber", "homewarden"]
                .map(|name| TagName { name: name.into() })
                .into(),
            attributes,
        },
    }
}
