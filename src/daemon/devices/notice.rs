//! The words of a new-device notice.

use crate::devices::Device;

/// The body of a new-device notice.
pub(super) fn new_device_text(d: &Device, quarantined: bool) -> String {
    let mac = d.mac;
    let mut t = format!(
        "A device joined the home network for the first time.\n\n\
         Device:    {}\nMAC:       {mac}{}\nVendor:    {}\nAddress:   {}\n",
        d.label(),
        if d.private_mac {
            " (private, randomised by the device)"
        } else {
            ""
        },
        d.vendor.as_deref().unwrap_or(if d.private_mac {
            "(cannot be told from a private address)"
        } else {
            "(unknown)"
        }),
        d.current().map_or("-".into(), |a| a.to_string()),
    );
    if let Some(h) = &d.hostname {
        t.push_str(&format!("Hostname:  {h}\n"));
    }
    if let Some(c) = &d.vendor_class {
        t.push_str(&format!("DHCP class: {c}\n"));
    }
    if quarantined {
        t.push_str(&format!(
            "\nIt is QUARANTINED (devices.new: quarantine): it may reach only the Pi's DHCP and DNS.\n\
             If you know it, let it in:  homewarden release {mac}\n"
        ));
    } else {
        t.push_str(&format!(
            "\nIf you know it, give it a name:  homewarden devices name {mac} \"living room TV\"\n\
             If you do not, cut it off:       homewarden quarantine {mac}\n"
        ));
    }
    t
}
