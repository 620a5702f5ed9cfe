//! The backend seam. Every op's forward and backward kernel is a method of [`Backend`];
//! the autograd layer validates shapes, then calls the backend of its operands' device.
//! A CUDA backend implements the same trait over its own [`crate::storage::DeviceStorage`],
//! so model code never changes with the device.

mod cpu;

use std::sync::{Arc, OnceLock, RwLock};

pub use cpu::CpuBackend;

use crate::cpu::elementwise::BinaryOp;
pub use crate::cpu::segment::Run;
use crate::error::{EngineError, Result};
use crate::ops::{Activation, AttentionSpec, CrossEntropySpec, LoraSpec};
use crate::{DType, Device, Tensor};

/// Which gradients a backward must produce, in the order of the op's inputs.
pub type Needs<const N: usize> = [bool; N];

/// Gradients in the order of the op's inputs (`None` where not requested).
pub type GradsOut<const N: usize> = [Option<Tensor>; N];

/// Shapes of a batched matrix product (see [`crate::cpu::matmul::BmmDims`]).
pub use crate::cpu::matmul::BmmDims;

/// Masks of one attention call.
#[derive(Debug, Clone, Copy, Default)]
pub struct AttentionMasks<'a> {
    /// `[B, S]`: nonzero where the key is a real token.
    pub key_mask: Option<&'a Tensor>,
    /// `[B, T]` segment ids for packed sequences (T == S): attention stays inside a segment.
    pub segments: Option<&'a Tensor>,
}

/// Output of the fused linear + cross-entropy forward.
#[derive(Debug, Clone)]
pub struct CrossEntropyOut {
    /// The normalised loss.
    pub loss: f64,
    /// log p(label) per token (0 where ignored), `[n]`.
    pub token_logprobs: Tensor,
    /// The normaliser used.
    pub normalizer: f64,
    /// Tokens that were not ignored.
    pub counted: usize,
    /// Gradients (h, W, b) for an upstream gradient of 1.
    pub grads: GradsOut<3>,
}

/// The kernels a device must provide. Shapes are validated before these are called.
pub trait Backend: Send + Sync {
    /// Human-readable name.
    fn name(&self) -> &'static str;
    /// Copies a host tensor onto this backend's device.
    fn upload(&self, host: &Tensor) -> Result<Tensor>;
    /// Converts the dtype of a tensor on this device.
    fn to_dtype(&self, x: &Tensor, dtype: DType) -> Result<Tensor>;

    /// y = x·Wᵀ + b; x `[n, in]`.
    fn linear_fwd(&self, x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor>;
    /// Gradients (x, W, b) of linear; `x` must be given when dW is needed, `w` when dx is.
    fn linear_bwd(
        &self,
        dy: &Tensor,
        x: Option<&Tensor>,
        w: Option<&Tensor>,
        in_features: usize,
        needs: Needs<3>,
    ) -> Result<GradsOut<3>>;
    /// LoRA linear forward: returns (y, xa = drop(x)·Aᵀ).
    #[allow(clippy::too_many_arguments)]
    fn lora_fwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        a: &Tensor,
        bm: &Tensor,
        spec: LoraSpec,
        seed: u64,
    ) -> Result<(Tensor, Tensor)>;
    /// Gradients (x, W, b, A, B) of LoRA linear.
    #[allow(clippy::too_many_arguments)]
    fn lora_bwd(
        &self,
        dy: &Tensor,
        x: &Tensor,
        w: &Tensor,
        a: &Tensor,
        bm: &Tensor,
        xa: &Tensor,
        spec: LoraSpec,
        seed: u64,
        needs: Needs<5>,
    ) -> Result<GradsOut<5>>;
    /// Batched matmul.
    fn bmm_fwd(&self, a: &Tensor, b: &Tensor, dims: BmmDims) -> Result<Tensor>;
    /// Gradients (a, b) of batched matmul.
    fn bmm_bwd(&self, dc: &Tensor, a: &Tensor, b: &Tensor, dims: BmmDims, needs: Needs<2>) -> Result<GradsOut<2>>;
    /// Gathers rows of `table [V, d]` by `ids` (i64 or u32); errors on out-of-range ids.
    fn embedding_fwd(&self, ids: &Tensor, table: &Tensor) -> Result<Tensor>;
    /// Scatter-adds `dy` into a `[vocab, d]` gradient.
    fn embedding_bwd(&self, dy: &Tensor, ids: &Tensor, vocab: usize) -> Result<Tensor>;
    /// LayerNorm over the last dim; returns (y, mean, rstd).
    fn layer_norm_fwd(
        &self,
        x: &Tensor,
        gamma: Option<&Tensor>,
        beta: Option<&Tensor>,
        eps: f64,
    ) -> Result<(Tensor, Tensor, Tensor)>;
    /// Gradients (x, γ, β) of LayerNorm.
    #[allow(clippy::too_many_arguments)]
    fn layer_norm_bwd(
        &self,
        dy: &Tensor,
        x: &Tensor,
        gamma: Option<&Tensor>,
        mean: &Tensor,
        rstd: &Tensor,
        needs: Needs<3>,
    ) -> Result<GradsOut<3>>;
    /// RMSNorm over the last dim with weight γ + offset; returns (y, rstd).
    fn rms_norm_fwd(&self, x: &Tensor, gamma: &Tensor, offset: f64, eps: f64) -> Result<(Tensor, Tensor)>;
    /// Gradients (x, γ) of RMSNorm.
    fn rms_norm_bwd(
        &self,
        dy: &Tensor,
        x: &Tensor,
        gamma: &Tensor,
        offset: f64,
        rstd: &Tensor,
        needs: Needs<2>,
    ) -> Result<GradsOut<2>>;
    /// Rotates `x [tokens, heads, head_dim]` by per-token tables `[tokens, rot_dim/2]`.
    fn rope(&self, x: &Tensor, cos: &Tensor, sin: &Tensor, rot_dim: usize, inverse: bool) -> Result<Tensor>;
    /// Attention forward; returns (o, lse).
    fn attention_fwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        masks: AttentionMasks<'_>,
        spec: AttentionSpec,
        seed: u64,
    ) -> Result<(Tensor, Tensor)>;
    /// Gradients (q, k, v) of attention.
    #[allow(clippy::too_many_arguments)]
    fn attention_bwd(
        &self,
        dout: &Tensor,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        o: &Tensor,
        lse: &Tensor,
        masks: AttentionMasks<'_>,
        spec: AttentionSpec,
        seed: u64,
    ) -> Result<GradsOut<3>>;
    /// y = f(x).
    fn activation_fwd(&self, act: Activation, x: &Tensor) -> Result<Tensor>;
    /// dx = dy·f'(x).
    fn activation_bwd(&self, act: Activation, dy: &Tensor, x: &Tensor) -> Result<Tensor>;
    /// y = silu(gate)·up.
    fn swiglu_fwd(&self, gate: &Tensor, up: &Tensor) -> Result<Tensor>;
    /// Gradients (gate, up) of swiglu.
    fn swiglu_bwd(&self, dy: &Tensor, gate: &Tensor, up: &Tensor) -> Result<GradsOut<2>>;
    /// Applies the dropout mask of `(seed, p)` (forward and backward alike).
    fn dropout(&self, x: &Tensor, p: f32, seed: u64) -> Result<Tensor>;
    /// Fused logits + cross-entropy with eager gradients.
    #[allow(clippy::too_many_arguments)]
    fn linear_cross_entropy_fwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        labels: &Tensor,
        weights: Option<&Tensor>,
        spec: CrossEntropySpec,
        needs: Needs<3>,
    ) -> Result<CrossEntropyOut>;
    /// Per-token log p(label) and lse through a linear head; returns (logp, lse).
    fn linear_logprobs_fwd(
        &self,
        h: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        labels: &Tensor,
        ignore_index: i64,
    ) -> Result<(Tensor, Tensor)>;
    /// Gradients (h, W, b) of per-token log-probs.
    #[allow(clippy::too_many_arguments)]
    fn linear_logprobs_bwd(
        &self,
        dlogp: &Tensor,
        h: &Tensor,
        w: &Tensor,
        b: Option<&Tensor>,
        labels: &Tensor,
        lse: &Tensor,
        ignore_index: i64,
        needs: Needs<3>,
    ) -> Result<GradsOut<3>>;
    /// a ∘ b with b repeating over a's leading dims.
    fn binary(&self, op: BinaryOp, a: &Tensor, b: &Tensor) -> Result<Tensor>;
    /// Sums x over repetitions of length `period` (the backward of a broadcast).
    fn reduce_period(&self, x: &Tensor, period: usize) -> Result<Tensor>;
    /// s·x.
    fn scale(&self, x: &Tensor, s: f64) -> Result<Tensor>;
    /// a += b in place.
    fn add_assign(&self, a: &mut Tensor, b: &Tensor) -> Result<()>;
    /// Σ x as f64.
    fn sum_all(&self, x: &Tensor) -> Result<f64>;
    /// Permutes dimensions (materialised).
    fn permute(&self, x: &Tensor, perm: &[usize]) -> Result<Tensor>;
    /// A slice along one dimension.
    fn narrow(&self, x: &Tensor, dim: usize, start: usize, len: usize) -> Result<Tensor>;
    /// Scatters `dy` into zeros of `shape` at `[start, start+len)` along `dim`.
    fn narrow_bwd(&self, dy: &Tensor, shape: &[usize], dim: usize, start: usize) -> Result<Tensor>;
    /// Concatenates along `dim`.
    fn concat(&self, parts: &[&Tensor], dim: usize) -> Result<Tensor>;
    /// softmax (log = false) or log-softmax (log = true) over the last dim.
    fn softmax_fwd(&self, x: &Tensor, log: bool) -> Result<Tensor>;
    /// Backward of softmax / log-softmax from the output y.
    fn softmax_bwd(&self, dy: &Tensor, y: &Tensor, log: bool) -> Result<Tensor>;
    /// Row L2 normalisation; returns (y, norms).
    fn l2_normalize_fwd(&self, x: &Tensor, eps: f64) -> Result<(Tensor, Tensor)>;
    /// Backward of L2 normalisation.
    fn l2_normalize_bwd(&self, dy: &Tensor, y: &Tensor, norms: &Tensor, eps: f64) -> Result<Tensor>;
    /// Masked mean over the sequence of `x [b, t, d]`; returns (y, counts).
    fn mean_pool_fwd(&self, x: &Tensor, mask: &Tensor) -> Result<(Tensor, Tensor)>;
    /// Backward of mean pooling.
    fn mean_pool_bwd(&self, dy: &Tensor, mask: &Tensor, counts: &Tensor, t: usize) -> Result<Tensor>;
    /// Per-example `alpha·Σ a[run]ᵀ·b[run]` over each example's runs of rows: `[examples, p, q]`
    /// from `a [n, p]` and `b [n, q]`.
    fn segment_outer(&self, a: &Tensor, b: &Tensor, runs: &[Run], examples: usize, alpha: f64) -> Result<Tensor>;
    /// Per-example sums of `a [n, p]`'s rows over each example's runs: `[examples, p]`.
    fn segment_sum(&self, a: &Tensor, runs: &[Run], examples: usize) -> Result<Tensor>;
    /// Per-example embedding gradients: row `i` of `dy [n, d]` added to row `ids[i]` of its
    /// example's `[vocab, d]` table: `[examples, vocab, d]`.
    fn segment_embedding_bwd(
        &self,
        dy: &Tensor,
        ids: &Tensor,
        vocab: usize,
        runs: &[Run],
        examples: usize,
    ) -> Result<Tensor>;
    /// One AdamW step on one parameter (state tensors updated in place).
    #[allow(clippy::too_many_arguments)]
    fn adamw_step(
        &self,
        param: &mut Tensor,
        grad: &Tensor,
        m: &mut Tensor,
        v: &mut Tensor,
        hp: crate::optim::AdamWStep,
    ) -> Result<()>;
    /// One SGD(+momentum) step on one parameter.
    fn sgd_step(
        &self,
        param: &mut Tensor,
        grad: &Tensor,
        momentum_buf: Option<&mut Tensor>,
        hp: crate::optim::SgdStep,
    ) -> Result<()>;
}

type Factory = Arc<dyn Fn(usize) -> Result<Arc<dyn Backend>> + Send + Sync>;

fn device_factories() -> &'static RwLock<Option<Factory>> {
    static F: OnceLock<RwLock<Option<Factory>>> = OnceLock::new();
    F.get_or_init(|| RwLock::new(None))
}

type BackendSlots = RwLock<Vec<Option<Arc<dyn Backend>>>>;

fn cuda_backends() -> &'static BackendSlots {
    static B: OnceLock<BackendSlots> = OnceLock::new();
    B.get_or_init(|| RwLock::new(Vec::new()))
}

/// Registers the constructor of the CUDA backend (called by the CUDA crate at start-up).
pub fn register_cuda_backend(factory: impl Fn(usize) -> Result<Arc<dyn Backend>> + Send + Sync + 'static) {
    if let Ok(mut f) = device_factories().write() {
        *f = Some(Arc::new(factory));
    }
}

/// The backend for a device: the CPU backend, or the registered CUDA backend (created on
/// first use of each ordinal). A clear error when the device cannot be used.
pub fn for_device(device: Device) -> Result<Arc<dyn Backend>> {
    static CPU: OnceLock<Arc<dyn Backend>> = OnceLock::new();
    match device {
        Device::Cpu => Ok(CPU.get_or_init(|| Arc::new(CpuBackend)).clone()),
        Device::Cuda(i) => {
            if let Some(Some(b)) = cuda_backends().read().ok().and_then(|v| v.get(i).cloned()) {
                return Ok(b);
            }
            let factory = device_factories().read().ok().and_then(|f| f.clone()).ok_or_else(|| {
                EngineError::DeviceUnavailable { device, why: "this build has no CUDA backend registered".into() }
            })?;
            let backend = factory(i)?;
            if let Ok(mut v) = cuda_backends().write() {
                if v.len() <= i {
                    v.resize(i + 1, None);
                }
                v[i] = Some(backend.clone());
            }
            Ok(backend)
        }
    }
}

/// The backend shared by a set of operands, or a device-mismatch error naming `op`.
pub fn common(op: &'static str, tensors: &[&Tensor]) -> Result<Arc<dyn Backend>> {
    let dev = tensors.first().map(|t| t.device()).unwrap_or(Device::Cpu);
    for t in tensors {
        if t.device() != dev {
            return Err(EngineError::Device { op, lhs: dev, rhs: t.device() });
        }
    }
    for_device(dev)
}
