//! Per-token rewards and generalized advantage estimation (GAE) for PPO: each completion token
//! is rewarded −β·KL(policy ‖ reference) on that token, and its last token also gets the reward
//! model's score; advantages are GAE over the value head's estimates, returns are advantages
//! plus values, and advantages are whitened over the batch.

/// One sampled completion, per token.
#[derive(Debug, Clone, PartialEq)]
pub struct Trajectory {
    /// The sampling policy's log-probs of the tokens.
    pub logps: Vec<f64>,
    /// The reference's log-probs of the tokens (empty without a KL penalty).
    pub ref_logps: Vec<f64>,
    /// The value head's estimate before each token.
    pub values: Vec<f64>,
    /// The reward model's score of the whole completion.
    pub score: f64,
}

/// What the rollout gives the loss, per completion token.
#[derive(Debug, Clone, PartialEq)]
pub struct Targets {
    /// Per token: the (whitened) advantage.
    pub advantages: Vec<f64>,
    /// Per token: the return the value head regresses to.
    pub returns: Vec<f64>,
    /// Per token: the reward (−β·KL, plus the score on the last token).
    pub rewards: Vec<f64>,
    /// Σ over tokens of log π − log π_ref (the sampled estimate of the sequence's KL).
    pub kl: f64,
}

/// Per-token rewards of a trajectory: −`kl_coef`·(log π − log π_ref) on every token and the
/// score added on the last one.
pub fn token_rewards(t: &Trajectory, kl_coef: f64) -> Vec<f64> {
    let n = t.logps.len();
    let mut r: Vec<f64> = (0..n)
        .map(|i| match t.ref_logps.get(i) {
            Some(reference) => -kl_coef * (t.logps[i] - reference),
            None => 0.0,
        })
        .collect();
    if let Some(last) = r.last_mut() {
        *last += t.score;
    }
    r
}

/// GAE: δ_t = r_t + γ·V_{t+1} − V_t (V after the last token is 0, the episode ends there) and
/// A_t = δ_t + γ·λ·A_{t+1}. Returns (advantages, returns = advantages + values).
pub fn gae(rewards: &[f64], values: &[f64], discount: f64, lambda: f64) -> (Vec<f64>, Vec<f64>) {
    let n = rewards.len();
    let mut adv = vec![0.0; n];
    let mut next_adv = 0.0;
    for t in (0..n).rev() {
        let next_value = if t + 1 < n { values[t + 1] } else { 0.0 };
        let delta = rewards[t] + discount * next_value - values[t];
        next_adv = delta + discount * lambda * next_adv;
        adv[t] = next_adv;
    }
    let returns = adv.iter().zip(values).map(|(a, v)| a + v).collect();
    (adv, returns)
}

/// Shifts and scales `xs` (every token of every completion) to mean 0 and variance 1 (the
/// unbiased variance, as TRL's `masked_whiten`); a constant batch becomes all 0.
pub fn whiten(xs: &mut [Vec<f64>]) {
    let n: usize = xs.iter().map(Vec::len).sum();
    if n == 0 {
        return;
    }
    let mean = xs.iter().flatten().sum::<f64>() / n as f64;
    let var = xs.iter().flatten().map(|x| (x - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
    let scale = 1.0 / (var + 1e-8).sqrt();
    for x in xs.iter_mut().flatten() {
        *x = (*x - mean) * scale;
    }
}

/// The rollout's targets: per-token rewards, GAE advantages (whitened over all completions) and
/// returns, and each completion's KL.
pub fn targets(batch: &[Trajectory], kl_coef: f64, discount: f64, lambda: f64) -> Vec<Targets> {
    let mut out: Vec<Targets> = batch
        .iter()
        .map(|t| {
            let rewards = token_rewards(t, kl_coef);
            let (advantages, returns) = gae(&rewards, &t.values, discount, lambda);
            let kl = t.logps.iter().zip(&t.ref_logps).map(|(p, r)| p - r).sum();
            Targets { advantages, returns, rewards, kl }
        })
        .collect();
    let mut adv: Vec<Vec<f64>> = out.iter_mut().map(|t| std::mem::take(&mut t.advantages)).collect();
    whiten(&mut adv);
    for (t, a) in out.iter_mut().zip(adv) {
        t.advantages = a;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewards_penalize_kl_per_token_and_score_the_last_token() {
        let t = Trajectory { logps: vec![-1.0, -2.0], ref_logps: vec![-1.5, -1.0], values: vec![0.0; 2], score: 3.0 };
        let r = token_rewards(&t, 0.1);
        assert!((r[0] - -0.05).abs() < 1e-12);
        assert!((r[1] - (0.1 + 3.0)).abs() < 1e-12);
        let none = Trajectory { ref_logps: vec![], ..t };
        assert_eq!(token_rewards(&none, 0.1), vec![0.0, 3.0]);
    }

    #[test]
    fn gae_matches_the_recursion_written_out() {
        let (r, v, g, l) = ([0.5, -0.2, 1.0], [0.1, 0.3, -0.4], 0.9, 0.8);
        let d2 = r[2] - v[2];
        let d1 = r[1] + g * v[2] - v[1];
        let d0 = r[0] + g * v[1] - v[0];
        let a2 = d2;
        let a1 = d1 + g * l * a2;
        let a0 = d0 + g * l * a1;
        let (adv, ret) = gae(&r, &v, g, l);
        for (x, y) in adv.iter().zip([a0, a1, a2]) {
            assert!((x - y).abs() < 1e-12, "{adv:?}");
        }
        for i in 0..3 {
            assert!((ret[i] - (adv[i] + v[i])).abs() < 1e-12);
        }
    }

    #[test]
    fn with_lambda_one_and_no_discount_returns_are_reward_to_go() {
        let r = [1.0, 2.0, 3.0];
        let (_, ret) = gae(&r, &[7.0, -3.0, 0.5], 1.0, 1.0);
        assert_eq!(ret, vec![6.0, 5.0, 3.0]);
    }

    #[test]
    fn whitening_gives_mean_zero_unit_variance_over_all_tokens() {
        let mut xs = vec![vec![1.0, 2.0], vec![3.0, 4.0, 5.0]];
        whiten(&mut xs);
        let flat: Vec<f64> = xs.iter().flatten().copied().collect();
        let mean = flat.iter().sum::<f64>() / 5.0;
        let var = flat.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / 4.0;
        assert!(mean.abs() < 1e-12 && (var - 1.0).abs() < 1e-6, "{flat:?}");
        let mut same = vec![vec![2.0, 2.0]];
        whiten(&mut same);
        assert_eq!(same, vec![vec![0.0, 0.0]]);
    }

    #[test]
    fn targets_report_each_completions_kl() {
        let a = Trajectory { logps: vec![-1.0, -1.0], ref_logps: vec![-1.2, -0.5], values: vec![0.0; 2], score: 1.0 };
        let b = Trajectory { score: -1.0, ..a.clone() };
        let t = targets(&[a, b], 0.0, 1.0, 1.0);
        assert!((t[0].kl - (0.2 - 0.5)).abs() < 1e-12);
        // With β = 0 only the scores differ: the better completion gets the larger advantages.
        assert!(t[0].advantages.iter().zip(&t[1].advantages).all(|(x, y)| x > y));
    }
}
