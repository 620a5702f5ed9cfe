//! The sweep file: `[sweep]` (the base run config, the objective, the sampler, the budget),
//! `[sweep.pruner]` and `[space]` (what is searched).
//!
//! ```toml
//! [sweep]
//! base = "run.toml"        # the run config every trial starts from
//! output = "sweeps/sst2"   # the study folder
//! sampler = "tpe"          # grid | random | tpe
//! trials = 20
//! parallel = 1             # trials at once in this process
//! [sweep.pruner]
//! kind = "asha"            # none | median | asha
//! [space]
//! "train.lr" = { type = "log_uniform", low = 1e-5, high = 1e-3 }
//! "method.lora_r" = [4, 8, 16]
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Result, SweepError};
use crate::journal::Direction;
use crate::pruner::{Asha, Median, NoPruner, Pruner};
use crate::sampler::grid::GridSampler;
use crate::sampler::random::RandomSampler;
use crate::sampler::tpe::TpeSampler;
use crate::sampler::Sampler;
use crate::space::Space;

/// `[sweep.pruner]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrunerSection {
    /// "none", "median" or "asha".
    #[serde(default = "default_pruner")]
    pub kind: String,
    /// ASHA: steps of the first rung (default: the first evaluation's step).
    #[serde(default)]
    pub min_resource: Option<u64>,
    /// ASHA: η, keep the best 1/η at each rung.
    #[serde(default = "default_reduction")]
    pub reduction_factor: u64,
    /// Median: complete trials before pruning starts.
    #[serde(default = "default_median_startup")]
    pub startup_trials: usize,
    /// Median: steps before a trial can be pruned.
    #[serde(default)]
    pub warmup_steps: u64,
}

fn default_pruner() -> String {
    "none".into()
}
fn default_reduction() -> u64 {
    3
}
fn default_median_startup() -> usize {
    5
}

impl Default for PrunerSection {
    fn default() -> Self {
        PrunerSection {
            kind: default_pruner(),
            min_resource: None,
            reduction_factor: default_reduction(),
            startup_trials: default_median_startup(),
            warmup_steps: 0,
        }
    }
}

/// `[sweep]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SweepSection {
    /// The run config trials start from (relative to the working directory, as typed).
    pub base: PathBuf,
    /// The study folder.
    #[serde(default = "default_output")]
    pub output: PathBuf,
    /// The objective: a metric of the run's evaluation (default: the base's `eval.metric`).
    #[serde(default)]
    pub metric: Option<String>,
    /// "maximize" or "minimize" (default: from the metric; losses are minimized).
    #[serde(default)]
    pub direction: Option<Direction>,
    /// "last" (the final evaluation) or "best" (the best evaluation of the run).
    #[serde(default = "default_objective")]
    pub objective: String,
    /// "grid", "random" or "tpe".
    #[serde(default = "default_sampler")]
    pub sampler: String,
    /// The trial budget (a grid stops earlier when exhausted).
    #[serde(default = "default_trials")]
    pub trials: usize,
    /// Trials at once in this process (they share its threads).
    #[serde(default = "default_parallel")]
    pub parallel: usize,
    /// The sampler's seed.
    #[serde(default)]
    pub seed: u64,
    /// TPE: random trials before TPE starts.
    #[serde(default = "default_startup")]
    pub tpe_startup_trials: usize,
    /// TPE: candidates drawn from l(x) per trial.
    #[serde(default = "default_candidates")]
    pub tpe_candidates: usize,
    /// TPE: one joint density over all parameters (true, Optuna's default) or one each.
    #[serde(default = "default_true")]
    pub tpe_multivariate: bool,
    /// Keep every trial's outputs ("all") or only the best complete trial's ("best").
    #[serde(default = "default_keep")]
    pub keep: String,
    /// Pruning.
    #[serde(default)]
    pub pruner: PrunerSection,
}

fn default_output() -> PathBuf {
    PathBuf::from("sweeps/sweep")
}
fn default_objective() -> String {
    "last".into()
}
fn default_sampler() -> String {
    "tpe".into()
}
fn default_trials() -> usize {
    20
}
fn default_parallel() -> usize {
    1
}
fn default_startup() -> usize {
    10
}
fn default_candidates() -> usize {
    24
}
fn default_true() -> bool {
    true
}
fn default_keep() -> String {
    "best".into()
}

/// A parsed sweep file.
#[derive(Debug, Clone)]
pub struct SweepFile {
    /// `[sweep]`.
    pub sweep: SweepSection,
    /// `[space]`.
    pub space: Space,
    /// The file's text (part of the study's fingerprint).
    pub text: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    sweep: SweepSection,
    space: toml::Table,
}

impl SweepFile {
    /// Parses a sweep file's text (`source` names it in errors).
    pub fn parse(text: &str, source: &str) -> Result<SweepFile> {
        let raw: Raw = toml::from_str(text).map_err(|e| {
            SweepError::Config(format!(
                "{source}: {}",
                e.to_string().lines().filter(|l| !l.trim().is_empty()).collect::<Vec<_>>().join(" ")
            ))
        })?;
        let space = Space::parse(&raw.space).map_err(|e| SweepError::Config(format!("{source}: {e}")))?;
        let s = &raw.sweep;
        let bad = |key: &str, why: String| Err(SweepError::Config(format!("{source}: `sweep.{key}` {why}")));
        if !["grid", "random", "tpe"].contains(&s.sampler.as_str()) {
            return bad("sampler", format!("= \"{}\": use \"grid\", \"random\" or \"tpe\"", s.sampler));
        }
        if !["none", "median", "asha"].contains(&s.pruner.kind.as_str()) {
            return bad("pruner.kind", format!("= \"{}\": use \"none\", \"median\" or \"asha\"", s.pruner.kind));
        }
        if !["last", "best"].contains(&s.objective.as_str()) {
            return bad("objective", format!("= \"{}\": use \"last\" or \"best\"", s.objective));
        }
        if !["best", "all"].contains(&s.keep.as_str()) {
            return bad("keep", format!("= \"{}\": use \"best\" or \"all\"", s.keep));
        }
        if s.trials == 0 || s.parallel == 0 {
            return bad(if s.trials == 0 { "trials" } else { "parallel" }, "must be at least 1".into());
        }
        if s.pruner.reduction_factor < 2 {
            return bad("pruner.reduction_factor", "must be at least 2".into());
        }
        if s.sampler == "grid" {
            space.grid_size().map_err(|e| SweepError::Config(format!("{source}: {e}")))?;
        }
        Ok(SweepFile { sweep: raw.sweep, space, text: text.to_string() })
    }

    /// Reads a sweep file.
    pub fn load(path: &Path) -> Result<SweepFile> {
        let text = std::fs::read_to_string(path).map_err(|e| SweepError::io(path, e))?;
        SweepFile::parse(&text, &path.display().to_string())
    }

    /// The sampler of `[sweep]`.
    pub fn sampler(&self) -> Box<dyn Sampler> {
        let s = &self.sweep;
        match s.sampler.as_str() {
            "grid" => Box::new(GridSampler { seed: s.seed }),
            "random" => Box::new(RandomSampler { seed: s.seed }),
            _ => Box::new(TpeSampler {
                seed: s.seed,
                startup_trials: s.tpe_startup_trials,
                candidates: s.tpe_candidates.max(1),
                multivariate: s.tpe_multivariate,
            }),
        }
    }

    /// The pruner of `[sweep.pruner]`.
    pub fn pruner(&self) -> Box<dyn Pruner> {
        let p = &self.sweep.pruner;
        match p.kind.as_str() {
            "median" => Box::new(Median { startup_trials: p.startup_trials, warmup_steps: p.warmup_steps }),
            "asha" => Box::new(Asha { min_resource: p.min_resource, reduction_factor: p.reduction_factor }),
            _ => Box::new(NoPruner),
        }
    }
}

/// A stable digest (FNV-1a, 64 bits, hex) of the parts that define a study; the same text
/// gives the same digest on every platform and version.
pub fn fingerprint(parts: &[&str]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for b in part.bytes().chain(std::iter::once(0xff)) {
            h ^= b as u64;
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

impl SweepFile {
    /// The digest of what a resumed study must keep: the space, sampler, seed, pruner and
    /// objective (not the budget or the parallelism, which may change between runs), plus `extra`
    /// (the base config's text and overrides).
    pub fn fingerprint(&self, extra: &[&str]) -> String {
        let s = &self.sweep;
        let search = format!(
            "{:?}|{}|{}|{}|{}|{}|{:?}|{:?}|{}|{:?}",
            self.space,
            s.sampler,
            s.seed,
            s.tpe_startup_trials,
            s.tpe_candidates,
            s.tpe_multivariate,
            s.metric,
            s.direction,
            s.objective,
            s.pruner
        );
        let mut parts = vec![search.as_str()];
        parts.extend_from_slice(extra);
        fingerprint(&parts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sweep_file_parses_with_defaults_and_bad_values_are_named() {
        let f = SweepFile::parse(
            "[sweep]\nbase = \"run.toml\"\n[sweep.pruner]\nkind = \"asha\"\n[space]\n\"train.lr\" = { type = \"log_uniform\", low = 1e-5, high = 1e-3 }\n",
            "s.toml",
        )
        .unwrap();
        assert_eq!((f.sweep.sampler.as_str(), f.sweep.trials, f.sweep.parallel), ("tpe", 20, 1));
        assert_eq!(f.pruner().name(), "asha");
        let e = |t: &str| SweepFile::parse(t, "s.toml").unwrap_err().to_string();
        let space = "[space]\n\"train.lr\" = { type = \"uniform\", low = 0, high = 1 }\n";
        assert!(e(&format!("[sweep]\nbase = \"r\"\nsampler = \"bayes\"\n{space}")).contains("`sweep.sampler`"));
        assert!(e(&format!("[sweep]\nbase = \"r\"\nsampler = \"grid\"\n{space}")).contains("grid"));
        assert!(e(&format!("[sweep]\nbase = \"r\"\ntrails = 3\n{space}")).contains("trails"));
        assert!(
            e(&format!("[sweep]\nbase = \"r\"\n[sweep.pruner]\nkind = \"hyperband\"\n{space}")).contains("pruner.kind")
        );
        assert!(e("[sweep]\nbase = \"r\"\n[space]\n").contains("[space] is empty"));
    }

    #[test]
    fn the_fingerprint_ignores_the_budget_but_not_the_search() {
        let text = |trials: usize, sampler: &str| {
            format!("[sweep]\nbase = \"r\"\ntrials = {trials}\nsampler = \"{sampler}\"\n[space]\n\"train.lr\" = {{ type = \"uniform\", low = 0, high = 1 }}\n")
        };
        let f = |t: String| SweepFile::parse(&t, "s").unwrap().fingerprint(&["base"]);
        assert_eq!(f(text(10, "tpe")), f(text(30, "tpe")));
        assert_ne!(f(text(10, "tpe")), f(text(10, "random")));
        assert_eq!(fingerprint(&["a"]), "089bc907b544c769", "FNV-1a of \"a\\xff\"");
        assert_ne!(fingerprint(&["ab", "c"]), fingerprint(&["a", "bc"]));
    }
}
