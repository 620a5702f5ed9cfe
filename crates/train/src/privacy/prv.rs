//! The PRV accountant (Gopi, Lee and Wutschitz 2021, "Numerical composition of differential
//! privacy"): the privacy-loss random variable of one Poisson-subsampled Gaussian step is
//! truncated to a safe domain, discretized on a mesh fine enough for the wanted ε error, its
//! mean corrected, composed with itself by FFT, and ε read from the composed distribution. Its
//! bound is tighter than RDP's; we report the upper end of the estimate, as Opacus'
//! `PRVAccountant` does.

use rustfft::num_complex::Complex64;
use rustfft::FftPlanner;

use super::quadrature::integrate;
use super::rdp;
use super::special::erfc;

/// Why ε could not be computed.
#[derive(Debug, Clone, PartialEq)]
pub enum PrvError {
    /// δ is too small for the floating-point resolution of the mesh.
    DeltaTooSmall,
    /// The discretized mean moved by half a mesh step or more (the mesh is too coarse).
    MeanShift,
    /// δ is below what the truncated domain can resolve.
    OutOfDomain,
}

impl std::fmt::Display for PrvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            PrvError::DeltaTooSmall => "delta is too small for the PRV accountant's mesh; raise delta",
            PrvError::MeanShift => "the PRV discretization moved the mean by half a mesh step",
            PrvError::OutOfDomain => "epsilon lies outside the PRV accountant's domain",
        })
    }
}

/// One Poisson-subsampled Gaussian step's privacy loss: its CDF (Gopi et al., proposition B4).
#[derive(Clone, Copy)]
struct SubsampledGaussian {
    q: f64,
    sigma: f64,
}

impl SubsampledGaussian {
    fn cdf(&self, t: f64) -> f64 {
        let (q, s) = (self.q, self.sigma);
        if t <= (1.0 - q).ln() {
            return 0.0;
        }
        let z = ((t.exp() + q - 1.0) / q).ln();
        let r = 2.0 * std::f64::consts::SQRT_2 * s;
        1.0 - q * erfc((2.0 * z * s * s - 1.0) / r) / 2.0 - (1.0 - q) * erfc((2.0 * z * s * s + 1.0) / r) / 2.0
    }
}

/// The same variable conditioned on `[t_min, t_max)`.
struct Truncated {
    prv: SubsampledGaussian,
    t_min: f64,
    t_max: f64,
    cdf_min: f64,
    mass: f64,
}

impl Truncated {
    fn new(prv: SubsampledGaussian, t_min: f64, t_max: f64) -> Self {
        let cdf_min = prv.cdf(t_min);
        Truncated { prv, t_min, t_max, cdf_min, mass: prv.cdf(t_max) - cdf_min }
    }

    fn cdf(&self, t: f64) -> f64 {
        if t < self.t_min {
            0.0
        } else if t < self.t_max {
            (self.prv.cdf(t) - self.cdf_min) / self.mass
        } else {
            1.0
        }
    }

    /// E[t] = ∫ t dF, integrated by parts over pieces that resolve the steep part near 0.
    fn mean(&self) -> f64 {
        let lo = self.t_min.abs().log10().trunc() as i32;
        let hi = self.t_max.log10().trunc() as i32;
        let logspace = |a: i32, b: i32| -> Vec<f64> {
            (0..10).map(|k| 10f64.powf(f64::from(a) + f64::from(b - a) * f64::from(k) / 9.0)).collect()
        };
        let mut points = vec![self.t_min];
        points.extend(logspace(lo, -5).into_iter().map(|x| -x));
        points.push(0.0);
        points.extend(logspace(-5, hi));
        points.push(self.t_max);
        points
            .windows(2)
            .map(|w| {
                let (l, r) = (w[0], w[1]);
                r * self.cdf(r) - l * self.cdf(l) - integrate(|t| self.cdf(t), l, r)
            })
            .sum()
    }
}

/// A mesh `t_min + i·dt`, `i < size` (`size` even), moved right by `shift`.
#[derive(Clone, Copy, Debug)]
struct Domain {
    t_min: f64,
    t_max: f64,
    size: usize,
}

impl Domain {
    /// The mesh over `[-l, l]` with step `dt`, aligned to multiples of `dt`, of even size.
    fn aligned(l: f64, dt: f64) -> Self {
        let t_min = (-l / dt).floor() * dt;
        let mut t_max = (l / dt).ceil() * dt;
        let mut size = ((t_max - t_min) / dt).round() as usize + 1;
        if size % 2 == 1 {
            size += 1;
            t_max += dt;
        }
        Domain { t_min, t_max, size }
    }

    fn dt(&self) -> f64 {
        (self.t_max - self.t_min) / (self.size - 1) as f64
    }

    fn ts(&self) -> Vec<f64> {
        let dt = self.dt();
        let mut ts: Vec<f64> = (0..self.size).map(|i| self.t_min + i as f64 * dt).collect();
        ts[self.size - 1] = self.t_max;
        ts
    }

    fn shifted(self, by: f64) -> Self {
        Domain { t_min: self.t_min + by, t_max: self.t_max + by, size: self.size }
    }
}

/// A probability mass function on a domain.
struct Discrete {
    pmf: Vec<f64>,
    domain: Domain,
    /// How far the domain was moved to correct the mean.
    shift: f64,
}

fn discretize(prv: &Truncated, domain: Domain) -> Result<Discrete, PrvError> {
    let dt = domain.dt();
    let ts = domain.ts();
    let pmf: Vec<f64> = ts.iter().map(|&t| prv.cdf(t + dt / 2.0) - prv.cdf(t - dt / 2.0)).collect();
    let mean_discrete: f64 = ts.iter().zip(&pmf).map(|(t, p)| t * p).sum();
    let shift = prv.mean() - mean_discrete;
    if shift.abs() >= dt / 2.0 {
        return Err(PrvError::MeanShift);
    }
    Ok(Discrete { pmf, domain: domain.shifted(shift), shift })
}

/// The pmf of the sum of `n` independent copies: the n-th power of its DFT. Zero sits at index
/// `size/2 − 1`, so the circular result is rolled back to keep it there.
fn self_compose(d: &Discrete, n: u64) -> Discrete {
    let len = d.pmf.len();
    let mut planner = FftPlanner::<f64>::new();
    let mut buf: Vec<Complex64> = d.pmf.iter().map(|&p| Complex64::new(p, 0.0)).collect();
    planner.plan_fft_forward(len).process(&mut buf);
    for c in &mut buf {
        *c = pow(*c, n);
    }
    planner.plan_fft_inverse(len).process(&mut buf);
    let mut roll = ((n - 1) % len as u64) as usize;
    if n.is_multiple_of(2) {
        roll = (roll + len / 2) % len;
    }
    let mut pmf = vec![0.0; len];
    for (i, c) in buf.iter().enumerate() {
        pmf[(i + roll) % len] = c.re / len as f64;
    }
    Discrete { pmf, domain: d.domain.shifted(d.shift * (n - 1) as f64), shift: d.shift * n as f64 }
}

fn pow(mut base: Complex64, mut n: u64) -> Complex64 {
    let mut acc = Complex64::new(1.0, 0.0);
    while n > 0 {
        if n & 1 == 1 {
            acc *= base;
        }
        base *= base;
        n >>= 1;
    }
    acc
}

/// The pmf of the sum of two variables on the same mesh ("same"-size linear convolution).
fn compose_two(a: &Discrete, b: &Discrete) -> Discrete {
    let len = a.pmf.len();
    let full = 2 * len - 1;
    let n = full.next_power_of_two();
    let mut planner = FftPlanner::<f64>::new();
    let fft = |v: &[f64], planner: &mut FftPlanner<f64>| {
        let mut buf: Vec<Complex64> = v.iter().map(|&p| Complex64::new(p, 0.0)).collect();
        buf.resize(n, Complex64::new(0.0, 0.0));
        planner.plan_fft_forward(n).process(&mut buf);
        buf
    };
    let (fa, fb) = (fft(&a.pmf, &mut planner), fft(&b.pmf, &mut planner));
    let mut prod: Vec<Complex64> = fa.iter().zip(&fb).map(|(x, y)| x * y).collect();
    planner.plan_fft_inverse(n).process(&mut prod);
    let start = (full - len) / 2;
    let pmf = (0..len).map(|i| prod[start + i].re / n as f64).collect();
    Discrete { pmf, domain: a.domain.shifted(b.shift), shift: a.shift + b.shift }
}

impl Discrete {
    /// ε at `delta` read from the pmf: the smallest ε whose δ(ε) = E[(1 − e^{ε−t})⁺] ≤ delta.
    fn epsilon(&self, delta: f64) -> Result<f64, PrvError> {
        let ts = self.domain.ts();
        let n = ts.len();
        // Tail sums from the right: d1 = P[T ≥ tᵢ], d2 = E[e^{−T}; T ≥ tᵢ].
        let (mut d1, mut d2) = (vec![0.0; n], vec![0.0; n]);
        let (mut s1, mut s2) = (0.0, 0.0);
        for i in (0..n).rev() {
            s1 += self.pmf[i];
            s2 += self.pmf[i] * (-ts[i]).exp();
            d1[i] = s1;
            d2[i] = s2;
        }
        // −δ(tᵢ) = e^{tᵢ}·d2 − d1 rises with i; take the first index where it reaches −delta.
        let i = (0..n).find(|&i| ts[i].exp() * d2[i] - d1[i] >= -delta).ok_or(PrvError::OutOfDomain)?;
        if i == 0 {
            return Err(PrvError::OutOfDomain);
        }
        Ok(((d1[i] - delta) / d2[i]).ln())
    }
}

/// ε at `delta` after composing `(noise_multiplier, sample_rate, steps)` segments, with the
/// estimate's error bounded by `eps_error` (Opacus' default is 0.01) and δ's by `delta/1000`.
pub fn epsilon(history: &[(f64, f64, u64)], delta: f64, eps_error: f64) -> Result<f64, PrvError> {
    let history: Vec<_> = history.iter().copied().filter(|h| h.2 > 0).collect();
    if history.is_empty() {
        return Ok(0.0);
    }
    let delta_error = delta / 1000.0;
    let total: u64 = history.iter().map(|h| h.2).sum();
    // A domain wide enough that the truncated mass stays below delta_error (Gopi et al.,
    // remark 5.6), from the RDP bound of the whole run and of each single step.
    let mut l = rdp::epsilon(&history, delta_error / 4.0);
    for &(sigma, q, _) in &history {
        l = l.max(rdp::epsilon(&[(sigma, q, 1)], delta_error / (8.0 * total as f64)));
    }
    let l = l.max(eps_error) + 3.0;
    let mesh = eps_error / (total as f64 * (12.0 / delta_error).ln() / 2.0).sqrt();
    let domain = Domain::aligned(l, mesh);
    if 1.084_202_172_485_504_4e-19 * domain.size as f64 > delta - delta_error {
        return Err(PrvError::DeltaTooSmall);
    }
    let mut composed = Vec::new();
    for &(sigma, q, steps) in &history {
        let prv = Truncated::new(SubsampledGaussian { q, sigma }, domain.t_min, domain.t_max);
        composed.push(self_compose(&discretize(&prv, domain)?, steps));
    }
    while composed.len() > 1 {
        let mut next = Vec::new();
        if composed.len() % 2 == 1 {
            next.push(composed.pop().expect("non-empty"));
        }
        for pair in composed.chunks(2) {
            next.push(compose_two(&pair[0], &pair[1]));
        }
        composed = next;
    }
    Ok(composed[0].epsilon(delta - delta_error)? + eps_error)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_loss_cdf_is_a_distribution() {
        let prv = SubsampledGaussian { q: 0.01, sigma: 1.0 };
        assert_eq!(prv.cdf((0.99f64).ln()), 0.0);
        assert!(prv.cdf(50.0) > 1.0 - 1e-12);
        let mut last = 0.0;
        for k in -40..40 {
            let c = prv.cdf(f64::from(k) / 10.0);
            assert!(c >= last - 1e-15, "cdf falls at {k}");
            last = c;
        }
    }

    #[test]
    fn prv_is_tighter_than_rdp() {
        let h = [(1.0, 0.01, 500)];
        let prv = epsilon(&h, 1e-5, 0.01).unwrap();
        let rdp = rdp::epsilon(&h, 1e-5);
        assert!(prv < rdp && prv > 0.5 * rdp, "prv {prv} rdp {rdp}");
    }

    #[test]
    fn one_segment_split_in_two_gives_the_same_epsilon() {
        let whole = epsilon(&[(1.2, 0.02, 200)], 1e-5, 0.01).unwrap();
        let split = epsilon(&[(1.2, 0.02, 100), (1.2, 0.02, 100)], 1e-5, 0.01).unwrap();
        assert!((whole - split).abs() < 0.02, "{whole} vs {split}");
    }
}
