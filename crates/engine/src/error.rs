//! The engine's error type: every shape, dtype and device mismatch is reported here
//! with the name of the op and the shapes involved, never as a panic.

use crate::{DType, Device};

/// Errors returned by tensor operations, autograd and optimizers.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// Two operands (or an operand and what the op expects) have incompatible shapes.
    #[error("{op}: shape mismatch: {lhs:?} vs {rhs:?}: {why}")]
    Shape {
        /// The op that was called.
        op: &'static str,
        /// The first shape involved.
        lhs: Vec<usize>,
        /// The second shape (or the expected one).
        rhs: Vec<usize>,
        /// What the op needed.
        why: String,
    },
    /// An operand has the wrong element type.
    #[error("{op}: dtype mismatch: got {got:?}, expected {expected}")]
    DType {
        /// The op that was called.
        op: &'static str,
        /// The dtype that was given.
        got: DType,
        /// What the op accepts.
        expected: String,
    },
    /// Operands live on different devices, or the device has no backend.
    #[error("{op}: device mismatch: {lhs:?} vs {rhs:?}")]
    Device {
        /// The op that was called.
        op: &'static str,
        /// The first device.
        lhs: Device,
        /// The second device.
        rhs: Device,
    },
    /// The requested device is not available on this machine or in this build.
    #[error("device {device:?} is not available: {why}")]
    DeviceUnavailable {
        /// The device that was asked for.
        device: Device,
        /// Why it cannot be used.
        why: String,
    },
    /// An argument is out of range or inconsistent (an index past the vocabulary, p outside [0,1), ...).
    #[error("{op}: {why}")]
    Invalid {
        /// The op that was called.
        op: &'static str,
        /// What is wrong and how to fix it.
        why: String,
    },
    /// Autograd was used incorrectly (backward from a non-scalar without a seed gradient, ...).
    #[error("autograd: {0}")]
    Autograd(String),
}

/// Shorthand for engine results.
pub type Result<T> = std::result::Result<T, EngineError>;

impl EngineError {
    /// Builds a shape error for `op` comparing two shapes.
    pub fn shape(op: &'static str, lhs: &[usize], rhs: &[usize], why: impl Into<String>) -> Self {
        EngineError::Shape { op, lhs: lhs.to_vec(), rhs: rhs.to_vec(), why: why.into() }
    }

    /// Builds an invalid-argument error for `op`.
    pub fn invalid(op: &'static str, why: impl Into<String>) -> Self {
        EngineError::Invalid { op, why: why.into() }
    }
}
