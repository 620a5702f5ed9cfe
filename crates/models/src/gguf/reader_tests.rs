use super::*;
use crate::gguf::writer::GgufWriter;

fn sample() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.set("general.architecture", Value::String("llama".into()))
        .set("llama.block_count", Value::U32(2))
        .set("llama.rope.freq_base", Value::F32(10000.0))
        .set("tokenizer.ggml.tokens", Value::Array(vec![Value::String("a".into()), Value::String("b".into())]))
        .set("flag", Value::Bool(true))
        .set("big", Value::U64(1 << 40))
        .set("neg", Value::I32(-3));
    let f32s: Vec<u8> = (0..8).flat_map(|i| (i as f32 * 0.5).to_le_bytes()).collect();
    w.add_tensor("a.weight", &[2, 4], GgmlType::F32, f32s).unwrap();
    let mut q8 = vec![0u8; 34];
    tunesmith_engine::quant::quantize_q8_0(&[0.25f32; 32], &mut q8);
    w.add_tensor("b.weight", &[1, 32], GgmlType::Q8_0, q8).unwrap();
    w.to_bytes()
}

fn open_bytes(bytes: &[u8]) -> Result<GgufFile> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("m.gguf");
    std::fs::write(&path, bytes).unwrap();
    GgufFile::open(&path)
}

fn error_of(bytes: &[u8]) -> String {
    open_bytes(bytes).expect_err("must be rejected").to_string()
}

#[test]
fn written_files_read_back() {
    let f = open_bytes(&sample()).unwrap();
    assert_eq!(f.version, 3);
    assert_eq!(f.str("general.architecture").unwrap(), "llama");
    assert_eq!(f.u64("llama.block_count").unwrap(), 2);
    assert_eq!(f.f64_opt("llama.rope.freq_base"), Some(10000.0));
    assert_eq!(f.get("neg"), Some(&Value::I32(-3)));
    assert_eq!(f.get("big").and_then(Value::as_u64), Some(1 << 40));
    assert_eq!(f.get("tokenizer.ggml.tokens").and_then(Value::as_array).map(|a| a.len()), Some(2));
    let a = f.tensor("a.weight").unwrap();
    assert_eq!(a.shape(), vec![2, 4]);
    assert_eq!(f.dequantize(a).unwrap(), (0..8).map(|i| i as f32 * 0.5).collect::<Vec<_>>());
    let b = f.tensor("b.weight").unwrap();
    assert_eq!(b.offset % f.alignment, 0);
    assert!(f.dequantize(b).unwrap().iter().all(|&v| (v - 0.25).abs() < 1e-3));
    assert!(f.str("missing").unwrap_err().to_string().contains("missing"));
}

fn set_u32(bytes: &mut [u8], at: usize, v: u32) {
    bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Byte offset of the first occurrence of `needle`.
fn find(bytes: &[u8], needle: &[u8]) -> usize {
    bytes.windows(needle.len()).position(|w| w == needle).expect("needle")
}

#[test]
fn malformed_headers_are_clear_errors() {
    let good = sample();
    let mut b = good.clone();
    b[0] = b'X';
    assert!(error_of(&b).contains("not a GGUF file"));
    let mut b = good.clone();
    set_u32(&mut b, 4, 1);
    assert!(error_of(&b).contains("version 1"));
    let mut b = good.clone();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(error_of(&b).contains("tensors, more than the file can hold"));
    let mut b = good.clone();
    b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(error_of(&b).contains("metadata entries"));
    // The value type of the first key (after its 8-byte length and 20 bytes of text).
    let mut b = good.clone();
    set_u32(&mut b, 24 + 8 + "general.architecture".len(), 13);
    let e = error_of(&b);
    assert!(e.contains("unknown metadata value type 13") && e.contains("general.architecture"), "{e}");
    // A string length past the end.
    let mut b = good.clone();
    b[24..32].copy_from_slice(&(1u64 << 50).to_le_bytes());
    assert!(error_of(&b).contains("past the end of the file"));
}

#[test]
fn malformed_tensor_infos_are_clear_errors() {
    let good = sample();
    // The tensor info of b.weight: name, rank u32, 2 dims u64, type u32, offset u64.
    let info = find(&good, b"b.weight") + "b.weight".len();
    let (rank_at, type_at, offset_at) = (info, info + 4 + 16, info + 4 + 16 + 4);
    let mut b = good.clone();
    set_u32(&mut b, type_at, 99);
    let e = error_of(&b);
    assert!(e.contains("quantization type id 99") && e.contains("b.weight"), "{e}");
    let mut b = good.clone();
    set_u32(&mut b, rank_at, 7);
    assert!(error_of(&b).contains("rank 7"));
    let mut b = good.clone();
    b[offset_at..offset_at + 8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    let e = error_of(&b);
    assert!(e.contains("b.weight") && e.contains("truncated file"), "{e}");
    let mut b = good.clone();
    b[offset_at..offset_at + 8].copy_from_slice(&33u64.to_le_bytes());
    assert!(error_of(&b).contains("not a multiple of the alignment"));
    // Cut inside the data: the last tensor no longer fits.
    let e = error_of(&good[..good.len() - 40]);
    assert!(e.contains("b.weight") && e.contains("data section"), "{e}");
}

#[test]
fn every_truncation_is_an_error() {
    let good = sample();
    for len in 0..good.len() - 30 {
        assert!(open_bytes(&good[..len]).is_err(), "a file cut at {len} bytes was accepted");
    }
}

mod fuzz {
    use proptest::prelude::*;

    use super::*;

    proptest! {
        #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

        /// Random byte flips and cuts of a valid file: an error or a file whose every tensor
        /// dequantizes, never a panic.
        #[test]
        fn mutated_files_never_panic(flips in proptest::collection::vec((0usize..4096, any::<u8>()), 1..8), cut in 0usize..4096) {
            let mut b = sample();
            for (at, v) in flips {
                let at = at % b.len();
                b[at] = v;
            }
            let cut = b.len() - cut % b.len().max(1);
            b.truncate(cut.max(1));
            if let Ok(f) = open_bytes(&b) {
                for t in &f.tensors {
                    let _ = f.dequantize(t);
                }
            }
        }

        /// Arbitrary bytes behind a valid magic and version.
        #[test]
        fn random_bodies_never_panic(body in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut b = MAGIC.to_le_bytes().to_vec();
            b.extend_from_slice(&3u32.to_le_bytes());
            b.extend_from_slice(&body);
            let _ = open_bytes(&b);
        }
    }
}
