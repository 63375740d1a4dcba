//! Settings of the Pi as a box: the panel's pins and the bridge's name, and
//! who may use the control socket (`control_access:`).

use serde::Deserialize;

/// The bridge `bridge` and `ap` placements create.
pub const BRIDGE: &str = "hwbr0";

/// Pin numbers (BCM) and polarity of GPIO LEDs and the button.
#[derive(Clone, Copy, Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Pins {
    /// Green LED.
    pub green: u8,
    /// Amber LED.
    pub amber: u8,
    /// Red LED.
    pub red: u8,
    /// Button (to ground; the internal pull-up is enabled).
    pub button: u8,
    /// LEDs light when the pin is low.
    pub active_low: bool,
}

impl Default for Pins {
    fn default() -> Self {
        Pins {
            green: 17,
            amber: 27,
            red: 22,
            button: 23,
            active_low: false,
        }
    }
}

/// Who besides root may use the control socket (`control_access` in the config).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessConfig {
    /// Members may look: status, lookup, explain, blocks.
    #[serde(default)]
    pub read_group: Option<String>,
    /// Members may also change things: sync, ack, press, selftest, allow, unallow.
    #[serde(default)]
    pub admin_group: Option<String>,
}

impl AccessConfig {
    /// Checks the group names (the groups themselves are looked up at start).
    pub fn check(&self) -> Result<(), (String, String)> {
        for (key, g) in [
            ("read_group", &self.read_group),
            ("admin_group", &self.admin_group),
        ] {
            if let Some(g) = g {
                let ok = !g.is_empty()
                    && g.len() <= 32
                    && !g.starts_with('-')
                    && g.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b));
                if !ok {
                    return Err((
                        format!("control_access.{key}"),
                        format!("{g:?} is not a group name"),
                    ));
                }
                // Its members would also read every secret in .env, drive
                // Suricata's command socket and plant names in the agent's
                // runtime directory: far more than the socket.
                if g == crate::users::AGENT_GROUP || g == "root" {
                    return Err((
                        format!("control_access.{key}"),
                        format!(
                            "{g:?} can do much more than use the control socket; use {:?} (made by the image and the role)",
                            if key == "read_group" { crate::users::READ_GROUP } else { crate::users::ADMIN_GROUP }
                        ),
                    ));
                }
            }
        }
        Ok(())
    }
}
