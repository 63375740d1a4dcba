//! The daemon's dealings with glibc's allocator. A Pi pays for resident
//! memory, and glibc's defaults trade it for speed: big blocks move from
//! mmap to the heap once one is freed (the threshold grows up to 32 MB), so
//! a million-entry column is copied when it grows and its memory stays in
//! the heap after it is gone; each thread gets an arena of its own.

/// Large blocks always mmap'd (freed straight back to the kernel, grown by
/// mremap without a copy); two arenas for the runtime's threads.
pub fn tune() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt takes plain integers and only sets glibc's parameters.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 << 10);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}

/// Hands what a rendering freed back to the kernel: glibc keeps freed memory
/// in its arenas, and a Pi pays for the settled RSS for hours.
pub fn give_back() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim takes no pointers; it only walks glibc's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
