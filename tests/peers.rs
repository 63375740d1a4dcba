//! The advisor's and the mailer's clients against real peers on 127.0.0.1:
//! the LLM double (Cohere v2 and OpenAI-compatible, shown faithful by the
//! official SDKs in tests/llm) and a real aiosmtpd server (tests/smtp), both
//! over TLS with a private CA, as a home's own servers would be.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use homewarden::alerts::triage::Incident;
use homewarden::config::{AdvisorConfig, MailConfig};
use homewarden::intel::set::Provenance;
use homewarden::respond::advisor::{self, AdvisorError, Backend};
use homewarden::respond::mail::{self, Mailer, Security};

const PY: &str = "/usr/bin/python3";
const KEY: &str = "hw-test-cohere-key-0123456789";
const TOKEN: &str = "hw-test-mailtrap-token-0123456789";

/// Skips (or, under the test suite, fails) when the peers' Python packages are missing.
fn peers_available() -> bool {
    let ok = Command::new(PY)
        .args(["-c", "import aiosmtpd"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok && std::env::var_os("HOMEWARDEN_REQUIRE_PEERS").is_some() {
        panic!("python3-aiosmtpd is required (HOMEWARDEN_REQUIRE_PEERS is set)");
    }
    if !ok {
        eprintln!("python3-aiosmtpd missing: skipping (scripts/install-deps.sh installs it)");
    }
    ok
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A CA and a certificate for 127.0.0.1 signed by it, made with openssl.
fn certs(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ca = dir.join("ca.pem");
    let (cert, key) = (dir.join("server.pem"), dir.join("server.key"));
    let run = |args: &[&str]| {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(&[
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-days",
        "1",
        "-subj",
        "/CN=homewarden test CA",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    run(&[
        "req",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
        "-subj",
        "/CN=localhost",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
    ]);
    std::fs::write(
        dir.join("server.ext"),
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-days",
        "1",
        "-extfile",
        "server.ext",
        "-out",
        "server.pem",
    ]);
    (ca, cert, key)
}

/// A peer process, killed when dropped.
struct Peer {
    child: Child,
    port: u16,
    dir: PathBuf,
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(dir: &Path, script: &str, args: &[&str]) -> Peer {
    static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let port_file = dir.join(format!("peer-{n}.port"));
    let log = std::fs::File::create(dir.join(format!("peer-{n}.log"))).unwrap();
    let mut peer = Peer {
        child: Command::new(PY)
            .arg(repo().join(script))
            .args(["--listen", "127.0.0.1:0", "--port-file"])
            .arg(&port_file)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap(),
        port: 0,
        dir: dir.to_path_buf(),
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while peer.port == 0 {
        match std::fs::read_to_string(&port_file).map(|p| p.trim().parse()) {
            Ok(Ok(port)) => peer.port = port,
            _ => {
                assert!(Instant::now() < deadline, "{script} did not start");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    peer
}

fn llm_double(dir: &Path, cert: &Path, key: &Path) -> Peer {
    start(
        dir,
        "tests/llm/llm_double.py",
        &[
            "--api-key",
            KEY,
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
}

/// Queues faults in the LLM double (its admin path; plain JSON over the same TLS port).
async fn faults(peer: &Peer, ca: &Path, queue: serde_json::Value) {
    let http = homewarden::intel::fetch::client(Some(ca), true).unwrap();
    let r = http
        .post(format!("https://127.0.0.1:{}/__admin/faults", peer.port))
        .json(&serde_json::json!({ "queue": queue }))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

async fn requests(peer: &Peer, ca: &Path) -> Vec<serde_json::Value> {
    let http = homewarden::intel::fetch::client(Some(ca), true).unwrap();
    http.get(format!("https://127.0.0.1:{}/__admin/requests", peer.port))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

fn incident() -> Incident {
    Incident {
        id: "inc-1795000000-00000000000000aa".into(),
        listed: true,
        observed: false,
        sid: 1_666_001,
        signature: "homewarden: IPv4 destination on blocklist".into(),
        category: "A Network Trojan was detected".into(),
        remote: "203.0.113.66".into(),
        remote_ip: "203.0.113.66".parse().unwrap(),
        local: "198.18.1.2".parse().unwrap(),
        severity: 1,
        high: true,
        blocked: true,
        first_seen: 1_795_000_000,
        last_seen: 1_795_000_030,
        count: 4,
        device: None,
        matched: Some(homewarden::alerts::triage::Matched::Address),
        remote_port: Some(80),
        signature_severity: None,
        ioc: Some(Provenance {
            source: "lab-misp".into(),
            event_uuid: None,
            event_id: Some(7),
            attribute_uuid: Some("5b1d7c8e-0000-4000-8000-000000000001".into()),
            threat_level: Some(1),
            event_info: Some(
                "C2 of camera botnet (seen from 198.18.1.2, 02:42:ac:11:00:02)".into(),
            ),
            tags: vec!["tlp:amber".into()],
            since: None,
            indicator: "203.0.113.66".into(),
        }),
    }
}

fn advisor_cfg(backend: Backend, port: u16, ca: &Path, path: &str) -> AdvisorConfig {
    AdvisorConfig {
        backend,
        url: Some(format!("https://127.0.0.1:{port}{path}")),
        model: Some("test-model".into()),
        ca_file: Some(ca.to_path_buf()),
        timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

fn home() -> Vec<ipnet::IpNet> {
    vec!["198.18.1.0/24".parse().unwrap()]
}

#[tokio::test]
async fn cohere_advice_its_errors_and_a_redacted_prompt() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certs(dir.path());
    let peer = llm_double(dir.path(), &cert, &key);
    let cfg = advisor_cfg(Backend::Cohere, peer.port, &ca, "");
    let llm = advisor::Client::new(&cfg, Some(KEY.into()), home())
        .unwrap()
        .unwrap();

    let a = llm.advise(&incident()).await.unwrap();
    assert_eq!(a.by, "cohere test-model");
    assert!(a.text.starts_with("1. Disconnect"), "{}", a.text);
    assert!(a.text.contains("[llm-double reply to "), "{}", a.text);
    let sent = requests(&peer, &ca).await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["path"], "/v2/chat");
    assert_eq!(sent[0]["headers"]["authorization"], format!("Bearer {KEY}"));
    let prompt = sent[0]["json"].to_string();
    assert!(
        !prompt.contains("198.18.1.2"),
        "home address in the prompt: {prompt}"
    );
    assert!(
        !prompt.contains("02:42:ac:11:00:02"),
        "MAC in the prompt: {prompt}"
    );
    assert!(
        prompt.contains("203.0.113.66") && prompt.contains("[home address]"),
        "{prompt}"
    );

    faults(
        &peer,
        &ca,
        serde_json::json!([{"status": 429, "retry_after": 7}, {"status": 503}, {"malformed": true}, {"disconnect": true}]),
    )
    .await;
    let e = llm.advise(&incident()).await.unwrap_err();
    assert!(
        matches!(e, AdvisorError::RateLimited { .. }) && e.retryable(),
        "{e}"
    );
    assert_eq!(e.retry_after(), Some(Duration::from_secs(7)));
    let e = llm.advise(&incident()).await.unwrap_err();
    assert!(
        matches!(e, AdvisorError::Server { status: 503, .. }) && e.retryable(),
        "{e}"
    );
    let e = llm.advise(&incident()).await.unwrap_err();
    assert!(
        matches!(e, AdvisorError::Malformed(_)) && !e.retryable(),
        "{e}"
    );
    let e = llm.advise(&incident()).await.unwrap_err();
    assert!(
        matches!(e, AdvisorError::Transport(_)) && e.retryable(),
        "{e}"
    );

    let wrong = advisor::Client::new(&cfg, Some("wrong-key".into()), home())
        .unwrap()
        .unwrap();
    let e = wrong.advise(&incident()).await.unwrap_err();
    assert!(
        matches!(e, AdvisorError::Unauthorized(_)) && !e.retryable(),
        "{e}"
    );
    assert!(e.to_string().contains("invalid api token"), "{e}");
}

#[tokio::test]
async fn hostile_llm_text_arrives_as_bounded_plain_text() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certs(dir.path());
    let peer = llm_double(dir.path(), &cert, &key);
    let cfg = advisor_cfg(Backend::Cohere, peer.port, &ca, "");
    let llm = advisor::Client::new(&cfg, Some(KEY.into()), home())
        .unwrap()
        .unwrap();
    faults(&peer, &ca, serde_json::json!([{"hostile": true}])).await;
    let a = llm.advise(&incident()).await.unwrap();
    assert!(a.text.chars().count() <= advisor::MAX_ADVICE_CHARS + 1);
    assert!(a.text.lines().count() <= advisor::MAX_ADVICE_LINES);
    assert!(
        !a.text.chars().any(|c| c.is_control() && c != '\n'),
        "control characters survived: {:?}",
        a.text
    );
    // In the HTML part, markup the LLM wrote is text, never markup.
    let letter = mail::incident_letter("pi", &incident(), &a);
    assert!(
        a.text.contains('<'),
        "the hostile reply should carry markup"
    );
    assert!(
        !letter.html.contains("<script") && !letter.html.contains("<img"),
        "{}",
        letter.html
    );
}

#[tokio::test]
async fn openai_compatible_endpoint_with_or_without_v1_in_the_url() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certs(dir.path());
    let peer = llm_double(dir.path(), &cert, &key);
    for path in ["", "/v1"] {
        let cfg = advisor_cfg(Backend::Openai, peer.port, &ca, path);
        let llm = advisor::Client::new(&cfg, Some(KEY.into()), home())
            .unwrap()
            .unwrap();
        let a = llm.advise(&incident()).await.unwrap();
        assert!(a.text.contains("[llm-double reply to "), "{}", a.text);
        assert!(a.by.ends_with("test-model"), "{}", a.by);
    }
    let sent = requests(&peer, &ca).await;
    assert!(
        sent.iter().all(|r| r["path"] == "/v1/chat/completions"),
        "{sent:?}"
    );
    faults(
        &peer,
        &ca,
        serde_json::json!([{"status": 429, "retry_after": 3}]),
    )
    .await;
    let cfg = advisor_cfg(Backend::Openai, peer.port, &ca, "");
    let llm = advisor::Client::new(&cfg, Some(KEY.into()), home())
        .unwrap()
        .unwrap();
    let e = llm.advise(&incident()).await.unwrap_err();
    assert_eq!(e.retry_after(), Some(Duration::from_secs(3)), "{e}");
}

fn smtp(dir: &Path, cert: &Path, key: &Path, mode: &str) -> Peer {
    let maildir = dir.join(format!("mail-{mode}"));
    start(
        dir,
        "tests/smtp/smtp_server.py",
        &[
            "--user",
            "api",
            "--password",
            TOKEN,
            "--maildir",
            maildir.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
            "--mode",
            mode,
        ],
    )
}

fn mail_cfg(port: u16, ca: Option<&Path>, security: Security) -> MailConfig {
    MailConfig {
        to: vec!["Owner <owner@home.test>".into()],
        from: Some("homewarden <homewarden@home.test>".into()),
        host: "127.0.0.1".into(),
        port: Some(port),
        security,
        ca_file: ca.map(Path::to_path_buf),
        timeout: Duration::from_secs(10),
        ..Default::default()
    }
}

fn delivered(peer: &Peer, mode: &str) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(peer.dir.join(format!("mail-{mode}")))
        .map(|d| d.flatten().map(|e| e.path()).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "eml"));
    files.sort();
    files
        .iter()
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect()
}

/// The text/html part of a message, quoted-printable decoded (enough for lettre's output).
fn html_part(m: &str) -> String {
    let start = m.find("Content-Type: text/html").expect("no HTML part");
    let body = &m[start..];
    let body = &body[body.find("\r\n\r\n").map_or(0, |i| i + 4)..];
    let body = &body[..body.find("\r\n--").unwrap_or(body.len())];
    let joined = body.replace("=\r\n", "");
    let mut out = Vec::new();
    let b = joined.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'=' && i + 2 < b.len() {
            if let Ok(v) = u8::from_str_radix(&joined[i + 1..i + 3], 16) {
                out.push(v);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn mail_over_starttls_and_implicit_tls_with_login() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certs(dir.path());
    for (mode, security) in [
        ("starttls", Security::Starttls),
        ("implicit", Security::Tls),
    ] {
        let peer = smtp(dir.path(), &cert, &key, mode);
        let mailer = Mailer::new(
            &mail_cfg(peer.port, Some(&ca), security),
            Some(TOKEN.into()),
        )
        .unwrap()
        .unwrap();
        let mut inc = incident();
        inc.signature = "<script>alert(1)</script> & more".into();
        let letter = mail::incident_letter("pi", &inc, &advisor::offline(&inc));
        mailer.send(&letter, &inc.id).await.unwrap();
        let mails = delivered(&peer, mode);
        assert_eq!(mails.len(), 1, "{mode}");
        let m = &mails[0];
        assert!(
            m.contains(&format!("Message-ID: <{}@homewarden>", inc.id)),
            "{m}"
        );
        assert!(
            m.contains("multipart/alternative") && m.contains("text/html"),
            "{m}"
        );
        assert!(
            m.contains("To: \"Owner\" <owner@home.test>")
                || m.contains("To: Owner <owner@home.test>"),
            "{m}"
        );
        let html = html_part(m);
        assert!(
            html.contains("&lt;script&gt;alert(1)&lt;/script&gt; &amp; more"),
            "{html}"
        );
        assert!(
            !html.contains("<script>"),
            "unescaped markup in the HTML part: {html}"
        );
        let meta =
            std::fs::read_to_string(peer.dir.join(format!("mail-{mode}")).join("1.json")).unwrap();
        let meta: serde_json::Value = serde_json::from_str(&meta).unwrap();
        assert_eq!(meta["auth_user"], "api", "{meta}");
        assert!(
            meta["tls"]
                .as_str()
                .is_some_and(|v| v.starts_with("TLSv1.")),
            "{meta}"
        );
    }
}

#[tokio::test]
async fn refused_login_and_untrusted_certificates_fail_fast_and_say_why() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certs(dir.path());
    let peer = smtp(dir.path(), &cert, &key, "starttls");
    let letter = mail::test_letter("pi");
    let started = Instant::now();
    let wrong = Mailer::new(
        &mail_cfg(peer.port, Some(&ca), Security::Starttls),
        Some("nope".into()),
    )
    .unwrap()
    .unwrap();
    let e = wrong.send(&letter, "t1").await.unwrap_err().to_string();
    assert!(
        e.contains("535") || e.to_lowercase().contains("auth"),
        "{e}"
    );
    // Without the private CA the server's certificate is not trusted: no mail, a TLS error.
    let untrusted = Mailer::new(
        &mail_cfg(peer.port, None, Security::Starttls),
        Some(TOKEN.into()),
    )
    .unwrap()
    .unwrap();
    let e = untrusted.send(&letter, "t2").await.unwrap_err().to_string();
    assert!(
        e.to_lowercase().contains("certificate") || e.to_lowercase().contains("tls"),
        "{e}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(9),
        "a refusal must not wait for the timeout"
    );
    assert!(delivered(&peer, "starttls").is_empty());
}

/// TLS trusts the system's certificate store (rustls-native-certs): a CA the
/// system trusts (here through `SSL_CERT_FILE`, which the store reads as
/// OpenSSL does) is trusted without `ca_file`; without it, the same server is not.
#[tokio::test]
async fn the_system_certificate_store_is_trusted() {
    if !peers_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certs(dir.path());
    let peer = smtp(dir.path(), &cert, &key, "starttls");
    let cfg = dir.path().join("homewarden.yaml");
    std::fs::write(
        &cfg,
        format!(
            "mail: {{ to: [owner@home.test], from: hw@home.test, host: 127.0.0.1, port: {}, security: starttls }}\n",
            peer.port
        ),
    )
    .unwrap();
    let mail_test = |store: Option<&Path>| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_homewarden"));
        cmd.arg("--config")
            .arg(&cfg)
            .arg("mail-test")
            .env("MAILTRAP_TOKEN", TOKEN)
            .env_remove("SSL_CERT_FILE")
            .env_remove("SSL_CERT_DIR");
        if let Some(s) = store {
            cmd.env("SSL_CERT_FILE", s);
        }
        cmd.output().unwrap()
    };
    let o = mail_test(None);
    assert!(
        !o.status.success(),
        "a private CA the system does not trust"
    );
    assert!(delivered(&peer, "starttls").is_empty());
    let o = mail_test(Some(&ca));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(delivered(&peer, "starttls").len(), 1);
}
