//! Every systemd unit the appliance ships is scored by `systemd-analyze
//! security --offline=true` as the README's table says: the figure itself, at
//! most 2.0 unless the table names what the unit's job needs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const UNITS: &str = "overlays/etc/systemd/system";
/// Debian's own unit, which our drop-in changes.
const SURICATA_UNIT: &str = "/lib/systemd/system/suricata.service";
const MAX: f64 = 2.0;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The overall exposure `systemd-analyze` prints last.
fn exposure(args: &[&str]) -> f64 {
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .args(args)
        .output()
        .expect("systemd-analyze (Debian's systemd package)");
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text
        .lines()
        .find(|l| l.contains("Overall exposure level"))
        .unwrap_or_else(|| {
            panic!(
                "no exposure for {args:?}: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let figure = line
        .split_once(": ")
        .and_then(|(_, rest)| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok());
    figure.unwrap_or_else(|| panic!("unreadable exposure line: {line}"))
}

/// Scores of the units in `overlays/`, and Suricata's with our drop-in over Debian's unit.
fn measured() -> BTreeMap<String, f64> {
    let mut scores = BTreeMap::new();
    for entry in std::fs::read_dir(repo().join(UNITS)).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "service") {
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            scores.insert(name, exposure(&[path.to_str().unwrap()]));
        }
    }
    // Offline, a drop-in is only seen under a root holding both files.
    let root = tempfile::tempdir().unwrap();
    let lib = root.path().join("lib/systemd/system");
    let etc = root.path().join("etc/systemd/system/suricata.service.d");
    std::fs::create_dir_all(&lib).unwrap();
    std::fs::create_dir_all(&etc).unwrap();
    std::fs::copy(SURICATA_UNIT, lib.join("suricata.service"))
        .expect("Debian's suricata.service (scripts/install-deps.sh installs suricata)");
    std::fs::copy(
        repo()
            .join(UNITS)
            .join("suricata.service.d/homewarden.conf"),
        etc.join("homewarden.conf"),
    )
    .unwrap();
    let root_arg = format!("--root={}", root.path().display());
    scores.insert(
        "suricata.service".into(),
        exposure(&[&root_arg, "suricata.service"]),
    );
    scores
}

/// One row of the README's unit table: the figure and the "needs" column.
struct Row {
    score: f64,
    needs: String,
}

fn readme_table(readme: &str) -> BTreeMap<String, Row> {
    let section = readme
        .split("### Least privilege: every unit sandboxed")
        .nth(1)
        .expect("README section \"Least privilege: every unit sandboxed\"");
    let mut rows = BTreeMap::new();
    for line in section.lines().skip_while(|l| !l.starts_with("| unit ")) {
        if !line.starts_with('|') {
            break;
        }
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        let Some(unit) = cells.first().and_then(|c| c.split('`').nth(1)) else {
            continue;
        };
        let (Some(score), Some(needs)) = (cells.get(1), cells.get(3)) else {
            panic!("README unit table: row without four cells: {line}");
        };
        let score = score
            .parse()
            .unwrap_or_else(|_| panic!("README unit table: {unit}: score {score:?}"));
        rows.insert(
            unit.to_string(),
            Row {
                score,
                needs: needs.to_string(),
            },
        );
    }
    rows
}

#[test]
fn every_unit_scores_what_the_readme_says_and_only_a_named_need_goes_above_2() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let table = readme_table(&readme);
    let measured = measured();
    assert!(measured.contains_key("homewarden.service"), "{measured:?}");
    let mut wrong = Vec::new();
    for (unit, score) in &measured {
        match table.get(unit) {
            None => wrong.push(format!(
                "{unit}: {score} measured, not in the README's table"
            )),
            Some(row) if (row.score - score).abs() > 0.05 => wrong.push(format!(
                "{unit}: {score} measured, the README says {}",
                row.score
            )),
            Some(row) if *score > MAX && row.needs.trim_matches(['—', ' ']).is_empty() => wrong
                .push(format!(
                    "{unit}: {score} is above {MAX} and the README names no need for it"
                )),
            Some(_) => {}
        }
    }
    for unit in table.keys().filter(|u| !measured.contains_key(*u)) {
        wrong.push(format!("{unit}: in the README's table, not shipped"));
    }
    assert!(wrong.is_empty(), "{}", wrong.join("\n"));
}

#[test]
fn the_agent_runs_as_its_own_user_with_cap_net_admin_alone() {
    let unit = std::fs::read_to_string(repo().join(UNITS).join("homewarden.service")).unwrap();
    let set = |key: &str| -> Vec<String> {
        unit.lines()
            .filter_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(str::to_string)
            .collect()
    };
    assert_eq!(set("User"), ["homewarden"]);
    assert_eq!(set("CapabilityBoundingSet"), ["CAP_NET_ADMIN"]);
    assert_eq!(set("AmbientCapabilities"), ["CAP_NET_ADMIN"]);
    assert_eq!(set("UMask"), ["0077"]);
    assert!(set("MemoryMax").len() == 1, "MemoryMax= is set once");
    assert_eq!(set("SystemCallFilter")[0], "@system-service");
    // Nothing of /etc is writable to it: the factory reset is the root step's.
    assert!(set("ReadWritePaths").iter().all(|p| !p.contains("/etc")));
    assert!(set("ExecStartPre")
        .iter()
        .any(|c| c.starts_with('+') && c.ends_with(" apply-factory-reset")));
    assert!(
        set("RuntimeDirectory").is_empty(),
        "/run/homewarden is tmpfiles'"
    );
    // The sysusers.d file makes the user it names, in the group the unit adds.
    let users = std::fs::read_to_string(repo().join("overlays/usr/lib/sysusers.d/homewarden.conf"))
        .unwrap();
    assert!(users.lines().any(|l| l.starts_with("u homewarden ")));
    assert!(users.lines().any(|l| l == "m homewarden gpio"));
    assert_eq!(set("SupplementaryGroups"), ["gpio"]);
    assert!(Path::new(&repo().join("overlays/etc/udev/rules.d/60-homewarden.rules")).exists());
}
