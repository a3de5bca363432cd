//! The memory allocator for programs that run models: mimalloc, told to keep
//! the memory it frees.
//!
//! A forward pass allocates and frees the same large activations layer after
//! layer and pass after pass. An allocator that hands freed memory back to the
//! system gets it back as fresh pages, each zeroed by the kernel on first touch;
//! on the default model that cost a quarter of a forward pass
//! (docs/performance.md). A binary opts in by declaring it its global
//! allocator and calling [`keep_freed_memory`] first thing in `main`:
//!
//! ```
//! #[global_allocator]
//! static ALLOCATOR: steer_model::allocator::Allocator = steer_model::allocator::Allocator;
//!
//! fn main() {
//!     steer_model::allocator::keep_freed_memory();
//!     let activations = vec![0.5f32; 1 << 20];
//!     assert_eq!(activations.iter().sum::<f32>(), (1 << 19) as f32);
//! }
//! ```
//!
//! The resident memory then stays at the run's peak instead of following its
//! current use.

/// mimalloc as a global allocator.
pub use mimalloc::MiMalloc as Allocator;

/// `mi_option_purge_delay` in mimalloc 3's `mimalloc.h` (the workspace pins
/// the version): milliseconds before freed memory returns to the system, -1
/// for never.
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Keeps freed memory in mimalloc for reuse instead of returning it to the system.
pub fn keep_freed_memory() {
    // SAFETY: sets one option of the allocator library linked into this program.
    unsafe { libmimalloc_sys::mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_option_is_mimallocs_purge_delay() {
        // mimalloc 3 purges after 1,000 ms unless told otherwise; that default
        // identifies the option behind the index.
        // SAFETY: reads and sets options of the linked allocator library.
        let before = unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) };
        assert_eq!(before, 1000);
        keep_freed_memory();
        assert_eq!(unsafe { libmimalloc_sys::mi_option_get(MI_OPTION_PURGE_DELAY) }, -1);
    }
}
