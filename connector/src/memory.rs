//! How much memory one piece of work takes: a global allocator that counts the bytes a thread allocates while a meter
//! runs on it, and raises a flag when they pass the meter's limit (the work is then cancelled by whoever watches the
//! flag). The `hanse` binary installs it over mimalloc; where it is not installed, a meter counts nothing.
//!
//! Counting is per thread and allocation-free (constant thread-locals without destructors). Memory freed on another
//! thread, or allocated before the meter started and freed under it, makes the count an estimate, never an excuse
//! to stop counting: the flag is raised only by bytes this thread allocated and still holds.

use std::alloc::{GlobalAlloc, Layout};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};

/// A global allocator over `A` that feeds the running meter of the allocating thread.
pub struct Metered<A>(pub A);

thread_local! {
    /// Bytes allocated and not freed since the meter started.
    static USED: Cell<isize> = const { Cell::new(0) };
    /// The meter's limit; `isize::MAX` when no meter runs.
    static LIMIT: Cell<isize> = const { Cell::new(isize::MAX) };
    /// The flag to raise, while a meter runs.
    static FLAG: Cell<*const AtomicBool> = const { Cell::new(std::ptr::null()) };
}

fn count(bytes: isize) {
    let _ = USED.try_with(|used| {
        let now = used.get().saturating_add(bytes);
        used.set(now);
        if bytes > 0 && now > LIMIT.try_with(Cell::get).unwrap_or(isize::MAX) {
            let _ = FLAG.try_with(|flag| {
                let flag = flag.get();
                if !flag.is_null() {
                    // SAFETY: the pointer is set by `metered` from a reference that outlives the meter, and cleared
                    // before that reference ends.
                    unsafe { (*flag).store(true, Ordering::Relaxed) };
                }
            });
        }
    });
}

// SAFETY: every call is passed on to `A` unchanged; the counting around it never allocates.
unsafe impl<A: GlobalAlloc> GlobalAlloc for Metered<A> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let pointer = unsafe { self.0.alloc(layout) };
        if !pointer.is_null() {
            count(layout.size() as isize);
        }
        pointer
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let pointer = unsafe { self.0.alloc_zeroed(layout) };
        if !pointer.is_null() {
            count(layout.size() as isize);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract, passed on.
        unsafe { self.0.dealloc(pointer, layout) };
        count(-(layout.size() as isize));
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract, passed on.
        let moved = unsafe { self.0.realloc(pointer, layout, new_size) };
        if !moved.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        moved
    }
}

/// Runs `work` on this thread with a meter of `limit` bytes: `exceeded` is raised once the bytes `work` allocated and
/// still holds pass the limit. Meters do not nest: an inner one replaces the outer for its duration.
pub fn metered<T>(limit: usize, exceeded: &AtomicBool, work: impl FnOnce() -> T) -> T {
    struct Stop;
    impl Drop for Stop {
        fn drop(&mut self) {
            let _ = FLAG.try_with(|flag| flag.set(std::ptr::null()));
            let _ = LIMIT.try_with(|cap| cap.set(isize::MAX));
        }
    }
    let _ = USED.try_with(|used| used.set(0));
    let _ = LIMIT.try_with(|cap| cap.set(isize::try_from(limit).unwrap_or(isize::MAX)));
    let _ = FLAG.try_with(|flag| flag.set(exceeded as *const AtomicBool));
    let _stop = Stop;
    work()
}
