//! The running daemon: the agent that owns sources and enforcement, the
//! incidents' owner that reads and triages alerts beside it, the supervisor
//! that feeds systemd's watchdog only while both report in, and the control
//! socket the CLI talks to.

pub mod agent;
pub mod control;
pub mod incidents;
pub mod memory;
pub mod metrics;
pub mod shutdown;
pub mod supervisor;
