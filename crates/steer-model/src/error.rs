//! The crate's error type: every message is one line that names the file (or
//! the argument) and the problem.

use std::path::{Path, PathBuf};

use crate::gguf::GgufError;
use crate::tokenizer::TokenizerError;

/// Everything that can go wrong while loading or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// A GGUF file could not be read.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// A tokenizer could not be built or used.
    #[error(transparent)]
    Tokenizer(#[from] TokenizerError),
    /// A file could not be opened or read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        source: std::io::Error,
    },
    /// A file was read but its content is wrong.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A model specification could not be resolved to files.
    #[error("{0}")]
    NotFound(String),
    /// A request does not fit the model (layer out of range, vector of the wrong length, ...).
    #[error("{0}")]
    BadRequest(String),
    /// The tensor backend failed (device lost, readback failed, ...).
    #[error("backend error: {0}")]
    Backend(String),
}

impl ModelError {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        ModelError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A content error in `path`.
    pub fn invalid(path: &Path, message: impl Into<String>) -> Self {
        ModelError::Invalid {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// A request that does not fit the model.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ModelError::BadRequest(message.into())
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = ModelError> = std::result::Result<T, E>;
