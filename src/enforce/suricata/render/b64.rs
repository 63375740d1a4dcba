//! Names as Suricata's string datasets hold them: base64, in files sorted as
//! text. A million names are sorted by their base64 form without writing
//! it out (one string each took about 60 MB): [`chars`] yields it lazily,
//! and a comparison stops at the first character that differs.

use std::cmp::Ordering;

use base64::Engine as _;

use crate::intel::ioc::Domain;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// The base64 form Suricata's string datasets use, in files and on the socket.
pub fn b64(s: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(s.as_bytes())
}

/// The characters of [`b64`]`(s)`, one at a time.
pub fn chars(s: &str) -> impl Iterator<Item = u8> + '_ {
    s.as_bytes().chunks(3).flat_map(|c| {
        let byte = |i: usize| u32::from(c.get(i).copied().unwrap_or(0));
        let n = byte(0) << 16 | byte(1) << 8 | byte(2);
        let sextet = |shift: u32| ALPHABET[(n >> shift & 63) as usize];
        [
            sextet(18),
            sextet(12),
            if c.len() > 1 { sextet(6) } else { b'=' },
            if c.len() > 2 { sextet(0) } else { b'=' },
        ]
    })
}

/// The order of two names' base64 forms as text.
pub fn cmp(a: &str, b: &str) -> Ordering {
    chars(a).cmp(chars(b))
}

/// Names of a slice in the order of their base64 forms, each once: four
/// bytes a name (a position), not a pointer's eight.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sorted<'a> {
    all: &'a [Domain],
    order: Vec<u32>,
}

impl<'a> Sorted<'a> {
    /// Number of names.
    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The `i`-th name in base64 order.
    pub fn get(&self, i: usize) -> &'a Domain {
        &self.all[self.order[i] as usize]
    }
}

/// The names of `all` that `pick` keeps, in the order of their base64 forms, each once.
pub fn sorted<'a>(all: &'a [Domain], pick: impl Fn(&&Domain) -> bool) -> Sorted<'a> {
    let mut order: Vec<u32> = (0..all.len())
        .filter(|&i| pick(&&all[i]))
        .filter_map(|i| u32::try_from(i).ok())
        .collect();
    let name = |i: &u32| all[*i as usize].as_str();
    order.sort_unstable_by(|a, b| cmp(name(a), name(b)));
    order.dedup_by(|a, b| name(a) == name(b));
    Sorted { all, order }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        /// Lazily or at once, the same text; so the same order.
        #[test]
        fn chars_are_the_encoding_and_cmp_its_order(a in ".{0,40}", b in ".{0,40}") {
            prop_assert_eq!(chars(&a).collect::<Vec<u8>>(), b64(&a).into_bytes());
            prop_assert_eq!(cmp(&a, &b), b64(&a).cmp(&b64(&b)));
        }
    }

    #[test]
    fn sorted_keeps_the_picked_names_once_in_base64_order() {
        let all: Vec<Domain> = [
            "b.example",
            "a.example",
            "b.example",
            "skip.example",
            "c.example",
        ]
        .iter()
        .map(|n| Domain::parse(n).unwrap())
        .collect();
        let s = sorted(&all, |d| d.as_str() != "skip.example");
        let lines: Vec<String> = (0..s.len()).map(|i| b64(s.get(i).as_str())).collect();
        let mut want: Vec<String> = ["a.example", "b.example", "c.example"]
            .iter()
            .map(|n| b64(n))
            .collect();
        want.sort();
        assert_eq!(lines, want);
        assert!(sorted(&all, |_| false).is_empty());
    }

    #[test]
    fn padding_sorts_as_text_does() {
        // "=" (61) sorts after the digits and before the letters.
        let names = ["a.example", "ab.example", "abc.example", "z9", "z"];
        let mut by_text: Vec<String> = names.iter().map(|n| b64(n)).collect();
        by_text.sort();
        let mut lazily: Vec<&str> = names.to_vec();
        lazily.sort_by(|a, b| cmp(a, b));
        let lazily: Vec<String> = lazily.iter().map(|n| b64(n)).collect();
        assert_eq!(lazily, by_text);
    }
}
