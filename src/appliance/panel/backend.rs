//! Where the lights go: GPIO LEDs and button (rppal), the board's ACT LED
//! (sysfs), or a simulated panel (a state file the tests and the lab read,
//! and state changes in the log).

use std::path::{Path, PathBuf};

use super::pattern::Lights;
use crate::fsutil;

/// A panel backend failed.
#[derive(Debug, thiserror::Error)]
#[error("panel {backend}: {message}")]
pub struct PanelError {
    /// Backend name.
    pub backend: &'static str,
    /// What went wrong.
    pub message: String,
}

/// The lit/dark state of every LED at one moment.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Levels {
    /// Green.
    pub green: bool,
    /// Amber.
    pub amber: bool,
    /// Red.
    pub red: bool,
    /// Board ACT LED.
    pub act: bool,
}

/// Something that shows the lights (and may have a button).
pub trait Backend: Send {
    /// Short name for logs.
    fn name(&self) -> &'static str;
    /// Shows the levels of this moment; `lights` is the pattern they come from.
    fn show(&mut self, levels: Levels, lights: &Lights) -> Result<(), PanelError>;
    /// The raw button level (`true` = pressed), if this backend has a button.
    fn button(&mut self) -> Option<bool> {
        None
    }
}

/// The simulated panel: writes the current patterns to a JSON file when they change.
#[derive(Debug)]
pub struct Simulated {
    path: PathBuf,
    last: Option<Lights>,
}

impl Simulated {
    /// A simulated panel writing to `path`.
    pub fn new(path: &Path) -> Simulated {
        Simulated {
            path: path.to_path_buf(),
            last: None,
        }
    }
}

impl Backend for Simulated {
    fn name(&self) -> &'static str {
        "simulated"
    }

    fn show(&mut self, _levels: Levels, lights: &Lights) -> Result<(), PanelError> {
        if self.last.as_ref() == Some(lights) {
            return Ok(());
        }
        let err = |e: std::io::Error| PanelError {
            backend: "simulated",
            message: format!("{}: {e}", self.path.display()),
        };
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let text = serde_json::to_vec_pretty(lights).unwrap_or_default();
        fsutil::write_atomic(&self.path, &text).map_err(err)?;
        tracing::info!(
            "panel: green {}, amber {}, red {}",
            lights.green.describe(),
            lights.amber.describe(),
            lights.red.describe()
        );
        self.last = Some(*lights);
        Ok(())
    }
}

/// The board's ACT LED through sysfs (`/sys/class/leds/ACT`): a Pi with no
/// extra hardware still shows a heartbeat or an alarm.
#[derive(Debug)]
pub struct ActLed {
    dir: PathBuf,
    last: Option<bool>,
}

impl ActLed {
    /// Takes the LED over from its kernel trigger.
    pub fn new(dir: &Path) -> Result<ActLed, PanelError> {
        let err = |e: std::io::Error| PanelError {
            backend: "act",
            message: format!("{}: {e} (is this a Raspberry Pi?)", dir.display()),
        };
        std::fs::write(dir.join("trigger"), "none").map_err(err)?;
        Ok(ActLed {
            dir: dir.to_path_buf(),
            last: None,
        })
    }
}

impl Backend for ActLed {
    fn name(&self) -> &'static str {
        "act"
    }

    fn show(&mut self, levels: Levels, _lights: &Lights) -> Result<(), PanelError> {
        if self.last == Some(levels.act) {
            return Ok(());
        }
        std::fs::write(
            self.dir.join("brightness"),
            if levels.act { "1" } else { "0" },
        )
        .map_err(|e| PanelError {
            backend: "act",
            message: e.to_string(),
        })?;
        self.last = Some(levels.act);
        Ok(())
    }
}

use crate::config::Pins;

/// Three LEDs and a button on the Pi's GPIO header, through rppal.
pub struct Gpio {
    leds: [rppal::gpio::OutputPin; 3],
    button: rppal::gpio::InputPin,
    active_low: bool,
    last: Option<Levels>,
}

impl Gpio {
    /// Opens the pins; on a machine without the Pi's GPIO this fails with a clear message.
    pub fn new(pins: Pins) -> Result<Gpio, PanelError> {
        let err = |e: rppal::gpio::Error| PanelError {
            backend: "gpio",
            message: format!("{e} (no Raspberry Pi GPIO here? set panel.backends without gpio)"),
        };
        let gpio = rppal::gpio::Gpio::new().map_err(err)?;
        let out = |n: u8| gpio.get(n).map(|p| p.into_output_low()).map_err(err);
        Ok(Gpio {
            leds: [out(pins.green)?, out(pins.amber)?, out(pins.red)?],
            button: gpio
                .get(pins.button)
                .map(|p| p.into_input_pullup())
                .map_err(err)?,
            active_low: pins.active_low,
            last: None,
        })
    }
}

impl Backend for Gpio {
    fn name(&self) -> &'static str {
        "gpio"
    }

    fn show(&mut self, levels: Levels, _lights: &Lights) -> Result<(), PanelError> {
        if self.last == Some(levels) {
            return Ok(());
        }
        for (pin, on) in self
            .leds
            .iter_mut()
            .zip([levels.green, levels.amber, levels.red])
        {
            if on != self.active_low {
                pin.set_high();
            } else {
                pin.set_low();
            }
        }
        self.last = Some(levels);
        Ok(())
    }

    fn button(&mut self) -> Option<bool> {
        // Wired to ground with the pull-up: pressed reads low.
        Some(self.button.is_low())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::appliance::panel::pattern::{lights, Condition};

    #[test]
    fn simulated_panel_writes_patterns_when_they_change() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("panel.json");
        let mut p = Simulated::new(&path);
        let l = lights(&Condition {
            protected: true,
            ..Default::default()
        });
        p.show(Levels::default(), &l).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["green"]["kind"], "on");
        assert_eq!(v["red"]["kind"], "off");
        std::fs::remove_file(&path).unwrap();
        p.show(Levels::default(), &l).unwrap();
        assert!(!path.exists(), "unchanged patterns are not rewritten");
    }

    #[test]
    fn act_led_through_sysfs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("trigger"), "heartbeat").unwrap();
        let mut act = ActLed::new(dir.path()).unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("trigger")).unwrap(),
            "none"
        );
        let l = lights(&Condition::default());
        act.show(
            Levels {
                act: true,
                ..Default::default()
            },
            &l,
        )
        .unwrap();
        assert_eq!(
            std::fs::read_to_string(dir.path().join("brightness")).unwrap(),
            "1"
        );
        assert!(ActLed::new(Path::new("/nonexistent/leds/ACT"))
            .unwrap_err()
            .to_string()
            .contains("Raspberry Pi"));
    }

    #[test]
    fn gpio_on_a_machine_without_it_is_a_clear_error() {
        if Path::new("/dev/gpiomem").exists() {
            return; // a real Pi: nothing to prove here
        }
        let e = Gpio::new(Pins::default())
            .err()
            .expect("no GPIO on this machine");
        assert!(e.to_string().starts_with("panel gpio: "), "{e}");
    }
}
