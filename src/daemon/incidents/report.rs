//! What the incidents' owner tells MISP: the event for a new high-severity
//! incident, and when its count is worth an update.

use crate::alerts::triage::Incident;
use crate::intel::misp::{EventBody, NewAttribute, NewEvent, TagName};

/// Whether an incident's MISP event is updated at this many alerts: 10, 100, 1000…
pub(super) fn update_due(count: u64) -> bool {
    count >= 10 && 10u64.pow(count.ilog10()) == count
}

/// The MISP event for a high-severity incident: your organisation only, TLP:AMBER,
/// the remote endpoint as IoCs, the home device as context (never to_ids).
pub(super) fn misp_event(inc: &Incident) -> NewEvent {
    let threat = match inc.severity {
        1 => "1",
        2 => "2",
        _ => "3",
    };
    let home = |ip: &std::net::IpAddr| {
        crate::intel::set::BUILTIN_ALLOW
            .iter()
            .filter_map(|n| n.parse::<ipnet::IpNet>().ok())
            .any(|n| n.contains(ip))
    };
    let attribute = |kind: &str, value: String, to_ids: bool, comment: &str| NewAttribute {
        kind: kind.into(),
        category: "Network activity".into(),
        value,
        to_ids,
        comment: comment.into(),
    };
    let mut attributes = vec![attribute(
        "ip-dst",
        inc.remote_ip.to_string(),
        !home(&inc.remote_ip),
        "remote endpoint",
    )];
    // Only a name that parses as a domain: an opaque hostname (see
    // `triage::name_or_opaque`) is the device's or an attacker's text.
    if crate::intel::ioc::Domain::parse(&inc.remote).is_ok() {
        attributes.push(attribute(
            "domain",
            inc.remote.clone(),
            true,
            "the name the device looked up or connected to",
        ));
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
