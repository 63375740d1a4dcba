# shellcheck shell=bash
# The appliance steps of scripts/build-image.sh (sourced): what goes onto the
# base root, what comes off it, the boot line, and the ext4 check.

# Empties DIR for a new run. A run killed while /proc was mounted in its root
# leaves that mount behind: it is unmounted first, so nothing is deleted
# through it and rm does not stop at it.
fresh_dir() {
    local dir=$1 m
    findmnt -rn -o TARGET | sort -r | while read -r m; do
        case $m in "$dir"/*) umount -l "$m" ;; esac
    done
    rm -rf --one-file-system "$dir"
    mkdir -p "$dir"
}

# The packages of the image, one per line: the Ansible role's own list
# (ansible/roles/homewarden/vars/main.yml, homewarden_packages), what the role
# needs in a target (python3, python3-apt), what only an image needs
# (image/packages.txt: networking, SSH, ap mode, first boot) and what boots
# the flavour (flavour_packages: kernel, boot and Wi-Fi firmware).
# mmdebstrap installs them all natively; the role then finds them present.
appliance_packages() {
    {
        awk '/^homewarden_packages:/ { on = 1; next } on && /^  - / { print $2; next } on { exit }' \
            "$REPO/ansible/roles/homewarden/vars/main.yml"
        printf '%s\n' python3 python3-apt
        sed -e 's/#.*//' -e 's/[[:space:]]//g' "$REPO/image/packages.txt"
        flavour_packages
    } | grep -v '^$' | sort -u
}

ansible_venv() {
    local venv=$REPO/target/ansible-venv want
    want=$(sha256sum "$REPO/ansible/requirements.txt" | cut -d' ' -f1)
    # The same venv and stamp as scripts/ansible-test.sh: one download for both.
    if ! [ -x "$venv/bin/ansible-playbook" ] || [ "$(cat "$venv/.requirements.sha256" 2>/dev/null)" != "$want" ]; then
        log "creating $venv (Ansible from PyPI)"
        rm -rf "$venv"
        /usr/bin/python3 -m venv "$venv"
        "$venv/bin/pip" install -q --disable-pip-version-check -r "$REPO/ansible/requirements.txt"
        echo "$want" >"$venv/.requirements.sha256"
    fi
    echo "$venv"
}

# Lays the appliance onto ROOT by applying the Ansible role
# (ansible/site.yml) through the community.general.chroot connection: the
# image and a Pi provisioned with the role get the same packages, agent,
# overlays, config and units. Then the image's own units are enabled.
appliance_lay() {
    local root=$1 agent=$2 venv log
    venv=$(ansible_venv)
    log=$OUT/ansible.log
    mkdir -p "$root/var/lib/apt/periodic"
    # The lists came with the base a moment ago: the role's apt tasks
    # (cache_valid_time) need not fetch them again in an emulated chroot.
    touch "$root/var/lib/apt/periodic/update-success-stamp"
    rm -f "$root/etc/resolv.conf"
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    mount -t proc proc "$root/proc"
    local rc=0
    # Pipelining: one emulated python per task instead of copy-then-run.
    ANSIBLE_CONFIG=$REPO/ansible/ansible.cfg ANSIBLE_NOCOLOR=1 ANSIBLE_PIPELINING=1 \
        "$venv/bin/ansible-playbook" -c community.general.chroot -i "$root," "$REPO/ansible/site.yml" \
        -e homewarden_image_build=true -e homewarden_manage_network=true -e "homewarden_binary_src=$agent" \
        -e ansible_python_interpreter=/usr/bin/python3 >"$log" 2>&1 || rc=$?
    umount "$root/proc"
    if [ $rc -ne 0 ]; then
        tail -n 40 "$log" >&2
        echo "build-image: the Ansible role failed on the image root (log: $log)" >&2
        return 1
    fi
    log "role applied: $(grep -E '^\S+ +: ok=' "$log" | tail -n 1 | sed 's/^\S* *: //')"
    # The image's own units: networking, remote access and first boot.
    systemctl --root="$root" enable systemd-networkd.service systemd-resolved.service ssh.service \
        homewarden-firstboot.service >/dev/null 2>&1
    # Nothing on the appliance fetches packages by itself.
    systemctl --root="$root" mask apt-daily.timer apt-daily-upgrade.timer >/dev/null 2>&1 || true
    chroot "$root" /usr/bin/homewarden --config /etc/homewarden/homewarden.yaml check-config >/dev/null
}

# Removes what makes a root differ from build to build or from Pi to Pi.
appliance_cleanup() {
    local root=$1
    rm -f "$root"/etc/ssh/ssh_host_*
    : >"$root/etc/machine-id"
    rm -f "$root/var/lib/dbus/machine-id" "$root/var/lib/systemd/random-seed" \
        "$root/var/cache/ldconfig/aux-cache" "$root"/var/cache/debconf/*-old "$root"/var/lib/dpkg/*-old
    rm -rf "$root"/var/lib/apt/lists/* "$root"/var/lib/apt/periodic/* "$root"/var/cache/apt/*.bin "$root"/var/cache/apt/archives/*.deb \
        "$root"/tmp/* "$root"/var/tmp/* "$root"/root/.cache
    find "$root/var/log" -type f -delete
    # apt's record of automatically installed packages depends on the
    # priorities in the index it installed from (Debian's overrides, or a
    # local cache's control fields): written from the installed set instead.
    # Manual: the image's package list, essential and required/important
    # packages; everything else automatic; sorted.
    local manual
    manual=$( { printf '%s\n' "${PACKAGES[@]}"
        dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Package}|${Essential}|${Priority}\n' |
            awk -F'|' '$2 == "yes" || $3 == "required" || $3 == "important" { print $1 }'; } | sort -u)
    dpkg-query --admindir="$root/var/lib/dpkg" -W -f='${Package}\n' | LC_ALL=C sort -u |
        while read -r p; do
            grep -qxF "$p" <<<"$manual" || printf 'Package: %s\nArchitecture: arm64\nAuto-Installed: 1\n\n' "$p"
        done >"$root/var/lib/apt/extended_states"
    # sync-in brings the host cache directory's lock and partial/ along, with
    # the host's times.
    touch -c -h -d "@$SOURCE_DATE_EPOCH" "$root/var/cache/apt/archives" "$root"/var/cache/apt/archives/lock \
        "$root/var/cache/apt/archives/partial" 2>/dev/null || true
    echo homewarden >"$root/etc/hostname"
    printf '127.0.0.1\tlocalhost\n127.0.1.1\thomewarden\n::1\tlocalhost ip6-localhost ip6-loopback\n' >"$root/etc/hosts"
    ln -sfn ../run/systemd/resolve/stub-resolv.conf "$root/etc/resolv.conf"
    # Whatever mirror the build used (a local cache, a proxy), the Pi updates
    # from its flavour's archives.
    rm -f "$root/etc/apt/sources.list"
    flavour_apt_sources "$root"
}

# Debian trixie's archives, for every flavour.
debian_apt_sources() {
    local root=$1
    cat >"$root/etc/apt/sources.list.d/debian.sources" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates
Components: main non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian-security
Suites: trixie-security
Components: main non-free-firmware
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
}

# The root is named by PARTUUID (the fixed disk signature), so the same line
# boots from an SD card (mmcblk0p2), a USB disk (sda2) or qemu's virtio (vda2);
# the flavour writes or fixes the firmware's boot line (cmdline.txt).
write_boot_config() {
    local root=$1
    cat >"$root/etc/fstab" <<FSTAB
# <device>                 <mount>         <type> <options>                               <dump> <pass>
PARTUUID=$PARTUUID_ROOT    /               ext4   rw,noatime,commit=60,errors=remount-ro  0      1
PARTUUID=$PARTUUID_BOOT    /boot/firmware  vfat   rw,noatime,fmask=0077,dmask=0077        0      2
# Suricata's logs (eve.json alerts and drops, suricata.log) in RAM: no steady writes to the card.
tmpfs                      /var/log/suricata tmpfs nosuid,nodev,noexec,size=64M,mode=0755 0    0
FSTAB
    flavour_boot_config "$root"
    log "cmdline.txt: $(cat "$root/boot/firmware/cmdline.txt")"
}

# Every path of TAR must be in the ext4 IMG with the same type and size:
# mke2fs -d reads tar through libarchive and has dropped entries silently before.
check_ext4_against_tar() {
    python3 "$REPO/image/fscompare.py" tar-vs-ext4 "$1" "$2"
}
