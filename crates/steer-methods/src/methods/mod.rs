//! One file per method.

pub mod actadd;
pub mod caa;
pub mod pca;
pub mod probe;
pub mod random;
