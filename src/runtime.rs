//! Process-wide settings that make libtorch fast on CPU.
//!
//! glibc's `malloc` serves blocks above a dynamic threshold (at most 32 MiB) with fresh `mmap`
//! pages and returns them to the kernel on `free`. A MedSigLIP-448 forward pass allocates and frees
//! hundreds of such blocks (attention scores, MLP activations), so every one is page-faulted in and
//! zeroed again: measured on this project's 2-core machine, that is 25-40% of a bf16 forward pass
//! (docs/performance.md). [`tune_allocator`] raises the mmap and trim thresholds to 512 MiB, so
//! freed blocks stay in the heap and are reused. The cost: memory freed by libtorch is kept by the
//! process (its peak RSS does not grow, but it does not shrink after the peak either).
//!
//! Models call it when they are built; set `LDCTQ_MALLOC_TUNING=0` to leave the allocator alone
//! (e.g. when the host process tunes it itself or uses another allocator).
use std::sync::OnceLock;

const THRESHOLD: usize = 512 << 20;

/// Tunes glibc's allocator once per process (a no-op elsewhere or with `LDCTQ_MALLOC_TUNING=0`);
/// returns whether the tuning is in effect.
pub fn tune_allocator() -> bool {
    static TUNED: OnceLock<bool> = OnceLock::new();
    *TUNED.get_or_init(|| {
        if std::env::var("LDCTQ_MALLOC_TUNING").is_ok_and(|v| v == "0") {
            return false;
        }
        set_thresholds()
    })
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn set_thresholds() -> bool {
    // SAFETY: mallopt only changes allocator parameters; it is thread-safe in glibc.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, THRESHOLD as libc::c_int) == 1
            && libc::mallopt(libc::M_TRIM_THRESHOLD, THRESHOLD as libc::c_int) == 1
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_thresholds() -> bool {
    let _ = THRESHOLD;
    false
}

thread_local! {
    static SECOND_ORDER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with attention in its explicit form on every device and dtype, so that the graph it
/// builds can be differentiated twice (libtorch's fused attention kernels have no double backward):
/// the trainer's input-gradient penalty.
pub fn with_second_order<T>(f: impl FnOnce() -> T) -> T {
    let before = SECOND_ORDER.with(|c| c.replace(true));
    let out = f();
    SECOND_ORDER.with(|c| c.set(before));
    out
}

/// Whether [`with_second_order`] is in force on this thread.
pub fn second_order() -> bool {
    SECOND_ORDER.with(|c| c.get())
}

/// Whether bf16 attention on CPU uses the explicit form (matrix product, softmax, matrix product)
/// rather than libtorch's flash kernel: yes unless `LDCTQ_CPU_ATTENTION=sdpa` (for comparisons).
pub fn explicit_cpu_attention() -> bool {
    static EXPLICIT: OnceLock<bool> = OnceLock::new();
    *EXPLICIT.get_or_init(|| std::env::var("LDCTQ_CPU_ATTENTION").map_or(true, |v| v != "sdpa"))
}
