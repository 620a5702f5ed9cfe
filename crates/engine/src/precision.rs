//! Mixed precision, as PyTorch's autocast means it: with [`Precision::Bf16`] every f32 matrix
//! product (linear layers forward and backward, attention's QKᵀ and P·V, the LM head) rounds
//! its two inputs to bfloat16 and accumulates in f32; everything else (norms, softmax, the
//! loss, the optimizer and its master weights) stays f32.
//!
//! The setting is process-wide, like a training run: the trainer sets it once before the
//! first step. Products in f64 (gradient checks) are never affected.
//!
//! The bf16 products run on the best kernel the CPU has ([`Bf16Kernel`]), chosen at run time:
//! AMX tiles, then AVX512-BF16 dot products, then a portable path that rounds the inputs to
//! bf16 and multiplies them with the f32 GEMM (exact products of bf16 values, f32 sums: the
//! same arithmetic, on any x86-64 or other CPU). `TUNESMITH_BF16_KERNEL=amx|avx512|fallback`
//! forces one (a kernel the CPU lacks falls back, with a warning on stderr).

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// The precision of matrix products.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// Products in f32 (the default).
    #[default]
    Fp32,
    /// Products from bf16-rounded inputs, accumulated in f32.
    Bf16,
}

impl Precision {
    /// The name used in configs and manifests (`fp32`, `bf16`).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
        }
    }

    /// Parses a config value: `fp32` (or `f32`) and `bf16`.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "fp32" | "f32" | "float32" => Some(Precision::Fp32),
            "bf16" | "bfloat16" => Some(Precision::Bf16),
            _ => None,
        }
    }
}

static CURRENT: AtomicU8 = AtomicU8::new(0);

/// Sets the precision of every later matrix product in this process.
pub fn set(p: Precision) {
    CURRENT.store(p as u8, Ordering::Relaxed);
}

/// The precision matrix products use now.
#[inline]
pub fn current() -> Precision {
    if CURRENT.load(Ordering::Relaxed) == Precision::Bf16 as u8 {
        Precision::Bf16
    } else {
        Precision::Fp32
    }
}

/// The bf16 kernel in use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bf16Kernel {
    /// Intel AMX tiles (TDPBF16PS): Sapphire Rapids and later Xeons.
    Amx,
    /// AVX512-BF16 dot products (VDPBF16PS): Cooper Lake, AMD Zen 4 and Zen 5.
    Avx512Bf16,
    /// bf16-rounded inputs through the f32 GEMM: any CPU.
    Fallback,
}

impl Bf16Kernel {
    /// The name recorded in manifests and accepted by `TUNESMITH_BF16_KERNEL`.
    pub fn name(self) -> &'static str {
        match self {
            Bf16Kernel::Amx => "amx",
            Bf16Kernel::Avx512Bf16 => "avx512",
            Bf16Kernel::Fallback => "fallback",
        }
    }
}

/// The environment variable that forces a bf16 kernel.
pub const BF16_KERNEL_ENV: &str = "TUNESMITH_BF16_KERNEL";

/// The kernel bf16 products use on this machine: the env var's choice if the CPU (and, for
/// AMX, the OS) supports it, else the best available.
pub fn bf16_kernel() -> Bf16Kernel {
    static KERNEL: OnceLock<Bf16Kernel> = OnceLock::new();
    *KERNEL.get_or_init(|| {
        let best = crate::cpu::bf16::best_kernel();
        let Ok(want) = std::env::var(BF16_KERNEL_ENV) else { return best };
        let want = match want.trim() {
            "amx" => Bf16Kernel::Amx,
            "avx512" | "avx512bf16" => Bf16Kernel::Avx512Bf16,
            "fallback" => Bf16Kernel::Fallback,
            other => {
                eprintln!(
                    "warning: {BF16_KERNEL_ENV}={other:?} is not one of amx, avx512, fallback; using {}",
                    best.name()
                );
                return best;
            }
        };
        if crate::cpu::bf16::supports(want) {
            want
        } else {
            eprintln!("warning: {BF16_KERNEL_ENV}={} is not supported by this CPU; using {}", want.name(), best.name());
            best
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for p in [Precision::Fp32, Precision::Bf16] {
            assert_eq!(Precision::parse(p.name()), Some(p));
        }
        assert_eq!(Precision::parse("BF16"), Some(Precision::Bf16));
        assert_eq!(Precision::parse("fp16"), None);
    }
}
