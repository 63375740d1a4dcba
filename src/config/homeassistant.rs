//! `mqtt:`: Home Assistant over MQTT (discovery, state, the two buttons);
//! off unless a broker URL is given.

use std::path::PathBuf;

use serde::Deserialize;

/// The broker and the topics (the `mqtt:` section).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttConfig {
    /// `mqtt://host[:1883]` or `mqtts://host[:8883]`; off when absent.
    pub url: Option<String>,
    /// Login name, if the broker asks for one.
    pub user: Option<String>,
    /// The secret holding the password.
    pub password_env: Option<String>,
    /// CA bundle for a broker with a private certificate (mqtts).
    pub ca_file: Option<PathBuf>,
    /// Home Assistant's discovery prefix.
    pub discovery_prefix: String,
    /// Where state is published and commands are heard: `<base_topic>/<node>/…`.
    pub base_topic: String,
    /// Home Assistant's Acknowledge and Re-sync buttons. Anyone who may
    /// publish on the broker can press them (the node id is public in the
    /// retained discovery), and an acknowledgement is an admin's right on the
    /// control socket: off unless asked for.
    pub buttons: bool,
}

impl Default for MqttConfig {
    fn default() -> Self {
        MqttConfig {
            url: None,
            user: None,
            password_env: None,
            ca_file: None,
            discovery_prefix: "homeassistant".into(),
            base_topic: "homewarden".into(),
            buttons: false,
        }
    }
}

/// A broker address, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Broker {
    /// Host name or address.
    pub host: String,
    /// Port.
    pub port: u16,
    /// TLS (mqtts).
    pub tls: bool,
}

/// A topic level we write ourselves: no wildcards, no separators, not empty.
fn topic_ok(t: &str) -> bool {
    !t.is_empty() && !t.contains(['+', '#', '\0']) && !t.starts_with('/') && !t.ends_with('/')
}

impl MqttConfig {
    /// The broker, if MQTT is on; `(key, message)` when the URL is wrong.
    pub fn broker(&self) -> Result<Option<Broker>, (String, String)> {
        let Some(raw) = &self.url else {
            return Ok(None);
        };
        let bad = |why: &str| ("mqtt.url".to_string(), format!("{raw:?} {why}"));
        let url = url::Url::parse(raw).map_err(|e| bad(&format!("is not a URL ({e})")))?;
        let tls = match url.scheme() {
            "mqtt" => false,
            "mqtts" => true,
            _ => return Err(bad("is not mqtt://host[:port] or mqtts://host[:port]")),
        };
        let host = url
            .host_str()
            .filter(|h| !h.is_empty())
            .ok_or_else(|| bad("has no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        if !url.path().trim_matches('/').is_empty() || url.username() != "" {
            return Err(bad(
                "must be only scheme, host and port (the login is mqtt.user and mqtt.password_env)",
            ));
        }
        let port = url.port().unwrap_or(if tls { 8883 } else { 1883 });
        Ok(Some(Broker { host, port, tls }))
    }

    /// Checks the section; `(key, message)` on error.
    pub fn check(&self) -> Result<(), (String, String)> {
        self.broker()?;
        for (key, t) in [
            ("mqtt.discovery_prefix", &self.discovery_prefix),
            ("mqtt.base_topic", &self.base_topic),
        ] {
            if !topic_ok(t) {
                return Err((
                    key.into(),
                    format!("{t:?} is not a topic (no +, # or leading/trailing /)"),
                ));
            }
        }
        if let Some(n) = &self.password_env {
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                return Err((
                    "mqtt.password_env".into(),
                    format!("{n:?} is not a secret's name (letters, digits and _)"),
                ));
            }
        }
        if self.password_env.is_some() && self.user.is_none() {
            return Err((
                "mqtt.user".into(),
                "is required with mqtt.password_env".into(),
            ));
        }
        Ok(())
    }

    /// What weakens the appliance: plain MQTT to a broker elsewhere, a
    /// broker without a login, buttons anyone on such a broker can press.
    pub fn warnings(&self) -> Vec<String> {
        let Ok(Some(b)) = self.broker() else {
            return Vec::new();
        };
        let url = self.url.as_deref().unwrap_or_default();
        let local = b.host == "localhost"
            || b.host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback());
        let mut out = Vec::new();
        if !b.tls && !local {
            let what = if self.password_env.is_some() {
                "the password and the appliance's state cross"
            } else {
                "the appliance's state crosses"
            };
            out.push(format!(
                "mqtt.url {url} is plain MQTT: {what} the network unencrypted (mqtts:// encrypts them)"
            ));
        }
        if self.user.is_none() {
            out.push(format!(
                "mqtt: no login for {url}: if the broker lets anyone in, anyone on the network reads the appliance's state{}",
                if self.buttons { " and presses its buttons (mqtt.buttons)" } else { "" }
            ));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(yaml: &str) -> MqttConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    /// The commented example in the shipped config, uncommented, is valid.
    #[test]
    fn the_example_in_the_shipped_config_is_valid() {
        let block = crate::config::shipped_example("mqtt");
        #[derive(Deserialize)]
        struct Section {
            mqtt: MqttConfig,
        }
        let s: Section = serde_yaml_ng::from_str(&block).unwrap();
        assert!(s.mqtt.broker().unwrap().is_some(), "{block}");
        assert_eq!(s.mqtt.check(), Ok(()));
    }

    #[test]
    fn off_by_default_and_the_url_names_the_broker() {
        assert_eq!(MqttConfig::default().broker(), Ok(None));
        assert_eq!(
            cfg("url: mqtt://192.168.1.10").broker(),
            Ok(Some(Broker {
                host: "192.168.1.10".into(),
                port: 1883,
                tls: false
            }))
        );
        assert_eq!(
            cfg("url: 'mqtts://[fd00::1]:8884'")
                .broker()
                .unwrap()
                .unwrap(),
            Broker {
                host: "fd00::1".into(),
                port: 8884,
                tls: true
            }
        );
        for (yaml, key, says) in [
            ("url: http://broker", "mqtt.url", "not mqtt://"),
            ("url: mqtt://user:pw@broker", "mqtt.url", "mqtt.user"),
            ("url: mqtt://broker/x", "mqtt.url", "only scheme"),
            (
                "{url: mqtt://b, base_topic: 'a/#'}",
                "mqtt.base_topic",
                "a/#",
            ),
            (
                "{url: mqtt://b, password_env: MQTT_PASSWORD}",
                "mqtt.user",
                "required",
            ),
            (
                "{url: mqtt://b, user: u, password_env: 'a b'}",
                "mqtt.password_env",
                "a b",
            ),
        ] {
            let (k, m) = cfg(yaml).check().unwrap_err();
            assert_eq!(k, key, "{yaml}");
            assert!(m.contains(says), "{yaml}: {m}");
        }
        let lan = cfg("{url: mqtt://192.168.1.10, user: ha, password_env: MQTT_PASSWORD}");
        assert_eq!(lan.warnings().len(), 1);
        assert!(lan.warnings()[0].contains("plain MQTT: the password and"));
        assert!(cfg("{url: mqtt://127.0.0.1, user: ha, password_env: P}")
            .warnings()
            .is_empty());
        assert!(cfg("{url: mqtts://b, user: ha, password_env: P}")
            .warnings()
            .is_empty());
    }

    #[test]
    fn buttons_are_off_unless_asked_for_and_an_open_broker_is_a_warning() {
        assert!(!MqttConfig::default().buttons);
        assert!(!cfg("url: mqtts://b").buttons);
        // No login: the state is anyone's to read; with buttons, to press.
        let open = cfg("url: mqtts://b");
        assert_eq!(open.warnings().len(), 1);
        assert!(open.warnings()[0].contains("no login") && !open.warnings()[0].contains("buttons"));
        let pressable = cfg("{url: mqtt://192.168.1.10, buttons: true}");
        let w = pressable.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("plain MQTT: the appliance's state crosses"),
            "{w:?}"
        );
        assert!(w[1].contains("presses its buttons"), "{w:?}");
    }
}
