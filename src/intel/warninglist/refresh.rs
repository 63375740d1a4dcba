//! Newer warninglists from upstream, where the Pi has internet: each chosen
//! list is fetched, checked against the copy in use and written atomically
//! beside the agent's state; anything wrong keeps the copy in use.

use std::path::Path;

use super::{read_best, ListFile, SUFFIX_LISTS};
use crate::intel::fetch::{Fetch, Location};

/// Where MISP publishes the lists (`<base><name>/list.json`).
pub const UPSTREAM: &str = "https://raw.githubusercontent.com/MISP/misp-warninglists/main/lists/";

/// What one refresh did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Report {
    /// Lists written, as `name v3 -> v4`.
    pub updated: Vec<String>,
    /// Lists already current.
    pub current: usize,
    /// Lists kept as they were, with why.
    pub kept: Vec<String>,
}

/// Fetches `names` (and the public-suffix lists) from `upstream`; writes
/// each that passes the checks to `into/<name>/list.json`. `dirs` are where
/// the copies in use are read from, as [`super::Warninglists::load`] reads them.
pub async fn refresh(
    upstream: &Location,
    names: &[String],
    dirs: &[&Path],
    into: &Path,
    fetch: &Fetch,
) -> Report {
    let mut report = Report::default();
    let all = names
        .iter()
        .map(String::as_str)
        .chain(SUFFIX_LISTS.iter().copied());
    for name in all {
        let current = read_best(dirs, name).ok();
        let fetched = match upstream.join(&format!("{name}/list.json")) {
            Ok(loc) => loc.read(fetch).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        let body = match fetched {
            Ok(b) => b,
            Err(e) => {
                report.kept.push(format!("{name}: {e}"));
                continue;
            }
        };
        match check(name, &body, current.as_ref()) {
            Ok(None) => report.current += 1,
            Ok(Some(line)) => {
                let path = into.join(name).join("list.json");
                let written = std::fs::create_dir_all(into.join(name))
                    .and_then(|()| crate::fsutil::write_atomic(&path, &body));
                match written {
                    Ok(()) => report.updated.push(line),
                    Err(e) => report.kept.push(format!("{name}: {}: {e}", path.display())),
                }
            }
            Err(why) => report.kept.push(format!("{name}: {why}")),
        }
    }
    report
}

/// `Ok(None)`: nothing newer; `Ok(Some(what))`: take it; `Err(why)`: keep the copy in use.
fn check(name: &str, body: &[u8], current: Option<&ListFile>) -> Result<Option<String>, String> {
    if body.len() as u64 > super::MAX_FILE {
        return Err("larger than the limit".into());
    }
    let new: ListFile =
        serde_json::from_slice(body).map_err(|e| format!("not a warninglist: {e}"))?;
    if new.list.is_empty() {
        return Err("an empty list".into());
    }
    let Some(cur) = current else {
        return Ok(Some(format!("{name} v{} (new)", new.version)));
    };
    if new.kind != cur.kind {
        return Err(format!(
            "type {:?} where the copy in use is {:?}",
            new.kind, cur.kind
        ));
    }
    if new.version <= cur.version {
        return Ok(None);
    }
    // A ranking or a range list does not lose half its entries in a week:
    // that is a broken publication, not news.
    if new.list.len() * 2 < cur.list.len() {
        return Err(format!(
            "v{} holds {} entries where v{} holds {}",
            new.version,
            new.list.len(),
            cur.version,
            cur.list.len()
        ));
    }
    Ok(Some(format!("{name} v{} -> v{}", cur.version, new.version)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::intel::ioc::Ioc;
    use crate::intel::warninglist::{Verdict, Warninglists};

    fn put(dir: &Path, name: &str, version: u64, kind: &str, list: &[&str]) {
        std::fs::create_dir_all(dir.join(name)).unwrap();
        let body =
            serde_json::json!({"name": name, "version": version, "type": kind, "list": list});
        std::fs::write(dir.join(name).join("list.json"), body.to_string()).unwrap();
    }

    #[tokio::test]
    async fn a_newer_list_is_taken_and_a_broken_one_never() {
        let root = tempfile::tempdir().unwrap();
        let (shipped, upstream, state) = (
            root.path().join("shipped"),
            root.path().join("upstream"),
            root.path().join("state"),
        );
        put(&shipped, "top", 3, "string", &["google.com", "gmail.com"]);
        put(
            &shipped,
            "dns",
            5,
            "cidr",
            &["8.8.8.8", "8.8.4.4", "1.1.1.1", "9.9.9.9"],
        );
        put(&shipped, "cloud", 2, "cidr", &["198.51.100.0/24"]);
        put(&shipped, "same", 7, "string", &["example.org"]);
        put(
            &upstream,
            "top",
            4,
            "string",
            &["google.com", "gmail.com", "discord.com"],
        );
        put(&upstream, "dns", 6, "cidr", &["8.8.8.8"]);
        put(&upstream, "cloud", 3, "string", &["cloud.example"]);
        put(&upstream, "same", 7, "string", &["example.org"]);
        std::fs::create_dir_all(upstream.join("garbled")).unwrap();
        std::fs::write(
            upstream.join("garbled/list.json"),
            "<html>rate limited</html>",
        )
        .unwrap();
        put(&shipped, "garbled", 1, "string", &["example.net"]);
        let names: Vec<String> = ["top", "dns", "cloud", "same", "garbled", "gone"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let fetch = Fetch::new(reqwest::Client::new(), std::time::Duration::from_secs(5));
        let dirs = [shipped.as_path(), state.as_path()];
        let r = refresh(
            &Location::Path(upstream.clone()),
            &names,
            &dirs,
            &state,
            &fetch,
        )
        .await;
        assert_eq!(r.updated, ["top v3 -> v4"]);
        assert_eq!(r.current, 1);
        let kept = r.kept.join("\n");
        assert!(
            kept.contains("dns: v6 holds 1 entries where v5 holds 4"),
            "{kept}"
        );
        assert!(
            kept.contains("cloud: type \"string\" where the copy in use is \"cidr\""),
            "{kept}"
        );
        assert!(kept.contains("garbled: not a warninglist"), "{kept}");
        assert!(kept.contains("gone/list.json"), "{kept}");
        assert!(kept.contains("second-level-tlds/list.json"), "{kept}");
        // Loading takes the newest copy of each list from either place.
        let w = Warninglists::load(&dirs, &names[..1], &[], &[]);
        assert_eq!(
            w.verdict(&Ioc::parse_any("discord.com").unwrap()),
            Verdict::Exempt("top")
        );
        assert_eq!(w.lists()[0].version, 4);
        // A second refresh finds nothing newer.
        let again = refresh(
            &Location::Path(upstream),
            &names[..1],
            &dirs,
            &state,
            &fetch,
        )
        .await;
        assert_eq!((again.updated.len(), again.current), (0, 1));
    }
}
