//! The device inventory stays small with a thousand devices, and a flood of
//! made-up MACs (a neighbour table an attacker fills) cannot grow it past
//! its bound: the heap it holds and the file it saves are measured, through
//! the devices' owner as the agent runs it.

use std::alloc::{GlobalAlloc, Layout, System};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use homewarden::config::NewDevice;
use homewarden::daemon::devices::{Devices, Settings, DEVICES_FILE};
use homewarden::devices::sight::Sighting;
use homewarden::devices::Mac;

/// Bytes the process holds on the heap now.
struct Counting;

static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        // SAFETY: the caller's layout, handed on unchanged.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
        // SAFETY: `p` came from `alloc` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Device `i`: a MAC of a real vendor block, the longest hostname DHCP may give.
fn sighting(i: u32, round: u32) -> Sighting {
    let [_, a, b, c] = i.to_be_bytes();
    Sighting {
        mac: Mac([0x24, 0x0a, 0xc4, a, b, c]),
        ip: IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i * 16 + round)),
        hostname: Some(format!("{i:0>63}")),
        vendor_class: Some(format!("{round:x<64}")),
        leased: false,
    }
}

#[tokio::test]
async fn a_thousand_devices_cost_little_memory_and_disk_and_a_flood_is_capped() {
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        state_dir: dir.path().to_path_buf(),
        leases: dir.path().join("dnsmasq.leases"),
        interface: None,
        scan: Duration::from_secs(10),
        new: NewDevice::Notice,
        leave: Default::default(),
        max: 1024,
        do_not_break: Vec::new(),
        infrastructure: Vec::new(),
        oui: homewarden::devices::oui::OUI_FILE.into(),
        mail_on: false,
        push_to: Vec::new(),
        load: Arc::new(|_: &str| Ok(())),
    };
    let before = LIVE.load(Ordering::Relaxed);
    let (mut owner, directory, view) = Devices::new(settings, None, Arc::default());
    // A thousand devices, each seen at more addresses over time than are kept.
    for round in 0..12 {
        let seen: Vec<Sighting> = (0..1000).map(|i| sighting(i, round)).collect();
        owner.scan(seen, 1_000 + i64::from(round)).await;
    }
    assert_eq!(view.borrow().known, 1000);
    let held = LIVE.load(Ordering::Relaxed) - before;
    let file = std::fs::metadata(dir.path().join(DEVICES_FILE))
        .unwrap()
        .len();
    println!("1,000 devices: {held} bytes of heap, {file} bytes on disk");
    // ~1 KiB a device in memory (8 addresses, the directory's entries) and on disk.
    assert!(held < 4 << 20, "{held} bytes of heap for 1,000 devices");
    assert!(file < 2 << 20, "{file} bytes on disk for 1,000 devices");
    let d = owner.list();
    assert!(
        d.iter().all(|v| v.device.addresses.len() == 8),
        "addresses are bounded per device"
    );

    // Ten thousand made-up MACs: the inventory keeps its bound.
    let flood: Vec<Sighting> = (1000..11_000).map(|i| sighting(i, 0)).collect();
    owner.scan(flood, 5_000).await;
    assert_eq!(view.borrow().known, 1024);
    let after = LIVE.load(Ordering::Relaxed) - before;
    let file_after = std::fs::metadata(dir.path().join(DEVICES_FILE))
        .unwrap()
        .len();
    println!("after a flood of 10,000: {after} bytes of heap, {file_after} bytes on disk");
    assert!(after < 5 << 20, "{after} bytes of heap after a flood");
    assert!(
        file_after < 2 << 20,
        "{file_after} bytes on disk after a flood"
    );
    assert!(directory.borrow().len() <= 1024 * 8);
}
