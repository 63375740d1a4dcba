# Sourced by scripts/install-deps.sh and scripts/build-image.sh (not run).
#
# add_backports: adds bookworm-backports as an apt source pinned at priority
# 100, so nothing but what is asked for by name (`-t bookworm-backports`)
# comes from it. Returns 0 when it added the source (lists must be fetched),
# 1 when the machine already has backports.
add_backports() {
    if [ -f /etc/apt/sources.list.d/homewarden-backports.sources ] ||
        grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
        return 1
    fi
    cat >/etc/apt/sources.list.d/homewarden-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
    cat >/etc/apt/preferences.d/homewarden-backports <<'PIN'
Package: *
Pin: release n=bookworm-backports
Pin-Priority: 100
PIN
}
