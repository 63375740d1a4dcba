//! Crash-safe file writes: temp file in the same directory, fsync, rename,
//! fsync of the directory. A reader sees the old file or the new one, never half.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::Path;

/// Moves an unreadable file aside (`x.json` → `x.json.corrupt`) so it is kept
/// for a person to look at and never overwritten; returns where it went.
pub fn set_aside(path: &Path) -> std::path::PathBuf {
    let mut aside = path.as_os_str().to_owned();
    aside.push(".corrupt");
    let aside = std::path::PathBuf::from(aside);
    let _ = fs::rename(path, &aside);
    aside
}

/// Writes `path` atomically with whatever `fill` writes.
pub fn write_atomic_with<F>(path: &Path, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
{
    write_atomic_inner(path, None, fill)
}

/// Writes `bytes` to `path` atomically with permission bits `mode`, set before
/// any byte is written: a secret is never readable by others, not even the temp file.
pub fn write_atomic_mode(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_atomic_inner(path, Some((mode, None)), |w| w.write_all(bytes))
}

/// As [`write_atomic_mode`], and owned by group `gid` (set, like the mode,
/// before any byte is written): a secret one service user may read.
pub fn write_atomic_group(path: &Path, bytes: &[u8], mode: u32, gid: u32) -> io::Result<()> {
    write_atomic_inner(path, Some((mode, Some(gid))), |w| w.write_all(bytes))
}

fn write_atomic_inner<F>(path: &Path, mode: Option<(u32, Option<u32>)>, fill: F) -> io::Result<()>
where
    F: FnOnce(&mut BufWriter<&File>) -> io::Result<()>,
{
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let file = match mode {
            None => File::create(&tmp)?,
            Some((m, gid)) => {
                use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
                let f = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(m)
                    .open(&tmp)?;
                // The umask may have narrowed `mode`, and an old temp file kept its own.
                f.set_permissions(fs::Permissions::from_mode(m))?;
                if let Some(gid) = gid {
                    std::os::unix::fs::fchown(&f, None, Some(gid))?;
                }
                f
            }
        };
        {
            let mut w = BufWriter::with_capacity(1 << 16, &file);
            fill(&mut w)?;
            w.flush()?;
        }
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // The rename is only durable once the directory entry is.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    write_atomic_with(path, |w| w.write_all(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_whole_and_leaves_no_temp_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("f");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let r = write_atomic_with(&p, |w| {
            w.write_all(b"partial")?;
            Err(io::Error::other("disk full"))
        });
        assert!(r.is_err());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }
}
