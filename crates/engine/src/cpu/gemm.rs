//! Strided matrix views and the one GEMM entry point every CPU kernel uses
//! (the `gemm` crate: packed, AVX2/AVX-512 micro-kernels, rayon-parallel).

use std::marker::PhantomData;

use rayon::prelude::*;

use super::bf16;
use crate::dtype::{DType, Real};
use crate::precision::{self, bf16_kernel, Precision};
use crate::threads;

/// A read-only strided matrix view: element (i, j) is at `ptr + i*rs + j*cs`.
#[derive(Clone, Copy)]
pub struct MatRef<'a, T> {
    pub(crate) ptr: *const T,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: isize,
    pub(crate) cs: isize,
    _life: PhantomData<&'a T>,
}

fn check_extent(len: usize, offset: usize, rows: usize, cols: usize, rs: usize, cs: usize) {
    if rows > 0 && cols > 0 {
        let last = offset + (rows - 1) * rs + (cols - 1) * cs;
        assert!(last < len, "matrix view out of bounds: last index {last} >= len {len}");
    }
}

impl<'a, T: Real> MatRef<'a, T> {
    /// A row-major `rows × cols` matrix over a slice.
    pub fn row_major(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self::strided(data, 0, rows, cols, cols, 1)
    }

    /// A general strided view starting at `offset`; bounds are checked.
    pub fn strided(data: &'a [T], offset: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        check_extent(data.len(), offset, rows, cols, rs, cs);
        MatRef {
            ptr: data[offset.min(data.len())..].as_ptr(),
            rows,
            cols,
            rs: rs as isize,
            cs: cs as isize,
            _life: PhantomData,
        }
    }

    /// The transpose (no copy).
    pub fn t(self) -> Self {
        MatRef { rows: self.cols, cols: self.rows, rs: self.cs, cs: self.rs, ..self }
    }

    /// Element `(i, j)`; `i < rows` and `j < cols` (checked in debug builds).
    #[inline(always)]
    pub(crate) fn at(self, i: usize, j: usize) -> T {
        debug_assert!(i < self.rows && j < self.cols);
        // SAFETY: inside the view's extent, checked at construction.
        unsafe { *self.ptr.offset(i as isize * self.rs + j as isize * self.cs) }
    }

    /// Rows `[start, start + len)` (no copy).
    fn row_block(self, start: usize, len: usize) -> Self {
        debug_assert!(start + len <= self.rows);
        // SAFETY: stays inside the view's extent.
        let ptr = unsafe { self.ptr.offset(start as isize * self.rs) };
        MatRef { ptr, rows: len, ..self }
    }
}

// SAFETY: a MatRef is a shared view of immutable data.
unsafe impl<T: Sync> Sync for MatRef<'_, T> {}
// SAFETY: as above.
unsafe impl<T: Sync> Send for MatRef<'_, T> {}

/// A mutable strided matrix view.
pub struct MatMut<'a, T> {
    pub(crate) ptr: *mut T,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) rs: isize,
    pub(crate) cs: isize,
    _life: PhantomData<&'a mut T>,
}

impl<'a, T: Real> MatMut<'a, T> {
    /// A row-major `rows × cols` matrix over a mutable slice.
    pub fn row_major(data: &'a mut [T], rows: usize, cols: usize) -> Self {
        Self::strided(data, 0, rows, cols, cols, 1)
    }

    /// A general strided mutable view starting at `offset`; bounds are checked.
    pub fn strided(data: &'a mut [T], offset: usize, rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        check_extent(data.len(), offset, rows, cols, rs, cs);
        let start = offset.min(data.len());
        MatMut { ptr: data[start..].as_mut_ptr(), rows, cols, rs: rs as isize, cs: cs as isize, _life: PhantomData }
    }

    /// A view over raw memory, for parallel kernels whose threads write disjoint strided
    /// regions of one buffer.
    ///
    /// # Safety
    /// Every element `ptr + i*rs + j*cs` must be valid for writes for `'a`, and no other
    /// thread may access those elements while the view lives.
    pub unsafe fn from_raw(ptr: *mut T, rows: usize, cols: usize, rs: usize, cs: usize) -> Self {
        MatMut { ptr, rows, cols, rs: rs as isize, cs: cs as isize, _life: PhantomData }
    }
}

/// A raw pointer that may cross threads; kernels use it to hand disjoint output regions to
/// rayon workers.
#[derive(Clone, Copy)]
pub struct SendPtr<T>(pub *mut T);
// SAFETY: users guarantee disjoint access (see `MatMut::from_raw`).
unsafe impl<T> Send for SendPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for SendPtr<T> {}

impl<T> SendPtr<T> {
    /// The wrapped pointer.
    #[inline(always)]
    pub fn get(self) -> *mut T {
        self.0
    }
}

/// `dst = [dst if accumulate] + alpha·(a × b)`, choosing how to use the threads from the shape:
/// small products run on the calling thread; thin ones (a LoRA rank as inner or output width)
/// split their rows across threads, each running a serial GEMM (the `gemm` crate's own
/// threading loses there); the rest use `gemm`'s parallel kernels.
///
/// Panics (an engine bug, not a user error) if the dimensions disagree; the ops validate
/// user shapes before any kernel runs.
pub fn matmul<T: Real>(dst: MatMut<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, alpha: T, accumulate: bool) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let par = threads::gemm_parallelism(m, n, k);
    if bf16_products::<T>() {
        let parallel = matches!(par, gemm::Parallelism::Rayon(_));
        return bf16::matmul(
            as_f32_mut(dst),
            as_f32(a),
            as_f32(b),
            alpha.to_f32(),
            accumulate,
            bf16_kernel(),
            parallel,
        );
    }
    let threads = threads::num_threads();
    if matches!(par, gemm::Parallelism::Rayon(_)) && m < 32 && n >= 64 * threads {
        // Few output rows, many columns: compute the transpose (dstᵀ = bᵀ·aᵀ) so the row split
        // below applies.
        let dst_t = MatMut { ptr: dst.ptr, rows: dst.cols, cols: dst.rows, rs: dst.cs, cs: dst.rs, _life: PhantomData };
        return matmul(dst_t, b.t(), a.t(), alpha, accumulate);
    }
    let thin = n.min(k) < 32;
    if matches!(par, gemm::Parallelism::Rayon(_)) && thin && m >= 64 * threads {
        assert_eq!(dst.rows, m, "gemm output rows");
        let block = m.div_ceil(threads * 2).next_multiple_of(16);
        let dst_ptr = SendPtr(dst.ptr);
        let (drs, dcs) = (dst.rs, dst.cs);
        (0..m.div_ceil(block)).into_par_iter().for_each(|i| {
            let start = i * block;
            let len = block.min(m - start);
            // SAFETY: row blocks of dst are disjoint; each lies inside the caller's view.
            let d = MatMut {
                ptr: unsafe { dst_ptr.get().offset(start as isize * drs) },
                rows: len,
                cols: n,
                rs: drs,
                cs: dcs,
                _life: PhantomData,
            };
            matmul_with(d, a.row_block(start, len), b, alpha, accumulate, gemm::Parallelism::None);
        });
        return;
    }
    matmul_with(dst, a, b, alpha, accumulate, par)
}

/// Whether matrix rows `stride` elements apart sit a multiple of 2 KB apart, so that reading
/// down a column maps to few cache sets. Products that read such rows strided (x·Wᵀ from W,
/// attention tiles from interleaved heads) measured 10–25% slower on Zen 4 than from a copy
/// whose rows are contiguous or padded; at other strides the copies did not pay.
pub fn stride_aliases<T>(stride: usize) -> bool {
    stride > 0 && (stride * std::mem::size_of::<T>()).is_multiple_of(2048)
}

/// `alpha·(a × b)` as a new row-major `a.rows × b.cols` vector. The GEMM writes every element
/// without reading any (it reads its destination only when accumulating), so the vector is not
/// zero-filled first: one pass less over memory per product (the zero-fill showed as memset in
/// training-step profiles).
pub fn matmul_new<T: Real>(a: MatRef<'_, T>, b: MatRef<'_, T>, alpha: T) -> Vec<T> {
    let (m, n) = (a.rows, b.cols);
    let mut out: Vec<T> = Vec::with_capacity(m * n);
    // SAFETY: the view spans exactly the m·n elements of `out`'s allocation and nothing else
    // refers to it. Without accumulation `matmul` writes every element of its destination and
    // reads none (gemm treats a non-read destination as scaled by zero and never loads it; the
    // k = 0 case stores zeros), so all m·n elements are initialised before `set_len`.
    unsafe {
        matmul(MatMut::from_raw(out.as_mut_ptr(), m, n, n, 1), a, b, alpha, false);
        out.set_len(m * n);
    }
    out
}

/// Like [`matmul`] but always on the calling thread (for use inside parallel loops).
pub fn matmul_serial<T: Real>(dst: MatMut<'_, T>, a: MatRef<'_, T>, b: MatRef<'_, T>, alpha: T, accumulate: bool) {
    if bf16_products::<T>() {
        return bf16::matmul(as_f32_mut(dst), as_f32(a), as_f32(b), alpha.to_f32(), accumulate, bf16_kernel(), false);
    }
    matmul_with(dst, a, b, alpha, accumulate, gemm::Parallelism::None)
}

/// Whether products of `T` run in bf16 now: f32 products under [`Precision::Bf16`] (f64
/// products, as gradient checks use, never do).
#[inline]
fn bf16_products<T: Real>() -> bool {
    T::DTYPE == DType::F32 && precision::current() == Precision::Bf16
}

/// The same view typed as f32; only called where `T` is f32.
fn as_f32<T: Real>(m: MatRef<'_, T>) -> MatRef<'_, f32> {
    assert_eq!(T::DTYPE, DType::F32);
    MatRef { ptr: m.ptr.cast(), rows: m.rows, cols: m.cols, rs: m.rs, cs: m.cs, _life: PhantomData }
}

/// The same mutable view typed as f32; only called where `T` is f32.
fn as_f32_mut<T: Real>(m: MatMut<'_, T>) -> MatMut<'_, f32> {
    assert_eq!(T::DTYPE, DType::F32);
    MatMut { ptr: m.ptr.cast(), rows: m.rows, cols: m.cols, rs: m.rs, cs: m.cs, _life: PhantomData }
}

/// The f32 GEMM without the bf16 routing or the shape-based thread split: the fallback bf16
/// kernel multiplies its rounded copies with it.
pub(crate) fn gemm_f32(
    dst: MatMut<'_, f32>,
    a: MatRef<'_, f32>,
    b: MatRef<'_, f32>,
    alpha: f32,
    accumulate: bool,
    par: gemm::Parallelism,
) {
    matmul_with(dst, a, b, alpha, accumulate, par)
}

fn matmul_with<T: Real>(
    dst: MatMut<'_, T>,
    a: MatRef<'_, T>,
    b: MatRef<'_, T>,
    alpha: T,
    accumulate: bool,
    par: gemm::Parallelism,
) {
    assert_eq!(a.cols, b.rows, "gemm inner dimensions");
    assert_eq!(dst.rows, a.rows, "gemm output rows");
    assert_eq!(dst.cols, b.cols, "gemm output cols");
    let (m, n, k) = (a.rows, b.cols, a.cols);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m as isize {
                for j in 0..n as isize {
                    // SAFETY: inside the view's extent.
                    unsafe { *dst.ptr.offset(i * dst.rs + j * dst.cs) = T::ZERO };
                }
            }
        }
        return;
    }
    // SAFETY: the views' extents were checked at construction (or promised by `from_raw`);
    // gemm reads `a`, `b` and writes `dst` only inside them.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.ptr,
            dst.cs,
            dst.rs,
            accumulate,
            a.ptr,
            a.cs,
            a.rs,
            b.ptr,
            b.cs,
            b.rs,
            T::ONE,
            alpha,
            false,
            false,
            false,
            par,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// matmul_new never reads its unfilled output: each product is computed right after a
    /// NaN-filled block of the same size is freed (so the allocator likely hands that memory
    /// back), across gemm's paths: gevv (k = 1), gemv (one row or column), k = 0, thin
    /// row-split and the packed kernels.
    #[test]
    fn matmul_new_writes_every_element_without_reading_it() {
        let shapes =
            [(1, 1, 1), (1, 7, 5), (7, 1, 5), (3, 4, 0), (65, 9, 3), (130, 8, 64), (200, 300, 1), (96, 80, 70)];
        for (m, n, k) in shapes {
            let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
            let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
            drop(std::hint::black_box(vec![f64::NAN; m * n]));
            let got = matmul_new(MatRef::row_major(&a, m, k), MatRef::row_major(&b, k, n), 2.0);
            assert_eq!(got.len(), m * n);
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = 2.0 * (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum::<f64>();
                    let g = got[i * n + j];
                    assert!((g - want).abs() <= 1e-12 * (1.0 + want.abs()), "{m}x{n}x{k} at ({i},{j}): {g} vs {want}");
                }
            }
        }
    }
}
