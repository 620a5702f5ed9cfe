//! Dequantization of every ggml type equals gguf-py's bit for bit, on seeded random blocks
//! and on real blocks of SmolLM2-135M-Instruct (Q4_1) and Gemma 3 270M (Q4_K_M). The fixture
//! is written by scripts/make_quant_fixture.py, which also records gguf-py's Q8_0 and Q5_0
//! quantization of seeded weights: ours writes the same bytes.

use std::collections::BTreeSet;

use tunesmith_engine::quant::{dequantize, quantize, GgmlType};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex")).collect()
}

#[test]
fn every_type_matches_gguf_py_bit_for_bit() {
    let text = include_str!("fixtures/quant_gguf_py.json");
    let fixture: serde_json::Value = serde_json::from_str(text).unwrap();
    let mut synthetic = BTreeSet::new();
    let mut real = BTreeSet::new();
    for case in fixture["cases"].as_array().unwrap() {
        let name = case["type"].as_str().unwrap();
        let ty = GgmlType::ALL.into_iter().find(|t| t.name() == name).unwrap_or_else(|| panic!("type {name}"));
        let n = case["n"].as_u64().unwrap() as usize;
        let bytes = hex(case["bytes"].as_str().unwrap());
        let want: Vec<u32> = case["bits"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        let got = dequantize(ty, &bytes, n).unwrap();
        let source = case["source"].as_str().unwrap();
        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
            assert_eq!(g.to_bits(), *w, "{source}: weight {i}: {g} vs {}", f32::from_bits(*w));
        }
        assert_eq!(got.len(), want.len());
        if source.starts_with("synthetic") {
            synthetic.insert(ty.name());
        } else {
            real.insert(ty.name());
        }
    }
    assert_eq!(synthetic.len(), GgmlType::ALL.len(), "every type has synthetic blocks: {synthetic:?}");
    for t in ["Q4_1", "Q8_0", "Q5_0", "Q4_K", "Q6_K", "F32"] {
        assert!(real.contains(t), "real blocks of {t} from the models: {real:?}");
    }
}

#[test]
fn q8_0_and_q5_0_quantization_match_gguf_py_byte_for_byte() {
    let fixture: serde_json::Value = serde_json::from_str(include_str!("fixtures/quant_gguf_py.json")).unwrap();
    let cases = fixture["quantize"].as_array().unwrap();
    assert_eq!(cases.len(), 2);
    for case in cases {
        let name = case["type"].as_str().unwrap();
        let ty = GgmlType::ALL.into_iter().find(|t| t.name() == name).unwrap();
        let x: Vec<f32> =
            case["bits"].as_array().unwrap().iter().map(|v| f32::from_bits(v.as_u64().unwrap() as u32)).collect();
        let want = hex(case["bytes"].as_str().unwrap());
        let got = quantize(ty, &x).unwrap();
        assert_eq!(got.len(), want.len(), "{name}");
        let (bl, bb) = (ty.block_len(), ty.block_bytes());
        for (i, (g, w)) in got.chunks(bb).zip(want.chunks(bb)).enumerate() {
            assert_eq!(g, w, "{name}: block {i} (weights {}..{})", i * bl, (i + 1) * bl);
        }
    }
}
