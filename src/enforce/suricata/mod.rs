//! Suricata enforcement: rendering the IoC set into rules and datasets, and
//! applying it to a running Suricata.

pub mod apply;
pub mod render;
pub mod selftest;
pub mod socket;
