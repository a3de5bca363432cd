//! Reading and writing activations inside the forward pass.
//!
//! A forward call takes a list of [`Capture`]s (what to read) and [`Edit`]s
//! (what to change). Positions are counted in each row's own, unpadded token
//! sequence, so the same request means the same thing for a batch and for the
//! rows one by one.

use serde::{Deserialize, Serialize};

/// A place in the network where activations can be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Site {
    /// The residual stream entering block `L` (`[B, T, d_model]`).
    ResidPre(usize),
    /// The residual stream leaving block `L`, after any edit at `L` (`[B, T, d_model]`).
    ResidPost(usize),
    /// Attention output of block `L` after `o_proj`, before the residual add (`[B, T, d_model]`).
    AttnOut(usize),
    /// Every head's attention output of block `L` before `o_proj`, after any head patch
    /// (`[B, T, n_heads, head_dim]`).
    HeadOut(usize),
    /// MLP output of block `L`, before the residual add (`[B, T, d_model]`).
    MlpOut(usize),
}

impl Site {
    /// The block this site belongs to.
    pub fn layer(self) -> usize {
        match self {
            Site::ResidPre(l) | Site::ResidPost(l) | Site::AttnOut(l) | Site::HeadOut(l) | Site::MlpOut(l) => l,
        }
    }
}

/// Which token positions an edit touches. Positions are 0-based indices into
/// a row's unpadded sequence (prompt followed by generated tokens).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Positions {
    /// Every position.
    All,
    /// Every position `p` with `p >= start`.
    From(usize),
    /// Only the last token of the prompt.
    LastPrompt,
    /// The last prompt token and every position after it (every token whose
    /// output is a generated token).
    PromptEndOnward,
    /// Every generated token fed back into the model (positions `>= prompt_len`).
    Generated,
    /// Exactly these positions.
    At(Vec<usize>),
}

impl Positions {
    /// Whether position `pos` of a row whose prompt has `prompt_len` tokens is selected.
    pub fn contains(&self, pos: usize, prompt_len: usize) -> bool {
        match self {
            Positions::All => true,
            Positions::From(start) => pos >= *start,
            Positions::LastPrompt => pos + 1 == prompt_len,
            Positions::PromptEndOnward => pos + 1 >= prompt_len,
            Positions::Generated => pos >= prompt_len,
            Positions::At(list) => list.contains(&pos),
        }
    }
}

/// Which positions a capture keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum CapturePositions {
    /// Every position of the (left-padded) batch: `[B, T, ...]`; padded slots hold
    /// whatever the model computed there and should be ignored (see `ForwardOutput::padded_index`).
    All,
    /// Only the last position of every row: `[B, 1, ...]`.
    Last,
}

/// A request to read the activations at `site`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    /// Where to read.
    pub site: Site,
    /// Which positions to keep.
    pub positions: CapturePositions,
}

impl Capture {
    /// Reads every position at `site`.
    pub fn all(site: Site) -> Self {
        Capture {
            site,
            positions: CapturePositions::All,
        }
    }

    /// Reads the last position of every row at `site`.
    pub fn last(site: Site) -> Self {
        Capture {
            site,
            positions: CapturePositions::Last,
        }
    }
}

/// A change to the activations during the forward pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Edit {
    /// `h ← h + m_b · v` on the residual stream leaving block `layer`, at `positions`,
    /// where `m_b` is the multiplier of batch row `b`.
    AddVector {
        /// Block whose output is edited.
        layer: usize,
        /// The vector `v` (`d_model` values).
        vector: Vec<f32>,
        /// Where to add it.
        positions: Positions,
        /// One multiplier per batch row; empty means 1 for every row.
        multipliers: Vec<f32>,
    },
    /// `h ← (h + m_b · v) · ‖h‖ / ‖h + m_b · v‖` on the residual stream leaving
    /// block `layer`: the vector is added and each position keeps its norm.
    AddKeepNorm {
        /// Block whose output is edited.
        layer: usize,
        /// The vector `v` (`d_model` values).
        vector: Vec<f32>,
        /// Where to add it.
        positions: Positions,
        /// One multiplier per batch row; empty means 1 for every row.
        multipliers: Vec<f32>,
    },
    /// `h ← h + m_b · ((A h + b) − h)` on the residual stream leaving block `layer`:
    /// multiplier 1 applies the affine map, 0 leaves `h` unchanged.
    Affine {
        /// Block whose output is edited.
        layer: usize,
        /// `A`, `d_model × d_model`, row-major (`(A h)_i = Σ_j A[i][j] h_j`).
        matrix: Vec<f32>,
        /// `b` (`d_model` values).
        bias: Vec<f32>,
        /// Where to apply it.
        positions: Positions,
        /// One multiplier per batch row; empty means 1 for every row.
        multipliers: Vec<f32>,
    },
    /// Moves one head's output (before `o_proj`) at `positions` to `value`:
    /// `o ← o + m_b · (value − o)`, so multiplier 1 replaces it and 0 leaves it.
    PatchHead {
        /// Block of the head.
        layer: usize,
        /// Head index.
        head: usize,
        /// The replacement (`head_dim` values).
        value: Vec<f32>,
        /// Where to replace.
        positions: Positions,
        /// One multiplier per batch row; empty means 1 for every row.
        multipliers: Vec<f32>,
    },
}

impl Edit {
    /// The block the edit acts on.
    pub fn layer(&self) -> usize {
        match self {
            Edit::AddVector { layer, .. }
            | Edit::AddKeepNorm { layer, .. }
            | Edit::Affine { layer, .. }
            | Edit::PatchHead { layer, .. } => *layer,
        }
    }

    /// The positions the edit acts on.
    pub fn positions(&self) -> &Positions {
        match self {
            Edit::AddVector { positions, .. }
            | Edit::AddKeepNorm { positions, .. }
            | Edit::Affine { positions, .. }
            | Edit::PatchHead { positions, .. } => positions,
        }
    }

    /// Per-row multipliers (empty for "1 everywhere").
    pub fn multipliers(&self) -> &[f32] {
        match self {
            Edit::AddVector { multipliers, .. }
            | Edit::AddKeepNorm { multipliers, .. }
            | Edit::Affine { multipliers, .. }
            | Edit::PatchHead { multipliers, .. } => multipliers,
        }
    }
}

/// How much of the output logits to return.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogitsMode {
    /// No logits (activation collection only); the final norm and head are skipped.
    None,
    /// The logits at the last position of every row: `[B, vocab]`.
    Last,
    /// The logits at every position: `[B, T, vocab]` (left-padded).
    All,
}
