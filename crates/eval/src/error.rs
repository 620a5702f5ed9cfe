//! The eval crate's error type.

use std::path::PathBuf;

/// What went wrong computing a metric or reading its inputs.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// The inputs cannot give this metric (mismatched lengths, a single class for ROC-AUC...).
    #[error("{metric}: {why}")]
    Invalid {
        /// The metric or step that refused.
        metric: &'static str,
        /// What is wrong and what to fix.
        why: String,
    },
    /// A predictions, references or run file is malformed.
    #[error("{}:{line}: {why}", path.display())]
    Input {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when the problem is the whole file).
        line: usize,
        /// What is wrong and what to fix.
        why: String,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl EvalError {
    /// An [`EvalError::Invalid`] for `metric`.
    pub fn invalid(metric: &'static str, why: impl Into<String>) -> EvalError {
        EvalError::Invalid { metric, why: why.into() }
    }
}

/// The crate's result type.
pub type Result<T> = std::result::Result<T, EvalError>;

/// Checks that two inputs of a metric have the same length.
pub(crate) fn same_len(metric: &'static str, a: usize, b: usize) -> Result<()> {
    if a != b {
        return Err(EvalError::invalid(metric, format!("{a} predictions but {b} references; they must align")));
    }
    if a == 0 {
        return Err(EvalError::invalid(metric, "no examples"));
    }
    Ok(())
}
