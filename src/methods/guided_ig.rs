//! Guided Integrated Gradients
//! ([Kapishnikov et al., 2021](https://arxiv.org/abs/2106.09788)).

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::core::{CoreSaliency, Progress, check_finite, check_input, check_positive};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::quantile::select;
use crate::model::{CallModelFunction, OutputKey, call_model};

/// Guided Integrated Gradients: integrated gradients along an adaptive path
/// that, at every step, moves first the features whose gradient is smallest
/// in magnitude.
///
/// Matches `saliency.core.GuidedIG` of PAIR saliency 0.2.1, computed in
/// `f64` whatever `F` is (the reference converts to `float64` too). Step
/// `t = 1..=steps` aims at the L1 distance `(1 - t / steps)` of the total
/// from the input; every feature stays within `max_dist` (in path fraction
/// `alpha`) of the straight line. Within a step, repeatedly: features that
/// fell behind `alpha - max_dist` are brought up to it; among the features
/// not yet at `alpha + max_dist`, those whose `|gradient|` is at most the
/// `fraction` quantile (NumPy's `"lower"` method, over all features, the ones
/// at `alpha + max_dist` counting as infinitely large) are moved towards
/// `alpha + max_dist`, all the way or just far enough to reach the target.
/// The attribution is the sum of every move times the gradient at the start
/// of its step. Features equal to the baseline have no `alpha` and never move.
///
/// The model is called once per step with a batch of one, for
/// [`OutputKey::InputOutputGradients`]; for `f32` the path point is rounded
/// to `f32` for the model.
///
/// Where the reference cannot continue, this stops the step instead: when
/// every feature has reached `alpha + max_dist` but the target is still not
/// met (only possible through rounding; the reference loops forever) and when
/// the target was overshot (the reference fails an assertion).
///
/// ```
/// use ndarray::array;
/// use saliency::{CoreSaliency, GuidedIg, ModelOutputs, OutputKey};
///
/// // f(x) = 2 x0 + x1 is linear, so Guided IG equals Integrated Gradients:
/// // (x - baseline) * gradient (the reference's own test).
/// let x = array![10.0_f64, 5.0];
/// let gig = GuidedIg::new().steps(10).fraction(0.1).max_dist(0.5).baseline(array![-1.0, -3.0]);
/// let mask = gig.get_mask(x.view().into_dyn(), &mut |batch, _keys| {
///     let grads = batch.mapv(|_| 0.0) + &array![2.0, 1.0];
///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, grads))
/// })?;
/// assert!((mask[[0]] - 22.0).abs() < 1e-9 && (mask[[1]] - 8.0).abs() < 1e-9);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GuidedIg<F> {
    steps: usize,
    fraction: f64,
    max_dist: f64,
    baseline: Option<ArrayD<F>>,
}

impl<F> Default for GuidedIg<F> {
    fn default() -> Self {
        GuidedIg {
            steps: 200,
            fraction: 0.25,
            max_dist: 0.02,
            baseline: None,
        }
    }
}

impl<F: Float> GuidedIg<F> {
    /// The reference's defaults: 200 steps, fraction 0.25, maximum distance
    /// 0.02, zero baseline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of steps of the path (at least 1); one model call each.
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// Fraction (0..=1) of the features, by smallest `|gradient|`, moved at
    /// each iteration within a step.
    pub fn fraction(mut self, fraction: f64) -> Self {
        self.fraction = fraction;
        self
    }

    /// How far (0..=1, as a fraction of the path) a feature may run ahead of
    /// or lag behind the straight line; 0 gives Integrated Gradients on the
    /// straight line, 1 an unbounded path.
    pub fn max_dist(mut self, max_dist: f64) -> Self {
        self.max_dist = max_dist;
        self
    }

    /// The baseline the path starts from; it must have the input's shape.
    /// Without one, the baseline is all zeros.
    pub fn baseline<D: ndarray::Dimension>(mut self, baseline: ndarray::Array<F, D>) -> Self {
        self.baseline = Some(baseline.into_dyn());
        self
    }
}

impl<F: Float> CoreSaliency<F> for GuidedIg<F> {
    fn name(&self) -> &'static str {
        "Guided Integrated Gradients"
    }

    fn get_mask_with_progress(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        check_input("input", &x, 1)?;
        check_positive("steps", self.steps)?;
        check_unit("fraction", self.fraction)?;
        check_unit("max_dist", self.max_dist)?;
        let input: Vec<f64> = x.iter().map(|v| v.as_f64()).collect();
        let baseline: Vec<f64> = match &self.baseline {
            Some(b) => {
                if b.shape() != x.shape() {
                    return Err(SaliencyError::ShapeMismatch {
                        what: "baseline",
                        expected: x.shape().to_vec(),
                        actual: b.shape().to_vec(),
                    });
                }
                check_finite("baseline", &b.view())?;
                b.iter().map(|v| v.as_f64()).collect()
            }
            None => vec![0.0; input.len()],
        };
        let mut path = Path::new(input, baseline);
        let attr = path.run(x.shape(), self.steps, self.fraction, self.max_dist, model, progress)?;
        let attr = attr.into_iter().map(F::from_f64_lossy).collect();
        ArrayD::from_shape_vec(x.raw_dim(), attr)
            .map_err(|_| SaliencyError::param("steps", self.steps, "internal shape error"))
    }
}

fn check_unit(name: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(SaliencyError::param(name, v, "must be between 0 and 1"))
    }
}

/// `math.isclose(a, b, rel_tol=eps, abs_tol=eps)` as Python computes it.
fn is_close(a: f64, b: f64, eps: f64) -> bool {
    if a == b {
        return true;
    }
    if a.is_infinite() || b.is_infinite() {
        return false;
    }
    let diff = (b - a).abs();
    diff <= (eps * b).abs() || diff <= (eps * a).abs() || diff <= eps
}

/// The reference's tolerance for "the target distance is reached".
const EPSILON: f64 = 1e-9;

/// The state of the path, flat in the input's row-major order.
///
/// The reference recomputes everything over all features at every iteration
/// of a step. Here a step makes one pass over all features (catch-up, L1
/// distance, candidates), then finds the iterations' thresholds among the
/// candidates' `|grad|` with a histogram, and moves the features in one more
/// pass over the candidates; the decisions are the reference's.
struct Path {
    input: Vec<f64>,
    baseline: Vec<f64>,
    /// `input - baseline`.
    delta: Vec<f64>,
    /// The current point.
    x: Vec<f64>,
    attr: Vec<f64>,
    /// Gradient at the start of the current step.
    grad: Vec<f64>,
    /// The candidates: features not at `x_max` (the reference's finite
    /// `grad`), in ascending index order.
    cand: Vec<usize>,
    /// Their `|grad|`.
    cand_abs: Vec<f64>,
    /// Their `|x - x_max|`.
    cand_dist: Vec<f64>,
    /// How the L1 distance to the input changes when they move to `x_max`.
    cand_gain: Vec<f64>,
    /// Their histogram bucket.
    cand_key: Vec<u16>,
    hist: Histogram,
    /// Selection scratch.
    scratch: Vec<f64>,
}

/// The path fractions a step keeps every feature between.
#[derive(Clone, Copy)]
struct Bounds {
    min: f64,
    max: f64,
}

impl Path {
    fn new(input: Vec<f64>, baseline: Vec<f64>) -> Self {
        let n = input.len();
        let delta = input.iter().zip(&baseline).map(|(i, b)| i - b).collect();
        Path {
            x: baseline.clone(),
            input,
            baseline,
            delta,
            attr: vec![0.0; n],
            grad: vec![0.0; n],
            cand: Vec::with_capacity(n),
            cand_abs: Vec::with_capacity(n),
            cand_dist: Vec::with_capacity(n),
            cand_gain: Vec::with_capacity(n),
            cand_key: Vec::with_capacity(n),
            hist: Histogram::new(),
            scratch: Vec::with_capacity(n),
        }
    }

    fn run<F: Float>(
        &mut self,
        shape: &[usize],
        steps: usize,
        fraction: f64,
        max_dist: f64,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<f64>> {
        let n = self.input.len();
        let l1_total: f64 = self.delta.iter().map(|d| d.abs()).sum();
        if l1_total == 0.0 {
            return Ok(std::mem::take(&mut self.attr));
        }
        // NumPy's "lower" quantile index over all features.
        let k = ((n - 1) as f64 * fraction).floor() as usize;
        let key = OutputKey::InputOutputGradients;
        let mut batch_shape = vec![1];
        batch_shape.extend_from_slice(shape);
        let mut batch = ArrayD::<F>::zeros(IxDyn(&batch_shape));
        for step in 0..steps {
            if let Some(flat) = batch.as_slice_mut() {
                for (b, &x) in flat.iter_mut().zip(&self.x) {
                    *b = F::from_f64_lossy(x);
                }
            }
            let mut outputs = call_model(model, batch.view(), &[key])?;
            let grads = outputs.take(key)?;
            let scale = match grads.as_slice() {
                Some(g) => copy_f64(&mut self.grad, g),
                None => copy_f64(&mut self.grad, &grads.iter().copied().collect::<Vec<_>>()),
            };
            let alpha = (step as f64 + 1.0) / steps as f64;
            let bounds = Bounds {
                min: (alpha - max_dist).max(0.0),
                max: (alpha + max_dist).min(1.0),
            };
            let l1_target = l1_total * (1.0 - (step + 1) as f64 / steps as f64);
            self.step(bounds, l1_target, k, scale);
            progress(Progress::new("guided integrated gradients steps", step + 1, steps));
        }
        Ok(std::mem::take(&mut self.attr))
    }

    /// One step: the reference's iterations until the L1 distance to the
    /// input is `l1_target`.
    fn step(&mut self, bounds: Bounds, l1_target: f64, k: usize, scale: KeyScale) {
        let (l1_current, exact_path_needed) = self.catch_up(bounds, scale);
        if exact_path_needed {
            self.iterate(bounds, l1_target, k, l1_current);
            return;
        }
        // The iterations select, among the candidates sorted by |grad|,
        // consecutive runs: each ends at rank `k` of the ones left (with its
        // ties), or takes all that are left.
        let m = self.cand.len();
        let mut sorted = SortedCandidates {
            keys: &self.cand_key,
            abs: &self.cand_abs,
            dist: &self.cand_dist,
            gain: &self.cand_gain,
            hist: &mut self.hist,
        };
        sorted.prepare();
        let mut l1_current = l1_current;
        let (mut moved_all, mut full_cut, mut partial) = (0, f64::NEG_INFINITY, None);
        while !is_close(l1_target, l1_current, EPSILON) {
            let (threshold, end) = if k < m - moved_all {
                let pos = moved_all + k;
                sorted.value_and_run_end(pos)
            } else {
                (f64::INFINITY, m)
            };
            let (l1_selected, gain) = sorted.sums(moved_all, end);
            if l1_selected <= 0.0 {
                // Nothing left to move: the reference would loop forever.
                break;
            }
            let gamma = (l1_current - l1_target) / l1_selected;
            if gamma <= 0.0 {
                // Overshot by more than rounding: the reference asserts.
                break;
            }
            if gamma <= 1.0 {
                partial = Some((threshold, gamma));
                break;
            }
            moved_all = end;
            full_cut = threshold;
            l1_current += gain;
        }
        self.apply(bounds, full_cut, partial);
    }

    /// The first iteration's pass over all features: brings those whose
    /// alpha is below `bounds.min` up to it, lists the candidates, fills the
    /// histogram and returns the L1 distance to the input, and whether a
    /// feature moved to `x_max` could be caught up again by rounding (then the
    /// step runs iteration by iteration).
    fn catch_up(&mut self, bounds: Bounds, scale: KeyScale) -> (f64, bool) {
        self.cand.clear();
        self.cand_abs.clear();
        self.cand_dist.clear();
        self.cand_gain.clear();
        self.cand_key.clear();
        self.hist.clear(scale);
        let span = bounds.max - bounds.min;
        let mut exact_path_needed = false;
        // Independent partial sums keep the additions from waiting on each other.
        let mut l1 = [0.0; 4];
        let features = self
            .x
            .iter_mut()
            .zip(&mut self.attr)
            .zip(&self.grad)
            .zip(self.baseline.iter().zip(&self.delta).zip(&self.input));
        for (i, (((x, a), &g), ((&b, &d), &input))) in features.enumerate() {
            if d != 0.0 && is_behind(*x - b, d, bounds.min) {
                let moved = b + d * bounds.min;
                *a += (moved - *x) * g;
                *x = moved;
            }
            let here = (*x - input).abs();
            l1[i % 4] += here;
            let x_max = b + d * bounds.max;
            if *x != x_max {
                // Rounding could put x_max behind alpha_min only when the
                // window is tiny next to the baseline's magnitude.
                exact_path_needed |= span > 0.0 && d.abs() * span <= 1e-12 * (b.abs() + d.abs());
                let abs = g.abs();
                let dist = (*x - x_max).abs();
                let gain = (x_max - input).abs() - here;
                let key = self.hist.add(abs, dist, gain);
                self.cand.push(i);
                self.cand_abs.push(abs);
                self.cand_dist.push(dist);
                self.cand_gain.push(gain);
                self.cand_key.push(key);
            }
        }
        ((l1[0] + l1[1]) + (l1[2] + l1[3]), exact_path_needed)
    }

    /// Moves the candidates with `|grad| <= full_cut` to `x_max` and those
    /// with `|grad|` up to the partial threshold the fraction `gamma` of the
    /// way there, updating the attribution.
    fn apply(&mut self, bounds: Bounds, full_cut: f64, partial: Option<(f64, f64)>) {
        let (partial_cut, gamma) = partial.unwrap_or((f64::NEG_INFINITY, 0.0));
        let cut = full_cut.max(partial_cut);
        for (&i, &abs) in self.cand.iter().zip(&self.cand_abs) {
            if abs > cut {
                continue;
            }
            let (b, d, g) = (self.baseline[i], self.delta[i], self.grad[i]);
            let x_max = b + d * bounds.max;
            let old = self.x[i];
            let moved = if abs <= full_cut {
                x_max
            } else {
                old + (x_max - old) * gamma
            };
            self.attr[i] += (moved - old) * g;
            self.x[i] = moved;
        }
    }

    /// The reference's iterations one by one, for steps where rounding can
    /// make a feature moved to `x_max` fall behind `alpha_min` again.
    fn iterate(&mut self, bounds: Bounds, l1_target: f64, k: usize, mut l1_current: f64) {
        loop {
            if is_close(l1_target, l1_current, EPSILON) {
                return;
            }
            let threshold = match self.cand_abs.len() {
                m if k < m => {
                    self.scratch.clear();
                    self.scratch.extend_from_slice(&self.cand_abs);
                    select(&mut self.scratch, k)
                }
                _ => f64::INFINITY,
            };
            let l1_selected: f64 = self
                .cand_abs
                .iter()
                .zip(&self.cand_dist)
                .map(|(&a, &d)| if a <= threshold { d } else { 0.0 })
                .sum();
            if l1_selected <= 0.0 {
                return;
            }
            let gamma = (l1_current - l1_target) / l1_selected;
            if gamma <= 0.0 {
                return;
            }
            l1_current += self.advance(bounds, threshold, gamma);
            if gamma <= 1.0 {
                return;
            }
        }
    }

    /// One iteration's move of the selected candidates (`|grad| <=
    /// threshold`); returns the change of the L1 distance to the input.
    ///
    /// With `gamma > 1` another iteration follows: the moved features get its
    /// catch-up check here (the others cannot have changed since theirs) and
    /// leave the candidates if they are at `x_max`.
    fn advance(&mut self, bounds: Bounds, threshold: f64, gamma: f64) -> f64 {
        let mut l1_change = 0.0;
        let mut kept = 0;
        for j in 0..self.cand.len() {
            let (i, abs_grad, dist) = (self.cand[j], self.cand_abs[j], self.cand_dist[j]);
            let mut keep = Some(dist);
            if abs_grad <= threshold {
                let (b, d, g, input) = (self.baseline[i], self.delta[i], self.grad[i], self.input[i]);
                let old = self.x[i];
                let x_max = b + d * bounds.max;
                let mut moved = if gamma > 1.0 {
                    x_max
                } else {
                    old + (x_max - old) * gamma
                };
                self.attr[i] += (moved - old) * g;
                if gamma > 1.0 && d != 0.0 && (moved - b) / d < bounds.min {
                    let caught_up = b + d * bounds.min;
                    self.attr[i] += (caught_up - moved) * g;
                    moved = caught_up;
                }
                keep = (moved != x_max).then(|| (moved - x_max).abs());
                l1_change += (moved - input).abs() - (old - input).abs();
                self.x[i] = moved;
            }
            if let Some(dist) = keep {
                self.cand[kept] = i;
                self.cand_abs[kept] = abs_grad;
                self.cand_dist[kept] = dist;
                kept += 1;
            }
        }
        self.cand.truncate(kept);
        self.cand_abs.truncate(kept);
        self.cand_dist.truncate(kept);
        l1_change
    }
}

/// The reference's `(x - baseline) / (input - baseline) < alpha_min` for
/// `from_baseline = x - baseline` and `d != 0`, dividing only when the
/// answer is within rounding of the boundary.
#[inline]
fn is_behind(from_baseline: f64, d: f64, alpha_min: f64) -> bool {
    let target = alpha_min * d;
    let gap = (from_baseline - target) * d.signum();
    let margin = 1e-12 * (from_baseline.abs() + target.abs());
    if gap < -margin {
        true
    } else if gap > margin {
        false
    } else {
        from_baseline / d < alpha_min
    }
}

/// Widens the model's gradients into `out` and returns the histogram scale
/// for their magnitudes.
fn copy_f64<F: Float>(out: &mut [f64], values: &[F]) -> KeyScale {
    let (mut min_pos, mut max) = (f64::INFINITY, 0.0_f64);
    for (o, &v) in out.iter_mut().zip(values) {
        *o = v.as_f64();
        let a = o.abs();
        if a > 0.0 && a < min_pos {
            min_pos = a;
        }
        max = max.max(a);
    }
    KeyScale::new(min_pos, max)
}

/// Number of histogram buckets for the candidates' `|grad|`.
const BUCKETS: usize = 4096;

/// Maps a non-negative value to a bucket, monotonically: 0 for values below
/// the smallest positive one, then by the bits of the value (which order
/// non-negative floats) above it, shifted to fit.
#[derive(Clone, Copy, Debug)]
struct KeyScale {
    min_bits: u64,
    shift: u32,
}

impl KeyScale {
    fn new(min_pos: f64, max: f64) -> Self {
        if min_pos > max {
            return KeyScale {
                min_bits: u64::MAX,
                shift: 0,
            };
        }
        let min_bits = min_pos.to_bits();
        let range = max.to_bits() - min_bits;
        let mut shift = 0;
        while (range >> shift) >= (BUCKETS - 1) as u64 {
            shift += 1;
        }
        KeyScale { min_bits, shift }
    }

    #[inline]
    fn key(self, v: f64) -> u16 {
        let bits = v.to_bits();
        if bits < self.min_bits {
            0
        } else {
            // At most BUCKETS - 1 by the choice of `shift`.
            (((bits - self.min_bits) >> self.shift) + 1).min(BUCKETS as u64 - 1) as u16
        }
    }
}

/// Count, distance sum and L1-change sum of the candidates per bucket, plus
/// the buckets sorted on demand.
struct Histogram {
    scale: KeyScale,
    count: Vec<usize>,
    dist: Vec<f64>,
    gain: Vec<f64>,
    /// `start[b]`: how many candidates lie in buckets below `b`.
    start: Vec<usize>,
    /// Sorted buckets: (bucket, offset in `store`).
    sorted: Vec<(usize, usize)>,
    /// (|grad|, distance, gain) of the sorted buckets' candidates.
    store: Vec<(f64, f64, f64)>,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            scale: KeyScale::new(f64::INFINITY, 0.0),
            count: vec![0; BUCKETS],
            dist: vec![0.0; BUCKETS],
            gain: vec![0.0; BUCKETS],
            start: vec![0; BUCKETS + 1],
            sorted: Vec::new(),
            store: Vec::new(),
        }
    }

    fn clear(&mut self, scale: KeyScale) {
        self.scale = scale;
        self.count.fill(0);
        self.dist.fill(0.0);
        self.gain.fill(0.0);
        self.sorted.clear();
        self.store.clear();
    }

    #[inline]
    fn add(&mut self, abs: f64, dist: f64, gain: f64) -> u16 {
        let key = self.scale.key(abs);
        let b = usize::from(key);
        self.count[b] += 1;
        self.dist[b] += dist;
        self.gain[b] += gain;
        key
    }
}

/// The candidates in ascending `|grad|` order, as far as a step needs them:
/// whole buckets through the histogram, boundary buckets sorted on demand.
struct SortedCandidates<'a> {
    keys: &'a [u16],
    abs: &'a [f64],
    dist: &'a [f64],
    gain: &'a [f64],
    hist: &'a mut Histogram,
}

impl SortedCandidates<'_> {
    fn prepare(&mut self) {
        let mut total = 0;
        for (s, &c) in self.hist.start.iter_mut().zip(&self.hist.count) {
            *s = total;
            total += c;
        }
        if let Some(last) = self.hist.start.last_mut() {
            *last = total;
        }
    }

    /// The bucket holding sorted position `pos` (< number of candidates).
    fn bucket_of(&self, pos: usize) -> usize {
        self.hist.start.partition_point(|&s| s <= pos).saturating_sub(1)
    }

    /// The sorted contents of bucket `b`.
    fn bucket(&mut self, b: usize) -> &[(f64, f64, f64)] {
        let len = self.hist.count[b];
        let offset = match self.hist.sorted.iter().find(|(sb, _)| *sb == b) {
            Some(&(_, offset)) => offset,
            None => {
                let offset = self.hist.store.len();
                let wanted = b as u16;
                for (j, _) in self.keys.iter().enumerate().filter(|(_, k)| **k == wanted) {
                    self.hist.store.push((self.abs[j], self.dist[j], self.gain[j]));
                }
                self.hist.store[offset..].sort_unstable_by(|p, q| p.0.total_cmp(&q.0));
                self.hist.sorted.push((b, offset));
                offset
            }
        };
        &self.hist.store[offset..offset + len]
    }

    /// The value at sorted position `pos` and the end of its run of equal
    /// values (equal values share a bucket).
    fn value_and_run_end(&mut self, pos: usize) -> (f64, usize) {
        let b = self.bucket_of(pos);
        let start = self.hist.start[b];
        let entries = self.bucket(b);
        let v = entries[pos - start].0;
        let run = entries[pos - start..].iter().take_while(|e| e.0 == v).count();
        (v, pos + run)
    }

    /// Sums of distance and L1 change over sorted positions `lo..hi`.
    fn sums(&mut self, lo: usize, hi: usize) -> (f64, f64) {
        if lo >= hi {
            return (0.0, 0.0);
        }
        let (first, last) = (self.bucket_of(lo), self.bucket_of(hi - 1));
        let mut total = (0.0, 0.0);
        for b in first..=last {
            let (start, end) = (self.hist.start[b], self.hist.start[b + 1]);
            if lo <= start && end <= hi {
                total.0 += self.hist.dist[b];
                total.1 += self.hist.gain[b];
            } else {
                let (from, to) = (lo.max(start) - start, hi.min(end) - start);
                for e in &self.bucket(b)[from..to] {
                    total.0 += e.1;
                    total.1 += e.2;
                }
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_close_matches_python() {
        // math.isclose(1.0, 1.0 + 1e-10, rel_tol=1e-9, abs_tol=1e-9) is True,
        // math.isclose(0.0, 2e-9, ...) is False, math.isclose(0.0, 5e-10, ...) is True.
        assert!(is_close(1.0, 1.0 + 1e-10, EPSILON));
        assert!(!is_close(0.0, 2e-9, EPSILON));
        assert!(is_close(0.0, 5e-10, EPSILON));
        assert!(!is_close(f64::INFINITY, 1.0, EPSILON));
    }
}
