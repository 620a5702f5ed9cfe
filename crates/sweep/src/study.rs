//! Running a study: workers take trials from the journal (a requeued trial first, else a new
//! one the sampler proposes), run them through a [`TrialRunner`], let the pruner judge each
//! intermediate report, and record how each ended. A trial whose worker died (a crash, a kill)
//! is requeued with the same number and parameters and its partial folder removed, so a resumed
//! study loses no trial and runs none twice.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use serde_json::{Map, Value as Json};

use crate::error::{Result, SweepError};
use crate::journal::{now, Direction, EndState, Event, Journal, StudyState, Trial, TrialState, Worker};
use crate::pruner::{Pruner, Reports};
use crate::sampler::{Observation, Sampler};
use crate::space::Space;

/// A trial a worker has taken.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The trial number.
    pub number: usize,
    /// Its config values by key.
    pub params: Map<String, Json>,
    /// Its folder (`trials/NNNN` of the study), empty.
    pub dir: PathBuf,
    /// Whether an earlier run of it was cut short.
    pub rerun: bool,
}

/// What a finished trial reports.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    /// The objective (None when the run had no evaluation).
    pub value: Option<f64>,
    /// Steps taken.
    pub steps: u64,
    /// Steps planned.
    pub total_steps: u64,
    /// The last evaluation's metrics.
    pub metrics: Map<String, Json>,
    /// Whether it stopped because [`Monitor::report`] said so.
    pub pruned: bool,
}

/// Runs one trial.
pub trait TrialRunner: Sync {
    /// Runs `trial`, reporting intermediate values to `monitor` and stopping when it says so; an
    /// error message marks the trial failed.
    fn run(&self, trial: &Claimed, monitor: &mut Monitor<'_>) -> std::result::Result<Outcome, String>;
}

/// Hears what happens in a study (the CLI prints it and rewrites the results).
pub trait Observer: Sync {
    /// A trial started.
    fn started(&self, trial: &Claimed, state: &StudyState);
    /// A trial ended (`state` includes it).
    fn ended(&self, trial: &Trial, state: &StudyState);
}

/// The settings of a study.
pub struct StudySettings {
    /// The study folder (journal, trial folders, results).
    pub dir: PathBuf,
    /// The search space.
    pub space: Space,
    /// The sampler.
    pub sampler: Box<dyn Sampler>,
    /// The pruner.
    pub pruner: Box<dyn Pruner>,
    /// The objective's metric name.
    pub metric: String,
    /// Its direction.
    pub direction: Direction,
    /// The trial budget.
    pub trials: usize,
    /// Trials run at once by this process.
    pub parallel: usize,
    /// A digest of what defines the study; a resumed study must match it.
    pub fingerprint: String,
    /// Keep every trial's outputs (else only the best complete trial's `final/`).
    pub keep_all: bool,
    /// Stop taking trials once this many trials in a row have failed (a broken base config
    /// fails every trial); 0 never stops.
    pub max_failures_in_a_row: usize,
}

/// How many of the last ended trials (by number) failed, counting back to the last success.
pub fn failures_in_a_row(state: &StudyState) -> usize {
    state
        .trials
        .iter()
        .rev()
        .filter(|t| matches!(t.state, TrialState::Ended(_)))
        .take_while(|t| t.state == TrialState::Ended(EndState::Failed))
        .count()
}

/// A study in a folder.
pub struct Study {
    settings: StudySettings,
    journal: Journal,
    // Serializes this process's threads; the file lock serializes processes.
    local: Mutex<()>,
}

/// Reports a running trial's intermediate values; says when to stop it.
pub struct Monitor<'a> {
    study: &'a Study,
    trial: usize,
}

impl Monitor<'_> {
    /// Records `value` at `step` (of `total_steps`) and returns whether the trial should stop.
    pub fn report(&mut self, step: u64, value: f64, total_steps: u64) -> Result<bool> {
        let _local = self.study.local.lock().unwrap_or_else(|p| p.into_inner());
        let mut l = self.study.journal.lock()?;
        l.append(Event::Report { trial: self.trial, step, value, total_steps, time: now() })?;
        let direction = self.study.settings.direction;
        let reports: Vec<Reports> = l
            .state
            .trials
            .iter()
            .filter(|t| !t.reports.is_empty())
            .map(|t| Reports {
                number: t.number,
                values: t.reports.iter().map(|&(s, v)| (s, direction.loss(v))).collect(),
                complete: t.state == TrialState::Ended(EndState::Complete),
            })
            .collect();
        // A non-finite value (a diverged run) stops the trial.
        Ok(!value.is_finite() || self.study.settings.pruner.should_prune(self.trial, &reports))
    }
}

fn trial_dir(dir: &Path, number: usize) -> PathBuf {
    dir.join("trials").join(format!("{number:04}"))
}

impl Study {
    /// Opens the study in `settings.dir`: a new one (refused if a journal exists and not
    /// `resume`), or an existing one with `resume` (refused if its fingerprint differs).
    pub fn open(settings: StudySettings, resume: bool) -> Result<Study> {
        let journal = Journal::new(&settings.dir)?;
        let study = Study { settings, journal, local: Mutex::new(()) };
        let s = &study.settings;
        let mut l = study.journal.lock()?;
        match &l.state.header {
            // A new study (with --resume too: the first worker to arrive starts it).
            None if l.state.trials.is_empty() => {
                l.append(Event::Study {
                    fingerprint: s.fingerprint.clone(),
                    sampler: s.sampler.name().into(),
                    pruner: s.pruner.name().into(),
                    metric: s.metric.clone(),
                    direction: s.direction,
                    trials: s.trials,
                })?;
            }
            None => {
                return Err(SweepError::Journal(format!(
                    "{}: the study line is missing",
                    study.journal.path().display()
                )))
            }
            Some(Event::Study { fingerprint, .. }) => {
                if !resume {
                    return Err(SweepError::Config(format!(
                        "{} holds a study already; pass --resume to continue it (or join it from another process), or set sweep.output to a new folder",
                        s.dir.display()
                    )));
                }
                if *fingerprint != s.fingerprint {
                    return Err(SweepError::Config(format!(
                        "{}: the study was started from a different sweep (search space, sampler, objective or base config changed); set sweep.output to a new folder",
                        s.dir.display()
                    )));
                }
            }
            Some(_) => return Err(SweepError::Journal("the study line is malformed".into())),
        }
        drop(l);
        Ok(study)
    }

    /// The study's settings.
    pub fn settings(&self) -> &StudySettings {
        &self.settings
    }

    /// The journal's current state.
    pub fn state(&self) -> Result<StudyState> {
        self.journal.read()
    }

    /// Trials as the sampler sees them.
    fn observations(&self, state: &StudyState) -> Vec<Observation> {
        let d = self.settings.direction;
        state
            .trials
            .iter()
            .filter_map(|t| {
                let xs = self.settings.space.from_json(&t.params).ok()?;
                let (loss, pruned) = match t.state {
                    TrialState::Ended(EndState::Complete) => (t.value.map(|v| d.loss(v)), false),
                    TrialState::Ended(EndState::Pruned) => (t.value.map(|v| d.loss(v)), true),
                    _ => (None, false),
                };
                Some(Observation { number: t.number, xs, loss: loss.filter(|l| l.is_finite()), pruned })
            })
            .collect()
    }

    /// Takes the next trial: requeues trials of dead workers, reruns a queued one, or asks the
    /// sampler for a new one within the budget.
    fn claim(&self) -> Result<Option<(Claimed, StudyState)>> {
        let _local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let mut l = self.journal.lock()?;
        let gone: Vec<(usize, Worker)> = l
            .state
            .trials
            .iter()
            .filter(|t| t.state == TrialState::Running && t.worker.is_gone())
            .map(|t| (t.number, t.worker.clone()))
            .collect();
        for (number, w) in gone {
            l.append(Event::Requeue {
                trial: number,
                reason: format!("its worker {}:{} is gone", w.host, w.pid),
                time: now(),
            })?;
        }
        let limit = self.settings.max_failures_in_a_row;
        if limit > 0 && failures_in_a_row(&l.state) >= limit {
            return Ok(None);
        }
        let worker = Worker::current();
        let (number, params, rerun) = if let Some(t) = l.state.trials.iter().find(|t| t.state == TrialState::Queued) {
            (t.number, t.params.clone(), true)
        } else {
            let number = l.state.trials.len();
            if number >= self.settings.trials {
                return Ok(None);
            }
            let history = self.observations(&l.state);
            let Some(xs) = self.settings.sampler.sample(&self.settings.space, &history, number) else {
                return Ok(None);
            };
            (number, self.settings.space.to_json(&xs), false)
        };
        let dir = trial_dir(&self.settings.dir, number);
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(|e| SweepError::io(&dir, e))?;
        }
        std::fs::create_dir_all(&dir).map_err(|e| SweepError::io(&dir, e))?;
        l.append(Event::Start { trial: number, params: params.clone(), worker, time: now() })?;
        Ok(Some((Claimed { number, params, dir, rerun }, l.state.clone())))
    }

    fn finish(
        &self,
        trial: &Claimed,
        result: std::result::Result<Outcome, String>,
        seconds: f64,
    ) -> Result<StudyState> {
        let _local = self.local.lock().unwrap_or_else(|p| p.into_inner());
        let mut l = self.journal.lock()?;
        let event = match result {
            Ok(o) => Event::End {
                trial: trial.number,
                state: if o.pruned {
                    EndState::Pruned
                } else if o.value.is_some_and(f64::is_finite) {
                    EndState::Complete
                } else {
                    EndState::Failed
                },
                error: (!o.pruned && !o.value.is_some_and(f64::is_finite)).then(|| {
                    format!("the run ended without a finite `{}` (does it have validation data?)", self.settings.metric)
                }),
                value: o.value,
                seconds,
                steps: o.steps,
                total_steps: o.total_steps,
                metrics: o.metrics,
                time: now(),
            },
            Err(error) => Event::End {
                trial: trial.number,
                state: EndState::Failed,
                value: None,
                seconds,
                steps: 0,
                total_steps: 0,
                metrics: Map::new(),
                error: Some(error),
                time: now(),
            },
        };
        l.append(event)?;
        if !self.settings.keep_all {
            self.keep_best_outputs(&l.state)?;
        }
        Ok(l.state.clone())
    }

    /// Removes `final/` of every ended trial but the best complete one.
    fn keep_best_outputs(&self, state: &StudyState) -> Result<()> {
        let best = state.best(self.settings.direction).map(|t| t.number);
        for t in state.trials.iter().filter(|t| matches!(t.state, TrialState::Ended(_))) {
            let outputs = trial_dir(&self.settings.dir, t.number).join("final");
            if Some(t.number) != best && outputs.exists() {
                std::fs::remove_dir_all(&outputs).map_err(|e| SweepError::io(&outputs, e))?;
            }
        }
        Ok(())
    }

    /// Runs trials on `settings.parallel` threads until the budget is spent (or the grid is
    /// exhausted); returns the final state.
    pub fn run(&self, runner: &dyn TrialRunner, observer: &dyn Observer) -> Result<StudyState> {
        let worker = || -> Result<()> {
            while let Some((claimed, state)) = self.claim()? {
                observer.started(&claimed, &state);
                let t0 = Instant::now();
                let mut monitor = Monitor { study: self, trial: claimed.number };
                let result = runner.run(&claimed, &mut monitor);
                let state = self.finish(&claimed, result, t0.elapsed().as_secs_f64())?;
                observer.ended(&state.trials[claimed.number], &state);
            }
            Ok(())
        };
        let parallel = self.settings.parallel.max(1);
        let results: Vec<Result<()>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..parallel).map(|_| s.spawn(worker)).collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_else(|_| Err(SweepError::Journal("a worker thread panicked".into()))))
                .collect()
        });
        results.into_iter().collect::<Result<Vec<()>>>()?;
        self.journal.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pruner::{Asha, NoPruner};
    use crate::sampler::random::RandomSampler;

    struct Quadratic;

    impl TrialRunner for Quadratic {
        fn run(&self, trial: &Claimed, monitor: &mut Monitor<'_>) -> std::result::Result<Outcome, String> {
            let x = trial.params["x"].as_f64().unwrap();
            let mut value = 0.0;
            for step in 1..=4u64 {
                value = (x - 0.3).powi(2) + 1.0 / step as f64;
                if monitor.report(step * 10, value, 40).map_err(|e| e.to_string())? {
                    return Ok(Outcome {
                        value: Some(value),
                        steps: step * 10,
                        total_steps: 40,
                        pruned: true,
                        ..Default::default()
                    });
                }
            }
            std::fs::create_dir_all(trial.dir.join("final")).unwrap();
            Ok(Outcome { value: Some(value), steps: 40, total_steps: 40, ..Default::default() })
        }
    }

    struct Broken;

    impl TrialRunner for Broken {
        fn run(&self, _: &Claimed, _: &mut Monitor<'_>) -> std::result::Result<Outcome, String> {
            Err("model.path: no such folder".into())
        }
    }

    #[test]
    fn a_study_stops_after_three_failures_in_a_row() {
        let dir = tempfile::tempdir().unwrap();
        let study = Study::open(settings(dir.path(), Box::new(NoPruner), 2), false).unwrap();
        let state = study.run(&Broken, &Silent).unwrap();
        assert!((3..=4).contains(&state.trials.len()), "{} trials ran", state.trials.len());
        assert_eq!(failures_in_a_row(&state), state.trials.len());
        assert_eq!(state.trials[0].error.as_deref(), Some("model.path: no such folder"));
    }

    struct Silent;

    impl Observer for Silent {
        fn started(&self, _: &Claimed, _: &StudyState) {}
        fn ended(&self, _: &Trial, _: &StudyState) {}
    }

    fn settings(dir: &Path, pruner: Box<dyn Pruner>, parallel: usize) -> StudySettings {
        let t: toml::Table = toml::from_str("x = { type = \"uniform\", low = 0, high = 1 }").unwrap();
        StudySettings {
            dir: dir.to_path_buf(),
            space: Space::parse(&t).unwrap(),
            sampler: Box::new(RandomSampler { seed: 3 }),
            pruner,
            metric: "loss".into(),
            direction: Direction::Minimize,
            trials: 12,
            parallel,
            fingerprint: "f".into(),
            keep_all: false,
            max_failures_in_a_row: 3,
        }
    }

    #[test]
    fn a_study_spends_its_budget_once_and_keeps_only_the_best_outputs() {
        let dir = tempfile::tempdir().unwrap();
        let study =
            Study::open(settings(dir.path(), Box::new(Asha { min_resource: None, reduction_factor: 3 }), 3), false)
                .unwrap();
        let state = study.run(&Quadratic, &Silent).unwrap();
        assert_eq!(state.trials.len(), 12);
        assert!(state.trials.iter().all(|t| t.starts == 1 && matches!(t.state, TrialState::Ended(_))));
        assert!(state.count(EndState::Pruned) > 0, "ASHA pruned nothing");
        let best = state.best(Direction::Minimize).unwrap().number;
        let with_outputs: Vec<usize> = (0..12).filter(|n| trial_dir(dir.path(), *n).join("final").exists()).collect();
        assert_eq!(with_outputs, vec![best]);
        // Running it again spends nothing more; opening it without --resume is refused.
        let again = Study::open(settings(dir.path(), Box::new(NoPruner), 1), true).unwrap();
        assert_eq!(again.run(&Quadratic, &Silent).unwrap().trials.len(), 12);
        assert!(Study::open(settings(dir.path(), Box::new(NoPruner), 1), false).is_err());
        let mut changed = settings(dir.path(), Box::new(NoPruner), 1);
        changed.fingerprint = "g".into();
        let e = Study::open(changed, true).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(e.contains("different sweep"), "{e}");
    }

    #[test]
    fn a_trial_of_a_dead_worker_reruns_with_its_parameters() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::new(dir.path()).unwrap();
        {
            let study = Study::open(settings(dir.path(), Box::new(NoPruner), 1), false).unwrap();
            drop(study);
            let mut l = journal.lock().unwrap();
            let mut params = Map::new();
            params.insert("x".into(), Json::from(0.25));
            let dead = Worker { pid: u32::MAX - 1, ..Worker::current() };
            l.append(Event::Start { trial: 0, params, worker: dead, time: now() }).unwrap();
            l.append(Event::Report { trial: 0, step: 10, value: 1.0, total_steps: 40, time: now() }).unwrap();
        }
        std::fs::create_dir_all(trial_dir(dir.path(), 0).join("leftover")).unwrap();
        let study = Study::open(settings(dir.path(), Box::new(NoPruner), 1), true).unwrap();
        let state = study.run(&Quadratic, &Silent).unwrap();
        assert_eq!(state.trials.len(), 12);
        let t0 = &state.trials[0];
        assert_eq!((t0.starts, t0.params["x"].as_f64()), (2, Some(0.25)));
        assert_eq!(t0.reports.len(), 4, "the dead run's report was dropped");
        assert!(!trial_dir(dir.path(), 0).join("leftover").exists());
    }
}
