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

/// A smooth signal plus a few outliers, with positive and negative blocks.
fn test_weights(n: usize) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = ((i as f32) * 0.731).sin() * 0.05 + ((i as f32) * 0.013).cos() * 0.02;
            if i % 97 == 0 {
                x * 8.0
            } else {
                x
            }
        })
        .collect()
}

/// Root-mean-square error of `back` against `x`, relative to x's RMS.
fn rel_rms(x: &[f32], back: &[f32]) -> f64 {
    let e: f64 = x.iter().zip(back).map(|(a, b)| ((a - b) as f64).powi(2)).sum();
    let s: f64 = x.iter().map(|a| (*a as f64).powi(2)).sum();
    (e / s).sqrt()
}

#[test]
fn written_types_round_trip_through_their_dequantizers_with_the_expected_error() {
    let x = test_weights(4 * 256);
    // Relative RMS error bounds by bits per weight, on weights with outliers (measured:
    // F16 0.02%, Q8_0 0.85%, Q6_K 2.4%, Q5_0 6.8%, Q4_K 8.0%).
    for (ty, bound) in [
        (GgmlType::F32, 0.0),
        (GgmlType::F16, 1e-3),
        (GgmlType::Q8_0, 0.01),
        (GgmlType::Q6K, 0.03),
        (GgmlType::Q5_0, 0.08),
        (GgmlType::Q4K, 0.1),
    ] {
        let bytes = quantize(ty, &x).unwrap();
        assert_eq!(bytes.len(), ty.bytes_for(x.len()).unwrap(), "{}", ty.name());
        let back = dequantize(ty, &bytes, x.len()).unwrap();
        let err = rel_rms(&x, &back);
        assert!(err <= bound, "{}: relative RMS error {err:.4} over {bound}", ty.name());
        // Quantizing what came back changes nothing more than rounding noise.
        let again = dequantize(ty, &quantize(ty, &back).unwrap(), x.len()).unwrap();
        assert!(rel_rms(&back, &again) <= bound, "{}: not stable under re-quantization", ty.name());
    }
}

#[test]
fn more_bits_give_less_error_and_zeros_stay_zero() {
    let x = test_weights(2 * 256);
    let err = |ty| rel_rms(&x, &dequantize(ty, &quantize(ty, &x).unwrap(), x.len()).unwrap());
    assert!(err(GgmlType::Q8_0) < err(GgmlType::Q6K));
    assert!(err(GgmlType::Q6K) < err(GgmlType::Q5_0));
    assert!(err(GgmlType::Q6K) < err(GgmlType::Q4K));
    for ty in [GgmlType::Q5_0, GgmlType::Q4K, GgmlType::Q6K, GgmlType::Q8_0] {
        let zeros = vec![0f32; 256];
        let back = dequantize(ty, &quantize(ty, &zeros).unwrap(), 256).unwrap();
        assert!(back.iter().all(|v| *v == 0.0), "{}: zeros did not stay zero", ty.name());
        // A constant block (all positive) comes back close: Q4_K's minimum handles the offset.
        let c = vec![0.25f32; 256];
        let back = dequantize(ty, &quantize(ty, &c).unwrap(), 256).unwrap();
        assert!(back.iter().all(|v| (v - 0.25).abs() < 0.01), "{}: constant block off", ty.name());
    }
}

#[test]
fn quantize_rejects_partial_blocks_and_unwritten_types() {
    assert!(quantize(GgmlType::Q4K, &[0.0; 255]).is_err());
    assert!(quantize(GgmlType::Q5_0, &[0.0; 33]).is_err());
    let err = quantize(GgmlType::Q2K, &[0.0; 256]).unwrap_err().to_string();
    assert!(err.contains("Q2_K"), "{err}");
}
