//! Plain lists as their publishers write them: one value per line, columns
//! split by tabs or spaces (ipsum, Spamhaus DROP), CSV, hosts files; comments
//! after `#`, `;` and `//`.
//!
//! A pull whose content is not a list (an HTML login page answered with 200,
//! a gzip file served as text, mostly refused lines) fails: the last good set
//! stays in force instead of being replaced by what is left.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;

use super::fetch::{Fetch, Location, Read};
use super::ioc::ParseError;
use super::{Change, Collector, Cursor, IntelError, PullStats, Pulled};

/// How a list's lines are laid out.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Detected from the first line that holds data.
    #[default]
    Auto,
    /// One value per line; anything else on a line makes it refused.
    Plain,
    /// Columns separated by tabs or runs of spaces.
    Columns,
    /// Comma-separated values, optionally quoted, optionally under a header.
    Csv,
    /// A hosts file: a sinkhole address, then one or more names.
    Hosts,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::Auto => "auto",
            Format::Plain => "plain",
            Format::Columns => "columns",
            Format::Csv => "csv",
            Format::Hosts => "hosts",
        })
    }
}

impl std::str::FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(match s {
            "auto" => Format::Auto,
            "plain" => Format::Plain,
            "columns" => Format::Columns,
            "csv" => Format::Csv,
            "hosts" => Format::Hosts,
            other => {
                return Err(format!(
                    "{other:?} is not a list format (auto, plain, columns, csv, hosts)"
                ))
            }
        })
    }
}

/// Which column holds the value: a 0-based number, or a header's name.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum Column {
    /// 0-based position.
    Index(usize),
    /// The name in the first line (case-insensitive).
    Name(String),
}

impl std::str::FromStr for Column {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(s.parse()
            .map_or_else(|_| Column::Name(s.to_string()), Column::Index))
    }
}

impl Default for Column {
    fn default() -> Self {
        Column::Index(0)
    }
}

/// How to read one list: its format, its column and how many refused lines
/// it may hold before the pull counts as failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Layout {
    /// The format (or `auto`).
    pub format: Format,
    /// The value's column (csv and columns formats).
    pub column: Column,
    /// More refused lines than this percentage of the data lines fails the pull (100: never).
    pub max_refused: u8,
}

/// Refused values a list may hold, in percent, unless its source says otherwise.
pub const DEFAULT_MAX_REFUSED: u8 = 50;

impl Default for Layout {
    fn default() -> Self {
        Layout {
            format: Format::Auto,
            column: Column::default(),
            max_refused: DEFAULT_MAX_REFUSED,
        }
    }
}

/// Pulls a list and replaces the source's set with it, unless `cursor` (the
/// last pull taken) shows the list as it was then.
pub async fn pull(
    name: &str,
    location: &Location,
    layout: &Layout,
    fetch: &Fetch,
    cursor: &Cursor,
) -> Result<Pulled, IntelError> {
    let mut c = Collector::new(name);
    let mut p = Parser::new(layout);
    // The same list read another way is another set.
    let of = crate::fnv::Fnv1a::of(format_args!("{location}\n{layout:?}"));
    let read = location
        .for_each_line_since(fetch, of, cursor.list.as_ref(), |line| p.line(line, &mut c))
        .await?;
    let validators = match read {
        Read::Unchanged => {
            return Ok(Pulled {
                change: Change::Unchanged,
                stats: PullStats::default(),
                cursor: cursor.clone(),
            })
        }
        Read::Read(v) => v,
    };
    p.finish(&mut c).map_err(|message| IntelError::Unusable {
        url: location.to_string(),
        message,
    })?;
    Ok(Pulled {
        change: Change::Replace(c.set),
        stats: c.stats,
        cursor: Cursor {
            list: validators,
            ..Cursor::default()
        },
    })
}

/// Parses list text into a collector; `Err` says why the content is not a usable list.
pub fn parse_into(text: &str, layout: &Layout, c: &mut Collector<'_>) -> Result<(), String> {
    let mut p = Parser::new(layout);
    for line in text.lines() {
        p.line(line, c);
    }
    p.finish(c)
}

/// Reads a list line by line, keeping what it learnt of the layout.
struct Parser<'l> {
    layout: &'l Layout,
    /// The format in use, once known (never `Auto`).
    format: Option<Format>,
    /// The value's column, once known (a named column is known after the header).
    column: Option<usize>,
    /// Lines that held data (not blank, not comments).
    data_lines: u64,
    /// Why the content is not a list, if that is already clear.
    not_a_list: Option<String>,
}

/// Data lines looked at for signs of HTML.
const HTML_PROBE_LINES: u64 = 20;

impl<'l> Parser<'l> {
    fn new(layout: &'l Layout) -> Self {
        Parser {
            layout,
            format: (layout.format != Format::Auto).then_some(layout.format),
            column: match layout.column {
                Column::Index(i) => Some(i),
                Column::Name(_) => None,
            },
            data_lines: 0,
            not_a_list: None,
        }
    }

    fn line(&mut self, raw: &str, c: &mut Collector<'_>) {
        if self.not_a_list.is_some() {
            return;
        }
        if self.data_lines == 0 && raw.starts_with('\u{1f}') {
            // 0x1f 0x8b: the gzip magic, read as text.
            self.not_a_list =
                Some("gzip-compressed data: use the list's uncompressed address".into());
            return;
        }
        // A UTF-8 byte-order mark belongs to the file, not to its first value.
        let raw = raw.strip_prefix('\u{feff}').unwrap_or(raw);
        let data = strip_comment(raw);
        if data.is_empty() {
            return;
        }
        self.data_lines += 1;
        if self.data_lines <= HTML_PROBE_LINES && looks_like_html(data) {
            self.not_a_list = Some("an HTML page, not a list (a login or error page?)".into());
            return;
        }
        let format = *self.format.get_or_insert_with(|| detect(data));
        if format == Format::Plain {
            c.value(None, data, None, None);
            return;
        }
        if format == Format::Hosts {
            hosts_line(data, c);
            return;
        }
        // CSV fields may hold `#` or `;` (a description): only whole-line
        // comments are comments there.
        let line = if format == Format::Csv {
            raw.trim()
        } else {
            data
        };
        let fields: Vec<Cow<'_, str>> = if format == Format::Csv {
            csv_fields(line)
        } else {
            line.split_whitespace().map(Cow::Borrowed).collect()
        };
        let Some(column) = self.column else {
            self.header(&fields);
            return;
        };
        match fields.get(column) {
            Some(v) if self.data_lines == 1 && format == Format::Csv && is_header_word(v) => {
                c.stats.ignored += 1;
            }
            Some(v) => c.value(None, v, None, None),
            None => {
                c.stats.seen += 1;
                c.stats.reject(c.source, &ParseError::MissingColumn(column));
            }
        }
    }

    /// Finds a named column in the first data line.
    fn header(&mut self, fields: &[Cow<'_, str>]) {
        let Column::Name(name) = &self.layout.column else {
            return;
        };
        match fields
            .iter()
            .position(|f| f.trim().eq_ignore_ascii_case(name))
        {
            Some(i) => self.column = Some(i),
            None => {
                let shown: Vec<&str> = fields.iter().take(12).map(|f| f.as_ref()).collect();
                self.not_a_list = Some(format!(
                    "no column {name:?} in the first line (it has: {})",
                    clip(&shown.join(", "), 200)
                ));
            }
        }
    }

    /// Records the format used and decides whether the content was a list.
    fn finish(self, c: &mut Collector<'_>) -> Result<(), String> {
        if let Some(why) = self.not_a_list {
            return Err(why);
        }
        if let Some(f) = self.format {
            c.stats.format = Some(if self.layout.format == Format::Auto {
                format!("{f} (detected)")
            } else {
                f.to_string()
            });
        }
        let refused: u64 = c.stats.rejected.values().sum();
        let counted = refused + c.stats.accepted;
        if refused > 0 && refused * 100 > u64::from(self.layout.max_refused) * counted {
            let mut reasons: Vec<(&String, &u64)> = c.stats.rejected.iter().collect();
            reasons.sort_by(|a, b| b.1.cmp(a.1));
            let reasons: Vec<String> = reasons
                .iter()
                .take(3)
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            return Err(format!(
                "{refused} of {counted} values refused ({}), more than the {}% allowed (max_refused); \
                 is this the right address and format?",
                reasons.join(", "),
                self.layout.max_refused
            ));
        }
        Ok(())
    }
}

/// The line without its comment: whole-line comments start with `#`, `;` or
/// `//`; a trailing one starts with them after a space or tab (so URLs keep
/// their `#fragment` and `://`).
fn strip_comment(line: &str) -> &str {
    let t = line.trim();
    if t.starts_with('#') || t.starts_with(';') || t.starts_with("//") {
        return "";
    }
    let b = t.as_bytes();
    for i in 1..b.len() {
        let after_space = b[i - 1] == b' ' || b[i - 1] == b'\t';
        let starts = b[i] == b'#' || b[i] == b';' || (b[i] == b'/' && b.get(i + 1) == Some(&b'/'));
        if after_space && starts {
            return t[..i].trim_end();
        }
    }
    t
}

/// Guesses the format from the first data line.
fn detect(data: &str) -> Format {
    if data.contains(',') {
        return Format::Csv;
    }
    let mut words = data.split_whitespace();
    match (words.next(), words.next()) {
        (Some(first), Some(_)) if is_sinkhole(first) => Format::Hosts,
        _ => Format::Columns,
    }
}

/// Addresses a hosts-file blocklist maps its names to.
fn is_sinkhole(addr: &str) -> bool {
    matches!(
        addr,
        "0.0.0.0" | "127.0.0.1" | "::" | "::1" | "0:0:0:0:0:0:0:0" | "0:0:0:0:0:0:0:1"
    )
}

/// One hosts-file line: names mapped to a sinkhole are listed; the file's own
/// housekeeping (localhost, broadcasthost, the ip6- names, other addresses)
/// is what every hosts file starts with, never something to block.
fn hosts_line(data: &str, c: &mut Collector<'_>) {
    let mut words = data.split_whitespace();
    let Some(first) = words.next() else {
        return;
    };
    let names: Vec<&str> = words.collect();
    if names.is_empty() {
        // A bare name among hosts lines: what the publisher meant is plain.
        c.value(None, first, None, None);
        return;
    }
    if !is_sinkhole(first) {
        c.stats.ignored += 1;
        return;
    }
    for name in names {
        if is_local_name(name) {
            c.stats.ignored += 1;
        } else {
            c.value(None, name, None, None);
        }
    }
}

/// Names of the host itself that hosts files carry in their header.
fn is_local_name(name: &str) -> bool {
    let n = name.trim_end_matches('.').to_ascii_lowercase();
    matches!(
        n.as_str(),
        "localhost" | "localhost.localdomain" | "localdomain" | "local" | "broadcasthost"
    ) || n.starts_with("ip6-")
        || n.ends_with(".localhost")
        || n.parse::<std::net::IpAddr>().is_ok()
}

/// A CSV header's word ("ip", "first_seen"): no dot or colon, so no value.
fn is_header_word(v: &str) -> bool {
    let v = v.trim();
    !v.is_empty()
        && !v.contains(['.', ':'])
        && v.chars()
            .all(|ch| ch.is_alphanumeric() || matches!(ch, '_' | '-' | ' '))
}

/// Looks like markup rather than data.
fn looks_like_html(data: &str) -> bool {
    let d = data.trim_start().as_bytes();
    let starts = |tag: &[u8]| d.len() >= tag.len() && d[..tag.len()].eq_ignore_ascii_case(tag);
    starts(b"<!doctype")
        || starts(b"<html")
        || starts(b"<head")
        || starts(b"<body")
        || starts(b"<?xml")
}

/// Splits a CSV line on commas outside double quotes; `""` inside quotes is a quote.
fn csv_fields(line: &str) -> Vec<Cow<'_, str>> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut quoted = false;
    for (i, b) in line.bytes().enumerate() {
        match b {
            b'"' => quoted = !quoted,
            b',' if !quoted => {
                out.push(unquote(&line[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(unquote(&line[start..]));
    out
}

fn unquote(field: &str) -> Cow<'_, str> {
    let f = field.trim();
    match f.strip_prefix('"').and_then(|f| f.strip_suffix('"')) {
        Some(inner) if inner.contains("\"\"") => Cow::Owned(inner.replace("\"\"", "\"")),
        Some(inner) => Cow::Borrowed(inner),
        None => Cow::Borrowed(f),
    }
}

/// At most `max` characters, for messages.
fn clip(s: &str, max: usize) -> String {
    let mut out: String = s
        .chars()
        .take(max)
        .map(|ch| if ch.is_control() { '?' } else { ch })
        .collect();
    if s.chars().count() > max {
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests;
