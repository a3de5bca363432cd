//! The forward pass's hot operations, each in two implementations: burn
//! tensor operations that run on every backend, and fused CPU kernels on the
//! burn-flex device's own memory.
//!
//! burn-flex builds every result in a fresh zeroed byte buffer and copies it
//! once more to reach its alignment, runs SiLU on one thread, and materialises
//! each step of a composite operation (RMSNorm is six of them). The CPU kernels
//! call `gemm` on the operands' storage with the strides burn-flex itself would
//! use, write each result once into a vector of `f32` that becomes the tensor
//! without a copy, and fuse the elementwise tails into one parallel pass.
//! One-token decoding steps may run their products as matrix-vector products
//! instead of gemm's packed ones. Every kernel is checked against its burn
//! counterpart in the tests below.

use burn::tensor::activation::{silu, softmax};
use burn::tensor::{Bytes, DType, Device, Shape, Tensor, TensorData};
use burn_flex::{Flex, FlexTensor, Layout};
use rayon::prelude::*;

/// Defines `fn $name`, whose body is compiled twice: for the baseline target
/// and, on x86-64, with AVX2 and FMA, used when the CPU has them. Elementwise
/// operations give the same bits either way; only their speed differs.
macro_rules! vectorised {
    ($(#[$meta:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn body($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                fn avx2($($arg: $ty),*) $(-> $ret)? {
                    body($($arg),*)
                }
                if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
                    // SAFETY: the CPU has the features `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

/// Which implementation a model's forward pass uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kernels {
    /// burn tensor operations, for every backend.
    Burn,
    /// Fused CPU kernels on burn-flex storage. With `few_rows`, products of at
    /// most [`FEW_ROWS`] rows run as matrix-vector products, whose sums run in
    /// another order than gemm's: only decoding uses them, so that in a scoring
    /// pass a row's logits do not depend on how many rows a product had (the
    /// last position's logits equal the same position's among all logits).
    Flex {
        /// Matrix-vector products for products of a few rows.
        few_rows: bool,
    },
}

/// Products with fewer multiply-adds than this run on one thread, as in burn-flex.
const PARALLEL_THRESHOLD: usize = 192 * 192 * 192;

/// Rows per task in the elementwise passes.
const ROWS_PER_TASK: usize = 16;

impl Kernels {
    /// The fused kernels on the burn-flex device, burn's operations elsewhere.
    pub(crate) fn for_device(device: &Device) -> Self {
        if *device == Device::flex() {
            Kernels::Flex { few_rows: false }
        } else {
            Kernels::Burn
        }
    }

    /// The kernels for one-token decoding steps.
    pub(crate) fn for_decoding(self) -> Self {
        match self {
            Kernels::Flex { .. } => Kernels::Flex { few_rows: true },
            Kernels::Burn => Kernels::Burn,
        }
    }

    /// `x [m, k] × w [k, n]`, with `w` in any layout (row-major projections, the tied LM head as a transposed view).
    pub(crate) fn linear(self, x: Tensor<2>, w: &Tensor<2>) -> Tensor<2> {
        match self {
            Kernels::Burn => x.matmul(w.clone()),
            Kernels::Flex { few_rows } => {
                let [m, k] = x.dims();
                let n = w.dims()[1];
                let x = flex(x);
                let w = flex(w.clone());
                from_vec(product(m, k, n, Operand::of(&x), Operand::of(&w), few_rows), [m, n])
            }
        }
    }

    /// The SwiGLU MLP: `(silu(h · gate) ⊙ (h · up)) · down`.
    pub(crate) fn mlp(self, h: Tensor<2>, gate: &Tensor<2>, up: &Tensor<2>, down: &Tensor<2>) -> Tensor<2> {
        match self {
            Kernels::Burn => {
                let g = silu(h.clone().matmul(gate.clone()));
                let u = h.matmul(up.clone());
                (g * u).matmul(down.clone())
            }
            Kernels::Flex { few_rows } => {
                let [m, k] = h.dims();
                let f = gate.dims()[1];
                let d = down.dims()[1];
                let h = flex(h);
                let (wg, wu, wd) = (flex(gate.clone()), flex(up.clone()), flex(down.clone()));
                let mut g = product(m, k, f, Operand::of(&h), Operand::of(&wg), few_rows);
                let u = product(m, k, f, Operand::of(&h), Operand::of(&wu), few_rows);
                g.par_chunks_mut(ROWS_PER_TASK * f)
                    .zip(u.par_chunks(ROWS_PER_TASK * f))
                    .for_each(|(g, u)| swiglu(g, u));
                let gu = Operand {
                    data: &g,
                    row_stride: f as isize,
                    col_stride: 1,
                };
                from_vec(product(m, f, d, gu, Operand::of(&wd), few_rows), [m, d])
            }
        }
    }
}

/// What every layer of one pass shares, built once per pass: the rotary tables,
/// `[slots, head_dim]` each, with `cos` repeated over both halves and `sin`
/// with the rotation's sign folded in (negated in the first half), so that
/// `rope(x) = x·cos + swap_halves(x)·sin`; and the additive attention mask
/// `[B, Tq, Tk]`. The CPU kernels read them on the host; burn's operations get
/// them as device tensors, uploaded once rather than in every layer.
pub(crate) enum PassTables {
    /// For the CPU kernels.
    Host {
        cos: Vec<f32>,
        sin: Vec<f32>,
        mask: Vec<f32>,
    },
    /// For burn's operations.
    Device(Box<DeviceTables>),
}

/// [`PassTables`] as burn tensors: `[slots, 1, hd]` tables and a `[B, 1, 1, Tq, Tk]` mask.
pub(crate) struct DeviceTables {
    cos: Tensor<3>,
    sin: Tensor<3>,
    mask: Tensor<5>,
}

impl Kernels {
    /// RMSNorm over the last dimension: `x / sqrt(mean(x²) + eps) · w`.
    pub(crate) fn rms_norm<const D: usize>(self, x: Tensor<D>, w: &Tensor<1>, eps: f32) -> Tensor<D> {
        match self {
            Kernels::Burn => {
                let variance = x.clone().square().mean_dim(D - 1);
                let normed = x * (variance.add_scalar(eps)).sqrt().recip();
                normed * w.clone().unsqueeze::<D>()
            }
            Kernels::Flex { .. } => {
                let dims = x.dims();
                let d = dims[D - 1];
                let x = contiguous(flex(x));
                let w = contiguous(flex(w.clone()));
                let (x, w) = (x.storage::<f32>(), w.storage::<f32>());
                let mut out = vec![0.0f32; x.len()];
                out.par_chunks_mut(ROWS_PER_TASK * d)
                    .zip(x.par_chunks(ROWS_PER_TASK * d))
                    .for_each(|(out, x)| rms_norm_rows(out, x, w, eps));
                from_vec(out, dims)
            }
        }
    }

    /// The tables of one pass: rotary `cos` and `sin` of `[slots, hd]` and the
    /// additive `mask` of `[b, tq, tk]`, in the form these kernels read.
    pub(crate) fn tables(
        self,
        (cos, sin, hd): (Vec<f32>, Vec<f32>, usize),
        mask: Vec<f32>,
        [b, tq, tk]: [usize; 3],
        device: &Device,
    ) -> PassTables {
        match self {
            Kernels::Flex { .. } => PassTables::Host { cos, sin, mask },
            Kernels::Burn => {
                let slots = cos.len() / hd;
                let table = |v: Vec<f32>| Tensor::from_data(TensorData::new(v, [slots, 1, hd]), device);
                PassTables::Device(Box::new(DeviceTables {
                    cos: table(cos),
                    sin: table(sin),
                    mask: Tensor::from_data(TensorData::new(mask, [b, 1, 1, tq, tk]), device),
                }))
            }
        }
    }

    /// Rotary position embedding of `x [slots, heads · head_dim]` (rows of the
    /// projections), every head rotated by its slot's tables. The tables, made
    /// by [`Kernels::tables`], carry the implementation.
    pub(crate) fn rope(self, x: Tensor<2>, heads: usize, tables: &PassTables) -> Tensor<2> {
        let [slots, width] = x.dims();
        let hd = width / heads;
        let half = hd / 2;
        match tables {
            PassTables::Device(t) => {
                let x = x.reshape([slots, heads, hd]);
                let swapped = Tensor::cat(vec![x.clone().narrow(2, half, half), x.clone().narrow(2, 0, half)], 2);
                (x * t.cos.clone() + swapped * t.sin.clone()).reshape([slots, width])
            }
            PassTables::Host { cos, sin, .. } => {
                let mut x = contiguous(flex(x));
                x.storage_mut::<f32>()
                    .par_chunks_mut(width)
                    .zip(cos.par_chunks(hd).zip(sin.par_chunks(hd)))
                    .for_each(|(row, (cos, sin))| rope_row(row, cos, sin));
                Tensor::from_primitive::<Flex>(x)
            }
        }
    }

    /// Grouped-query attention. `q [B, Tq, H, hd]`, keys and values
    /// `[B, KV, Tk, hd]` (any layout), the pass's additive mask, scores scaled
    /// by `scale`; returns the heads' outputs as `[B, Tq, H, hd]`. The tables
    /// carry the implementation, as in [`Kernels::rope`].
    pub(crate) fn attention(
        self,
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        tables: &PassTables,
        scale: f32,
    ) -> Tensor<4> {
        let [b, tq, h, hd] = q.dims();
        let [_, kv, tk, _] = k.dims();
        let rep = h / kv;
        match tables {
            PassTables::Device(t) => {
                // The query heads that share a key head are stacked along the query axis.
                let qg = q.swap_dims(1, 2).reshape([b, kv, rep * tq, hd]);
                let scores = qg.matmul(k.swap_dims(2, 3)).mul_scalar(scale);
                let scores = scores.reshape([b, kv, rep, tq, tk]) + t.mask.clone();
                let probs = softmax(scores, 4).reshape([b, kv, rep * tq, tk]);
                probs.matmul(v).reshape([b, h, tq, hd]).swap_dims(1, 2)
            }
            PassTables::Host { mask, .. } => {
                let (q, k, v) = (flex(q), flex(k), flex(v));
                let mut out = vec![0.0f32; b * tq * h * hd];
                let out_ptr = SendPtr(out.as_mut_ptr());
                (0..b * h).into_par_iter().for_each(|task| {
                    let (row, head) = (task / h, task % h);
                    let group = head / rep;
                    let qh = Operand::at(&q, [row, 0, head, 0], 1, 3);
                    let kg = Operand::at(&k, [row, group, 0, 0], 3, 2); // Kᵀ: [hd, Tk]
                    let vg = Operand::at(&v, [row, group, 0, 0], 2, 3);
                    let mut scores = product(tq, hd, tk, qh, kg, false);
                    let mask = &mask[row * tq * tk..(row + 1) * tq * tk];
                    for (s, m) in scores.chunks_mut(tk).zip(mask.chunks(tk)) {
                        softmax_row(s, m, scale);
                    }
                    let probs = Operand {
                        data: &scores,
                        row_stride: tk as isize,
                        col_stride: 1,
                    };
                    // SAFETY: each (row, head) task writes only its own `[Tq, hd]`
                    // block of `out` (row `row`, columns of head `head`), which no
                    // other task touches, and `out` outlives the parallel loop.
                    unsafe {
                        let dst = out_ptr.get().add((row * tq * h + head) * hd);
                        product_into(tq, tk, hd, probs, vg, dst, (h * hd) as isize);
                    }
                });
                from_vec(out, [b, tq, h, hd])
            }
        }
    }
}

vectorised! {
    /// `g ← silu(g) · u` over matching slices of the gate and up projections.
    fn swiglu(g: &mut [f32], u: &[f32]) {
        for (g, u) in g.iter_mut().zip(u) {
            *g = *g / (1.0 + exp(-*g)) * u;
        }
    }
}

vectorised! {
    /// RMSNorm of consecutive rows of `w.len()` values.
    fn rms_norm_rows(out: &mut [f32], x: &[f32], w: &[f32], eps: f32) {
        let d = w.len();
        for (out, x) in out.chunks_mut(d).zip(x.chunks(d)) {
            let variance = sum_lanes(x, |v| v * v) / d as f32;
            let inv = (variance + eps).sqrt().recip();
            for ((o, v), w) in out.iter_mut().zip(x).zip(w) {
                *o = (v * inv) * w;
            }
        }
    }
}

vectorised! {
    /// Rotates every head of one slot's row in place with that slot's tables.
    fn rope_row(row: &mut [f32], cos: &[f32], sin: &[f32]) {
        let hd = cos.len();
        let half = hd / 2;
        let (cos_lo, cos_hi) = cos.split_at(half);
        let (sin_lo, sin_hi) = sin.split_at(half);
        for head in row.chunks_mut(hd) {
            let (lo, hi) = head.split_at_mut(half);
            for i in 0..half {
                let (a, b) = (lo[i], hi[i]);
                lo[i] = a * cos_lo[i] + b * sin_lo[i];
                hi[i] = b * cos_hi[i] + a * sin_hi[i];
            }
        }
    }
}

vectorised! {
    /// `softmax(scores · scale + mask)` in place over one row of keys.
    fn softmax_row(scores: &mut [f32], mask: &[f32], scale: f32) {
        for (s, m) in scores.iter_mut().zip(mask) {
            *s = *s * scale + m;
        }
        let max = max_lanes(scores);
        for s in scores.iter_mut() {
            *s = exp(*s - max);
        }
        let inv = sum_lanes(scores, |v| v).recip();
        for s in scores.iter_mut() {
            *s *= inv;
        }
    }
}

/// The largest value, with [`LANES`] running maxima.
#[inline(always)]
fn max_lanes(x: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a = a.max(v);
        }
    }
    acc.iter().chain(tail).fold(f32::NEG_INFINITY, |a, &b| a.max(b))
}

/// Lanes of the partial sums in [`sum_lanes`]: one AVX-512 register.
const LANES: usize = 16;

/// `Σ f(x)` with [`LANES`] independent partial sums, which the compiler keeps in
/// vector registers (one running sum would serialise every addition).
#[inline(always)]
fn sum_lanes(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut acc = [0.0f32; LANES];
    let chunks = x.chunks_exact(LANES);
    let tail = chunks.remainder();
    for chunk in chunks {
        for (a, &v) in acc.iter_mut().zip(chunk) {
            *a += f(v);
        }
    }
    acc.iter().sum::<f32>() + tail.iter().map(|&v| f(v)).sum::<f32>()
}

/// `e^x` in single precision, branch-free so that loops over it vectorise:
/// `x = n·ln 2 + r` with `|r| ≤ ln 2 / 2`, `e^r` from its degree-6 Taylor
/// polynomial (relative error below 2e-7 on that interval) and `2^n` built in
/// the exponent bits. Above 88.3 the result is `e^88.3`; below -87.3, where
/// `e^x` leaves the normal floats, it is 0: a masked key's softmax weight must
/// be exactly 0, since subnormal operands slow the products that follow by
/// orders of magnitude.
#[inline(always)]
fn exp(x: f32) -> f32 {
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // Adding and subtracting 1.5 · 2^23 rounds to the nearest integer.
    const ROUND: f32 = 12_582_912.0;
    let clamped = x.clamp(-87.3, 88.3);
    let t = clamped * std::f32::consts::LOG2_E + ROUND;
    let n = t - ROUND;
    let r = clamped - n * LN2_HI - n * LN2_LO;
    let p = 1.0 + r * (1.0 + r * (0.5 + r * (1.0 / 6.0 + r * (1.0 / 24.0 + r * (1.0 / 120.0 + r * (1.0 / 720.0))))));
    // The low mantissa bits of `t` hold `n` (|n| ≤ 128) in two's complement;
    // integer operations wrap, with no checks, so that the loop vectorises.
    let n_bits = t.to_bits().wrapping_sub(ROUND.to_bits());
    let scale = f32::from_bits(n_bits.wrapping_add(127) << 23);
    if x < -87.3 { 0.0 } else { p * scale }
}

/// A raw output pointer shared by parallel tasks that write disjoint parts.
#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: the tasks sharing it write disjoint elements (see its uses).
unsafe impl Send for SendPtr {}
unsafe impl Sync for SendPtr {}

impl SendPtr {
    fn get(self) -> *mut f32 {
        self.0
    }
}

/// `t` with contiguous storage from offset 0, copied only if it is not.
fn contiguous(t: FlexTensor) -> FlexTensor {
    if t.is_contiguous() && t.layout().start_offset() == 0 {
        t
    } else {
        t.to_contiguous()
    }
}

/// The burn-flex tensor behind `t`.
fn flex<const D: usize>(t: Tensor<D>) -> FlexTensor {
    t.try_into_primitive::<Flex>()
        .expect("Kernels::Flex is chosen only for the burn-flex device, whose tensors are Flex tensors")
}

/// A contiguous burn-flex tensor owning `values`, without a copy.
fn from_vec<const D: usize>(values: Vec<f32>, shape: [usize; D]) -> Tensor<D> {
    debug_assert_eq!(values.len(), shape.iter().product::<usize>());
    let layout = Layout::contiguous(Shape::from(shape.to_vec()));
    Tensor::from_primitive::<Flex>(FlexTensor::new(Bytes::from_elems(values), layout, DType::F32))
}

/// A matrix as `gemm` reads it: storage from its first element, and strides.
#[derive(Clone, Copy)]
struct Operand<'a> {
    data: &'a [f32],
    row_stride: isize,
    col_stride: isize,
}

impl<'a> Operand<'a> {
    /// The matrix of a 4-D burn-flex tensor that starts at index `at` and runs
    /// over dimensions `rows` and `cols`.
    fn at(t: &'a FlexTensor, at: [usize; 4], rows: usize, cols: usize) -> Self {
        let layout = t.layout();
        let strides = layout.strides();
        let offset =
            layout.start_offset() as isize + at.iter().zip(strides).map(|(&i, &s)| i as isize * s).sum::<isize>();
        Operand {
            data: &t.storage::<f32>()[offset as usize..],
            row_stride: strides[rows],
            col_stride: strides[cols],
        }
    }

    /// The last two dimensions of a burn-flex tensor, read in place.
    fn of(t: &'a FlexTensor) -> Self {
        let layout = t.layout();
        let strides = layout.strides();
        let r = strides.len();
        Operand {
            data: &t.storage::<f32>()[layout.start_offset()..],
            row_stride: strides[r - 2],
            col_stride: strides[r - 1],
        }
    }
}

/// Products with at most this many rows run as matrix-vector products when
/// decoding: gemm packs both operands for every call, which costs more than the
/// arithmetic when the left one has a row or two.
const FEW_ROWS: usize = 4;

/// Output columns per task of the matrix-vector products with column-major weights.
const COLUMNS_PER_TASK: usize = 128;

/// Weight rows per task of the matrix-vector products with row-major weights.
const ROWS_PER_PARTIAL: usize = 64;

/// `lhs [m, k] × rhs [k, n]` into a new row-major vector: gemm's, or with
/// `few_rows` and at most [`FEW_ROWS`] rows, matrix-vector products.
fn product(m: usize, k: usize, n: usize, lhs: Operand, rhs: Operand, few_rows: bool) -> Vec<f32> {
    if few_rows && m <= FEW_ROWS && lhs.col_stride == 1 && (rhs.row_stride == 1 || rhs.col_stride == 1) {
        return few_rows_product(m, k, n, lhs, rhs);
    }
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    // SAFETY: with `read_dst = false` gemm writes every one of the `m × n` outputs
    // without reading them, so the vector is fully initialised before its length is set.
    unsafe {
        product_into(m, k, n, lhs, rhs, out.as_mut_ptr(), n as isize);
        out.set_len(m * n);
    }
    out
}

/// `lhs [m, k] × rhs [k, n]` for a few contiguous rows of `lhs`, reading `rhs`
/// once, in order, for all rows. When the columns of `rhs` are contiguous (a
/// transposed view) each task takes a block of columns and computes their dot
/// products; when its rows are, each task takes a block of rows and adds their
/// scaled rows into partial sums, which are then added in block order, so the
/// result does not depend on how tasks were scheduled.
fn few_rows_product(m: usize, k: usize, n: usize, lhs: Operand, rhs: Operand) -> Vec<f32> {
    let rows: Vec<&[f32]> = (0..m).map(|r| &lhs.data[r * lhs.row_stride as usize..][..k]).collect();
    if rhs.row_stride == 1 {
        let cs = rhs.col_stride as usize;
        let blocks: Vec<Vec<f32>> = (0..n.div_ceil(COLUMNS_PER_TASK))
            .into_par_iter()
            .map(|block| {
                let first = block * COLUMNS_PER_TASK;
                let width = COLUMNS_PER_TASK.min(n - first);
                let mut out = vec![0.0f32; m * width];
                for j in 0..width {
                    let column = &rhs.data[(first + j) * cs..][..k];
                    for (r, row) in rows.iter().enumerate() {
                        out[r * width + j] = dot(row, column);
                    }
                }
                out
            })
            .collect();
        let mut out = vec![0.0f32; m * n];
        for (block, values) in blocks.iter().enumerate() {
            let first = block * COLUMNS_PER_TASK;
            let width = values.len() / m;
            for r in 0..m {
                out[r * n + first..][..width].copy_from_slice(&values[r * width..(r + 1) * width]);
            }
        }
        out
    } else {
        let rs = rhs.row_stride as usize;
        let partials: Vec<Vec<f32>> = (0..k.div_ceil(ROWS_PER_PARTIAL))
            .into_par_iter()
            .map(|block| {
                let mut out = vec![0.0f32; m * n];
                for i in block * ROWS_PER_PARTIAL..k.min((block + 1) * ROWS_PER_PARTIAL) {
                    let w = &rhs.data[i * rs..][..n];
                    for (r, row) in rows.iter().enumerate() {
                        axpy(&mut out[r * n..(r + 1) * n], row[i], w);
                    }
                }
                out
            })
            .collect();
        let mut partials = partials.into_iter();
        let mut out = partials.next().unwrap_or_else(|| vec![0.0f32; m * n]);
        for partial in partials {
            axpy(&mut out, 1.0, &partial);
        }
        out
    }
}

vectorised! {
    /// `Σ a·b` over two slices of the same length.
    fn dot(a: &[f32], b: &[f32]) -> f32 {
        let mut acc = [0.0f32; LANES];
        let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
        let tail: f32 = ca.remainder().iter().zip(cb.remainder()).map(|(x, y)| x * y).sum();
        for (x, y) in ca.zip(cb) {
            for ((acc, x), y) in acc.iter_mut().zip(x).zip(y) {
                *acc += x * y;
            }
        }
        acc.iter().sum::<f32>() + tail
    }
}

vectorised! {
    /// `out ← out + a·w`.
    fn axpy(out: &mut [f32], a: f32, w: &[f32]) {
        for (o, w) in out.iter_mut().zip(w) {
            *o += a * w;
        }
    }
}

/// `lhs [m, k] × rhs [k, n]` written to `dst` (rows `dst_row_stride` apart).
///
/// # Safety
/// `dst` must be valid for writes of an `[m, n]` matrix with that row stride, and the
/// operands' strides must address elements inside their storage (they come from the
/// tensors' own layouts, or describe a dense vector).
unsafe fn product_into(m: usize, k: usize, n: usize, lhs: Operand, rhs: Operand, dst: *mut f32, dst_row_stride: isize) {
    let parallelism = if m.saturating_mul(n).saturating_mul(k) >= PARALLEL_THRESHOLD {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst,
            1,
            dst_row_stride,
            false,
            lhs.data.as_ptr(),
            lhs.col_stride,
            lhs.row_stride,
            rhs.data.as_ptr(),
            rhs.col_stride,
            rhs.row_stride,
            0.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-1, 1).
    fn uniform(n: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        (0..n)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    fn random<const D: usize>(shape: [usize; D], seed: u64) -> Tensor<D> {
        let values = uniform(shape.iter().product(), seed);
        Tensor::from_data(TensorData::new(values, shape), &Device::flex())
    }

    fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().try_to_vec::<f32>().unwrap()
    }

    fn assert_close(fused: &[f32], reference: &[f32], tol: f32, what: &str) {
        assert_eq!(fused.len(), reference.len(), "{what}");
        let worst = fused
            .iter()
            .zip(reference)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(worst <= tol, "{what}: largest difference {worst} exceeds {tol}");
    }

    /// Rotary tables as `Llama::step` builds them, for `slots` consecutive positions.
    fn tables(slots: usize, hd: usize) -> (Vec<f32>, Vec<f32>) {
        let half = hd / 2;
        let (mut cos, mut sin) = (vec![0.0; slots * hd], vec![0.0; slots * hd]);
        for slot in 0..slots {
            for i in 0..half {
                let angle = (slot * 3 + 1) as f32 / 10_000f32.powf(2.0 * i as f32 / hd as f32);
                let (s, c) = angle.sin_cos();
                cos[slot * hd + i] = c;
                cos[slot * hd + half + i] = c;
                sin[slot * hd + i] = -s;
                sin[slot * hd + half + i] = s;
            }
        }
        (cos, sin)
    }

    #[test]
    fn the_flex_device_gets_the_fused_kernels() {
        assert_eq!(Kernels::for_device(&Device::flex()), Kernels::Flex { few_rows: false });
        assert_eq!(
            Kernels::for_device(&Device::flex()).for_decoding(),
            Kernels::Flex { few_rows: true }
        );
    }

    #[test]
    fn products_equal_burns() {
        // A transposed weight view (the tied LM head), a dense one, and a
        // row-sliced input; one and a few rows (matrix-vector products when
        // decoding, with one and several blocks), and sizes on both sides of
        // gemm's parallel threshold. Outside decoding every result is gemm's own,
        // bit for bit.
        for (m, k, n) in [
            (1, 8, 5),
            (3, 140, 300),
            (4, 33, 129),
            (5, 8, 5),
            (64, 96, 200),
            (257, 192, 160),
        ] {
            let x = random([m + 2, k], 1).narrow(0, 1, m);
            let w_t = random([n, k], 2).transpose();
            let w = random([k, n], 3);
            for w in [w_t, w] {
                let reference = values(Kernels::Burn.linear(x.clone(), &w));
                let scoring = values(Kernels::Flex { few_rows: false }.linear(x.clone(), &w));
                assert_eq!(scoring, reference, "m={m} k={k} n={n}");
                let decoding = values(Kernels::Flex { few_rows: true }.linear(x.clone(), &w));
                if m <= FEW_ROWS {
                    assert_close(&decoding, &reference, 1e-5, &format!("m={m} k={k} n={n}"));
                } else {
                    assert_eq!(decoding, reference, "m={m} k={k} n={n}");
                }
            }
        }
    }

    #[test]
    fn the_mlp_equals_burns() {
        for (m, d, f) in [(1, 16, 40), (37, 64, 176), (300, 96, 256)] {
            let h = random([m, d], 4);
            let gate = random([f, d], 5).transpose();
            let up = random([f, d], 6).transpose();
            let down = random([d, f], 7).transpose();
            let reference = values(Kernels::Burn.mlp(h.clone(), &gate, &up, &down));
            let scale = reference.iter().fold(0.0f32, |a, v| a.max(v.abs()));
            for few_rows in [false, true] {
                let fused = values(Kernels::Flex { few_rows }.mlp(h.clone(), &gate, &up, &down));
                assert_close(&fused, &reference, 1e-6 * scale, &format!("m={m} d={d} f={f}"));
            }
        }
    }

    #[test]
    fn exp_is_within_two_units_in_the_last_place() {
        let mut x = -87.0f32;
        while x < 88.0 {
            let (fast, exact) = (exp(x), (x as f64).exp());
            let err = ((fast as f64 - exact) / exact).abs();
            assert!(err < 2.4e-7, "exp({x}) = {fast}, exactly {exact}: relative error {err}");
            x += 0.0137;
        }
        // No subnormal or infinite results at the ends.
        assert_eq!(exp(-87.5), 0.0);
        assert_eq!(exp(-1.0e9), 0.0);
        assert!(exp(1.0e9).is_finite());
    }

    #[test]
    fn rms_norm_equals_burns() {
        for (rows, d) in [(1, 8), (5, 64), (70, 576)] {
            let x = random([2, rows, d], 8).mul_scalar(3.0);
            let w = random([d], 9);
            let fused = values(Kernels::Flex { few_rows: false }.rms_norm(x.clone(), &w, 1e-5));
            let reference = values(Kernels::Burn.rms_norm(x, &w, 1e-5));
            assert_close(&fused, &reference, 1e-5, &format!("rows={rows} d={d}"));
        }
    }

    #[test]
    fn rope_equals_burns_bit_for_bit() {
        for (slots, heads, hd) in [(1, 1, 4), (7, 3, 16), (40, 9, 64)] {
            let (cos, sin) = tables(slots, hd);
            let pass = |kernels: Kernels| {
                kernels.tables((cos.clone(), sin.clone(), hd), vec![0.0], [1, 1, 1], &Device::flex())
            };
            let flex_kernels = Kernels::Flex { few_rows: false };
            let x = random([slots, heads * hd], 10);
            let fused = values(flex_kernels.rope(x.clone(), heads, &pass(flex_kernels)));
            let reference = values(Kernels::Burn.rope(x, heads, &pass(Kernels::Burn)));
            assert_eq!(fused, reference, "slots={slots} heads={heads} hd={hd}");
        }
    }

    #[test]
    fn attention_equals_burns() {
        // Grouped heads, cached keys longer than the queries, keys in the cache's
        // layout and as a transposed view, masked keys and a fully masked query.
        for (b, tq, past, h, kv, hd) in [(1, 1, 0, 2, 1, 8), (2, 5, 3, 6, 2, 16), (3, 17, 0, 9, 3, 64)] {
            let tk = past + tq;
            let q = random([b, tq, h, hd], 11).mul_scalar(2.0);
            let k_dense = random([b, kv, tk, hd], 12).mul_scalar(2.0);
            let k_view = random([b, tk, kv, hd], 13).mul_scalar(2.0).swap_dims(1, 2);
            let v = random([b, kv, tk, hd], 14);
            let mut mask = vec![0.0f32; b * tq * tk];
            for row in 0..b {
                for i in 0..tq {
                    for j in 0..tk {
                        let masked = j > past + i || (row == 1 && j == 0) || (row == 2 && i == 0);
                        if masked {
                            mask[(row * tq + i) * tk + j] = -1.0e9;
                        }
                    }
                }
            }
            let pass = |kernels: Kernels| {
                let (cos, sin) = tables(b * tq, hd);
                kernels.tables((cos, sin, hd), mask.clone(), [b, tq, tk], &Device::flex())
            };
            let flex_kernels = Kernels::Flex { few_rows: false };
            let (flex_pass, burn_pass) = (pass(flex_kernels), pass(Kernels::Burn));
            for k in [k_dense, k_view] {
                let fused = values(flex_kernels.attention(q.clone(), k.clone(), v.clone(), &flex_pass, 0.125));
                let reference = values(Kernels::Burn.attention(q.clone(), k, v.clone(), &burn_pass, 0.125));
                assert_close(
                    &fused,
                    &reference,
                    1e-5,
                    &format!("b={b} tq={tq} past={past} h={h} kv={kv}"),
                );
            }
        }
    }
}
