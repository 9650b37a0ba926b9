//! `scipy.ndimage.gaussian_filter` for float arrays.

use ndarray::{ArrayD, ArrayView2, ArrayViewD, ArrayViewMut2, Axis, IxDyn, Slice};

use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::parallel::{for_each_sized_chunk, for_each_sized_chunk_init, map_items};
use rustfft::FftPlanner;

use super::fft_line::FftPlan;

/// How a filter sees values beyond the edge of the array, as
/// `scipy.ndimage` names the modes (for an edge `a b c d`).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BoundaryMode {
    /// `d c b a | a b c d | d c b a`: the edge value is repeated
    /// (SciPy's `"reflect"`, also called half-sample symmetric).
    Reflect,
    /// `k k k k | a b c d | k k k k` for the given constant `k` (SciPy's
    /// `"constant"` with `cval`, which for filters equals `"grid-constant"`).
    Constant(f64),
    /// `a a a a | a b c d | d d d d` (SciPy's `"nearest"`).
    Nearest,
    /// `d c b | a b c d | c b a`: reflection about the edge sample
    /// (SciPy's `"mirror"`, whole-sample symmetric).
    Mirror,
    /// `a b c d | a b c d | a b c d` (SciPy's `"wrap"`, which for filters
    /// equals `"grid-wrap"`).
    Wrap,
}

impl BoundaryMode {
    /// The index of the sample that stands at position `i` of a line of
    /// length `n` (`None`: the constant). Matches SciPy's line extension,
    /// including extensions longer than the line.
    #[inline]
    pub(crate) fn source(self, i: isize, n: usize) -> Option<usize> {
        let len = n as isize;
        if (0..len).contains(&i) {
            return Some(i as usize);
        }
        let idx = match self {
            BoundaryMode::Constant(_) => return None,
            BoundaryMode::Nearest => i.clamp(0, len - 1),
            BoundaryMode::Wrap => i.rem_euclid(len),
            BoundaryMode::Reflect => {
                let m = i.rem_euclid(2 * len);
                if m < len { m } else { 2 * len - 1 - m }
            }
            BoundaryMode::Mirror => {
                if len == 1 {
                    0
                } else {
                    let period = 2 * len - 2;
                    let m = i.rem_euclid(period);
                    if m < len { m } else { period - m }
                }
            }
        };
        Some(idx as usize)
    }

    fn cval(self) -> f64 {
        match self {
            BoundaryMode::Constant(c) => c,
            _ => 0.0,
        }
    }
}

/// The default `truncate` of `scipy.ndimage.gaussian_filter`.
pub const DEFAULT_TRUNCATE: f64 = 4.0;

/// The largest kernel radius (`truncate * sigma + 0.5`) the filters accept:
/// 2^24 taps on each side (a 256 MB kernel), far beyond any image.
pub(crate) const MAX_KERNEL_RADIUS: usize = 1 << 24;

/// Checks that `sigma` (parameter `name`) with `truncate` gives a kernel
/// radius of at most [`MAX_KERNEL_RADIUS`].
pub(crate) fn check_kernel_radius(name: &'static str, sigma: f64, truncate: f64) -> Result<()> {
    if truncate * sigma + 0.5 > MAX_KERNEL_RADIUS as f64 {
        return Err(SaliencyError::param(
            name,
            sigma,
            "gives a Gaussian kernel radius (truncate * sigma) above 2^24",
        ));
    }
    Ok(())
}

/// `scipy.ndimage.gaussian_filter(input, sigma, mode=..., cval=..., truncate=...)`
/// for a float array: one 1-D Gaussian correlation per axis, in axis order,
/// each axis with its own `sigma` (an axis with sigma 0 is left alone).
///
/// As in SciPy, the kernel along an axis has radius
/// `int(truncate * sigma + 0.5)`, weights `exp(-x^2 / (2 sigma^2))`
/// normalised to sum 1, sums are taken in `f64`, and the array between two
/// axis passes has the input's element type. Kernels of radius below 12
/// are summed directly in SciPy's order; longer ones as banded matrix
/// products in a folded basis that halves the multiplications (short
/// lines), or through the FFT with the exact truncated kernel (radius 24 and
/// up on lines of 128 samples and more: a cost per sample independent of
/// sigma). All agree with SciPy to about 1e-15 relative, and results do not
/// depend on the number of threads.
///
/// Errors: `sigma.len()` differs from the rank, a sigma negative or not
/// finite, `truncate` negative or not finite, an empty or non-finite input,
/// a non-finite constant.
///
/// ```
/// use ndarray::array;
/// use saliency::imageops::{gaussian_filter, BoundaryMode};
///
/// // scipy.ndimage.gaussian_filter1d([1.0, 2.0, 3.0, 4.0, 5.0], 1)
/// let x = array![1.0_f64, 2.0, 3.0, 4.0, 5.0];
/// let y = gaussian_filter(&x, &[1.0], BoundaryMode::Reflect, 4.0)?;
/// assert!((y[[0]] - 1.42704095).abs() < 1e-8);
/// assert!((y[[2]] - 3.0).abs() < 1e-12);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn gaussian_filter<'a, F: Float, D: ndarray::Dimension>(
    input: impl ndarray::AsArray<'a, F, D>,
    sigma: &[f64],
    mode: BoundaryMode,
    truncate: f64,
) -> Result<ndarray::Array<F, D>> {
    gaussian_filter_dyn(input.into().into_dyn(), sigma, mode, truncate)?
        .into_dimensionality::<D>()
        .map_err(|_| SaliencyError::internal("the filtered array does not have the input's rank"))
}

/// [`gaussian_filter`] on a dynamic-dimension view.
fn gaussian_filter_dyn<F: Float>(
    input: ArrayViewD<'_, F>,
    sigma: &[f64],
    mode: BoundaryMode,
    truncate: f64,
) -> Result<ArrayD<F>> {
    if sigma.len() != input.ndim() {
        return Err(SaliencyError::param(
            "sigma",
            format!("{sigma:?}"),
            "must have one value per axis of the input",
        ));
    }
    if let Some(s) = sigma.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
        return Err(SaliencyError::param("sigma", s, "must be finite and >= 0"));
    }
    if !(truncate.is_finite() && truncate >= 0.0) {
        return Err(SaliencyError::param("truncate", truncate, "must be finite and >= 0"));
    }
    for &s in sigma {
        check_kernel_radius("sigma", s, truncate)?;
    }
    if !mode.cval().is_finite() {
        return Err(SaliencyError::param("cval", mode.cval(), "must be finite"));
    }
    if input.is_empty() {
        return Err(SaliencyError::EmptyInput {
            what: "input",
            shape: input.shape().to_vec(),
        });
    }
    crate::checks::check_finite("input", &input)?;
    Ok(gaussian_filter_checked(input, sigma, mode, truncate))
}

/// [`gaussian_filter`] without the argument checks (the caller made them).
pub(crate) fn gaussian_filter_checked<F: Float>(
    input: ArrayViewD<'_, F>,
    sigma: &[f64],
    mode: BoundaryMode,
    truncate: f64,
) -> ArrayD<F> {
    let shape = input.shape().to_vec();
    let values = super::to_f64_vec(&input);
    let mut scratch = Scratch::default();
    let data: Vec<F> = filter_f64_with(&values, &shape, sigma, mode, truncate, round_to::<F>, &mut scratch)
        .iter()
        .map(|&v| F::from_f64_lossy(v))
        .collect();
    // The length is the product of the shape by construction.
    ArrayD::from_shape_vec(IxDyn(&shape), data).unwrap_or_else(|_| ArrayD::zeros(IxDyn(&shape)))
}

/// Rounds an `f64` to the nearest `F` (SciPy stores the input's element
/// type between two axis passes).
pub(crate) fn round_to<F: Float>(v: f64) -> f64 {
    F::from_f64_lossy(v).as_f64()
}

/// The filter on row-major `f64` values of shape `shape`; `round` is applied
/// to every value an axis pass writes (the input type's rounding).
pub(crate) fn filter_f64(
    values: Vec<f64>,
    shape: &[usize],
    sigma: &[f64],
    mode: BoundaryMode,
    truncate: f64,
    round: impl Fn(f64) -> f64 + Sync + Send,
) -> Vec<f64> {
    filter_f64_with(&values, shape, sigma, mode, truncate, round, &mut Scratch::default()).to_vec()
}

/// Buffers and the last matrix form, kept between calls of
/// [`filter_f64_with`] by a caller that filters many times (Blur IG).
#[derive(Default)]
pub(crate) struct Scratch {
    /// Run every pass on the calling thread (the caller parallelises).
    pub(crate) sequential: bool,
    buffers: [Vec<f64>; 2],
    folded: Vec<f64>,
    product: Vec<f64>,
    plan: Option<MatrixPlan>,
    fft: Option<FftPlan>,
    planner: Option<FftPlanner<f64>>,
}

/// The matrix form of one correlation, with what it was built for.
struct MatrixPlan {
    n: usize,
    weights: Vec<f64>,
    mode: BoundaryMode,
    blocks: Vec<BandBlock>,
    offset: Vec<f64>,
}

/// [`filter_f64`] reading `input` and returning the result, which lives in
/// `scratch` (or is `input` itself when no axis is filtered).
pub(crate) fn filter_f64_with<'a>(
    input: &'a [f64],
    shape: &[usize],
    sigma: &[f64],
    mode: BoundaryMode,
    truncate: f64,
    round: impl Fn(f64) -> f64 + Sync + Send,
    scratch: &'a mut Scratch,
) -> &'a [f64] {
    let mut buffers = std::mem::take(&mut scratch.buffers);
    let mut current: Option<usize> = None;
    for (axis, &s) in sigma.iter().enumerate() {
        // SciPy skips axes whose sigma is at most 1e-15.
        if s <= 1e-15 {
            continue;
        }
        let weights = gaussian_kernel1d(s, truncate);
        let target = current.map_or(0, |c| 1 - c);
        let [first, second] = &mut buffers;
        let (src, dst): (&[f64], &mut Vec<f64>) = match current {
            None => (input, first),
            Some(0) => (first.as_slice(), second),
            Some(_) => (second.as_slice(), first),
        };
        dst.resize(input.len(), 0.0);
        correlate_axis(src, dst, shape, axis, &weights, mode, &round, scratch);
        current = Some(target);
    }
    scratch.buffers = buffers;
    match current {
        Some(i) => scratch.buffers[i].as_slice(),
        None => input,
    }
}

/// The centre and right half `w[0..=r]` of SciPy's normalised Gaussian
/// kernel of radius `int(truncate * sigma + 0.5)`.
pub(crate) fn gaussian_kernel1d(sigma: f64, truncate: f64) -> Vec<f64> {
    // Callers check the radius (`check_kernel_radius`); the cap only keeps
    // this function total.
    let radius = ((truncate * sigma + 0.5) as usize).min(MAX_KERNEL_RADIUS);
    let scale = -0.5 / (sigma * sigma);
    let full: Vec<f64> = (-(radius as i64)..=radius as i64)
        .map(|x| (scale * (x * x) as f64).exp())
        .collect();
    // The weights are positive: `numpy.sum`'s start value +0.0 changes nothing.
    let sum = super::sum::sum(&full);
    full[radius..].iter().map(|v| v / sum).collect()
}

/// The fewest rows per block of the banded matrix form.
const BLOCK: usize = 32;
/// Kernels with at least this radius use the banded matrix product.
const MATRIX_RADIUS: usize = 12;
/// Below this many elements per row, lanes are gathered one by one.
const ROW_MIN: usize = 16;

/// Correlates the standard-layout array `src` of shape `shape` along `axis`
/// with the symmetric kernel `w` (centre first), writing `dst`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn correlate_axis<R: Fn(f64) -> f64 + Sync>(
    src: &[f64],
    dst: &mut [f64],
    shape: &[usize],
    axis: usize,
    w: &[f64],
    mode: BoundaryMode,
    round: &R,
    scratch: &mut Scratch,
) {
    let n = shape[axis];
    let (outer, inner) = super::outer_inner(shape, axis);
    let radius = w.len() - 1;
    let parallel = !scratch.sequential;
    match choose_path(n, radius) {
        Path::Fft => correlate_fft(src, dst, (outer, n, inner), w, mode, round, scratch),
        Path::Matrix => correlate_matrix(src, dst, (outer, n, inner), w, mode, round, scratch),
        Path::Direct if inner >= ROW_MIN => correlate_rows(src, dst, (outer, n, inner), w, mode, round, parallel),
        Path::Direct => correlate_lanes(src, dst, (outer, n, inner), w, mode, round, parallel),
    }
}

/// How one axis pass is computed.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Path {
    /// The kernel's sum per output sample: `radius + 1` multiplications.
    Direct,
    /// Banded matrix products in folded coordinates.
    Matrix,
    /// Circular correlation through the FFT: O(log n) per sample.
    Fft,
}

/// The cheapest path for lines of length `n` and a kernel of radius `radius`.
///
/// Measured (`tests::path_costs`, best of 3 on a loaded 2-core machine, one
/// thread, ns per output sample and axis on n x n x 3, constant mode):
///
/// | n | radius 8: direct / matrix / FFT | radius 24 | radius 100 | radius 200 |
/// | --- | --- | --- | --- | --- |
/// | 32 | 10.0 / 6.8 / 5.2 | 24.2 / 4.3 / 7.0 | 126 / 6.1 / 10.6 | 266 / 6.0 / 9.8 |
/// | 112 | 12.4 / 7.3 / 5.9 | 26.0 / 8.6 / 9.5 | 127 / 11.5 / 9.9 | 342 / 9.0 / 10.8 |
/// | 224 | 12.0 / 9.0 / 10.7 | 42.0 / 13.0 / 12.4 | 170 / 15.7 / 9.1 | 351 / 14.5 / 12.7 |
/// | 448 | 12.2 / 11.3 / 11.2 | 41.7 / 21.1 / 13.2 | 134 / 35.9 / 15.1 | 402 / 38.8 / 16.1 |
/// | 896 | 21.0 / 17.9 / 23.4 | 29.5 / 20.1 / 20.7 | 126 / 53.2 / 22.7 | - |
///
/// The direct sum grows with the radius, the banded product with the band
/// and the line (it wins on short lines), the FFT only with log n. Small
/// kernels stay direct (SciPy's own order of summation), and the matrix form
/// also keeps its `n^2` set-up off long lines.
fn choose_path(n: usize, radius: usize) -> Path {
    if n >= FFT_MIN_LEN && radius >= FFT_RADIUS {
        Path::Fft
    } else if radius >= MATRIX_RADIUS && n <= MATRIX_MAX_LEN {
        Path::Matrix
    } else {
        Path::Direct
    }
}

/// Kernels of at least this radius on lines of at least `FFT_MIN_LEN`
/// samples use the FFT (the crossover with the banded product in the table
/// of [`choose_path`]; a series of blurs of one image has its own, lower
/// radius).
const FFT_RADIUS: usize = 24;
pub(crate) const FFT_MIN_LEN: usize = 128;

/// Correlation through the FFT ([`FftPlan`]); the plan is kept in `scratch`
/// for the next call with the same line length, kernel and mode.
fn correlate_fft<R: Fn(f64) -> f64 + Sync>(
    src: &[f64],
    dst: &mut [f64],
    dims: (usize, usize, usize),
    w: &[f64],
    mode: BoundaryMode,
    round: &R,
    scratch: &mut Scratch,
) {
    let n = dims.1;
    if !scratch.fft.as_ref().is_some_and(|plan| plan.fits(n, w, mode)) {
        let planner = scratch.planner.get_or_insert_with(FftPlanner::new);
        scratch.fft = Some(FftPlan::new(n, w, mode, planner));
    }
    if let Some(plan) = &scratch.fft {
        plan.correlate(src, dst, dims, round, !scratch.sequential, &mut scratch.product);
    }
}

/// Direct correlation, many elements per row: each output row is a sum of
/// whole input rows (contiguous, vectorisable), in SciPy's order.
fn correlate_rows<R: Fn(f64) -> f64 + Sync>(
    src: &[f64],
    dst: &mut [f64],
    (_, n, inner): (usize, usize, usize),
    w: &[f64],
    mode: BoundaryMode,
    round: &R,
    parallel: bool,
) {
    let cval_row = vec![mode.cval(); inner];
    let row = |o: usize, i: isize| -> &[f64] {
        match mode.source(i, n) {
            Some(k) => &src[(o * n + k) * inner..(o * n + k + 1) * inner],
            None => &cval_row,
        }
    };
    let task = |idx: usize, out: &mut [f64]| {
        let (o, i) = (idx / n, (idx % n) as isize);
        for (d, s) in out.iter_mut().zip(row(o, i)) {
            *d = s * w[0];
        }
        for j in (1..w.len()).rev() {
            let (a, b, wj) = (row(o, i - j as isize), row(o, i + j as isize), w[j]);
            for ((d, x), y) in out.iter_mut().zip(a).zip(b) {
                *d += (x + y) * wj;
            }
        }
        out.iter_mut().for_each(|d| *d = round(*d));
    };
    for_each_sized_chunk(dst, inner, parallel, |idx, out| task(idx, out));
}

/// Direct correlation, few elements per row (the channels of an image's
/// row, along its width): each slab (one line per lane, interleaved) is
/// copied into a buffer with the boundary extension written out around it,
/// then filtered as a whole, every tap one contiguous pass over the slab
/// (vectorised), each sample summed in SciPy's order: `x[0] w[0]`, then
/// `(x[-j] + x[j]) w[j]` from the outermost `j` inwards.
fn correlate_lanes<R: Fn(f64) -> f64 + Sync>(
    src: &[f64],
    dst: &mut [f64],
    (_, n, inner): (usize, usize, usize),
    w: &[f64],
    mode: BoundaryMode,
    round: &R,
    parallel: bool,
) {
    let r = w.len() - 1;
    let task = |buf: &mut Vec<f64>, base: &[f64], out: &mut [f64]| {
        // Rows -r..n + r of the extended slab, `inner` values each.
        buf.clear();
        extend_rows(buf, base, -(r as isize)..0, n, inner, mode);
        buf.extend_from_slice(base);
        extend_rows(buf, base, n as isize..(n + r) as isize, n, inner, mode);
        let shifted = |d: isize| &buf[(r as isize + d) as usize * inner..][..n * inner];
        for (o, &x) in out.iter_mut().zip(shifted(0)) {
            *o = x * w[0];
        }
        for j in (1..w.len()).rev() {
            let (a, b, wj) = (shifted(-(j as isize)), shifted(j as isize), w[j]);
            for ((o, &x), &y) in out.iter_mut().zip(a).zip(b) {
                *o += (x + y) * wj;
            }
        }
        out.iter_mut().for_each(|o| *o = round(*o));
    };
    for_each_slab(src, dst, n * inner, parallel, Vec::new, task);
}

/// Appends rows `rows` of the extension of the slab `base` (`n` rows of
/// `inner` values) under `mode`.
fn extend_rows(
    buf: &mut Vec<f64>,
    base: &[f64],
    rows: std::ops::Range<isize>,
    n: usize,
    inner: usize,
    mode: BoundaryMode,
) {
    for i in rows {
        match mode.source(i, n) {
            Some(k) => buf.extend_from_slice(&base[k * inner..(k + 1) * inner]),
            None => buf.extend(std::iter::repeat_n(mode.cval(), inner)),
        }
    }
}

/// One block of rows of a banded matrix: rows `start..start + rows` have
/// their non-zero entries in columns `lo..lo + width`, stored in `weights`.
struct BandBlock {
    start: usize,
    lo: usize,
    weights: ndarray::Array2<f64>,
}

/// Splits the dense matrix `m` into blocks of at most `block` rows within
/// each of the row ranges `segments`, each keeping only the columns where
/// its rows have non-zero entries.
fn band_blocks(m: &ndarray::Array2<f64>, segments: &[(usize, usize)], block: usize) -> Vec<BandBlock> {
    let mut blocks = Vec::new();
    for &(begin, end) in segments {
        for start in (begin..end).step_by(block) {
            let rows = m.slice_axis(Axis(0), Slice::from(start..(start + block).min(end)));
            let (mut lo, mut hi) = (usize::MAX, 0);
            for row in rows.outer_iter() {
                if let Some(first) = row.iter().position(|v| *v != 0.0) {
                    lo = lo.min(first);
                    hi = hi.max(row.iter().rposition(|v| *v != 0.0).unwrap_or(first) + 1);
                }
            }
            let lo = lo.min(hi);
            blocks.push(BandBlock {
                start,
                lo,
                weights: rows.slice_axis(Axis(1), Slice::from(lo..hi)).to_owned(),
            });
        }
    }
    blocks
}

/// The correlation along a line of length `n` as a matrix `K` (taps that
/// the boundary mode maps to the same sample add up) and the constant's
/// share per output sample.
fn correlation_matrix(n: usize, w: &[f64], mode: BoundaryMode) -> (ndarray::Array2<f64>, Vec<f64>) {
    let r = w.len() as isize - 1;
    let mut k = ndarray::Array2::<f64>::zeros((n, n));
    let mut offset = vec![0.0; n];
    if let BoundaryMode::Constant(cval) = mode {
        // Taps inside the line form one run; the rest see the constant.
        for (i, row) in k.outer_iter_mut().enumerate() {
            let (lo, hi) = (
                (i as isize - r).max(0) as usize,
                (i as isize + r).min(n as isize - 1) as usize,
            );
            let mut row = row;
            for col in lo..=hi {
                row[col] = w[col.abs_diff(i)];
            }
            if cval != 0.0 {
                offset[i] = (-r..=r)
                    .filter(|j| !(0..n as isize).contains(&(i as isize + j)))
                    .map(|j| w[j.unsigned_abs()] * cval)
                    .sum();
            }
        }
        return (k, offset);
    }
    for i in 0..n {
        for j in -r..=r {
            let tap = w[j.unsigned_abs()];
            match mode.source(i as isize + j, n) {
                Some(col) => k[[i, col]] += tap,
                None => offset[i] += tap * mode.cval(),
            }
        }
    }
    (k, offset)
}

/// `K` is centrosymmetric (`K[n-1-i][n-1-k] = K[i][k]`: a symmetric kernel
/// and boundary rules that treat both ends alike), so in the coordinates
/// `s_k = x_k + x_{n-1-k}`, `d_k = x_k - x_{n-1-k}` (and the middle sample
/// when `n` is odd) it is block diagonal with two half-size blocks: half the
/// multiplications. Returns that block-diagonal matrix; `y` is recovered by
/// [`unfold`].
fn folded_matrix(k: &ndarray::Array2<f64>) -> ndarray::Array2<f64> {
    let n = k.nrows();
    let (p, odd) = (n / 2, n % 2);
    let top = p + odd;
    let mut m = ndarray::Array2::<f64>::zeros((n, n));
    for i in 0..p {
        for c in 0..p {
            let (near, far) = (k[[i, c]], k[[i, n - 1 - c]]);
            m[[i, c]] = (near + far) * 0.5;
            m[[top + i, top + c]] = (near - far) * 0.5;
        }
        if odd == 1 {
            m[[i, p]] = k[[i, p]];
        }
    }
    if odd == 1 {
        for c in 0..p {
            m[[p, c]] = k[[p, c]];
        }
        m[[p, p]] = k[[p, p]];
    }
    m
}

/// Writes the folded coordinates of the lines of `src` ([outer, n, inner])
/// into `z`: sums of mirrored pairs, the middle sample, differences.
fn fold(src: &[f64], z: &mut [f64], (_, n, inner): (usize, usize, usize), parallel: bool) {
    let (p, odd) = (n / 2, n % 2);
    let task = |_: &mut (), x: &[f64], out: &mut [f64]| {
        let (x_top, x_mid, x_bottom) = split3(x, p * inner, odd * inner);
        let (sums, mid, diffs) = split3_mut(out, p * inner, odd * inner);
        mid.copy_from_slice(x_mid);
        let mirrored = x_bottom.chunks_exact(inner).rev();
        for (((s, d), a), b) in sums
            .chunks_exact_mut(inner)
            .zip(diffs.chunks_exact_mut(inner))
            .zip(x_top.chunks_exact(inner))
            .zip(mirrored)
        {
            for (((s, d), u), v) in s.iter_mut().zip(d.iter_mut()).zip(a).zip(b) {
                *s = u + v;
                *d = u - v;
            }
        }
    };
    for_each_slab(src, z, n * inner, parallel, || (), task);
}

/// Recovers the output lines from the folded product `wz`: `y_i = u_i + v_i`,
/// `y_{n-1-i} = u_i - v_i`, plus the constant's share.
fn unfold<R: Fn(f64) -> f64 + Sync>(
    wz: &[f64],
    dst: &mut [f64],
    (_, n, inner): (usize, usize, usize),
    offset: &[f64],
    round: &R,
    parallel: bool,
) {
    let (p, odd) = (n / 2, n % 2);
    let task = |_: &mut (), z: &[f64], out: &mut [f64]| {
        let (u_rows, z_mid, v_rows) = split3(z, p * inner, odd * inner);
        let (y_top, y_mid, y_bottom) = split3_mut(out, p * inner, odd * inner);
        for (y, v) in y_mid.iter_mut().zip(z_mid) {
            *y = round(v + offset[p]);
        }
        let rows = y_top
            .chunks_exact_mut(inner)
            .zip(y_bottom.chunks_exact_mut(inner).rev())
            .zip(u_rows.chunks_exact(inner).zip(v_rows.chunks_exact(inner)));
        for (j, ((top, bottom), (u, v))) in rows.enumerate() {
            let (off_top, off_bottom) = (offset[j], offset[n - 1 - j]);
            for (((t, b), a), c) in top.iter_mut().zip(bottom.iter_mut()).zip(u).zip(v) {
                *t = round(a + c + off_top);
                *b = round(a - c + off_bottom);
            }
        }
    };
    for_each_slab(wz, dst, n * inner, parallel, || (), task);
}

/// Lines longer than this use the direct correlation (the matrix form
/// needs `n^2` temporary values).
const MATRIX_MAX_LEN: usize = 2048;

/// Correlation as banded matrix products in folded coordinates (long
/// kernels): many elements per row multiply from the left, lanes of few
/// elements from the right.
fn correlate_matrix<R: Fn(f64) -> f64 + Sync>(
    src: &[f64],
    dst: &mut [f64],
    dims: (usize, usize, usize),
    w: &[f64],
    mode: BoundaryMode,
    round: &R,
    scratch: &mut Scratch,
) {
    let (_, n, _) = dims;
    let fresh = match &scratch.plan {
        Some(plan) => plan.n != n || plan.mode != mode || plan.weights != w,
        None => true,
    };
    if fresh {
        let (k, offset) = correlation_matrix(n, w, mode);
        let m = folded_matrix(&k);
        let top = n / 2 + n % 2;
        // Blocks about as tall as the band is wide: narrow bands keep their
        // savings, wide ones make few large products.
        let rows = (2 * (w.len() - 1)).max(BLOCK);
        scratch.plan = Some(MatrixPlan {
            n,
            weights: w.to_vec(),
            mode,
            blocks: band_blocks(&m, &[(0, top), (top, n)], rows),
            offset,
        });
    }
    let Some(plan) = &scratch.plan else {
        return;
    };
    scratch.folded.resize(src.len(), 0.0);
    scratch.product.resize(src.len(), 0.0);
    let (outer, n, inner) = dims;
    let parallel = !scratch.sequential;
    if inner < 64 && outer > 1 {
        // Few elements per row: work on lanes laid out contiguously
        // ([outer * inner, n]), which makes the folds vectorisable and the
        // products few and large.
        fold_lanes(src, &mut scratch.folded, dims, parallel);
        let lanes = (outer * inner, n, 1);
        banded_product(&scratch.folded, &mut scratch.product, lanes, &plan.blocks, parallel);
        unfold_lanes(&scratch.product, dst, dims, &plan.offset, round, parallel);
    } else {
        fold(src, &mut scratch.folded, dims, parallel);
        banded_product(&scratch.folded, &mut scratch.product, dims, &plan.blocks, parallel);
        unfold(&scratch.product, dst, dims, &plan.offset, round, parallel);
    }
}

/// [`fold`] for lanes of few elements per row: lane `(o, c)` of `src`
/// ([outer, n, inner]) becomes row `o * inner + c` of `z` ([outer * inner, n]).
fn fold_lanes(src: &[f64], z: &mut [f64], (_, n, inner): (usize, usize, usize), parallel: bool) {
    let (p, odd) = (n / 2, n % 2);
    let task = |lane: &mut Vec<f64>, x: &[f64], rows: &mut [f64]| {
        for (c, row) in rows.chunks_exact_mut(n).enumerate() {
            lane.clear();
            lane.extend(x.iter().skip(c).step_by(inner));
            let (head, mid, tail) = split3(lane, p, odd);
            let (sums, row_mid, diffs) = split3_mut(row, p, odd);
            row_mid.copy_from_slice(mid);
            for (((s, d), u), v) in sums.iter_mut().zip(diffs.iter_mut()).zip(head).zip(tail.iter().rev()) {
                *s = u + v;
                *d = u - v;
            }
        }
    };
    for_each_slab(src, z, n * inner, parallel, Vec::new, task);
}

/// [`unfold`] from the lane layout of [`fold_lanes`] back to [outer, n, inner].
fn unfold_lanes<R: Fn(f64) -> f64 + Sync>(
    wz: &[f64],
    dst: &mut [f64],
    (_, n, inner): (usize, usize, usize),
    offset: &[f64],
    round: &R,
    parallel: bool,
) {
    let (p, odd) = (n / 2, n % 2);
    let task = |lane: &mut Vec<f64>, rows: &[f64], out: &mut [f64]| {
        for (c, z) in rows.chunks_exact(n).enumerate() {
            lane.clear();
            lane.resize(n, 0.0);
            let (u, z_mid, v) = split3(z, p, odd);
            let (y_top, y_mid, y_bottom) = split3_mut(lane, p, odd);
            for (y, m) in y_mid.iter_mut().zip(z_mid) {
                *y = round(m + offset[p]);
            }
            let pairs = y_top.iter_mut().zip(y_bottom.iter_mut().rev()).zip(u.iter().zip(v));
            for (j, ((t, b), (a, d))) in pairs.enumerate() {
                *t = round(a + d + offset[j]);
                *b = round(a - d + offset[n - 1 - j]);
            }
            for (slot, value) in out.iter_mut().skip(c).step_by(inner).zip(lane.iter()) {
                *slot = *value;
            }
        }
    };
    for_each_slab(wz, dst, n * inner, parallel, Vec::new, task);
}

/// Calls `f(state, input, output)` on the matching `slab`-element pieces
/// of `src` and `dst` (the lines of one outer index), with a state per
/// worker made by `init`.
fn for_each_slab<S>(
    src: &[f64],
    dst: &mut [f64],
    slab: usize,
    parallel: bool,
    init: impl Fn() -> S + Sync + Send,
    f: impl Fn(&mut S, &[f64], &mut [f64]) + Sync + Send,
) {
    for_each_sized_chunk_init(dst, slab, parallel, init, |state, o, out| {
        f(state, &src[o * slab..(o + 1) * slab], out)
    });
}

/// `s` cut after `a` and after `a + b` elements: in folded coordinates the
/// sums, the middle sample and the differences.
#[inline]
fn split3<T>(s: &[T], a: usize, b: usize) -> (&[T], &[T], &[T]) {
    let (first, rest) = s.split_at(a);
    let (second, third) = rest.split_at(b);
    (first, second, third)
}

/// [`split3`] of a mutable slice.
#[inline]
fn split3_mut<T>(s: &mut [T], a: usize, b: usize) -> (&mut [T], &mut [T], &mut [T]) {
    let (first, rest) = s.split_at_mut(a);
    let (second, third) = rest.split_at_mut(b);
    (first, second, third)
}

/// `dst = M src` along the middle axis of `[outer, n, inner]`, `M` given by
/// its band blocks.
fn banded_product(src: &[f64], dst: &mut [f64], dims: (usize, usize, usize), blocks: &[BandBlock], parallel: bool) {
    use ndarray::linalg::general_mat_mul;
    let (outer, n, inner) = dims;
    let Ok(input) = ndarray::ArrayView3::from_shape(dims, src) else {
        return;
    };
    if inner >= 64 || outer == 1 {
        // out[o, block, :] = M_block @ in[o, lo..hi, :], one task per block.
        let task = |o: usize, block: &BandBlock, out: &mut [f64]| {
            let x = input
                .index_axis_move(Axis(0), o)
                .slice_axis_move(Axis(0), Slice::from(block.lo..block.lo + block.weights.ncols()));
            if let Ok(mut y) = ArrayViewMut2::from_shape((block.weights.nrows(), inner), out) {
                general_mat_mul(1.0, &block.weights, &x, 0.0, &mut y);
            }
        };
        // Split every slab at the block starts.
        let mut pieces: Vec<(usize, &BandBlock, &mut [f64])> = Vec::with_capacity(outer * blocks.len());
        for (o, mut slab) in dst.chunks_mut(n * inner).enumerate() {
            for block in blocks {
                let (piece, rest) = slab.split_at_mut(block.weights.nrows() * inner);
                pieces.push((o, block, piece));
                slab = rest;
            }
        }
        if parallel {
            map_items(pieces, |(o, block, out)| task(o, block, out));
        } else {
            pieces.into_iter().for_each(|(o, block, out)| task(o, block, out));
        }
    } else {
        // out[o.., block, c] = in[o.., lo..hi, c] @ M_block^T, over chunks of o.
        const OUTER_CHUNK: usize = 64;
        let task = |chunk: usize, out: &mut [f64]| {
            let o0 = chunk * OUTER_CHUNK;
            let rows = out.len() / (n * inner);
            let Ok(mut y) = ndarray::ArrayViewMut3::from_shape((rows, n, inner), out) else {
                return;
            };
            let x = input.slice_axis(Axis(0), Slice::from(o0..o0 + rows));
            for c in 0..inner {
                let xc: ArrayView2<'_, f64> = x.index_axis(Axis(2), c);
                let mut yc = y.index_axis_mut(Axis(2), c);
                for block in blocks {
                    let xb = xc.slice_axis(Axis(1), Slice::from(block.lo..block.lo + block.weights.ncols()));
                    let mut yb =
                        yc.slice_axis_mut(Axis(1), Slice::from(block.start..block.start + block.weights.nrows()));
                    general_mat_mul(1.0, &xb, &block.weights.t(), 0.0, &mut yb);
                }
            }
        };
        for_each_sized_chunk(dst, OUTER_CHUNK * n * inner, parallel, |chunk, out| task(chunk, out));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::with_threads;

    #[test]
    fn boundary_modes_extend_as_scipy_documents() {
        // a b c d = 0 1 2 3; SciPy's docs show each extension.
        let ext = |mode: BoundaryMode| -> Vec<Option<usize>> { (-4..8).map(|i| mode.source(i, 4)).collect() };
        let s = |v: &[usize]| v.iter().map(|&k| Some(k)).collect::<Vec<_>>();
        assert_eq!(ext(BoundaryMode::Reflect), s(&[3, 2, 1, 0, 0, 1, 2, 3, 3, 2, 1, 0]));
        assert_eq!(ext(BoundaryMode::Mirror), s(&[2, 3, 2, 1, 0, 1, 2, 3, 2, 1, 0, 1]));
        assert_eq!(ext(BoundaryMode::Nearest), s(&[0, 0, 0, 0, 0, 1, 2, 3, 3, 3, 3, 3]));
        assert_eq!(ext(BoundaryMode::Wrap), s(&[0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3]));
        assert_eq!(BoundaryMode::Constant(1.0).source(-1, 4), None);
        assert_eq!(BoundaryMode::Mirror.source(-3, 1), Some(0));
    }

    #[test]
    fn kernel_sums_to_one_and_has_scipy_radius() {
        let w = gaussian_kernel1d(2.0, 4.0);
        assert_eq!(w.len(), 9); // int(4 * 2 + 0.5) = 8
        let total = w[0] + 2.0 * w[1..].iter().sum::<f64>();
        assert!((total - 1.0).abs() < 1e-15);
    }

    #[test]
    fn matrix_and_direct_paths_agree() {
        let shape = [7, 40, 3];
        let src: Vec<f64> = (0..7 * 40 * 3).map(|k| ((k * 37 % 101) as f64).sin()).collect();
        let w = gaussian_kernel1d(5.0, 4.0); // radius 20
        for mode in [
            BoundaryMode::Reflect,
            BoundaryMode::Mirror,
            BoundaryMode::Nearest,
            BoundaryMode::Wrap,
            BoundaryMode::Constant(0.7),
        ] {
            for axis in 0..3 {
                let mut a = vec![0.0; src.len()];
                let mut b = vec![0.0; src.len()];
                let n = shape[axis];
                let (outer, inner) = crate::imageops::outer_inner(&shape, axis);
                let id = |v: f64| v;
                correlate_matrix(&src, &mut a, (outer, n, inner), &w, mode, &id, &mut Scratch::default());
                correlate_lanes(&src, &mut b, (outer, n, inner), &w, mode, &id, true);
                let err = a.iter().zip(&b).fold(0.0_f64, |m, (x, y)| m.max((x - y).abs()));
                assert!(err < 1e-13, "{mode:?} axis {axis}: {err}");
                correlate_rows(&src, &mut a, (outer, n, inner), &w, mode, &id, false);
                assert_eq!(a, b, "{mode:?} axis {axis}");
            }
        }
    }

    /// Uniform values in [-1, 2) from a seeded generator.
    fn random_values(len: usize, seed: u64) -> Vec<f64> {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Uniform};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let uniform = Uniform::new(-1.0, 2.0).unwrap();
        (0..len).map(|_| uniform.sample(&mut rng)).collect()
    }

    const ALL_MODES: [BoundaryMode; 5] = [
        BoundaryMode::Reflect,
        BoundaryMode::Mirror,
        BoundaryMode::Nearest,
        BoundaryMode::Wrap,
        BoundaryMode::Constant(0.7),
    ];

    #[test]
    fn fft_and_direct_paths_agree() {
        // Lines longer and shorter than the radius, odd and even, prime
        // periods (wrap on 31 and 17 samples), one and several lanes per row.
        let cases: [(&[usize], f64); 5] = [
            (&[9, 40, 3], 5.0),
            (&[31, 17, 2], 50.0),
            (&[2, 224, 1], 50.0),
            (&[64, 3, 5], 3.1),
            (&[8, 13, 40], 700.0),
        ];
        let mut worst = 0.0_f64;
        for (seed, &(shape, sigma)) in cases.iter().enumerate() {
            let src = random_values(shape.iter().product(), seed as u64);
            let w = gaussian_kernel1d(sigma, 4.0);
            for mode in ALL_MODES {
                for axis in 0..shape.len() {
                    let (n, (outer, inner)) = (shape[axis], crate::imageops::outer_inner(shape, axis));
                    if n < 2 {
                        continue;
                    }
                    let (mut a, mut b) = (vec![0.0; src.len()], vec![0.0; src.len()]);
                    let id = |v: f64| v;
                    correlate_fft(&src, &mut a, (outer, n, inner), &w, mode, &id, &mut Scratch::default());
                    correlate_lanes(&src, &mut b, (outer, n, inner), &w, mode, &id, true);
                    let err = a.iter().zip(&b).fold(0.0_f64, |m, (x, y)| m.max((x - y).abs()));
                    worst = worst.max(err);
                    // Values within [-1, 2): measured at most 7.3e-15.
                    assert!(err < 3e-14, "{shape:?} sigma {sigma} {mode:?} axis {axis}: {err}");
                }
            }
        }
        println!("fft against direct: largest difference {worst:.2e}");
    }

    /// The measurements behind [`choose_path`]: nanoseconds per output
    /// sample of each path, best of several runs, one thread.
    /// `cargo test --release --lib path_costs -- --ignored --nocapture`
    #[test]
    #[ignore = "a timing probe, not a check"]
    fn path_costs() {
        use std::time::Instant;
        let id = |v: f64| v;
        let mode = BoundaryMode::Constant(0.0);
        for n in [16, 32, 64, 112, 224, 448, 896] {
            for radius in [4, 8, 12, 16, 24, 32, 48, 64, 100, 200, 400] {
                let sigma = radius as f64 / 4.0;
                let shape = [n, n, 3];
                let src = random_values(n * n * 3, 1);
                let mut dst = vec![0.0; src.len()];
                let w = gaussian_kernel1d(sigma, 4.0);
                let mut line = String::new();
                for path in [Path::Direct, Path::Matrix, Path::Fft] {
                    if path == Path::Matrix && n > MATRIX_MAX_LEN {
                        continue;
                    }
                    let mut best = f64::INFINITY;
                    let mut scratch = Scratch {
                        sequential: true,
                        ..Scratch::default()
                    };
                    for _ in 0..3 {
                        let start = Instant::now();
                        for axis in 0..2 {
                            let (outer, inner) = crate::imageops::outer_inner(&shape, axis);
                            let dims = (outer, n, inner);
                            match path {
                                Path::Direct if inner >= ROW_MIN => {
                                    correlate_rows(&src, &mut dst, dims, &w, mode, &id, false)
                                }
                                Path::Direct => correlate_lanes(&src, &mut dst, dims, &w, mode, &id, false),
                                Path::Matrix => correlate_matrix(&src, &mut dst, dims, &w, mode, &id, &mut scratch),
                                Path::Fft => correlate_fft(&src, &mut dst, dims, &w, mode, &id, &mut scratch),
                            }
                        }
                        best = best.min(start.elapsed().as_secs_f64());
                    }
                    line += &format!(" {path:?} {:.1}", best * 1e9 / (2 * src.len()) as f64);
                }
                println!("n {n} radius {radius}:{line}");
            }
        }
    }

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let x = ArrayD::from_shape_fn(IxDyn(&[70, 61, 3]), |i| {
            ((i[0] * 31 + i[1] * 7 + i[2]) % 17) as f64 / 17.0
        });
        let run = |threads: usize, sigma: [f64; 3]| {
            with_threads(threads, || {
                gaussian_filter(x.view(), &sigma, BoundaryMode::Constant(0.0), 4.0)
            })
        };
        for sigma in [[1.5, 2.0, 0.0], [20.0, 35.0, 0.0], [4.0, 0.0, 1.0]] {
            let one = run(1, sigma).unwrap();
            for threads in [2, 3, 8] {
                assert_eq!(one, run(threads, sigma).unwrap(), "{sigma:?} {threads}");
            }
        }
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = ArrayD::<f64>::zeros(IxDyn(&[3, 4]));
        assert!(gaussian_filter(x.view(), &[1.0], BoundaryMode::Reflect, 4.0).is_err());
        assert!(gaussian_filter(x.view(), &[1.0, -1.0], BoundaryMode::Reflect, 4.0).is_err());
        assert!(gaussian_filter(x.view(), &[1.0, f64::NAN], BoundaryMode::Reflect, 4.0).is_err());
        assert!(gaussian_filter(x.view(), &[1.0, 1.0], BoundaryMode::Reflect, -1.0).is_err());
        let empty = ArrayD::<f64>::zeros(IxDyn(&[0, 4]));
        assert!(matches!(
            gaussian_filter(empty.view(), &[1.0, 1.0], BoundaryMode::Reflect, 4.0),
            Err(SaliencyError::EmptyInput { .. })
        ));
        assert!(gaussian_filter(x.view(), &[0.0, 0.0], BoundaryMode::Constant(0.0), 4.0).is_ok());
    }
}
