//! Pointwise activations (gelu in erf and tanh forms, silu, tanh, relu, sigmoid) and the
//! fused swiglu, each forward beside its derivative.

use rayon::prelude::*;

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
    let mut y = vec![T::ZERO; x.len()];
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(yc, xc)| {
        for (o, &i) in yc.iter_mut().zip(xc) {
            *o = f(i);
        }
    });
    y
}

/// `dy·f'(x)` elementwise, one monomorphised loop per activation.
fn map_grad<T: Real>(dy: &[T], x: &[T], df: impl Fn(T) -> T + Sync) -> Vec<T> {
    let mut dx = vec![T::ZERO; x.len()];
    dx.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(dy.par_chunks(CHUNK))).for_each(|(dc, (xc, gc))| {
        for ((o, &i), &g) in dc.iter_mut().zip(xc).zip(gc) {
            *o = g * df(i);
        }
    });
    dx
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
    let mut y = vec![T::ZERO; gate.len()];
    y.par_chunks_mut(CHUNK).zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK))).for_each(|(yc, (gc, uc))| {
        for ((o, &g), &u) in yc.iter_mut().zip(gc).zip(uc) {
            *o = g * sigmoid(g) * u;
        }
    });
    y
}

/// swiglu backward: returns `(dgate, dup)`.
pub fn swiglu_backward<T: Real>(dy: &[T], gate: &[T], up: &[T]) -> (Vec<T>, Vec<T>) {
    let mut dg = vec![T::ZERO; gate.len()];
    let mut du = vec![T::ZERO; gate.len()];
    dg.par_chunks_mut(CHUNK)
        .zip(du.par_chunks_mut(CHUNK))
        .zip(gate.par_chunks(CHUNK).zip(up.par_chunks(CHUNK)).zip(dy.par_chunks(CHUNK)))
        .for_each(|((dgc, duc), ((gc, uc), yc))| {
            for i in 0..gc.len() {
                let (g, u, d) = (gc[i], uc[i], yc[i]);
                let s = sigmoid(g);
                let silu = g * s;
                duc[i] = d * silu;
                dgc[i] = d * u * s * (T::ONE + g * (T::ONE - s));
            }
        });
    (dg, du)
}
