//! Summary statistics of steerbench: means, seeded bootstrap intervals,
//! slopes, paired sign-flip tests and Holm's adjustment. The protocol and the
//! leaderboard both compute with these, so a number means the same in both.
#![warn(missing_docs)]

use rand::{Rng, SeedableRng};

/// Arithmetic mean (NaN for no values).
pub fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Sample standard deviation (0 for fewer than two values).
pub fn std_dev(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    (values.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (values.len() - 1) as f64).sqrt()
}

/// A mean with its percentile-bootstrap 95 % confidence interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    /// The mean.
    pub mean: f64,
    /// 2.5th percentile of the bootstrap means.
    pub low: f64,
    /// 97.5th percentile of the bootstrap means.
    pub high: f64,
    /// Number of values.
    pub n: usize,
}

/// The mean of `values` with a 95 % percentile-bootstrap interval from
/// `resamples` resamples drawn with `seed`.
pub fn bootstrap(values: &[f64], resamples: usize, seed: u64) -> Estimate {
    let n = values.len();
    let m = mean(values);
    if n < 2 || resamples == 0 {
        return Estimate {
            mean: m,
            low: m,
            high: m,
            n,
        };
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut means: Vec<f64> = (0..resamples)
        .map(|_| (0..n).map(|_| values[rng.random_range(0..n)]).sum::<f64>() / n as f64)
        .collect();
    means.sort_by(f64::total_cmp);
    let at = |q: f64| means[((q * (resamples - 1) as f64).round() as usize).min(resamples - 1)];
    Estimate {
        mean: m,
        low: at(0.025),
        high: at(0.975),
        n,
    }
}

/// Least-squares slope of `ys` against `xs` (0 when the `xs` do not vary).
pub fn slope(xs: &[f64], ys: &[f64]) -> f64 {
    let (mx, my) = (mean(xs), mean(ys));
    let sxx: f64 = xs.iter().map(|x| (x - mx) * (x - mx)).sum();
    if sxx == 0.0 {
        return 0.0;
    }
    xs.iter().zip(ys).map(|(x, y)| (x - mx) * (y - my)).sum::<f64>() / sxx
}

/// Two-sided p-value of the sign-flip permutation test that the mean of the
/// paired differences `diffs` is zero: each resample flips the sign of every
/// difference with probability ½ (seeded), and the p-value is
/// `(1 + #{|mean*| ≥ |mean|}) / (1 + resamples)`. With at most 16
/// differences every sign pattern is enumerated and the p-value is exact.
/// No differences, or all zero, give 1.
pub fn sign_flip_p(diffs: &[f64], resamples: usize, seed: u64) -> f64 {
    let n = diffs.len();
    let observed = diffs.iter().sum::<f64>().abs();
    if n == 0 || diffs.iter().all(|d| *d == 0.0) {
        return 1.0;
    }
    // Sums are compared with a relative tolerance so that a resample equal to
    // the observed sum up to rounding counts as at least as extreme.
    let scale: f64 = diffs.iter().map(|d| d.abs()).sum();
    let at_least = |s: f64| s.abs() >= observed - 1e-12 * scale;
    if n <= 16 {
        let patterns = 1u32 << n;
        let hits = (0..patterns)
            .filter(|bits| {
                let s: f64 = diffs
                    .iter()
                    .enumerate()
                    .map(|(i, d)| if bits >> i & 1 == 1 { -d } else { *d })
                    .sum();
                at_least(s)
            })
            .count();
        return hits as f64 / patterns as f64;
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5167_F11D);
    let mut hits = 0usize;
    for _ in 0..resamples {
        let s: f64 = diffs.iter().map(|d| if rng.random::<bool>() { -d } else { *d }).sum();
        if at_least(s) {
            hits += 1;
        }
    }
    (1 + hits) as f64 / (1 + resamples) as f64
}

/// Most perplexity, as a multiple of the unsteered model's, that a steering
/// configuration may cost and still count as fluent: the fluency-constrained
/// choice keeps validation perplexity within it, and the leaderboard's
/// verdict holds the test perplexity to it.
pub const FLUENCY_BOUND: f64 = 1.2;

/// Sign-flip resamples of every paired test (below 17 items the test is exact).
pub const PERMUTATIONS: usize = 10_000;

/// A paired comparison of two variants on the same items.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Paired {
    /// Mean per-item difference `a − b`, with its bootstrap interval.
    pub effect: Estimate,
    /// Two-sided sign-flip p-value that the mean difference is zero.
    pub p: f64,
    /// The smallest mean difference these items detect ([`min_detectable_effect`]).
    pub min_detectable: f64,
}

/// The paired comparison of `a` and `b` (same items, same order): the mean
/// difference with a `resamples`-draw bootstrap interval (items resampled,
/// so pairs stay together) and a [`PERMUTATIONS`]-draw sign-flip test, both
/// seeded with `seed`.
pub fn paired(a: &[f64], b: &[f64], resamples: usize, seed: u64) -> Paired {
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    Paired {
        effect: bootstrap(&d, resamples, seed),
        p: sign_flip_p(&d, PERMUTATIONS, seed),
        min_detectable: min_detectable_effect(&d),
    }
}

/// Holm's step-down adjustment of `p` (family-wise error over all of them):
/// the k-th smallest p-value is multiplied by `m − k + 1`, made monotone and
/// capped at 1. NaN p-values stay NaN and do not count towards `m`.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..p.len()).filter(|&i| !p[i].is_nan()).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]).then(a.cmp(&b)));
    let m = order.len();
    let mut out = vec![f64::NAN; p.len()];
    let mut running = 0.0f64;
    for (k, &i) in order.iter().enumerate() {
        running = running.max(((m - k) as f64 * p[i]).min(1.0));
        out[i] = running;
    }
    out
}

/// z-quantiles of a two-sided 5 % test and of 80 % power: an effect of
/// `(Z_ALPHA + Z_POWER)` standard errors is detected four times in five.
const Z_ALPHA: f64 = 1.959_964;
const Z_POWER: f64 = 0.841_621;

/// The smallest mean paired difference that a two-sided test at α = 0.05
/// detects with 80 % power, for items as spread as `diffs` (normal
/// approximation: `(z₀.₉₇₅ + z₀.₈) · sd / √n`). NaN for fewer than two values.
pub fn min_detectable_effect(diffs: &[f64]) -> f64 {
    if diffs.len() < 2 {
        return f64::NAN;
    }
    (Z_ALPHA + Z_POWER) * std_dev(diffs) / (diffs.len() as f64).sqrt()
}

/// The logistic function.
pub fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bootstrap_brackets_the_mean_and_is_seeded() {
        let values: Vec<f64> = (0..200).map(|i| ((i * 37) % 101) as f64 / 10.0).collect();
        let e = bootstrap(&values, 1000, 3);
        assert!(e.low < e.mean && e.mean < e.high);
        assert_eq!(e, bootstrap(&values, 1000, 3));
        // The interval has roughly the width the standard error predicts.
        let se = std_dev(&values) / (values.len() as f64).sqrt();
        assert!(((e.high - e.low) / (2.0 * 1.96 * se) - 1.0).abs() < 0.2);
        let one = bootstrap(&[2.0], 100, 0);
        assert_eq!((one.low, one.high), (2.0, 2.0));
    }

    #[test]
    fn detectable_effect_shrinks_with_the_square_root_of_the_items() {
        let d: Vec<f64> = (0..100).map(|i| if i % 2 == 0 { 1.0 } else { -1.0 }).collect();
        let sd = std_dev(&d);
        assert!((min_detectable_effect(&d) - 2.801_585 * sd / 10.0).abs() < 1e-9);
        let four: Vec<f64> = d.iter().cycle().take(400).copied().collect();
        let ratio = min_detectable_effect(&d) / min_detectable_effect(&four);
        assert!((ratio - 2.0).abs() < 0.01, "{ratio}");
        assert!(min_detectable_effect(&[1.0]).is_nan());
    }

    #[test]
    fn slope_of_a_line() {
        assert!((slope(&[-1.0, 0.0, 1.0, 2.0], &[1.0, 3.0, 5.0, 7.0]) - 2.0).abs() < 1e-12);
        assert_eq!(slope(&[1.0, 1.0], &[0.0, 5.0]), 0.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn sign_flip_is_exact_for_few_differences() {
        // Four equal positive differences: only the all-positive and the
        // all-negative patterns are as extreme, 2 of 16.
        assert_eq!(sign_flip_p(&[1.0, 1.0, 1.0, 1.0], 0, 0), 2.0 / 16.0);
        // One difference against zeros: every pattern is as extreme.
        assert_eq!(sign_flip_p(&[0.0, 0.0, 3.0], 0, 0), 1.0);
        assert_eq!(sign_flip_p(&[], 100, 0), 1.0);
        assert_eq!(sign_flip_p(&[0.0, 0.0], 100, 0), 1.0);
        // Balanced differences are not evidence of anything.
        assert!(sign_flip_p(&[1.0, -1.0, 2.0, -2.0], 0, 0) > 0.9);
    }

    #[test]
    fn sign_flip_sampled_matches_the_normal_approximation_and_is_seeded() {
        // 40 differences with mean 0.5 and sd about 1.2: t ≈ 2.6, two-sided p ≈ 0.01.
        let d: Vec<f64> = (0..40)
            .map(|i| 0.5 + 1.2 * ((i * 7919 % 97) as f64 / 48.0 - 1.0) * 1.7)
            .collect();
        let p = sign_flip_p(&d, 20000, 7);
        assert_eq!(p, sign_flip_p(&d, 20000, 7));
        let se = std_dev(&d) / (d.len() as f64).sqrt();
        let z = mean(&d) / se;
        // Two-sided normal tail by the complementary error function's series.
        let tail = 2.0 * normal_upper(z.abs());
        assert!((p - tail).abs() < 0.6 * tail + 0.005, "p {p}, normal {tail}, z {z}");
        // No effect: large p.
        let centred: Vec<f64> = d.iter().map(|x| x - mean(&d)).collect();
        assert!(sign_flip_p(&centred, 20000, 7) > 0.5);
    }

    fn normal_upper(z: f64) -> f64 {
        // Abramowitz–Stegun 26.2.17, |error| < 7.5e-8.
        let t = 1.0 / (1.0 + 0.231_641_9 * z);
        let poly =
            t * (0.319_381_530 + t * (-0.356_563_782 + t * (1.781_477_937 + t * (-1.821_255_978 + t * 1.330_274_429))));
        (-z * z / 2.0).exp() / (2.0 * std::f64::consts::PI).sqrt() * poly
    }

    #[test]
    fn holm_adjusts_step_down() {
        let adj = holm(&[0.01, 0.04, 0.03, f64::NAN, 0.5]);
        // m = 4: 0.01·4, 0.03·3, 0.04·2 → max(0.09, 0.08), 0.5·1.
        assert!((adj[0] - 0.04).abs() < 1e-12);
        assert!((adj[2] - 0.09).abs() < 1e-12);
        assert!((adj[1] - 0.09).abs() < 1e-12);
        assert!(adj[3].is_nan());
        assert!((adj[4] - 0.5).abs() < 1e-12);
        assert_eq!(holm(&[0.6, 0.7]), vec![1.0, 1.0]);
    }
}
