//! Who may do what over the control socket. The socket's file mode decides
//! who can connect at all; each request is then checked against the kernel's
//! peer credentials, so a group that may look cannot change anything.

use crate::config::AccessConfig;
use crate::users::{find_group, Group};

/// What a request needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Right {
    /// Looks only.
    Read,
    /// Changes what is enforced, acknowledged or pulled.
    Change,
}

/// The resolved rights: root always, then the configured groups.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Access {
    /// Who may look.
    pub read: Option<Group>,
    /// Who may change.
    pub admin: Option<Group>,
}

/// The process at the other end of a connection, from `SO_PEERCRED`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Its user id.
    pub uid: u32,
    /// Its primary group id.
    pub gid: u32,
    /// Its user name, when `/etc/passwd` has one.
    pub name: Option<String>,
}

impl Peer {
    /// How the peer is named in replies and in the allowlist's "who".
    pub fn shown(&self) -> String {
        self.name
            .clone()
            .unwrap_or_else(|| format!("uid {}", self.uid))
    }
}

impl Access {
    /// Looks the configured groups up in `group_file` (the text of
    /// `/etc/group`); a group that is not there is left out, with a message.
    pub fn resolve(cfg: &AccessConfig, group_file: &str) -> (Access, Vec<String>) {
        let mut problems = Vec::new();
        let mut find = |key: &str, name: &Option<String>| {
            let name = name.as_ref()?;
            let g = find_group(group_file, name);
            if g.is_none() {
                problems.push(format!(
                    "control_access.{key}: no group {name:?} in /etc/group; only root may use the control socket for what it would allow"
                ));
            }
            g
        };
        let read = find("read_group", &cfg.read_group);
        let admin = find("admin_group", &cfg.admin_group);
        (Access { read, admin }, problems)
    }

    /// The group the socket file gets: the widest one that may connect.
    pub fn socket_gid(&self) -> Option<u32> {
        self.read.as_ref().or(self.admin.as_ref()).map(|g| g.gid)
    }

    /// Whether `peer` may do what needs `right`.
    pub fn allows(&self, peer: &Peer, right: Right) -> bool {
        let member = |g: &Option<Group>| {
            g.as_ref().is_some_and(|g| {
                g.gid == peer.gid || peer.name.as_ref().is_some_and(|n| g.members.contains(n))
            })
        };
        peer.uid == 0 || member(&self.admin) || (right == Right::Read && member(&self.read))
    }

    /// Who may change things, for a refusal's message.
    pub fn admins(&self) -> String {
        match &self.admin {
            Some(g) => format!("root and group {}", g.name),
            None => "root".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GROUPS: &str = "root:x:0:\nadm:x:4:syslog,alice\nnogroup:x:65534:\nfamily:x:1001:bob, carol\nbroken line\n";

    fn peer(uid: u32, gid: u32, name: &str) -> Peer {
        Peer {
            uid,
            gid,
            name: Some(name.into()),
        }
    }

    #[test]
    fn groups_are_resolved_and_a_missing_one_is_named() {
        let cfg = AccessConfig {
            read_group: Some("family".into()),
            admin_group: Some("wheel".into()),
        };
        let (a, problems) = Access::resolve(&cfg, GROUPS);
        assert_eq!(
            a.read,
            Some(Group {
                name: "family".into(),
                gid: 1001,
                members: vec!["bob".into(), "carol".into()]
            })
        );
        assert_eq!(a.admin, None);
        assert_eq!(problems.len(), 1);
        assert!(
            problems[0].starts_with("control_access.admin_group: no group \"wheel\""),
            "{problems:?}"
        );
        assert_eq!(a.socket_gid(), Some(1001));
        assert_eq!(Access::default().socket_gid(), None);
    }

    #[test]
    fn root_may_all_readers_may_look_admins_may_change() {
        let cfg = AccessConfig {
            read_group: Some("family".into()),
            admin_group: Some("adm".into()),
        };
        let (a, problems) = Access::resolve(&cfg, GROUPS);
        assert!(problems.is_empty());
        let root = peer(0, 0, "root");
        let bob = peer(1002, 1002, "bob"); // listed in family
        let dave = peer(1003, 1001, "dave"); // family is his primary group
        let alice = peer(1000, 1000, "alice"); // listed in adm
        let eve = peer(1004, 1004, "eve");
        for (p, read, change) in [
            (&root, true, true),
            (&bob, true, false),
            (&dave, true, false),
            (&alice, true, true),
            (&eve, false, false),
        ] {
            assert_eq!(a.allows(p, Right::Read), read, "{p:?}");
            assert_eq!(a.allows(p, Right::Change), change, "{p:?}");
        }
        // Nothing configured: root only.
        assert!(!Access::default().allows(&alice, Right::Read));
        assert!(Access::default().allows(&root, Right::Change));
        assert_eq!(a.admins(), "root and group adm");
    }

    #[test]
    fn group_names_are_checked() {
        let bad = AccessConfig {
            read_group: Some("fam ily".into()),
            admin_group: None,
        };
        assert_eq!(
            bad.check().unwrap_err(),
            (
                "control_access.read_group".into(),
                "\"fam ily\" is not a group name".into()
            )
        );
        assert!(AccessConfig::default().check().is_ok());
    }
}
