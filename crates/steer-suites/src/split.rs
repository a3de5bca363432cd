//! Deterministic train / validation splits.

use rand::SeedableRng;
use rand::seq::SliceRandom;

/// Splits `0..n` into `(train, validation)` indices: a shuffle seeded with
/// `seed`, the first `round(n · fraction)` for validation (at least one when
/// `fraction > 0` and `n > 1`), the rest for training. Each list is sorted.
pub fn train_validation(n: usize, fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let mut k = (n as f64 * fraction).round() as usize;
    if fraction > 0.0 && n > 1 {
        k = k.clamp(1, n - 1);
    }
    let mut val = order[..k].to_vec();
    let mut train = order[k..].to_vec();
    val.sort_unstable();
    train.sort_unstable();
    (train, val)
}

/// Splits `0..n` into `(train, validation, test)`: a shuffle seeded with
/// `seed`, the first `round(n · test_fraction)` for test, the next
/// `round(n · validation_fraction)` for validation, the rest for training.
/// Each list is sorted.
pub fn three_way(n: usize, validation_fraction: f64, test_fraction: f64, seed: u64) -> [Vec<usize>; 3] {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
    let k_test = ((n as f64 * test_fraction).round() as usize).min(n);
    let k_val = ((n as f64 * validation_fraction).round() as usize).min(n - k_test);
    let mut test = order[..k_test].to_vec();
    let mut val = order[k_test..k_test + k_val].to_vec();
    let mut train = order[k_test + k_val..].to_vec();
    for v in [&mut train, &mut val, &mut test] {
        v.sort_unstable();
    }
    [train, val, test]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_way_splits_partition_the_items() {
        let [t, v, s] = three_way(197, 0.2, 0.3, 1);
        assert_eq!((t.len(), v.len(), s.len()), (99, 39, 59));
        let mut all: Vec<usize> = t.iter().chain(&v).chain(&s).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..197).collect::<Vec<_>>());
        assert_eq!(three_way(197, 0.2, 0.3, 1), [t, v, s]);
    }

    #[test]
    fn splits_are_disjoint_complete_and_seeded() {
        let (t, v) = train_validation(100, 0.2, 1);
        assert_eq!((t.len(), v.len()), (80, 20));
        let mut all: Vec<usize> = t.iter().chain(&v).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..100).collect::<Vec<_>>());
        assert_eq!(train_validation(100, 0.2, 1), (t.clone(), v.clone()));
        assert_ne!(train_validation(100, 0.2, 2).1, v);
        assert_eq!(train_validation(3, 0.01, 0).1.len(), 1);
        assert_eq!(train_validation(5, 0.0, 0).1.len(), 0);
    }
}
