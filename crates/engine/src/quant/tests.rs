use super::*;

#[test]
fn ids_names_and_sizes_are_consistent() {
    for ty in GgmlType::ALL {
        assert_eq!(GgmlType::from_id(ty.id()), Some(ty));
        assert_eq!(ty.bytes_for(ty.block_len() * 3), Some(3 * ty.block_bytes()));
    }
    // Q8_1 (9), Q8_K (15) and the IQ types are not read.
    for id in [4, 5, 9, 15, 16, 23, 31, 99] {
        assert_eq!(GgmlType::from_id(id), None, "id {id}");
    }
    assert_eq!(GgmlType::Q4K.bytes_for(100), None);
}

#[test]
fn wrong_lengths_are_errors_not_panics() {
    assert!(dequantize(GgmlType::Q4_0, &[0u8; 18], 31).is_err(), "not whole blocks");
    assert!(dequantize(GgmlType::Q4_0, &[0u8; 17], 32).is_err(), "short bytes");
    assert!(dequantize(GgmlType::Q6K, &[0u8; 211], 256).is_err(), "long bytes");
    assert_eq!(dequantize(GgmlType::Q6K, &[], 0).unwrap(), Vec::<f32>::new());
}

#[test]
fn q8_0_quantization_round_trips_within_about_half_a_step() {
    let x: Vec<f32> = (0..64).map(|i| ((i as f32) * 0.37).sin() * 3.0).collect();
    let mut bytes = vec![0u8; 68];
    for (block, out) in x.chunks(32).zip(bytes.chunks_mut(34)) {
        quantize_q8_0(block, out);
    }
    let back = dequantize(GgmlType::Q8_0, &bytes, 64).unwrap();
    for (block, back) in x.chunks(32).zip(back.chunks(32)) {
        let step = block.iter().fold(0f32, |m, v| m.max(v.abs())) / 127.0;
        for (a, b) in block.iter().zip(back) {
            // Half a step, plus the scale's rounding to f16 (2^-11 relative) times up to 127.
            assert!((a - b).abs() <= step * (0.5 + 127.0 / 2048.0) + 1e-6, "{a} vs {b}");
        }
    }
}
