//! The README's legend picture, drawn from the legend function itself so the
//! picture cannot drift from what the LEDs really do.

use std::fmt::Write;

use super::pattern::{lights, Condition, Led};

/// The situations the legend shows, in order.
pub fn situations() -> Vec<(&'static str, Condition)> {
    let ok = Condition {
        protected: true,
        ..Condition::default()
    };
    vec![
        ("Protected, all quiet", ok),
        (
            "Blocking a threat right now",
            Condition {
                blocking_now: true,
                unacked_high: true,
                ..ok
            },
        ),
        (
            "High-severity incident: press the button briefly to acknowledge",
            Condition {
                unacked_high: true,
                ..ok
            },
        ),
        (
            "Needs care: intel stale, MISP or mail out of reach, or a failed self-test",
            Condition {
                intel_stale: true,
                ..ok
            },
        ),
        (
            "Suricata down or bypassed: traffic passes uninspected",
            Condition {
                suricata_down: true,
                ..ok
            },
        ),
        (
            "The agent itself is failing",
            Condition {
                agent_fault: true,
                ..ok
            },
        ),
        (
            "Factory reset in 3 s: release the button to cancel",
            Condition {
                reset_countdown: Some(3),
                ..ok
            },
        ),
    ]
}

/// One LED as an SVG group: a filled circle when lit, a ring when off, dashes for blinking.
fn led(out: &mut String, x: u32, y: u32, colour: &str, l: Led) {
    let (fill, stroke_dash) = match l {
        Led::Off => ("#ffffff", ""),
        Led::On => (colour, ""),
        Led::Heartbeat => (colour, " stroke-dasharray=\"2 6\""),
        Led::Blink { on_ms, .. } if on_ms <= 100 => (colour, " stroke-dasharray=\"2 2\""),
        Led::Blink { .. } => (colour, " stroke-dasharray=\"5 4\""),
    };
    let opacity = if matches!(l, Led::Blink { .. } | Led::Heartbeat) {
        "0.55"
    } else {
        "1"
    };
    let _ = write!(
        out,
        r##"<circle cx="{x}" cy="{y}" r="11" fill="{fill}" fill-opacity="{opacity}" stroke="{colour}" stroke-width="3"{stroke_dash}/>"##
    );
}

/// The legend as an SVG document.
pub fn svg() -> String {
    let rows = situations();
    let (row_h, top) = (44u32, 70u32);
    let height = top + row_h * rows.len() as u32 + 20;
    let mut s = String::new();
    let _ = write!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="940" height="{height}" font-family="sans-serif" font-size="15">
<rect width="100%" height="100%" fill="#fbfbf8"/>
<text x="20" y="30" font-size="19" font-weight="bold">homewarden panel legend</text>
<text x="45" y="58" text-anchor="middle">green</text><text x="95" y="58" text-anchor="middle">amber</text><text x="145" y="58" text-anchor="middle">red</text><text x="200" y="58" text-anchor="middle">ACT</text>
"##
    );
    for (i, (label, c)) in rows.iter().enumerate() {
        let y = top + row_h * i as u32 + 10;
        let l = lights(c);
        led(&mut s, 45, y, "#1a9e3a", l.green);
        led(&mut s, 95, y, "#e0a000", l.amber);
        led(&mut s, 145, y, "#d0202a", l.red);
        led(&mut s, 200, y, "#2a7ad0", l.act);
        let detail = format!(
            "green {}, amber {}, red {}, ACT {}",
            l.green.describe(),
            l.amber.describe(),
            l.red.describe(),
            l.act.describe()
        );
        let _ = writeln!(
            s,
            r##"<text x="235" y="{}">{label}</text><text x="235" y="{}" font-size="12" fill="#666">{detail}</text>"##,
            y - 2,
            y + 14
        );
    }
    let _ = write!(
        s,
        r##"<text x="20" y="{}" font-size="12" fill="#666">Filled: on. Ring: off. Pale with dashes: blinking (short dashes: fast). Button: short press acknowledges, 5 s re-syncs intel, 10 s factory reset.</text>
</svg>
"##,
        height - 8
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_situation_is_drawn_and_they_all_differ() {
        let s = svg();
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        let rows = situations();
        assert_eq!(s.matches("<circle").count(), rows.len() * 4);
        let looks: std::collections::HashSet<String> = rows
            .iter()
            .map(|(_, c)| format!("{:?}", lights(c)))
            .collect();
        assert_eq!(
            looks.len(),
            rows.len(),
            "two situations look the same on the panel"
        );
    }

    #[test]
    fn the_picture_in_the_repository_is_current() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/panel-legend.svg");
        let on_disk = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            on_disk == svg(),
            "docs/panel-legend.svg is stale: run `cargo run -- legend > docs/panel-legend.svg`"
        );
    }
}
