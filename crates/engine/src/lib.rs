//! tunesmith's tensor engine: tensors, a tape-based autograd whose ops are coarse, fused
//! kernels with hand-written backwards (linear, LoRA, flash-style attention, fused
//! cross-entropy, norms, RoPE, ...), activation checkpointing and optimizers.
//!
//! Ops dispatch through a [`backend::Backend`] per device; today the CPU backend
//! (the `gemm` crate + rayon) is built in, and a CUDA backend registers itself through
//! [`backend::register_cuda_backend`].
//!
//! ```
//! use tunesmith_engine::{Graph, Grads, Tensor};
//! let g = Graph::train(0);
//! let x = g.input(Tensor::from_vec(vec![1.0f32, 2.0, 3.0, 4.0], &[2, 2]).unwrap());
//! let w = g.leaf(Tensor::from_vec(vec![0.5f32, -1.0, 2.0, 0.0], &[2, 2]).unwrap());
//! let y = g.linear(&x, &w, None).unwrap();
//! let loss = g.sum(&y).unwrap();
//! let mut grads = Grads::new();
//! g.backward(&loss, &mut grads).unwrap();
//! assert_eq!(grads.of(&w).unwrap().to_vec::<f32>().unwrap(), vec![4.0, 6.0, 4.0, 6.0]);
//! ```

pub mod alloc;
pub mod autograd;
pub mod backend;
pub mod cpu;
mod device;
mod dtype;
mod error;
pub mod fpmode;
pub mod gradcheck;
pub mod ops;
pub mod optim;
mod param;
pub mod precision;
pub mod profile;
pub mod quant;
pub mod rng;
mod storage;
mod tensor;
pub mod threads;

pub use autograd::{BackwardCtx, BackwardOp, ClipStats, ExampleRows, Grads, Graph, PerExampleGrads, Var};
pub use device::Device;
pub use dtype::{DType, Element, Real};
pub use error::{EngineError, Result};
pub use param::{Param, ParamId, ParamStore};
pub use storage::{CpuStorage, DeviceStorage, HostElement, Storage};
pub use tensor::{numel, Tensor};

/// Re-exported half-precision types (bf16/f16 storage).
pub use half::{bf16, f16};
