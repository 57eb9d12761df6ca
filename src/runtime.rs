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
//!
//! [`product_kind`] picks the dtype of the matrix products of bf16 and f16 weights on CPU: their own
//! where the CPU multiplies them fast, f32 where libtorch would emulate them (no AVX-512-BF16/AMX).
use std::sync::atomic::{AtomicU8, Ordering::Relaxed};
use std::sync::OnceLock;
use tch::{Kind, Tensor};

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
pub(crate) fn with_second_order<T>(f: impl FnOnce() -> T) -> T {
    let before = SECOND_ORDER.with(|c| c.replace(true));
    let out = f();
    SECOND_ORDER.with(|c| c.set(before));
    out
}

/// Whether [`with_second_order`] is in force on this thread.
pub(crate) fn second_order() -> bool {
    SECOND_ORDER.with(|c| c.get())
}

/// Whether bf16 attention on CPU uses the explicit form (matrix product, softmax, matrix product)
/// rather than libtorch's flash kernel: yes unless `LDCTQ_CPU_ATTENTION=sdpa` (for comparisons).
pub(crate) fn explicit_cpu_attention() -> bool {
    static EXPLICIT: OnceLock<bool> = OnceLock::new();
    *EXPLICIT.get_or_init(|| std::env::var("LDCTQ_CPU_ATTENTION").map_or(true, |v| v != "sdpa"))
}

/// How bf16 and f16 weights multiply on CPU: in their own dtype (`Native`), or in f32 on the weights
/// cast up at use (`F32`). `Auto` decides per dtype, once per process (see [`product_kind`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReducedProducts {
    Auto,
    Native,
    F32,
}

/// [`set_reduced_products`]'s choice (0: none made, the environment's holds).
static REDUCED_PRODUCTS: AtomicU8 = AtomicU8::new(0);

/// Overrides the choice of [`product_kind`] for this process (`LDCTQ_REDUCED_PRODUCTS=native|f32|auto`
/// sets the initial one). Models built before keep working: the choice is read at each product.
pub fn set_reduced_products(mode: ReducedProducts) {
    REDUCED_PRODUCTS.store(mode as u8 + 1, Relaxed);
}

/// The current choice (see [`set_reduced_products`]).
pub fn reduced_products() -> ReducedProducts {
    static FROM_ENV: OnceLock<ReducedProducts> = OnceLock::new();
    match REDUCED_PRODUCTS.load(Relaxed) {
        1 => ReducedProducts::Auto,
        2 => ReducedProducts::Native,
        3 => ReducedProducts::F32,
        _ => *FROM_ENV.get_or_init(|| match std::env::var("LDCTQ_REDUCED_PRODUCTS").as_deref() {
            Ok("native") => ReducedProducts::Native,
            Ok("f32") => ReducedProducts::F32,
            _ => ReducedProducts::Auto,
        }),
    }
}

/// The dtype in which the matrix products of weights of dtype `kind` on `device` run: the weights'
/// own, except bf16 or f16 on a CPU whose products in that dtype are slower than in f32. Without
/// AVX-512-BF16 or AMX, libtorch emulates bf16 products: measured 2 GFLOP/s against 129 GFLOP/s in
/// f32 on an AVX2 Zen 3 (docs/performance.md), so a bf16 MedSigLIP-448 forward pass would take minutes.
/// There the weights stay bf16 in memory and are cast to f32 where they are used.
///
/// With [`ReducedProducts::Auto`]: native where the CPU has the instructions (AVX-512-BF16 for bf16,
/// AVX-512-FP16 for f16), otherwise whichever of the two dtypes multiplies faster in a short
/// measurement (a 64 x 512 @ 512 x 512 product, best of 3; a few ms, once per process and dtype).
pub fn product_kind(kind: Kind, device: tch::Device) -> Kind {
    if !matches!(kind, Kind::BFloat16 | Kind::Half) || device != tch::Device::Cpu {
        return kind;
    }
    let native = match reduced_products() {
        ReducedProducts::Native => true,
        ReducedProducts::F32 => false,
        ReducedProducts::Auto => {
            static BF16: OnceLock<bool> = OnceLock::new();
            static F16: OnceLock<bool> = OnceLock::new();
            let cell = if kind == Kind::BFloat16 { &BF16 } else { &F16 };
            *cell.get_or_init(|| has_native_products(kind) || faster_than_f32(kind))
        }
    };
    if native {
        kind
    } else {
        Kind::Float
    }
}

/// Whether the CPU has instructions for products in `kind` (bf16 or f16) that libtorch uses.
fn has_native_products(kind: Kind) -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        match kind {
            Kind::BFloat16 => std::arch::is_x86_feature_detected!("avx512bf16"),
            _ => std::arch::is_x86_feature_detected!("avx512fp16"),
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        let _ = kind;
        false
    }
}

/// Whether a product in `kind` runs faster than the same product in f32 on this CPU.
fn faster_than_f32(kind: Kind) -> bool {
    let _guard = tch::no_grad_guard();
    let best = |k: Kind| -> f64 {
        let a = Tensor::ones([64, 512], (k, tch::Device::Cpu));
        let b = Tensor::ones([512, 512], (k, tch::Device::Cpu));
        let _ = a.matmul(&b); // warm-up (oneDNN builds its kernels on first use)
        (0..3)
            .map(|_| {
                let t = std::time::Instant::now();
                let _ = a.matmul(&b);
                t.elapsed().as_secs_f64()
            })
            .fold(f64::INFINITY, f64::min)
    };
    best(kind) < best(Kind::Float)
}
