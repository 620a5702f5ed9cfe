//! Pruners: stop a trial early when its intermediate evaluations are poor. [`Median`] (the
//! median stopping rule of Google Vizier, as Optuna's `MedianPruner`) and [`Asha`]
//! (asynchronous successive halving, Li et al. 2020, as Optuna's `SuccessiveHalvingPruner`).
//! Resources are optimizer steps; values are oriented so that lower is better.

/// A trial's intermediate values as a pruner sees them.
#[derive(Debug, Clone)]
pub struct Reports {
    /// The trial number.
    pub number: usize,
    /// `(step, value)` in the order reported, lower values better.
    pub values: Vec<(u64, f64)>,
    /// Whether the trial ran to its end (not pruned, not running).
    pub complete: bool,
}

impl Reports {
    /// The best value reported at or before `step`.
    fn best_until(&self, step: u64) -> Option<f64> {
        self.values.iter().filter(|(s, _)| *s <= step).map(|(_, v)| *v).reduce(f64::min)
    }
}

/// Decides, after a trial reports, whether to stop it.
pub trait Pruner: Send + Sync {
    /// Whether trial `trial` (whose latest report is the last of its `values`) should stop.
    fn should_prune(&self, trial: usize, all: &[Reports]) -> bool;
    /// The pruner's name, for the report.
    fn name(&self) -> &'static str;
}

/// Never prunes.
pub struct NoPruner;

impl Pruner for NoPruner {
    fn should_prune(&self, _: usize, _: &[Reports]) -> bool {
        false
    }
    fn name(&self) -> &'static str {
        "none"
    }
}

/// Prunes a trial whose best value so far is worse than the median of the other trials' best
/// values up to the same step.
pub struct Median {
    /// Complete trials needed before anything is pruned.
    pub startup_trials: usize,
    /// Steps before a trial can be pruned.
    pub warmup_steps: u64,
}

impl Pruner for Median {
    fn should_prune(&self, trial: usize, all: &[Reports]) -> bool {
        let Some(me) = all.iter().find(|r| r.number == trial) else { return false };
        let Some(&(step, _)) = me.values.last() else { return false };
        if step < self.warmup_steps || all.iter().filter(|r| r.complete).count() < self.startup_trials {
            return false;
        }
        let mut others: Vec<f64> =
            all.iter().filter(|r| r.number != trial).filter_map(|r| r.best_until(step)).collect();
        if others.is_empty() {
            return false;
        }
        others.sort_by(f64::total_cmp);
        let m = others.len();
        let median = if m % 2 == 1 { others[m / 2] } else { 0.5 * (others[m / 2 - 1] + others[m / 2]) };
        me.best_until(step).is_some_and(|v| v > median)
    }

    fn name(&self) -> &'static str {
        "median"
    }
}

/// Asynchronous successive halving: rung k sits at `min_resource · reduction_factor^k` steps.
/// A trial reaching a rung continues only if its value there is among the best
/// `max(1, ⌊n / reduction_factor⌋)` of the `n` trials that have reached it so far.
pub struct Asha {
    /// Steps of the first rung (None: the earliest step any trial has reported).
    pub min_resource: Option<u64>,
    /// η: the share of trials kept at each rung is 1/η.
    pub reduction_factor: u64,
}

impl Asha {
    /// The step of rung `k`.
    fn rung_step(&self, k: u32, min_resource: u64) -> u64 {
        min_resource.saturating_mul(self.reduction_factor.saturating_pow(k))
    }

    /// A trial's value at rung `k`: its value at the first report at or past the rung.
    fn value_at(values: &[(u64, f64)], rung: u64) -> Option<(usize, f64)> {
        values.iter().position(|(s, _)| *s >= rung).map(|i| (i, values[i].1))
    }
}

impl Pruner for Asha {
    fn should_prune(&self, trial: usize, all: &[Reports]) -> bool {
        let Some(me) = all.iter().find(|r| r.number == trial) else { return false };
        let last = match me.values.len() {
            0 => return false,
            n => n - 1,
        };
        let min_resource = match self.min_resource {
            Some(r) => r.max(1),
            None => match all.iter().filter_map(|r| r.values.first().map(|v| v.0)).min() {
                Some(r) => r.max(1),
                None => return false,
            },
        };
        let eta = self.reduction_factor.max(2);
        let mut k = 0u32;
        loop {
            let rung = self.rung_step(k, min_resource);
            if rung > me.values[last].0 || k > 62 {
                return false;
            }
            // Only the report that first reached this rung is judged there.
            if let Some((i, mine)) = Asha::value_at(&me.values, rung) {
                if i == last {
                    let mut rung_values: Vec<f64> =
                        all.iter().filter_map(|r| Asha::value_at(&r.values, rung).map(|v| v.1)).collect();
                    rung_values.sort_by(f64::total_cmp);
                    let keep = ((rung_values.len() as u64 / eta) as usize).max(1);
                    if mine > rung_values[keep - 1] {
                        return true;
                    }
                }
            }
            k += 1;
        }
    }

    fn name(&self) -> &'static str {
        "asha"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(number: usize, values: &[(u64, f64)], complete: bool) -> Reports {
        Reports { number, values: values.to_vec(), complete }
    }

    #[test]
    fn median_prunes_below_the_median_after_startup() {
        let p = Median { startup_trials: 2, warmup_steps: 10 };
        let done = [r(0, &[(10, 0.3), (20, 0.2)], true), r(1, &[(10, 0.5), (20, 0.4)], true)];
        let mut all = done.to_vec();
        all.push(r(2, &[(10, 0.6)], false));
        assert!(p.should_prune(2, &all));
        all[2] = r(2, &[(10, 0.35)], false);
        assert!(!p.should_prune(2, &all), "0.35 beats the median 0.4");
        // Warm-up and start-up protect early trials.
        all[2] = r(2, &[(5, 0.9)], false);
        assert!(!p.should_prune(2, &all));
        assert!(!p.should_prune(1, &[done[0].clone(), r(1, &[(10, 0.9)], false)]));
    }

    #[test]
    fn asha_keeps_the_top_third_at_each_rung() {
        let p = Asha { min_resource: Some(10), reduction_factor: 3 };
        // The first trial at a rung always continues.
        assert!(!p.should_prune(0, &[r(0, &[(10, 0.9)], false)]));
        // With fewer than η trials at the rung, only the best continues.
        let mut all = vec![r(0, &[(10, 0.5), (30, 0.4)], true), r(1, &[(10, 0.6)], false)];
        assert!(p.should_prune(1, &all));
        all[1] = r(1, &[(10, 0.45)], false);
        assert!(!p.should_prune(1, &all));
        // Six trials at rung 10: the best two continue.
        let vals = [0.1, 0.2, 0.3, 0.4, 0.5];
        let mut all: Vec<Reports> = vals.iter().enumerate().map(|(i, v)| r(i, &[(10, *v)], true)).collect();
        all.push(r(5, &[(10, 0.15)], false));
        assert!(!p.should_prune(5, &all));
        all[5] = r(5, &[(10, 0.25)], false);
        assert!(p.should_prune(5, &all));
        // Between rungs nothing is judged; at rung 30 the trial is compared there only.
        all[5] = r(5, &[(10, 0.15), (20, 0.9)], false);
        assert!(!p.should_prune(5, &all));
    }

    #[test]
    fn asha_takes_its_first_rung_from_the_earliest_report() {
        let p = Asha { min_resource: None, reduction_factor: 2 };
        let all = vec![r(0, &[(4, 0.1), (8, 0.1)], true), r(1, &[(4, 0.5)], false)];
        assert!(p.should_prune(1, &all));
    }
}
