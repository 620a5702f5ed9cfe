//! Errors of model loading, saving and running. Each names the file, key or tensor involved
//! and says what to fix.

use std::path::PathBuf;

use tunesmith_engine::EngineError;

/// Errors from this crate.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A JSON file is malformed.
    #[error("{path}: invalid JSON: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A configuration value is missing, of the wrong type, or unsupported.
    #[error("{path}: key '{key}': {why}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// The offending key.
        key: String,
        /// What is wrong and how to fix it.
        why: String,
    },
    /// A checkpoint lacks tensors the model needs.
    #[error("{path}: missing tensor(s) {names}; is this checkpoint of the architecture its config.json names?")]
    MissingTensors {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// The first few missing names.
        names: String,
    },
    /// A checkpoint holds tensors the model does not use.
    #[error("{path}: {count} unexpected tensor(s), e.g. {names}; the checkpoint does not match its config.json")]
    UnexpectedTensors {
        /// The checkpoint folder or file.
        path: PathBuf,
        /// How many.
        count: usize,
        /// The first few names.
        names: String,
    },
    /// A tensor's shape differs from what the config implies.
    #[error("{path}: tensor '{name}' has shape {got:?}, the config implies {expected:?}")]
    TensorShape {
        /// The checkpoint.
        path: PathBuf,
        /// Tensor name.
        name: String,
        /// Shape implied by the config.
        expected: Vec<usize>,
        /// Shape in the file.
        got: Vec<usize>,
    },
    /// A weights file is malformed.
    #[error("{path}: {why}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// A tokenizer or data error.
    #[error(transparent)]
    Data(#[from] tunesmith_data::DataError),
    /// Resolving a model on the Hub failed.
    #[error("hub model '{id}': {why}")]
    Hub {
        /// The repository id.
        id: String,
        /// What went wrong.
        why: String,
    },
    /// A request the model cannot serve (wrong head for the task, bad generation settings...).
    #[error("{0}")]
    Invalid(String),
    /// An engine error (shapes, devices, dtypes).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// Shorthand for results of this crate.
pub type Result<T> = std::result::Result<T, ModelError>;

impl ModelError {
    /// An I/O error for `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        ModelError::Io { path: path.into(), source }
    }

    /// A config error for `key` in `path`.
    pub fn config(path: impl Into<PathBuf>, key: impl Into<String>, why: impl Into<String>) -> Self {
        ModelError::Config { path: path.into(), key: key.into(), why: why.into() }
    }

    /// A format error for `path`.
    pub fn format(path: impl Into<PathBuf>, why: impl Into<String>) -> Self {
        ModelError::Format { path: path.into(), why: why.into() }
    }
}

/// Joins up to `n` names for error messages, with a count of the rest.
pub(crate) fn list_names(names: &[String], n: usize) -> String {
    let mut s = names.iter().take(n).map(|x| format!("'{x}'")).collect::<Vec<_>>().join(", ");
    if names.len() > n {
        s.push_str(&format!(" and {} more", names.len() - n));
    }
    s
}
