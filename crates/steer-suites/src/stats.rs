//! Summary statistics: means, seeded bootstrap confidence intervals, slopes.

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
    fn slope_of_a_line() {
        assert!((slope(&[-1.0, 0.0, 1.0, 2.0], &[1.0, 3.0, 5.0, 7.0]) - 2.0).abs() < 1e-12);
        assert_eq!(slope(&[1.0, 1.0], &[0.0, 5.0]), 0.0);
        assert!((sigmoid(0.0) - 0.5).abs() < 1e-12);
    }
}
