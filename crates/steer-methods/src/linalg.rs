//! The small dense linear algebra the affine methods need, in f64: means,
//! covariances, products and functions of symmetric matrices through a
//! cyclic Jacobi eigendecomposition. Matrices are row-major `n × n` slices.

use crate::{MethodError, Result};

/// Mean of the rows.
pub fn mean(rows: &[Vec<f32>]) -> Vec<f64> {
    let d = rows.first().map_or(0, Vec::len);
    let mut m = vec![0.0f64; d];
    for r in rows {
        for (acc, x) in m.iter_mut().zip(r) {
            *acc += *x as f64;
        }
    }
    let n = rows.len().max(1) as f64;
    m.iter_mut().for_each(|v| *v /= n);
    m
}

/// Covariance of the rows around `mean` (divided by the number of rows).
pub fn covariance(rows: &[Vec<f32>], mean: &[f64]) -> Vec<f64> {
    let d = mean.len();
    let mut c = vec![0.0f64; d * d];
    let mut centred = vec![0.0f64; d];
    for r in rows {
        for j in 0..d {
            centred[j] = r[j] as f64 - mean[j];
        }
        for i in 0..d {
            let ci = centred[i];
            if ci == 0.0 {
                continue;
            }
            let row = &mut c[i * d..(i + 1) * d];
            for (out, cj) in row.iter_mut().zip(&centred) {
                *out += ci * cj;
            }
        }
    }
    let n = rows.len().max(1) as f64;
    c.iter_mut().for_each(|v| *v /= n);
    c
}

/// `(1 − α) Σ + α (tr Σ / d) I`: shrinks a covariance towards a multiple of the
/// identity so that it can be inverted when there are fewer samples than dimensions.
pub fn shrink(cov: &mut [f64], d: usize, alpha: f64) {
    let trace: f64 = (0..d).map(|i| cov[i * d + i]).sum();
    let target = trace / d as f64;
    cov.iter_mut().for_each(|v| *v *= 1.0 - alpha);
    for i in 0..d {
        cov[i * d + i] += alpha * target;
    }
}

/// `A B` for `n × n` matrices.
pub fn matmul(a: &[f64], b: &[f64], n: usize) -> Vec<f64> {
    let mut c = vec![0.0f64; n * n];
    for i in 0..n {
        let out = &mut c[i * n..(i + 1) * n];
        for k in 0..n {
            let aik = a[i * n + k];
            if aik == 0.0 {
                continue;
            }
            for (o, bkj) in out.iter_mut().zip(&b[k * n..(k + 1) * n]) {
                *o += aik * bkj;
            }
        }
    }
    c
}

/// `A x` for an `n × n` matrix.
pub fn matvec(a: &[f64], x: &[f64]) -> Vec<f64> {
    let n = x.len();
    (0..n)
        .map(|i| a[i * n..(i + 1) * n].iter().zip(x).map(|(p, q)| p * q).sum())
        .collect()
}

/// Eigenvalues and eigenvectors of a symmetric matrix.
#[derive(Debug, Clone)]
pub struct SymEigen {
    /// Eigenvalues, in no particular order.
    pub values: Vec<f64>,
    /// Eigenvectors as columns of a row-major `n × n` matrix: `vectors[k * n + j]`
    /// is component `k` of eigenvector `j`.
    pub vectors: Vec<f64>,
}

impl SymEigen {
    /// Dimension.
    pub fn n(&self) -> usize {
        self.values.len()
    }

    /// `V f(Λ) Vᵀ`: the matrix function `f` of the decomposed matrix.
    pub fn apply(&self, f: impl Fn(f64) -> f64) -> Vec<f64> {
        let n = self.n();
        let fv: Vec<f64> = self.values.iter().map(|&v| f(v)).collect();
        // Scaled columns V f(Λ), then the product with Vᵀ.
        let mut scaled = self.vectors.clone();
        for k in 0..n {
            for j in 0..n {
                scaled[k * n + j] *= fv[j];
            }
        }
        let mut out = vec![0.0f64; n * n];
        for i in 0..n {
            for k in 0..n {
                let mut s = 0.0;
                for j in 0..n {
                    s += scaled[i * n + j] * self.vectors[k * n + j];
                }
                out[i * n + k] = s;
            }
        }
        out
    }

    /// The eigenvector with the largest eigenvalue.
    pub fn top(&self) -> Vec<f64> {
        let n = self.n();
        let j = (0..n)
            .max_by(|&a, &b| self.values[a].total_cmp(&self.values[b]))
            .unwrap_or(0);
        (0..n).map(|k| self.vectors[k * n + j]).collect()
    }
}

/// Decomposes the symmetric `n × n` matrix `a` with cyclic Jacobi rotations.
pub fn sym_eigen(a: &[f64], n: usize) -> Result<SymEigen> {
    if a.len() != n * n || a.iter().any(|v| !v.is_finite()) {
        return Err(MethodError::BadInput(format!(
            "eigendecomposition needs a finite {n}×{n} matrix"
        )));
    }
    let mut a = a.to_vec();
    // Symmetrise, so rounding in the caller cannot stall convergence.
    for i in 0..n {
        for j in 0..i {
            let m = 0.5 * (a[i * n + j] + a[j * n + i]);
            a[i * n + j] = m;
            a[j * n + i] = m;
        }
    }
    let mut v = vec![0.0f64; n * n];
    for i in 0..n {
        v[i * n + i] = 1.0;
    }
    let total: f64 = a.iter().map(|x| x * x).sum::<f64>().max(f64::MIN_POSITIVE);
    for _sweep in 0..100 {
        let off: f64 = (0..n)
            .flat_map(|i| (0..n).filter(move |&j| j != i).map(move |j| (i, j)))
            .map(|(i, j)| a[i * n + j] * a[i * n + j])
            .sum();
        if off <= 1e-24 * total {
            let values = (0..n).map(|i| a[i * n + i]).collect();
            return Ok(SymEigen { values, vectors: v });
        }
        for p in 0..n {
            for q in p + 1..n {
                let apq = a[p * n + q];
                if apq.abs() <= 1e-300 {
                    continue;
                }
                let theta = (a[q * n + q] - a[p * n + p]) / (2.0 * apq);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                // Columns p and q of A J, then rows p and q of Jᵀ (A J).
                for k in 0..n {
                    let akp = a[k * n + p];
                    let akq = a[k * n + q];
                    a[k * n + p] = c * akp - s * akq;
                    a[k * n + q] = s * akp + c * akq;
                }
                for k in 0..n {
                    let apk = a[p * n + k];
                    let aqk = a[q * n + k];
                    a[p * n + k] = c * apk - s * aqk;
                    a[q * n + k] = s * apk + c * aqk;
                }
                for k in 0..n {
                    let vkp = v[k * n + p];
                    let vkq = v[k * n + q];
                    v[k * n + p] = c * vkp - s * vkq;
                    v[k * n + q] = s * vkp + c * vkq;
                }
            }
        }
    }
    Err(MethodError::BadInput(format!(
        "eigendecomposition of a {n}×{n} matrix did not converge"
    )))
}

/// Square root and inverse square root of a symmetric positive semi-definite
/// matrix; eigenvalues below `1e-10` of the largest count as zero (pseudo-inverse).
pub fn sqrt_and_inv_sqrt(a: &[f64], n: usize) -> Result<(Vec<f64>, Vec<f64>)> {
    let e = sym_eigen(a, n)?;
    let largest = e.values.iter().cloned().fold(0.0f64, f64::max);
    let floor = largest * 1e-10;
    let sqrt = e.apply(|x| if x > floor { x.sqrt() } else { 0.0 });
    let inv_sqrt = e.apply(|x| if x > floor { 1.0 / x.sqrt() } else { 0.0 });
    Ok((sqrt, inv_sqrt))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn random_symmetric(n: usize, seed: u64) -> Vec<f64> {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
        };
        let b: Vec<f64> = (0..n * n).map(|_| next()).collect();
        // BᵀB is symmetric positive semi-definite.
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                a[i * n + j] = (0..n).map(|k| b[k * n + i] * b[k * n + j]).sum();
            }
        }
        a
    }

    #[test]
    fn eigendecomposition_reconstructs_the_matrix() {
        for (n, seed) in [(1, 1), (2, 2), (7, 3), (40, 4)] {
            let a = random_symmetric(n, seed);
            let e = sym_eigen(&a, n).unwrap();
            let back = e.apply(|x| x);
            let err = a.iter().zip(&back).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
            assert!(err < 1e-9, "n={n}: reconstruction error {err}");
            // Eigenvectors are orthonormal.
            let vtv = {
                let mut m = vec![0.0; n * n];
                for i in 0..n {
                    for j in 0..n {
                        m[i * n + j] = (0..n).map(|k| e.vectors[k * n + i] * e.vectors[k * n + j]).sum();
                    }
                }
                m
            };
            for i in 0..n {
                for j in 0..n {
                    let want = if i == j { 1.0 } else { 0.0 };
                    assert!((vtv[i * n + j] - want).abs() < 1e-9);
                }
            }
        }
    }

    #[test]
    fn square_root_squares_back() {
        let n = 12;
        let a = random_symmetric(n, 9);
        let (s, inv) = sqrt_and_inv_sqrt(&a, n).unwrap();
        let ss = matmul(&s, &s, n);
        let err = a.iter().zip(&ss).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(err < 1e-8, "sqrt error {err}");
        let id = matmul(&s, &inv, n);
        for i in 0..n {
            for j in 0..n {
                let want = if i == j { 1.0 } else { 0.0 };
                assert!((id[i * n + j] - want).abs() < 1e-6, "({i},{j}) = {}", id[i * n + j]);
            }
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(sym_eigen(&[1.0, 2.0], 2).is_err());
        assert!(sym_eigen(&[1.0, f64::NAN, f64::NAN, 1.0], 2).is_err());
    }
}
