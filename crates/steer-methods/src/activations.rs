//! Activation collection for fitting: the residual stream at the last token.

use steer_model::{Capture, ForwardRequest, Llama, LogitsMode, Site};

use crate::{MethodError, Result};

/// The residual stream after block `layer` at the last token of every
/// sequence, one `d_model` row per sequence, computed `batch_size` sequences
/// at a time.
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
    let mut rows = Vec::with_capacity(sequences.len());
    for chunk in sequences.chunks(batch_size.max(1)) {
        let out = model.forward(chunk, &req)?;
        let resid = out
            .capture(capture)
            .ok_or_else(|| MethodError::BadInput("the model returned no activations".into()))?;
        for b in 0..chunk.len() {
            rows.push(resid.row(&[b, 0]).to_vec());
        }
    }
    Ok(rows)
}
