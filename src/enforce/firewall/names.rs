//! The names the home's devices resolved, and the addresses they got: learnt
//! from the DNS answers Suricata writes to its own eve socket. A bypassed flow
//! no longer shows its name (the query, SNI or Host went by long ago), so when
//! a name becomes listed, this book gives the addresses its flows went to and
//! the agent cuts them in the kernel, as it does for listed addresses.
//!
//! One task owns the book; Suricata's answers and the agent's questions reach
//! it as [`Msg`]s. Bounded: [`MAX_NAMES`] names, each for [`KEEP_SECS`].

use std::collections::HashMap;
use std::net::IpAddr;

use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};

use crate::intel::ioc::Domain;

/// Most names kept; past it the least recently answered go first.
pub const MAX_NAMES: usize = 8192;

/// Most addresses kept for one name.
pub const MAX_ADDRS: usize = 8;

/// How long an answer is remembered: a connection can outlive its answer's
/// TTL by hours (a stream, a device's cloud channel).
pub const KEEP_SECS: u64 = 24 * 3600;

/// One DNS answer: a name and the addresses it resolved to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Answer {
    /// The names in the answer: the one asked for and any CNAME on the way.
    pub names: Vec<Domain>,
    /// Its A and AAAA records.
    pub addrs: Vec<IpAddr>,
}

#[derive(Deserialize)]
struct Record {
    event_type: String,
    #[serde(default)]
    dns: Option<Dns>,
}

#[derive(Deserialize)]
struct Dns {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    /// eve 7: the question's name at the top.
    #[serde(default)]
    rrname: Option<String>,
    /// eve 8: the questions in a list.
    #[serde(default)]
    queries: Vec<Query>,
    #[serde(default)]
    grouped: Grouped,
}

#[derive(Deserialize)]
struct Query {
    rrname: String,
}

#[derive(Default, Deserialize)]
struct Grouped {
    #[serde(rename = "A", default)]
    a: Vec<String>,
    #[serde(rename = "AAAA", default)]
    aaaa: Vec<String>,
    #[serde(rename = "CNAME", default)]
    cname: Vec<String>,
}

/// Reads one eve line; an answer with addresses, or `None` for anything else
/// (other records, queries, answers without A/AAAA, names that do not parse).
pub fn parse(line: &[u8]) -> Option<Answer> {
    let r: Record = serde_json::from_slice(line).ok()?;
    let dns = r.dns.filter(|_| r.event_type == "dns")?;
    if dns.kind.as_deref().is_some_and(|k| k != "answer") {
        return None;
    }
    let asked = dns
        .rrname
        .or_else(|| dns.queries.into_iter().next().map(|q| q.rrname))?;
    let mut addrs: Vec<IpAddr> = dns
        .grouped
        .a
        .iter()
        .chain(&dns.grouped.aaaa)
        .filter_map(|a| a.parse().ok())
        .collect();
    addrs.sort_unstable();
    addrs.dedup();
    addrs.truncate(MAX_ADDRS);
    let names: Vec<Domain> = std::iter::once(&asked)
        .chain(&dns.grouped.cname)
        .filter_map(|n| Domain::parse(n).ok())
        .take(MAX_ADDRS)
        .collect();
    (!addrs.is_empty() && !names.is_empty()).then_some(Answer { names, addrs })
}

#[derive(Clone, Debug)]
struct Entry {
    addrs: Vec<IpAddr>,
    seen: u64,
    /// Answers taken in before this one's last: who goes first when full.
    order: u64,
    /// Its flows were cut once: not again for the same listing.
    cut: bool,
}

/// Names and the addresses they resolved to, newest answers kept.
#[derive(Debug, Default)]
pub struct Book {
    names: HashMap<Domain, Entry>,
    answers: u64,
}

impl Book {
    /// Takes an answer in; a new answer for a name makes it cuttable again.
    pub fn learn(&mut self, a: Answer, now: u64) {
        self.answers += 1;
        for name in a.names {
            let e = self.names.entry(name).or_insert(Entry {
                addrs: Vec::new(),
                seen: now,
                order: 0,
                cut: false,
            });
            e.seen = now;
            e.order = self.answers;
            e.cut = false;
            for addr in &a.addrs {
                if !e.addrs.contains(addr) {
                    e.addrs.push(*addr);
                }
            }
            // The newest addresses are the likeliest to carry a live flow.
            let over = e.addrs.len().saturating_sub(MAX_ADDRS);
            e.addrs.drain(..over);
        }
        if self.names.len() > MAX_NAMES {
            self.forget(now);
        }
    }

    /// Drops what is older than [`KEEP_SECS`]; if still full, the least
    /// recently answered eighth, so this runs once in a thousand answers.
    fn forget(&mut self, now: u64) {
        self.names
            .retain(|_, e| now.saturating_sub(e.seen) < KEEP_SECS);
        let over = self.names.len().saturating_sub(MAX_NAMES * 7 / 8);
        if self.names.len() > MAX_NAMES {
            let mut order: Vec<u64> = self.names.values().map(|e| e.order).collect();
            order.sort_unstable();
            let cutoff = order[over - 1];
            self.names.retain(|_, e| e.order > cutoff);
        }
    }

    /// The names (with their addresses) answered within [`KEEP_SECS`] whose
    /// flows were not cut yet.
    pub fn pending(&self, now: u64) -> Vec<(Domain, Vec<IpAddr>)> {
        self.names
            .iter()
            .filter(|(_, e)| !e.cut && now.saturating_sub(e.seen) < KEEP_SECS)
            .map(|(n, e)| (n.clone(), e.addrs.clone()))
            .collect()
    }

    /// Marks names whose flows were cut: not again until a new answer.
    pub fn mark_cut(&mut self, names: &[Domain]) {
        for n in names {
            if let Some(e) = self.names.get_mut(n) {
                e.cut = true;
            }
        }
    }

    /// Names known.
    pub fn len(&self) -> usize {
        self.names.len()
    }

    /// True when no name is known.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// What the book's task is told.
pub enum Msg {
    /// An answer Suricata saw.
    Learn(Answer),
    /// The names not cut yet (see [`Book::pending`]).
    Pending(oneshot::Sender<Vec<(Domain, Vec<IpAddr>)>>),
    /// These names' flows were cut.
    MarkCut(Vec<Domain>),
}

/// Runs the book until every sender is gone.
pub async fn run(mut rx: mpsc::Receiver<Msg>) {
    let mut book = Book::default();
    while let Some(msg) = rx.recv().await {
        match msg {
            Msg::Learn(a) => book.learn(a, crate::intel::unix_now()),
            Msg::Pending(reply) => {
                let _ = reply.send(book.pending(crate::intel::unix_now()));
            }
            Msg::MarkCut(names) => book.mark_cut(&names),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // As Suricata 7.0.10 writes it (eve-log dns, `formats: [grouped]`).
    const ANSWER: &str = r#"{"timestamp":"2026-12-03T17:40:01.123456+0000","flow_id":1,"event_type":"dns","src_ip":"203.0.113.53","src_port":53,"dest_ip":"198.18.1.2","dest_port":40000,"proto":"UDP","pkt_src":"wire/pcap","dns":{"version":2,"type":"answer","id":4242,"flags":"8180","qr":true,"rd":true,"ra":true,"opcode":0,"rrname":"www.Example.test","rrtype":"A","rcode":"NOERROR","grouped":{"CNAME":["edge.cdn.test"],"A":["192.0.2.7","192.0.2.8"]}}}"#;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    /// What the agent does with the book: the addresses of listed names, once.
    fn take_listed(book: &mut Book, listed: impl Fn(&Domain) -> bool, now: u64) -> Vec<IpAddr> {
        let (names, mut addrs): (Vec<Domain>, Vec<Vec<IpAddr>>) = book
            .pending(now)
            .into_iter()
            .filter(|(n, _)| listed(n))
            .unzip();
        book.mark_cut(&names);
        let mut addrs: Vec<IpAddr> = addrs.drain(..).flatten().collect();
        addrs.sort_unstable();
        addrs.dedup();
        addrs
    }

    #[test]
    fn answers_are_read_and_everything_else_skipped() {
        let a = parse(ANSWER.as_bytes()).unwrap();
        assert_eq!(a.names, [d("www.example.test"), d("edge.cdn.test")]);
        assert_eq!(
            a.addrs,
            [
                "192.0.2.7".parse::<IpAddr>().unwrap(),
                "192.0.2.8".parse().unwrap()
            ]
        );
        // eve 8 puts the question in a list.
        let v8 = r#"{"event_type":"dns","dns":{"type":"answer","queries":[{"rrname":"a.test","rrtype":"AAAA"}],"grouped":{"AAAA":["2001:db8::1"]}}}"#;
        assert_eq!(
            parse(v8.as_bytes()).unwrap().addrs,
            ["2001:db8::1".parse::<IpAddr>().unwrap()]
        );
        for skipped in [
            r#"{"event_type":"alert","dns":{"rrname":"a.test","grouped":{"A":["192.0.2.1"]}}}"#,
            r#"{"event_type":"dns","dns":{"type":"query","rrname":"a.test"}}"#,
            r#"{"event_type":"dns","dns":{"type":"answer","rrname":"a.test","rcode":"NXDOMAIN"}}"#,
            r#"{"event_type":"dns","dns":{"type":"answer","rrname":"a b\u001b[31m","grouped":{"A":["192.0.2.1"]}}}"#,
            r#"{"event_type":"dns","dns":{"type":"answer","rrname":"a.test","grouped":{"A":["not an address"]}}}"#,
            "not json",
        ] {
            assert_eq!(parse(skipped.as_bytes()), None, "{skipped}");
        }
    }

    #[test]
    fn a_listed_name_gives_its_addresses_once() {
        let mut book = Book::default();
        book.learn(parse(ANSWER.as_bytes()).unwrap(), 1000);
        let other = Answer {
            names: vec![d("ok.test")],
            addrs: vec!["192.0.2.9".parse().unwrap()],
        };
        book.learn(other, 1000);
        let listed = |n: &Domain| n.is_within(&d("example.test"));
        assert_eq!(
            take_listed(&mut book, listed, 1001),
            [
                "192.0.2.7".parse::<IpAddr>().unwrap(),
                "192.0.2.8".parse().unwrap()
            ]
        );
        // Cut once; a new answer for the name makes it cuttable again.
        assert!(take_listed(&mut book, listed, 1002).is_empty());
        book.learn(parse(ANSWER.as_bytes()).unwrap(), 1003);
        assert_eq!(take_listed(&mut book, listed, 1004).len(), 2);
        // The CNAME target is known by itself too.
        book.learn(parse(ANSWER.as_bytes()).unwrap(), 1005);
        assert_eq!(
            take_listed(&mut book, |n| n == &d("edge.cdn.test"), 1006).len(),
            2
        );
        // Old answers are not used.
        book.learn(parse(ANSWER.as_bytes()).unwrap(), 2000);
        assert!(take_listed(&mut book, listed, 2000 + KEEP_SECS).is_empty());
    }

    #[test]
    fn the_book_stays_bounded() {
        let mut book = Book::default();
        for i in 0..(MAX_NAMES as u64 + 100) {
            book.learn(
                Answer {
                    names: vec![d(&format!("n{i}.test"))],
                    addrs: (0..20u8).map(|j| IpAddr::from([192, 0, 2, j])).collect(),
                },
                1000, // a burst: every answer in the same second
            );
        }
        assert!(book.len() <= MAX_NAMES, "{}", book.len());
        assert!(book.len() > MAX_NAMES / 2, "{}", book.len());
        // The newest are kept, each with its last MAX_ADDRS addresses.
        let last = d(&format!("n{}.test", MAX_NAMES + 99));
        let got = take_listed(&mut book, |n| n == &last, 1001);
        assert_eq!(got.len(), MAX_ADDRS);
        assert!(take_listed(&mut book, |n| n == &d("n0.test"), 1001).is_empty());
    }
}
