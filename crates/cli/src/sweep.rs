//! `tunesmith sweep SWEEP.toml`: hyperparameter search over a run config. Each trial is a
//! training run in `<output>/trials/NNNN` with the trial's values set on the base config; its
//! evaluations go to the pruner; the study journal, `results.jsonl`, `results.html`,
//! `importance.json` and `best.toml` (the base config with the best values) live in `<output>`.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Result;
use clap::Args;
use serde_json::{Map, Value};
use tunesmith_sweep::journal::{Direction, EndState, StudyState, Trial, TrialState};
use tunesmith_sweep::report::seconds_saved;
use tunesmith_sweep::space::Space;
use tunesmith_sweep::{Claimed, Monitor, Observer, Outcome, Study, StudySettings, SweepError, SweepFile, TrialRunner};
use tunesmith_train::{Progress, RunConfig, TrainError, Trainer};

use crate::{BadInput, Problems};

/// Options of `tunesmith sweep`.
#[derive(Args, Debug)]
pub struct SweepArgs {
    /// The sweep file (TOML): `[sweep]` with the base run config, `[space]` with what to search.
    sweep: PathBuf,
    /// Continue the study in `sweep.output` (after a crash, or to raise `sweep.trials`); other
    /// processes join a running study the same way.
    #[arg(long)]
    resume: bool,
    /// Override a key of the base config in every trial, e.g. `--set train.epochs=1`
    /// (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE")]
    overrides: Vec<String>,
}

fn sweep_error(e: SweepError) -> anyhow::Error {
    match e {
        SweepError::Config(m) | SweepError::Journal(m) => BadInput(m).into(),
        io @ SweepError::Io { .. } => anyhow::Error::new(std::io::Error::other(io.to_string())),
    }
}

fn train_error(e: TrainError) -> anyhow::Error {
    crate::train::train_error(e)
}

/// The base config and what every trial sets on it.
struct Base {
    text: String,
    source: String,
    overrides: Vec<String>,
    metric: String,
    best_of_run: bool,
}

impl Base {
    /// The run config of a trial with `params` (plus `extra` overrides).
    fn config(&self, params: &Map<String, Value>, extra: &[String]) -> tunesmith_train::Result<RunConfig> {
        let mut o = self.overrides.clone();
        o.extend(Space::overrides(params));
        o.push(format!("eval.metric={:?}", self.metric));
        o.extend_from_slice(extra);
        RunConfig::parse(&self.text, &self.source, &o)
    }
}

/// Passes a trial's evaluations to the study's pruner.
struct TrialProgress<'m, 'a> {
    monitor: &'m mut Monitor<'a>,
    best: Option<f64>,
    higher: bool,
    journal_error: Option<String>,
}

impl Progress for TrialProgress<'_, '_> {
    fn start(&mut self, _: u64, _: u64) {}
    fn step(&mut self, _: u64, _: f64, _: f64, _: f64) {}
    fn message(&mut self, _: &str) {}
    fn finish(&mut self) {}
    fn evaluated(&mut self, step: u64, total_steps: u64, value: f64, _: &Map<String, Value>) -> bool {
        self.best = Some(match self.best {
            Some(b) if (self.higher && b >= value) || (!self.higher && b <= value) => b,
            _ => value,
        });
        match self.monitor.report(step, value, total_steps) {
            Ok(prune) => prune,
            Err(e) => {
                self.journal_error = Some(e.to_string());
                true
            }
        }
    }
}

struct Runner<'b> {
    base: &'b Base,
    higher: bool,
}

impl TrialRunner for Runner<'_> {
    fn run(&self, trial: &Claimed, monitor: &mut Monitor<'_>) -> std::result::Result<Outcome, String> {
        let extra =
            [format!("output.dir={:?}", trial.dir.display().to_string()), "output.save_checkpoints=false".into()];
        let cfg = self.base.config(&trial.params, &extra).map_err(|e| e.to_string())?;
        let trainer = Trainer::new(cfg, false).map_err(|e| e.to_string())?;
        let mut progress = TrialProgress { monitor, best: None, higher: self.higher, journal_error: None };
        let summary = trainer.train(&mut progress).map_err(|e| e.to_string())?;
        if let Some(e) = progress.journal_error {
            return Err(format!("the study journal could not be written: {e}"));
        }
        let metrics = summary.final_metrics.clone().unwrap_or_default();
        let last = metrics.get(&self.base.metric).and_then(Value::as_f64);
        let value = if self.base.best_of_run && !summary.stopped_by_caller { progress.best.or(last) } else { last };
        Ok(Outcome {
            value,
            steps: summary.steps,
            total_steps: summary.total_steps,
            metrics,
            pruned: summary.stopped_by_caller,
        })
    }
}

fn short(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if v.is_f64() && f != 0.0 && f.abs() < 1e-2 => format!("{f:.2e}"),
        Some(f) if v.is_f64() => format!("{f:.4}"),
        _ => v.to_string(),
    }
}

fn params_line(params: &Map<String, Value>) -> String {
    params.iter().map(|(k, v)| format!("{k}={}", short(v))).collect::<Vec<_>>().join(" ")
}

/// Prints each trial and rewrites the results after each.
struct Printer<'b> {
    base: &'b Base,
    file: &'b SweepFile,
    dir: PathBuf,
    direction: Direction,
    write: Mutex<()>,
}

impl Printer<'_> {
    fn write_results(&self, state: &StudyState) -> Result<()> {
        let _one = self.write.lock().unwrap_or_else(|p| p.into_inner());
        tunesmith_sweep::report::write(&self.dir, &self.file.space, state, &self.base.metric, self.direction)
            .map_err(sweep_error)?;
        if let Some(best) = state.best(self.direction) {
            let cfg = self.base.config(&best.params, &[]).map_err(train_error)?;
            let text = format!(
                "# The best of sweep {} (trial {}, {} = {}).\n{}",
                self.dir.display(),
                best.number,
                self.base.metric,
                best.value.map(|v| format!("{v:.6}")).unwrap_or_default(),
                cfg.to_toml()
            );
            tunesmith_eval::report::write_atomic(&self.dir.join("best.toml"), text.as_bytes())?;
        }
        Ok(())
    }
}

impl Observer for Printer<'_> {
    fn started(&self, trial: &Claimed, state: &StudyState) {
        let rerun = if trial.rerun { " (rerun: its first run was cut short)" } else { "" };
        eprintln!(
            "trial {}/{} started{rerun}: {}",
            trial.number,
            self.file.sweep.trials.max(state.trials.len()),
            params_line(&trial.params)
        );
    }

    fn ended(&self, t: &Trial, state: &StudyState) {
        let value = t.value.map(|v| format!("{v:.4}")).unwrap_or_else(|| "–".into());
        let best = state
            .best(self.direction)
            .map(|b| format!(" (best {:.4}, trial {})", b.value.unwrap_or(f64::NAN), b.number))
            .unwrap_or_default();
        let line = match t.state {
            TrialState::Ended(EndState::Complete) => {
                format!("trial {} complete: {} = {value} in {:.0} s{best}", t.number, self.base.metric, t.seconds)
            }
            TrialState::Ended(EndState::Pruned) => format!(
                "trial {} pruned at step {}/{}: {} = {value}, ~{:.0} s saved{best}",
                t.number,
                t.steps,
                t.total_steps,
                self.base.metric,
                seconds_saved(t)
            ),
            _ => format!("trial {} failed: {}", t.number, t.error.as_deref().unwrap_or("unknown error")),
        };
        eprintln!("{line}");
        if let Err(e) = self.write_results(state) {
            eprintln!("warning: the results could not be written: {e:#}");
        }
    }
}

/// Checks that every searched key is a config key and that the ends of its range (or each of
/// its values) make a valid run config.
fn check_space(base: &Base, space: &Space, source: &Path) -> Result<()> {
    for p in &space.params {
        let (lo, hi) = p.bounds();
        let mut values = vec![p.to_json(lo), p.to_json(hi)];
        values.extend(p.grid.iter().cloned());
        for v in values {
            let mut params = Map::new();
            params.insert(p.key.clone(), v.clone());
            base.config(&params, &[])
                .map_err(|e| BadInput(format!("{}: [space] `{}` = {}: {e}", source.display(), p.key, v)))?;
        }
    }
    Ok(())
}

/// Runs `tunesmith sweep`.
pub fn run(a: SweepArgs) -> Result<()> {
    let file = SweepFile::load(&a.sweep).map_err(sweep_error)?;
    let base_path = &file.sweep.base;
    let text = std::fs::read_to_string(base_path)
        .map_err(|e| BadInput(format!("{}: `sweep.base` = {}: {e}", a.sweep.display(), base_path.display())))?;
    let source = base_path.display().to_string();
    let base_cfg = RunConfig::parse(&text, &source, &a.overrides).map_err(train_error)?;
    if base_cfg.continual.is_some() || base_cfg.multitask.is_some() {
        return Err(BadInput(format!(
            "{source}: a sweep runs one-task trials; remove [continual] / [multitask] from the base config"
        ))
        .into());
    }
    if base_cfg.data.validation.is_none() && base_cfg.data.validation_split <= 0.0 && base_cfg.data.cv_folds == 0 {
        return Err(BadInput(format!(
            "{source}: trials are judged on validation data; set data.validation or data.validation_split"
        ))
        .into());
    }
    let metric = file.sweep.metric.clone().unwrap_or_else(|| base_cfg.eval.metric.clone());
    let direction = file.sweep.direction.unwrap_or(if tunesmith_train::config::lower_is_better(&metric) {
        Direction::Minimize
    } else {
        Direction::Maximize
    });
    let base = Base {
        text,
        source,
        overrides: a.overrides.clone(),
        metric: metric.clone(),
        best_of_run: file.sweep.objective == "best",
    };
    check_space(&base, &file.space, &a.sweep)?;
    let overrides = a.overrides.join("\n");
    let fingerprint = file.fingerprint(&[&base.text, &overrides]);
    let dir = file.sweep.output.clone();
    let settings = StudySettings {
        dir: dir.clone(),
        space: file.space.clone(),
        sampler: file.sampler(),
        pruner: file.pruner(),
        metric: metric.clone(),
        direction,
        trials: file.sweep.trials,
        parallel: file.sweep.parallel,
        fingerprint,
        keep_all: file.sweep.keep == "all",
        max_failures_in_a_row: 3,
    };
    let study = Study::open(settings, a.resume).map_err(sweep_error)?;
    let before = study.state().map_err(sweep_error)?;
    if before.skipped_lines > 0 {
        eprintln!("note: {} unreadable line(s) of the study journal skipped (a write cut short)", before.skipped_lines);
    }
    eprintln!(
        "sweep {}: {} sampler, {} pruner, {} trials ({} done), {} at once; objective {metric} ({})",
        dir.display(),
        file.sweep.sampler,
        file.sweep.pruner.kind,
        file.sweep.trials,
        before.trials.iter().filter(|t| matches!(t.state, TrialState::Ended(_))).count(),
        file.sweep.parallel,
        if direction == Direction::Maximize { "maximize" } else { "minimize" }
    );
    let printer = Printer { base: &base, file: &file, dir: dir.clone(), direction, write: Mutex::new(()) };
    let runner = Runner { base: &base, higher: direction == Direction::Maximize };
    let state = study.run(&runner, &printer).map_err(sweep_error)?;
    printer.write_results(&state)?;
    if tunesmith_sweep::study::failures_in_a_row(&state) >= 3 {
        let first = state.trials.iter().rev().find_map(|t| t.error.clone()).unwrap_or_default();
        return Err(Problems(format!(
            "the last 3 trials failed, so the sweep stopped; the latest error: {first}. Fix it, then run again with --resume"
        ))
        .into());
    }
    let saved: f64 = state.trials.iter().map(seconds_saved).sum();
    println!(
        "{} trials: {} complete, {} pruned (~{saved:.0} s of training saved), {} failed",
        state.trials.len(),
        state.count(EndState::Complete),
        state.count(EndState::Pruned),
        state.count(EndState::Failed)
    );
    match state.best(direction) {
        Some(b) => {
            println!(
                "best: trial {} with {metric} = {:.4}: {}",
                b.number,
                b.value.unwrap_or(f64::NAN),
                params_line(&b.params)
            );
            println!("best config: {}", dir.join("best.toml").display());
            println!("results: {}", dir.join("results.html").display());
            Ok(())
        }
        None => Err(Problems(format!("no trial completed; see {}", dir.join("results.jsonl").display())).into()),
    }
}
