//! tunesmith's evaluation: task metrics that agree with the implementations users compare
//! against (scikit-learn, scipy, sacrebleu, rouge-score, the SQuAD v1.1 script), bootstrap
//! confidence intervals and paired tests, the `tunesmith metrics` task scorers, and the run
//! report (self-contained HTML with SVG charts, plus JSON).

pub mod bleu;
pub mod bootstrap;
pub mod calibration;
pub mod chrf;
pub mod classification;
pub mod error;
pub mod fairness;
pub mod gsm8k;
pub mod inputs;
pub mod lm;
pub mod ner;
pub mod ood;
pub mod porter;
pub mod preference;
pub mod regression;
pub mod report;
pub mod retrieval;
pub mod roc;
pub mod rouge;
pub mod squad;
pub mod tasks;
pub mod temperature;
pub mod text;

pub use error::{EvalError, Result};
