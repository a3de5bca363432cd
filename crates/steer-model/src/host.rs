//! `HostTensor`: a plain row-major f32 array in main memory.
//!
//! Everything that leaves the model crate (captured activations, logits) is a
//! `HostTensor`, so the crates above it never name a burn type.

use serde::{Deserialize, Serialize};

/// A dense, row-major f32 tensor in main memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HostTensor {
    /// Extent of each axis, outermost first.
    pub shape: Vec<usize>,
    /// The values, `shape.iter().product()` of them.
    pub data: Vec<f32>,
}

impl HostTensor {
    /// Wraps `data` with `shape`; returns `None` when the sizes disagree.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Option<Self> {
        (shape.iter().product::<usize>() == data.len()).then_some(HostTensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        HostTensor {
            shape,
            data: vec![0.0; n],
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// Whether the tensor holds no element.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The contiguous slice at `index` along the leading axes (e.g. `row(&[b, t])`
    /// of a `[B, T, D]` tensor is the `D` values at batch row `b`, position `t`).
    ///
    /// # Panics
    /// When `index` has more entries than the tensor has axes or is out of range.
    pub fn row(&self, index: &[usize]) -> &[f32] {
        assert!(index.len() <= self.shape.len(), "index has too many axes");
        let mut offset = 0;
        for (axis, &i) in index.iter().enumerate() {
            assert!(i < self.shape[axis], "index {i} out of range for axis {axis}");
            offset = offset * self.shape[axis] + i;
        }
        let inner: usize = self.shape[index.len()..].iter().product();
        &self.data[offset * inner..(offset + 1) * inner]
    }

    /// Largest absolute value (0 for an empty tensor).
    pub fn max_abs(&self) -> f32 {
        self.data.iter().fold(0.0f32, |m, v| m.max(v.abs()))
    }
}
