//! steer-methods: steering methods behind one trait, one file per method.
//!
//! A method is fitted on contrastive examples through the model's hooks and
//! returns a [`Steering`]: vectors per layer or an affine map, with the
//! positions where they apply and the hyperparameters that made them. Methods
//! do no file IO: a [`Steering`] converts to and from bytes, and callers decide
//! where those go.
//!
//! Most methods only turn paired activations into a direction; they implement
//! [`DirectionMethod`] and get activation collection and application from the
//! [`Directional`] adaptor. Methods that need more implement
//! [`SteeringMethod`] directly. [`registry`] lists them all.
#![warn(missing_docs)]

pub mod activations;
pub mod direction;
pub mod external;
pub mod linalg;
pub mod methods;
pub mod registry;
pub mod steering;

pub use direction::{DirectionMethod, Directional};
pub use external::External;
pub use registry::{find, registry};
pub use steering::{Steering, SteeringKind};

use std::collections::BTreeMap;

use steer_model::{Llama, ModelError};

/// Errors of fitting, applying or decoding a steering.
#[derive(Debug, thiserror::Error)]
pub enum MethodError {
    /// The model failed (bad layer, backend error, ...).
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The training data or hyperparameters cannot be used.
    #[error("{0}")]
    BadInput(String),
    /// A saved steering is malformed; the message names its source.
    #[error("{source_name}: {message}")]
    Artefact {
        /// Where the bytes came from (a file name, usually).
        source_name: String,
        /// What is wrong.
        message: String,
    },
}

/// The strength grid of every additive method, in fractions of the mean
/// residual-stream norm at the steered layer: the evaluation protocol
/// rescales an additive vector so that multiplier 1 adds a vector that long
/// (steer-suites' `strength` module), which makes strengths comparable across
/// methods, layers and models.
pub const RELATIVE_GRID: &[f32] = &[-1.0, -0.5, -0.25, -0.125, 0.0, 0.125, 0.25, 0.5, 1.0];

/// Shorthand for results of this crate.
pub type Result<T, E = MethodError> = std::result::Result<T, E>;

/// One documented hyperparameter of a method.
#[derive(Debug, Clone, PartialEq)]
pub struct HyperParam {
    /// Name used in [`FitConfig::params`] and in saved metadata.
    pub name: &'static str,
    /// Value used when the caller gives none.
    pub default: f64,
    /// What it controls, in one sentence.
    pub doc: &'static str,
}

/// What a method is and where it comes from.
#[derive(Debug, Clone, PartialEq)]
pub struct MethodInfo {
    /// Registry name (lowercase, used on the command line).
    pub name: &'static str,
    /// The paper the method follows (authors, year, title, arXiv id).
    pub paper: &'static str,
    /// One sentence on what the method computes.
    pub summary: &'static str,
    /// Every hyperparameter the method reads.
    pub hyperparameters: &'static [HyperParam],
    /// Default multiplier grid of a sweep: symmetric around 0, containing 0,
    /// scaled to what the method's artefact means at multiplier 1.
    /// Additive methods use [`RELATIVE_GRID`].
    pub multipliers: &'static [f32],
}

/// One contrastive training example: a prompt and two completions that differ
/// in the behaviour. Activations are read at the last token of `prompt ++
/// completion` (for A/B prompts, the answer letter). The prompt may be empty
/// (two free texts, as in ICV's demonstration pairs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContrastPair {
    /// Tokens shared by both sequences.
    pub prompt: Vec<u32>,
    /// The completion showing the behaviour.
    pub positive: Vec<u32>,
    /// The completion not showing it.
    pub negative: Vec<u32>,
}

impl ContrastPair {
    /// `prompt ++ positive`.
    pub fn positive_sequence(&self) -> Vec<u32> {
        [self.prompt.as_slice(), &self.positive].concat()
    }

    /// `prompt ++ negative`.
    pub fn negative_sequence(&self) -> Vec<u32> {
        [self.prompt.as_slice(), &self.negative].concat()
    }
}

/// What a method is fitted on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TrainingSet {
    /// The contrast pairs.
    pub pairs: Vec<ContrastPair>,
    /// Tokens that close one demonstration before the next begins, for methods
    /// that build few-shot prompts from the pairs (prompting, FV); for A/B chat
    /// items this is the rest of the answer and the end-of-turn marker.
    pub separator: Vec<u32>,
    /// Activations already read from the model for these pairs, if any
    /// (see [`activations::CachedActivations`]); fitting reads the model otherwise.
    pub activations: Option<std::sync::Arc<activations::CachedActivations>>,
}

impl TrainingSet {
    /// A training set of `pairs` with an empty separator.
    pub fn new(pairs: Vec<ContrastPair>) -> Self {
        TrainingSet {
            pairs,
            ..TrainingSet::default()
        }
    }

    /// Reads the pairs' activations at `layers` once, so that fits at those layers reuse them.
    pub fn cache_activations(&mut self, model: &Llama, layers: &[usize], batch_size: usize) -> Result<()> {
        self.activations = Some(std::sync::Arc::new(activations::CachedActivations::read(
            model, self, layers, batch_size,
        )?));
        Ok(())
    }

    /// Fails unless there is at least one pair and every sequence is non-empty.
    pub fn check(&self, method: &str) -> Result<()> {
        if self.pairs.is_empty() {
            return Err(MethodError::BadInput(format!("{method}: no training pairs")));
        }
        if let Some(i) = self
            .pairs
            .iter()
            .position(|p| p.prompt.len() + p.positive.len() == 0 || p.prompt.len() + p.negative.len() == 0)
        {
            return Err(MethodError::BadInput(format!(
                "{method}: training pair {i} has an empty sequence"
            )));
        }
        Ok(())
    }
}

/// Where and how to fit.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    /// Block whose output is read and steered (0-based).
    pub layer: usize,
    /// Seed for every random choice a method makes.
    pub seed: u64,
    /// Sequences per forward pass during activation collection.
    pub batch_size: usize,
    /// Hyperparameter overrides by name; the rest take their defaults.
    pub params: BTreeMap<String, f64>,
}

impl FitConfig {
    /// A configuration at `layer` with seed 0, batches of 16 and default hyperparameters.
    pub fn at_layer(layer: usize) -> Self {
        FitConfig {
            layer,
            seed: 0,
            batch_size: 16,
            params: BTreeMap::new(),
        }
    }

    /// The value of hyperparameter `name` for a method described by `info`.
    pub fn param(&self, info: &MethodInfo, name: &str) -> Result<f64> {
        if let Some(v) = self.params.get(name) {
            return Ok(*v);
        }
        info.hyperparameters
            .iter()
            .find(|h| h.name == name)
            .map(|h| h.default)
            .ok_or_else(|| MethodError::BadInput(format!("method '{}' has no hyperparameter '{name}'", info.name)))
    }

    /// Fails unless `layer` is a block of `model`.
    pub fn check_layer(&self, model: &Llama) -> Result<()> {
        let layers = model.config().num_hidden_layers;
        if self.layer >= layers {
            return Err(MethodError::BadInput(format!(
                "layer {} is out of range: the model has {layers} layers (0..{})",
                self.layer,
                layers - 1
            )));
        }
        Ok(())
    }

    /// Rejects overrides the method does not know, so a typo is not silently ignored.
    pub fn check_params(&self, info: &MethodInfo) -> Result<()> {
        for name in self.params.keys() {
            if !info.hyperparameters.iter().any(|h| h.name == name) {
                let known: Vec<&str> = info.hyperparameters.iter().map(|h| h.name).collect();
                return Err(MethodError::BadInput(format!(
                    "method '{}' has no hyperparameter '{name}' (it has: {})",
                    info.name,
                    if known.is_empty() {
                        "none".to_string()
                    } else {
                        known.join(", ")
                    }
                )));
            }
        }
        Ok(())
    }
}

/// A steering method: fitted on contrastive pairs through the model's hooks.
pub trait SteeringMethod: Send + Sync {
    /// Name, paper and hyperparameters.
    fn info(&self) -> MethodInfo;

    /// Fits the method and returns the steering it defines.
    fn fit(&self, model: &Llama, data: &TrainingSet, config: &FitConfig) -> Result<Steering>;

    /// Whether a fit at layer `L` gives a steering that acts at block `L` only,
    /// so that a layer sweep fits one steering per layer. A method whose
    /// steering spans blocks or lives in the prompt returns false, and a sweep
    /// fits it once.
    fn per_layer(&self) -> bool {
        true
    }

    /// Where the method's steering comes from beyond its code (a file and its
    /// sha256 for [`External`]); written to each unit's provenance sidecar.
    fn provenance(&self) -> BTreeMap<String, String> {
        BTreeMap::new()
    }

    /// Fits one steering per layer in `layers` (a layer sweep). The default
    /// fits each layer in turn; methods whose work does not depend on the
    /// layer override it to do that work once.
    fn fit_layers(
        &self,
        model: &Llama,
        data: &TrainingSet,
        layers: &[usize],
        config: &FitConfig,
    ) -> Result<Vec<Steering>> {
        layers
            .iter()
            .map(|&layer| {
                self.fit(
                    model,
                    data,
                    &FitConfig {
                        layer,
                        ..config.clone()
                    },
                )
            })
            .collect()
    }
}
