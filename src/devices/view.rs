//! A device as `homewarden devices` shows it, and the table it prints.

use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

use super::quarantine::Hold;
use super::Device;

/// One device as `homewarden devices` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceView {
    /// What a person reads.
    pub label: String,
    /// The device.
    #[serde(flatten)]
    pub device: Device,
    /// Its quarantine, if held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quarantine: Option<Hold>,
    /// Incidents it was the home side of, in the last 24 hours.
    #[serde(default)]
    pub incidents_24h: u64,
    /// Its connections Suricata blocked, in the last 24 hours.
    #[serde(default)]
    pub blocked_24h: u64,
}

/// Time since `t` in its largest unit: `now`, `42s`, `5m`, `3h`, `2d`.
fn ago(now: i64, t: i64) -> String {
    let s = now.saturating_sub(t).max(0);
    match s {
        0..=4 => "now".into(),
        5..=59 => format!("{s}s"),
        60..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h", s / 3600),
        _ => format!("{}d", s / 86_400),
    }
}

/// The table of devices, one a line, the most recently seen first.
pub fn render(list: &[DeviceView], now: i64) -> String {
    let rows: Vec<[String; 7]> = list
        .iter()
        .map(|v| {
            let d = &v.device;
            let vendor = match (&d.vendor, d.private_mac) {
                (Some(n), _) => n.clone(),
                (None, true) => "(private address)".into(),
                (None, false) => "(unknown)".into(),
            };
            let state = match &v.quarantine {
                None => String::new(),
                Some(h) => match h.until {
                    Some(u) => format!("QUARANTINED for {}", ago(u, now).replace("now", "<5s")),
                    None => "QUARANTINED".into(),
                },
            };
            [
                v.label.clone(),
                vendor.chars().take(28).collect(),
                d.current().map_or("-".into(), |a| a.to_string()),
                d.mac.to_string(),
                format!("{} / {}", ago(now, d.first_seen), ago(now, d.last_seen)),
                format!("{} / {}", v.incidents_24h, v.blocked_24h),
                state,
            ]
        })
        .collect();
    let head = [
        "DEVICE",
        "VENDOR",
        "ADDRESS",
        "MAC",
        "FIRST / LAST SEEN",
        "INCIDENTS / BLOCKED 24h",
        "",
    ];
    let mut width = head.map(str::len);
    for r in &rows {
        for (w, c) in width.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in std::iter::once(head.map(str::to_string)).chain(rows) {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            let _ = write!(line, "{c:<w$}  ", w = width[i]);
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    if list.is_empty() {
        out.push_str(
            "(no device seen yet: they appear as they take a DHCP lease or talk through the Pi)\n",
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::inventory::Address;

    fn view(name: Option<&str>, mac: &str, ip: &str, vendor: Option<&str>) -> DeviceView {
        let mac = mac.parse().unwrap();
        let device = Device {
            mac,
            name: name.map(str::to_string),
            hostname: None,
            vendor_class: None,
            vendor: vendor.map(str::to_string),
            private_mac: crate::devices::Mac::locally_administered(mac),
            addresses: vec![Address {
                ip: ip.parse().unwrap(),
                first_seen: 1000,
                last_seen: 4600,
            }],
            first_seen: 1000,
            last_seen: 4600,
            baseline: false,
        };
        DeviceView {
            label: device.label(),
            device,
            quarantine: None,
            incidents_24h: 2,
            blocked_24h: 7,
        }
    }

    #[test]
    fn the_table_names_each_device_with_its_vendor_address_times_and_state() {
        let mut cam = view(
            Some("front doorbell"),
            "24:0a:c4:00:00:02",
            "198.18.1.51",
            Some("Espressif Inc."),
        );
        cam.quarantine = Some(Hold {
            since: 4000,
            until: None,
            reason: None,
            by: "root".into(),
        });
        let phone = view(None, "da:a1:19:00:00:09", "198.18.1.53", None);
        let t = render(&[cam, phone], 4610);
        let lines: Vec<&str> = t.lines().collect();
        assert!(
            lines[0].starts_with("DEVICE") && lines[0].contains("INCIDENTS / BLOCKED 24h"),
            "{t}"
        );
        assert!(
            lines[1].starts_with("front doorbell") && lines[1].contains("Espressif Inc."),
            "{t}"
        );
        assert!(
            lines[1].contains("198.18.1.51") && lines[1].contains("1h / 10s"),
            "{t}"
        );
        assert!(
            lines[1].contains("2 / 7") && lines[1].ends_with("QUARANTINED"),
            "{t}"
        );
        assert!(
            lines[2].starts_with("private-address device …00:00:09")
                && lines[2].contains("(private address)"),
            "{t}"
        );
        // Columns line up.
        let column = |line: &str, what: &str| line[..line.find(what).unwrap()].chars().count();
        assert_eq!(
            column(lines[1], "198.18.1.51"),
            column(lines[2], "198.18.1.53"),
            "{t}"
        );
        assert!(render(&[], 0).contains("no device seen yet"));
    }
}
