//! Activation collection for fitting: the residual stream at the last token.

use steer_model::{Capture, ForwardRequest, Llama, LogitsMode, Site};

use crate::{MethodError, Result};

/// The residual stream after block `layer` at the last token of every
/// sequence, one `d_model` row per sequence in input order, computed
/// `batch_size` sequences at a time. Sequences are batched in order of length
/// so that little work goes into padding.
pub fn last_token_resid(
    model: &Llama,
    sequences: &[Vec<u32>],
    layer: usize,
    batch_size: usize,
) -> Result<Vec<Vec<f32>>> {
    if sequences.is_empty() {
        return Err(MethodError::BadInput("no sequences to read activations from".into()));
    }
    let capture = Capture::last(Site::ResidPost(layer));
    let req = ForwardRequest {
        captures: &[capture],
        edits: &[],
        logits: LogitsMode::None,
    };
    let mut order: Vec<usize> = (0..sequences.len()).collect();
    order.sort_by_key(|&i| sequences[i].len());
    let mut rows: Vec<Vec<f32>> = vec![Vec::new(); sequences.len()];
    for chunk in order.chunks(batch_size.max(1)) {
        let batch: Vec<Vec<u32>> = chunk.iter().map(|&i| sequences[i].clone()).collect();
        let out = model.forward(&batch, &req)?;
        let resid = out
            .capture(capture)
            .ok_or_else(|| MethodError::BadInput("the model returned no activations".into()))?;
        for (b, &i) in chunk.iter().enumerate() {
            rows[i] = resid.row(&[b, 0]).to_vec();
        }
    }
    Ok(rows)
}
