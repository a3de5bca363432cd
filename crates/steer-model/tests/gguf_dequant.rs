//! Checks `gguf::dequantize` against reference values made independently with the Python
//! `gguf` package (`gguf.quants.dequantize`), stored in `fixtures/dequant_reference.safetensors`
//! as `<TYPE>.raw` (the quantised bytes, u8) and `<TYPE>.values` (the expected f32 values).

use std::collections::BTreeSet;
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use steer_model::gguf::{GgmlType, dequantize};

/// Every type the fixture must cover.
const TYPES: [&str; 12] = [
    "F16", "BF16", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K",
];

#[test]
fn dequantisation_matches_the_python_reference() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dequant_reference.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    let file = SafeTensors::deserialize(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()));

    let mut seen = BTreeSet::new();
    for name in file.names() {
        let Some(type_name) = name.strip_suffix(".raw") else {
            continue;
        };
        let ty = GgmlType::from_name(type_name).unwrap_or_else(|| panic!("unknown type in tensor {name}"));
        let raw = file.tensor(name).unwrap();
        assert_eq!(raw.dtype(), Dtype::U8, "{name}");
        let values = file
            .tensor(&format!("{type_name}.values"))
            .unwrap_or_else(|e| panic!("{type_name}.values: {e}"));
        assert_eq!(values.dtype(), Dtype::F32, "{type_name}.values");
        let expected: Vec<f32> = values
            .data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect();

        let got = dequantize(ty, raw.data(), expected.len()).unwrap_or_else(|e| panic!("{type_name}: {e}"));
        assert_eq!(got.len(), expected.len());
        let mut worst = (0.0f32, 0usize);
        for (i, (&g, &e)) in got.iter().zip(&expected).enumerate() {
            if g.is_nan() && e.is_nan() {
                continue;
            }
            // A NaN on one side only counts as an infinite error.
            let err = (g - e).abs() / e.abs().max(1.0);
            let err = if err.is_nan() { f32::INFINITY } else { err };
            if err > worst.0 {
                worst = (err, i);
            }
        }
        let (err, i) = worst;
        assert!(
            err <= 1e-6,
            "{type_name}: element {i} is {} but the reference has {} (relative error {err})",
            got[i],
            expected[i]
        );
        seen.insert(type_name.to_owned());
    }
    let missing: Vec<_> = TYPES.iter().filter(|t| !seen.contains(**t)).collect();
    assert!(missing.is_empty(), "the fixture lacks {missing:?}");
}
