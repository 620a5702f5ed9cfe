//! Element types. Compute happens in f32 (f64 for gradient checks); bf16/f16 are storage
//! formats converted on load; i64/u32 hold token ids and labels.

use half::{bf16, f16};

/// The element type of a tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// 32-bit float: the compute type.
    F32,
    /// 64-bit float: used by finite-difference gradient checks.
    F64,
    /// bfloat16 storage.
    BF16,
    /// IEEE half storage.
    F16,
    /// 64-bit signed integers (token ids, labels with -100).
    I64,
    /// 32-bit unsigned integers (indices, masks).
    U32,
}

impl DType {
    /// Bytes per element.
    pub fn size_in_bytes(self) -> usize {
        match self {
            DType::F32 | DType::U32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::BF16 | DType::F16 => 2,
        }
    }

    /// True for the floating-point types that ops compute in (f32, f64).
    pub fn is_compute_float(self) -> bool {
        matches!(self, DType::F32 | DType::F64)
    }

    /// The lower-case name used in configs and safetensors headers (`f32`, `bf16`, ...).
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
            DType::F64 => "f64",
            DType::BF16 => "bf16",
            DType::F16 => "f16",
            DType::I64 => "i64",
            DType::U32 => "u32",
        }
    }
}

/// A Rust type that can be stored in a tensor.
pub trait Element: Copy + Send + Sync + std::fmt::Debug + 'static {
    /// The tag of this type.
    const DTYPE: DType;
}

impl Element for f32 {
    const DTYPE: DType = DType::F32;
}
impl Element for f64 {
    const DTYPE: DType = DType::F64;
}
impl Element for bf16 {
    const DTYPE: DType = DType::BF16;
}
impl Element for f16 {
    const DTYPE: DType = DType::F16;
}
impl Element for i64 {
    const DTYPE: DType = DType::I64;
}
impl Element for u32 {
    const DTYPE: DType = DType::U32;
}

/// A float type the CPU kernels compute in: f32 for training, f64 for gradient checks.
pub trait Real:
    Element
    + Default
    + PartialOrd
    + std::ops::Add<Output = Self>
    + std::ops::Sub<Output = Self>
    + std::ops::Mul<Output = Self>
    + std::ops::Div<Output = Self>
    + std::ops::Neg<Output = Self>
    + std::ops::AddAssign
    + std::ops::SubAssign
    + std::ops::MulAssign
    + std::ops::DivAssign
    + std::iter::Sum
{
    /// Additive identity.
    const ZERO: Self;
    /// Multiplicative identity.
    const ONE: Self;
    /// Negative infinity (the masked score).
    const NEG_INFINITY: Self;
    /// Converts from f64 (rounding for f32).
    fn from_f64(v: f64) -> Self;
    /// Converts from f32.
    fn from_f32(v: f32) -> Self;
    /// Widens to f64.
    fn to_f64(self) -> f64;
    /// Narrows to f32.
    fn to_f32(self) -> f32;
    /// e^x.
    fn exp(self) -> Self;
    /// Natural logarithm.
    fn ln(self) -> Self;
    /// Square root.
    fn sqrt(self) -> Self;
    /// Hyperbolic tangent.
    fn tanh(self) -> Self;
    /// The error function.
    fn erf(self) -> Self;
    /// Fused multiply-add: self * a + b.
    fn mul_add(self, a: Self, b: Self) -> Self;
    /// The larger of two values (NaN-propagating is not required).
    fn max(self, other: Self) -> Self;
    /// Absolute value.
    fn abs(self) -> Self;
    /// Sine.
    fn sin(self) -> Self;
    /// Cosine.
    fn cos(self) -> Self;
    /// True unless NaN or infinite.
    fn is_finite(self) -> bool;
    /// Power with a float exponent.
    fn powf(self, e: Self) -> Self;
    /// e^x in a form that vectorizes inside kernel loops (f32: a 2-ulp polynomial; f64: exact).
    fn fast_exp(self) -> Self;
    /// tanh that vectorizes (f32: within 2e-7; f64: exact).
    fn fast_tanh(self) -> Self;
    /// erf that vectorizes (f32: within 2e-7; f64: exact).
    fn fast_erf(self) -> Self;
    /// Runs `f` on this thread's reusable scratch buffer of at least `n` elements (contents
    /// unspecified). Large per-call buffers (the cross-entropy logits chunk) live here instead of
    /// being allocated and page-faulted in on every call.
    fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [Self]) -> R) -> R;
    /// This slice as f32 when `Self` is f32, for kernels with a hand-vectorized f32 path.
    fn as_f32(s: &[Self]) -> Option<&[f32]>;
    /// This slice as mutable f32 when `Self` is f32.
    fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]>;
}

fn some_f32(s: &[f32]) -> Option<&[f32]> {
    Some(s)
}

fn some_f32_mut(s: &mut [f32]) -> Option<&mut [f32]> {
    Some(s)
}

fn no_f32<T>(_: &[T]) -> Option<&[f32]> {
    None
}

fn no_f32_mut<T>(_: &mut [T]) -> Option<&mut [f32]> {
    None
}

macro_rules! impl_real {
    ($t:ty, $erf:path, $fexp:path, $ftanh:path, $ferf:path, $scratch:ident, $as32:path, $as32_mut:path) => {
        thread_local! {
            static $scratch: std::cell::RefCell<Vec<$t>> = const { std::cell::RefCell::new(Vec::new()) };
        }

        impl Real for $t {
            const ZERO: Self = 0.0;
            const ONE: Self = 1.0;
            const NEG_INFINITY: Self = <$t>::NEG_INFINITY;
            #[inline(always)]
            fn from_f64(v: f64) -> Self {
                v as $t
            }
            #[inline(always)]
            fn from_f32(v: f32) -> Self {
                v as $t
            }
            #[inline(always)]
            fn to_f64(self) -> f64 {
                self as f64
            }
            #[inline(always)]
            fn to_f32(self) -> f32 {
                self as f32
            }
            #[inline(always)]
            fn exp(self) -> Self {
                <$t>::exp(self)
            }
            #[inline(always)]
            fn ln(self) -> Self {
                <$t>::ln(self)
            }
            #[inline(always)]
            fn sqrt(self) -> Self {
                <$t>::sqrt(self)
            }
            #[inline(always)]
            fn tanh(self) -> Self {
                <$t>::tanh(self)
            }
            #[inline(always)]
            fn erf(self) -> Self {
                $erf(self)
            }
            #[inline(always)]
            fn mul_add(self, a: Self, b: Self) -> Self {
                <$t>::mul_add(self, a, b)
            }
            #[inline(always)]
            fn max(self, other: Self) -> Self {
                if self > other {
                    self
                } else {
                    other
                }
            }
            #[inline(always)]
            fn abs(self) -> Self {
                <$t>::abs(self)
            }
            #[inline(always)]
            fn sin(self) -> Self {
                <$t>::sin(self)
            }
            #[inline(always)]
            fn cos(self) -> Self {
                <$t>::cos(self)
            }
            #[inline(always)]
            fn is_finite(self) -> bool {
                <$t>::is_finite(self)
            }
            #[inline(always)]
            fn powf(self, e: Self) -> Self {
                <$t>::powf(self, e)
            }
            #[inline(always)]
            fn fast_exp(self) -> Self {
                $fexp(self)
            }
            #[inline(always)]
            fn fast_tanh(self) -> Self {
                $ftanh(self)
            }
            #[inline(always)]
            fn fast_erf(self) -> Self {
                $ferf(self)
            }
            fn with_scratch<R>(n: usize, f: impl FnOnce(&mut [Self]) -> R) -> R {
                $scratch.with(|cell| match cell.try_borrow_mut() {
                    Ok(mut buf) => {
                        if buf.len() < n {
                            buf.resize(n, 0.0);
                        }
                        f(&mut buf[..n])
                    }
                    // Re-entrant use on this thread: fall back to a fresh buffer.
                    Err(_) => f(&mut vec![0.0; n]),
                })
            }
            fn as_f32(s: &[Self]) -> Option<&[f32]> {
                $as32(s)
            }
            fn as_f32_mut(s: &mut [Self]) -> Option<&mut [f32]> {
                $as32_mut(s)
            }
        }
    };
}

impl_real!(
    f32,
    libm::erff,
    crate::cpu::math::exp_f32,
    crate::cpu::math::tanh_f32,
    crate::cpu::math::erf_f32,
    SCRATCH_F32,
    some_f32,
    some_f32_mut
);
impl_real!(f64, libm::erf, f64::exp, f64::tanh, libm::erf, SCRATCH_F64, no_f32, no_f32_mut);
