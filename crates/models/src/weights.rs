//! Reading safetensors checkpoints: one file or shards listed in `model.safetensors.index.json`,
//! memory-mapped, with bf16/f16/f64 converted to f32 on load. The reader records which tensors
//! were taken, so a loader can report missing and unexpected names precisely.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use memmap2::Mmap;
use safetensors::tensor::{Dtype as StDtype, SafeTensors};
use tunesmith_engine::quant::QuantMatrix;
use tunesmith_engine::{bf16, f16, Tensor};

use crate::error::{list_names, ModelError, Result};

enum Entry {
    Mapped {
        file: usize,
        dtype: StDtype,
        shape: Vec<usize>,
        start: usize,
        end: usize,
    },
    Memory(Tensor),
    /// A `[rows, cols]` matrix kept quantized (a GGUF base loaded for QLoRA).
    Quantized {
        matrix: Arc<QuantMatrix>,
        shape: Vec<usize>,
    },
}

impl Entry {
    fn shape(&self) -> &[usize] {
        match self {
            Entry::Mapped { shape, .. } => shape,
            Entry::Memory(t) => t.shape(),
            Entry::Quantized { shape, .. } => shape,
        }
    }
}

/// An open checkpoint: memory-mapped safetensors files, or tensors already in memory (for
/// formats converted on load, such as llama2.c checkpoints).
pub struct Checkpoint {
    root: PathBuf,
    files: Vec<(PathBuf, Mmap)>,
    entries: BTreeMap<String, Entry>,
    taken: std::cell::RefCell<BTreeSet<String>>,
}

fn open_mmap(path: &Path) -> Result<Mmap> {
    let f = File::open(path).map_err(|e| ModelError::io(path, e))?;
    // SAFETY: the file is opened read-only; checkpoints are not modified while training reads
    // them (the same contract as safetensors' own loaders).
    unsafe { Mmap::map(&f) }.map_err(|e| ModelError::io(path, e))
}

impl Checkpoint {
    /// Opens the weights of a model folder: `model.safetensors`, or the shards of
    /// `model.safetensors.index.json`.
    pub fn open_dir(dir: &Path) -> Result<Checkpoint> {
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        if single.exists() {
            return Self::open_files(dir, &[single]);
        }
        if index.exists() {
            let text = std::fs::read_to_string(&index).map_err(|e| ModelError::io(&index, e))?;
            let v: serde_json::Value =
                serde_json::from_str(&text).map_err(|e| ModelError::Json { path: index.clone(), source: e })?;
            let map = v.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| {
                ModelError::config(&index, "weight_map", "must be an object of tensor name → shard file")
            })?;
            let mut shards: Vec<String> = map.values().filter_map(|s| s.as_str().map(String::from)).collect();
            shards.sort();
            shards.dedup();
            let paths: Vec<PathBuf> = shards.iter().map(|s| dir.join(s)).collect();
            let ck = Self::open_files(dir, &paths)?;
            for (name, shard) in map {
                if !ck.entries.contains_key(name) {
                    return Err(ModelError::format(
                        &index,
                        format!("lists tensor '{name}' in {shard}, but that shard does not contain it"),
                    ));
                }
            }
            return Ok(ck);
        }
        if dir.join("pytorch_model.bin").exists() {
            return Err(ModelError::format(
                dir,
                "only pytorch_model.bin found; tunesmith reads safetensors: convert with \
                 `model.save_pretrained(dir, safe_serialization=True)` in transformers",
            ));
        }
        Err(ModelError::format(dir, "no model.safetensors or model.safetensors.index.json in this folder"))
    }

    /// Opens specific safetensors files (tensor names must be unique across them).
    pub fn open_files(root: &Path, paths: &[PathBuf]) -> Result<Checkpoint> {
        let mut files = Vec::new();
        let mut entries = BTreeMap::new();
        for (fi, path) in paths.iter().enumerate() {
            let mmap = open_mmap(path)?;
            let (header_len, meta) = SafeTensors::read_metadata(&mmap)
                .map_err(|e| ModelError::format(path, format!("not a valid safetensors file: {e}")))?;
            let base = 8 + header_len;
            for (name, info) in meta.tensors() {
                let (s, e) = info.data_offsets;
                if base + e > mmap.len() || s > e {
                    return Err(ModelError::format(path, format!("tensor '{name}' lies outside the file")));
                }
                if entries.contains_key(&name) {
                    return Err(ModelError::format(path, format!("tensor '{name}' appears in more than one shard")));
                }
                entries.insert(
                    name,
                    Entry::Mapped {
                        file: fi,
                        dtype: info.dtype,
                        shape: info.shape.clone(),
                        start: base + s,
                        end: base + e,
                    },
                );
            }
            files.push((path.clone(), mmap));
        }
        Ok(Checkpoint { root: root.to_path_buf(), files, entries, taken: Default::default() })
    }

    /// A checkpoint over named in-memory tensors (`root` is used in messages).
    pub fn from_tensors(root: &Path, tensors: Vec<(String, Tensor)>) -> Checkpoint {
        Self::from_parts(root, tensors, Vec::new())
    }

    /// A checkpoint over in-memory tensors and matrices kept quantized: a linear layer whose
    /// weight is one of the latter loads it as its quantized base
    /// ([`Checkpoint::take_quantized`]); anything else reading it gets it dequantized.
    pub fn from_parts(
        root: &Path,
        tensors: Vec<(String, Tensor)>,
        quantized: Vec<(String, QuantMatrix)>,
    ) -> Checkpoint {
        let mut entries: BTreeMap<String, Entry> = tensors.into_iter().map(|(n, t)| (n, Entry::Memory(t))).collect();
        for (n, q) in quantized {
            let shape = vec![q.rows(), q.cols()];
            entries.insert(n, Entry::Quantized { matrix: Arc::new(q), shape });
        }
        Checkpoint { root: root.to_path_buf(), files: Vec::new(), entries, taken: Default::default() }
    }

    /// The quantized matrix stored under `name`, if it is one, marked as used.
    pub fn take_quantized(&self, name: &str) -> Option<Arc<QuantMatrix>> {
        match self.entries.get(name) {
            Some(Entry::Quantized { matrix, .. }) => {
                self.taken.borrow_mut().insert(name.to_string());
                Some(Arc::clone(matrix))
            }
            _ => None,
        }
    }

    /// Where the checkpoint lives (for messages).
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// All tensor names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// True if the checkpoint has this tensor.
    pub fn contains(&self, name: &str) -> bool {
        self.entries.contains_key(name)
    }

    /// Shape of a tensor, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.entries.get(name).map(Entry::shape)
    }

    /// Reads a tensor (floats as f32; integers as i64) and marks it as used.
    pub fn take(&self, name: &str) -> Result<Tensor> {
        let e = self
            .entries
            .get(name)
            .ok_or_else(|| ModelError::MissingTensors { path: self.root.clone(), names: format!("'{name}'") })?;
        self.taken.borrow_mut().insert(name.to_string());
        match e {
            Entry::Mapped { file, dtype, shape, start, end } => {
                let (path, mmap) = &self.files[*file];
                decode(path, name, *dtype, shape, &mmap[*start..*end])
            }
            Entry::Memory(t) => Ok(t.clone()),
            Entry::Quantized { matrix, shape } => Ok(Tensor::from_vec(matrix.dequantize(), shape)?),
        }
    }

    /// Reads a tensor and checks its shape.
    pub fn take_shaped(&self, name: &str, expected: &[usize]) -> Result<Tensor> {
        let t = self.take(name)?;
        if t.shape() != expected {
            return Err(ModelError::TensorShape {
                path: self.root.clone(),
                name: name.into(),
                expected: expected.to_vec(),
                got: t.shape().to_vec(),
            });
        }
        Ok(t)
    }

    /// Names never taken, except those `ignore` accepts (buffers such as `attn.bias`).
    pub fn untaken(&self, ignore: impl Fn(&str) -> bool) -> Vec<String> {
        let taken = self.taken.borrow();
        self.entries.keys().filter(|n| !taken.contains(*n) && !ignore(n)).cloned().collect()
    }

    /// Errors if any tensor was never taken (and is not ignorable).
    pub fn finish(&self, ignore: impl Fn(&str) -> bool) -> Result<()> {
        let rest = self.untaken(ignore);
        if rest.is_empty() {
            Ok(())
        } else {
            Err(ModelError::UnexpectedTensors {
                path: self.root.clone(),
                count: rest.len(),
                names: list_names(&rest, 5),
            })
        }
    }
}

fn chunks_le<const N: usize>(bytes: &[u8]) -> impl Iterator<Item = [u8; N]> + '_ {
    bytes.chunks_exact(N).map(|c| c.try_into().expect("exact chunk"))
}

fn decode(path: &Path, name: &str, dtype: StDtype, shape: &[usize], bytes: &[u8]) -> Result<Tensor> {
    let n: usize = shape.iter().product();
    let width = match dtype {
        StDtype::F32 | StDtype::I32 | StDtype::U32 => 4,
        StDtype::F16 | StDtype::BF16 | StDtype::I16 | StDtype::U16 => 2,
        StDtype::F64 | StDtype::I64 | StDtype::U64 => 8,
        StDtype::BOOL | StDtype::U8 | StDtype::I8 => 1,
        other => {
            return Err(ModelError::format(path, format!("tensor '{name}' has unsupported dtype {other:?}")));
        }
    };
    if bytes.len() != n * width {
        return Err(ModelError::format(
            path,
            format!("tensor '{name}' has {} bytes, its shape needs {}", bytes.len(), n * width),
        ));
    }
    let t = match dtype {
        StDtype::F32 => Tensor::from_vec(chunks_le::<4>(bytes).map(f32::from_le_bytes).collect::<Vec<f32>>(), shape),
        StDtype::F64 => {
            Tensor::from_vec(chunks_le::<8>(bytes).map(|b| f64::from_le_bytes(b) as f32).collect::<Vec<f32>>(), shape)
        }
        StDtype::BF16 => Tensor::from_vec(
            chunks_le::<2>(bytes).map(|b| bf16::from_bits(u16::from_le_bytes(b)).to_f32()).collect::<Vec<f32>>(),
            shape,
        ),
        StDtype::F16 => Tensor::from_vec(
            chunks_le::<2>(bytes).map(|b| f16::from_bits(u16::from_le_bytes(b)).to_f32()).collect::<Vec<f32>>(),
            shape,
        ),
        StDtype::I64 => Tensor::from_vec(chunks_le::<8>(bytes).map(i64::from_le_bytes).collect::<Vec<i64>>(), shape),
        StDtype::I32 => {
            Tensor::from_vec(chunks_le::<4>(bytes).map(|b| i32::from_le_bytes(b) as i64).collect::<Vec<i64>>(), shape)
        }
        StDtype::U32 => {
            Tensor::from_vec(chunks_le::<4>(bytes).map(|b| u32::from_le_bytes(b) as i64).collect::<Vec<i64>>(), shape)
        }
        StDtype::U64 => {
            Tensor::from_vec(chunks_le::<8>(bytes).map(|b| u64::from_le_bytes(b) as i64).collect::<Vec<i64>>(), shape)
        }
        StDtype::I16 => {
            Tensor::from_vec(chunks_le::<2>(bytes).map(|b| i16::from_le_bytes(b) as i64).collect::<Vec<i64>>(), shape)
        }
        StDtype::U16 => {
            Tensor::from_vec(chunks_le::<2>(bytes).map(|b| u16::from_le_bytes(b) as i64).collect::<Vec<i64>>(), shape)
        }
        StDtype::I8 => Tensor::from_vec(bytes.iter().map(|&b| b as i8 as i64).collect::<Vec<i64>>(), shape),
        StDtype::U8 | StDtype::BOOL => Tensor::from_vec(bytes.iter().map(|&b| b as i64).collect::<Vec<i64>>(), shape),
        _ => unreachable!("rejected above"),
    };
    Ok(t?)
}

/// Writes named tensors (f32 or i64) to a safetensors file atomically (temp file + rename),
/// with optional `__metadata__`.
pub fn save_safetensors(
    path: &Path,
    tensors: &[(String, Tensor)],
    metadata: Option<HashMap<String, String>>,
) -> Result<()> {
    use safetensors::tensor::TensorView;
    let mut buffers: Vec<(String, StDtype, Vec<usize>, Vec<u8>)> = Vec::with_capacity(tensors.len());
    for (name, t) in tensors {
        let (dtype, bytes) = match t.dtype() {
            tunesmith_engine::DType::I64 => {
                (StDtype::I64, t.to_vec::<i64>()?.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>())
            }
            _ => (StDtype::F32, t.to_vec_f32()?.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>()),
        };
        buffers.push((name.clone(), dtype, t.shape().to_vec(), bytes));
    }
    let views: Vec<(String, TensorView<'_>)> = buffers
        .iter()
        .map(|(n, d, s, b)| {
            TensorView::new(*d, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| ModelError::format(path, format!("tensor '{n}': {e}")))
        })
        .collect::<Result<_>>()?;
    let bytes =
        safetensors::serialize(views, metadata).map_err(|e| ModelError::format(path, format!("serializing: {e}")))?;
    crate::io::write_atomic(path, &bytes)
}
