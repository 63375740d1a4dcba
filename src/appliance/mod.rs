//! The Pi as an appliance: first boot from the boot partition, where it sits
//! in the home's network (`placement`), the LEDs and button (`panel`), and
//! the factory reset.

pub mod factory;
pub mod firstboot;
pub mod panel;
pub mod placement;
