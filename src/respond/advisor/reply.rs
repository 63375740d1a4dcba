//! What an LLM writes reaches a person who may act on it, and the model read
//! text an attacker chose (a hostname, an event title). So before the owner
//! sees it, line by line:
//!
//! - a line that is exactly a read-only `homewarden` command stays as it is;
//! - any other line that holds a command (another `homewarden` command, a
//!   shell command, `sudo`, a pipe, `&&`, backticks, `$(`…) becomes
//!   [`COMMAND_REMOVED`];
//! - a line telling the owner to allow, unallow, unblock or release something
//!   becomes [`LIFT_REMOVED`]: lifting protection is the owner's decision from
//!   the incident's facts, never an attacker's through the model;
//! - in what is left, a link becomes [`LINK_REMOVED`] unless it goes to a site
//!   the project trusts for advice (vendors' and agencies' support pages),
//!   and a bare domain is defanged (`evil[.]example`) so no mail client makes
//!   it a link.

/// Hosts (and their subdomains) a link in advice may point to.
pub const TRUSTED_LINK_HOSTS: &[&str] = &[
    "support.apple.com",
    "support.google.com",
    "support.microsoft.com",
    "learn.microsoft.com",
    "www.cisa.gov",
    "www.ncsc.gov.uk",
    "www.bsi.bund.de",
    "consumer.ftc.gov",
    "haveibeenpwned.com",
];

/// What stands where a link was.
pub const LINK_REMOVED: &str = "[link removed]";
/// What stands where a command line was.
pub const COMMAND_REMOVED: &str =
    "[a command was removed: never run a command from a message without checking it]";
/// What stands where advice to lift a block or a quarantine was.
pub const LIFT_REMOVED: &str =
    "[advice to lift a block or a quarantine was removed: decide that yourself from the facts above]";

/// Every subcommand of `homewarden` as clap names it (`main.rs` tests that
/// the two agree): a mention of one is a command, not prose.
pub const COMMANDS: &[&str] = &[
    "run",
    "sync",
    "render",
    "check-config",
    "apply-factory-reset",
    "lookup",
    "triage",
    "ack",
    "press",
    "legend",
    "panel",
    "firstboot",
    "network",
    "firewall",
    "mail-test",
    "notify-test",
    "explain",
    "allow",
    "unallow",
    "selftest",
    "blocks",
    "devices",
    "quarantine",
    "release",
    "signatures",
    "status",
];

/// The commands advice may name, and whether each takes one value: the ones
/// that read what the appliance knows about an incident and change nothing.
/// `devices` only without its `name` action. Others that only read are left
/// out as no advice about an incident: `check-config`, `legend`, `panel`,
/// and `triage`, which reads a file the line would name. `selftest` is not
/// read-only (it reloads Suricata and rolls back).
pub const READ_ONLY_COMMANDS: &[(&str, bool)] = &[
    ("status", false),
    ("blocks", false),
    ("devices", false),
    ("explain", true),
    ("lookup", true),
];

/// The one flag a read-only command may carry.
const READ_ONLY_FLAG: &str = "--json";

/// Pieces of a line that make it a shell command wherever they stand.
const COMMAND_MARKS: &[&str] = &[
    "curl ",
    "wget ",
    "|",
    "&&",
    "$(",
    "${",
    ">>",
    "> /",
    ">/",
    "> ~",
    "`",
    "bash -c",
    "sh -c",
    "powershell",
    "iex ",
    "iex(",
    "invoke-webrequest",
    "chmod +x",
    "rm -rf",
    "nc -e",
    "base64 -d",
    "mkfifo",
    "dd if=",
    "/dev/tcp/",
    "authorized_keys",
    "sudo ",
    ":\\",
];

/// Programs that begin a shell command (lower-case, as a shell wants them;
/// "Echo" starting a sentence is a speaker, `echo` a command).
const PROGRAMS: &[&str] = &[
    "sudo",
    "su",
    "sh",
    "bash",
    "zsh",
    "curl",
    "wget",
    "chmod",
    "chown",
    "rm",
    "mv",
    "cp",
    "echo",
    "printf",
    "cat",
    "tee",
    "dd",
    "systemctl",
    "iptables",
    "ip6tables",
    "nft",
    "ufw",
    "apt",
    "apt-get",
    "dpkg",
    "pip",
    "pip3",
    "npm",
    "python",
    "python3",
    "perl",
    "ruby",
    "ssh",
    "scp",
    "nc",
    "ncat",
    "telnet",
    "kill",
    "killall",
    "crontab",
    "eval",
    "exec",
    "export",
    "cmd",
    "netsh",
];

/// Words that tell someone to type what follows.
const RUN_VERBS: &[&str] = &["run", "type", "execute", "enter", "paste", "invoke"];

/// Words that lift a block or a quarantine.
const LIFT_WORDS: &[&str] = &[
    "allow",
    "allowing",
    "allowlist",
    "allowlisting",
    "whitelist",
    "whitelisting",
    "unallow",
    "unblock",
    "unblocking",
    "unquarantine",
    "release",
    "releasing",
];

/// Phrases that lift one too.
const LIFT_PHRASES: &[&str] = &[
    "un-quarantine",
    "out of quarantine",
    "from quarantine",
    "lift the block",
    "lift the quarantine",
    "remove the block",
    "stop blocking",
];

/// Words before `release` that make it a noun (a firmware release), not the verb.
const RELEASE_NOUN_BEFORE: &[&str] = &[
    "a", "an", "the", "this", "that", "latest", "newest", "new", "next", "stable", "firmware",
    "software", "security", "app", "its", "their",
];

/// Cleans an LLM's advice as the module docs say.
pub fn neutralise(text: &str) -> String {
    text.lines()
        .map(|line| {
            let (marker, body) = split_marker(line);
            if is_read_only_command(body) {
                line.to_string()
            } else if is_command(body) {
                format!("{marker}{COMMAND_REMOVED}")
            } else if lifts_protection(body) {
                format!("{marker}{LIFT_REMOVED}")
            } else {
                line.split(' ')
                    .map(inert_word)
                    .collect::<Vec<_>>()
                    .join(" ")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A line's list marker (`1. `, `2) `, `- `) and the rest.
fn split_marker(line: &str) -> (&str, &str) {
    let mut at = line
        .find(|c: char| !(c.is_ascii_digit() || matches!(c, '.' | ')' | ' ')))
        .unwrap_or(line.len());
    // A bullet only with a space after it: `--force` is an option, not a list.
    if let Some(b) = ["- ", "* ", "• "]
        .iter()
        .find(|b| line[at..].starts_with(**b))
    {
        at += b.len();
        at += line[at..].len() - line[at..].trim_start_matches(' ').len();
    }
    line.split_at(at)
}

/// Whether `body` is, as a whole, a read-only `homewarden` command (in one
/// pair of backticks or none): the name, the subcommand, at most the value
/// it takes and `--json`, nothing a shell would read more into.
fn is_read_only_command(body: &str) -> bool {
    let body = body.trim();
    let body = body
        .strip_prefix('`')
        .and_then(|b| b.strip_suffix('`'))
        .unwrap_or(body);
    let mut words = body.split_whitespace();
    if words.next() != Some("homewarden") {
        return false;
    }
    let Some(&(_, takes_value)) = words
        .next()
        .and_then(|sub| READ_ONLY_COMMANDS.iter().find(|(c, _)| *c == sub))
    else {
        return false;
    };
    let (mut values, mut flags) = (0, 0);
    for w in words {
        if w == READ_ONLY_FLAG {
            flags += 1;
        } else if is_plain_value(w) {
            values += 1;
        } else {
            return false;
        }
    }
    flags <= 1 && values == usize::from(takes_value)
}

/// An address, network, domain or hash: nothing a shell expands, no option,
/// no URL (a link to click, and `explain` needs only its host).
fn is_plain_value(w: &str) -> bool {
    !w.is_empty()
        && w.len() <= 253
        && !w.starts_with('-')
        && !w.contains("://")
        && w.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b':' | b'-' | b'_' | b'/'))
}

/// Whether a line (not a whole read-only command) holds a command to type.
fn is_command(body: &str) -> bool {
    let lower = body.to_ascii_lowercase();
    if COMMAND_MARKS.iter().any(|m| lower.contains(m)) || body.trim_start().starts_with("$ ") {
        return true;
    }
    // Shell separators split words too: `status;reboot` is two. Not `<` and
    // `>`: markup is text here (`</b>` is no path), redirections are marks.
    let words: Vec<&str> = body
        .split(|c: char| c.is_whitespace() || matches!(c, ';' | '&'))
        .map(strip_punctuation)
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().enumerate().any(|(i, w)| {
        let next = words.get(i + 1).copied().unwrap_or("");
        let ours = w.eq_ignore_ascii_case("homewarden") || w.ends_with("/homewarden");
        // Our own name before a subcommand or an option, or after "run".
        let ours_run = ours
            && (COMMANDS.contains(&next.to_ascii_lowercase().as_str())
                || is_option(next)
                || (i > 0 && RUN_VERBS.contains(&words[i - 1].to_ascii_lowercase().as_str())));
        let program = PROGRAMS.contains(w)
            && (i == 0 || RUN_VERBS.contains(&words[i - 1].to_ascii_lowercase().as_str()));
        ours_run || program || is_path(w) || is_option(w)
    })
}

/// A word with the quotes and punctuation around it taken off.
fn strip_punctuation(w: &str) -> &str {
    w.trim_matches(|c: char| {
        matches!(
            c,
            '`' | '\'' | '"' | '(' | ')' | '[' | ']' | '{' | '}' | ',' | ';' | ':' | '!' | '?'
        )
    })
    .trim_end_matches('.')
}

/// `/etc/x`, `~/x`, `./x`, `../x`: a file to touch, not a word.
fn is_path(w: &str) -> bool {
    let rest = ["/", "~/", "./", "../"]
        .iter()
        .find_map(|p| w.strip_prefix(p));
    rest.is_some_and(|r| r.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '.'))
}

/// `-f`, `--force`: an option of a command.
fn is_option(w: &str) -> bool {
    let rest = w.strip_prefix("--").or_else(|| w.strip_prefix('-'));
    rest.is_some_and(|r| {
        r.starts_with(|c: char| c.is_ascii_alphabetic())
            && r.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'='))
    })
}

/// Whether a line tells the owner to lift a block or a quarantine. A negated
/// word ("do not allow") tells the opposite and stays.
fn lifts_protection(body: &str) -> bool {
    let lower = body.to_lowercase().replace('’', "'");
    if LIFT_PHRASES.iter().any(|p| lower.contains(p)) {
        return true;
    }
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\''))
        .filter(|w| !w.is_empty())
        .collect();
    words.iter().enumerate().any(|(i, w)| {
        let before = i.checked_sub(1).map_or("", |b| words[b]);
        let after = words.get(i + 1).copied().unwrap_or("");
        let negated = matches!(before, "not" | "never" | "don't" | "dont" | "no");
        let noun = w.starts_with("releas")
            && (RELEASE_NOUN_BEFORE.contains(&before) || matches!(after, "notes" | "note"));
        LIFT_WORDS.contains(w) && !negated && !noun
    })
}

/// One word of prose: a link goes unless trusted, a domain is defanged.
fn inert_word(word: &str) -> String {
    match without_link(word) {
        Some(kept) => kept,
        None => defang(word),
    }
}

/// [`LINK_REMOVED`] in place of a link to an untrusted host, the word itself
/// for a trusted one; `None` when the word holds no link.
fn without_link(word: &str) -> Option<String> {
    let lower = word.to_ascii_lowercase();
    // Any scheme (`hxxp://`, `smb://`), not only the web's: its letters start the link.
    let scheme = lower.find("://").map(|at| {
        lower[..at]
            .char_indices()
            .rev()
            .find(|(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')))
            .map_or(0, |(i, c)| i + c.len_utf8())
    });
    let start = scheme.into_iter().chain(lower.find("www.")).min()?;
    let link = &lower[start..];
    let host = link
        .split_once("://")
        .map_or(link, |(_, rest)| rest)
        .split(['/', '?', '#', ':'])
        .next()
        .unwrap_or("")
        .trim_end_matches(['.', ',', ')', ';']);
    if trusted(host) && !host.contains('@') {
        Some(word.to_string())
    } else {
        Some(format!("{}{LINK_REMOVED}", &word[..start]))
    }
}

/// Whether `host` is one of [`TRUSTED_LINK_HOSTS`] or under one.
fn trusted(host: &str) -> bool {
    TRUSTED_LINK_HOSTS
        .iter()
        .any(|t| host == *t || host.ends_with(&format!(".{t}")))
}

/// Writes each domain name in `word` as `evil[.]example`, which no mail
/// client makes a link and a reader still reads; trusted hosts stay as they
/// are, as their links do. Addresses, versions and `e.g.` are no names.
pub fn defang(word: &str) -> String {
    let mut out = String::with_capacity(word.len() + 8);
    let mut run = String::new();
    let flush = |run: &mut String, out: &mut String| {
        // A dot or dash at the end closes a sentence or a clause, not the name.
        let name = run.trim_end_matches(['.', '-']);
        if is_domain_like(name) && !trusted(&name.to_lowercase()) {
            out.push_str(&name.replace('.', "[.]"));
            out.push_str(&run[name.len()..]);
        } else {
            out.push_str(run);
        }
        run.clear();
    };
    for c in word.chars() {
        if c.is_alphanumeric() || c == '.' || c == '-' {
            run.push(c);
        } else {
            flush(&mut run, &mut out);
            out.push(c);
        }
    }
    flush(&mut run, &mut out);
    out
}

/// Two or more labels, the last of them letters (a top-level domain) or punycode.
fn is_domain_like(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    let Some(tld) = labels.last() else {
        return false;
    };
    labels.len() >= 2
        && labels.iter().all(|l| !l.is_empty())
        && ((tld.chars().count() >= 2 && tld.chars().all(char::is_alphabetic))
            || tld.to_ascii_lowercase().starts_with("xn--"))
}

#[cfg(test)]
mod tests;
