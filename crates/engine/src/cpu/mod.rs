//! CPU kernels, generic over f32 (training) and f64 (gradient checks). Each file holds one op's
//! forward and backward side by side; the [`crate::backend::CpuBackend`] unpacks tensors and
//! calls them.

pub mod activation;
pub mod attention;
pub mod bf16;
pub mod cross_entropy;
pub mod dropout;
pub mod elementwise;
pub mod embedding;
pub mod gemm;
pub mod layer_norm;
pub mod linear;
pub mod lora;
pub mod math;
pub mod matmul;
pub mod narrow;
pub mod pool;
pub mod quant_linear;
pub mod reduce;
pub mod rms_norm;
pub mod rope;
pub mod segment;
pub mod shape;
pub mod softmax;
#[cfg(test)]
mod test_support;
