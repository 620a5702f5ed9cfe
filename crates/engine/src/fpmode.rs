//! Floating-point mode of the threads that run engine work: subnormal (denormal) floats are
//! flushed to zero, on inputs and on results (FTZ and DAZ in x86's MXCSR).
//!
//! Intel cores handle a subnormal operand or result with a microcode assist that costs
//! ~100 cycles: a GEMM whose input held the softmax probabilities of a peaked LM head (a
//! quarter of them under 1e-38) ran 55x slower than on normal inputs. AMD pays no such
//! assist. Flushing changes values only below f32's smallest normal (1.2e-38), far under any
//! tolerance a training step has. PyTorch's `set_flush_denormal(True)` sets the same bits.
//!
//! The mode is per thread: [`crate::threads::init`] sets it on every worker of the engine's
//! rayon pool as it starts, and [`ensure`] sets it, once, on any other thread that calls a
//! kernel (`threads::num_threads` calls it, and every parallel kernel calls that).

use std::cell::Cell;

/// MXCSR's flush-to-zero bit (results).
#[cfg(target_arch = "x86_64")]
const FTZ: u32 = 1 << 15;
/// MXCSR's denormals-are-zero bit (inputs).
#[cfg(target_arch = "x86_64")]
const DAZ: u32 = 1 << 6;

thread_local! {
    static SET: Cell<bool> = const { Cell::new(false) };
}

/// Sets flush-to-zero and denormals-are-zero on the calling thread (no-op off x86-64).
pub fn flush_denormals() {
    #[cfg(target_arch = "x86_64")]
    {
        let csr = read_csr();
        if csr & (FTZ | DAZ) != FTZ | DAZ {
            write_csr(csr | FTZ | DAZ);
        }
    }
    SET.with(|s| s.set(true));
}

/// [`flush_denormals`] on this thread unless it was already set here: a thread-local test
/// on every later call.
#[inline]
pub fn ensure() {
    if !SET.with(|s| s.get()) {
        flush_denormals();
    }
}

/// Whether the calling thread flushes subnormals to zero (both FTZ and DAZ set). Always
/// false off x86-64.
pub fn denormals_flushed() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        read_csr() & (FTZ | DAZ) == FTZ | DAZ
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

#[cfg(target_arch = "x86_64")]
fn read_csr() -> u32 {
    let mut csr = 0u32;
    // SAFETY: stmxcsr stores the 32-bit MXCSR to the given, valid, writable address.
    unsafe { std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags)) };
    csr
}

#[cfg(target_arch = "x86_64")]
fn write_csr(csr: u32) {
    // SAFETY: ldmxcsr loads MXCSR from a valid address; the value only adds the FTZ/DAZ bits
    // to the current one (reserved bits unchanged), so it cannot fault.
    unsafe { std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly, preserves_flags)) };
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;

    #[test]
    fn flushing_zeroes_subnormal_inputs_and_results() {
        std::thread::spawn(|| {
            let tiny = std::hint::black_box(1e-39f32);
            assert!(tiny.is_subnormal());
            assert!((tiny * 1.0).is_subnormal(), "default mode keeps subnormals");
            flush_denormals();
            assert!(denormals_flushed());
            assert_eq!(std::hint::black_box(tiny) * std::hint::black_box(1.0f32), 0.0, "DAZ");
            let small = std::hint::black_box(1e-30f32);
            assert_eq!(small * std::hint::black_box(1e-9f32), 0.0, "FTZ");
            // Normal values are untouched.
            assert_eq!(std::hint::black_box(1.5f32) * std::hint::black_box(2.0f32), 3.0);
        })
        .join()
        .unwrap();
    }
}
