"""The build's work directories after a run that was killed mid-way.

A build killed while /proc (or anything else) was mounted in its image root
leaves that mount behind. The next run must clear the directory without
deleting anything through the mount and without stopping at it.
"""

import os
import shlex
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

if os.geteuid() != 0:
    pytest.skip("needs root (mount)", allow_module_level=True)


def fresh_dir(path):
    script = f'set -euo pipefail\nREPO={shlex.quote(str(REPO))}\n. "$REPO/image/lib.sh"\nfresh_dir {shlex.quote(str(path))}\n'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, timeout=60)


def mounted(path):
    return any(line.split()[1] == str(path) for line in Path("/proc/mounts").read_text().splitlines())


def test_fresh_dir_unmounts_leftovers_and_deletes_nothing_through_them():
    top = Path(tempfile.mkdtemp(prefix="hw-fresh-"))
    outside = top / "outside"
    outside.mkdir()
    (outside / "keep").write_text("host file\n")
    work = top / "work"
    (work / "root" / "proc").mkdir(parents=True)
    (work / "root" / "mnt").mkdir()
    (work / "root" / "etc").mkdir()
    (work / "root" / "etc" / "hostname").write_text("old\n")
    subprocess.run(["mount", "-t", "proc", "proc", str(work / "root" / "proc")], check=True)
    subprocess.run(["mount", "--bind", str(outside), str(work / "root" / "mnt")], check=True)
    try:
        r = fresh_dir(work)
        assert r.returncode == 0, r.stderr
        assert not mounted(work / "root" / "proc")
        assert not mounted(work / "root" / "mnt")
        assert work.is_dir() and list(work.iterdir()) == []
        assert (outside / "keep").read_text() == "host file\n"
    finally:
        for m in ("mnt", "proc"):
            if mounted(work / "root" / m):
                subprocess.run(["umount", "-l", str(work / "root" / m)])
        subprocess.run(["rm", "-rf", "--one-file-system", str(top)])


def test_fresh_dir_leaves_mounts_of_a_sibling_alone():
    top = Path(tempfile.mkdtemp(prefix="hw-fresh-"))
    sibling = top / "work2" / "proc"
    sibling.mkdir(parents=True)
    (top / "work").mkdir()
    subprocess.run(["mount", "-t", "proc", "proc", str(sibling)], check=True)
    try:
        r = fresh_dir(top / "work")
        assert r.returncode == 0, r.stderr
        assert mounted(sibling)
    finally:
        subprocess.run(["umount", "-l", str(sibling)])
        subprocess.run(["rm", "-rf", "--one-file-system", str(top)])
