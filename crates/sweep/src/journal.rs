//! The study journal: `study.jsonl`, one event per line, appended under an exclusive lock on
//! `study.lock`, so several processes (on one machine, or on several sharing the folder) can
//! run one study. The state of the study is a replay of the events; a line cut short by a crash
//! is skipped (and counted), and the next append starts on a fresh line.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as Json};

use crate::error::{Result, SweepError};

/// The process that runs a trial.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Worker {
    /// Its host name.
    pub host: String,
    /// Its process id.
    pub pid: u32,
}

impl Worker {
    /// This process.
    pub fn current() -> Worker {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".into());
        Worker { host, pid: std::process::id() }
    }

    /// Whether the worker is known to be gone: a process of this host that no longer exists.
    /// A worker on another host is presumed alive.
    pub fn is_gone(&self) -> bool {
        let me = Worker::current();
        if self.host != me.host || self.pid == me.pid {
            return false;
        }
        cfg!(target_os = "linux") && !Path::new(&format!("/proc/{}", self.pid)).exists()
    }
}

/// Whether lower or higher objective values are better.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// Lower is better (losses).
    Minimize,
    /// Higher is better (accuracy, F1).
    Maximize,
}

impl Direction {
    /// `value` oriented so that lower is better.
    pub fn loss(self, value: f64) -> f64 {
        match self {
            Direction::Minimize => value,
            Direction::Maximize => -value,
        }
    }
}

/// How a trial ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EndState {
    /// It ran to its end.
    Complete,
    /// A pruner stopped it.
    Pruned,
    /// It failed (the error is recorded).
    Failed,
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Event {
    /// The first line: what the study is.
    Study {
        /// A digest of the sweep file's search (space, sampler, base config); a resumed study
        /// must match it.
        fingerprint: String,
        /// The sampler.
        sampler: String,
        /// The pruner.
        pruner: String,
        /// The objective's metric.
        metric: String,
        /// Its direction.
        direction: Direction,
        /// The trial budget.
        trials: usize,
    },
    /// A worker took a trial.
    Start {
        /// The trial number.
        trial: usize,
        /// Its config values by key.
        params: Map<String, Json>,
        /// Who runs it.
        worker: Worker,
        /// Unix time.
        time: f64,
    },
    /// An intermediate evaluation.
    Report {
        /// The trial number.
        trial: usize,
        /// The optimizer step.
        step: u64,
        /// The metric's value.
        value: f64,
        /// The steps the trial would take in all.
        total_steps: u64,
        /// Unix time.
        time: f64,
    },
    /// A trial ended.
    End {
        /// The trial number.
        trial: usize,
        /// How.
        state: EndState,
        /// The objective (complete), or the last reported value (pruned).
        value: Option<f64>,
        /// Wall-clock seconds.
        seconds: f64,
        /// Steps taken.
        steps: u64,
        /// Steps planned.
        total_steps: u64,
        /// The last evaluation's metrics.
        metrics: Map<String, Json>,
        /// Why it failed.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
        /// Unix time.
        time: f64,
    },
    /// A trial whose worker died goes back to the queue (its reports are dropped; it reruns
    /// with the same parameters).
    Requeue {
        /// The trial number.
        trial: usize,
        /// Why.
        reason: String,
        /// Unix time.
        time: f64,
    },
}

/// Where a trial is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrialState {
    /// Taken by a worker.
    Running,
    /// Waiting to be (re)run.
    Queued,
    /// Ended.
    Ended(EndState),
}

/// A trial as the journal tells it.
#[derive(Debug, Clone)]
pub struct Trial {
    /// The trial number.
    pub number: usize,
    /// Config values by key.
    pub params: Map<String, Json>,
    /// Where it is.
    pub state: TrialState,
    /// Who runs (or ran) it.
    pub worker: Worker,
    /// `(step, value)` reports of its current run.
    pub reports: Vec<(u64, f64)>,
    /// The objective (see [`Event::End`]).
    pub value: Option<f64>,
    /// Seconds of its ended run.
    pub seconds: f64,
    /// Steps taken.
    pub steps: u64,
    /// Steps planned.
    pub total_steps: u64,
    /// The last evaluation's metrics.
    pub metrics: Map<String, Json>,
    /// Why it failed.
    pub error: Option<String>,
    /// How many times it was started (more than once after a crash).
    pub starts: usize,
}

/// The replayed journal.
#[derive(Debug, Clone, Default)]
pub struct StudyState {
    /// The study line, once written.
    pub header: Option<Event>,
    /// Trials by number.
    pub trials: Vec<Trial>,
    /// Lines that could not be read (a write cut short by a crash).
    pub skipped_lines: usize,
}

impl StudyState {
    /// Applies one event.
    pub fn apply(&mut self, event: Event) -> Result<()> {
        let bad = |why: String| Err(SweepError::Journal(format!("study journal: {why}")));
        match event {
            Event::Study { .. } => self.header = Some(event),
            Event::Start { trial, params, worker, .. } => {
                if trial < self.trials.len() {
                    let t = &mut self.trials[trial];
                    if t.state != TrialState::Queued {
                        return bad(format!("trial {trial} started twice"));
                    }
                    t.state = TrialState::Running;
                    t.worker = worker;
                    t.starts += 1;
                } else if trial == self.trials.len() {
                    self.trials.push(Trial {
                        number: trial,
                        params,
                        state: TrialState::Running,
                        worker,
                        reports: Vec::new(),
                        value: None,
                        seconds: 0.0,
                        steps: 0,
                        total_steps: 0,
                        metrics: Map::new(),
                        error: None,
                        starts: 1,
                    });
                } else {
                    return bad(format!("trial {trial} started before trial {}", self.trials.len()));
                }
            }
            Event::Report { trial, step, value, total_steps, .. } => {
                let Some(t) = self.trials.get_mut(trial) else {
                    return bad(format!("report of unknown trial {trial}"));
                };
                if t.state == TrialState::Running {
                    t.reports.push((step, value));
                    t.total_steps = total_steps;
                }
            }
            Event::End { trial, state, value, seconds, steps, total_steps, metrics, error, .. } => {
                let Some(t) = self.trials.get_mut(trial) else { return bad(format!("end of unknown trial {trial}")) };
                if t.state != TrialState::Running {
                    return bad(format!("trial {trial} ended twice"));
                }
                t.state = TrialState::Ended(state);
                (t.value, t.seconds, t.steps, t.total_steps, t.metrics, t.error) =
                    (value, seconds, steps, total_steps, metrics, error);
            }
            Event::Requeue { trial, .. } => {
                let Some(t) = self.trials.get_mut(trial) else {
                    return bad(format!("requeue of unknown trial {trial}"));
                };
                t.state = TrialState::Queued;
                t.reports.clear();
            }
        }
        Ok(())
    }

    /// Trials that ended in `state`.
    pub fn count(&self, state: EndState) -> usize {
        self.trials.iter().filter(|t| t.state == TrialState::Ended(state)).count()
    }

    /// The best complete trial under `direction`.
    pub fn best(&self, direction: Direction) -> Option<&Trial> {
        self.trials
            .iter()
            .filter(|t| t.state == TrialState::Ended(EndState::Complete) && t.value.is_some_and(f64::is_finite))
            .min_by(|a, b| direction.loss(a.value.unwrap_or(0.0)).total_cmp(&direction.loss(b.value.unwrap_or(0.0))))
    }
}

/// The journal files of a study folder.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
    lock: PathBuf,
}

/// The journal, locked: read its state, append events.
pub struct Locked<'a> {
    journal: &'a Journal,
    _lock: File,
    /// The state after every event so far.
    pub state: StudyState,
}

/// Seconds since the Unix epoch.
pub fn now() -> f64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs_f64()).unwrap_or(0.0)
}

impl Journal {
    /// The journal of study folder `dir` (created if absent).
    pub fn new(dir: &Path) -> Result<Journal> {
        std::fs::create_dir_all(dir).map_err(|e| SweepError::io(dir, e))?;
        Ok(Journal { path: dir.join("study.jsonl"), lock: dir.join("study.lock") })
    }

    /// The journal file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the study has been started before.
    pub fn exists(&self) -> bool {
        self.path.metadata().map(|m| m.len() > 0).unwrap_or(false)
    }

    /// Takes the study's lock (waiting for other processes) and reads its state.
    pub fn lock(&self) -> Result<Locked<'_>> {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.lock)
            .map_err(|e| SweepError::io(&self.lock, e))?;
        file.lock().map_err(|e| SweepError::io(&self.lock, e))?;
        let state = self.read()?;
        Ok(Locked { journal: self, _lock: file, state })
    }

    /// Reads and replays the journal (without the lock: for reports).
    pub fn read(&self) -> Result<StudyState> {
        let mut state = StudyState::default();
        let text = match std::fs::read(&self.path) {
            Ok(b) => String::from_utf8_lossy(&b).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(state),
            Err(e) => return Err(SweepError::io(&self.path, e)),
        };
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            match serde_json::from_str::<Event>(line) {
                Ok(ev) => state.apply(ev).map_err(|e| {
                    SweepError::Journal(format!(
                        "{}:{}: {e}; move the file aside to start over",
                        self.path.display(),
                        i + 1
                    ))
                })?,
                Err(_) => state.skipped_lines += 1,
            }
        }
        Ok(state)
    }
}

impl Locked<'_> {
    /// Appends `event` (durably) and applies it to the state.
    pub fn append(&mut self, event: Event) -> Result<()> {
        let path = &self.journal.path;
        let io = |e| SweepError::io(path, e);
        let mut f = OpenOptions::new().create(true).read(true).append(true).open(path).map_err(io)?;
        let len = f.metadata().map_err(io)?.len();
        let mut line = serde_json::to_string(&event).map_err(|e| SweepError::Journal(e.to_string()))?;
        line.push('\n');
        if len > 0 {
            // A crash mid-write leaves a line without its newline: start a fresh one.
            let mut last = [0u8; 1];
            f.seek(SeekFrom::Start(len - 1)).map_err(io)?;
            f.read_exact(&mut last).map_err(io)?;
            if last[0] != b'\n' {
                line.insert(0, '\n');
            }
        }
        f.write_all(line.as_bytes()).map_err(io)?;
        f.sync_data().map_err(io)?;
        self.state.apply(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(trial: usize) -> Event {
        let mut params = Map::new();
        params.insert("train.lr".into(), Json::from(0.001));
        Event::Start { trial, params, worker: Worker::current(), time: now() }
    }

    fn end(trial: usize, value: f64) -> Event {
        Event::End {
            trial,
            state: EndState::Complete,
            value: Some(value),
            seconds: 1.0,
            steps: 10,
            total_steps: 10,
            metrics: Map::new(),
            error: None,
            time: now(),
        }
    }

    #[test]
    fn events_replay_and_a_torn_last_line_is_skipped_then_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path()).unwrap();
        {
            let mut l = j.lock().unwrap();
            l.append(start(0)).unwrap();
            l.append(Event::Report { trial: 0, step: 5, value: 0.5, total_steps: 10, time: now() }).unwrap();
            l.append(end(0, 0.7)).unwrap();
            l.append(start(1)).unwrap();
        }
        // A crash mid-append.
        let mut f = OpenOptions::new().append(true).open(j.path()).unwrap();
        f.write_all(b"{\"event\":\"report\",\"tri").unwrap();
        let mut l = j.lock().unwrap();
        assert_eq!(l.state.skipped_lines, 1);
        assert_eq!(l.state.trials.len(), 2);
        assert_eq!(l.state.trials[0].reports, vec![(5, 0.5)]);
        assert_eq!(l.state.best(Direction::Maximize).unwrap().number, 0);
        l.append(Event::Requeue { trial: 1, reason: "test".into(), time: now() }).unwrap();
        l.append(start(1)).unwrap();
        l.append(end(1, 0.9)).unwrap();
        drop(l);
        let s = j.read().unwrap();
        assert_eq!(s.skipped_lines, 1);
        assert_eq!(s.trials[1].starts, 2);
        assert_eq!(s.count(EndState::Complete), 2);
        assert_eq!(s.best(Direction::Maximize).unwrap().number, 1);
        assert_eq!(s.best(Direction::Minimize).unwrap().number, 0);
    }

    #[test]
    fn impossible_histories_are_refused_with_the_line() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::new(dir.path()).unwrap();
        let lines = [start(0), end(0, 1.0), end(0, 1.0)].map(|e| serde_json::to_string(&e).unwrap()).join("\n");
        std::fs::write(j.path(), lines).unwrap();
        let e = j.read().unwrap_err().to_string();
        assert!(e.contains("study.jsonl:3") && e.contains("ended twice"), "{e}");
    }

    #[test]
    fn a_dead_local_worker_is_gone_and_this_process_is_not() {
        assert!(!Worker::current().is_gone());
        let far = Worker { host: "elsewhere".into(), pid: 1 };
        assert!(!far.is_gone());
        if cfg!(target_os = "linux") {
            let dead = Worker { pid: u32::MAX - 1, ..Worker::current() };
            assert!(dead.is_gone());
        }
    }
}
