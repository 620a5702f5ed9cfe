//! The memory behind a tensor: host vectors for the CPU backend, or an opaque buffer owned by
//! a device backend (the seam a CUDA backend plugs into).

use std::any::Any;
use std::fmt;

use half::{bf16, f16};

use crate::dtype::{DType, Element};
use crate::error::Result;
use crate::Device;

/// Host memory, one variant per dtype.
#[derive(Clone)]
pub enum CpuStorage {
    /// f32 elements.
    F32(Vec<f32>),
    /// f64 elements.
    F64(Vec<f64>),
    /// bf16 elements.
    BF16(Vec<bf16>),
    /// f16 elements.
    F16(Vec<f16>),
    /// i64 elements.
    I64(Vec<i64>),
    /// u32 elements.
    U32(Vec<u32>),
}

impl fmt::Debug for CpuStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CpuStorage({:?}, {} elements)", self.dtype(), self.len())
    }
}

/// Converts between typed vectors and [`CpuStorage`].
pub trait HostElement: Element {
    /// Wraps a vector.
    fn into_storage(v: Vec<Self>) -> CpuStorage;
    /// Borrows the vector if the storage has this type.
    fn slice(s: &CpuStorage) -> Option<&[Self]>;
    /// Mutably borrows the vector if the storage has this type.
    fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]>;
}

macro_rules! host_element {
    ($t:ty, $v:ident) => {
        impl HostElement for $t {
            fn into_storage(v: Vec<Self>) -> CpuStorage {
                CpuStorage::$v(v)
            }
            fn slice(s: &CpuStorage) -> Option<&[Self]> {
                match s {
                    CpuStorage::$v(v) => Some(v),
                    _ => None,
                }
            }
            fn slice_mut(s: &mut CpuStorage) -> Option<&mut [Self]> {
                match s {
                    CpuStorage::$v(v) => Some(v),
                    _ => None,
                }
            }
        }
    };
}
host_element!(f32, F32);
host_element!(f64, F64);
host_element!(bf16, BF16);
host_element!(f16, F16);
host_element!(i64, I64);
host_element!(u32, U32);

impl CpuStorage {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            CpuStorage::F32(_) => DType::F32,
            CpuStorage::F64(_) => DType::F64,
            CpuStorage::BF16(_) => DType::BF16,
            CpuStorage::F16(_) => DType::F16,
            CpuStorage::I64(_) => DType::I64,
            CpuStorage::U32(_) => DType::U32,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            CpuStorage::F32(v) => v.len(),
            CpuStorage::F64(v) => v.len(),
            CpuStorage::BF16(v) => v.len(),
            CpuStorage::F16(v) => v.len(),
            CpuStorage::I64(v) => v.len(),
            CpuStorage::U32(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Zero-filled storage.
    pub fn zeros(dtype: DType, n: usize) -> CpuStorage {
        match dtype {
            DType::F32 => CpuStorage::F32(vec![0.0; n]),
            DType::F64 => CpuStorage::F64(vec![0.0; n]),
            DType::BF16 => CpuStorage::BF16(vec![bf16::ZERO; n]),
            DType::F16 => CpuStorage::F16(vec![f16::ZERO; n]),
            DType::I64 => CpuStorage::I64(vec![0; n]),
            DType::U32 => CpuStorage::U32(vec![0; n]),
        }
    }

    /// Every element widened to f64 (exact for all stored types but very large i64).
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            CpuStorage::F32(v) => v.iter().map(|&x| x as f64).collect(),
            CpuStorage::F64(v) => v.clone(),
            CpuStorage::BF16(v) => v.iter().map(|x| x.to_f64()).collect(),
            CpuStorage::F16(v) => v.iter().map(|x| x.to_f64()).collect(),
            CpuStorage::I64(v) => v.iter().map(|&x| x as f64).collect(),
            CpuStorage::U32(v) => v.iter().map(|&x| x as f64).collect(),
        }
    }

    /// Every element as f32 (rounding from f64; bf16/f16 widen exactly).
    pub fn to_f32_vec(&self) -> Vec<f32> {
        match self {
            CpuStorage::F32(v) => v.clone(),
            CpuStorage::F64(v) => v.iter().map(|&x| x as f32).collect(),
            CpuStorage::BF16(v) => v.iter().map(|x| x.to_f32()).collect(),
            CpuStorage::F16(v) => v.iter().map(|x| x.to_f32()).collect(),
            CpuStorage::I64(v) => v.iter().map(|&x| x as f32).collect(),
            CpuStorage::U32(v) => v.iter().map(|&x| x as f32).collect(),
        }
    }

    /// The transpose of these elements read as a row-major `rows × cols` matrix.
    pub fn transpose_2d(&self, rows: usize, cols: usize) -> CpuStorage {
        use crate::cpu::shape::transpose_2d;
        match self {
            CpuStorage::F32(v) => CpuStorage::F32(transpose_2d(v, rows, cols)),
            CpuStorage::F64(v) => CpuStorage::F64(transpose_2d(v, rows, cols)),
            CpuStorage::BF16(v) => CpuStorage::BF16(transpose_2d(v, rows, cols)),
            CpuStorage::F16(v) => CpuStorage::F16(transpose_2d(v, rows, cols)),
            CpuStorage::I64(v) => CpuStorage::I64(transpose_2d(v, rows, cols)),
            CpuStorage::U32(v) => CpuStorage::U32(transpose_2d(v, rows, cols)),
        }
    }

    /// Converts to another dtype (floats round to nearest; floats to ints truncate toward zero).
    pub fn convert(&self, dtype: DType) -> CpuStorage {
        if dtype == self.dtype() {
            return self.clone();
        }
        match dtype {
            DType::F32 => CpuStorage::F32(self.to_f32_vec()),
            DType::F64 => CpuStorage::F64(self.to_f64_vec()),
            DType::BF16 => match self {
                CpuStorage::F32(v) => CpuStorage::BF16(v.iter().map(|&x| bf16::from_f32(x)).collect()),
                _ => CpuStorage::BF16(self.to_f64_vec().into_iter().map(bf16::from_f64).collect()),
            },
            DType::F16 => match self {
                CpuStorage::F32(v) => CpuStorage::F16(v.iter().map(|&x| f16::from_f32(x)).collect()),
                _ => CpuStorage::F16(self.to_f64_vec().into_iter().map(f16::from_f64).collect()),
            },
            DType::I64 => CpuStorage::I64(self.to_f64_vec().into_iter().map(|x| x as i64).collect()),
            DType::U32 => CpuStorage::U32(self.to_f64_vec().into_iter().map(|x| x as u32).collect()),
        }
    }
}

/// Memory owned by a non-CPU backend. The backend that created it downcasts it through
/// [`DeviceStorage::as_any`]; everyone else only moves it around or copies it to the host.
pub trait DeviceStorage: Send + Sync + fmt::Debug {
    /// The device holding the memory.
    fn device(&self) -> Device;
    /// The element type.
    fn dtype(&self) -> DType;
    /// Number of elements.
    fn len(&self) -> usize;
    /// True when there are no elements.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Copies the contents to host memory.
    fn to_cpu(&self) -> Result<CpuStorage>;
    /// Deep copy on the same device.
    fn duplicate(&self) -> Result<Box<dyn DeviceStorage>>;
    /// For the owning backend to downcast.
    fn as_any(&self) -> &dyn Any;
    /// For the owning backend to downcast mutably.
    fn as_any_mut(&mut self) -> &mut dyn Any;
}

/// The memory behind a tensor.
#[derive(Debug)]
pub enum Storage {
    /// Host memory.
    Cpu(CpuStorage),
    /// Memory owned by a device backend.
    Device(Box<dyn DeviceStorage>),
}

impl Storage {
    /// Deep copy on the same device.
    pub fn try_clone(&self) -> Result<Storage> {
        Ok(match self {
            Storage::Cpu(c) => Storage::Cpu(c.clone()),
            Storage::Device(d) => Storage::Device(d.duplicate()?),
        })
    }

    /// The device holding the memory.
    pub fn device(&self) -> Device {
        match self {
            Storage::Cpu(_) => Device::Cpu,
            Storage::Device(d) => d.device(),
        }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            Storage::Cpu(c) => c.dtype(),
            Storage::Device(d) => d.dtype(),
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            Storage::Cpu(c) => c.len(),
            Storage::Device(d) => d.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
