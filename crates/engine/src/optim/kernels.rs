//! CPU update kernels: one pass per parameter doing every piece of the update (decay, moments,
//! bias correction, step), in the same arithmetic order as torch.optim so results agree to
//! rounding.

use rayon::prelude::*;

use super::{AdamWStep, SgdStep};
use crate::dtype::Real;

const CHUNK: usize = 16 * 1024;

/// AdamW (decoupled weight decay), matching torch.optim.AdamW's single-tensor path.
pub fn adamw<T: Real>(p: &mut [T], g: &[T], m: &mut [T], v: &mut [T], hp: AdamWStep) {
    let decay = T::from_f64(1.0 - hp.lr * hp.weight_decay);
    let w1 = T::from_f64(1.0 - hp.beta1);
    let b2 = T::from_f64(hp.beta2);
    let w2 = T::from_f64(1.0 - hp.beta2);
    let step_size = T::from_f64(hp.lr / hp.bias_correction1);
    let bc2_sqrt = T::from_f64(hp.bias_correction2.sqrt());
    let eps = T::from_f64(hp.eps);
    let apply_decay = hp.weight_decay != 0.0;
    p.par_chunks_mut(CHUNK)
        .zip(g.par_chunks(CHUNK))
        .zip(m.par_chunks_mut(CHUNK).zip(v.par_chunks_mut(CHUNK)))
        .for_each(|((pc, gc), (mc, vc))| {
            for i in 0..pc.len() {
                let gi = gc[i];
                if apply_decay {
                    pc[i] *= decay;
                }
                // torch's lerp for weight < 0.5: m + w·(g − m)
                mc[i] += w1 * (gi - mc[i]);
                vc[i] = vc[i] * b2 + w2 * gi * gi;
                let denom = vc[i].sqrt() / bc2_sqrt + eps;
                pc[i] -= step_size * (mc[i] / denom);
            }
        });
}

/// SGD with optional momentum, dampening, Nesterov and (coupled, L2) weight decay, as
/// torch.optim.SGD (whose `add(x, alpha=a)` is a fused multiply-add).
pub fn sgd<T: Real>(p: &mut [T], g: &[T], buf: Option<&mut [T]>, hp: SgdStep) {
    let neg_lr = T::from_f64(-hp.lr);
    let wd = T::from_f64(hp.weight_decay);
    let mom = T::from_f64(hp.momentum);
    let damp = T::from_f64(1.0 - hp.dampening);
    let decayed = |pi: T, gi: T| {
        if hp.weight_decay != 0.0 {
            pi.mul_add(wd, gi)
        } else {
            gi
        }
    };
    match buf {
        None => p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).for_each(|(pc, gc)| {
            for i in 0..pc.len() {
                let d = decayed(pc[i], gc[i]);
                pc[i] = d.mul_add(neg_lr, pc[i]);
            }
        }),
        Some(buf) => p.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK).zip(buf.par_chunks_mut(CHUNK))).for_each(
            |(pc, (gc, bc))| {
                for i in 0..pc.len() {
                    let d = decayed(pc[i], gc[i]);
                    bc[i] = if hp.first_step { d } else { d.mul_add(damp, mom * bc[i]) };
                    let step = if hp.nesterov { bc[i].mul_add(mom, d) } else { bc[i] };
                    pc[i] = step.mul_add(neg_lr, pc[i]);
                }
            },
        ),
    }
}
