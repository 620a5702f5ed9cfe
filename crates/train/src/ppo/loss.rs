//! PPO's clipped losses, per token, with their gradients (computed on the host; the step turns
//! them into a surrogate the graph differentiates):
//! - policy: max(−A·ρ, −A·clip(ρ, 1 − ε, 1 + ε)) with ρ = exp(log π − log π_old);
//! - value: ½·max((V − R)², (V_old + clip(V − V_old, −c, c) − R)²);
//!
//! each averaged over the micro-batch's completion tokens, the loss being policy + vf_coef·value.

/// One completion as the loss sees it, per token.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Log-probs under the policy being trained.
    pub logps: Vec<f64>,
    /// Log-probs under the policy that sampled it.
    pub old_logps: Vec<f64>,
    /// Advantages.
    pub advantages: Vec<f64>,
    /// The value head's current estimates.
    pub values: Vec<f64>,
    /// The value head's estimates at sampling time.
    pub old_values: Vec<f64>,
    /// Returns.
    pub returns: Vec<f64>,
}

/// The loss's settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PpoParams {
    /// ε: the ratio is clipped to [1 − ε, 1 + ε].
    pub epsilon: f64,
    /// c: the value may move at most c from its sampling-time estimate before the clipped term
    /// takes over.
    pub value_clip: f64,
    /// The value loss's weight.
    pub vf_coef: f64,
}

/// The loss of a micro-batch, its gradients and what TRL logs about it.
#[derive(Debug, Clone, PartialEq)]
pub struct PpoLoss {
    /// policy + vf_coef · value.
    pub value: f64,
    /// The policy loss.
    pub policy: f64,
    /// The value loss.
    pub value_loss: f64,
    /// Per completion and token: ∂loss/∂log π.
    pub logp_grads: Vec<Vec<f64>>,
    /// Per completion and token: ∂loss/∂V.
    pub value_grads: Vec<Vec<f64>>,
    /// Share of tokens whose ratio was clipped.
    pub clip_fraction: f64,
    /// Share of tokens whose value was clipped.
    pub value_clip_fraction: f64,
    /// ½·mean((log π − log π_old)²).
    pub approx_kl: f64,
    /// Mean ratio.
    pub ratio: f64,
}

/// The clipped PPO loss of `samples`, averaged over all their tokens.
pub fn ppo_loss(p: &PpoParams, samples: &[Sample]) -> PpoLoss {
    let n = samples.iter().map(|s| s.logps.len()).sum::<usize>().max(1) as f64;
    let mut out = PpoLoss {
        value: 0.0,
        policy: 0.0,
        value_loss: 0.0,
        logp_grads: Vec::with_capacity(samples.len()),
        value_grads: Vec::with_capacity(samples.len()),
        clip_fraction: 0.0,
        value_clip_fraction: 0.0,
        approx_kl: 0.0,
        ratio: 0.0,
    };
    for s in samples {
        let mut gl = Vec::with_capacity(s.logps.len());
        let mut gv = Vec::with_capacity(s.logps.len());
        for t in 0..s.logps.len() {
            let diff = s.logps[t] - s.old_logps[t];
            let ratio = diff.exp();
            let a = s.advantages[t];
            let unclipped = -a * ratio;
            let clipped = -a * ratio.clamp(1.0 - p.epsilon, 1.0 + p.epsilon);
            // The gradient flows through the unclipped term when it is the larger one.
            let (pg, g) = if unclipped >= clipped { (unclipped, -a * ratio) } else { (clipped, 0.0) };
            out.policy += pg;
            out.clip_fraction += f64::from(u8::from(clipped > unclipped));
            out.approx_kl += 0.5 * diff * diff;
            out.ratio += ratio;
            gl.push(g / n);

            let (v, v_old, ret) = (s.values[t], s.old_values[t], s.returns[t]);
            let moved = v - v_old;
            let inside = moved.abs() < p.value_clip;
            let v_clipped = v_old + moved.clamp(-p.value_clip, p.value_clip);
            let (l1, l2) = ((v - ret).powi(2), (v_clipped - ret).powi(2));
            let (vl, g) = if l1 >= l2 { (l1, v - ret) } else { (l2, if inside { v_clipped - ret } else { 0.0 }) };
            out.value_loss += 0.5 * vl;
            out.value_clip_fraction += f64::from(u8::from(l2 > l1));
            gv.push(p.vf_coef * g / n);
        }
        out.logp_grads.push(gl);
        out.value_grads.push(gv);
    }
    for x in
        [&mut out.policy, &mut out.value_loss, &mut out.clip_fraction, &mut out.value_clip_fraction, &mut out.approx_kl]
    {
        *x /= n;
    }
    out.ratio /= n;
    out.value = out.policy + p.vf_coef * out.value_loss;
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: PpoParams = PpoParams { epsilon: 0.2, value_clip: 0.2, vf_coef: 0.1 };

    fn samples() -> Vec<Sample> {
        vec![
            Sample {
                logps: vec![-1.0, -0.5, -2.0],
                old_logps: vec![-1.1, -0.9, -1.7],
                advantages: vec![1.0, -0.5, 2.0],
                values: vec![0.3, 0.05, -0.6],
                old_values: vec![0.2, 0.5, -0.5],
                returns: vec![1.0, 0.0, -0.2],
            },
            Sample {
                logps: vec![-0.2],
                old_logps: vec![-0.2],
                advantages: vec![-1.5],
                values: vec![2.0],
                old_values: vec![1.5],
                returns: vec![1.0],
            },
        ]
    }

    #[test]
    fn gradients_match_finite_differences() {
        let s = samples();
        let out = ppo_loss(&P, &s);
        let h = 1e-6;
        for k in 0..s.len() {
            for t in 0..s[k].logps.len() {
                for which in 0..2 {
                    let bump = |d: f64| {
                        let mut m = s.clone();
                        if which == 0 {
                            m[k].logps[t] += d;
                        } else {
                            m[k].values[t] += d;
                        }
                        ppo_loss(&P, &m).value
                    };
                    let fd = (bump(h) - bump(-h)) / (2.0 * h);
                    let g = if which == 0 { out.logp_grads[k][t] } else { out.value_grads[k][t] };
                    assert!((fd - g).abs() < 1e-6, "sample {k} token {t} input {which}: {fd} vs {g}");
                }
            }
        }
    }

    #[test]
    fn at_the_sampling_policy_the_loss_is_minus_the_mean_advantage() {
        let mut s = samples();
        for x in &mut s {
            x.old_logps = x.logps.clone();
            x.values = x.returns.clone();
            x.old_values = x.returns.clone();
        }
        let out = ppo_loss(&P, &s);
        let mean_adv = (1.0 - 0.5 + 2.0 - 1.5) / 4.0;
        assert!((out.policy + mean_adv).abs() < 1e-12);
        assert_eq!(out.value_loss, 0.0);
        assert_eq!(out.clip_fraction, 0.0);
        assert!((out.ratio - 1.0).abs() < 1e-12);
    }

    #[test]
    fn a_ratio_past_the_clip_with_the_advantage_stops_the_gradient() {
        let s = vec![Sample {
            logps: vec![0.0, 0.0],
            old_logps: vec![-0.5, 0.5],
            advantages: vec![1.0, -1.0],
            values: vec![0.0; 2],
            old_values: vec![0.0; 2],
            returns: vec![0.0; 2],
        }];
        let out = ppo_loss(&P, &s);
        // Token 0: ρ = e^0.5 > 1.2 with A > 0; token 1: ρ = e^-0.5 < 0.8 with A < 0.
        assert_eq!(out.logp_grads[0], vec![0.0, 0.0]);
        assert_eq!(out.clip_fraction, 1.0);
    }
}
