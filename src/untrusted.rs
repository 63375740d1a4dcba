//! Text someone else wrote (feeds, MISP, the network, an LLM), made fit to
//! show to a person: the one place that decides which characters go.

/// Bidirectional overrides can make text read differently from what it is
/// (a name ending in U+202E `exe.txt` reads as `txt.exe`).
pub fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}' | '\u{061c}')
}

/// At most `max` characters of `s`, without control characters (terminal
/// escape sequences start with one) or bidirectional overrides.
pub fn inert(s: &str, max: usize) -> String {
    s.chars()
        .filter(|c| !c.is_control() && !is_bidi_control(*c))
        .take(max)
        .collect()
}

/// Like [`inert`], but line breaks and tabs become spaces, so words stay
/// apart: for event titles and tags shown on one line.
pub fn clean_text(s: &str, max: usize) -> String {
    s.chars()
        .filter_map(|c| match c {
            '\t' | '\n' | '\r' => Some(' '),
            c if c.is_control() || is_bidi_control(c) => None,
            c => Some(c),
        })
        .take(max)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_overrides_and_length_go_and_line_breaks_become_spaces() {
        let hostile = "\u{1b}[31mred\u{202e}txt.exe\nnext\tcol";
        assert_eq!(inert(hostile, 100), "[31mredtxt.exenextcol");
        assert_eq!(clean_text(hostile, 100), "[31mredtxt.exe next col");
        assert_eq!(inert("abcdef", 3), "abc");
        assert_eq!(clean_text("abcdef", 3), "abc");
        assert!(is_bidi_control('\u{2066}') && !is_bidi_control('a'));
    }
}
