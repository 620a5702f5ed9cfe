//! The tensor: a contiguous row-major block of elements with a shape, on a device.
//! Cloning is cheap (the storage is shared); writing through [`Tensor::as_mut_slice`]
//! copies first if the storage is shared, so a tensor never changes under another owner.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use rayon::prelude::*;

use crate::dtype::DType;
use crate::error::{EngineError, Result};
use crate::storage::{CpuStorage, HostElement, Storage};
use crate::Device;

/// An n-dimensional array. Always contiguous and row-major.
#[derive(Clone)]
pub struct Tensor {
    storage: Arc<Storage>,
    shape: Vec<usize>,
    /// Other layouts of this data, built on demand; shared by clones (which share the data)
    /// and replaced whenever the data is written.
    layouts: Arc<Layouts>,
}

/// Lazily built copies of a tensor's data in another layout.
#[derive(Default)]
struct Layouts {
    /// The transpose of a rank-2 tensor (see [`Tensor::transposed_cached`]).
    transposed: OnceLock<Tensor>,
    /// Reads counted by [`Tensor::count_read`] since the data was last written.
    reads: AtomicUsize,
}

impl Tensor {
    fn with_storage(storage: Arc<Storage>, shape: Vec<usize>) -> Tensor {
        Tensor { storage, shape, layouts: Arc::default() }
    }
}

/// A vector of `n` copies of `value`. Large ones (a backward seed of ones over activations,
/// tens of MB) are filled by all threads, since one core cannot saturate memory bandwidth.
fn filled<T: Copy + Send + Sync>(n: usize, value: T) -> Vec<T> {
    const PARALLEL_FROM: usize = 1 << 18;
    if n < PARALLEL_FROM {
        return vec![value; n];
    }
    let mut v: Vec<T> = Vec::with_capacity(n);
    v.spare_capacity_mut()[..n].par_chunks_mut(1 << 16).for_each(|chunk| {
        for x in chunk {
            x.write(value);
        }
    });
    // SAFETY: every one of the n elements was written just above.
    unsafe { v.set_len(n) };
    v
}

impl fmt::Debug for Tensor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor({:?}, {:?}, {})", self.shape, self.dtype(), self.device())
    }
}

/// Number of elements of a shape.
pub fn numel(shape: &[usize]) -> usize {
    shape.iter().product()
}

impl Tensor {
    /// Wraps storage of the right length.
    pub fn from_storage(storage: Storage, shape: &[usize]) -> Result<Tensor> {
        if storage.len() != numel(shape) {
            return Err(EngineError::shape(
                "from_storage",
                &[storage.len()],
                shape,
                "storage length must equal the product of the shape",
            ));
        }
        Ok(Tensor::with_storage(Arc::new(storage), shape.to_vec()))
    }

    /// A host tensor from a vector; the length must match the shape.
    pub fn from_vec<T: HostElement>(data: Vec<T>, shape: &[usize]) -> Result<Tensor> {
        Tensor::from_storage(Storage::Cpu(T::into_storage(data)), shape)
    }

    /// A host tensor copied from a slice.
    pub fn from_slice<T: HostElement>(data: &[T], shape: &[usize]) -> Result<Tensor> {
        Tensor::from_vec(data.to_vec(), shape)
    }

    /// A zero-filled tensor.
    pub fn zeros(shape: &[usize], dtype: DType, device: Device) -> Result<Tensor> {
        let host = Tensor::from_storage(Storage::Cpu(CpuStorage::zeros(dtype, numel(shape))), shape)?;
        host.to_device(device)
    }

    /// A tensor filled with one value (converted to `dtype`).
    pub fn full(shape: &[usize], value: f64, dtype: DType, device: Device) -> Result<Tensor> {
        let n = numel(shape);
        let storage = match dtype {
            DType::F32 => CpuStorage::F32(filled(n, value as f32)),
            DType::F64 => CpuStorage::F64(filled(n, value)),
            DType::BF16 => CpuStorage::BF16(filled(n, half::bf16::from_f64(value))),
            DType::F16 => CpuStorage::F16(filled(n, half::f16::from_f64(value))),
            DType::I64 => CpuStorage::I64(filled(n, value as i64)),
            DType::U32 => CpuStorage::U32(filled(n, value as u32)),
        };
        Tensor::from_storage(Storage::Cpu(storage), shape)?.to_device(device)
    }

    /// A zero-dimensional f32 tensor.
    pub fn scalar(value: f32) -> Tensor {
        Tensor::with_storage(Arc::new(Storage::Cpu(CpuStorage::F32(vec![value]))), vec![])
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Number of dimensions.
    pub fn rank(&self) -> usize {
        self.shape.len()
    }

    /// Size of one dimension; negative indices count from the end.
    pub fn dim(&self, d: isize) -> Result<usize> {
        let r = self.rank() as isize;
        let i = if d < 0 { r + d } else { d };
        if i < 0 || i >= r {
            return Err(EngineError::shape("dim", &self.shape, &[], format!("dimension {d} out of range")));
        }
        Ok(self.shape[i as usize])
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        numel(&self.shape)
    }

    /// Element type.
    pub fn dtype(&self) -> DType {
        self.storage.dtype()
    }

    /// Device holding the data.
    pub fn device(&self) -> Device {
        self.storage.device()
    }

    /// The underlying storage.
    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    /// True when both tensors share the same storage allocation.
    pub fn same_storage(&self, other: &Tensor) -> bool {
        Arc::ptr_eq(&self.storage, &other.storage)
    }

    /// The host storage, or an error naming `op` for device tensors.
    pub fn cpu_storage(&self) -> Result<&CpuStorage> {
        match &*self.storage {
            Storage::Cpu(c) => Ok(c),
            Storage::Device(d) => Err(EngineError::Device { op: "cpu_storage", lhs: d.device(), rhs: Device::Cpu }),
        }
    }

    /// Borrows the elements of a host tensor of type `T`.
    pub fn as_slice<T: HostElement>(&self) -> Result<&[T]> {
        let c = self.cpu_storage()?;
        T::slice(c).ok_or_else(|| EngineError::DType {
            op: "as_slice",
            got: c.dtype(),
            expected: T::DTYPE.name().to_string(),
        })
    }

    /// Mutably borrows the elements of a host tensor, copying first if the storage is shared.
    pub fn as_mut_slice<T: HostElement>(&mut self) -> Result<&mut [T]> {
        if Arc::get_mut(&mut self.storage).is_none() {
            self.storage = Arc::new(self.storage.try_clone()?);
        }
        // The caller may change the data, so layouts built from it no longer hold.
        self.layouts = Arc::default();
        let storage = Arc::get_mut(&mut self.storage).expect("storage is unique after copy");
        match storage {
            Storage::Cpu(c) => {
                let got = c.dtype();
                T::slice_mut(c).ok_or_else(|| EngineError::DType {
                    op: "as_mut_slice",
                    got,
                    expected: T::DTYPE.name().to_string(),
                })
            }
            Storage::Device(d) => Err(EngineError::Device { op: "as_mut_slice", lhs: d.device(), rhs: Device::Cpu }),
        }
    }

    /// Copies the elements out as `T` (which must be the tensor's dtype).
    pub fn to_vec<T: HostElement>(&self) -> Result<Vec<T>> {
        Ok(self.to_device(Device::Cpu)?.as_slice::<T>()?.to_vec())
    }

    /// Copies the elements out as f32, converting from any dtype.
    pub fn to_vec_f32(&self) -> Result<Vec<f32>> {
        Ok(self.host_storage()?.to_f32_vec())
    }

    /// Copies the elements out as f64, converting from any dtype.
    pub fn to_vec_f64(&self) -> Result<Vec<f64>> {
        Ok(self.host_storage()?.to_f64_vec())
    }

    fn host_storage(&self) -> Result<CpuStorage> {
        match &*self.storage {
            Storage::Cpu(c) => Ok(c.clone()),
            Storage::Device(d) => d.to_cpu(),
        }
    }

    /// The single value of a one-element tensor, as f64.
    pub fn scalar_value(&self) -> Result<f64> {
        if self.numel() != 1 {
            return Err(EngineError::shape("scalar_value", &self.shape, &[], "expected exactly one element"));
        }
        Ok(self.to_vec_f64()?[0])
    }

    /// Same data, new shape with the same number of elements. Shares storage.
    pub fn reshape(&self, shape: &[usize]) -> Result<Tensor> {
        if numel(shape) != self.numel() {
            return Err(EngineError::shape("reshape", &self.shape, shape, "reshape must keep the number of elements"));
        }
        // A different shape has a different transpose, so the layouts are not shared.
        Ok(Tensor::with_storage(self.storage.clone(), shape.to_vec()))
    }

    /// Converts the elements to another dtype (a no-op sharing storage if already that dtype).
    pub fn to_dtype(&self, dtype: DType) -> Result<Tensor> {
        if dtype == self.dtype() {
            return Ok(self.clone());
        }
        match &*self.storage {
            Storage::Cpu(c) => Tensor::from_storage(Storage::Cpu(c.convert(dtype)), &self.shape),
            Storage::Device(_) => crate::backend::for_device(self.device())?.to_dtype(self, dtype),
        }
    }

    /// Copies the tensor to `device` (sharing storage if it is already there).
    pub fn to_device(&self, device: Device) -> Result<Tensor> {
        if device == self.device() {
            return Ok(self.clone());
        }
        match device {
            Device::Cpu => Tensor::from_storage(Storage::Cpu(self.host_storage()?), &self.shape),
            _ => {
                let host = self.to_device(Device::Cpu)?;
                crate::backend::for_device(device)?.upload(&host)
            }
        }
    }

    /// The transpose of this rank-2 host tensor, `[cols, rows]` and contiguous, built on the
    /// first call and kept with the data: later calls on this tensor or its clones return it
    /// at no cost until the data is written through [`Tensor::as_mut_slice`]. For weights
    /// that the GEMM reads faster in the other layout (linear's forward, see
    /// `cpu::linear::Weight`); it holds one more copy of the tensor while the tensor lives.
    pub fn transposed_cached(&self) -> Result<Tensor> {
        if self.rank() != 2 {
            return Err(EngineError::shape("transposed_cached", &self.shape, &[0, 0], "expected a rank-2 tensor"));
        }
        let host = self.cpu_storage()?;
        let (rows, cols) = (self.shape[0], self.shape[1]);
        Ok(self
            .layouts
            .transposed
            .get_or_init(|| {
                Tensor::with_storage(Arc::new(Storage::Cpu(host.transpose_2d(rows, cols))), vec![cols, rows])
            })
            .clone())
    }

    /// Counts one more read of this data by a kernel that decides whether a layout copy pays
    /// off, returning how many such reads came before since the data was last written. Shared
    /// by clones, like the data.
    pub fn count_read(&self) -> usize {
        self.layouts.reads.fetch_add(1, Ordering::Relaxed)
    }

    /// Whether [`Tensor::transposed_cached`] has built its copy for the current data.
    pub fn has_cached_transpose(&self) -> bool {
        self.layouts.transposed.get().is_some()
    }

    /// Deep copy that owns its storage.
    pub fn deep_clone(&self) -> Result<Tensor> {
        Ok(Tensor::with_storage(Arc::new(self.storage.try_clone()?), self.shape.clone()))
    }

    /// Checks that this tensor has `dtype`, naming `op` otherwise.
    pub fn expect_dtype(&self, op: &'static str, dtype: DType) -> Result<()> {
        if self.dtype() != dtype {
            return Err(EngineError::DType { op, got: self.dtype(), expected: dtype.name().to_string() });
        }
        Ok(())
    }

    /// Checks that this tensor computes in f32 or f64, naming `op` otherwise.
    pub fn expect_float(&self, op: &'static str) -> Result<()> {
        if !self.dtype().is_compute_float() {
            return Err(EngineError::DType { op, got: self.dtype(), expected: "f32 or f64".into() });
        }
        Ok(())
    }

    /// Largest absolute difference to another tensor of the same shape (for tests).
    pub fn max_abs_diff(&self, other: &Tensor) -> Result<f64> {
        if self.shape != other.shape {
            return Err(EngineError::shape("max_abs_diff", &self.shape, &other.shape, "shapes must match"));
        }
        let a = self.to_vec_f64()?;
        let b = other.to_vec_f64()?;
        Ok(a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_fills_every_element_small_and_large() {
        // Below and above the size where the fill runs on all threads, with a ragged last chunk.
        for n in [0usize, 1, 1000, (1 << 18) + 12_345] {
            let t = Tensor::full(&[n], 1.5, DType::F32, Device::Cpu).unwrap();
            assert_eq!(t.shape(), &[n]);
            assert!(t.as_slice::<f32>().unwrap().iter().all(|&v| v == 1.5), "n = {n}");
            let t = Tensor::full(&[n], -3.0, DType::I64, Device::Cpu).unwrap();
            assert!(t.as_slice::<i64>().unwrap().iter().all(|&v| v == -3), "n = {n}");
        }
    }
}
