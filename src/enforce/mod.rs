//! Enforcement: the effective IoC set made real, in Suricata's rules and
//! datasets (`suricata`) and in the kernel's packet path that queues traffic
//! to it (`firewall`).

pub mod firewall;
pub mod suricata;
