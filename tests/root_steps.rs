//! No root step trusts a path a less privileged party controls. Every shipped
//! unit and drop-in is read: a root Exec line (a unit without `User=`, or a
//! `+` line of one with it), a helper script such a line runs, and root's
//! placement files may name no path inside a directory that another unit's
//! user, or a group other than root's, can write. `systemd-analyze security`
//! does not look at this: a `+` line is outside the sandbox it scores.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const UNITS: &str = "overlays/etc/systemd/system";
const TMPFILES: &str = "overlays/etc/tmpfiles.d/homewarden.conf";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// One unit file (or drop-in) as `key=value` lines, comments dropped.
struct Unit {
    name: String,
    lines: Vec<(String, String)>,
}

impl Unit {
    fn read(path: &Path) -> Unit {
        let text = std::fs::read_to_string(path).unwrap();
        let lines = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#') && !l.starts_with(';'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
            .collect();
        Unit {
            name: path.strip_prefix(repo()).unwrap().display().to_string(),
            lines,
        }
    }

    fn values<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.lines
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// The user its commands run as; drop-ins of Debian's units keep theirs (root).
    fn user(&self) -> Option<&str> {
        self.values("User")
            .last()
            .filter(|u| !u.is_empty() && *u != "root")
    }

    /// The command lines that run as root, without their prefixes.
    fn root_commands(&self) -> Vec<String> {
        let unprivileged = self.user().is_some();
        self.lines
            .iter()
            .filter(|(k, _)| k.starts_with("Exec"))
            .filter(|(_, v)| !v.is_empty())
            .filter(|(_, v)| {
                !unprivileged || v.trim_start_matches(['-', '@', ':']).starts_with('+')
            })
            .map(|(_, v)| v.trim_start_matches(['-', '@', ':', '+', '!']).to_string())
            .collect()
    }

    /// Directories its user can write: what systemd makes for it and what it
    /// is given back under `ProtectSystem=`.
    fn writable(&self) -> Vec<PathBuf> {
        if self.user().is_none() {
            return Vec::new();
        }
        let mut out = Vec::new();
        for (key, base) in [
            ("StateDirectory", "/var/lib"),
            ("RuntimeDirectory", "/run"),
            ("CacheDirectory", "/var/cache"),
            ("LogsDirectory", "/var/log"),
        ] {
            for v in self.values(key) {
                out.extend(v.split_whitespace().map(|d| Path::new(base).join(d)));
            }
        }
        for v in self.values("ReadWritePaths") {
            out.extend(
                v.split_whitespace()
                    .map(|p| PathBuf::from(p.trim_start_matches('-'))),
            );
        }
        out
    }
}

fn units() -> Vec<Unit> {
    let mut out = Vec::new();
    let mut dirs = vec![repo().join(UNITS)];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path
                .extension()
                .is_some_and(|e| e == "service" || e == "conf")
            {
                out.push(Unit::read(&path));
            }
        }
    }
    assert!(out.len() >= 8, "found only {} units", out.len());
    out
}

/// tmpfiles directories that a user or group other than root can write to.
fn tmpfiles_writable(text: &str) -> Vec<PathBuf> {
    text.lines()
        .map(str::split_whitespace)
        .filter_map(|mut f| {
            let (kind, path, mode, user, group) =
                (f.next()?, f.next()?, f.next()?, f.next()?, f.next()?);
            if !kind.starts_with(['d', 'D']) {
                return None;
            }
            let mode = u32::from_str_radix(mode.trim_start_matches('~'), 8).ok()?;
            let others = mode & 0o002 != 0;
            let by_group = mode & 0o020 != 0 && group != "root" && group != "-";
            let by_user = user != "root" && user != "-";
            (others || by_group || by_user).then(|| PathBuf::from(path))
        })
        .collect()
}

fn untrusted() -> BTreeSet<PathBuf> {
    let mut dirs: BTreeSet<PathBuf> = units().iter().flat_map(Unit::writable).collect();
    let tmpfiles = std::fs::read_to_string(repo().join(TMPFILES)).unwrap();
    dirs.extend(tmpfiles_writable(&tmpfiles));
    // The ACT LED's files are written by the agent's group, not a directory of it.
    dirs.retain(|d| !d.starts_with("/sys"));
    dirs
}

/// Absolute paths in a command line or a script.
fn paths_in(text: &str) -> Vec<PathBuf> {
    text.split(|c: char| c.is_whitespace() || "'\"=;|&(){}<>`,:".contains(c))
        .filter(|w| w.starts_with('/') && w.len() > 1)
        .map(|w| PathBuf::from(w.trim_end_matches(['.', '/'])))
        .collect()
}

fn offending<'a>(text: &str, untrusted: &'a BTreeSet<PathBuf>) -> Vec<(PathBuf, &'a PathBuf)> {
    paths_in(text)
        .into_iter()
        .filter_map(|p| untrusted.iter().find(|d| p.starts_with(d)).map(|d| (p, d)))
        .collect()
}

#[test]
fn the_agents_directories_are_seen_as_untrusted() {
    let dirs = untrusted();
    for d in [
        "/var/lib/homewarden",
        "/var/lib/homewarden/suricata",
        "/run/homewarden/agent",
    ] {
        assert!(dirs.contains(Path::new(d)), "{d} not among {dirs:?}");
    }
    // Root's own runtime directory is not: only root writes there.
    assert!(
        !dirs
            .iter()
            .any(|d| Path::new("/run/homewarden/suricata.env").starts_with(d)),
        "{dirs:?}"
    );
}

#[test]
fn no_root_command_names_a_path_a_less_privileged_party_can_write() {
    let dirs = untrusted();
    let mut bad = Vec::new();
    let mut helpers = BTreeSet::new();
    for unit in units() {
        for cmd in unit.root_commands() {
            for (path, dir) in offending(&cmd, &dirs) {
                bad.push(format!(
                    "{}: `{cmd}` names {} (inside {})",
                    unit.name,
                    path.display(),
                    dir.display()
                ));
            }
            helpers.extend(
                paths_in(&cmd)
                    .into_iter()
                    .filter(|p| p.starts_with("/usr/lib/homewarden")),
            );
        }
    }
    // The scripts those lines run, as root too.
    for helper in &helpers {
        let file = repo()
            .join("overlays")
            .join(helper.strip_prefix("/").unwrap());
        let text =
            std::fs::read_to_string(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for (path, dir) in offending(&text, &dirs) {
            bad.push(format!(
                "{}: names {} (inside {})",
                helper.display(),
                path.display(),
                dir.display()
            ));
        }
    }
    assert!(!helpers.is_empty(), "firstboot is run by root");
    assert!(
        bad.is_empty(),
        "root steps that trust a less privileged party's path:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_rule_a_root_step_made_before_would_be_caught() {
    // The drop-in of 2ae014e: root made the rule directory inside the agent's.
    let dirs = untrusted();
    let old =
        "/usr/bin/install -d -o homewarden -g homewarden -m 0700 /var/lib/homewarden/suricata";
    assert!(!offending(old, &dirs).is_empty());
    // And the tmpfiles line of then: a sticky directory of the agent's group.
    assert_eq!(
        tmpfiles_writable("d /run/homewarden 1775 root homewarden -"),
        [PathBuf::from("/run/homewarden")]
    );
}

#[test]
fn dnsmasqs_lease_script_writes_into_a_directory_of_its_user() {
    // The placement's dnsmasq.conf runs it as dnsmasq (its unit test says
    // so); the unit makes the directory it writes, in root's /run/homewarden.
    let unit = Unit::read(&repo().join(UNITS).join("homewarden-dhcp.service"));
    let cmds = unit.root_commands();
    assert!(
        cmds.iter()
            .any(|c| c == "/usr/bin/mkdir -p -m 0755 /run/homewarden/dhcp-vendor")
            && cmds
                .iter()
                .any(|c| c == "/usr/bin/chown dnsmasq /run/homewarden/dhcp-vendor"),
        "{cmds:?}"
    );
}

/// `suricata -T` with Debian's config and the shipped include, on one rule.
fn suricata_accepts(rule: &str) -> Option<bool> {
    let found = std::process::Command::new("suricata")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("HOMEWARDEN_REQUIRE_SURICATA").is_none(),
            "suricata is required"
        );
        eprintln!("suricata not installed: skipped");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("hw.lst"), "").unwrap();
    std::fs::write(dir.path().join("signatures.rules"), "").unwrap();
    std::fs::write(dir.path().join("t.rules"), format!("{rule}\n")).unwrap();
    let o = std::process::Command::new("suricata")
        .args(["-T", "-c", "/etc/suricata/suricata.yaml", "--include"])
        .arg(repo().join("overlays/etc/suricata/homewarden.yaml"))
        .arg("--set")
        .arg(format!("default-rule-path={}", dir.path().display()))
        .args(["--set", "rule-files.0=t.rules", "-l"])
        .arg(dir.path())
        .output()
        .unwrap();
    Some(o.status.success())
}

#[test]
fn suricata_as_root_only_reads_datasets_from_the_agents_rule_directory() {
    let rule = |dataset: &str| {
        format!("alert dns any any -> any any (msg:\"t\"; dns.query; dataset:{dataset}; sid:1;)")
    };
    let Some(ok) = suricata_accepts(&rule("isset,hw,type string,load hw.lst")) else {
        return;
    };
    assert!(ok, "the shipped include refuses what homewarden renders");
    // A rule the agent wrote must not make root write a file, or read one elsewhere.
    for dataset in [
        "set,hw2,type string,save hw2.lst",
        "set,hw3,type string,state hw3.lst",
        "isset,hw4,type string,load ../../../etc/shadow",
        "isset,hw5,type string,load /etc/shadow",
    ] {
        assert_eq!(suricata_accepts(&rule(dataset)), Some(false), "{dataset}");
    }
}
