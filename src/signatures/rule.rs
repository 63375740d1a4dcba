//! One Suricata rule as a ruleset ships it, read far enough to decide on it:
//! the action, whether it is enabled, sid and rev, the message, the
//! classtype and ET's `metadata` (`signature_severity`, `performance_impact`,
//! `deployment`, …). A ruleset is text from the internet: lines are bounded,
//! and anything that does not parse is skipped and counted, never guessed.

use std::collections::BTreeMap;

/// The longest rule line read (ET Open's longest are a few KiB).
pub const MAX_LINE: usize = 64 * 1024;

/// What a rule does when it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Action {
    /// Raise an alert.
    Alert,
    /// Drop the packet (and the flow), and alert.
    Drop,
    /// Send a reset / ICMP unreachable, and drop.
    Reject,
    /// Let the packet through, skipping the rules after it.
    Pass,
}

impl Action {
    fn parse(word: &str) -> Option<Action> {
        match word {
            "alert" => Some(Action::Alert),
            "drop" => Some(Action::Drop),
            "reject" | "rejectsrc" | "rejectdst" | "rejectboth" => Some(Action::Reject),
            "pass" => Some(Action::Pass),
            _ => None,
        }
    }

    /// The word a rule begins with.
    pub fn word(self) -> &'static str {
        match self {
            Action::Alert => "alert",
            Action::Drop => "drop",
            Action::Reject => "reject",
            Action::Pass => "pass",
        }
    }
}

/// A rule, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rule {
    /// Shipped enabled (not commented out).
    pub enabled: bool,
    /// Its action as shipped.
    pub action: Action,
    /// Signature id.
    pub sid: u64,
    /// Revision.
    pub rev: u64,
    /// The message (`ET MALWARE …`), unescaped.
    pub msg: String,
    /// `classtype`, if any.
    pub classtype: Option<String>,
    /// ET's metadata: key → values, keys and values as written.
    pub metadata: BTreeMap<String, Vec<String>>,
    /// The rule text, without the leading `#` of a disabled rule.
    pub text: String,
}

impl Rule {
    /// The first value of a metadata key.
    pub fn meta(&self, key: &str) -> Option<&str> {
        self.metadata.get(key)?.first().map(String::as_str)
    }

    /// The rule text with `action` in place of the shipped one.
    pub fn with_action(&self, action: Action) -> String {
        let rest = self
            .text
            .split_once(char::is_whitespace)
            .map_or("", |(_, r)| r);
        format!("{} {rest}", action.word())
    }

    /// The rule with `action`, matching no traffic from or to `except` (the
    /// owner lifted it for a device or a destination): each side of the
    /// header loses those networks. `None` when the header is not the usual
    /// `action proto src sport dir dst dport`, so it cannot be cut safely.
    pub fn with_action_except(&self, action: Action, except: &[ipnet::IpNet]) -> Option<String> {
        if except.is_empty() {
            return Some(self.with_action(action));
        }
        let open = self.text.find('(')?;
        let (header, body) = self.text.split_at(open);
        let words: Vec<&str> = header.split_whitespace().collect();
        let [_, proto, src, sport, dir, dst, dport] = words[..] else {
            return None;
        };
        if !matches!(dir, "->" | "<>") {
            return None;
        }
        let nots: Vec<String> = except.iter().map(|n| format!("!{n}")).collect();
        let cut = |side: &str| match side {
            "any" => format!("[{}]", nots.join(",")),
            side => format!("[{side},{}]", nots.join(",")),
        };
        Some(format!(
            "{} {proto} {} {sport} {dir} {} {dport} {body}",
            action.word(),
            cut(src),
            cut(dst)
        ))
    }
}

/// Why a line is not a rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Skip {
    /// Blank, or a comment that is not a disabled rule.
    NotARule,
    /// Longer than [`MAX_LINE`].
    TooLong,
    /// Looks like a rule but lacks what every rule has (sid, a closed option list).
    Malformed,
}

/// Reads one line of a `.rules` file.
pub fn parse(line: &str) -> Result<Rule, Skip> {
    if line.len() > MAX_LINE {
        return Err(Skip::TooLong);
    }
    let trimmed = line.trim();
    let (enabled, text) = match trimmed.strip_prefix('#') {
        Some(rest) => (false, rest.trim_start()),
        None => (true, trimmed),
    };
    let Some(action) = text.split_whitespace().next().and_then(Action::parse) else {
        return Err(Skip::NotARule);
    };
    let open = text.find('(').ok_or(if enabled {
        Skip::Malformed
    } else {
        Skip::NotARule
    })?;
    let body = text[open + 1..]
        .trim_end()
        .strip_suffix(')')
        .ok_or(Skip::Malformed)?;
    let mut rule = Rule {
        enabled,
        action,
        sid: 0,
        rev: 0,
        msg: String::new(),
        classtype: None,
        metadata: BTreeMap::new(),
        text: text.to_string(),
    };
    for (key, value) in options(body).ok_or(Skip::Malformed)? {
        match key {
            "sid" => rule.sid = value.parse().map_err(|_| Skip::Malformed)?,
            "rev" => rule.rev = value.parse().unwrap_or(0),
            "msg" => rule.msg = unquote(value),
            "classtype" => rule.classtype = Some(value.to_string()),
            "metadata" => {
                for pair in value.split(',') {
                    let mut words = pair.split_whitespace();
                    if let (Some(k), Some(v)) = (words.next(), words.next()) {
                        rule.metadata.entry(k.into()).or_default().push(v.into());
                    }
                }
            }
            _ => {}
        }
    }
    if rule.sid == 0 {
        return Err(Skip::Malformed);
    }
    Ok(rule)
}

/// The `key:value;` options of a rule body, honouring quotes and `\` escapes.
/// `None` if a quote is left open.
fn options(body: &str) -> Option<Vec<(&str, &str)>> {
    let mut out = Vec::new();
    let (mut start, mut quoted, mut escaped) = (0, false, false);
    for (i, c) in body.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            '"' => quoted = !quoted,
            ';' if !quoted => {
                let opt = body[start..i].trim();
                if !opt.is_empty() {
                    let (k, v) = opt.split_once(':').unwrap_or((opt, ""));
                    out.push((k.trim(), v.trim()));
                }
                start = i + 1;
            }
            _ => {}
        }
    }
    (!quoted).then_some(out)
}

/// A quoted option value without its quotes and escapes.
fn unquote(v: &str) -> String {
    let inner = v
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or(v);
    let mut out = String::with_capacity(inner.len());
    let mut chars = inner.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out.extend(chars.next()),
            c => out.push(c),
        }
    }
    out
}

/// The rules of a file's text, one a line: a line ending in `\` goes on in
/// the next (Suricata's own event rules are written so).
pub fn lines(text: &str) -> impl Iterator<Item = String> + '_ {
    let mut raw = text.lines();
    std::iter::from_fn(move || {
        let mut line = raw.next()?.to_string();
        while line.ends_with('\\') && line.len() <= MAX_LINE {
            line.pop();
            match raw.next() {
                Some(next) => line.push_str(next.trim_start()),
                None => break,
            }
        }
        Some(line)
    })
}

/// The category of a rules file in ET's layout: `emerging-malware.rules` →
/// `malware`; the IP-reputation files keep their names (`botcc`, `drop`…).
pub fn category(file_name: &str) -> Option<&str> {
    let stem = file_name.strip_suffix(".rules")?;
    Some(stem.strip_prefix("emerging-").unwrap_or(stem))
}

#[cfg(test)]
mod tests {
    use super::*;

    const ET: &str = r#"alert http $HOME_NET any -> $EXTERNAL_NET any (msg:"ET MALWARE Win32/Foo CnC Checkin \"x\"; y"; flow:established,to_server; http.method; content:"POST"; http.uri; content:"/gate.php"; reference:url,example.com/a; classtype:trojan-activity; sid:2030000; rev:3; metadata:affected_product Windows_XP_Vista_7_8_10_Server_32_64_Bit, attack_target Client_Endpoint, created_at 2020_04_22, deployment Perimeter, former_category MALWARE, signature_severity Major, updated_at 2021_01_02;)"#;

    #[test]
    fn an_et_rule_gives_its_sid_message_class_and_metadata() {
        let r = parse(ET).unwrap();
        assert!(r.enabled);
        assert_eq!((r.action, r.sid, r.rev), (Action::Alert, 2_030_000, 3));
        assert_eq!(r.msg, "ET MALWARE Win32/Foo CnC Checkin \"x\"; y");
        assert_eq!(r.classtype.as_deref(), Some("trojan-activity"));
        assert_eq!(r.meta("signature_severity"), Some("Major"));
        assert_eq!(r.meta("deployment"), Some("Perimeter"));
        assert_eq!(r.metadata["attack_target"], ["Client_Endpoint"]);
        assert!(r
            .with_action(Action::Drop)
            .starts_with("drop http $HOME_NET any"));
        assert!(r
            .with_action(Action::Drop)
            .ends_with("updated_at 2021_01_02;)"));
    }

    #[test]
    fn a_commented_rule_is_a_disabled_rule_and_a_comment_is_not_a_rule() {
        let r = parse(&format!("# {ET}")).unwrap();
        assert!(!r.enabled && r.sid == 2_030_000);
        assert!(!r.text.starts_with('#'));
        assert_eq!(
            parse("#alert tcp any any -> any any (msg:\"x\"; sid:7;)")
                .unwrap()
                .sid,
            7
        );
        for line in [
            "",
            "   ",
            "# Emerging Threats ruleset",
            "# alert: this is prose",
            "#",
        ] {
            assert_eq!(parse(line), Err(Skip::NotARule), "{line:?}");
        }
    }

    #[test]
    fn what_is_not_a_whole_rule_is_skipped_not_guessed() {
        for line in [
            "alert tcp any any -> any any (msg:\"no sid\";)",
            "alert tcp any any -> any any (msg:\"open quote; sid:1;)",
            "alert tcp any any -> any any (msg:\"x\"; sid:1;",
            "alert tcp any any -> any any msg sid 1",
            "alert tcp any any -> any any (msg:\"x\"; sid:one;)",
        ] {
            assert_eq!(parse(line), Err(Skip::Malformed), "{line}");
        }
        let long = format!(
            "alert tcp any any -> any any (msg:\"{}\"; sid:1;)",
            "a".repeat(MAX_LINE)
        );
        assert_eq!(parse(&long), Err(Skip::TooLong));
    }

    #[test]
    fn a_rule_written_over_several_lines_is_one_rule() {
        let text = "alert dnp3 any any -> any any (msg:\"SURICATA DNP3 flood\"; \\\n  app-layer-event:dnp3.flooded; \\\n  sid:2270000; rev:2;)\nalert tcp any any -> any any (msg:\"x\"; sid:7;)\n";
        let rules: Vec<Rule> = lines(text).map(|l| parse(&l).unwrap()).collect();
        assert_eq!(rules.len(), 2);
        assert_eq!(
            (rules[0].sid, rules[0].msg.as_str()),
            (2_270_000, "SURICATA DNP3 flood")
        );
        assert!(
            rules[0]
                .text
                .contains("app-layer-event:dnp3.flooded; sid:2270000;"),
            "{}",
            rules[0].text
        );
        // A file that ends inside a continued line still yields what it has.
        assert_eq!(lines("alert tcp \\").count(), 1);
    }

    #[test]
    fn files_in_ets_layout_name_their_category() {
        assert_eq!(category("emerging-malware.rules"), Some("malware"));
        assert_eq!(
            category("emerging-web_specific_apps.rules"),
            Some("web_specific_apps")
        );
        assert_eq!(category("botcc.rules"), Some("botcc"));
        assert_eq!(category("classification.config"), None);
    }
}
