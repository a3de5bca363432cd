//! Summary statistics (the `steer-stats` crate, shared with the leaderboard).

pub use steer_stats::*;
