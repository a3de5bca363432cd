//! The dense linear algebra the affine methods need, in f64: means,
//! covariances, products (gemm) and functions of symmetric matrices through
//! an eigendecomposition (Householder reduction to tridiagonal form, then
//! implicit QL iterations). Matrices are row-major `n × n` slices.

use rayon::prelude::*;

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
    let n = rows.len();
    // Centred rows, as the columns of X (d × n) and the rows of Xᵀ; Σ = X Xᵀ / n.
    let mut columns = vec![0.0f64; d * n];
    for (r, row) in rows.iter().enumerate() {
        for (j, (x, m)) in row.iter().zip(mean).enumerate() {
            columns[j * n + r] = *x as f64 - m;
        }
    }
    let mut c = product(&columns, &columns, d, n, d, true);
    let n = n.max(1) as f64;
    c.iter_mut().for_each(|v| *v /= n);
    c
}

/// The Gram matrix `X Xᵀ` of the `n` rows of the row-major `X` (`n × n`,
/// entry `(i, j)` the dot product of rows `i` and `j`).
pub fn gram(x: &[f64], n: usize) -> Vec<f64> {
    let width = x.len().checked_div(n).unwrap_or(0);
    product(x, x, n, width, n, true)
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
    product(a, b, n, n, n, false)
}

/// `A B` for a row-major `m × k` matrix `A` and a `k × n` matrix `B`, given
/// row-major or (`b_transposed`) as its row-major `n × k` transpose.
fn product(a: &[f64], b: &[f64], m: usize, k: usize, n: usize, b_transposed: bool) -> Vec<f64> {
    assert!(a.len() == m * k && b.len() == k * n, "product of mismatched shapes");
    let mut c = vec![0.0f64; m * n];
    if m == 0 || n == 0 {
        return c;
    }
    // Element (p, q) of B sits at p · rs + q · cs.
    let (rs, cs) = if b_transposed { (1, k as isize) } else { (n as isize, 1) };
    let parallelism = if m * n * k >= 1 << 18 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the three buffers hold the m × n, m × k and k × n elements the
    // strides address, and `c` is not aliased.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            c.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            cs,
            rs,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
    c
}

/// `A x` for an `n × n` matrix.
pub fn matvec(a: &[f64], x: &[f64]) -> Vec<f64> {
    let n = x.len();
    a.chunks(n.max(1)).map(|row| dot(row, x)).collect()
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
        for row in scaled.chunks_mut(n.max(1)) {
            for (x, f) in row.iter_mut().zip(&fv) {
                *x *= f;
            }
        }
        product(&scaled, &self.vectors, n, n, n, true)
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

/// Decomposes the symmetric `n × n` matrix `a`: Householder reflections
/// reduce it to a tridiagonal matrix, implicit QL iterations with shifts
/// diagonalise that, and the reflections carry its eigenvectors back.
pub fn sym_eigen(a: &[f64], n: usize) -> Result<SymEigen> {
    if a.len() != n * n || a.iter().any(|v| !v.is_finite()) {
        return Err(MethodError::BadInput(format!(
            "eigendecomposition needs a finite {n}×{n} matrix"
        )));
    }
    let mut a = a.to_vec();
    // Symmetrise, so that rounding in the caller does not matter.
    for i in 0..n {
        for j in 0..i {
            let m = 0.5 * (a[i * n + j] + a[j * n + i]);
            a[i * n + j] = m;
            a[j * n + i] = m;
        }
    }
    let (mut diag, mut off, reflectors) = tridiagonalise(&mut a, n);
    let rotations = tridiagonal_ql(&mut diag, &mut off)
        .ok_or_else(|| MethodError::BadInput(format!("eigendecomposition of a {n}×{n} matrix did not converge")))?;
    // Row j of `rows` becomes eigenvector j: first of the tridiagonal matrix
    // (the rotations applied to the identity), then of `a` (the reflections).
    let mut rows = rotate_identity(n, &rotations);
    rows.par_chunks_mut(n.max(1)).for_each(|row| {
        for r in reflectors.iter().rev() {
            let tail = &mut row[r.start..];
            let t = r.beta * dot(&r.v, tail);
            for (x, v) in tail.iter_mut().zip(&r.v) {
                *x -= t * v;
            }
        }
    });
    let mut vectors = vec![0.0f64; n * n];
    for (j, row) in rows.chunks(n.max(1)).enumerate() {
        for (k, x) in row.iter().enumerate() {
            vectors[k * n + j] = *x;
        }
    }
    Ok(SymEigen { values: diag, vectors })
}

/// The reflection `I − β v vᵀ` acting on coordinates `start..n`.
struct Reflector {
    start: usize,
    beta: f64,
    v: Vec<f64>,
}

/// Reduces the symmetric `a` (overwritten) to `Qᵀ a Q` tridiagonal, with
/// `Q = H₀ H₁ ⋯` the returned reflections: returns the diagonal, the
/// off-diagonal (`off[i]` couples `i` and `i + 1`; the last is 0) and `Q`.
fn tridiagonalise(a: &mut [f64], n: usize) -> (Vec<f64>, Vec<f64>, Vec<Reflector>) {
    let mut off = vec![0.0f64; n];
    let mut reflectors = Vec::new();
    for k in 0..n.saturating_sub(2) {
        let start = k + 1;
        let m = n - start;
        // Row k right of the diagonal equals column k below it.
        let x = &a[k * n + start..(k + 1) * n];
        let norm = dot(x, x).sqrt();
        if norm == 0.0 {
            continue;
        }
        // The reflection maps x to (alpha, 0, …, 0); alpha's sign avoids cancellation.
        let alpha = if x[0] > 0.0 { -norm } else { norm };
        let mut v = x.to_vec();
        v[0] -= alpha;
        let beta = 2.0 / dot(&v, &v);
        off[k] = alpha;
        // The trailing block B becomes H B H = B − v wᵀ − w vᵀ, with
        // p = β B v and w = p − (β/2)(vᵀp) v.
        let trailing = |i: usize| (start + i) * n + start;
        let p: Vec<f64> = if m >= 128 {
            (0..m)
                .into_par_iter()
                .map(|i| beta * dot(&a[trailing(i)..trailing(i) + m], &v))
                .collect()
        } else {
            (0..m)
                .map(|i| beta * dot(&a[trailing(i)..trailing(i) + m], &v))
                .collect()
        };
        let half = 0.5 * beta * dot(&v, &p);
        let w: Vec<f64> = p.iter().zip(&v).map(|(p, v)| p - half * v).collect();
        let update = |(i, row): (usize, &mut [f64])| {
            let (vi, wi) = (v[i], w[i]);
            for ((b, vj), wj) in row[start..].iter_mut().zip(&v).zip(&w) {
                *b -= vi * wj + wi * vj;
            }
        };
        let block = &mut a[start * n..];
        if m >= 128 {
            block.par_chunks_mut(n).enumerate().for_each(update);
        } else {
            block.chunks_mut(n).enumerate().for_each(update);
        }
        reflectors.push(Reflector { start, beta, v });
    }
    if n >= 2 {
        off[n - 2] = a[(n - 2) * n + n - 1];
    }
    let diag = (0..n).map(|i| a[i * n + i]).collect();
    (diag, off, reflectors)
}

/// The dot product of two vectors (of the shorter one's length).
fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// A plane rotation of coordinates `i` and `i + 1`: `(c, s)`.
type Rotation = (usize, f64, f64);

/// Diagonalises the symmetric tridiagonal matrix (`diag`, `off`) in place
/// with implicit QL iterations and Wilkinson shifts: `diag` ends as the
/// eigenvalues. Returns the rotations, in order, whose product with the
/// identity gives the eigenvectors, or `None` if an eigenvalue needs more
/// than 60 iterations.
fn tridiagonal_ql(diag: &mut [f64], off: &mut [f64]) -> Option<Vec<Rotation>> {
    let n = diag.len();
    let mut rotations = Vec::new();
    // A coupling is negligible below ε times the matrix's norm (EISPACK tql2's
    // test). Relative to its two diagonal entries alone, as before, a
    // rank-deficient matrix (fewer training pairs than dimensions) never
    // converged: between two eigenvalues that are zero up to rounding, its
    // couplings stay at the rounding level of the whole matrix.
    let norm = (0..n)
        .map(|i| diag[i].abs() + off.get(i).map_or(0.0, |e| e.abs()))
        .fold(0.0f64, f64::max);
    for l in 0..n {
        let mut iterations = 0;
        loop {
            // The first negligible coupling at or after l splits off a block l..=m.
            let mut m = l;
            while m + 1 < n && off[m].abs() > f64::EPSILON * norm {
                m += 1;
            }
            if m == l {
                break;
            }
            iterations += 1;
            if iterations > 60 {
                return None;
            }
            // The shift is the eigenvalue of the leading 2 × 2 block closer to diag[l].
            let g0 = (diag[l + 1] - diag[l]) / (2.0 * off[l]);
            let r0 = g0.hypot(1.0);
            let mut g = diag[m] - diag[l] + off[l] / (g0 + r0.copysign(g0));
            let (mut s, mut c, mut p) = (1.0f64, 1.0f64, 0.0f64);
            let mut deflated = false;
            // Chase the bulge from the bottom of the block up to l.
            for i in (l..m).rev() {
                let f = s * off[i];
                let b = c * off[i];
                let r = f.hypot(g);
                off[i + 1] = r;
                if r == 0.0 {
                    // The coupling vanished: the block splits here; start again.
                    diag[i + 1] -= p;
                    off[m] = 0.0;
                    deflated = true;
                    break;
                }
                s = f / r;
                c = g / r;
                let h = diag[i + 1] - p;
                let t = (diag[i] - h) * s + 2.0 * c * b;
                p = s * t;
                diag[i + 1] = h + p;
                g = c * t - b;
                rotations.push((i, c, s));
            }
            if deflated {
                continue;
            }
            diag[l] -= p;
            off[l] = g;
            off[m] = 0.0;
        }
    }
    Some(rotations)
}

/// The product of `rotations` with the `n × n` identity, returned transposed
/// (row-major; row `j` is column `j` of the product). Columns are split into
/// blocks that threads rotate independently.
fn rotate_identity(n: usize, rotations: &[Rotation]) -> Vec<f64> {
    const WIDTH: usize = 64;
    let blocks: Vec<Vec<f64>> = (0..n.div_ceil(WIDTH))
        .into_par_iter()
        .map(|b| {
            let lo = b * WIDTH;
            let w = WIDTH.min(n - lo);
            // Row j of the block holds entries lo..lo + w of transposed row j.
            let mut z = vec![0.0f64; n * w];
            for k in 0..w {
                z[(lo + k) * w + k] = 1.0;
            }
            for &(i, c, s) in rotations {
                let (upper, lower) = z[i * w..(i + 2) * w].split_at_mut(w);
                for (zi, zn) in upper.iter_mut().zip(lower.iter_mut()) {
                    let f = *zn;
                    *zn = s * *zi + c * f;
                    *zi = c * *zi - s * f;
                }
            }
            z
        })
        .collect();
    let mut rows = vec![0.0f64; n * n];
    for (b, z) in blocks.iter().enumerate() {
        let lo = b * WIDTH;
        let w = WIDTH.min(n - lo);
        for j in 0..n {
            rows[j * n + lo..j * n + lo + w].copy_from_slice(&z[j * w..(j + 1) * w]);
        }
    }
    rows
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

    /// Checks `e` against `a`: `V Λ Vᵀ` gives `a` back and `V` is orthonormal,
    /// both to `tol` relative to the largest entry of `a` (or absolutely).
    fn check_decomposition(a: &[f64], n: usize, e: &SymEigen, tol: f64, label: &str) {
        let scale = a.iter().fold(1.0f64, |m, x| m.max(x.abs()));
        let back = e.apply(|x| x);
        let err = a.iter().zip(&back).map(|(x, y)| (x - y).abs()).fold(0.0, f64::max);
        assert!(
            err <= tol * scale,
            "{label}: reconstruction error {err:e} (largest entry {scale:e})"
        );
        for i in 0..n {
            for j in 0..n {
                let dot: f64 = (0..n).map(|k| e.vectors[k * n + i] * e.vectors[k * n + j]).sum();
                let want = if i == j { 1.0 } else { 0.0 };
                assert!(
                    (dot - want).abs() <= tol,
                    "{label}: columns {i} and {j} have product {dot}"
                );
            }
        }
    }

    /// `U diag(values) Uᵀ` for a seeded random orthogonal `U` (Gram–Schmidt, twice).
    fn with_spectrum(values: &[f64], seed: u64) -> Vec<f64> {
        let n = values.len();
        let mut u = random_symmetric(n, seed);
        for j in 0..n {
            for _ in 0..2 {
                for p in 0..j {
                    let d: f64 = (0..n).map(|k| u[k * n + j] * u[k * n + p]).sum();
                    for k in 0..n {
                        u[k * n + j] -= d * u[k * n + p];
                    }
                }
            }
            let norm = (0..n).map(|k| u[k * n + j] * u[k * n + j]).sum::<f64>().sqrt();
            (0..n).for_each(|k| u[k * n + j] /= norm);
        }
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            for k in 0..n {
                a[i * n + k] = (0..n).map(|j| u[i * n + j] * values[j] * u[k * n + j]).sum();
            }
        }
        a
    }

    #[test]
    fn eigendecomposition_reconstructs_the_matrix() {
        // Sizes on both sides of the parallel path (trailing blocks of 128 rows and more).
        for (n, seed) in [(1, 1), (2, 2), (3, 5), (7, 3), (40, 4), (300, 6)] {
            let a = random_symmetric(n, seed);
            let e = sym_eigen(&a, n).unwrap();
            check_decomposition(&a, n, &e, 1e-11, &format!("random {n}×{n}"));
        }
    }

    #[test]
    fn rank_deficient_gram_matrices_converge() {
        // XᵀX of a few rows in many dimensions, as the affine methods meet with
        // fewer training pairs than model dimensions: most eigenvalues are zero,
        // and pairs of rows that nearly repeat (an item asked in both answer
        // orders) leave nearly repeated directions.
        for (rows, n, seed) in [(6, 120, 11), (12, 200, 12), (48, 300, 13)] {
            let base = random_symmetric(rows.max(n), seed);
            let mut x = vec![0.0f64; rows * n];
            for r in 0..rows {
                for c in 0..n {
                    // Row 2k + 1 is row 2k plus a small change.
                    let src = r - r % 2;
                    x[r * n + c] = base[src * n + c]
                        + if r % 2 == 1 {
                            1e-3 * base[(src + 1) * n + c]
                        } else {
                            0.0
                        };
                }
            }
            let mut a = vec![0.0f64; n * n];
            for i in 0..n {
                for j in 0..n {
                    a[i * n + j] = (0..rows).map(|r| x[r * n + i] * x[r * n + j]).sum();
                }
            }
            let e = sym_eigen(&a, n).unwrap();
            let scale = a.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            check_decomposition(&a, n, &e, 1e-10, &format!("gram {rows}×{n}"));
            let zeros = e.values.iter().filter(|v| v.abs() <= 1e-9 * scale).count();
            assert!(zeros >= n - rows, "{zeros} zero eigenvalues of {n}");
        }
    }

    #[test]
    fn eigendecomposition_finds_known_spectra() {
        let n = 150;
        let cases: Vec<(&str, Vec<f64>)> = vec![
            ("distinct", (0..n).map(|i| i as f64 - 40.0).collect()),
            ("repeated", (0..n).map(|i| [2.0, -1.0, 7.5][i % 3]).collect()),
            ("rank one", (0..n).map(|i| if i == 0 { 3.0 } else { 0.0 }).collect()),
            (
                "wide range",
                (0..n).map(|i| 10f64.powf(-8.0 + 12.0 * i as f64 / n as f64)).collect(),
            ),
            ("zero", vec![0.0; n]),
        ];
        for (label, values) in cases {
            let a = with_spectrum(&values, 8);
            let e = sym_eigen(&a, n).unwrap();
            check_decomposition(&a, n, &e, 1e-11, label);
            let (mut got, mut want) = (e.values.clone(), values.clone());
            got.sort_by(f64::total_cmp);
            want.sort_by(f64::total_cmp);
            let largest = want.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            for (g, w) in got.iter().zip(&want) {
                assert!(
                    (g - w).abs() <= 1e-11 * largest.max(1.0),
                    "{label}: eigenvalue {g} for {w}"
                );
            }
        }
        // Already diagonal and already tridiagonal matrices.
        let diagonal: Vec<f64> = (0..n * n)
            .map(|k| if k % (n + 1) == 0 { (k / (n + 1)) as f64 } else { 0.0 })
            .collect();
        check_decomposition(&diagonal, n, &sym_eigen(&diagonal, n).unwrap(), 1e-12, "diagonal");
        let mut tri = vec![0.0; n * n];
        for i in 0..n {
            tri[i * n + i] = 2.0;
            if i + 1 < n {
                tri[i * n + i + 1] = -1.0;
                tri[(i + 1) * n + i] = -1.0;
            }
        }
        let e = sym_eigen(&tri, n).unwrap();
        check_decomposition(&tri, n, &e, 1e-12, "tridiagonal");
        // The second-difference matrix has eigenvalues 2 − 2 cos(kπ / (n + 1)).
        let mut got = e.values.clone();
        got.sort_by(f64::total_cmp);
        for (k, g) in got.iter().enumerate() {
            let want = 2.0 - 2.0 * ((k + 1) as f64 * std::f64::consts::PI / (n + 1) as f64).cos();
            assert!((g - want).abs() < 1e-12, "tridiagonal eigenvalue {k}: {g} for {want}");
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
    fn products_grams_and_covariances_match_their_definitions() {
        let (m, k, n) = (5, 9, 4);
        let a: Vec<f64> = (0..m * k).map(|i| (i as f64 * 0.37).sin()).collect();
        let b: Vec<f64> = (0..k * n).map(|i| (i as f64 * 0.11).cos()).collect();
        let bt: Vec<f64> = (0..n * k).map(|i| b[(i % k) * n + i / k]).collect();
        for (label, got) in [
            ("plain", product(&a, &b, m, k, n, false)),
            ("transposed", product(&a, &bt, m, k, n, true)),
        ] {
            for i in 0..m {
                for j in 0..n {
                    let want: f64 = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
                    assert!(
                        (got[i * n + j] - want).abs() < 1e-12,
                        "{label} ({i},{j}): {} for {want}",
                        got[i * n + j]
                    );
                }
            }
        }
        let rows: Vec<Vec<f32>> = (0..7)
            .map(|r| (0..5).map(|j| ((r * 5 + j) as f32 * 0.7).sin()).collect())
            .collect();
        let mu = mean(&rows);
        let cov = covariance(&rows, &mu);
        for i in 0..5 {
            for j in 0..5 {
                let want: f64 = rows
                    .iter()
                    .map(|r| (r[i] as f64 - mu[i]) * (r[j] as f64 - mu[j]))
                    .sum::<f64>()
                    / 7.0;
                assert!(
                    (cov[i * 5 + j] - want).abs() < 1e-12,
                    "covariance ({i},{j}): {} for {want}",
                    cov[i * 5 + j]
                );
            }
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(sym_eigen(&[1.0, 2.0], 2).is_err());
        assert!(sym_eigen(&[1.0, f64::NAN, f64::NAN, 1.0], 2).is_err());
    }
}
