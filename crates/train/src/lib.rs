//! tunesmith's trainer: the run configuration, fine-tuning methods (full, feature extraction,
//! partial and gradual unfreezing, layer-wise learning rates, LoRA), schedules, the training
//! loop with evaluation, checkpoints with exact resume, run logs and outputs.

pub mod active;
pub mod checkpoint;
pub mod config;
pub mod continual;
pub mod cv;
pub mod distill;
pub mod error;
pub mod grpo;
pub mod load;
pub mod methods;
pub mod multitask;
pub mod objective;
pub mod penalty;
pub mod ppo;
pub mod preference;
pub mod prepare;
pub mod privacy;
pub mod robustness;
pub mod schedule;
pub mod tensorboard;
pub mod trainer;

pub use config::RunConfig;
pub use error::{Result, TrainError};
pub use trainer::{Progress, Quiet, RunSummary, Trainer};
