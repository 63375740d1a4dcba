//! FNV-1a, 64-bit: a hash that stays the same across builds and runs, for
//! what is saved (the shadow book's keys) or compared later (a rendering's
//! fingerprint). Not for hash tables facing input someone else chose.

/// An FNV-1a hash being fed; also a [`std::fmt::Write`], so a value is
/// hashed as it is formatted, without a string in between.
#[derive(Clone, Copy, Debug)]
pub struct Fnv1a(u64);

impl Default for Fnv1a {
    fn default() -> Self {
        Fnv1a(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv1a {
    /// Feeds bytes.
    pub fn eat(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }

    /// The hash of what was fed.
    pub fn finish(self) -> u64 {
        self.0
    }

    /// The hash of a value's text (its `Display`).
    pub fn of(value: impl std::fmt::Display) -> u64 {
        let mut h = Fnv1a::default();
        let _ = std::fmt::Write::write_fmt(&mut h, format_args!("{value}"));
        h.finish()
    }
}

impl std::fmt::Write for Fnv1a {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.eat(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The published test vectors: what was saved stays readable.
    #[test]
    fn matches_the_reference_vectors() {
        assert_eq!(Fnv1a::of(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(Fnv1a::of("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(Fnv1a::of("foobar"), 0x8594_4171_f739_67e8);
    }
}
