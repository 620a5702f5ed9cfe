//! The special functions the privacy accountants need: `ln erfc` without underflow, and sums
//! and differences of numbers held as logarithms.

/// `ln(erfc(x))`, accurate where `erfc(x)` itself underflows (large positive `x`).
pub fn ln_erfc(x: f64) -> f64 {
    if x < 25.0 {
        return libm::erfc(x).ln();
    }
    // erfc(x) = exp(-x²)/(x√π) · (1 − 1/(2x²) + 3/(4x⁴) − 15/(8x⁶) + 105/(16x⁸)); the next term
    // is below 1e-13 relative at x = 25.
    let inv = 1.0 / (2.0 * x * x);
    let series = 1.0 - inv + 3.0 * inv * inv - 15.0 * inv.powi(3) + 105.0 * inv.powi(4);
    -x * x - (x * std::f64::consts::PI.sqrt()).ln() + series.ln()
}

/// `erfc(x)`.
pub fn erfc(x: f64) -> f64 {
    libm::erfc(x)
}

/// `ln(eˣ + eʸ)` for `x`, `y` given as logarithms (−∞ is zero).
pub fn ln_add(x: f64, y: f64) -> f64 {
    let (lo, hi) = if x < y { (x, y) } else { (y, x) };
    if lo == f64::NEG_INFINITY {
        return hi;
    }
    (lo - hi).exp().ln_1p() + hi
}

/// `ln(eˣ − eʸ)` for `x ≥ y` given as logarithms; −∞ when they are equal.
pub fn ln_sub(x: f64, y: f64) -> f64 {
    if y == f64::NEG_INFINITY {
        return x;
    }
    if x <= y {
        return f64::NEG_INFINITY;
    }
    let d = (x - y).exp_m1();
    if d.is_infinite() {
        return x;
    }
    d.ln() + y
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ln_erfc_is_continuous_where_the_series_takes_over() {
        let below = ln_erfc(25.0 - 1e-9);
        let above = ln_erfc(25.0);
        assert!((below - above).abs() < 1e-9 * below.abs(), "{below} vs {above}");
        // Reference values from mpmath at 30 digits.
        assert!((ln_erfc(1.0) - 0.157_299_207_050_285_f64.ln()).abs() < 1e-14);
        assert!((ln_erfc(30.0) - (-903.974_117_110_643_9)).abs() < 1e-9, "{}", ln_erfc(30.0));
        assert!((ln_erfc(-3.0) - (2.0 - 2.209_049_699_858_544e-5_f64).ln()).abs() < 1e-14);
    }

    #[test]
    fn log_space_sums_match_direct_ones() {
        let (a, b) = (3.0_f64, 1.5_f64);
        assert!((ln_add(a.ln(), b.ln()) - 4.5_f64.ln()).abs() < 1e-15);
        assert!((ln_sub(a.ln(), b.ln()) - 1.5_f64.ln()).abs() < 1e-15);
        assert_eq!(ln_add(f64::NEG_INFINITY, 2.0), 2.0);
        assert_eq!(ln_sub(2.0, 2.0), f64::NEG_INFINITY);
    }
}
