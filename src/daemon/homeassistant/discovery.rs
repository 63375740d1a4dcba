//! What Home Assistant is told: the discovery configs of the appliance's
//! entities, the state they read, and what a button press means. Pure, so
//! the payloads are tested without a broker.
//!
//! Home Assistant's MQTT discovery: one retained config per entity at
//! `<prefix>/<component>/<node>/<object>/config`; all entities name the
//! same `device`, so they appear as one device; `availability_topic` is the
//! agent's last will.

use serde::Serialize;

use crate::daemon::agent::{State, Status};

/// The threat states the enum sensor can take.
pub const THREAT_STATES: [&str; 5] = ["protected", "alert", "degraded", "bypassed", "starting"];
/// What the availability topic says.
pub const ONLINE: &str = "online";
/// What the last will says.
pub const OFFLINE: &str = "offline";

/// The topics of one appliance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Topics {
    /// Discovery prefix (`homeassistant`).
    pub prefix: String,
    /// `<base_topic>/<node>`.
    pub base: String,
    /// The node id: stable for this appliance across restarts.
    pub node: String,
}

impl Topics {
    /// The topics of node `node` under `base_topic`.
    pub fn new(prefix: &str, base_topic: &str, node: &str) -> Topics {
        Topics {
            prefix: prefix.to_string(),
            base: format!("{base_topic}/{node}"),
            node: node.to_string(),
        }
    }

    /// Retained `online`; the last will says `offline`.
    pub fn availability(&self) -> String {
        format!("{}/availability", self.base)
    }

    /// The state every sensor reads (one JSON object).
    pub fn state(&self) -> String {
        format!("{}/state", self.base)
    }

    /// The last incident's attributes.
    pub fn last_incident(&self) -> String {
        format!("{}/last_incident", self.base)
    }

    /// Where the buttons send their presses.
    pub fn command(&self) -> String {
        format!("{}/command", self.base)
    }

    /// Home Assistant's own status (`online` after it restarts: send the configs again).
    pub fn ha_status(&self) -> String {
        format!("{}/status", self.prefix)
    }

    /// One entity's discovery topic.
    pub fn config(&self, component: &str, object: &str) -> String {
        format!("{}/{component}/{}/{object}/config", self.prefix, self.node)
    }
}

/// The device all entities belong to.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Device {
    /// Stable identifiers.
    pub identifiers: Vec<String>,
    /// Shown name (the appliance's host name).
    pub name: String,
    /// Maker.
    pub manufacturer: &'static str,
    /// Model.
    pub model: &'static str,
    /// The agent's version.
    pub sw_version: String,
}

/// Who made the discovery configs (Home Assistant logs it).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Origin {
    /// Name.
    pub name: &'static str,
    /// Version.
    pub sw_version: String,
    /// Where to read about it.
    pub support_url: &'static str,
}

/// One entity's discovery config (the keys Home Assistant documents for
/// sensor, binary_sensor and button; absent ones are left out).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EntityConfig {
    /// Entity name (shown after the device's name).
    pub name: &'static str,
    /// Unique id: the node id and the object.
    pub unique_id: String,
    /// Suggested entity id part.
    pub object_id: String,
    /// The device.
    pub device: Device,
    /// The origin.
    pub origin: Origin,
    /// Availability: the agent's last will.
    pub availability_topic: String,
    /// `online`.
    pub payload_available: &'static str,
    /// `offline`.
    pub payload_not_available: &'static str,
    /// Icon.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icon: Option<&'static str>,
    /// Sensors: where the state is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_topic: Option<String>,
    /// Sensors: the state's field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_template: Option<&'static str>,
    /// Sensors: `enum`, `running`…
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device_class: Option<&'static str>,
    /// Enum sensors: the states.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub options: Option<Vec<&'static str>>,
    /// Numeric sensors: `measurement` / `total_increasing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state_class: Option<&'static str>,
    /// Numeric sensors: the unit.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub unit_of_measurement: Option<&'static str>,
    /// Attributes (the last incident's details).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub json_attributes_topic: Option<String>,
    /// Binary sensors: the "on" payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_on: Option<&'static str>,
    /// Binary sensors: the "off" payload.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_off: Option<&'static str>,
    /// Buttons: where a press goes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub command_topic: Option<String>,
    /// Buttons: what a press sends.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_press: Option<&'static str>,
    /// `diagnostic` for what is about the appliance, not the home.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entity_category: Option<&'static str>,
}

/// A press of one of the two buttons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// Acknowledge: as the panel's short press.
    Ack,
    /// Re-sync: as the panel's long press.
    Resync,
}

/// The payload a button sends, back into a command (anything else: none).
pub fn command(payload: &[u8]) -> Option<Command> {
    match payload {
        b"ack" => Some(Command::Ack),
        b"resync" => Some(Command::Resync),
        _ => None,
    }
}

/// Which entities beyond the always-there sensors are announced.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Optional {
    /// The inventory is kept: two sensors count the devices.
    pub devices: bool,
    /// `mqtt.buttons`: Acknowledge and Re-sync.
    pub buttons: bool,
}

/// Every entity's (discovery topic, config).
pub fn configs(
    t: &Topics,
    appliance: &str,
    version: &str,
    optional: Optional,
) -> Vec<(String, EntityConfig)> {
    let device = Device {
        identifiers: vec![format!("homewarden_{}", t.node)],
        name: appliance.to_string(),
        manufacturer: "homewarden",
        model: "homewarden appliance (Suricata IPS + MISP)",
        sw_version: version.to_string(),
    };
    let origin = Origin {
        name: "homewarden",
        sw_version: version.to_string(),
        support_url: "https://github.com/homewarden/homewarden",
    };
    let base = |object: &str, name: &'static str| EntityConfig {
        name,
        unique_id: format!("homewarden_{}_{object}", t.node),
        object_id: format!("homewarden_{object}"),
        device: device.clone(),
        origin: origin.clone(),
        availability_topic: t.availability(),
        payload_available: ONLINE,
        payload_not_available: OFFLINE,
        icon: None,
        state_topic: None,
        value_template: None,
        device_class: None,
        options: None,
        state_class: None,
        unit_of_measurement: None,
        json_attributes_topic: None,
        payload_on: None,
        payload_off: None,
        command_topic: None,
        payload_press: None,
        entity_category: None,
    };
    let sensor = |object: &str, name, template| EntityConfig {
        state_topic: Some(t.state()),
        value_template: Some(template),
        ..base(object, name)
    };
    let button = |object: &str, name, payload, icon| EntityConfig {
        command_topic: Some(t.command()),
        payload_press: Some(payload),
        icon: Some(icon),
        ..base(object, name)
    };
    let counter = |object: &str, name, template, unit, icon| EntityConfig {
        state_class: Some("measurement"),
        unit_of_measurement: Some(unit),
        icon: Some(icon),
        ..sensor(object, name, template)
    };
    let device_sensors = [
        (
            "sensor",
            DEVICE_SENSORS[0],
            counter(
                DEVICE_SENSORS[0],
                "Devices",
                "{{ value_json.devices }}",
                "devices",
                "mdi:devices",
            ),
        ),
        (
            "sensor",
            DEVICE_SENSORS[1],
            counter(
                DEVICE_SENSORS[1],
                "Quarantined devices",
                "{{ value_json.quarantined }}",
                "devices",
                "mdi:lan-disconnect",
            ),
        ),
    ];
    let entities = [
        (
            "sensor",
            "threat_state",
            EntityConfig {
                device_class: Some("enum"),
                options: Some(THREAT_STATES.to_vec()),
                icon: Some("mdi:shield-home"),
                ..sensor("threat_state", "Threat state", "{{ value_json.threat }}")
            },
        ),
        (
            "sensor",
            "open_high_incidents",
            EntityConfig {
                state_class: Some("measurement"),
                unit_of_measurement: Some("incidents"),
                icon: Some("mdi:alert-octagon"),
                ..sensor(
                    "open_high_incidents",
                    "Open high incidents",
                    "{{ value_json.open_high }}",
                )
            },
        ),
        (
            "sensor",
            "last_incident",
            EntityConfig {
                json_attributes_topic: Some(t.last_incident()),
                icon: Some("mdi:alert"),
                ..sensor(
                    "last_incident",
                    "Last incident",
                    "{{ value_json.last_incident }}",
                )
            },
        ),
        (
            "sensor",
            "blocked_today",
            EntityConfig {
                state_class: Some("total_increasing"),
                unit_of_measurement: Some("attempts"),
                icon: Some("mdi:shield-remove"),
                ..sensor(
                    "blocked_today",
                    "Blocked today",
                    "{{ value_json.blocked_today }}",
                )
            },
        ),
        (
            "sensor",
            "indicators_enforced",
            EntityConfig {
                state_class: Some("measurement"),
                unit_of_measurement: Some("indicators"),
                icon: Some("mdi:database-lock"),
                entity_category: Some("diagnostic"),
                ..sensor(
                    "indicators_enforced",
                    "Indicators enforced",
                    "{{ value_json.indicators }}",
                )
            },
        ),
        (
            "binary_sensor",
            "suricata",
            EntityConfig {
                device_class: Some("running"),
                payload_on: Some("ON"),
                payload_off: Some("OFF"),
                entity_category: Some("diagnostic"),
                ..sensor("suricata", "Suricata", "{{ value_json.suricata }}")
            },
        ),
    ];
    let buttons = [
        (
            "button",
            BUTTONS[0],
            button(BUTTONS[0], "Acknowledge", "ack", "mdi:check-circle"),
        ),
        (
            "button",
            BUTTONS[1],
            button(BUTTONS[1], "Re-sync intel", "resync", "mdi:cloud-sync"),
        ),
    ];
    entities
        .into_iter()
        .chain(buttons.into_iter().filter(|_| optional.buttons))
        .chain(device_sensors.into_iter().filter(|_| optional.devices))
        .map(|(component, object, cfg)| (t.config(component, object), cfg))
        .collect()
}

/// The buttons' object ids.
const BUTTONS: [&str; 2] = ["acknowledge", "resync"];

/// The device sensors' object ids.
const DEVICE_SENSORS: [&str; 2] = ["devices", "quarantined_devices"];

/// Config topics that may have been announced before and are not now (the
/// device sensors with the inventory off, the buttons with `mqtt.buttons`
/// off): an empty retained config removes an entity, as Home Assistant's
/// discovery documentation says.
pub fn retired(t: &Topics, optional: Optional) -> Vec<String> {
    let devices = DEVICE_SENSORS
        .iter()
        .filter(|_| !optional.devices)
        .map(|o| t.config("sensor", o));
    let buttons = BUTTONS
        .iter()
        .filter(|_| !optional.buttons)
        .map(|o| t.config("button", o));
    buttons.chain(devices).collect()
}

/// What every sensor reads (published to the state topic, retained).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct StateMessage {
    /// One of [`THREAT_STATES`].
    pub threat: &'static str,
    /// Open high-severity incidents.
    pub open_high: usize,
    /// The last incident in a line, or `none`.
    pub last_incident: String,
    /// Blocked attempts since local midnight.
    pub blocked_today: u64,
    /// Indicators in force.
    pub indicators: usize,
    /// `ON` while Suricata answers.
    pub suricata: &'static str,
    /// Devices known (absent with the inventory off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub devices: Option<usize>,
    /// Of those, quarantined.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quarantined: Option<usize>,
}

/// The last incident's attributes.
#[derive(Clone, Debug, Serialize, PartialEq, Eq, Default)]
pub struct IncidentAttributes {
    /// Incident id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The remote end (the listed name, or the address).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remote: Option<String>,
    /// The home device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The indicator it matched, and the source that lists it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub indicator: Option<String>,
    /// The source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The MISP event's page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub misp_event: Option<String>,
    /// The signature.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Blocked or only seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<bool>,
    /// Alerts so far.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alerts: Option<u64>,
    /// Last alert (unix seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_seen: Option<i64>,
}

/// The threat state: what the owner should take from a glance.
pub fn threat(s: &Status) -> &'static str {
    let unheld =
        s.path.queue.as_ref().is_some_and(|q| {
            q.bypass && (q.queues.0..=q.queues.1).any(|n| !s.path.held.contains(&n))
        });
    match s.state {
        State::Starting => "starting",
        _ if s.alerts.high_unacked > 0 => "alert",
        _ if unheld => "bypassed",
        State::Degraded => "degraded",
        State::Protected => "protected",
    }
}

/// The state message and the last incident's attributes of `s`;
/// `event_page` turns (source, event id) into the MISP event's page.
pub fn state(
    s: &Status,
    event_page: impl Fn(&str, u64) -> Option<String>,
) -> (StateMessage, IncidentAttributes) {
    let last = s.alerts.recent.iter().max_by_key(|i| i.last_seen);
    let b = &s.blocklist;
    let msg = StateMessage {
        threat: threat(s),
        open_high: s.alerts.high_open,
        last_incident: last.map_or_else(
            || "none".to_string(),
            |i| {
                let verb = if i.blocked { "blocked" } else { "saw" };
                crate::respond::mail::one_line(
                    &format!("{verb} {} ↔ {}", i.device_shown(), i.remote),
                    250,
                )
            },
        ),
        blocked_today: s.alerts.blocked_today,
        indicators: b.ipv4 + b.ipv6 + b.domains + b.md5 + b.sha256 + b.networks,
        suricata: if s.suricata.reachable { "ON" } else { "OFF" },
        devices: s.devices.enabled.then_some(s.devices.known),
        quarantined: s.devices.enabled.then_some(s.devices.quarantined.len()),
    };
    let attrs = last.map_or_else(IncidentAttributes::default, |i| IncidentAttributes {
        id: Some(i.id.clone()),
        remote: Some(i.remote.clone()),
        device: Some(i.device_shown()),
        indicator: i.ioc.as_ref().map(|p| p.indicator.clone()),
        source: i.ioc.as_ref().map(|p| p.source.clone()),
        misp_event: i
            .ioc
            .as_ref()
            .and_then(|p| event_page(&p.source, p.event_id?)),
        signature: Some(i.signature.clone()),
        blocked: Some(i.blocked),
        alerts: Some(i.count),
        last_seen: Some(i.last_seen),
    });
    (msg, attrs)
}
