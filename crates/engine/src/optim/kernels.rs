//! CPU update kernels: one pass per parameter doing every piece of the update (decay, moments,
//! bias correction, step), in the same arithmetic order as torch.optim so results agree to
//! rounding.

use rayon::prelude::*;

use super::{AdamWStep, SgdStep};
use crate::dtype::Real;

const CHUNK: usize = 16 * 1024;

/// AdamW (decoupled weight decay), matching torch.optim.AdamW's single-tensor path.
pub fn adamw<T: Real>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], hp: AdamWStep) {
    if hp.weight_decay != 0.0 {
        adamw_impl::<T, true>(p, g, m, v, hp)
    } else {
        adamw_impl::<T, false>(p, g, m, v, hp)
    }
}

/// One branch-free loop per decay setting so the compiler vectorizes it.
fn adamw_impl<T: Real, const DECAY: bool>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], hp: AdamWStep) {
    let decay = T::from_f64(1.0 - hp.lr * hp.weight_decay);
    let w1 = T::from_f64(1.0 - hp.beta1);
    let b2 = T::from_f64(hp.beta2);
    let w2 = T::from_f64(1.0 - hp.beta2);
    let step_size = T::from_f64(hp.lr / hp.bias_correction1);
    let bc2_sqrt = T::from_f64(hp.bias_correction2.sqrt());
    let eps = T::from_f64(hp.eps);
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((pc, gc), (mc, vc))| {
            for (((pi, &gi), mi), vi) in pc.iter_mut().zip(gc).zip(mc.iter_mut()).zip(vc.iter_mut()) {
                let mut pv = *pi;
                if DECAY {
                    pv *= decay;
                }
                // torch's lerp for weight < 0.5: m + w·(g − m)
                let mv = *mi + w1 * (gi - *mi);
                let vv = *vi * b2 + w2 * gi * gi;
                let denom = vv.sqrt() / bc2_sqrt + eps;
                *pi = pv - step_size * (mv / denom);
                *mi = mv;
                *vi = vv;
            }
        });
}

/// SGD with optional momentum, dampening, Nesterov and (coupled, L2) weight decay, as
/// torch.optim.SGD (whose `add(x, alpha=a)` is a fused multiply-add).
pub fn sgd<T: Real>(p: &mut [T], g: &[T], buf: Option<&mut [T]>, hp: SgdStep) {
    match (hp.weight_decay != 0.0, buf) {
        (true, None) => sgd_plain::<T, true>(p, g, hp),
        (false, None) => sgd_plain::<T, false>(p, g, hp),
        (decay, Some(b)) => match (decay, hp.first_step, hp.nesterov) {
            (true, true, true) => sgd_momentum::<T, true, true, true>(p, g, b, hp),
            (true, true, false) => sgd_momentum::<T, true, true, false>(p, g, b, hp),
            (true, false, true) => sgd_momentum::<T, true, false, true>(p, g, b, hp),
            (true, false, false) => sgd_momentum::<T, true, false, false>(p, g, b, hp),
            (false, true, true) => sgd_momentum::<T, false, true, true>(p, g, b, hp),
            (false, true, false) => sgd_momentum::<T, false, true, false>(p, g, b, hp),
            (false, false, true) => sgd_momentum::<T, false, false, true>(p, g, b, hp),
            (false, false, false) => sgd_momentum::<T, false, false, false>(p, g, b, hp),
        },
    }
}

fn sgd_plain<T: Real, const DECAY: bool>(p: &mut [T], g: &[T], hp: SgdStep) {
    let neg_lr = T::from_f64(-hp.lr);
    let wd = T::from_f64(hp.weight_decay);
    p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(pc, gc)| {
        for (pi, &gi) in pc.iter_mut().zip(gc) {
            let d = if DECAY { pi.mul_add(wd, gi) } else { gi };
            *pi = d.mul_add(neg_lr, *pi);
        }
    });
}

fn sgd_momentum<T: Real, const DECAY: bool, const FIRST: bool, const NESTEROV: bool>(
    p: &mut [T],
    g: &[T],
    buf: &mut [T],
    hp: SgdStep,
) {
    let neg_lr = T::from_f64(-hp.lr);
    let wd = T::from_f64(hp.weight_decay);
    let mom = T::from_f64(hp.momentum);
    let damp = T::from_f64(1.0 - hp.dampening);
    p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK).zip(buf.par_chunks_mut(CHUNK))).for_each(|(pc, (gc, bc))| {
        for ((pi, &gi), bi) in pc.iter_mut().zip(gc).zip(bc.iter_mut()) {
            let d = if DECAY { pi.mul_add(wd, gi) } else { gi };
            *bi = if FIRST { d } else { d.mul_add(damp, mom * *bi) };
            let step = if NESTEROV { bi.mul_add(mom, d) } else { *bi };
            *pi = step.mul_add(neg_lr, *pi);
        }
    });
}
