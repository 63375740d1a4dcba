use super::*;
use crate::config::Config;

const KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGhvbWV3YXJkZW4tYm9vdC10ZXN0LWtleS0wMTIzNDU2 me@laptop";

fn user_file() -> String {
    format!(
        "# my Pi\nenforcement:\n  mode: ips\nsecrets:\n  misp_api_key: abc123\n  # a comment inside\n  wifi_passphrase: \"correct horse\"\n\nssh_authorized_keys:\n  - {KEY}\nsources: []\n"
    )
}

fn paths(dir: &Path) -> Paths {
    fs::create_dir_all(dir.join("boot")).unwrap();
    Paths {
        boot_config: dir.join("boot/homewarden.yaml"),
        error_file: dir.join("boot/homewarden-error.txt"),
        config: dir.join("etc/homewarden/homewarden.yaml"),
        authorized_keys: dir.join("root/.ssh/authorized_keys"),
        stamp: dir.join("state/boot-config.imported"),
        legacy_stamp: Some(dir.join("agent-state/boot-config.imported")),
        managed_keys: dir.join("state/boot-ssh-keys"),
        agent_gid: None,
    }
}

#[test]
fn split_takes_secrets_and_keys_out_and_keeps_line_numbers() {
    let s = split(&user_file(), Path::new("/boot/homewarden.yaml")).unwrap();
    assert_eq!(
        s.secrets,
        vec![
            ("MISP_API_KEY".to_string(), "abc123".to_string()),
            (
                "HOMEWARDEN_WIFI_PASSPHRASE".to_string(),
                "correct horse".to_string()
            )
        ]
    );
    assert_eq!(s.ssh_keys, vec![KEY.to_string()]);
    assert_eq!(s.config.lines().count(), user_file().lines().count());
    assert!(!s.config.contains("abc123") && !s.boot_copy.contains("abc123"));
    assert!(!s.etc_config.contains("abc123") && !s.etc_config.contains("secrets"));
    assert!(!s.etc_config.contains("ssh_authorized_keys") && s.etc_config.contains("mode: ips"));
    assert!(!s.boot_copy.contains("correct horse"));
    assert!(s.boot_copy.contains("# my Pi") && s.boot_copy.contains("sources: []"));
    assert!(s.boot_copy.contains(
        "# secrets: moved to /etc/homewarden/.env (root's, read by the agent) at boot: MISP_API_KEY, HOMEWARDEN_WIFI_PASSPHRASE."
    ));
    assert!(s
        .boot_copy
        .contains("\nsecrets:\n  misp_api_key: \"\"\n  cohere_api_key: \"\"\n"));
    // Public keys stay where the user wrote them.
    assert!(s
        .boot_copy
        .contains(&format!("ssh_authorized_keys:\n  - {KEY}\nsources: []\n")));
    let debug = format!("{s:?}");
    assert!(debug.contains("MISP_API_KEY"), "{debug}");
    assert!(
        !debug.contains("abc123") && !debug.contains("correct horse"),
        "{debug}"
    );
    // The rewritten copy is itself a valid boot copy with nothing left to move.
    let again = split(&s.boot_copy, Path::new("b")).unwrap();
    assert!(again.secrets.is_empty());
    assert_eq!(again.ssh_keys, s.ssh_keys);
}

#[test]
fn errors_name_file_key_and_value_on_one_line() {
    let f = Path::new("/boot/firmware/homewarden.yaml");
    let cases = [
        ("secrets:\n  misp_key: x\n", "secrets.misp_key: unknown secret"),
        ("secrets:\n  wifi_passphrase: short\n", "secrets.wifi_passphrase: a WPA2 passphrase has 8 to 63"),
        ("secrets:\n  mailtrap_token: \"a'b\"\n", "secrets.mailtrap_token: contains '\\''"),
        ("secrets: [a]\n", "secrets: must be a mapping"),
        ("ssh_authorized_keys:\n  - hello world\n", "ssh_authorized_keys[0]: \"hello world\" is not an SSH public key"),
        ("ssh_authorized_keys:\n  - ssh-ed25519 !!!notbase64\n", "ssh_authorized_keys[0]: \"ssh-ed25519 !!!notbase64\": the key after ssh-ed25519 is not base64"),
        ("enforcement:\n  mode: ipz\nsecrets:\n  misp_api_key: k\n", "enforcement.mode"),
        ("\"secrets\": {misp_api_key: k}\n", "secrets: write it as a plain key"),
        ("- a\n", "-: must be a mapping"),
    ];
    for (text, want) in cases {
        let e = split(text, f).unwrap_err().to_string();
        assert!(e.starts_with("/boot/firmware/homewarden.yaml: "), "{e}");
        assert!(e.contains(want), "{text:?}: {e}");
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn with_the_agents_group_env_is_readable_by_it_and_no_one_else() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    // root may hand a file to any group; anyone else to their own.
    let own = fs::metadata(dir.path()).unwrap().gid();
    let gid = if fs::metadata("/proc/self").unwrap().uid() == 0 {
        4242
    } else {
        own
    };
    let p = Paths {
        agent_gid: Some(gid),
        ..paths(dir.path())
    };
    fs::write(&p.boot_config, user_file()).unwrap();
    import(&p).unwrap();
    let env = fs::metadata(p.config.with_file_name(".env")).unwrap();
    assert_eq!((env.mode() & 0o777, env.gid()), (0o640, gid));
    assert_eq!(
        crate::users::group_gid(
            "root:x:0:\nhomewarden:x:997:\ngpio:x:996:homewarden\n",
            AGENT_GROUP
        ),
        Some(997)
    );
    assert_eq!(
        crate::users::group_gid("homewardens:x:5:\n", AGENT_GROUP),
        None
    );
}

#[test]
fn import_moves_secrets_then_rewrites_the_boot_copy() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    let etc = p.config.parent().unwrap().to_path_buf();
    fs::create_dir_all(&etc).unwrap();
    fs::write(etc.join(".env"), "# mine\nOTHER=1\nMISP_API_KEY='old'\n").unwrap();
    fs::write(&p.boot_config, user_file()).unwrap();
    fs::write(&p.error_file, "old error").unwrap();
    let r = import(&p).unwrap();
    assert_eq!(
        r.secrets,
        vec!["MISP_API_KEY", "HOMEWARDEN_WIFI_PASSPHRASE"]
    );
    assert_eq!(r.ssh_keys_added, 1);
    let env = etc.join(".env");
    assert_eq!(
        fs::read_to_string(&env).unwrap(),
        "# mine\nOTHER=1\nMISP_API_KEY='abc123'\nHOMEWARDEN_WIFI_PASSPHRASE='correct horse'\n"
    );
    assert_eq!(
        fs::metadata(&env).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        fs::metadata(&etc).unwrap().permissions().mode() & 0o777,
        0o755
    );
    // The agent's own .env reader and config loader accept what was written.
    let sec = crate::secrets::Secrets::load(&etc).unwrap();
    assert_eq!(
        sec.get("HOMEWARDEN_WIFI_PASSPHRASE").as_deref(),
        Some("correct horse")
    );
    Config::load(&p.config).unwrap();
    let boot = fs::read_to_string(&p.boot_config).unwrap();
    assert!(!boot.contains("abc123") && !boot.contains("correct horse"));
    assert_eq!(
        fs::read_to_string(&p.authorized_keys).unwrap(),
        format!("{KEY}\n")
    );
    assert!(!p.error_file.exists());
    // Nothing changed on the card: nothing is done again.
    assert!(import(&p).unwrap().unchanged);
    // The user edits the card again (a new key): imported, old ones kept.
    fs::write(
        &p.boot_config,
        boot.replace("cohere_api_key: \"\"", "cohere_api_key: co"),
    )
    .unwrap();
    let r = import(&p).unwrap();
    assert_eq!(r.secrets, vec!["COHERE_API_KEY"]);
    let env = fs::read_to_string(&env).unwrap();
    assert!(env.contains("MISP_API_KEY='abc123'") && env.contains("COHERE_API_KEY='co'"));
}

#[test]
fn keys_are_a_set_the_card_manages_and_hand_added_ones_stay() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    let key = |n: u8| {
        use base64::Engine;
        let blob = base64::engine::general_purpose::STANDARD.encode([n; 32]);
        format!("ssh-ed25519 {blob} key{n}@laptop")
    };
    fs::create_dir_all(p.authorized_keys.parent().unwrap()).unwrap();
    // Key 1 was there by hand before the card ever listed it.
    fs::write(
        &p.authorized_keys,
        format!("# mine\n{}\n{}\n", key(9), key(1)),
    )
    .unwrap();
    let card = |keys: &[u8]| {
        let list: Vec<String> = keys.iter().map(|&n| format!("  - {}\n", key(n))).collect();
        format!("ssh_authorized_keys:\n{}", list.concat())
    };
    fs::write(&p.boot_config, card(&[1, 2, 3])).unwrap();
    let r = import(&p).unwrap();
    assert_eq!((r.ssh_keys_added, r.ssh_keys_removed), (2, 0));
    // Key 3 leaves the card, key 4 comes: 3 goes, and the old
    // managed-keys file holds exactly what the card put there.
    fs::write(&p.boot_config, card(&[1, 2, 4])).unwrap();
    let r = import(&p).unwrap();
    assert_eq!((r.ssh_keys_added, r.ssh_keys_removed), (1, 1));
    assert_eq!(
        fs::read_to_string(&p.authorized_keys).unwrap(),
        format!("# mine\n{}\n{}\n{}\n{}\n", key(9), key(1), key(2), key(4))
    );
    // The list emptied: every key the card put there goes; key 1 (by hand) stays.
    fs::write(&p.boot_config, "ssh_authorized_keys: []\n").unwrap();
    let r = import(&p).unwrap();
    assert_eq!((r.ssh_keys_added, r.ssh_keys_removed), (0, 2));
    assert_eq!(
        fs::read_to_string(&p.authorized_keys).unwrap(),
        format!("# mine\n{}\n{}\n", key(9), key(1))
    );
    assert_eq!(fs::read_to_string(&p.managed_keys).unwrap(), "");
}

#[test]
fn a_bad_boot_copy_changes_nothing_but_the_error_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    let bad = "enforcement:\n  mode: ipz\nsecrets:\n  misp_api_key: keep-me\n";
    fs::write(&p.boot_config, bad).unwrap();
    let e = import(&p).unwrap_err().to_string();
    assert!(e.contains("enforcement.mode"), "{e}");
    // The secret stays where the user put it: fixing the file loses nothing.
    assert_eq!(fs::read_to_string(&p.boot_config).unwrap(), bad);
    let env = p.config.with_file_name(".env");
    assert!(!env.exists());
    let shown = fs::read_to_string(&p.error_file).unwrap();
    assert!(shown.contains(&e), "{shown}");
    // Fixed: imported, and the error file goes away.
    fs::write(&p.boot_config, bad.replace("ipz", "ids")).unwrap();
    import(&p).unwrap();
    assert!(!p.error_file.exists());
    assert!(fs::read_to_string(&env).unwrap().contains("keep-me"));
}

#[test]
fn a_boot_copy_that_aliases_a_list_into_billions_is_refused_in_the_error_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    // The reported file: a 200,000-item list aliased 150,000 times made
    // firstboot abort under a 1 GB limit and left no error file.
    let list = vec!["1"; 200_000];
    let bomb = format!(
        "secrets:\n  misp_api_key: keep-me\nx: &x [{}]\nssh_authorized_keys: [{}]\n",
        list.join(","),
        vec!["*x"; 150_000].join(",")
    );
    assert!(bomb.len() < 900_000, "{}", bomb.len());
    fs::write(&p.boot_config, &bomb).unwrap();
    let e = import(&p).unwrap_err().to_string();
    assert_eq!(
        e,
        format!(
            "{}: -: {}",
            p.boot_config.display(),
            crate::config::expansion::TOO_BIG
        )
    );
    assert!(fs::read_to_string(&p.error_file).unwrap().contains(&e));
    assert_eq!(fs::read_to_string(&p.boot_config).unwrap(), bomb);
    assert!(!p.config.with_file_name(".env").exists());
}

#[test]
fn an_access_point_needs_a_passphrase_on_the_card_or_already_in_env() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    let ap =
        "network:\n  placement: ap\nsecrets:\n  wifi_passphrase: \"\"\n  misp_api_key: keep-me\n";
    fs::write(&p.boot_config, ap).unwrap();
    let e = import(&p).unwrap_err().to_string();
    assert_eq!(
        e,
        format!("{}: secrets.wifi_passphrase: network.placement ap makes a Wi-Fi network for your devices: give it a passphrase of 8 to 63 characters", p.boot_config.display())
    );
    assert!(fs::read_to_string(&p.error_file).unwrap().contains(&e));
    assert_eq!(fs::read_to_string(&p.boot_config).unwrap(), ap);
    // Given on the card: imported, and wiped from it.
    fs::write(&p.boot_config, ap.replace("\"\"", "\"correct horse\"")).unwrap();
    import(&p).unwrap();
    assert!(!p.error_file.exists());
    // A later edit need not repeat it: the one in .env counts.
    let boot = fs::read_to_string(&p.boot_config).unwrap();
    assert!(!boot.contains("correct horse"), "{boot}");
    fs::write(
        &p.boot_config,
        boot.replace("placement: ap", "placement: ap\n  uplink: end0"),
    )
    .unwrap();
    import(&p).unwrap();
    assert!(fs::read_to_string(&p.config).unwrap().contains("end0"));
}

#[test]
fn the_images_example_is_a_valid_boot_copy_with_nothing_to_move() {
    let s = split(
        include_str!("../../../image/homewarden.yaml"),
        Path::new("image/homewarden.yaml"),
    )
    .unwrap();
    assert!(s.secrets.is_empty() && s.ssh_keys.is_empty());
    // Nothing to move: the boot copy stays byte for byte.
    assert_eq!(s.boot_copy, include_str!("../../../image/homewarden.yaml"));
}

#[test]
fn no_boot_copy_is_nothing_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    assert!(import(&p).unwrap().unchanged);
    assert!(!p.config.parent().unwrap().exists());
}

#[test]
fn first_boot_keeps_nothing_where_the_agent_can_write() {
    let p = Paths::default();
    for path in [&p.stamp, &p.managed_keys] {
        assert!(path.starts_with(STATE_DIR), "{path:?}");
        assert!(!path.starts_with("/var/lib/homewarden/"), "{path:?}");
    }
    // The unit makes that directory root's, with systemd.
    let unit = include_str!("../../../overlays/etc/systemd/system/homewarden-firstboot.service");
    let dir = STATE_DIR.trim_start_matches("/var/lib/");
    assert!(
        unit.lines().any(|l| l == format!("StateDirectory={dir}")),
        "{unit}"
    );
}

#[test]
fn an_earlier_versions_stamp_spares_the_owners_edits_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    fs::write(&p.boot_config, user_file()).unwrap();
    import(&p).unwrap();
    // As an earlier version left things: its stamp in the agent's directory.
    let legacy = p.legacy_stamp.clone().unwrap();
    fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    fs::rename(&p.stamp, &legacy).unwrap();
    fs::write(&p.config, "# edited on the Pi\n").unwrap();
    assert!(import(&p).unwrap().unchanged);
    assert_eq!(
        fs::read_to_string(&p.config).unwrap(),
        "# edited on the Pi\n"
    );
}

#[test]
fn an_earlier_versions_stamp_is_never_read_through_a_link() {
    let dir = tempfile::tempdir().unwrap();
    let p = paths(dir.path());
    fs::write(&p.boot_config, user_file()).unwrap();
    import(&p).unwrap();
    let boot_copy = fs::read(&p.stamp).unwrap();
    fs::remove_file(&p.stamp).unwrap();
    // The agent points its old stamp at a root file equal to the boot copy
    // (here: a copy of it) to learn by the outcome whether they are equal.
    let root_file = dir.path().join("root-only");
    fs::write(&root_file, &boot_copy).unwrap();
    let legacy = p.legacy_stamp.clone().unwrap();
    fs::create_dir_all(legacy.parent().unwrap()).unwrap();
    std::os::unix::fs::symlink(&root_file, &legacy).unwrap();
    assert!(last_import(&p).is_none());
    // Not followed: the boot copy is imported again.
    assert!(!import(&p).unwrap().unchanged);
    assert_eq!(fs::read(&p.stamp).unwrap(), boot_copy);
}
