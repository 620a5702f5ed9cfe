//! Rényi-DP of the Poisson-subsampled Gaussian mechanism (Mironov, Talwar and Zhang 2019,
//! section 3.3), and its conversion to (ε, δ)-DP (Balle et al. 2020, theorem 21), the analysis
//! Opacus' `RDPAccountant` and TF Privacy use.

use super::special::{ln_add, ln_erfc, ln_sub};

/// The orders Opacus evaluates by default: 1.1, 1.2, …, 10.9, then 12, 13, …, 63.
pub fn default_orders() -> Vec<f64> {
    (1..100).map(|x| 1.0 + f64::from(x) / 10.0).chain((12..64).map(f64::from)).collect()
}

/// RDP at order `alpha` of one step with sampling rate `q` and noise multiplier `sigma`
/// (+∞ without noise).
pub fn step_rdp(q: f64, sigma: f64, alpha: f64) -> f64 {
    if q == 0.0 {
        return 0.0;
    }
    if sigma == 0.0 || alpha.is_infinite() {
        return f64::INFINITY;
    }
    if q == 1.0 {
        return alpha / (2.0 * sigma * sigma);
    }
    let ln_a =
        if alpha.fract() == 0.0 { ln_a_integer(q, sigma, alpha as u64) } else { ln_a_fractional(q, sigma, alpha) };
    ln_a / (alpha - 1.0)
}

/// `ln A_α` for an integer order: a finite binomial sum.
fn ln_a_integer(q: f64, sigma: f64, alpha: u64) -> f64 {
    let mut ln_a = f64::NEG_INFINITY;
    let mut binom = 1.0_f64;
    for i in 0..=alpha {
        if i > 0 {
            binom = binom * (alpha - i + 1) as f64 / i as f64;
        }
        let (fi, fa) = (i as f64, alpha as f64);
        let ln_coef = binom.ln() + fi * q.ln() + (fa - fi) * (1.0 - q).ln();
        ln_a = ln_add(ln_a, ln_coef + (fi * fi - fi) / (2.0 * sigma * sigma));
    }
    ln_a
}

/// `ln A_α` for a fractional order: two alternating series, summed until their terms fall
/// below e⁻³⁰.
fn ln_a_fractional(q: f64, sigma: f64, alpha: f64) -> f64 {
    let (mut ln_a0, mut ln_a1) = (f64::NEG_INFINITY, f64::NEG_INFINITY);
    let z0 = sigma * sigma * (1.0 / q - 1.0).ln() + 0.5;
    let mut coef = 1.0_f64;
    let mut i = 0.0_f64;
    loop {
        if i > 0.0 {
            coef *= (alpha - i + 1.0) / i;
        }
        let ln_coef = coef.abs().ln();
        let j = alpha - i;
        let ln_t0 = ln_coef + i * q.ln() + j * (1.0 - q).ln();
        let ln_t1 = ln_coef + j * q.ln() + i * (1.0 - q).ln();
        let ln_e0 = 0.5_f64.ln() + ln_erfc((i - z0) / (std::f64::consts::SQRT_2 * sigma));
        let ln_e1 = 0.5_f64.ln() + ln_erfc((z0 - j) / (std::f64::consts::SQRT_2 * sigma));
        let ln_s0 = ln_t0 + (i * i - i) / (2.0 * sigma * sigma) + ln_e0;
        let ln_s1 = ln_t1 + (j * j - j) / (2.0 * sigma * sigma) + ln_e1;
        if coef > 0.0 {
            ln_a0 = ln_add(ln_a0, ln_s0);
            ln_a1 = ln_add(ln_a1, ln_s1);
        } else {
            ln_a0 = ln_sub(ln_a0, ln_s0);
            ln_a1 = ln_sub(ln_a1, ln_s1);
        }
        i += 1.0;
        if ln_s0.max(ln_s1) < -30.0 {
            break;
        }
    }
    ln_add(ln_a0, ln_a1)
}

/// The smallest ε over `orders` for accumulated RDP values `rdp` at `delta`, with the order
/// that gives it; ε is +∞ when every order's is undefined.
pub fn epsilon_from_rdp(orders: &[f64], rdp: &[f64], delta: f64) -> (f64, f64) {
    let mut best = (f64::INFINITY, f64::NAN);
    for (&a, &r) in orders.iter().zip(rdp) {
        let eps = r - (delta.ln() + a.ln()) / (a - 1.0) + ((a - 1.0) / a).ln();
        if eps < best.0 {
            best = (eps, a);
        }
    }
    best
}

/// ε at `delta` after composing `(noise_multiplier, sample_rate, steps)` segments.
pub fn epsilon(history: &[(f64, f64, u64)], delta: f64) -> f64 {
    let orders = default_orders();
    let rdp: Vec<f64> = orders
        .iter()
        .map(|&a| history.iter().map(|&(sigma, q, steps)| step_rdp(q, sigma, a) * steps as f64).sum())
        .collect();
    epsilon_from_rdp(&orders, &rdp, delta).0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_batch_gaussian_is_alpha_over_two_sigma_squared() {
        assert_eq!(step_rdp(1.0, 2.0, 4.0), 0.5);
        assert_eq!(step_rdp(0.0, 2.0, 4.0), 0.0);
        assert_eq!(step_rdp(0.5, 0.0, 4.0), f64::INFINITY);
    }

    #[test]
    fn fractional_orders_interpolate_integer_ones() {
        // RDP grows with the order; a fractional order sits between its integer neighbours.
        let (q, s) = (0.01, 1.1);
        let (lo, mid, hi) = (step_rdp(q, s, 3.0), step_rdp(q, s, 3.5), step_rdp(q, s, 4.0));
        assert!(lo < mid && mid < hi, "{lo} {mid} {hi}");
    }

    #[test]
    fn more_steps_cost_more_privacy() {
        let e1 = epsilon(&[(1.0, 0.01, 100)], 1e-5);
        let e2 = epsilon(&[(1.0, 0.01, 1000)], 1e-5);
        assert!(e1 > 0.0 && e2 > e1, "{e1} {e2}");
    }
}
