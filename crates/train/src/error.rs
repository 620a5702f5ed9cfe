//! The trainer's error type.

use std::path::{Path, PathBuf};

/// What stopped a run or its set-up.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// The configuration is invalid (the message names the key and what to write).
    #[error("{0}")]
    Config(String),
    /// The data cannot train this task (no usable rows, an unknown label...).
    #[error("{0}")]
    Data(String),
    /// Reading or parsing a dataset failed.
    #[error(transparent)]
    Dataset(#[from] tunesmith_data::DataError),
    /// Loading, building or saving the model failed.
    #[error(transparent)]
    Model(#[from] tunesmith_models::ModelError),
    /// An engine operation failed.
    #[error(transparent)]
    Engine(#[from] tunesmith_engine::EngineError),
    /// Metrics or the report failed.
    #[error(transparent)]
    Eval(#[from] tunesmith_eval::EvalError),
    /// The loss became NaN or infinite.
    #[error("the loss is {value} at step {step}; {kept}. Lower train.lr, set train.max_grad_norm, or set train.on_nan = \"skip\" (which gives up after 8 such batches in a row)")]
    NonFinite {
        /// The optimizer step.
        step: u64,
        /// The loss value.
        value: f64,
        /// Where the last good checkpoint is (or that there is none yet).
        kept: String,
    },
    /// A checkpoint cannot be resumed.
    #[error("{}: {why}", path.display())]
    Checkpoint {
        /// The checkpoint.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl TrainError {
    /// An [`TrainError::Io`] for `path`.
    pub fn io(path: &Path, source: std::io::Error) -> TrainError {
        TrainError::Io { path: path.to_path_buf(), source }
    }

    /// Whether the user's input is at fault (exit code 2) rather than the run.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, TrainError::NonFinite { .. } | TrainError::Engine(_))
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, TrainError>;
