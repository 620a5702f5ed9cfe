//! Errors of the sweep crate.

use std::path::PathBuf;

/// What can go wrong in a sweep.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// The sweep file is wrong in a way the message explains (exit code 2).
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The study journal holds something this version cannot continue from.
    #[error("{0}")]
    Journal(String),
}

impl SweepError {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> SweepError {
        SweepError::Io { path: path.into(), source }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, SweepError>;
