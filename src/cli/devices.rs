//! `devices`, `devices name`, `quarantine`, `release`: the home's devices,
//! through the daemon (which keeps the inventory and owns the quarantine).

use std::path::Path;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result};
use homewarden::config::Config;
use homewarden::daemon::control::{self, reply::DevicesReply, Command, DeviceCommand};
use homewarden::daemon::devices::DeviceView;

/// `homewarden devices`: the inventory as a table (or JSON).
pub(crate) async fn devices(path: &Path, json: bool) -> Result<ExitCode> {
    let cfg = Config::load(path)?;
    let asked = control::request(
        &cfg.control_socket,
        &Command::Devices,
        Duration::from_secs(30),
    );
    let r: DevicesReply = match asked.await {
        Ok(v) => serde_json::from_value(v).context("daemon's devices reply")?,
        // No daemon: the inventory as it last saved it.
        Err(control::ControlError::NotRunning { .. }) => {
            eprintln!(
                "(the agent is not running: the devices as it last saved them, without 24-hour counts)"
            );
            DevicesReply {
                devices: homewarden::daemon::devices::saved_list(&cfg.state_dir)?,
            }
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(ExitCode::SUCCESS);
    }
    let now = homewarden::intel::unix_now() as i64;
    print!("{}", homewarden::devices::view::render(&r.devices, now));
    Ok(ExitCode::SUCCESS)
}

/// Names, quarantines or releases one device and says what it is now.
pub(crate) async fn device_command(
    path: &Path,
    cmd: DeviceCommand,
    json: bool,
) -> Result<ExitCode> {
    let cfg = Config::load(path)?;
    let v = control::request(
        &cfg.control_socket,
        &Command::Device(cmd.clone()),
        Duration::from_secs(30),
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(ExitCode::SUCCESS);
    }
    let d: DeviceView = serde_json::from_value(v).context("daemon's device reply")?;
    let mac = d.device.mac;
    let at = d
        .device
        .current()
        .map_or(String::new(), |a| format!(", {a}"));
    match cmd {
        DeviceCommand::Name { .. } => println!("{mac}{at} is now called {:?}", d.label),
        DeviceCommand::Quarantine { .. } => {
            let until = match d.quarantine.as_ref().and_then(|h| h.until) {
                Some(u) => format!(" until {}", homewarden::alerts::eve::format_timestamp(u)),
                None => " until `homewarden release` lets it out".into(),
            };
            println!(
                "{} ({mac}{at}) is QUARANTINED{until}: it may reach only the Pi's DHCP and DNS",
                d.label
            );
        }
        DeviceCommand::Release { .. } => {
            println!(
                "{} ({mac}{at}) is released: its traffic flows again",
                d.label
            )
        }
    }
    Ok(ExitCode::SUCCESS)
}
