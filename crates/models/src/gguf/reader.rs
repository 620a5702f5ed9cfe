//! The GGUF container (versions 2 and 3), as llama.cpp writes it: a header, metadata
//! key/values, tensor infos, then the tensor data at an aligned offset. Every count, length,
//! offset and type is checked against the file before it is used, and each error names the
//! byte offset and what was found, so a truncated or corrupt file is an error, never a panic
//! or a huge allocation.

use std::path::{Path, PathBuf};

use tunesmith_engine::quant::GgmlType;

use crate::error::{ModelError, Result};

/// "GGUF" as a little-endian u32.
pub const MAGIC: u32 = 0x4655_4747;
/// The data alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: u64 = 32;
/// ggml's largest tensor rank.
pub const MAX_DIMS: usize = 4;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// u8.
    U8(u8),
    /// i8.
    I8(i8),
    /// u16.
    U16(u16),
    /// i16.
    I16(i16),
    /// u32.
    U32(u32),
    /// i32.
    I32(i32),
    /// f32.
    F32(f32),
    /// bool.
    Bool(bool),
    /// UTF-8 string.
    String(String),
    /// An array of values of one type.
    Array(Vec<Value>),
    /// u64.
    U64(u64),
    /// i64.
    I64(i64),
    /// f64.
    F64(f64),
}

impl Value {
    /// The GGUF type id of this value.
    pub fn type_id(&self) -> u32 {
        match self {
            Value::U8(_) => 0,
            Value::I8(_) => 1,
            Value::U16(_) => 2,
            Value::I16(_) => 3,
            Value::U32(_) => 4,
            Value::I32(_) => 5,
            Value::F32(_) => 6,
            Value::Bool(_) => 7,
            Value::String(_) => 8,
            Value::Array(_) => 9,
            Value::U64(_) => 10,
            Value::I64(_) => 11,
            Value::F64(_) => 12,
        }
    }

    /// The value as an unsigned integer, if it is a non-negative integer.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::U8(v) => Some(v as u64),
            Value::U16(v) => Some(v as u64),
            Value::U32(v) => Some(v as u64),
            Value::U64(v) => Some(v),
            Value::I8(v) => u64::try_from(v).ok(),
            Value::I16(v) => u64::try_from(v).ok(),
            Value::I32(v) => u64::try_from(v).ok(),
            Value::I64(v) => u64::try_from(v).ok(),
            Value::Bool(v) => Some(v as u64),
            _ => None,
        }
    }

    /// The value as a float, if it is a number.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v as f64),
            Value::F64(v) => Some(v),
            _ => self.as_u64().map(|v| v as f64).or(match *self {
                Value::I8(v) => Some(v as f64),
                Value::I16(v) => Some(v as f64),
                Value::I32(v) => Some(v as f64),
                Value::I64(v) => Some(v as f64),
                _ => None,
            }),
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The elements, if this is an array.
    pub fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(v) => Some(v),
            _ => None,
        }
    }
}

/// Where one tensor's data is.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// The tensor's GGUF name (`blk.0.attn_q.weight`).
    pub name: String,
    /// The dimensions in ggml order: `dims[0]` is the contiguous one (a row's length).
    pub dims: Vec<u64>,
    /// The element type.
    pub ty: GgmlType,
    /// The data's offset from the start of the data section.
    pub offset: u64,
}

impl TensorInfo {
    /// The number of elements.
    pub fn numel(&self) -> usize {
        self.dims.iter().product::<u64>() as usize
    }

    /// The shape in row-major order (the reverse of `dims`), as safetensors and the engine
    /// use it.
    pub fn shape(&self) -> Vec<usize> {
        self.dims.iter().rev().map(|&d| d as usize).collect()
    }

    /// The bytes of the data.
    pub fn byte_len(&self) -> usize {
        self.numel() / self.ty.block_len() * self.ty.block_bytes()
    }
}

/// An opened GGUF file: metadata and tensor infos parsed, data memory-mapped.
pub struct GgufFile {
    path: PathBuf,
    /// The format version (2 or 3).
    pub version: u32,
    /// The metadata, in file order.
    pub metadata: Vec<(String, Value)>,
    /// The tensor infos, in file order.
    pub tensors: Vec<TensorInfo>,
    /// The data alignment.
    pub alignment: u64,
    data_start: usize,
    map: memmap2::Mmap,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("path", &self.path)
            .field("version", &self.version)
            .field("metadata", &self.metadata.len())
            .field("tensors", &self.tensors.len())
            .finish()
    }
}

/// Whether `path` is a GGUF file (by its first four bytes).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut magic)).is_ok()
        && u32::from_le_bytes(magic) == MAGIC
}

impl GgufFile {
    /// Opens and validates a GGUF file.
    pub fn open(path: &Path) -> Result<GgufFile> {
        let file = std::fs::File::open(path).map_err(|e| ModelError::io(path, e))?;
        // SAFETY: the map is read-only; a file truncated by another process while mapped
        // would fault, as with every memory-mapped checkpoint (safetensors too).
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| ModelError::io(path, e))?;
        let parsed = parse(&map).map_err(|why| ModelError::format(path, why))?;
        Ok(GgufFile {
            path: path.to_path_buf(),
            version: parsed.version,
            metadata: parsed.metadata,
            tensors: parsed.tensors,
            alignment: parsed.alignment,
            data_start: parsed.data_start,
            map,
        })
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A metadata value by key.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A required string value.
    pub fn str(&self, key: &str) -> Result<&str> {
        self.get(key)
            .ok_or_else(|| ModelError::config(&self.path, key, "missing from the GGUF metadata"))?
            .as_str()
            .ok_or_else(|| ModelError::config(&self.path, key, "is not a string"))
    }

    /// A required non-negative integer value.
    pub fn u64(&self, key: &str) -> Result<u64> {
        self.get(key)
            .ok_or_else(|| ModelError::config(&self.path, key, "missing from the GGUF metadata"))?
            .as_u64()
            .ok_or_else(|| ModelError::config(&self.path, key, "is not a non-negative integer"))
    }

    /// An optional number.
    pub fn f64_opt(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(Value::as_f64)
    }

    /// A tensor's info by name.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// A tensor's raw (possibly quantized) bytes.
    pub fn tensor_bytes(&self, info: &TensorInfo) -> &[u8] {
        let start = self.data_start + info.offset as usize;
        &self.map[start..start + info.byte_len()]
    }

    /// A tensor dequantized to f32, in row-major order of [`TensorInfo::shape`].
    pub fn dequantize(&self, info: &TensorInfo) -> Result<Vec<f32>> {
        tunesmith_engine::quant::dequantize(info.ty, self.tensor_bytes(info), info.numel())
            .map_err(|e| ModelError::format(&self.path, format!("tensor '{}': {e}", info.name)))
    }
}

struct Parsed {
    version: u32,
    metadata: Vec<(String, Value)>,
    tensors: Vec<TensorInfo>,
    alignment: u64,
    data_start: usize,
}

/// A bounds-checked little-endian cursor whose errors name the byte offset.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

type ParseResult<T> = std::result::Result<T, String>;

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &str) -> ParseResult<&'a [u8]> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.bytes.len()).ok_or_else(|| {
            format!(
                "truncated: {what} needs {n} bytes at byte {} but the file has {} (is the download complete?)",
                self.pos,
                self.bytes.len()
            )
        })?;
        let s = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn remaining(&self) -> usize {
        self.bytes.len() - self.pos
    }

    fn u8(&mut self, what: &str) -> ParseResult<u8> {
        Ok(self.take(1, what)?[0])
    }
    fn u16(&mut self, what: &str) -> ParseResult<u16> {
        Ok(u16::from_le_bytes(self.take(2, what)?.try_into().expect("2 bytes")))
    }
    fn u32(&mut self, what: &str) -> ParseResult<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().expect("4 bytes")))
    }
    fn u64(&mut self, what: &str) -> ParseResult<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().expect("8 bytes")))
    }

    fn string(&mut self, what: &str) -> ParseResult<String> {
        let at = self.pos;
        let len = self.u64(what)?;
        if len > self.remaining() as u64 {
            return Err(format!(
                "{what} at byte {at} claims {len} bytes, past the end of the file ({} left)",
                self.remaining()
            ));
        }
        let raw = self.take(len as usize, what)?;
        String::from_utf8(raw.to_vec()).map_err(|_| format!("{what} at byte {at} is not valid UTF-8"))
    }

    fn value(&mut self, ty: u32, key: &str, depth: usize) -> ParseResult<Value> {
        let what = &format!("the value of '{key}'");
        Ok(match ty {
            0 => Value::U8(self.u8(what)?),
            1 => Value::I8(self.u8(what)? as i8),
            2 => Value::U16(self.u16(what)?),
            3 => Value::I16(self.u16(what)? as i16),
            4 => Value::U32(self.u32(what)?),
            5 => Value::I32(self.u32(what)? as i32),
            6 => Value::F32(f32::from_bits(self.u32(what)?)),
            7 => match self.u8(what)? {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                b => return Err(format!("'{key}' at byte {}: bool byte {b} is neither 0 nor 1", self.pos - 1)),
            },
            8 => Value::String(self.string(what)?),
            9 => {
                if depth > 0 {
                    return Err(format!("'{key}' at byte {}: nested arrays are not supported", self.pos));
                }
                let at = self.pos;
                let elem = self.u32(what)?;
                let count = self.u64(what)?;
                let min_size = match elem {
                    0 | 1 | 7 => 1,
                    2 | 3 => 2,
                    4..=6 => 4,
                    8 | 10..=12 => 8,
                    9 => 12,
                    other => return Err(format!("'{key}' at byte {at}: unknown array element type {other}")),
                };
                if count.saturating_mul(min_size) > self.remaining() as u64 {
                    return Err(format!(
                        "'{key}' at byte {at}: an array of {count} elements cannot fit in the {} bytes left",
                        self.remaining()
                    ));
                }
                let mut items = Vec::with_capacity(count as usize);
                for _ in 0..count {
                    items.push(self.value(elem, key, depth + 1)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64(what)?),
            11 => Value::I64(self.u64(what)? as i64),
            12 => Value::F64(f64::from_bits(self.u64(what)?)),
            other => {
                return Err(format!(
                    "'{key}' at byte {}: unknown metadata value type {other} (GGUF defines 0-12)",
                    self.pos - 4
                ))
            }
        })
    }
}

fn parse(bytes: &[u8]) -> ParseResult<Parsed> {
    let mut c = Cursor { bytes, pos: 0 };
    let magic = c.u32("the magic number")?;
    if magic != MAGIC {
        return Err(format!("not a GGUF file: the first four bytes are {:?}, not \"GGUF\"", &bytes[..4]));
    }
    let version = c.u32("the version")?;
    if !(2..=3).contains(&version) {
        return Err(format!(
            "GGUF version {version} is not supported (versions 2 and 3 are; re-convert with a recent llama.cpp)"
        ));
    }
    let tensor_count = c.u64("the tensor count")?;
    let kv_count = c.u64("the metadata count")?;
    // Each key/value takes at least 13 bytes and each tensor info at least 24.
    if kv_count.saturating_mul(13) > c.remaining() as u64 {
        return Err(format!("the header claims {kv_count} metadata entries, more than the file can hold"));
    }
    if tensor_count.saturating_mul(24) > c.remaining() as u64 {
        return Err(format!("the header claims {tensor_count} tensors, more than the file can hold"));
    }
    let mut metadata: Vec<(String, Value)> = Vec::with_capacity(kv_count as usize);
    for i in 0..kv_count {
        let at = c.pos;
        let key = c.string(&format!("metadata key {i}"))?;
        if metadata.iter().any(|(k, _)| *k == key) {
            return Err(format!("metadata key '{key}' at byte {at} appears twice"));
        }
        let ty = c.u32(&format!("the type of '{key}'"))?;
        let value = c.value(ty, &key, 0)?;
        metadata.push((key, value));
    }
    let alignment = match metadata.iter().find(|(k, _)| k == "general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some((_, v)) => match v.as_u64() {
            Some(a) if a > 0 && a.is_power_of_two() => a,
            _ => return Err(format!("general.alignment is {v:?}; it must be a power of two")),
        },
    };
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(tensor_count as usize);
    for i in 0..tensor_count {
        let at = c.pos;
        let name = c.string(&format!("the name of tensor {i}"))?;
        let n_dims = c.u32(&format!("the rank of tensor '{name}'"))? as usize;
        if n_dims == 0 || n_dims > MAX_DIMS {
            return Err(format!(
                "tensor '{name}' at byte {at} has rank {n_dims}; ggml tensors have 1 to {MAX_DIMS} dimensions"
            ));
        }
        let mut dims = Vec::with_capacity(n_dims);
        for _ in 0..n_dims {
            dims.push(c.u64(&format!("a dimension of tensor '{name}'"))?);
        }
        let type_id = c.u32(&format!("the type of tensor '{name}'"))?;
        let ty = GgmlType::from_id(type_id).ok_or_else(|| {
            format!(
                "tensor '{name}' has quantization type id {type_id}, which tunesmith does not read \
                 (it reads F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0 and Q2_K-Q6_K; re-quantize with one of them)"
            )
        })?;
        let offset = c.u64(&format!("the offset of tensor '{name}'"))?;
        let numel = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)).filter(|&n| n > 0);
        let Some(numel) = numel else {
            return Err(format!("tensor '{name}' has dimensions {dims:?}, which are zero or overflow"));
        };
        if dims[0] % ty.block_len() as u64 != 0 {
            return Err(format!(
                "tensor '{name}' has rows of {} elements, not a whole number of {} blocks of {}",
                dims[0],
                ty.name(),
                ty.block_len()
            ));
        }
        if offset % alignment != 0 {
            return Err(format!("tensor '{name}' has offset {offset}, not a multiple of the alignment {alignment}"));
        }
        if tensors.iter().any(|t| t.name == name) {
            return Err(format!("tensor '{name}' appears twice"));
        }
        let _ = numel;
        tensors.push(TensorInfo { name, dims, ty, offset });
    }
    let data_start = c.pos.next_multiple_of(alignment as usize);
    let data_len = bytes.len().saturating_sub(data_start) as u64;
    for t in &tensors {
        let len = (t.numel() as u64 / t.ty.block_len() as u64).saturating_mul(t.ty.block_bytes() as u64);
        if t.offset.saturating_add(len) > data_len {
            return Err(format!(
                "tensor '{}' ({} {:?}) spans data bytes {}..{} but the data section has {data_len} bytes (truncated file?)",
                t.name,
                t.ty.name(),
                t.shape(),
                t.offset,
                t.offset.saturating_add(len)
            ));
        }
    }
    Ok(Parsed { version, metadata, tensors, alignment, data_start })
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
