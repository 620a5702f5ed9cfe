//! Pointwise activations (gelu in erf and tanh forms, silu, tanh, relu, sigmoid) and the
//! fused swiglu, each forward beside its derivative.

use rayon::prelude::*;

use super::elementwise::par_new;
use crate::dtype::Real;
use crate::ops::Activation;

const CHUNK: usize = 8192;
const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044_715;

#[inline(always)]
fn sigmoid<T: Real>(x: T) -> T {
    T::ONE / (T::ONE + (-x).fast_exp())
}

/// f(x) for one element.
#[inline(always)]
fn value<T: Real>(act: Activation, x: T) -> T {
    let half = T::from_f64(0.5);
    match act {
        Activation::GeluErf => half * x * (T::ONE + (x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).fast_erf()),
        Activation::GeluTanh => {
            let inner = T::from_f64(SQRT_2_OVER_PI) * (x + T::from_f64(GELU_C) * x * x * x);
            half * x * (T::ONE + inner.fast_tanh())
        }
        Activation::Silu => x * sigmoid(x),
        Activation::Tanh => x.fast_tanh(),
        Activation::Relu => {
            if x > T::ZERO {
                x
            } else {
                T::ZERO
            }
        }
        Activation::Sigmoid => sigmoid(x),
    }
}

/// f'(x) for one element.
#[inline(always)]
fn derivative<T: Real>(act: Activation, x: T) -> T {
    let half = T::from_f64(0.5);
    match act {
        Activation::GeluErf => {
            let cdf = half * (T::ONE + (x * T::from_f64(std::f64::consts::FRAC_1_SQRT_2)).fast_erf());
            let pdf = (-half * x * x).fast_exp() * T::from_f64(0.398_942_280_401_432_7);
            cdf + x * pdf
        }
        Activation::GeluTanh => {
            let k = T::from_f64(SQRT_2_OVER_PI);
            let c = T::from_f64(GELU_C);
            let t = (k * (x + c * x * x * x)).fast_tanh();
            half * (T::ONE + t) + half * x * (T::ONE - t * t) * k * (T::ONE + T::from_f64(3.0) * c * x * x)
        }
        Activation::Silu => {
            let s = sigmoid(x);
            s * (T::ONE + x * (T::ONE - s))
        }
        Activation::Tanh => {
            let t = x.fast_tanh();
            T::ONE - t * t
        }
        Activation::Relu => {
            if x > T::ZERO {
                T::ONE
            } else {
                T::ZERO
            }
        }
        Activation::Sigmoid => {
            let s = sigmoid(x);
            s * (T::ONE - s)
        }
    }
}

/// Applies `f` elementwise in parallel chunks; one monomorphised loop per activation so the
/// compiler can vectorize it.
fn map<T: Real>(x: &[T], f: impl Fn(T) -> T + Sync) -> Vec<T> {
    // SAFETY: each piece is zipped with the equally long slice of x, so every element is written.
    unsafe {
        par_new(x.len(), CHUNK, |start, yc| {
            let xc = &x[start..start + yc.len()];
            for (o, &i) in yc.iter_mut().zip(xc) {
                o.write(f(i));
            }
        })
    }
}

/// `dy·f'(x)` elementwise, one monomorphised loop per activation.
fn map_grad<T: Real>(dy: &[T], x: &[T], df: impl Fn(T) -> T + Sync) -> Vec<T> {
    assert_eq!(dy.len(), x.len(), "activation backward: dy and x lengths");
    // SAFETY: each piece is zipped with the equally long slices of x and dy, so every element
    // is written.
    unsafe {
        par_new(x.len(), CHUNK, |start, dc| {
            let end = start + dc.len();
            for ((o, &i), &g) in dc.iter_mut().zip(&x[start..end]).zip(&dy[start..end]) {
                o.write(g * df(i));
            }
        })
    }
}

/// y = f(x).
pub fn forward<T: Real>(act: Activation, x: &[T]) -> Vec<T> {
    match act {
        Activation::GeluErf => map(x, |v| value(Activation::GeluErf, v)),
        Activation::GeluTanh => map(x, |v| value(Activation::GeluTanh, v)),
        Activation::Silu => map(x, |v| value(Activation::Silu, v)),
        Activation::Tanh => map(x, |v| value(Activation::Tanh, v)),
        Activation::Relu => map(x, |v| value(Activation::Relu, v)),
        Activation::Sigmoid => map(x, |v| value(Activation::Sigmoid, v)),
    }
}

/// dx = dy·f'(x).
pub fn backward<T: Real>(act: Activation, dy: &[T], x: &[T]) -> Vec<T> {
    match act {
        Activation::GeluErf => map_grad(dy, x, |v| derivative(Activation::GeluErf, v)),
        Activation::GeluTanh => map_grad(dy, x, |v| derivative(Activation::GeluTanh, v)),
        Activation::Silu => map_grad(dy, x, |v| derivative(Activation::Silu, v)),
        Activation::Tanh => map_grad(dy, x, |v| derivative(Activation::Tanh, v)),
        Activation::Relu => map_grad(dy, x, |v| derivative(Activation::Relu, v)),
        Activation::Sigmoid => map_grad(dy, x, |v| derivative(Activation::Sigmoid, v)),
    }
}

/// swiglu: y = silu(gate)·up.
pub fn swiglu_forward<T: Real>(gate: &[T], up: &[T]) -> Vec<T> {
    assert_eq!(gate.len(), up.len(), "swiglu: gate and up lengths");
    // SAFETY: each piece is zipped with the equally long slices of gate and up, so every
    // element is written.
    unsafe {
        par_new(gate.len(), CHUNK, |start, yc| {
            let end = start + yc.len();
            for ((o, &g), &u) in yc.iter_mut().zip(&gate[start..end]).zip(&up[start..end]) {
                o.write(g * sigmoid(g) * u);
            }
        })
    }
}

/// swiglu backward: returns `(dgate, dup)`.
pub fn swiglu_backward<T: Real>(dy: &[T], gate: &[T], up: &[T]) -> (Vec<T>, Vec<T>) {
    let n = gate.len();
    assert!(up.len() == n && dy.len() == n, "swiglu backward: dy, gate and up lengths");
    // Both outputs are written without a zero-fill first (see `par_new`).
    let mut dg: Vec<T> = Vec::with_capacity(n);
    let mut du: Vec<T> = Vec::with_capacity(n);
    dg.spare_capacity_mut()[..n]
        .par_chunks_mut(CHUNK)
        .zip(du.spare_capacity_mut()[..n].par_chunks_mut(CHUNK))
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)).zip(dy.par_chunks(CHUNK)))
        .for_each(|((dgc, duc), ((gc, uc), yc))| {
            for i in 0..gc.len() {
                let (g, u, d) = (gc[i], uc[i], yc[i]);
                let s = sigmoid(g);
                let silu = g * s;
                duc[i].write(d * silu);
                dgc[i].write(d * u * s * (T::ONE + g * (T::ONE - s)));
            }
        });
    // SAFETY: the chunks of all five slices line up (equal lengths, equal chunk size), and each
    // chunk's loop wrote every element of its dg and du chunks.
    unsafe {
        dg.set_len(n);
        du.set_len(n);
    }
    (dg, du)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs are written without a zero-fill first: each is computed right after a NaN-filled
    /// block of its size is freed (so the allocator likely hands that memory back), at lengths
    /// around the parallel chunk size, and every element must equal its definition.
    #[test]
    fn outputs_are_fully_written_without_a_fill() {
        for n in [1usize, 7, CHUNK - 1, CHUNK, CHUNK + 3, 3 * CHUNK + 5] {
            let x: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin() * 3.0).collect();
            let dy: Vec<f64> = (0..n).map(|i| (i as f64 * 0.11).cos()).collect();
            let fresh = |f: &dyn Fn() -> Vec<f64>| {
                drop(std::hint::black_box(vec![f64::NAN; n]));
                f()
            };
            let y = fresh(&|| forward(Activation::GeluTanh, &x));
            let dx = fresh(&|| backward(Activation::Silu, &dy, &x));
            let sw = fresh(&|| swiglu_forward(&x, &dy));
            drop(std::hint::black_box(vec![f64::NAN; 2 * n]));
            let (dg, du) = swiglu_backward(&dy, &x, &dy);
            for i in 0..n {
                assert_eq!(y[i], value(Activation::GeluTanh, x[i]), "gelu at {i} of {n}");
                assert_eq!(dx[i], dy[i] * derivative(Activation::Silu, x[i]), "silu grad at {i} of {n}");
                assert_eq!(sw[i], x[i] * sigmoid(x[i]) * dy[i], "swiglu at {i} of {n}");
                let s = sigmoid(x[i]);
                assert_eq!(du[i], dy[i] * (x[i] * s), "swiglu dup at {i} of {n}");
                assert_eq!(dg[i], dy[i] * dy[i] * s * (1.0 + x[i] * (1.0 - s)), "swiglu dgate at {i} of {n}");
            }
        }
    }
}
