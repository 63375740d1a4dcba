use std::path::Path;
use std::sync::Mutex;

use super::*;
use crate::devices::quarantine::{MAX_AUTO_HOLDS, MAX_AUTO_HOLDS_PER_HOUR};
use crate::respond::outbox::Outbox;

/// The scripts the stand-in for nft was given, newest last.
type Loaded = Arc<Mutex<Vec<String>>>;

fn settings(dir: &Path, new: NewDevice) -> (Settings, Loaded) {
    let loaded: Loaded = Arc::default();
    let l = loaded.clone();
    let s = Settings {
        state_dir: dir.to_path_buf(),
        leases: dir.join("dnsmasq.leases"),
        interface: None,
        scan: Duration::from_secs(10),
        new,
        leave: crate::devices::quarantine::Leave {
            own_network: true,
            ..Default::default()
        },
        max: 1024,
        do_not_break: vec!["198.18.1.3/32".parse().unwrap()],
        infrastructure: vec!["198.18.1.1/32".parse().unwrap()],
        oui: dir.join("oui.txt"),
        mail_on: true,
        push_to: vec!["phone".into()],
        load: Arc::new(move |script: &str| {
            l.lock().unwrap().push(script.to_string());
            Ok(())
        }),
    };
    std::fs::write(
        dir.join("oui.txt"),
        "24-0A-C4   (hex)\t\tEspressif Inc.\nB8-27-EB   (hex)\t\tRaspberry Pi Foundation\n",
    )
    .unwrap();
    (s, loaded)
}

fn seen(mac: &str, ip: &str, host: Option<&str>) -> Sighting {
    Sighting {
        mac: mac.parse().unwrap(),
        ip: ip.parse().unwrap(),
        hostname: host.map(str::to_string),
        vendor_class: None,
        leased: false,
    }
}

/// Asks `d` to quarantine `device` as root would, and waits for the answer.
async fn quarantine(
    d: &mut Devices,
    device: &str,
    for_secs: Option<u64>,
    reason: Option<String>,
) -> Result<DeviceView, String> {
    let (reply, answer) = oneshot::channel();
    d.on_msg(Msg::Quarantine {
        device: device.into(),
        for_secs,
        reason,
        force: false,
        by: "root".into(),
        reply,
    })
    .await;
    answer.await.unwrap()
}

fn outbox(dir: &Path) -> SharedOutbox {
    Arc::new(std::sync::Mutex::new(
        Outbox::open(&dir.join("outbox"), 100, 0).unwrap(),
    ))
}

fn notices(ob: &SharedOutbox) -> Vec<(String, Notice)> {
    respond::lock(ob)
        .due(u64::MAX / 2)
        .into_iter()
        .filter_map(|i| match i.action {
            Action::MailNotice(n) => Some((i.key, n)),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn the_home_is_learnt_silently_then_each_new_device_raises_one_notice() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = settings(dir.path(), NewDevice::Notice);
    let ob = outbox(dir.path());
    let (mut d, directory, view) = Devices::new(s.clone(), Some(ob.clone()), Arc::default());
    let cam = seen("24:0a:c4:00:00:02", "198.18.1.51", Some("cam"));
    let pi = seen("b8:27:eb:00:00:01", "198.18.1.52", None);
    d.scan(vec![cam.clone(), pi.clone()], 1000).await;
    assert!(
        notices(&ob).is_empty(),
        "the devices already home are not news"
    );
    assert_eq!(view.borrow().known, 2);
    let tag = directory.borrow()[&pi.ip].clone();
    assert_eq!(tag.name, "Raspberry Pi Foundation …00:00:01");
    // A third joins: one notice, however often it is seen.
    let tv = seen("da:a1:19:00:00:09", "198.18.1.53", Some("tv"));
    for t in [1010, 1020, 1030] {
        d.scan(vec![cam.clone(), tv.clone()], t).await;
    }
    let n = notices(&ob);
    assert_eq!(n.len(), 1, "{n:?}");
    assert_eq!(n[0].0, "device-new-da:a1:19:00:00:09");
    // The push targets hear of it too, each once.
    let pushes: Vec<String> = respond::lock(&ob)
        .due(u64::MAX / 2)
        .into_iter()
        .filter(|i| matches!(&i.action, Action::PushNotice(p) if p.target == "phone" && p.notice == n[0].1))
        .map(|i| i.key)
        .collect();
    assert_eq!(pushes, ["device-new-da:a1:19:00:00:09:push-phone"]);
    assert!(n[0].1.subject.contains("tv"), "{}", n[0].1.subject);
    assert!(
        n[0].1.text.contains("private, randomised"),
        "{}",
        n[0].1.text
    );
    assert!(
        n[0].1
            .text
            .contains("homewarden quarantine da:a1:19:00:00:09"),
        "{}",
        n[0].1.text
    );
    assert_eq!(view.borrow().last_new.as_ref().unwrap().name, "tv");
    // A restart keeps the inventory: nobody is new again.
    drop(d);
    let (mut again, _, view) = Devices::new(s, Some(ob.clone()), Arc::default());
    assert_eq!(view.borrow().known, 3);
    again.scan(vec![tv], 2000).await;
    assert_eq!(notices(&ob).len(), 1);
}

#[tokio::test]
async fn quarantine_goes_into_the_kernel_at_once_lasts_a_restart_and_is_released() {
    let dir = tempfile::tempdir().unwrap();
    let (s, loaded) = settings(dir.path(), NewDevice::Notice);
    let (mut d, _, view) = Devices::new(s.clone(), None, Arc::default());
    let cam = seen("24:0a:c4:00:00:02", "198.18.1.51", Some("cam"));
    let keep = seen("b8:27:eb:00:00:01", "198.18.1.3", None);
    d.scan(vec![cam.clone(), keep.clone()], 1000).await;
    let named = d.inv.find("cam").unwrap().mac;
    d.inv.name(&named, Some("front doorbell"));
    let v = quarantine(
        &mut d,
        "Front Doorbell",
        None,
        Some("talked to a C2".into()),
    )
    .await
    .unwrap();
    assert_eq!(v.label, "front doorbell");
    assert_eq!(
        v.quarantine.as_ref().unwrap().reason.as_deref(),
        Some("talked to a C2")
    );
    let last = loaded.lock().unwrap().last().cloned().unwrap();
    assert!(last.contains("elements = { 24:0a:c4:00:00:02 }"), "{last}");
    assert!(last.contains("elements = { 198.18.1.51 }"), "{last}");
    assert_eq!(view.borrow().quarantined[0].name, "front doorbell");
    // A do-not-break device needs --force.
    let e = quarantine(&mut d, "198.18.1.3", None, None)
        .await
        .unwrap_err();
    assert!(e.contains("do_not_break") && e.contains("--force"), "{e}");
    // With --force it is the owner's word.
    let (tx, rx) = oneshot::channel();
    d.on_msg(Msg::Quarantine {
        device: "198.18.1.3".into(),
        for_secs: None,
        reason: None,
        force: true,
        by: "root".into(),
        reply: tx,
    })
    .await;
    assert!(rx.await.unwrap().unwrap().quarantine.is_some());
    let (tx, rx) = oneshot::channel();
    d.on_msg(Msg::Release {
        device: "198.18.1.3".into(),
        reply: tx,
    })
    .await;
    assert!(rx.await.unwrap().unwrap().quarantine.is_none());
    // Unknown devices are a clear error.
    let (tx, rx) = oneshot::channel();
    d.on_msg(Msg::Release {
        device: "the fridge".into(),
        reply: tx,
    })
    .await;
    assert!(rx
        .await
        .unwrap()
        .unwrap_err()
        .contains("no device \"the fridge\""));
    // A restart puts the same table back before anything else.
    d.save();
    // `devices` without a daemon reads what was saved.
    let saved = saved_list(dir.path()).unwrap();
    let cam = saved.iter().find(|v| v.label == "front doorbell").unwrap();
    assert!(cam.quarantine.is_some() && saved.len() == 2, "{saved:?}");
    assert!(saved_list(&dir.path().join("nowhere")).unwrap().is_empty());
    drop(d);
    loaded.lock().unwrap().clear();
    let (again, _, _) = Devices::new(s.clone(), None, Arc::default());
    let stopper = crate::daemon::shutdown::Stopper::default();
    let (inbox_tx, inbox) = mpsc::channel(4);
    let task = tokio::spawn(again.run(inbox, stopper.handle()));
    let (tx, rx) = oneshot::channel();
    inbox_tx
        .send(Msg::Release {
            device: "24:0a:c4:00:00:02".into(),
            reply: tx,
        })
        .await
        .unwrap();
    let v = rx.await.unwrap().unwrap();
    assert!(v.quarantine.is_none());
    let scripts = loaded.lock().unwrap().clone();
    assert!(
        scripts[0].contains("24:0a:c4:00:00:02"),
        "restored: {scripts:?}"
    );
    assert!(
        !scripts.last().unwrap().contains("24:0a:c4:00:00:02"),
        "released: {scripts:?}"
    );
    stopper.stop().await;
    task.await.unwrap();
}

#[tokio::test]
async fn a_timed_quarantine_ends_by_itself_and_new_devices_can_be_held_on_arrival() {
    let dir = tempfile::tempdir().unwrap();
    let (s, loaded) = settings(dir.path(), NewDevice::Quarantine);
    let ob = outbox(dir.path());
    let (mut d, _, view) = Devices::new(s, Some(ob.clone()), Arc::default());
    let home = seen("b8:27:eb:00:00:01", "198.18.1.52", None);
    d.scan(vec![home.clone()], 1000).await;
    assert!(
        view.borrow().quarantined.is_empty(),
        "the first scan holds nobody"
    );
    let stranger = seen("24:0a:c4:00:00:07", "198.18.1.77", None);
    d.scan(vec![home.clone(), stranger.clone()], 1010).await;
    assert_eq!(view.borrow().quarantined.len(), 1);
    assert!(loaded
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .contains("198.18.1.77"));
    let n = notices(&ob);
    assert!(
        n[0].1.text.contains("QUARANTINED")
            && n[0].1.text.contains("homewarden release 24:0a:c4:00:00:07"),
        "{n:?}"
    );
    // The owner lets it in for an hour's trial of a timed hold on another.
    let v = quarantine(&mut d, "b8:27:eb:00:00:01", Some(60), None)
        .await
        .unwrap();
    let until = v.quarantine.unwrap().until.unwrap();
    d.scan(vec![], until - 1).await;
    assert_eq!(view.borrow().quarantined.len(), 2);
    d.scan(vec![], until).await;
    assert_eq!(view.borrow().quarantined.len(), 1);
    assert!(!loaded
        .lock()
        .unwrap()
        .last()
        .unwrap()
        .contains("198.18.1.52"));
}

#[tokio::test]
async fn a_kernel_that_refuses_the_table_is_an_error_not_a_silent_pass() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, _) = settings(dir.path(), NewDevice::Off);
    s.load = Arc::new(|_: &str| Err("Operation not permitted".into()));
    let (mut d, _, view) = Devices::new(s, None, Arc::default());
    d.scan(vec![seen("24:0a:c4:00:00:02", "198.18.1.51", None)], 1000)
        .await;
    let e = quarantine(&mut d, "198.18.1.51", None, None)
        .await
        .unwrap_err();
    assert!(
        e.contains("kernel refused it: quarantine table: Operation not permitted"),
        "{e}"
    );
    assert!(view
        .borrow()
        .error
        .as_deref()
        .unwrap()
        .contains("Operation not permitted"));
    // Recorded all the same: the next scan tries again.
    assert_eq!(view.borrow().quarantined.len(), 1);
}

#[tokio::test]
async fn a_torn_inventory_is_set_aside_and_the_owner_starts_afresh() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = settings(dir.path(), NewDevice::Notice);
    std::fs::write(dir.path().join(DEVICES_FILE), b"{\"inventory\": [tor").unwrap();
    let (_, _, view) = Devices::new(s, None, Arc::default());
    assert_eq!(view.borrow().known, 0);
    let aside: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name().to_string_lossy().starts_with(DEVICES_FILE)
                && e.file_name() != DEVICES_FILE
        })
        .collect();
    assert_eq!(aside.len(), 1, "the torn file is kept for a person to read");
    // Read without a daemon, a torn file is an error naming it, and stays where it is.
    std::fs::write(dir.path().join(DEVICES_FILE), b"{\"inventory\": [tor").unwrap();
    let e = saved_list(dir.path()).unwrap_err().to_string();
    assert!(e.contains(DEVICES_FILE), "{e}");
    assert!(dir.path().join(DEVICES_FILE).exists());
}

#[tokio::test]
async fn a_factory_reset_forgets_every_device_and_lifts_every_hold() {
    let dir = tempfile::tempdir().unwrap();
    let (s, loaded) = settings(dir.path(), NewDevice::Notice);
    let ob = outbox(dir.path());
    let (mut d, directory, view) = Devices::new(s.clone(), Some(ob.clone()), Arc::default());
    let cam = seen("24:0a:c4:00:00:02", "198.18.1.51", Some("cam"));
    d.scan(vec![cam.clone()], 1000).await;
    quarantine(&mut d, "cam", None, None).await.unwrap();
    assert!(dir.path().join(DEVICES_FILE).exists());

    let (tx, rx) = oneshot::channel();
    d.on_msg(Msg::Forget(tx)).await;
    rx.await.unwrap();
    let last = loaded.lock().unwrap().last().cloned().unwrap();
    assert!(
        !last.contains("24:0a:c4") && last.contains("delete table inet"),
        "the table goes: {last}"
    );
    assert!(!dir.path().join(DEVICES_FILE).exists());
    assert!(d.list().is_empty() && directory.borrow().is_empty());
    assert_eq!(
        (view.borrow().known, view.borrow().quarantined.len()),
        (0, 0)
    );
    // The stop does not write the old inventory back.
    d.save();
    assert!(saved_list(dir.path()).unwrap().is_empty());
    // The home is learnt afresh, as on a new appliance: no notice for the camera.
    d.scan(vec![cam], 1010).await;
    assert!(notices(&ob).is_empty(), "{:?}", notices(&ob));
    assert_eq!(view.borrow().known, 1);

    // Without an owner (devices off), the file goes all the same.
    d.save();
    assert!(dir.path().join(DEVICES_FILE).exists());
    forget_saved(dir.path());
    assert!(!dir.path().join(DEVICES_FILE).exists());
}

fn lease(mac: &str, ip: &str) -> Sighting {
    Sighting {
        leased: true,
        ..seen(mac, ip, None)
    }
}

/// The addresses the last table loaded holds.
fn held_addresses(loaded: &Loaded) -> String {
    let last = loaded.lock().unwrap().last().cloned().unwrap();
    let held = last.split("set held_ip {").nth(1).unwrap();
    held.split('}').next().unwrap().to_string()
}

#[tokio::test]
async fn a_held_device_that_answers_arp_for_the_router_or_a_neighbour_cuts_only_itself() {
    let dir = tempfile::tempdir().unwrap();
    let (s, loaded) = settings(dir.path(), NewDevice::Notice);
    let (mut d, _, _) = Devices::new(s, None, Arc::default());
    let cam = "24:0a:c4:00:00:02";
    let speaker = "44:65:0d:00:00:03";
    d.scan(
        vec![lease(cam, "198.18.1.51"), lease(speaker, "198.18.1.52")],
        1000,
    )
    .await;
    quarantine(&mut d, cam, None, None).await.unwrap();
    assert!(held_addresses(&loaded).contains("198.18.1.51"));
    // The held camera claims the router (the Pi here), the speaker's leased
    // address and an address nobody has: the neighbour table believes it.
    d.scan(
        vec![
            lease(cam, "198.18.1.51"),
            lease(speaker, "198.18.1.52"),
            seen(cam, "198.18.1.1", None),
            seen(cam, "198.18.1.52", None),
            seen(cam, "198.18.1.60", None),
        ],
        1010,
    )
    .await;
    let held = held_addresses(&loaded);
    assert!(
        held.contains("198.18.1.51") && held.contains("198.18.1.60"),
        "{held}"
    );
    assert!(
        !held.contains("198.18.1.1,") && !held.contains("198.18.1.1 "),
        "the router: {held}"
    );
    assert!(!held.contains("198.18.1.52"), "the speaker: {held}");
    // Asked by address, the lease says whose it is, not the last ARP.
    let e = quarantine(&mut d, "198.18.1.52", None, None).await.unwrap();
    assert_eq!(e.device.mac.to_string(), speaker);
}

#[tokio::test]
async fn a_flood_of_new_macs_gets_few_holds_and_never_the_homes_devices() {
    let dir = tempfile::tempdir().unwrap();
    let (mut s, loaded) = settings(dir.path(), NewDevice::Quarantine);
    s.max = 64;
    let (mut d, _, view) = Devices::new(s, None, Arc::default());
    let home: Vec<Sighting> = (0..3)
        .map(|i| {
            seen(
                &format!("b8:27:eb:00:00:{i:02x}"),
                &format!("198.18.1.{}", 10 + i),
                None,
            )
        })
        .collect();
    d.scan(home.clone(), 1000).await;
    // A thousand made-up MACs within a few minutes.
    for round in 0..10u32 {
        let flood: Vec<Sighting> = (0..100u32)
            .map(|i| {
                let n = round * 100 + i;
                seen(
                    &format!("da:00:00:00:{:02x}:{:02x}", n >> 8, n & 0xff),
                    "198.18.1.200",
                    None,
                )
            })
            .collect();
        d.scan(flood, 1010 + i64::from(round)).await;
    }
    let v = view.borrow().clone();
    assert!(
        v.quarantined.len() <= MAX_AUTO_HOLDS_PER_HOUR,
        "{} held",
        v.quarantined.len()
    );
    assert!(v.known <= 64, "{} known", v.known);
    for h in &home {
        assert!(d.inv.get(&h.mac).is_some_and(|x| x.baseline) && !d.q.holds(&h.mac));
    }
    let file = std::fs::metadata(dir.path().join(DEVICES_FILE))
        .unwrap()
        .len();
    assert!(file < 64 * 1024, "{file} bytes");
    assert!(loaded.lock().unwrap().last().unwrap().len() < 16 * 1024);
    // An hour on, a few more; never more than the cap at once.
    for hour in 1..8i64 {
        let flood: Vec<Sighting> = (0..50u32)
            .map(|i| {
                seen(
                    &format!("da:00:01:{hour:02x}:00:{i:02x}"),
                    "198.18.1.201",
                    None,
                )
            })
            .collect();
        d.scan(flood, 1000 + hour * 3600).await;
    }
    let held = view.borrow().quarantined.len();
    assert!(held <= MAX_AUTO_HOLDS, "{held} held");
    assert!(
        held > MAX_AUTO_HOLDS_PER_HOUR,
        "the cap, not the hourly rate alone: {held}"
    );
}

/// A new device answering for the do-not-break device's address does not
/// escape the hold on arrival by it; a new device whose own address is on
/// the list (nobody else was seen there first) does.
#[tokio::test]
async fn a_claimed_do_not_break_address_protects_nobody_but_its_first_holder() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = settings(dir.path(), NewDevice::Quarantine);
    let (mut d, _, view) = Devices::new(s, None, Arc::default());
    let router = seen("b8:27:eb:00:00:01", "198.18.1.52", None);
    d.scan(vec![router.clone()], 1000).await;
    // The do-not-break camera joins after the first scan: not held.
    let camera = seen("24:0a:c4:00:00:03", "198.18.1.3", None);
    d.scan(vec![router.clone(), camera.clone()], 1010).await;
    assert!(
        view.borrow().quarantined.is_empty(),
        "{:?}",
        view.borrow().quarantined
    );
    // A stranger claims the camera's address (a spoofed ARP reply): held.
    let spoofer = seen("24:0a:c4:00:00:66", "198.18.1.3", None);
    d.scan(vec![router, camera, spoofer], 1020).await;
    let held: Vec<String> = view
        .borrow()
        .quarantined
        .iter()
        .map(|q| q.mac.to_string())
        .collect();
    assert_eq!(held, ["24:0a:c4:00:00:66"], "{held:?}");
}
