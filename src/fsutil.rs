//! Crash-safe file writes: temp file in the same directory, fsync, rename,
//! fsync of the directory. A reader sees the old file or the new one, never half.
//! Temp files get unguessable names and are opened O_EXCL|O_NOFOLLOW: safe in
//! a directory another user can write.

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
    let (file, tmp) = create_temp(dir, &name.to_string_lossy(), mode.map_or(0o666, |m| m.0))?;
    let result = (|| {
        if let Some((m, gid)) = mode {
            use std::os::unix::fs::PermissionsExt;
            // The umask may have narrowed `mode`.
            file.set_permissions(fs::Permissions::from_mode(m))?;
            if let Some(gid) = gid {
                std::os::unix::fs::fchown(&file, None, Some(gid))?;
            }
        }
        {
            let mut w = BufWriter::with_capacity(1 << 16, &file);
            fill(&mut w)?;
            w.flush()?;
        }
        file.sync_all()?;
        // rename replaces a symlink at `path` itself, never what it points to.
        fs::rename(&tmp, path)?;
        // The rename is only durable once the directory entry is.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Creates a new temp file for `name` in `dir`: a name nobody can guess
/// (128 random bits), opened with O_EXCL and O_NOFOLLOW. A root helper often
/// writes into a directory a less privileged user can write too: a file or a
/// symlink planted at a temp name must make the write fail, never be
/// truncated, followed or written through.
fn create_temp(dir: &Path, name: &str, mode: u32) -> io::Result<(File, std::path::PathBuf)> {
    let mut last = None;
    // A clash of 128 random bits is a planted name or a broken RNG: try a
    // few, then give up rather than loop.
    for _ in 0..4 {
        let suffix = unguessable(16)?;
        let tmp = dir.join(format!(".{name}.tmp-{suffix}"));
        match open_new(&tmp, mode) {
            Ok(f) => return Ok((f, tmp)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => last = Some(e),
            Err(e) => return Err(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::other("no temp file name")))
}

/// `bytes` random bytes from the system's generator, in hex: a name part
/// nobody can guess.
pub fn unguessable(bytes: usize) -> io::Result<String> {
    let mut buf = vec![0u8; bytes];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut buf)
        .map_err(|_| io::Error::other("no randomness for a name"))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

/// Opens a file that must not exist yet: whatever is at `path` (a file, a
/// symlink, dangling or not) makes it fail, and is left as it was.
fn open_new(path: &Path, mode: u32) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt;
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(path)
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

    #[test]
    fn temp_names_cannot_be_guessed() {
        let dir = tempfile::tempdir().unwrap();
        let (_, a) = create_temp(dir.path(), "f", 0o600).unwrap();
        let (_, b) = create_temp(dir.path(), "f", 0o600).unwrap();
        assert_ne!(a, b);
        let name = a.file_name().unwrap().to_string_lossy().into_owned();
        // 128 random bits, not the pid the old names used.
        assert!(
            name.starts_with(".f.tmp-") && name.len() == ".f.tmp-".len() + 32,
            "{name}"
        );
    }

    #[test]
    fn a_symlink_planted_at_the_old_guessable_temp_name_is_left_alone() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"root's").unwrap();
        let guess = dir.path().join(format!(".f.tmp-{}", std::process::id()));
        symlink(&victim, &guess).unwrap();
        write_atomic(&dir.path().join("f"), b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"root's");
        assert_eq!(fs::read(dir.path().join("f")).unwrap(), b"new");
    }

    #[test]
    fn anything_planted_at_a_temp_name_makes_the_open_fail_and_stays_untouched() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"root's").unwrap();
        let dangling = dir.path().join("nowhere");
        let planted = dir.path().join(".g.tmp-planted");
        for target in [&victim, &dangling] {
            let _ = fs::remove_file(&planted);
            symlink(target, &planted).unwrap();
            let e = open_new(&planted, 0o600).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::AlreadyExists, "{target:?}");
        }
        fs::remove_file(&planted).unwrap();
        fs::write(&planted, b"a file").unwrap();
        assert_eq!(
            open_new(&planted, 0o600).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
        assert_eq!(fs::read(&planted).unwrap(), b"a file");
        assert_eq!(fs::read(&victim).unwrap(), b"root's");
        assert!(
            !dangling.exists(),
            "a dangling link was followed and created its target"
        );
    }

    #[test]
    fn a_symlink_at_the_destination_is_replaced_not_written_through() {
        use std::os::unix::fs::symlink;
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"root's").unwrap();
        let p = dir.path().join("f");
        symlink(&victim, &p).unwrap();
        write_atomic_mode(&p, b"new", 0o600).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"root's");
        assert!(!fs::symlink_metadata(&p).unwrap().file_type().is_symlink());
        assert_eq!(fs::read(&p).unwrap(), b"new");
    }
}
