//! Captures made byte by byte for `suricata -r`: a DNS query, a TLS
//! ClientHello with SNI, a QUIC Initial with SNI and an HTTP request, each
//! from a home device, each on a flow of its own, so a test can count the
//! alerts one event raises.

use std::net::Ipv4Addr;

/// One IPv4 packet over Ethernet, timestamped by its place in the capture.
struct Packet(Vec<u8>);

/// A pcap file being built: flows get distinct client ports.
#[derive(Default)]
pub struct Capture {
    packets: Vec<Packet>,
    next_port: u16,
}

const CLIENT: Ipv4Addr = Ipv4Addr::new(198, 18, 1, 2);
const SERVER: Ipv4Addr = Ipv4Addr::new(203, 0, 113, 9);

impl Capture {
    fn port(&mut self) -> u16 {
        self.next_port += 1;
        40000 + self.next_port
    }

    /// A DNS query (type A) for `name` over UDP; returns the client's port.
    pub fn dns_query(&mut self, name: &str) -> u16 {
        let mut dns = vec![0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
        for label in name.split('.') {
            dns.push(label.len() as u8);
            dns.extend_from_slice(label.as_bytes());
        }
        dns.extend_from_slice(&[0, 0, 1, 0, 1]);
        self.udp_request(53, &dns)
    }

    /// One UDP datagram carrying `payload` from the device to the server's
    /// `dport`, from a port of its own; returns that port.
    fn udp_request(&mut self, dport: u16, payload: &[u8]) -> u16 {
        let sport = self.port();
        let mut udp = Vec::new();
        udp.extend_from_slice(&sport.to_be_bytes());
        udp.extend_from_slice(&dport.to_be_bytes());
        udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
        udp.extend_from_slice(&[0, 0]);
        udp.extend_from_slice(payload);
        self.packets.push(ip(CLIENT, SERVER, 17, &udp));
        sport
    }

    /// One UDP datagram from the device to `server`; returns the client's port.
    pub fn udp_to(&mut self, server: Ipv4Addr) -> u16 {
        let sport = self.port();
        let mut udp = Vec::new();
        udp.extend_from_slice(&sport.to_be_bytes());
        udp.extend_from_slice(&9999u16.to_be_bytes());
        udp.extend_from_slice(&12u16.to_be_bytes());
        udp.extend_from_slice(&[0, 0, b'p', b'i', b'n', b'g']);
        self.packets.push(ip(CLIENT, server, 17, &udp));
        sport
    }

    /// A TLS 1.2 ClientHello naming `sni`, on a TCP connection to port 443;
    /// returns the client's port.
    pub fn tls_client_hello(&mut self, sni: &str) -> u16 {
        self.tls_client_hello_to(sni, 443)
    }

    /// The same to port `dport` (853: DNS over TLS starts so).
    pub fn tls_client_hello_to(&mut self, sni: &str, dport: u16) -> u16 {
        let hs = client_hello(sni);
        let mut record = vec![0x16, 0x03, 0x01];
        record.extend_from_slice(&(hs.len() as u16).to_be_bytes());
        record.extend_from_slice(&hs);
        self.tcp_request(dport, &record)
    }

    /// A QUIC version 1 Initial naming `sni` (RFC 9001: encrypted and header-
    /// protected with the keys derived from its destination connection id,
    /// as a browser sends it), padded to 1,200 bytes, to UDP port 443;
    /// returns the client's port.
    pub fn quic_initial(&mut self, sni: &str) -> u16 {
        self.quic_initial_to(sni, 443)
    }

    /// The same to port `dport` (853: DNS over QUIC starts so).
    pub fn quic_initial_to(&mut self, sni: &str, dport: u16) -> u16 {
        // The connection id follows the flow's number: keys of its own.
        let datagram = quic::initial(&client_hello(sni), self.next_port);
        self.udp_request(dport, &datagram)
    }

    /// An HTTP/1.1 GET with `Host: host`, on a TCP connection to port 80;
    /// returns the client's port.
    pub fn http_request(&mut self, host: &str) -> u16 {
        let req =
            format!("GET / HTTP/1.1\r\nHost: {host}\r\nUser-Agent: test\r\nAccept: */*\r\n\r\n");
        self.tcp_request(80, req.as_bytes())
    }

    /// Handshake, the client's data, the server's acknowledgement: what
    /// Suricata needs to reassemble and parse the data in IDS (`-r`) mode.
    fn tcp_request(&mut self, dport: u16, data: &[u8]) -> u16 {
        let sport = self.port();
        let (c, s) = (1000u32, 5000u32);
        let seg = |src, dst, sp, dp, seq, ack, flags, payload: &[u8]| {
            let mut t = Vec::new();
            t.extend_from_slice(&u16::to_be_bytes(sp));
            t.extend_from_slice(&u16::to_be_bytes(dp));
            t.extend_from_slice(&u32::to_be_bytes(seq));
            t.extend_from_slice(&u32::to_be_bytes(ack));
            t.extend_from_slice(&[5 << 4, flags, 0xfa, 0xf0, 0, 0, 0, 0]);
            t.extend_from_slice(payload);
            ip(src, dst, 6, &t)
        };
        const SYN: u8 = 0x02;
        const ACK: u8 = 0x10;
        const PSH: u8 = 0x08;
        self.packets.extend([
            seg(CLIENT, SERVER, sport, dport, c, 0, SYN, &[]),
            seg(SERVER, CLIENT, dport, sport, s, c + 1, SYN | ACK, &[]),
            seg(CLIENT, SERVER, sport, dport, c + 1, s + 1, ACK, &[]),
            seg(CLIENT, SERVER, sport, dport, c + 1, s + 1, PSH | ACK, data),
            seg(
                SERVER,
                CLIENT,
                dport,
                sport,
                s + 1,
                c + 1 + data.len() as u32,
                ACK,
                &[],
            ),
        ]);
        sport
    }

    /// The capture as a pcap file (Ethernet link type, one packet a millisecond).
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [0xa1b2_c3d4u32, 0x0004_0002, 0, 0, 65535, 1] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        for (i, Packet(p)) in self.packets.iter().enumerate() {
            let usec = i as u32 * 1000;
            for v in [1_795_000_000 + usec / 1_000_000, usec % 1_000_000] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(&(p.len() as u32).to_le_bytes());
            out.extend_from_slice(p);
        }
        out
    }
}

/// An Ethernet frame holding an IPv4 packet; transport checksums are left at
/// zero (the replay runs with `-k none`), the IP header's is computed.
fn ip(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, payload: &[u8]) -> Packet {
    let mut h = vec![0x45, 0];
    h.extend_from_slice(&((20 + payload.len()) as u16).to_be_bytes());
    h.extend_from_slice(&[0, 1, 0x40, 0, 64, proto, 0, 0]);
    h.extend_from_slice(&src.octets());
    h.extend_from_slice(&dst.octets());
    let sum = h
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !((sum & 0xffff) + (sum >> 16)) as u16;
    h[10..12].copy_from_slice(&sum.to_be_bytes());
    let mut frame = Vec::from(*b"\x02\0\0\0\0\x02\x02\0\0\0\0\x01\x08\x00");
    frame.extend_from_slice(&h);
    frame.extend_from_slice(payload);
    Packet(frame)
}

/// A TLS ClientHello handshake message naming `sni` (no record layer).
fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut sni_ext = Vec::new();
    sni_ext.extend_from_slice(&((name.len() + 3) as u16).to_be_bytes());
    sni_ext.push(0);
    sni_ext.extend_from_slice(&(name.len() as u16).to_be_bytes());
    sni_ext.extend_from_slice(name);
    let mut exts = vec![0, 0];
    exts.extend_from_slice(&(sni_ext.len() as u16).to_be_bytes());
    exts.extend_from_slice(&sni_ext);
    let mut hello = vec![0x03, 0x03];
    hello.extend_from_slice(&[7; 32]);
    hello.extend_from_slice(&[0, 0, 2, 0xc0, 0x2f, 1, 0]);
    hello.extend_from_slice(&(exts.len() as u16).to_be_bytes());
    hello.extend_from_slice(&exts);
    let mut hs = vec![1];
    hs.extend_from_slice(&(hello.len() as u32).to_be_bytes()[1..]);
    hs.extend_from_slice(&hello);
    hs
}

/// QUIC v1 Initial packets (RFC 9000 §17.2.2, RFC 9001 §5).
mod quic {
    use ring::aead::quic::{HeaderProtectionKey, AES_128};
    use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_128_GCM};
    use ring::hkdf::{KeyType, Prk, Salt, HKDF_SHA256};

    /// RFC 9001 §5.2.
    const SALT: [u8; 20] = [
        0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c,
        0xad, 0xcc, 0xbb, 0x7f, 0x0a,
    ];

    struct Len(usize);

    impl KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }

    /// TLS 1.3's HKDF-Expand-Label with an empty context.
    fn expand(prk: &Prk, label: &str, len: usize) -> Vec<u8> {
        let full = format!("tls13 {label}");
        let info = [
            &(len as u16).to_be_bytes()[..],
            &[full.len() as u8],
            full.as_bytes(),
            &[0],
        ];
        let mut out = vec![0; len];
        prk.expand(&info, Len(len))
            .and_then(|okm| okm.fill(&mut out))
            .expect("HKDF lengths are fixed");
        out
    }

    /// The client's Initial carrying `hello` in one CRYPTO frame; the
    /// connection id follows `seed` so each flow has its own keys.
    pub fn initial(hello: &[u8], seed: u16) -> Vec<u8> {
        let dcid: Vec<u8> = (0..8u8).map(|i| i ^ (seed as u8) ^ 0x5a).collect();
        let scid = [0xc1, 0x1e, 0x47, (seed >> 8) as u8];
        let initial = Salt::new(HKDF_SHA256, &SALT).extract(&dcid);
        let client = Prk::new_less_safe(HKDF_SHA256, &expand(&initial, "client in", 32));
        let (key, iv, hp) = (
            expand(&client, "quic key", 16),
            expand(&client, "quic iv", 12),
            expand(&client, "quic hp", 16),
        );
        // CRYPTO frame (type 6, offset 0, length as a 2-byte varint), then
        // PADDING to a 1,200-byte datagram, as RFC 9000 §14.1 asks of a client.
        let mut payload = vec![0x06, 0x00];
        payload.extend_from_slice(&(0x4000 | hello.len() as u16).to_be_bytes());
        payload.extend_from_slice(hello);
        let pn: u32 = 0;
        let mut header = vec![0xc3, 0, 0, 0, 1, dcid.len() as u8];
        header.extend_from_slice(&dcid);
        header.push(scid.len() as u8);
        header.extend_from_slice(&scid);
        header.push(0); // no token
        let fixed = header.len() + 2 + 4 + 16; // the length field, PN, AEAD tag
        payload.resize(1200 - fixed, 0);
        header.extend_from_slice(&(0x4000 | (4 + payload.len() + 16) as u16).to_be_bytes());
        let pn_at = header.len();
        header.extend_from_slice(&pn.to_be_bytes());
        let mut nonce = [0u8; 12];
        nonce.copy_from_slice(&iv);
        for (n, p) in nonce[8..].iter_mut().zip(pn.to_be_bytes()) {
            *n ^= p;
        }
        let sealing = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &key).expect("16 bytes"));
        sealing
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&header),
                &mut payload,
            )
            .expect("sealed");
        let mut packet = header;
        packet.extend_from_slice(&payload);
        // Header protection: a mask from a sample 4 bytes past the PN's start.
        let mask = HeaderProtectionKey::new(&AES_128, &hp)
            .expect("16 bytes")
            .new_mask(&packet[pn_at + 4..pn_at + 20])
            .expect("a 16-byte sample");
        packet[0] ^= mask[0] & 0x0f;
        for i in 0..4 {
            packet[pn_at + i] ^= mask[1 + i];
        }
        packet
    }

    #[test]
    fn the_rfc_9001_appendix_a_client_keys_come_out() {
        // RFC 9001 §A.1: client initial keys for DCID 0x8394c8f03e515708.
        let dcid = [0x83, 0x94, 0xc8, 0xf0, 0x3e, 0x51, 0x57, 0x08];
        let initial = Salt::new(HKDF_SHA256, &SALT).extract(&dcid);
        let client = Prk::new_less_safe(HKDF_SHA256, &expand(&initial, "client in", 32));
        let hex = |b: Vec<u8>| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
        assert_eq!(
            hex(expand(&client, "quic key", 16)),
            "1f369613dd76d5467730efcbe3b1a22d"
        );
        assert_eq!(
            hex(expand(&client, "quic iv", 12)),
            "fa044b2f42a3fd3b46fb255c"
        );
        assert_eq!(
            hex(expand(&client, "quic hp", 16)),
            "9f50449e04a0e810283a1e9933adedd2"
        );
    }
}
