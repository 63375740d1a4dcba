//! What the home owner decides: values lifted from enforcement (`allow`),
//! "why is this blocked?" (`explain`), and new indicators that only observe
//! for a while before they block (`shadow`).

pub mod allow;
pub mod explain;
pub mod shadow;

/// The value a person typed, with the defanging that mails, reports and
/// MISP exports put on indicators taken off (`evil[.]example`,
/// `hxxps://evil(.)example`, `198.51.100[.]7`): copied from homewarden's own
/// mail into `explain` or `allow`, it means the indicator.
pub fn refang(value: &str) -> String {
    let mut v = value.trim().to_string();
    for (from, to) in [
        ("[.]", "."),
        ("(.)", "."),
        ("{.}", "."),
        ("[dot]", "."),
        ("[:]", ":"),
        ("[://]", "://"),
        ("[@]", "@"),
    ] {
        v = v.replace(from, to);
    }
    for scheme in ["hxxps", "hxxp"] {
        // `get`: a name may start with a character of several bytes.
        if v.get(..scheme.len())
            .is_some_and(|p| p.eq_ignore_ascii_case(scheme))
        {
            v = format!("http{}", &v[4..]);
            break;
        }
    }
    v
}

#[cfg(test)]
mod tests {
    use super::refang;

    #[test]
    fn defanged_values_mean_the_indicator() {
        for (typed, meant) in [
            ("evil[.]example", "evil.example"),
            ("c2[.]evil[.]example", "c2.evil.example"),
            ("hxxps://evil(.)example/x", "https://evil.example/x"),
            ("HXXP://evil{.}example", "http://evil.example"),
            ("198.51.100[.]7", "198.51.100.7"),
            ("2001:db8[:]:1", "2001:db8::1"),
            ("  evil.example \n", "evil.example"),
            ("evil.example", "evil.example"),
            ("пример[.]рф", "пример.рф"),
            ("hxxp", "http"),
            (
                "d41d8cd98f00b204e9800998ecf8427e",
                "d41d8cd98f00b204e9800998ecf8427e",
            ),
        ] {
            assert_eq!(refang(typed), meant, "{typed}");
        }
    }
}
