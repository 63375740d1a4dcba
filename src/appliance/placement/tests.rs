use super::*;
use crate::config::Config;
use std::os::unix::fs::PermissionsExt;

fn net(yaml: &str) -> Network {
    Config::parse(yaml, Path::new("/etc/homewarden/homewarden.yaml"))
        .expect("test config is valid")
        .network
}

fn file<'a>(files: &'a [File], path: &str) -> &'a str {
    &files
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("{path} not rendered"))
        .contents
}

fn paths(files: &[File]) -> Vec<&str> {
    let mut p: Vec<&str> = files.iter().map(|f| f.path).collect();
    p.sort();
    p
}

#[test]
fn gateway_with_two_nics_serves_and_nats_its_own_subnet() {
    let files = render(&net(""), Path::new("/"), None).unwrap();
    assert_eq!(
        paths(&files),
        [
            "run/homewarden/dnsmasq.conf",
            "run/homewarden/network.nft",
            "run/homewarden/placement",
            "run/systemd/network/10-homewarden-lan.network",
            "run/systemd/network/10-homewarden-uplink.network",
        ]
    );
    let lan = file(&files, "run/systemd/network/10-homewarden-lan.network");
    assert!(lan.contains("[Match]\nName=eth1\n"), "{lan}");
    assert!(lan.contains("Address=192.168.73.1/24\n"), "{lan}");
    assert!(lan.contains("RequiredForOnline=no\n"), "{lan}");
    let up = file(&files, "run/systemd/network/10-homewarden-uplink.network");
    assert!(
        up.contains("Name=eth0\n") && up.contains("DHCP=yes"),
        "{up}"
    );
    let d = file(&files, "run/homewarden/dnsmasq.conf");
    assert!(d.contains("interface=eth1\n"), "{d}");
    assert!(
        d.contains("dhcp-range=192.168.73.2,192.168.73.254,255.255.255.0,12h\n"),
        "{d}"
    );
    assert!(
        d.contains("dhcp-option=option:router,192.168.73.1\n"),
        "{d}"
    );
    assert!(
        d.contains("dhcp-leasefile=/run/homewarden/dnsmasq.leases\n"),
        "{d}"
    );
    // dnsmasq runs its lease script as root unless told otherwise.
    assert!(
        d.contains("dhcp-script=/usr/lib/homewarden/dhcp-lease\ndhcp-scriptuser=dnsmasq\n"),
        "{d}"
    );
    let nft = file(&files, "run/homewarden/network.nft");
    assert!(
        nft.contains("oifname \"eth0\" ip saddr 192.168.73.0/24 masquerade"),
        "{nft}"
    );
    assert_eq!(
        file(&files, "run/homewarden/placement"),
        "placement=gateway\nuplink=eth0\nlan=eth1\n"
    );
}

#[test]
fn one_armed_gateway_masquerades_the_hairpin_and_serves_no_dhcp() {
    let files = render(&net("network: { lan: eth0 }"), Path::new("/"), None).unwrap();
    assert_eq!(
        paths(&files),
        [
            "run/homewarden/network.nft",
            "run/homewarden/placement",
            "run/systemd/network/10-homewarden-uplink.network",
        ]
    );
    let nft = file(&files, "run/homewarden/network.nft");
    assert!(
        nft.contains("iifname \"eth0\" oifname \"eth0\" masquerade"),
        "{nft}"
    );
}

#[test]
fn bridge_enslaves_both_nics_and_removes_any_nat() {
    let files = render(
        &net("network: { placement: bridge, uplink: end0, lan: enx1 }"),
        Path::new("/"),
        None,
    )
    .unwrap();
    assert_eq!(
        paths(&files),
        [
            "run/homewarden/network.nft",
            "run/homewarden/placement",
            "run/systemd/network/10-homewarden-bridge.netdev",
            "run/systemd/network/10-homewarden-bridge.network",
            "run/systemd/network/10-homewarden-lan.network",
            "run/systemd/network/10-homewarden-uplink.network",
        ]
    );
    for (f, iface) in [("uplink", "end0"), ("lan", "enx1")] {
        let t = file(
            &files,
            &format!("run/systemd/network/10-homewarden-{f}.network"),
        );
        assert!(
            t.contains(&format!("Name={iface}\n")) && t.contains("Bridge=hwbr0\n"),
            "{t}"
        );
    }
    assert!(
        file(&files, "run/systemd/network/10-homewarden-bridge.netdev").contains("Kind=bridge")
    );
    assert!(file(&files, "run/systemd/network/10-homewarden-bridge.network").contains("DHCP=yes"));
    let nft = file(&files, "run/homewarden/network.nft");
    assert!(
        nft.ends_with("table ip homewarden_nat\ndelete table ip homewarden_nat\n"),
        "{nft}"
    );
}

#[test]
fn ap_renders_hostapd_private_with_hex_ssid_and_the_band_of_its_channel() {
    let n = net("network: { placement: ap, lan_address: 10.3.141.1/24, ap: { ssid: \"Home # IoT\", country: DE, channel: 36 } }");
    let files = render(&n, Path::new("/"), Some("correct horse battery")).unwrap();
    let h = files
        .iter()
        .find(|f| f.path == "run/homewarden/hostapd.conf")
        .unwrap();
    assert_eq!(h.mode, 0o600);
    let c = &h.contents;
    assert!(c.contains("interface=wlan0\n"), "{c}");
    assert!(c.contains("ssid2=486f6d65202320496f54\n"), "{c}");
    assert!(
        c.contains("country_code=DE\n") && c.contains("hw_mode=a\nchannel=36\n"),
        "{c}"
    );
    assert!(c.contains("ieee80211ac=1\n"), "{c}");
    assert!(c.contains("wpa_passphrase=correct horse battery\n"), "{c}");
    let d = file(&files, "run/homewarden/dnsmasq.conf");
    assert!(
        d.contains("interface=wlan0\n") && d.contains("option:router,10.3.141.1\n"),
        "{d}"
    );

    let n = net("network: { placement: ap }");
    let files = render(&n, Path::new("/"), Some("12345678")).unwrap();
    let c = file(&files, "run/homewarden/hostapd.conf");
    assert!(
        c.contains("hw_mode=g\nchannel=6\n") && !c.contains("80211ac"),
        "{c}"
    );
}

#[test]
fn ap_refuses_a_missing_or_unusable_passphrase() {
    let n = net("network: { placement: ap }");
    for (p, why) in [
        (None, "it is not set"),
        (Some(""), "it is not set"),
        (Some("short"), "it has 5 characters, WPA2 needs 8 to 63"),
        (Some("pässwörter-lang"), "printable ASCII"),
        (Some("line\nbreak-inside"), "printable ASCII"),
    ] {
        let e = render(&n, Path::new("/"), p).unwrap_err().to_string();
        assert!(
            e.starts_with(
                "network.placement: ap needs the Wi-Fi passphrase HOMEWARDEN_WIFI_PASSPHRASE"
            ) && e.contains(why),
            "{p:?}: {e}"
        );
    }
}

#[test]
fn the_pool_takes_the_larger_side_of_the_pi() {
    let a = |s: &str| s.parse::<ipnet::Ipv4Net>().unwrap();
    assert_eq!(
        pool(a("192.168.73.1/24")),
        (
            Ipv4Addr::new(192, 168, 73, 2),
            Ipv4Addr::new(192, 168, 73, 254)
        )
    );
    assert_eq!(
        pool(a("192.168.73.254/24")),
        (
            Ipv4Addr::new(192, 168, 73, 1),
            Ipv4Addr::new(192, 168, 73, 253)
        )
    );
    assert_eq!(
        pool(a("10.0.0.1/30")),
        (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 2))
    );
}

#[test]
fn status_line_counts_live_leases_only() {
    let p = "placement=ap\nuplink=eth0\nlan=wlan0\n";
    let leases = "1000 aa:bb:cc:dd:ee:01 192.168.73.20 cam *\n\
                  3000 aa:bb:cc:dd:ee:02 192.168.73.21 plug 01:aa\n\
                  0 aa:bb:cc:dd:ee:03 192.168.73.22 * *\n\
                  garbage\n";
    assert_eq!(
        describe(p, Some(leases), 2000),
        "network: ap placement, uplink eth0, devices on wlan0 (2 DHCP leases)"
    );
    assert_eq!(
        describe("placement=bridge\nuplink=end0\nlan=enx1\n", None, 0),
        "network: bridge placement, uplink end0, devices on enx1"
    );
    assert_eq!(
        describe(p, Some(""), 0),
        "network: ap placement, uplink eth0, devices on wlan0 (0 DHCP leases)"
    );
}

#[test]
fn paths_inside_files_follow_the_root() {
    let files = render(&net(""), Path::new("/tmp/pl"), None).unwrap();
    let d = file(&files, "run/homewarden/dnsmasq.conf");
    assert!(
        d.contains("dhcp-leasefile=/tmp/pl/run/homewarden/dnsmasq.leases\n"),
        "{d}"
    );
    assert!(
        d.contains("resolv-file=/tmp/pl/run/systemd/resolve/resolv.conf\n"),
        "{d}"
    );
}

#[test]
fn apply_writes_modes_and_removes_another_placements_files() {
    let dir = tempfile::tempdir().unwrap();
    let ap = render(
        &net("network: { placement: ap }"),
        dir.path(),
        Some("12345678"),
    )
    .unwrap();
    apply(&ap, dir.path()).unwrap();
    let hostapd = dir.path().join("run/homewarden/hostapd.conf");
    assert_eq!(
        fs::metadata(&hostapd).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let lan = dir
        .path()
        .join("run/systemd/network/10-homewarden-lan.network");
    assert_eq!(
        fs::metadata(&lan).unwrap().permissions().mode() & 0o777,
        0o644
    );

    let bridge = render(&net("network: { placement: bridge }"), dir.path(), None).unwrap();
    apply(&bridge, dir.path()).unwrap();
    assert!(!hostapd.exists());
    assert!(!dir.path().join("run/homewarden/dnsmasq.conf").exists());
    assert!(fs::read_to_string(&lan).unwrap().contains("Bridge=hwbr0"));
    assert!(dir
        .path()
        .join("run/systemd/network/10-homewarden-bridge.netdev")
        .exists());
}

#[test]
fn the_pis_resolver_answers_the_canaries_unless_turned_off() {
    let conf = |yaml: &str| {
        file(
            &render(&net(yaml), Path::new("/"), None).unwrap(),
            "run/homewarden/dnsmasq.conf",
        )
        .to_string()
    };
    let d = conf("");
    assert!(d.contains("\naddress=/use-application-dns.net/\n"), "{d}");
    assert!(
        d.contains("\naddress=/mask.icloud.com/mask-h2.icloud.com/\n"),
        "{d}"
    );
    let d = conf("network: { canaries: { firefox: false } }");
    assert!(!d.contains("use-application-dns.net"), "{d}");
    assert!(d.contains("mask.icloud.com"), "{d}");
    let d = conf("network: { canaries: { firefox: false, private_relay: false } }");
    assert!(!d.contains("address="), "{d}");
}
