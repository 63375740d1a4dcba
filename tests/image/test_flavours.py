"""The image's flavours: what each installs, how each boots, and how the
raspios flavour trusts the Raspberry Pi archive.

The Raspberry Pi archive cannot be reached from our build machines, so the
raspios flavour is not built whole here. What it does before and after the
archive is tested on real parts: the key pin with real gpg, the sources it
hands to mmdebstrap with real mmdebstrap and apt against a stand-in archive
on 127.0.0.1 (signed by a throwaway key, in the archive's layout), the early
refusal in scripts/build-image.sh, and the boot files it writes and checks.
"""

import functools
import hashlib
import http.server
import os
import shlex
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PARTUUID_ROOT = "4877644e-02"
PINNED = "CF8A1AF502A2AA2D763BAE7E82B129927FA3303E"
BUILD_KEYRING = Path("/etc/apt/keyrings/homewarden-raspberrypi-archive.gpg")

if os.geteuid() != 0:
    pytest.skip("needs root (mmdebstrap --mode=root, scripts/build-image.sh)", allow_module_level=True)


def run(*cmd, check=True, timeout=120, **kw):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kw)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
    return r


def flavour_sh(flavour, script, check=True, env=None, timeout=120):
    """Runs SCRIPT in bash with image/lib.sh and the flavour's file sourced,
    as scripts/build-image.sh does."""
    prelude = (
        "set -euo pipefail\n"
        f"REPO={shlex.quote(str(REPO))}\n"
        "SUITE=trixie MIRROR=http://deb.debian.org/debian\n"
        f"PARTUUID_ROOT={PARTUUID_ROOT} PARTUUID_BOOT=4877644e-01\n"
        "log() { printf '%s\\n' \"$*\" >&2; }\n"
        '. "$REPO/image/lib.sh"\n'
        f'. "$REPO/image/flavours/{flavour}.sh"\n'
    )
    return run("bash", "-c", prelude + script, check=check, env={**os.environ, **(env or {})}, timeout=timeout)


@pytest.fixture(scope="module")
def gnupg():
    """A throwaway GnuPG home with two keys: 'good' signs the stand-in
    archive, 'other' is any key that is not the pinned one."""
    home = Path(tempfile.mkdtemp(prefix="hw-gpg-"))
    home.chmod(0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}
    keys = {}
    for name in ("good", "other"):
        uid = f"homewarden test {name} <{name}@test.invalid>"
        run("gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
            "--quick-gen-key", uid, "ed25519", "sign", "never", env=env)
        fpr = [l.split(":")[9] for l in run("gpg", "--batch", "--with-colons", "--list-keys", uid, env=env)
               .stdout.splitlines() if l.startswith("fpr:")][0]
        armored = run("gpg", "--batch", "--armor", "--export", fpr, env=env).stdout
        path = home / f"{name}.asc"
        path.write_text(armored)
        keys[name] = {"fpr": fpr, "asc": path}
    yield env, keys
    run("gpgconf", "--kill", "all", env=env, check=False)
    shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="module")
def standin(gnupg):
    """A stand-in of the Raspberry Pi archive on 127.0.0.1: its key at
    /raspberrypi.gpg.key, dists/trixie/InRelease signed by the 'good' key,
    one arm64 package in pool/. /other/ is the same archive signed by 'other'."""
    env, keys = gnupg
    root = Path(tempfile.mkdtemp(prefix="hw-raspi-archive-"))
    pkg = root / "build" / "hw-standin-firmware"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "usr/share/hw-standin").mkdir(parents=True)
    (pkg / "usr/share/hw-standin/marker").write_text("from the stand-in archive\n")
    (pkg / "DEBIAN/control").write_text(
        "Package: hw-standin-firmware\nVersion: 1:1.0-1+rpt1\nArchitecture: arm64\n"
        "Maintainer: homewarden tests <tests@test.invalid>\nDescription: stand-in package\n")
    for archive, signer in (("", "good"), ("other", "other")):
        base = root / archive
        (base / "pool/main").mkdir(parents=True, exist_ok=True)
        run("dpkg-deb", "--root-owner-group", "-Zxz", "--build", str(pkg),
            str(base / "pool/main/hw-standin-firmware_1.0-1+rpt1_arm64.deb"))
        dist = base / "dists/trixie"
        (dist / "main/binary-arm64").mkdir(parents=True, exist_ok=True)
        packages = run("dpkg-scanpackages", "--arch", "arm64", "pool", cwd=base).stdout
        (dist / "main/binary-arm64/Packages").write_text(packages)
        (dist / "Release").write_text(release_file(dist))
        run("gpg", "--batch", "--yes", "--local-user", keys[signer]["fpr"], "--clearsign",
            "-o", str(dist / "InRelease"), str(dist / "Release"), env=env)
        shutil.copy(keys[signer]["asc"], base / "raspberrypi.gpg.key")
    handler = functools.partial(QuietHandler, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", keys
    server.shutdown()
    shutil.rmtree(root, ignore_errors=True)


def release_file(dist):
    """dists/<suite>/Release in the fields apt checks (suite, codename,
    architectures, components, SHA256 of every index)."""
    lines = ["Origin: Raspberry Pi Foundation (stand-in)", "Label: Raspberry Pi Foundation (stand-in)",
             "Suite: trixie", "Codename: trixie", "Architectures: arm64", "Components: main",
             "Date: Sat, 01 Nov 2025 00:00:00 UTC", "SHA256:"]
    for f in sorted(p for p in dist.rglob("*") if p.is_file() and p.name not in ("Release", "InRelease")):
        data = f.read_bytes()
        lines.append(f" {hashlib.sha256(data).hexdigest()} {len(data)} {f.relative_to(dist)}")
    return "\n".join(lines) + "\n"


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


def closed_port():
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


# --- what each flavour installs ------------------------------------------------

def packages(flavour):
    return set(flavour_sh(flavour, "appliance_packages").stdout.split())


def test_each_flavour_installs_its_own_kernel_and_firmware_on_the_same_appliance():
    debian, raspios = packages("debian"), packages("raspios")
    assert {"linux-image-arm64", "raspi-firmware", "firmware-brcm80211"} <= debian
    assert not any(p.startswith("linux-image-rpi") for p in debian)
    assert {"linux-image-rpi-v8", "linux-image-rpi-2712", "raspi-firmware", "firmware-brcm80211",
            "raspberrypi-archive-keyring"} <= raspios
    assert "linux-image-arm64" not in raspios
    # Everything else is the same appliance: the role's packages and the image's.
    common = {"suricata", "nftables", "openssh-server", "hostapd", "dnsmasq-base", "initramfs-tools", "python3"}
    assert common <= debian and common <= raspios
    flavour_only = {"linux-image-arm64", "linux-image-rpi-v8", "linux-image-rpi-2712", "raspberrypi-archive-keyring"}
    assert debian - flavour_only == raspios - flavour_only


def test_an_unknown_flavour_is_one_line_naming_it_and_the_known_ones():
    r = run(str(REPO / "scripts/build-image.sh"), "--flavour", "ubuntu", check=False)
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert lines == ["build-image: --flavour: unknown flavour 'ubuntu' (known: debian, raspios)"], r.stderr
    r = run(str(REPO / "scripts/build-image.sh"), "--flavour", "../lib", check=False)
    assert r.returncode == 2 and "unknown flavour '../lib'" in r.stderr


# --- the Raspberry Pi archive's key ----------------------------------------------

def test_the_pinned_key_is_taken_and_written_as_a_binary_keyring(standin, tmp_path):
    url, keys = standin
    out = tmp_path / "raspi.gpg"
    flavour_sh("raspios", f'raspios_keyring "{url}/raspberrypi.gpg.key" {keys["good"]["fpr"]} {out}')
    listed = run("gpg", "--batch", "--with-colons", "--show-keys", str(out)).stdout
    assert f"fpr:::::::::{keys['good']['fpr']}:" in listed
    assert not out.read_bytes().startswith(b"-----BEGIN"), "apt's signed-by wants a binary keyring"


def test_a_key_with_another_fingerprint_is_refused_and_nothing_is_written(standin, tmp_path):
    url, keys = standin
    out = tmp_path / "raspi.gpg"
    r = flavour_sh("raspios", f'raspios_keyring "{url}/raspberrypi.gpg.key" {PINNED} {out}', check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        f"build-image: {url}/raspberrypi.gpg.key: key fingerprint '{keys['good']['fpr']}', "
        f"expected {PINNED}: refusing it"]
    assert not out.exists() and not Path(f"{out}.tmp").exists()


def test_a_file_that_is_no_key_is_refused(tmp_path):
    junk = tmp_path / "junk.asc"
    junk.write_text("<html>captive portal</html>\n")
    r = flavour_sh("raspios", f'raspios_keyring {junk} {PINNED} {tmp_path / "k.gpg"}', check=False)
    assert r.returncode == 1
    assert "key fingerprint 'none (not an OpenPGP key)'" in r.stderr
    assert not (tmp_path / "k.gpg").exists()


def test_an_unreachable_archive_is_one_line_naming_the_url_and_the_setting(tmp_path):
    url = f"http://127.0.0.1:{closed_port()}/debian/raspberrypi.gpg.key"
    r = flavour_sh("raspios", f'raspios_keyring {url} {PINNED} {tmp_path / "k.gpg"}', check=False)
    assert r.returncode == 1
    [line] = r.stderr.strip().splitlines()
    assert line.startswith(f"build-image: cannot fetch the Raspberry Pi archive key {url} (")
    assert "HW_RASPIOS_MIRROR" in line


def test_the_build_refuses_an_archive_with_another_key_before_any_long_step(standin, tmp_path):
    url, keys = standin
    env = {**os.environ, "HW_RASPIOS_MIRROR": url, "HW_OUT": str(tmp_path / "out"),
           "HW_BASE_CACHE": str(tmp_path / "cache")}
    before = BUILD_KEYRING.read_bytes() if BUILD_KEYRING.exists() else None
    r = run(str(REPO / "scripts/build-image.sh"), "--flavour", "raspios", check=False, env=env, timeout=600)
    assert r.returncode == 1, r.stderr
    assert f"expected {PINNED}: refusing it" in r.stderr.strip().splitlines()[-1]
    assert "step 2: sources: flavour raspios" in r.stderr
    assert "agent" not in r.stderr.split("step 2: sources")[1], "it went on past the sources"
    after = BUILD_KEYRING.read_bytes() if BUILD_KEYRING.exists() else None
    assert after == before, "the refused key reached the build's keyring"


# --- the sources mmdebstrap gets ---------------------------------------------------

@pytest.fixture
def keyring_dir():
    """Where the test's build keyring goes: like /etc/apt/keyrings, a place
    apt's unprivileged _apt user can read (pytest's tmp_path is not)."""
    d = Path(tempfile.mkdtemp(prefix="hw-keyrings-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def mmdebstrap_with_raspios_sources(mirror, fpr, key, keyring_dir, target):
    """flavour_mirrors with the key pinned to FPR instead of the Raspberry Pi
    archive's, its mirror lines handed to real mmdebstrap, which installs the
    stand-in's package from them: apt must verify the stand-in's InRelease
    with the pinned key alone."""
    script = (
        f"RASPIOS_KEY_FPR={fpr}; HW_RASPIOS_KEY={key}; RASPIOS_MIRROR={mirror}\n"
        f"RASPIOS_BUILD_KEYRING={keyring_dir}/homewarden-raspberrypi-archive.gpg\n"
        "flavour_mirrors\n"
        "printf '%s\\n' \"${MIRRORS[@]}\" >&2\n"
        "mmdebstrap --mode=root --variant=extract --architectures=arm64 --include=hw-standin-firmware "
        f"--format=tar trixie {target} \"${{MIRRORS[@]}}\"\n"
    )
    return flavour_sh("raspios", script, check=False, timeout=600)


def test_mmdebstrap_installs_from_the_archive_its_pinned_key_signs(standin, keyring_dir, tmp_path):
    url, keys = standin
    target = tmp_path / "root.tar"
    r = mmdebstrap_with_raspios_sources(url, keys["good"]["fpr"], f"{url}/raspberrypi.gpg.key", keyring_dir, target)
    assert r.returncode == 0, r.stderr[-3000:]
    assert f"deb [signed-by={keyring_dir}/homewarden-raspberrypi-archive.gpg] {url} trixie main" in r.stderr
    assert "deb http://deb.debian.org/debian trixie main non-free-firmware" in r.stderr
    names = run("tar", "-tf", str(target)).stdout.split()
    assert "./usr/share/hw-standin/marker" in names


def test_mmdebstrap_refuses_an_archive_signed_by_another_key(standin, keyring_dir, tmp_path):
    url, keys = standin
    # /other is signed by 'other'; the flavour pins (and is given) 'good':
    # apt must refuse its InRelease even though 'other' is a valid key.
    target = tmp_path / "root.tar"
    r = mmdebstrap_with_raspios_sources(f"{url}/other", keys["good"]["fpr"], keys["good"]["asc"],
                                        keyring_dir, target)
    assert r.returncode != 0
    assert f"NO_PUBKEY {keys['other']['fpr'][-16:]}" in r.stderr, r.stderr[-3000:]
    assert "The repository 'http://127.0.0.1" in r.stderr and "is not signed" in r.stderr


# --- what each flavour writes for the boot ---------------------------------------

RASPIOS_BOOT = ["kernel8.img", "initramfs8", "kernel_2712.img", "initramfs_2712", "bootcode.bin",
                "start4.elf", "fixup4.dat", "bcm2710-rpi-3-b.dtb", "bcm2711-rpi-4-b.dtb",
                "bcm2712-rpi-5-b.dtb"]


def fake_root(tmp_path, files):
    fw = tmp_path / "root/boot/firmware"
    (fw / "overlays").mkdir(parents=True)
    for f in files:
        (fw / f).write_bytes(b"\0")
    return tmp_path / "root"


def test_raspios_boot_config_names_the_root_by_partuuid_and_loads_the_matching_initramfs(tmp_path):
    root = fake_root(tmp_path, RASPIOS_BOOT)
    flavour_sh("raspios", f"flavour_boot_config {root}")
    fw = root / "boot/firmware"
    config = [l for l in (fw / "config.txt").read_text().splitlines() if l and not l.startswith("#")]
    assert "arm_64bit=1" in config and "auto_initramfs=1" in config
    [cmdline] = (fw / "cmdline.txt").read_text().splitlines()
    args = cmdline.split()
    assert f"root=PARTUUID={PARTUUID_ROOT}" in args
    assert "net.ifnames=0" in args and "rootwait" in args
    assert len([a for a in args if a.startswith("root=")]) == 1


def test_raspios_boot_config_names_every_missing_boot_file_and_writes_nothing(tmp_path):
    root = fake_root(tmp_path, [f for f in RASPIOS_BOOT if f not in ("kernel_2712.img", "initramfs_2712")])
    r = flavour_sh("raspios", f"flavour_boot_config {root}", check=False)
    assert r.returncode == 1
    assert r.stderr.strip().splitlines() == [
        "build-image: /boot/firmware lacks kernel_2712.img initramfs_2712 "
        "(the Raspberry Pi packages' hooks did not lay them)"]
    assert not (root / "boot/firmware/config.txt").exists()
    assert not (root / "boot/firmware/cmdline.txt").exists()


def test_debian_boot_config_points_raspi_firmware_and_its_cmdline_at_the_partuuid(tmp_path):
    root = tmp_path / "root"
    (root / "boot/firmware").mkdir(parents=True)
    (root / "etc/default").mkdir(parents=True)
    # As Debian's raspi-firmware writes them.
    (root / "etc/default/raspi-firmware").write_text("#ROOTPART=/dev/mmcblk0p2\nCONSOLES=\"tty0\"\n")
    (root / "boot/firmware/cmdline.txt").write_text(
        "console=tty0 console=ttyS1,115200 root=/dev/mmcblk0p2 rw fsck.repair=yes net.ifnames=0 rootwait\n")
    flavour_sh("debian", f"flavour_boot_config {root}")
    assert f"ROOTPART=PARTUUID={PARTUUID_ROOT}\n" in (root / "etc/default/raspi-firmware").read_text()
    args = (root / "boot/firmware/cmdline.txt").read_text().split()
    assert f"root=PARTUUID={PARTUUID_ROOT}" in args and "root=/dev/mmcblk0p2" not in args


def test_raspios_pi_updates_from_both_archives_with_the_packaged_keyring(tmp_path):
    root = tmp_path / "root"
    (root / "etc/apt/sources.list.d").mkdir(parents=True)
    r = flavour_sh("raspios", f"flavour_apt_sources {root}", check=False)
    assert r.returncode == 1 and "raspberrypi-archive-keyring installed no" in r.stderr
    (root / "usr/share/keyrings").mkdir(parents=True)
    (root / "usr/share/keyrings/raspberrypi-archive-keyring.pgp").write_bytes(b"\0")
    flavour_sh("raspios", f"flavour_apt_sources {root}")
    raspi = (root / "etc/apt/sources.list.d/raspi.sources").read_text()
    assert "URIs: http://archive.raspberrypi.com/debian\n" in raspi
    assert "Signed-By: /usr/share/keyrings/raspberrypi-archive-keyring.pgp\n" in raspi
    assert "Suites: trixie\n" in raspi
    assert "URIs: http://deb.debian.org/debian\n" in (root / "etc/apt/sources.list.d/debian.sources").read_text()
