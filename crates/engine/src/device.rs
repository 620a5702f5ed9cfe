//! Where a tensor lives. Every op dispatches through the backend of its operands' device.

use std::fmt;
use std::str::FromStr;

use crate::error::EngineError;

/// A compute device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Device {
    /// Host memory, computed by the CPU backend (gemm + rayon).
    #[default]
    Cpu,
    /// An NVIDIA GPU by ordinal, computed by the CUDA backend.
    Cuda(usize),
}

impl Device {
    /// True for the host.
    pub fn is_cpu(self) -> bool {
        matches!(self, Device::Cpu)
    }
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Device::Cpu => write!(f, "cpu"),
            Device::Cuda(i) => write!(f, "cuda:{i}"),
        }
    }
}

impl FromStr for Device {
    type Err = EngineError;

    /// Parses `cpu`, `cuda` (ordinal 0) or `cuda:N`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        if s == "cpu" {
            return Ok(Device::Cpu);
        }
        if s == "cuda" || s == "gpu" {
            return Ok(Device::Cuda(0));
        }
        if let Some(rest) = s.strip_prefix("cuda:") {
            if let Ok(i) = rest.parse::<usize>() {
                return Ok(Device::Cuda(i));
            }
        }
        Err(EngineError::invalid("device", format!("unknown device '{s}': use 'cpu', 'cuda' or 'cuda:N'")))
    }
}
