//! Anchors and aliases let a few hundred kilobytes of YAML stand for gigabytes
//! (one big list aliased many times); the parser expands every alias while it
//! builds values. Owner-written files (the config, the boot partition's copy)
//! are walked once without keeping anything, and refused when the expansion
//! passes a budget, before anything is built from them.

use serde::de::{
    self, DeserializeSeed, Deserializer, EnumAccess, MapAccess, SeqAccess, VariantAccess, Visitor,
};
use std::cell::Cell;
use std::fmt;

/// What every node costs besides its text: a 1 MB file of short list items
/// is still refused when it is aliased into millions of them.
const NODE: usize = 16;

/// Budget for a file of `len` bytes: generous for a file written out in full
/// (anchors used only to share a block or two), far below what hurts a Pi.
pub fn budget(len: usize) -> usize {
    (len.saturating_mul(8)).saturating_add(1 << 20)
}

/// The message of [`check`]'s error when the expansion passes the budget.
pub const TOO_BIG: &str =
    "anchors and aliases (&name, *name) expand this file past what a config can need; write the values out";

/// Walks `text` as YAML and fails with [`TOO_BIG`] when its expanded size
/// passes `limit`, or with the parser's own words (one line) when the walk
/// stops for any other reason: a file the walk could not finish is a file
/// whose expansion was not measured.
pub fn check(text: &str, limit: usize) -> Result<(), String> {
    let left = Cell::new(limit);
    match Walk(&left).deserialize(serde_yaml_ng::Deserializer::from_str(text)) {
        Ok(()) => Ok(()),
        Err(e) => {
            let message = e.to_string();
            if message.contains(TOO_BIG) {
                Err(TOO_BIG.into())
            } else {
                Err(message.split_whitespace().collect::<Vec<_>>().join(" "))
            }
        }
    }
}

/// Spends the budget in `.0` on every node it is led through.
#[derive(Clone, Copy)]
struct Walk<'a>(&'a Cell<usize>);

impl Walk<'_> {
    fn spend<E: de::Error>(self, n: usize) -> Result<(), E> {
        match self.0.get().checked_sub(n.saturating_add(NODE)) {
            Some(rest) => {
                self.0.set(rest);
                Ok(())
            }
            None => {
                self.0.set(0);
                Err(E::custom(TOO_BIG))
            }
        }
    }
}

impl<'de> DeserializeSeed<'de> for Walk<'_> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for Walk<'_> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("any YAML")
    }
    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_i128<E: de::Error>(self, _: i128) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_u128<E: de::Error>(self, _: u128) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_str<E: de::Error>(self, s: &str) -> Result<(), E> {
        self.spend(s.len())
    }
    fn visit_bytes<E: de::Error>(self, b: &[u8]) -> Result<(), E> {
        self.spend(b.len())
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_none<E: de::Error>(self) -> Result<(), E> {
        self.spend(0)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        self.spend(0)?;
        self.deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        self.spend(0)?;
        while seq.next_element_seed(self)?.is_some() {}
        Ok(())
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        self.spend(0)?;
        while map.next_key_seed(self)?.is_some() {
            map.next_value_seed(self)?;
        }
        Ok(())
    }
    // A tagged node (`!tag value`).
    fn visit_enum<A: EnumAccess<'de>>(self, data: A) -> Result<(), A::Error> {
        let ((), v) = data.variant_seed(self)?;
        v.newtype_variant_seed(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One list of `items` entries aliased `times` times, as the attack has it.
    fn wide(items: usize, times: usize) -> String {
        let list = (0..items)
            .map(|i| i.to_string())
            .collect::<Vec<_>>()
            .join(",");
        let aliases = vec!["*x"; times].join(",");
        format!("a: &x [{list}]\nb: [{aliases}]\n")
    }

    #[test]
    fn a_list_aliased_many_times_is_refused_without_building_it() {
        // The reported file: 200,000 items aliased 150,000 times (30 billion nodes).
        let text = wide(200_000, 150_000);
        assert!(text.len() < 2_000_000);
        assert_eq!(check(&text, budget(text.len())), Err(TOO_BIG.into()));
    }

    #[test]
    fn long_text_aliased_many_times_is_refused() {
        let text = format!(
            "a: &x \"{}\"\nb: [{}]\n",
            "k".repeat(100_000),
            vec!["*x"; 200].join(",")
        );
        assert_eq!(check(&text, budget(text.len())), Err(TOO_BIG.into()));
    }

    #[test]
    fn files_written_out_and_modest_anchors_pass() {
        let plain = "mail: { to: [a@b.example], host: smtp.example }\nsources:\n  - { name: x, type: list, url: \"https://l.example/x\" }\n";
        assert_eq!(check(plain, budget(plain.len())), Ok(()));
        let shared = "base: &b { interval: 1h, timeout: 30s }\nsources:\n  - { name: a, type: list, path: /a, <<: *b }\n  - { name: c, type: list, path: /c, <<: *b }\n";
        assert_eq!(check(shared, budget(shared.len())), Ok(()));
        assert_eq!(check(&wide(100, 20), budget(wide(100, 20).len())), Ok(()));
        // Tags are left to the real parse.
        assert_eq!(check("a: !secret x\n", 1 << 20), Ok(()));
        // Every kind of scalar is walked, however the parser reads it.
        let scalars = "a: [99999999999999999999999, -99999999999999999999999, 1e400, 0x1F, .nan, ~, 'x', !!binary aGk=]\n";
        assert_eq!(check(scalars, 1 << 20), Ok(()));
        for empty in ["", "\n", "# nothing yet\n", "---\n"] {
            assert_eq!(check(empty, 1 << 20), Ok(()), "{empty:?}");
        }
    }

    #[test]
    fn a_walk_that_cannot_finish_fails_closed_in_one_line() {
        let deep = format!("a: {}1{}\n", "[".repeat(200), "]".repeat(200));
        for (text, says) in [
            ("a: [unclosed\n", "line 2"),
            ("a: *nowhere\n", "unknown anchor"),
            (deep.as_str(), "recursion limit exceeded"),
            ("a: 1\n---\nb: 2\n", "more than one document"),
        ] {
            let e = check(text, 1 << 20).unwrap_err();
            assert!(e.contains(says), "{text:.40}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
