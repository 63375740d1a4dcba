//! Users and groups as `/etc/passwd` and `/etc/group` have them: parsed from
//! their text, so callers (and tests) pass the file's content in.

/// The group the agent's unit runs as (overlays/usr/lib/sysusers.d). It
/// also reads `/etc/homewarden/.env` and writes Suricata's command socket.
pub const AGENT_GROUP: &str = "homewarden";
/// The group made for `control_access.read_group`: it may look, nothing else.
pub const READ_GROUP: &str = "homewarden-read";
/// The group made for `control_access.admin_group`: it may also change things.
pub const ADMIN_GROUP: &str = "homewarden-admin";

/// A group as `/etc/group` has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Group {
    /// Its name.
    pub name: String,
    /// Its id.
    pub gid: u32,
    /// Users listed as members (those whose primary group it is are not listed).
    pub members: Vec<String>,
}

/// The group called `name` in `group_file` (the text of `/etc/group`).
pub fn find_group(group_file: &str, name: &str) -> Option<Group> {
    group_file
        .lines()
        .find_map(|l| parse_group(l).filter(|g| g.name == name))
}

/// The id of the group called `name` in `group_file` (the text of `/etc/group`).
pub fn group_gid(group_file: &str, name: &str) -> Option<u32> {
    find_group(group_file, name).map(|g| g.gid)
}

/// One `/etc/group` line: `name:x:gid:user,user`.
fn parse_group(line: &str) -> Option<Group> {
    let mut f = line.split(':');
    let name = f.next()?.to_string();
    let gid = f.nth(1)?.trim().parse().ok()?;
    let members = f
        .next()
        .unwrap_or("")
        .split(',')
        .map(str::trim)
        .filter(|m| !m.is_empty())
        .map(String::from)
        .collect();
    Some(Group { name, gid, members })
}

/// The user name of `uid` in `passwd` (the text of `/etc/passwd`).
pub fn user_name(passwd: &str, uid: u32) -> Option<String> {
    passwd.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.parse::<u32>().ok()? == uid).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_are_parsed_with_their_members_and_broken_lines_skipped() {
        let groups = "root:x:0:\nbroken line\nfamily:x:1001:bob, carol\n";
        assert_eq!(
            find_group(groups, "family"),
            Some(Group {
                name: "family".into(),
                gid: 1001,
                members: vec!["bob".into(), "carol".into()]
            })
        );
        assert_eq!(group_gid(groups, "root"), Some(0));
        assert_eq!(group_gid(groups, "broken line"), None);
        assert_eq!(group_gid(groups, "wheel"), None);
    }

    #[test]
    fn user_names_come_from_passwd() {
        let passwd = "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n";
        assert_eq!(user_name(passwd, 1000).as_deref(), Some("alice"));
        assert_eq!(user_name(passwd, 7), None);
    }
}
