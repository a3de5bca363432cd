//! steer-model: pretrained chat models in burn with residual-stream hooks.
//!
//! Load a model with [`LoadedModel::load`] (`"default"`, a GGUF file, a Hugging
//! Face directory or `org/name` from the local Hugging Face cache), then run
//! [`Llama::forward`] with [`Capture`]s and [`Edit`]s, or [`Llama::generate`].
//! This is the only crate of the workspace that names burn types; activations
//! leave it as [`HostTensor`]s.
#![warn(missing_docs)]

pub mod allocator;
pub mod backend;
pub mod config;
pub mod error;
pub mod generate;
pub mod gguf;
pub mod hooks;
pub mod host;
mod kernels;
pub mod llama;
pub mod model;
pub mod tokenizer;
pub mod weights;

pub use backend::Backend;
pub use config::{Architecture, ModelConfig};
pub use error::{ModelError, Result};
pub use generate::{GenerateOptions, Sampling};
pub use hooks::{Capture, CapturePositions, Edit, LogitsMode, Positions, Site};
pub use host::HostTensor;
pub use llama::{ForwardOutput, ForwardRequest, Llama, SharedPrefix};
pub use model::{LoadedModel, ModelFormat};
pub use tokenizer::{ChatMessage, ChatTokenizer};
pub use weights::WeightSource;
