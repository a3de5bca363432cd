//! One file per method.

pub mod caa;
pub mod pca;
pub mod random;
