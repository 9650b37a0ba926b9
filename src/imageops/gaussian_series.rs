//! `scipy.ndimage.gaussian_filter(x, (s, s, 0), mode="constant")` of one
//! image at many sigmas `s` (the path of Blur IG), each result as the
//! one-off [`gaussian_filter`](super::gaussian_filter) gives it.
//!
//! Where the kernel is wide enough (radius [`SERIES_FFT_RADIUS`] and up, on
//! lines long enough for the FFT), both axis passes go through the FFT. The
//! first pass (along the height) of every sigma starts from the same lines,
//! the columns of `x`: their spectra are computed once, so each blur costs
//! one inverse transform per column instead of a forward and an inverse
//! one. The column spectra come in one or two transform lengths (sets):
//! one long enough for the widest kernel (at most `2 h - 1` rounded up to a
//! fast size), and a shorter one for the narrower kernels where that saves
//! enough transform work; a longer zero padding leaves the linear
//! correlation exact. The second pass reads the first's result rounded to
//! the element type, as SciPy stores it, so it is transformed per sigma.
//! Sigmas with narrower kernels are filtered one by one.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::fft_line::{fast_len_at_least, linear_kernel, scaled_spectrum};
use super::gaussian::{BoundaryMode, FFT_MIN_LEN, Scratch, filter_f64_with, gaussian_kernel1d, round_to};
use crate::float::Float;
use crate::parallel::for_each_sized_chunk_init;

/// Columns per block of the first pass (two per transform): the first pass
/// writes its result block by block, rows of `LANES` values, so that both
/// passes read and write along rows.
const LANES: usize = 16;
const PAIRS: usize = LANES / 2;

/// Kernels of at least this radius go through the FFT in a series (a
/// one-off filter needs twice the radius to gain from it): the column
/// spectra are already there and the narrow kernels get a first-pass
/// length of their own. Measured on Blur IG's 200 blurs of a 224 x 224 x 3
/// image (one thread, fastest of 7 per pair of sigmas): 184, 184, 185 and
/// 195 ms in all with 8, 12, 16 and 24; at radius 12 to 22 a pair of blurs
/// took 1.6 ms through the FFT against 3.1 to 4.3 ms through the banded
/// product.
const SERIES_FFT_RADIUS: usize = 12;

/// The Gaussian blurs of one image over its first two axes.
pub(crate) struct GaussianSeries {
    x: Vec<f64>,
    shape: Vec<usize>,
    truncate: f64,
    /// Height, row length (`width * channels`), width and channels.
    h: usize,
    m: usize,
    w: usize,
    c: usize,
    /// The first pass's column spectra, by transform length, shortest first
    /// (none when no sigma takes the FFT path).
    sets: Vec<ColumnSet>,
    /// The second pass's transforms, by length.
    plans_b: Vec<LinePlan>,
}

/// The spectra of `x`'s columns at one transform length, for the kernels
/// up to a radius.
struct ColumnSet {
    /// The widest kernel radius the transforms have room for (wider ones
    /// alias onto the line).
    radius: usize,
    len: usize,
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
    /// Two columns per transform (`2 p` the real part, `2 p + 1` the
    /// imaginary part), [blocks][PAIRS][len]. The columns are in planar
    /// order (every column of channel 0, then of channel 1, ...), so that
    /// the second pass finds each channel's row contiguous.
    columns: Vec<Complex<f64>>,
}

/// A transform length with its forward and inverse transforms.
type LinePlan = (usize, Arc<dyn Fft<f64>>, Arc<dyn Fft<f64>>);

/// What one thread needs to blur: the first pass's result, transform
/// buffers and the one-by-one filter's buffers.
#[derive(Default)]
pub(crate) struct SeriesWorkspace<F: Float> {
    /// Run on the calling thread (the caller parallelises).
    sequential: bool,
    scratch: Scratch,
    /// The first pass's results, stored in the element type as SciPy
    /// stores them, [blocks][blurs][h][LANES].
    first: Vec<F>,
    buffers: Buffers,
}

impl<F: Float> SeriesWorkspace<F> {
    /// A workspace; `sequential`: run on the calling thread.
    pub(crate) fn new(sequential: bool) -> Self {
        SeriesWorkspace {
            sequential,
            ..Self::default()
        }
    }

    /// Whether to run on the calling thread from now on (a workspace kept
    /// across batches of different sizes).
    pub(crate) fn set_sequential(&mut self, sequential: bool) {
        self.sequential = sequential;
    }
}

/// A transform buffer, the transforms' scratch and a group of rows.
#[derive(Default)]
struct Buffers {
    data: Vec<Complex<f64>>,
    scratch: Vec<Complex<f64>>,
    rows: Vec<f64>,
}

impl Buffers {
    fn sized(data: usize, scratch: usize) -> Self {
        let zero = Complex::new(0.0, 0.0);
        Buffers {
            data: vec![zero; data],
            scratch: vec![zero; scratch],
            rows: Vec::new(),
        }
    }

    fn ensure(&mut self, data: usize, scratch: usize) {
        let zero = Complex::new(0.0, 0.0);
        if self.data.len() < data {
            self.data.resize(data, zero);
        }
        if self.scratch.len() < scratch {
            self.scratch.resize(scratch, zero);
        }
    }

    fn ensure_rows(&mut self, len: usize) {
        if self.rows.len() < len {
            self.rows.resize(len, 0.0);
        }
    }
}

impl GaussianSeries {
    /// The series for `x` (row-major, `shape` = `[h, w]` or `[h, w, c]`),
    /// ready for the sigmas `sigmas` (others are filtered one by one).
    pub(crate) fn new(x: Vec<f64>, shape: &[usize], sigmas: impl IntoIterator<Item = f64>, truncate: f64) -> Self {
        let (h, w) = (shape[0], shape.get(1).copied().unwrap_or(1));
        let c = shape.get(2).copied().unwrap_or(1);
        let m = w * c;
        let mut series = GaussianSeries {
            x,
            shape: shape.to_vec(),
            truncate,
            h,
            m,
            w,
            c,
            sets: Vec::new(),
            plans_b: Vec::new(),
        };
        let mut planner = FftPlanner::new();
        // How many of the series' kernels have each radius (one entry per
        // distinct radius, however many steps: 94 for Blur IG's defaults).
        let mut radii = std::collections::BTreeMap::new();
        for s in sigmas {
            if let Some((radius, len_b)) = series.fft_radius_len_b(s) {
                *radii.entry(radius).or_insert(0_usize) += 1;
                if !series.plans_b.iter().any(|(len, _, _)| *len == len_b) {
                    let forward = planner.plan_fft_forward(len_b);
                    let inverse = planner.plan_fft_inverse(len_b);
                    series.plans_b.push((len_b, forward, inverse));
                }
            }
        }
        for radius in set_radii(h, &radii) {
            let len = first_len(h, radius);
            let forward = planner.plan_fft_forward(len);
            let inverse = planner.plan_fft_inverse(len);
            let columns = series.transform_columns(len, forward.as_ref());
            series.sets.push(ColumnSet {
                radius,
                len,
                forward,
                inverse,
                columns,
            });
        }
        series
    }

    /// The kernel radius and the second pass's transform length for
    /// `sigma`, when both passes of its blur go through the FFT.
    fn fft_radius_len_b(&self, sigma: f64) -> Option<(usize, usize)> {
        if self.shape.len() < 2 || sigma <= 1e-15 {
            return None;
        }
        let radius = (self.truncate * sigma + 0.5) as usize;
        (radius >= SERIES_FFT_RADIUS && self.h.min(self.w) >= FFT_MIN_LEN)
            .then(|| (radius, fast_len_at_least(self.w + radius.min(self.w - 1))))
    }

    /// The spectra of `x`'s columns over `len` points, block by block.
    fn transform_columns(&self, len: usize, forward: &dyn Fft<f64>) -> Vec<Complex<f64>> {
        let (h, m, w, c, x) = (self.h, self.m, self.w, self.c, &self.x);
        let blocks = m.div_ceil(LANES);
        let zero = Complex::new(0.0, 0.0);
        let mut columns = vec![zero; blocks * PAIRS * len];
        let scratch_len = forward.get_inplace_scratch_len();
        for_each_sized_chunk_init(
            &mut columns,
            PAIRS * len,
            true,
            || vec![zero; scratch_len],
            |scratch, b, block| {
                let lanes = LANES.min(m - b * LANES);
                let pairs = lanes.div_ceil(2);
                let block = &mut block[..pairs * len];
                // Planar column `k` (channel `k / w`, column `k % w`) is
                // column `(k % w) * c + k / w` of `x`.
                let sources: Vec<usize> = (b * LANES..b * LANES + lanes).map(|k| (k % w) * c + k / w).collect();
                for i in 0..h {
                    let row = &x[i * m..(i + 1) * m];
                    for (l, &k) in sources.iter().enumerate() {
                        let z = &mut block[(l / 2) * len + i];
                        if l % 2 == 0 { z.re = row[k] } else { z.im = row[k] }
                    }
                }
                forward.process_with_scratch(block, scratch);
            },
        );
        columns
    }

    /// Blurs `x` with `sigma` into `out` (`x`'s length), each value rounded
    /// to `F` as SciPy stores it.
    #[cfg(test)]
    pub(crate) fn blur<F: Float>(&self, sigma: f64, out: &mut [F], ws: &mut SeriesWorkspace<F>) {
        self.blur_each(&[sigma], &mut [out], ws);
    }

    /// The first pass's column set (the shortest with room for the kernel)
    /// and the second pass's plan for `sigma`, when both passes of its blur
    /// go through the FFT.
    fn plans(&self, sigma: f64) -> Option<(usize, &LinePlan)> {
        let (radius, len_b) = self.fft_radius_len_b(sigma)?;
        let set = self.sets.iter().position(|set| radius <= set.radius)?;
        let plan = self.plans_b.iter().find(|(len, _, _)| *len == len_b)?;
        Some((set, plan))
    }

    /// Blurs `x` with each of `sigmas` into the `outs` at the same index
    /// (`x`'s length each), each value rounded to `F` as SciPy stores it.
    /// The blurs on the FFT path share one read of the column spectra.
    pub(crate) fn blur_each<F: Float>(&self, sigmas: &[f64], outs: &mut [&mut [F]], ws: &mut SeriesWorkspace<F>) {
        let fft: Vec<(usize, usize, &LinePlan, Vec<f64>)> = sigmas
            .iter()
            .enumerate()
            .filter_map(|(k, &s)| {
                self.plans(s)
                    .map(|(set, plan)| (k, set, plan, gaussian_kernel1d(s, self.truncate)))
            })
            .collect();
        // Set by set: the first pass of the set's blurs (one read of its
        // column spectra for all), then their second passes.
        for (index, set) in self.sets.iter().enumerate() {
            let blurs: Vec<_> = fft.iter().filter(|(_, s, _, _)| *s == index).collect();
            if blurs.is_empty() {
                continue;
            }
            let spectra: Vec<Vec<f64>> = blurs
                .iter()
                .map(|(_, _, _, w)| scaled_spectrum(&linear_kernel(self.h, w, set.len), set.forward.as_ref()))
                .collect();
            self.first_pass::<F>(set, &spectra, ws);
            for (slot, (k, _, (len_b, forward_b, inverse_b), w)) in blurs.iter().enumerate() {
                let spectrum_b = scaled_spectrum(&linear_kernel(self.w, w, *len_b), forward_b.as_ref());
                let pass = SecondPass {
                    len: *len_b,
                    forward: forward_b.as_ref(),
                    inverse: inverse_b.as_ref(),
                    spectrum: &spectrum_b,
                    slot,
                    slots: blurs.len(),
                };
                if let Some(out) = outs.get_mut(*k) {
                    self.second_pass(&pass, out, ws);
                }
            }
        }
        for (k, (&sigma, out)) in sigmas.iter().zip(outs.iter_mut()).enumerate() {
            if fft.iter().any(|(j, _, _, _)| *j == k) {
                continue;
            }
            ws.scratch.sequential = ws.sequential;
            let sigmas = [sigma, sigma, 0.0];
            let blurred = filter_f64_with(
                &self.x,
                &self.shape,
                &sigmas[..self.shape.len()],
                BoundaryMode::Constant(0.0),
                self.truncate,
                round_to::<F>,
                &mut ws.scratch,
            );
            out.iter_mut()
                .zip(blurred)
                .for_each(|(o, v)| *o = F::from_f64_lossy(*v));
        }
    }

    /// Along the height, for each kernel spectrum of `spectra`: each
    /// block's column spectra times the kernel's, transformed back, rounded
    /// to `F`, into `ws.first` as [blocks][spectra][h][LANES]. A block's
    /// column spectra are read from memory once for all kernels.
    fn first_pass<F: Float>(&self, set: &ColumnSet, spectra: &[Vec<f64>], ws: &mut SeriesWorkspace<F>) {
        let (h, m, len, inverse) = (self.h, self.m, set.len, set.inverse.as_ref());
        let blocks = m.div_ceil(LANES);
        let per_block = spectra.len() * h * LANES;
        ws.first.resize(blocks * per_block, F::zero());
        let scratch_len = inverse.get_inplace_scratch_len();
        let task = |bufs: &mut Buffers, b: usize, out: &mut [F]| {
            let pairs = LANES.min(m - b * LANES).div_ceil(2);
            let src = &set.columns[b * PAIRS * len..(b * PAIRS + pairs) * len];
            for (spectrum, out) in spectra.iter().zip(out.chunks_exact_mut(h * LANES)) {
                let data = &mut bufs.data[..pairs * len];
                for (d, s) in data.chunks_exact_mut(len).zip(src.chunks_exact(len)) {
                    for ((z, &v), &k) in d.iter_mut().zip(s).zip(spectrum) {
                        *z = v * k;
                    }
                }
                inverse.process_with_scratch(data, &mut bufs.scratch[..scratch_len]);
                for (i, row) in out.chunks_exact_mut(LANES).enumerate() {
                    for (p, two) in row.chunks_exact_mut(2).take(pairs).enumerate() {
                        let z = data[p * len + i];
                        two[0] = F::from_f64_lossy(z.re);
                        two[1] = F::from_f64_lossy(z.im);
                    }
                }
            }
        };
        if ws.sequential {
            ws.buffers.ensure(PAIRS * len, scratch_len);
            for (b, out) in ws.first.chunks_mut(per_block).enumerate() {
                task(&mut ws.buffers, b, out);
            }
        } else {
            let init = || Buffers::sized(PAIRS * len, scratch_len);
            for_each_sized_chunk_init(&mut ws.first, per_block, true, init, task);
        }
    }

    /// Along the width: the lines of a group of rows of `ws.first` (two
    /// rows when the channel count is odd, so that the lines pair up),
    /// correlated through the FFT and written to `out` as `F`.
    fn second_pass<F: Float>(&self, pass: &SecondPass<'_>, out: &mut [F], ws: &mut SeriesWorkspace<F>) {
        let (h, m, w, c, len) = (self.h, self.m, self.w, self.c, pass.len);
        let group = if c % 2 == 0 { 1 } else { 2 };
        let pairs_max = (group * c).div_ceil(2);
        let scratch_len = pass
            .forward
            .get_inplace_scratch_len()
            .max(pass.inverse.get_inplace_scratch_len());
        let first = &ws.first;
        // Row `i`'s values of block `blk` start at `origin + blk *
        // block_stride + i * LANES`.
        let block_stride = pass.slots * h * LANES;
        let origin = pass.slot * h * LANES;
        let zero = Complex::new(0.0, 0.0);
        let task = |bufs: &mut Buffers, g: usize, rows_out: &mut [F]| {
            let rows = rows_out.len() / m;
            let pairs = (rows * c).div_ceil(2);
            // The group's rows in planar order, gathered from the first
            // pass's blocks (loops of a fixed length, which compile to a few
            // vector moves).
            let gathered = &mut bufs.rows[..rows * m];
            for (r, row) in gathered.chunks_exact_mut(m).enumerate() {
                let base = origin + (g * group + r) * LANES;
                for (blk, part) in row.chunks_mut(LANES).enumerate() {
                    let at = base + blk * block_stride;
                    for (d, &v) in part.iter_mut().zip(&first[at..at + LANES]) {
                        *d = v.as_f64();
                    }
                }
            }
            let gathered = &bufs.rows[..rows * m];
            let data = &mut bufs.data[..pairs * len];
            // Line q (row q / c, channel q % c) is contiguous in `gathered`;
            // it is the real part of transform q / 2 when q is even, else
            // its imaginary part.
            let line = |q: usize| (q < rows * c).then(|| &gathered[q * w..(q + 1) * w]);
            for (p, period) in data.chunks_exact_mut(len).enumerate() {
                let (head, pad) = period.split_at_mut(w);
                match (line(2 * p), line(2 * p + 1)) {
                    (Some(a), Some(b)) => {
                        for ((z, &re), &im) in head.iter_mut().zip(a).zip(b) {
                            *z = Complex::new(re, im);
                        }
                    }
                    (Some(a), None) => {
                        for (z, &re) in head.iter_mut().zip(a) {
                            *z = Complex::new(re, 0.0);
                        }
                    }
                    _ => head.fill(zero),
                }
                pad.fill(zero);
            }
            let scratch = &mut bufs.scratch[..scratch_len];
            pass.forward.process_with_scratch(data, scratch);
            for period in data.chunks_exact_mut(len) {
                for (z, &k) in period.iter_mut().zip(pass.spectrum) {
                    *z *= k;
                }
            }
            pass.inverse.process_with_scratch(data, scratch);
            let data = &bufs.data[..pairs * len];
            for (r, row_out) in rows_out.chunks_exact_mut(m).enumerate() {
                interleave_row(row_out, data, len, r * c, c);
            }
        };
        if ws.sequential {
            let mut bufs = std::mem::take(&mut ws.buffers);
            bufs.ensure(pairs_max * len, scratch_len);
            bufs.ensure_rows(group * m);
            for (g, rows_out) in out.chunks_mut(group * m).enumerate() {
                task(&mut bufs, g, rows_out);
            }
            ws.buffers = bufs;
        } else {
            let init = || {
                let mut bufs = Buffers::sized(pairs_max * len, scratch_len);
                bufs.ensure_rows(group * m);
                bufs
            };
            for_each_sized_chunk_init(out, group * m, true, init, task);
        }
    }
}

/// The first pass's transform length for kernels up to `radius` on columns
/// of `h` samples.
fn first_len(h: usize, radius: usize) -> usize {
    fast_len_at_least(h + radius.min(h - 1))
}

/// The radii the first pass's column sets are built for, given how many of
/// the series' kernels on the FFT path have each radius: the widest, and a
/// shorter set where that saves enough transform work (estimated as
/// `len log2 len` per blur) to be worth its spectra's memory (at most that
/// of the widest set). Linear in the number of distinct radii.
fn set_radii(h: usize, radii: &std::collections::BTreeMap<usize, usize>) -> Vec<usize> {
    let Some((&widest, _)) = radii.last_key_value() else {
        return Vec::new();
    };
    let cost = |r: usize| {
        let len = first_len(h, r) as f64;
        len * len.log2()
    };
    let total: usize = radii.values().sum();
    let alone = total as f64 * cost(widest);
    // A short set for the radii up to `r`: `below` kernels on it, the rest
    // on the widest set.
    let mut below = 0;
    let mut best: Option<(f64, usize)> = None;
    for (&r, &count) in radii {
        below += count;
        if first_len(h, r) < first_len(h, widest) {
            let work = below as f64 * cost(r) + (total - below) as f64 * cost(widest);
            if best.is_none_or(|(least, _)| work < least) {
                best = Some((work, r));
            }
        }
    }
    match best {
        // A tenth less work at least, else one set.
        Some((with_short, r)) if with_short < 0.9 * alone => vec![r, widest],
        _ => vec![widest],
    }
}

/// Writes the lines `first_line..first_line + c` of `data` (line q: the
/// real part of period q / 2 when q is even, else its imaginary part) as the
/// channels of `row` (interleaved, `c` values per pixel), rounded to `F`.
fn interleave_row<F: Float>(row: &mut [F], data: &[Complex<f64>], len: usize, first_line: usize, c: usize) {
    let w = row.len() / c;
    let line = |q: usize| (&data[(q / 2) * len..(q / 2) * len + w], q % 2 == 1);
    match c {
        // The common cases as fixed-size loops, which compile to straight
        // stores instead of a strided walk per channel.
        1 => write_pixels::<F, 1>(row, [line(first_line)]),
        3 => write_pixels::<F, 3>(row, [line(first_line), line(first_line + 1), line(first_line + 2)]),
        _ => {
            for ch in 0..c {
                let (values, imaginary) = line(first_line + ch);
                for (o, z) in row[ch..].iter_mut().step_by(c).zip(values) {
                    *o = F::from_f64_lossy(if imaginary { z.im } else { z.re });
                }
            }
        }
    }
}

/// `row[j * C + ch]` = the real or imaginary part (`lines[ch].1`) of
/// `lines[ch].0[j]`, rounded to `F`.
fn write_pixels<F: Float, const C: usize>(row: &mut [F], lines: [(&[Complex<f64>], bool); C]) {
    for (j, pixel) in row.chunks_exact_mut(C).enumerate() {
        for (o, (values, imaginary)) in pixel.iter_mut().zip(&lines) {
            let z = values[j];
            *o = F::from_f64_lossy(if *imaginary { z.im } else { z.re });
        }
    }
}

/// The second pass's transforms and kernel spectrum for one sigma.
struct SecondPass<'a> {
    len: usize,
    forward: &'a dyn Fft<f64>,
    inverse: &'a dyn Fft<f64>,
    spectrum: &'a [f64],
    /// The blur's place among the first pass's results, and their number.
    slot: usize,
    slots: usize,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::imageops::gaussian::gaussian_filter_checked;
    use ndarray::{ArrayD, IxDyn};

    /// Seeded values in [-1, 2).
    fn values(len: usize, seed: u64) -> Vec<f64> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 11) as f64 / (1u64 << 53) as f64 * 3.0 - 1.0
            })
            .collect()
    }

    /// The largest absolute difference between `out` and the one-off
    /// filter's blur of `x` at `sigma` over the first two axes.
    fn one_off_error(x: ndarray::ArrayViewD<'_, f64>, sigma: f64, out: &[f64]) -> f64 {
        let mut sigmas = vec![sigma, sigma];
        sigmas.resize(x.ndim(), 0.0);
        let expected = gaussian_filter_checked(x, &sigmas, BoundaryMode::Constant(0.0), 4.0);
        out.iter()
            .zip(expected.iter())
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max)
    }

    /// Blurs `x` with each pair of sigmas in one call (Blur IG's calls) and
    /// checks both results against the one-off filter; the largest error.
    fn pairs_error(
        series: &GaussianSeries,
        x: ndarray::ArrayViewD<'_, f64>,
        pairs: &[[f64; 2]],
        ws: &mut SeriesWorkspace<f64>,
    ) -> f64 {
        let mut max = 0.0_f64;
        for &[s0, s1] in pairs {
            let (mut a, mut b) = (vec![0.0; x.len()], vec![0.0; x.len()]);
            series.blur_each(&[s0, s1], &mut [&mut a, &mut b], ws);
            for (out, s) in [(&a, s0), (&b, s1)] {
                let e = one_off_error(x.view(), s, out);
                // Measured at most 7.8e-16 (values of order 1).
                assert!(e < 5e-15, "pair {s0}, {s1}: sigma {s}: {e:e}");
                max = max.max(e);
            }
        }
        max
    }

    /// Every blur of the series equals the one-off filter (SciPy's order of
    /// passes and roundings): shapes with odd and even heights and channel
    /// counts, sigmas on the FFT path and off it, both element types, on the
    /// calling thread and in parallel.
    #[test]
    fn series_equals_one_off_filter() {
        let shapes: [&[usize]; 5] = [
            &[131, 128, 3],
            &[128, 140],
            &[133, 129, 1],
            &[128, 130, 2],
            &[140, 128, 5],
        ];
        let sigmas = [0.0, 2.0, 5.9, 6.01, 10.0, 33.3, 50.0, 80.0];
        let (mut max64, mut max32) = (0.0_f64, 0.0_f32);
        for (k, shape) in shapes.iter().enumerate() {
            let len: usize = shape.iter().product();
            let x = values(len, k as u64 + 1);
            let series = GaussianSeries::new(x.clone(), shape, sigmas, 4.0);
            let view = ndarray::ArrayViewD::from_shape(IxDyn(shape), &x).unwrap();
            let x32: ArrayD<f32> = view.mapv(|v| v as f32);
            let series32 = GaussianSeries::new(x32.iter().map(|&v| f64::from(v)).collect(), shape, sigmas, 4.0);
            for sequential in [true, false] {
                let mut ws = SeriesWorkspace::<f64>::new(sequential);
                let mut ws32 = SeriesWorkspace::<f32>::new(sequential);
                for &s in &sigmas {
                    let mut sig = vec![s, s];
                    sig.resize(shape.len(), 0.0);
                    let mut out = vec![0.0_f64; len];
                    series.blur(s, &mut out, &mut ws);
                    let worst = one_off_error(view.view(), s, &out);
                    // Measured at most 6.1e-16 (values of order 1).
                    assert!(worst < 5e-15, "{shape:?} sigma {s}: {worst:e}");
                    max64 = max64.max(worst);

                    let expected = gaussian_filter_checked(x32.view(), &sig, BoundaryMode::Constant(0.0), 4.0);
                    let mut out = vec![0.0_f32; len];
                    series32.blur(s, &mut out, &mut ws32);
                    // The same float32 roundings; a sum within 1e-15 of a
                    // tie may round the other way: one ulp at most.
                    let worst = out
                        .iter()
                        .zip(expected.iter())
                        .map(|(a, b)| (a - b).abs() / b.abs().max(1e-30))
                        .fold(0.0_f32, f32::max);
                    assert!(worst <= 2.0 * f32::EPSILON, "{shape:?} sigma {s} f32: {worst:e}");
                    max32 = max32.max(worst);
                }
            }
        }
        println!("series against one-off filter: f64 {max64:e}, f32 {max32:e}");
    }

    /// Blur IG's calls: two sigmas at once (one read of the column spectra
    /// for both, or one of them off the FFT path), and sigmas the series
    /// was not built for, wider than its widest kernel (the first pass's
    /// transforms are too short for them: they must take the one-off path).
    #[test]
    fn pairs_and_unplanned_sigmas_equal_one_off_filter() {
        let shape: &[usize] = &[131, 129, 3];
        let len: usize = shape.iter().product();
        let x = values(len, 7);
        let view = ndarray::ArrayViewD::from_shape(IxDyn(shape), &x).unwrap();
        // Radius 10 (direct) then 12 (FFT) in one pair; both FFT; both direct.
        let pairs = [[2.5, 3.0], [10.0, 10.01], [2.0, 2.01]];
        let series = GaussianSeries::new(x.clone(), shape, pairs.iter().flatten().copied(), 4.0);
        let mut max = 0.0_f64;
        for sequential in [true, false] {
            let mut ws = SeriesWorkspace::<f64>::new(sequential);
            max = max.max(pairs_error(&series, view.view(), &pairs, &mut ws));
            // Built for radii up to 40 (sigma 10.01): first-pass transforms
            // of 180 = fast(131 + 40) points. Sigmas 12.4 and 12.7 (radii 50
            // and 51) share radius 40's second-pass length (fast(129 + r) =
            // 180) but need 181 and 182 points in the first pass (without
            // the check the result is off by 7.8e-6); sigmas 30 and 50 have
            // no second-pass plan at all.
            for s in [12.4, 12.7, 30.0, 50.0] {
                let mut out = vec![0.0; len];
                series.blur(s, &mut out, &mut ws);
                let e = one_off_error(view.view(), s, &out);
                assert!(e < 5e-15, "unplanned sigma {s}: {e:e}");
                max = max.max(e);
            }
        }
        println!("pairs and unplanned sigmas against one-off filter: {max:e}");
    }

    /// A series of many blurs (Blur IG with many steps) is planned in time
    /// linear in its sigmas: the column sets are chosen from the distinct
    /// radii (a choice over every pair of sigmas took hours here).
    #[test]
    fn many_sigmas_are_planned_from_distinct_radii() {
        let shape: &[usize] = &[224, 224, 1];
        let x = values(224 * 224, 5);
        let sigmas = (0..400_000).map(|i| 50.0 * i as f64 / 400_000.0);
        let series = GaussianSeries::new(x, shape, sigmas, 4.0);
        // Radii 12 to 200: 336 points up to radius 112 (the estimated work
        // 0.864 of one set's, by the same sum in Python), 432 beyond.
        let sets: Vec<(usize, usize)> = series.sets.iter().map(|set| (set.radius, set.len)).collect();
        assert_eq!(sets, [(112, 336), (200, 432)]);
    }

    /// Kernels narrow and wide in one series: the narrow ones get column
    /// spectra of a shorter length of their own (a second set), and one call
    /// may blur with both sets.
    #[test]
    fn two_column_sets_equal_one_off_filter() {
        let shape: &[usize] = &[130, 128, 3];
        let len: usize = shape.iter().product();
        let x = values(len, 11);
        let view = ndarray::ArrayViewD::from_shape(IxDyn(shape), &x).unwrap();
        // Radii 12 and 120: transforms of fast(130 + 12) = 144 and
        // fast(130 + 120) = 252 points; the short set saves a quarter of the
        // estimated first-pass work.
        let series = GaussianSeries::new(x.clone(), shape, [3.0, 3.01, 30.0, 30.01], 4.0);
        let lens: Vec<usize> = series.sets.iter().map(|set| set.len).collect();
        assert_eq!(lens, [144, 252]);
        let mut max = 0.0_f64;
        for sequential in [true, false] {
            let mut ws = SeriesWorkspace::<f64>::new(sequential);
            max = max.max(pairs_error(
                &series,
                view.view(),
                &[[3.0, 30.0], [30.01, 3.01]],
                &mut ws,
            ));
        }
        println!("two column sets against one-off filter: {max:e}");
    }
}
