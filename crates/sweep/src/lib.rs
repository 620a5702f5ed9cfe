//! tunesmith's hyperparameter search. A sweep file names a base run config and a search space
//! over its keys ([`space`]); a [`sampler`] (grid, random or TPE) proposes each trial, a
//! [`pruner`] (median or ASHA) stops poor trials at their intermediate evaluations, and the
//! [`journal`] records every event so that a study survives crashes and can be shared by
//! several processes. [`study`] runs it; [`report`] writes the results table, plots and
//! [`importance`] estimates.

pub mod config;
pub mod error;
pub mod importance;
pub mod journal;
pub mod pruner;
pub mod report;
pub mod sampler;
pub mod space;
pub mod study;

pub use config::SweepFile;
pub use error::{Result, SweepError};
pub use study::{Claimed, Monitor, Observer, Outcome, Study, StudySettings, TrialRunner};
