#!/usr/bin/python3
"""File-level comparisons for the image build (standard library + debugfs only).

  fscompare.py tar-vs-ext4 ROOTFS.TAR ROOT.EXT4   every tar entry is in the ext4, same type and size
  fscompare.py tar-vs-tar A.TAR B.TAR             names the entries that differ (content or metadata)

mke2fs -d reads tar through libarchive and has silently dropped entries (every
entry after one carrying a POSIX ACL): the first check catches that class of
loss. The second explains a failed reproducibility check file by file, where
cmp on two disk images only gives a byte offset.
"""

import hashlib
import stat
import subprocess
import sys
import tarfile


def norm(name):
    name = name[2:] if name.startswith("./") else name
    return "/" + name.rstrip("/") if name not in (".", "./", "") else "/"


def tar_kind(m):
    if m.isdir():
        return "d"
    if m.issym():
        return "l"
    if m.isfile() or m.islnk():
        return "f"
    if m.ischr() or m.isblk():
        return "dev"
    if m.isfifo():
        return "p"
    return "?"


def ext4_tree(img):
    """{path: (kind, size)} for every inode reachable from / (debugfs, one process per depth)."""
    tree = {"/": ("d", 0)}
    level = ["/"]
    while level:
        cmds = "".join('ls -p "%s"\n' % d for d in level)
        out = subprocess.run(
            ["debugfs", "-f", "-", img], input=cmds, capture_output=True, text=True,
            errors="surrogateescape", check=True,
        ).stdout
        nxt = []
        cur = None
        for line in out.splitlines():
            if line.startswith("debugfs: "):
                # The echo of the command names the directory the lines belong to.
                cur = line[len('debugfs: ls -p "'):-1]
                continue
            if not line.startswith("/"):
                continue
            parts = line.split("/")
            # /inode/mode/uid/gid/name/size/ ; a name cannot contain "/".
            if len(parts) < 7 or cur is None:
                continue
            name, mode, size = parts[5], int(parts[2], 8), parts[6]
            if name in (".", ".."):
                continue
            path = (cur.rstrip("/") + "/" + name) if cur != "/" else "/" + name
            if stat.S_ISDIR(mode):
                kind = "d"
                nxt.append(path)
            elif stat.S_ISLNK(mode):
                kind = "l"
            elif stat.S_ISREG(mode):
                kind = "f"
            elif stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
                kind = "dev"
            elif stat.S_ISFIFO(mode):
                kind = "p"
            else:
                kind = "?"
            tree[path] = (kind, int(size) if size.isdigit() else 0)
        level = nxt
    return tree


def tar_vs_ext4(tar_path, img):
    ext = ext4_tree(img)
    missing, wrong = [], []
    count = 0
    with tarfile.open(tar_path) as t:
        sizes = {}
        for m in t:
            sizes[m.name] = m.size
            count += 1
            p = norm(m.name)
            kind = tar_kind(m)
            got = ext.get(p)
            if got is None:
                missing.append(p)
                continue
            size = sizes.get(m.linkname, 0) if m.islnk() else m.size
            if got[0] != kind or (kind == "f" and got[1] != size):
                wrong.append("%s: tar %s %d, ext4 %s %d" % (p, kind, size, got[0], got[1]))
    for p in missing[:20]:
        print("missing from ext4: " + p, file=sys.stderr)
    for w in wrong[:20]:
        print("differs in ext4: " + w, file=sys.stderr)
    if missing or wrong:
        print("tar-vs-ext4: %d of %d entries missing, %d differ" % (len(missing), count, len(wrong)),
              file=sys.stderr)
        return 1
    print("tar-vs-ext4: all %d tar entries present in the ext4 with the same type and size" % count)
    return 0


def tar_index(path):
    idx = {}
    with tarfile.open(path) as t:
        for m in t:
            h = hashlib.sha256()
            if m.isfile():
                f = t.extractfile(m)
                for chunk in iter(lambda: f.read(1 << 20), b""):
                    h.update(chunk)
            meta = (m.type, m.mode, m.uid, m.gid, m.mtime, m.size, m.linkname,
                    sorted((k, v) for k, v in m.pax_headers.items()))
            idx[norm(m.name)] = (h.hexdigest(), meta)
    return idx


def tar_vs_tar(a, b):
    ia, ib = tar_index(a), tar_index(b)
    diff = []
    for p in sorted(set(ia) | set(ib)):
        if p not in ia:
            diff.append("only in second: " + p)
        elif p not in ib:
            diff.append("only in first: " + p)
        elif ia[p][0] != ib[p][0]:
            diff.append("content differs: " + p)
        elif ia[p][1] != ib[p][1]:
            diff.append("metadata differs: %s (%s vs %s)" % (p, ia[p][1], ib[p][1]))
    for d in diff:
        print(d)
    if not diff:
        print("tar-vs-tar: %d entries, identical content and metadata" % len(ia))
    return 1 if diff else 0


def main(argv):
    if len(argv) == 4 and argv[1] == "tar-vs-ext4":
        return tar_vs_ext4(argv[2], argv[3])
    if len(argv) == 4 and argv[1] == "tar-vs-tar":
        return tar_vs_tar(argv[2], argv[3])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv))
