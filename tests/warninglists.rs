//! The shipped warninglists on a phishing feed as home users get them: the
//! sites the family uses stay reachable, the phish stays blocked.

use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_homewarden");

/// A URLScan-derived phishing feed, one URL per line, as such feeds list
/// them: the abused services of the big sites beside the phishers' own
/// hosts (which are documentation names here).
const PHISHING_FEED: &str = "\
# phishing URLs seen in the last 24 h (urlscan.io verdicts)
https://docs.google.com/forms/d/e/1FAIpQLSdXhqcGh3/viewform
https://drive.google.com/file/d/1aB2cD3eF4/view?usp=sharing
https://accounts.google.com/ServiceLogin?continue=https%3A%2F%2Fmail.google.com
https://gmail.com/
https://www.amazon.com/ap/signin?openid.return_to=x
https://amazon.com/
https://discord.com/invite/free-nitro
https://storage.googleapis.com/bucket-7f3a/index.html
https://bit.ly/3xYzAbC
https://secure-login-paypal.evil.example/webscr
https://evil-office365.blogspot.com/
https://verify-account.web.app/login
https://amazon-billing-update.evil.example/
https://bucket-phish.s3.amazonaws.com/signin.html
";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn domains(dir: &Path) -> Vec<String> {
    use base64::Engine as _;
    let text = std::fs::read_to_string(dir.join("hw-domain.lst")).unwrap();
    let mut v: Vec<String> = text
        .lines()
        .map(|l| {
            let raw = base64::engine::general_purpose::STANDARD.decode(l).unwrap();
            String::from_utf8(raw).unwrap()
        })
        .collect();
    v.sort();
    v
}

fn render(config: &str) -> (String, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("feed.txt"), PHISHING_FEED).unwrap();
    let cfg = dir.path().join("homewarden.yaml");
    std::fs::write(
        &cfg,
        format!(
            "{config}sources:\n  - {{ name: phish, type: list, path: {} }}\n",
            dir.path().join("feed.txt").display()
        ),
    )
    .unwrap();
    let out = dir.path().join("out");
    let o = Command::new(BIN)
        .arg("--config")
        .arg(&cfg)
        .args(["render", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    (stdout, domains(&out))
}

#[test]
fn the_default_lists_spare_the_big_sites_and_keep_the_phish() {
    let shipped = repo().join("overlays/usr/share/homewarden/warninglists");
    let (out, blocked) = render(&format!("warninglists: {{ dir: {} }}\n", shipped.display()));
    assert_eq!(
        blocked,
        [
            "amazon-billing-update.evil.example",
            "bucket-phish.s3.amazonaws.com",
            "evil-office365.blogspot.com",
            "secure-login-paypal.evil.example",
            "verify-account.web.app",
        ],
        "{out}"
    );
    assert!(out.contains("warninglists: 9 not enforced ("), "{out}");

    // Without lists, the feed would have cut the family off all of them.
    let (_, everything) = render("warninglists: { exempt: [], warn: [] }\n");
    for site in [
        "docs.google.com",
        "gmail.com",
        "amazon.com",
        "discord.com",
        "bit.ly",
    ] {
        assert!(
            everything.iter().any(|d| d == site),
            "{site}: {everything:?}"
        );
    }

    // The owner can still block one of them on purpose.
    let (_, with_one) = render(&format!(
        "warninglists: {{ dir: {}, enforce_anyway: [discord.com] }}\n",
        shipped.display()
    ));
    assert!(with_one.iter().any(|d| d == "discord.com"), "{with_one:?}");
    assert!(!with_one.iter().any(|d| d == "gmail.com"), "{with_one:?}");
}
