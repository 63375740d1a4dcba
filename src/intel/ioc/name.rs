//! Where domain names live. A name in an allocation of its own costs a
//! 20-character name 80 bytes on glibc (an `Arc` and its text: two chunks
//! with their headers); a million of them were most of the daemon's memory.
//! Names of one pull are packed instead into shared chunks (about 26 bytes a
//! name), each chunk counting the names that still point into it and freed
//! with the last of them. A name parsed on its own gets a chunk of its own.
//!
//! Layout of a chunk: a [`Header`], then records `[back: u32][len: u8][bytes]`
//! with `back` the record's distance from the chunk's start, so a name finds
//! its chunk without a pointer of its own.

use std::alloc::{alloc, dealloc, handle_alloc_error, Layout};
use std::ptr::NonNull;
use std::sync::atomic::{fence, AtomicUsize, Ordering};

#[repr(C)]
struct Header {
    /// Names pointing into the chunk, plus one while an arena fills it.
    refs: AtomicUsize,
    /// The chunk's size in bytes (for its layout when freed).
    size: usize,
}

const HEADER: usize = std::mem::size_of::<Header>();
/// `back` (u32) and `len` (u8) before the bytes.
const RECORD: usize = 5;
/// The first chunk of an arena: an incremental pull of a few names stays small.
const FIRST_CHUNK: usize = 4 << 10;
/// Chunks stop growing here (a chunk is freed only with its last name).
const MAX_CHUNK: usize = 256 << 10;
/// Longest name a record holds (a DNS name is at most 253 bytes).
pub(super) const MAX_LEN: usize = u8::MAX as usize;

/// Allocates a chunk of `size` bytes whose count starts at one.
fn new_chunk(size: usize) -> NonNull<Header> {
    let layout = chunk_layout(size);
    // SAFETY: the layout has a non-zero size (at least the header).
    let ptr = unsafe { alloc(layout) };
    let Some(chunk) = NonNull::new(ptr.cast::<Header>()) else {
        handle_alloc_error(layout)
    };
    // SAFETY: freshly allocated, aligned for Header, large enough.
    unsafe {
        chunk.as_ptr().write(Header {
            refs: AtomicUsize::new(1),
            size,
        })
    };
    chunk
}

fn chunk_layout(size: usize) -> Layout {
    match Layout::from_size_align(size, std::mem::align_of::<Header>()) {
        Ok(l) => l,
        // Sizes here are at most MAX_CHUNK or a header and one record.
        Err(_) => unreachable!("chunk size {size} is always a valid layout"),
    }
}

/// Drops one reference to a chunk, freeing it with the last.
///
/// # Safety
/// `chunk` is a live chunk and the caller owns one of its references.
unsafe fn release(chunk: NonNull<Header>) {
    // SAFETY: the chunk is live while the caller holds a reference.
    let header = unsafe { chunk.as_ref() };
    // As in std's Arc: release on the decrement, acquire before freeing.
    if header.refs.fetch_sub(1, Ordering::Release) == 1 {
        fence(Ordering::Acquire);
        let layout = chunk_layout(header.size);
        // SAFETY: the last reference is gone; allocated with this layout.
        unsafe { dealloc(chunk.as_ptr().cast(), layout) };
    }
}

/// Writes a record for `s` at `offset` of `chunk` and returns its name,
/// without touching the count.
///
/// # Safety
/// The chunk has room for the record at `offset`, and `s.len() <= MAX_LEN`.
unsafe fn write_record(chunk: NonNull<Header>, offset: usize, s: &str) -> Name {
    // SAFETY: in bounds by the caller's promise; the record is byte-aligned.
    unsafe {
        let rec = chunk.as_ptr().cast::<u8>().add(offset);
        rec.cast::<[u8; 4]>().write((offset as u32).to_ne_bytes());
        rec.add(4).write(s.len() as u8);
        std::ptr::copy_nonoverlapping(s.as_ptr(), rec.add(RECORD), s.len());
        Name(NonNull::new_unchecked(rec))
    }
}

/// A shared, immutable name: one pointer wide, cloned by counting.
pub(super) struct Name(NonNull<u8>);

// SAFETY: the bytes never change after the record is written, and the count
// is atomic: a Name is as shareable as an Arc<str>.
unsafe impl Send for Name {}
// SAFETY: as above.
unsafe impl Sync for Name {}

impl Name {
    /// A name in a chunk of its own.
    pub(super) fn single(s: &str) -> Name {
        assert!(
            s.len() <= MAX_LEN,
            "names are checked to be at most {MAX_LEN} bytes"
        );
        let chunk = new_chunk(HEADER + RECORD + s.len());
        // SAFETY: the chunk was sized for exactly this record; its count of
        // one is this name's.
        unsafe { write_record(chunk, HEADER, s) }
    }

    fn chunk(&self) -> NonNull<Header> {
        // SAFETY: every Name points at a record written by write_record, whose
        // `back` leads to the start of its (live, as we hold a count) chunk.
        unsafe {
            let back = u32::from_ne_bytes(self.0.as_ptr().cast::<[u8; 4]>().read());
            NonNull::new_unchecked(self.0.as_ptr().sub(back as usize).cast::<Header>())
        }
    }

    /// The text.
    pub(super) fn as_str(&self) -> &str {
        // SAFETY: the record holds `len` bytes copied from a &str, immutable
        // since and alive while this name counts in its chunk.
        unsafe {
            let len = self.0.as_ptr().add(4).read() as usize;
            let bytes = std::slice::from_raw_parts(self.0.as_ptr().add(RECORD), len);
            std::str::from_utf8_unchecked(bytes)
        }
    }
}

impl Clone for Name {
    fn clone(&self) -> Name {
        // SAFETY: our own count keeps the chunk alive.
        let header = unsafe { self.chunk().as_ref() };
        // Relaxed as in std's Arc: a new reference comes from an existing one.
        if header.refs.fetch_add(1, Ordering::Relaxed) > isize::MAX as usize {
            std::process::abort();
        }
        Name(self.0)
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        // SAFETY: this name owns one count of its chunk.
        unsafe { release(self.chunk()) }
    }
}

/// An arena that packs names into shared chunks; one per set being built, so
/// that the names of one pull live, and go, together.
#[derive(Default)]
pub struct Names {
    /// The chunk being filled (the arena holds one count on it), its size and fill.
    current: Option<(NonNull<Header>, usize)>,
    used: usize,
    next_size: usize,
}

// SAFETY: the arena only writes into its current chunk behind &mut self;
// records already handed out are never written again.
unsafe impl Send for Names {}
// SAFETY: no method writes through &self.
unsafe impl Sync for Names {}

impl Names {
    /// A copy of `s` in this arena.
    pub(super) fn name(&mut self, s: &str) -> Name {
        assert!(
            s.len() <= MAX_LEN,
            "names are checked to be at most {MAX_LEN} bytes"
        );
        let need = RECORD + s.len();
        let (chunk, size) = match self.current {
            Some((chunk, size)) if self.used + need <= size => (chunk, size),
            old => {
                if let Some((chunk, _)) = old {
                    // SAFETY: the arena's own count on the chunk it fills.
                    unsafe { release(chunk) };
                }
                let size = self.next_size.max(FIRST_CHUNK);
                self.next_size = (size * 2).min(MAX_CHUNK);
                let chunk = new_chunk(size);
                self.current = Some((chunk, size));
                self.used = HEADER;
                (chunk, size)
            }
        };
        debug_assert!(self.used + need <= size);
        // SAFETY: the chunk is live (the arena's count) and has room.
        let name = unsafe { write_record(chunk, self.used, s) };
        // SAFETY: as above; the new name's count.
        unsafe { chunk.as_ref() }
            .refs
            .fetch_add(1, Ordering::Relaxed);
        self.used += need;
        name
    }
}

impl Drop for Names {
    fn drop(&mut self) {
        if let Some((chunk, _)) = self.current.take() {
            // SAFETY: the arena's own count.
            unsafe { release(chunk) };
        }
    }
}

/// A clone starts empty: the names already made are shared, not copied.
impl Clone for Names {
    fn clone(&self) -> Names {
        Names::default()
    }
}

impl std::fmt::Debug for Names {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Names")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refs(n: &Name) -> usize {
        // SAFETY: the test holds `n`.
        unsafe { n.chunk().as_ref() }.refs.load(Ordering::SeqCst)
    }

    #[test]
    fn a_single_name_reads_back_and_counts_its_clones() {
        let a = Name::single("evil.example");
        assert_eq!(a.as_str(), "evil.example");
        let b = a.clone();
        assert_eq!(refs(&a), 2);
        drop(a);
        assert_eq!(b.as_str(), "evil.example");
        assert_eq!(refs(&b), 1);
        assert_eq!(Name::single("").as_str(), "");
        let long = "a".repeat(MAX_LEN);
        assert_eq!(Name::single(&long).as_str(), long);
    }

    #[test]
    fn an_arena_packs_names_and_its_chunks_outlive_it_while_names_point_in() {
        let mut arena = Names::default();
        let names: Vec<(String, Name)> = (0..20_000)
            .map(|i| {
                let s = format!("h{i}.b{}-evil.net", i % 977);
                let n = arena.name(&s);
                (s, n)
            })
            .collect();
        // Many names share a chunk; the chunk being filled also counts the arena.
        let first = refs(&names[0].1);
        assert!(first > 100, "{first}");
        let last = refs(&names[names.len() - 1].1);
        drop(arena);
        assert_eq!(refs(&names[0].1), first);
        assert_eq!(refs(&names[names.len() - 1].1), last - 1);
        let kept: Vec<Name> = names.iter().step_by(1000).map(|(_, n)| n.clone()).collect();
        for (s, n) in &names {
            assert_eq!(n.as_str(), s);
        }
        drop(names);
        for (i, n) in kept.iter().enumerate() {
            assert_eq!(
                n.as_str(),
                format!("h{}.b{}-evil.net", i * 1000, (i * 1000) % 977)
            );
            // Only the names kept count now, in whichever chunk each lives.
            let neighbours = kept.iter().filter(|k| k.chunk() == n.chunk()).count();
            assert_eq!(refs(n), neighbours);
        }
    }

    #[test]
    fn names_cross_threads_and_chunks_grow_up_to_their_cap() {
        let mut arena = Names::default();
        let names: Vec<Name> = (0..50_000)
            .map(|i| arena.name(&format!("{i:0>60}")))
            .collect();
        assert_eq!(arena.current.map(|(_, size)| size), Some(MAX_CHUNK));
        let names = std::sync::Arc::new(names);
        let handles: Vec<_> = (0..4)
            .map(|t| {
                let names = names.clone();
                std::thread::spawn(move || {
                    let mut clones = Vec::new();
                    for (i, n) in names.iter().enumerate().skip(t).step_by(4) {
                        assert_eq!(n.as_str(), format!("{i:0>60}"));
                        clones.push(n.clone());
                    }
                    clones
                })
            })
            .collect();
        let clones: Vec<Name> = handles
            .into_iter()
            .flat_map(|h| h.join().unwrap_or_default())
            .collect();
        assert_eq!(clones.len(), 50_000);
        drop(names);
        drop(arena);
        assert!(clones.iter().all(|n| n.as_str().len() == 60));
    }
}
