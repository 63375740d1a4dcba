//! The layout the README and `src/lib.rs` describe holds: the folders of
//! `src/` (and the small modules beside them) import each other along the
//! data flows only, never in a circle, so each can be read, tested and
//! changed knowing only what lies below it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// The library's top-level modules (a folder or a file under `src/`).
fn modules(src: &Path) -> BTreeSet<String> {
    std::fs::read_dir(src)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .map(|n| n.trim_end_matches(".rs").to_string())
        .filter(|n| !["lib", "main", "cli"].contains(&n.as_str()))
        .collect()
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// The top-level modules a source text names through `crate::`, in both
/// `crate::intel::…` and `use crate::{intel::…, config}` form.
fn named(text: &str, known: &BTreeSet<String>) -> BTreeSet<String> {
    let mut found = BTreeSet::new();
    for (at, _) in text.match_indices("crate::") {
        let rest = &text[at + "crate::".len()..];
        let heads: Vec<&str> = match rest.strip_prefix('{') {
            // Only the group's first level: `{a::{b, c}, d}` names a and d.
            Some(group) => {
                let mut depth = 0;
                let mut start = 0;
                let mut items = Vec::new();
                for (i, ch) in group.char_indices() {
                    match ch {
                        '{' => depth += 1,
                        '}' if depth == 0 => {
                            items.push(&group[start..i]);
                            break;
                        }
                        '}' => depth -= 1,
                        ',' if depth == 0 => {
                            items.push(&group[start..i]);
                            start = i + 1;
                        }
                        _ => {}
                    }
                }
                items
            }
            None => vec![rest],
        };
        for h in heads {
            let name: String = h
                .trim_start()
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect();
            if known.contains(&name) {
                found.insert(name);
            }
        }
    }
    found
}

/// Which top-level module imports which.
fn graph(src: &Path) -> BTreeMap<String, BTreeSet<String>> {
    let known = modules(src);
    let mut g: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for m in &known {
        let mut files = Vec::new();
        let (dir, file) = (src.join(m), src.join(format!("{m}.rs")));
        if dir.is_dir() {
            rust_files(&dir, &mut files);
        }
        if file.is_file() {
            files.push(file);
        }
        let deps = g.entry(m.clone()).or_default();
        for f in files {
            let text = std::fs::read_to_string(&f).unwrap();
            deps.extend(named(&text, &known).into_iter().filter(|d| d != m));
        }
    }
    g
}

/// A circle of imports, if there is one (depth-first search).
fn circle(g: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(i) = path.iter().position(|p| p == n) {
            let mut c = path[i..].to_vec();
            c.push(n.to_string());
            return Some(c);
        }
        if done.contains(n) {
            return None;
        }
        path.push(n.to_string());
        for d in g.get(n).into_iter().flatten() {
            if let Some(c) = visit(d, g, path, done) {
                return Some(c);
            }
        }
        path.pop();
        done.insert(n.to_string());
        None
    }
    let mut done = BTreeSet::new();
    g.keys()
        .find_map(|n| visit(n, g, &mut Vec::new(), &mut done))
}

#[test]
fn the_folders_of_src_import_each_other_without_a_circle() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let g = graph(&src);
    for folder in [
        "intel",
        "enforce",
        "alerts",
        "respond",
        "owner",
        "appliance",
        "daemon",
    ] {
        assert!(g.contains_key(folder), "src/{folder}/ is gone: {g:?}");
    }
    if let Some(c) = circle(&g) {
        panic!("an import circle between folders: {}", c.join(" → "));
    }
    // The flows' direction, as the README's picture draws it.
    let reaches = |a: &str, b: &str| g[a].contains(b);
    assert!(!reaches("intel", "config"), "intel is below the config");
    assert!(!reaches("alerts", "respond") && !reaches("intel", "enforce"));
    assert!(
        !reaches("appliance", "daemon"),
        "the panel knows the agent only through Shown"
    );
}

#[test]
fn the_scanner_sees_both_import_forms_and_only_known_modules() {
    let known: BTreeSet<String> = ["intel", "config", "alerts"].map(String::from).into();
    let text = "use crate::{intel::ioc::{Ioc, Domain}, config};\nlet x = crate::alerts::eve::parse(s);\nuse crate::std_like::X;";
    assert_eq!(
        named(text, &known),
        ["alerts", "config", "intel"].map(String::from).into()
    );
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    assert_eq!(circle(&g), Some(vec!["a".into(), "b".into(), "a".into()]));
    g.insert("b".to_string(), BTreeSet::new());
    assert_eq!(circle(&g), None);
}
