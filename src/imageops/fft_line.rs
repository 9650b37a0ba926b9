//! Correlation of the lines of an array with a long symmetric kernel through
//! the FFT: a cost per sample of O(log n) whatever the kernel's radius, with
//! the exact truncated kernel and SciPy's boundary modes.
//!
//! Under `reflect`, `mirror` and `wrap` the extended line is periodic (period
//! `2n`, `2n - 2`, `n`), so correlating it with the kernel equals a circular
//! correlation of one period with the kernel aliased (summed) modulo the
//! period. Under `constant` the correlation is a linear one with zeros beyond
//! the line, plus the constant times the weight of the taps outside it;
//! `nearest` is the same with the edge values in place of the constant.
//! Two lines go through one complex transform (one as the real part, one as
//! the imaginary part): the kernel is symmetric, so its spectrum is real and
//! keeps the two apart.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

use super::gaussian::BoundaryMode;
use crate::parallel::{for_each_sized_chunk, for_each_sized_chunk_init};

/// Lines transformed together by one task (an even number: two per transform).
const LANES: usize = 16;

/// The transforms and kernel spectrum for one line length, kernel and mode.
pub(crate) struct FftPlan {
    n: usize,
    weights: Vec<f64>,
    mode: BoundaryMode,
    len: usize,
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
    /// The kernel's spectrum over `len` points divided by `len` (the inverse
    /// transform is unnormalised).
    spectrum: Vec<f64>,
    /// Per output sample, the summed weight of the taps before the line's
    /// start and after its end (`constant` and `nearest` only).
    before: Vec<f64>,
    after: Vec<f64>,
}

impl FftPlan {
    /// Whether the plan was built for these arguments.
    pub(crate) fn fits(&self, n: usize, w: &[f64], mode: BoundaryMode) -> bool {
        self.n == n && self.mode == mode && self.weights == w
    }

    /// The plan for lines of length `n` (at least 2), the kernel `w` (centre
    /// first) and `mode`.
    pub(crate) fn new(n: usize, w: &[f64], mode: BoundaryMode, planner: &mut FftPlanner<f64>) -> Self {
        let r = w.len() - 1;
        let len = transform_len(n, r, mode);
        let kernel = match mode {
            BoundaryMode::Reflect | BoundaryMode::Mirror | BoundaryMode::Wrap => {
                // Every tap lands on the sample one period away: alias.
                let mut kernel = vec![0.0; len];
                kernel[0] += w[0];
                for (j, &wj) in w.iter().enumerate().skip(1) {
                    kernel[j % len] += wj;
                    kernel[(len - j % len) % len] += wj;
                }
                kernel
            }
            BoundaryMode::Constant(_) | BoundaryMode::Nearest => linear_kernel(n, w, len),
        };
        let forward = planner.plan_fft_forward(len);
        let inverse = planner.plan_fft_inverse(len);
        let spectrum = scaled_spectrum(&kernel, forward.as_ref());
        // suffix[k] = w[k] + ... + w[r], summed from the small far end.
        let mut suffix = vec![0.0; r + 2];
        for k in (0..=r).rev() {
            suffix[k] = suffix[k + 1] + w[k];
        }
        let tail = |k: usize| suffix[k.min(r + 1)];
        let (before, after) = match mode {
            BoundaryMode::Constant(_) | BoundaryMode::Nearest => (
                (0..n).map(|i| tail(i + 1)).collect(),
                (0..n).map(|i| tail(n - i)).collect(),
            ),
            _ => (Vec::new(), Vec::new()),
        };
        FftPlan {
            n,
            weights: w.to_vec(),
            mode,
            len,
            forward,
            inverse,
            spectrum,
            before,
            after,
        }
    }

    /// Correlates the lines along the middle axis of `src` ([outer, n,
    /// inner], row-major) into `dst`; when `inner > 1`, `lanes` holds the
    /// results in between, up to `LANES` lines interleaved ([outer, groups, n,
    /// width]) so that reading and writing both go along rows. `round` is
    /// applied to every output value.
    pub(crate) fn correlate<R: Fn(f64) -> f64 + Sync>(
        &self,
        src: &[f64],
        dst: &mut [f64],
        (outer, n, inner): (usize, usize, usize),
        round: &R,
        parallel: bool,
        lanes: &mut Vec<f64>,
    ) {
        let init = || {
            let scratch_len = self
                .forward
                .get_inplace_scratch_len()
                .max(self.inverse.get_inplace_scratch_len());
            (
                vec![Complex::new(0.0, 0.0); LANES / 2 * self.len],
                vec![Complex::new(0.0, 0.0); scratch_len],
            )
        };
        if inner == 1 {
            // The lines are contiguous: groups of `LANES` lines in place.
            let task = |state: &mut Buffers, chunk: usize, out: &mut [f64]| {
                let base = chunk * LANES * n;
                let read = |k: usize, i: usize| src[base + k * n + i];
                self.correlate_group(out.len() / n, read, out, (1, n), round, state);
            };
            for_each_sized_chunk_init(dst, LANES * n, parallel, init, task);
            return;
        }
        // Groups as wide as the rows when these are narrower than `LANES`.
        let width = LANES.min(inner);
        let groups = inner.div_ceil(width);
        lanes.resize(outer * groups * width * n, 0.0);
        let task = |state: &mut Buffers, chunk: usize, out: &mut [f64]| {
            let (o, first) = (chunk / groups, (chunk % groups) * width);
            let base = o * n * inner + first;
            let read = |k: usize, i: usize| src[base + i * inner + k];
            self.correlate_group(width.min(inner - first), read, out, (width, 1), round, state);
        };
        for_each_sized_chunk_init(lanes, width * n, parallel, init, task);
        let lanes = &lanes[..];
        for_each_sized_chunk(dst, n * inner, parallel, |o, out| {
            for (i, row) in out.chunks_exact_mut(inner).enumerate() {
                for (g, part) in row.chunks_mut(width).enumerate() {
                    let at = ((o * groups + g) * n + i) * width;
                    part.copy_from_slice(&lanes[at..at + part.len()]);
                }
            }
        });
    }

    /// Correlates `count` lines (at most `LANES`), sample `i` of line `k`
    /// read as `read(k, i)` and its result written to `out[i * si + k * sk]`.
    fn correlate_group<R: Fn(f64) -> f64>(
        &self,
        count: usize,
        read: impl Fn(usize, usize) -> f64,
        out: &mut [f64],
        (si, sk): (usize, usize),
        round: &R,
        (buf, scratch): &mut Buffers,
    ) {
        let (n, len) = (self.n, self.len);
        let pairs = count.div_ceil(2);
        let buf = &mut buf[..pairs * len];
        // Line 2p is the real part of transform p, line 2p + 1 (or zeros)
        // the imaginary part.
        for i in 0..n {
            for p in 0..pairs {
                let b = if 2 * p + 1 < count { read(2 * p + 1, i) } else { 0.0 };
                buf[p * len + i] = Complex::new(read(2 * p, i), b);
            }
        }
        for period in buf.chunks_exact_mut(len) {
            let (head, rest) = period.split_at_mut(n);
            match self.mode {
                BoundaryMode::Reflect => {
                    for (z, &v) in rest.iter_mut().zip(head.iter().rev()) {
                        *z = v;
                    }
                }
                BoundaryMode::Mirror => {
                    for (z, &v) in rest.iter_mut().zip(head[1..n - 1].iter().rev()) {
                        *z = v;
                    }
                }
                BoundaryMode::Wrap => {}
                BoundaryMode::Constant(_) | BoundaryMode::Nearest => rest.fill(Complex::new(0.0, 0.0)),
            }
        }
        // The edge values, for `nearest`, before the transform overwrites them.
        let edges: Vec<(Complex<f64>, Complex<f64>)> = match self.mode {
            BoundaryMode::Nearest => buf.chunks_exact(len).map(|p| (p[0], p[n - 1])).collect(),
            _ => Vec::new(),
        };
        self.forward.process_with_scratch(buf, scratch);
        for period in buf.chunks_exact_mut(len) {
            for (z, &s) in period.iter_mut().zip(&self.spectrum) {
                *z *= s;
            }
        }
        self.inverse.process_with_scratch(buf, scratch);
        // What lies beyond the line adds `before[i] * start + after[i] * end`.
        let zero = Complex::new(0.0, 0.0);
        let cval = match self.mode {
            BoundaryMode::Constant(c) => Complex::new(c, c),
            _ => zero,
        };
        for i in 0..n {
            let (before, after) = match self.mode {
                BoundaryMode::Constant(_) | BoundaryMode::Nearest => (self.before[i], self.after[i]),
                _ => (0.0, 0.0),
            };
            for p in 0..pairs {
                let (start, end) = match self.mode {
                    BoundaryMode::Nearest => edges[p],
                    _ => (cval, cval),
                };
                let z = buf[p * len + i] + start * before + end * after;
                out[i * si + 2 * p * sk] = round(z.re);
                if 2 * p + 1 < count {
                    out[i * si + (2 * p + 1) * sk] = round(z.im);
                }
            }
        }
    }
}

/// A task's transform buffer (`LANES / 2` periods) and the transforms' scratch.
type Buffers = (Vec<Complex<f64>>, Vec<Complex<f64>>);

/// The kernel `w` (centre first) as a circular kernel of length `len` (at
/// least `n + min(r, n - 1)`) for a linear correlation of lines of `n`
/// samples with zeros beyond them: taps further than `n - 1` from a sample
/// never reach the line and are left out.
pub(crate) fn linear_kernel(n: usize, w: &[f64], len: usize) -> Vec<f64> {
    let mut kernel = vec![0.0; len];
    kernel[0] = w[0];
    for (m, &wm) in w.iter().enumerate().take(n).skip(1) {
        kernel[m] = wm;
        kernel[len - m] = wm;
    }
    kernel
}

/// The spectrum of a real symmetric circular kernel (real itself) divided by
/// its length, the inverse transform being unnormalised.
pub(crate) fn scaled_spectrum(kernel: &[f64], forward: &dyn Fft<f64>) -> Vec<f64> {
    let mut buf: Vec<Complex<f64>> = kernel.iter().map(|&k| Complex::new(k, 0.0)).collect();
    let mut scratch = vec![Complex::new(0.0, 0.0); forward.get_inplace_scratch_len()];
    forward.process_with_scratch(&mut buf, &mut scratch);
    let scale = 1.0 / kernel.len() as f64;
    buf.iter().map(|c| c.re * scale).collect()
}

/// The transform length for lines of length `n`, kernel radius `r`: one
/// period of the extended line, or (`constant`, `nearest`) room for the line
/// and the kernel's reach into the zeros beyond it, rounded up to a fast
/// size ([`fast_len_at_least`]).
pub(crate) fn transform_len(n: usize, r: usize, mode: BoundaryMode) -> usize {
    match mode {
        BoundaryMode::Reflect => 2 * n,
        BoundaryMode::Mirror => 2 * n - 2,
        BoundaryMode::Wrap => n,
        BoundaryMode::Constant(_) | BoundaryMode::Nearest => fast_len_at_least(n + r.min(n - 1)),
    }
}

/// The smallest transform length at least `m` of the form `2^a 3^b`, times
/// at most one factor 5 or 7. Other lengths with factors 5 and 7 (250, 343, 375,
/// 400, ...) took 1.5 to 2.7 times as long per sample as these in a
/// measurement of the FFT library's transforms between 240 and 3600 points
/// (AVX2): 3.9 to 4.3 ns per sample for 250, 375 and 1875 against 1.4 to 2.6
/// for the lengths kept, so rounding up past them is cheaper.
pub(crate) fn fast_len_at_least(m: usize) -> usize {
    (m.max(1)..)
        .find(|&k| {
            let mut k = k;
            while k % 2 == 0 {
                k /= 2;
            }
            while k % 3 == 0 {
                k /= 3;
            }
            k == 1 || k == 5 || k == 7
        })
        .unwrap_or(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fast_sizes() {
        assert_eq!(fast_len_at_least(11), 12);
        assert_eq!(fast_len_at_least(423), 432);
        assert_eq!(fast_len_at_least(1), 1);
        // 245 = 5 7^2 and 250 = 2 5^3 are skipped.
        assert_eq!(fast_len_at_least(244), 252);
        // 1800 = 2^3 3^2 5^2 and 1890 = 2 3^3 5 7 are skipped.
        assert_eq!(fast_len_at_least(1793), 1920);
    }
}
