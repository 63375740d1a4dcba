//! Feeds and lists over HTTP: `homewarden render --source URL` against a small
//! local web server serving the lab feed and a list.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_homewarden");

/// The token files under `private/` need (`Authorization: Bearer t0ken`).
const TOKEN: &str = "t0ken";

/// Serves files of `root` on 127.0.0.1 (one request per connection, GET only), in a thread;
/// files under `private/` only to a request with the bearer [`TOKEN`].
fn serve(root: PathBuf) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            if reader.read_line(&mut request).is_err() {
                continue;
            }
            let mut authorized = false;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) <= 2 {
                    break;
                }
                authorized |= header
                    .trim()
                    .eq_ignore_ascii_case(&format!("authorization: Bearer {TOKEN}"));
            }
            let path = request
                .split_whitespace()
                .nth(1)
                .unwrap_or("/")
                .trim_start_matches('/');
            let file = root.join(path);
            let private = path.starts_with("private/");
            let reply = match (path.contains(".."), std::fs::read(&file)) {
                (false, Ok(_)) if private && !authorized => {
                    b"HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                        .to_vec()
                }
                (false, Ok(body)) => {
                    let mut r = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    )
                    .into_bytes();
                    r.extend(body);
                    r
                }
                _ => b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
                    .to_vec(),
            };
            let _ = stream.write_all(&reply);
        }
    });
    port
}

fn render(out: &Path, sources: &[String]) -> std::process::Output {
    let mut cmd = Command::new(BIN);
    cmd.args([
        "--config",
        "/nonexistent/homewarden.yaml",
        "render",
        "--out",
    ])
    .arg(out);
    for s in sources {
        cmd.arg("--source").arg(s);
    }
    cmd.output().unwrap()
}

#[test]
fn feed_and_list_from_urls() {
    let root = tempfile::tempdir().unwrap();
    let feed = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/lab-feed");
    std::fs::create_dir(root.path().join("feed")).unwrap();
    for f in std::fs::read_dir(&feed).unwrap() {
        let f = f.unwrap().path();
        std::fs::copy(&f, root.path().join("feed").join(f.file_name().unwrap())).unwrap();
    }
    std::fs::write(
        root.path().join("list.txt"),
        "198.51.100.7\n# comment\nevil.example\n",
    )
    .unwrap();
    let port = serve(root.path().to_path_buf());

    let out = tempfile::tempdir().unwrap();
    let o = render(
        out.path(),
        &[
            format!("http://127.0.0.1:{port}/feed/"),
            format!("http://127.0.0.1:{port}/list.txt"),
        ],
    );
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let ipv4 = std::fs::read_to_string(out.path().join("hw-ipv4.lst")).unwrap();
    // From the feed: the C2 (to_ids) but not the benign context address (to_ids off).
    assert_eq!(ipv4, "198.51.100.7\n203.0.113.66\n");
    let domains = std::fs::read_to_string(out.path().join("hw-domain.lst")).unwrap();
    assert_eq!(domains.lines().count(), 2, "{domains}");
}

#[test]
fn a_missing_url_fails_with_the_url_in_one_line() {
    let root = tempfile::tempdir().unwrap();
    let port = serve(root.path().to_path_buf());
    let out = tempfile::tempdir().unwrap();
    let url = format!("http://127.0.0.1:{port}/nope.txt");
    let o = render(out.path(), std::slice::from_ref(&url));
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&url) && err.contains("404"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    // Nothing half-written.
    assert_eq!(std::fs::read_dir(out.path()).unwrap().count(), 0);
}

#[test]
fn a_private_list_gets_its_token_in_a_header_never_in_the_url() {
    let root = tempfile::tempdir().unwrap();
    std::fs::create_dir(root.path().join("private")).unwrap();
    std::fs::write(root.path().join("private/list.txt"), "198.51.100.9\n").unwrap();
    let port = serve(root.path().to_path_buf());
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("homewarden.yaml");
    std::fs::write(
        &cfg,
        format!(
            "sources:\n  - {{ name: private, type: list, url: \"http://127.0.0.1:{port}/private/list.txt\", token_env: LIST_TOKEN }}\n"
        ),
    )
    .unwrap();
    let run = |token: Option<&str>| {
        let out = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&cfg)
            .arg("render")
            .arg("--out")
            .arg(out.path());
        cmd.env_remove("LIST_TOKEN");
        if let Some(t) = token {
            cmd.env("LIST_TOKEN", t);
        }
        let o = cmd.output().unwrap();
        let ipv4 = std::fs::read_to_string(out.path().join("hw-ipv4.lst")).ok();
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
            ipv4,
        )
    };
    let (ok, _, ipv4) = run(Some(TOKEN));
    assert!(ok);
    assert_eq!(ipv4.as_deref(), Some("198.51.100.9\n"));
    let (ok, err, _) = run(Some("wrong"));
    assert!(
        !ok && err.contains("401") && !err.contains("wrong"),
        "{err}"
    );
    let (ok, err, _) = run(None);
    assert!(!ok && err.contains("no token: set LIST_TOKEN"), "{err}");
}
