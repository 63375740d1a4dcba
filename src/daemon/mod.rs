//! The running daemon: the agent loop that ties sources, enforcement, alerts
//! and responders together, and the control socket the CLI talks to.

pub mod agent;
pub mod control;
