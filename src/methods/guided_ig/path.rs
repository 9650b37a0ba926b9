//! The path of Guided IG: its state, the steps (a pass over the features
//! that catches up and keys the candidates, then one that moves them), the
//! vectorised kernels of those passes, and the reference's iterations one by
//! one for the steps that need them.

use ndarray::{ArrayD, IxDyn};

use super::selection::{
    BLOCK, BUCKETS, Features, Histogram, KeyScale, LANES, Lane, NOT_CANDIDATE, SortedCandidates, cut, cut_mut,
};
use crate::core::{Progress, Stage};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::quantile::select;
use crate::model::{CallModelFunction, OutputKey, call_model_deferring_finite_check, non_finite_error};
use crate::parallel::{CHUNK, for_each_chunk_mut, map_items};

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
/// distance, candidates and a histogram of their `|grad|`), then finds the
/// iterations' thresholds from the histogram and the few buckets they fall
/// in (exact selection there), and moves the features in a second pass that also
/// writes the next model input. Both passes run on fixed chunks (in parallel
/// with the `rayon` feature), combined in chunk order. The decisions are
/// the reference's; sums differ from NumPy's only in summation order.
///
/// Steps where rounding could move a feature from `x_max` back behind
/// `alpha_min` (a baseline huge next to `input - baseline`) run the
/// reference's iterations one by one instead.
pub(super) struct Path {
    /// The input, or `None` when it equals `delta` (zero baseline).
    input: Option<Vec<f64>>,
    /// The baseline, or `None` for zeros.
    baseline: Option<Vec<f64>>,
    /// `input - baseline`.
    delta: Vec<f64>,
    /// The current point.
    x: Vec<f64>,
    attr: Vec<f64>,
    /// Histogram bucket of each feature's `|grad|`, or [`NOT_CANDIDATE`]
    /// for features at `x_max` (the reference's infinite `grad`).
    key: Vec<u16>,
    hist: Histogram,
    /// The candidates as lists, for steps run iteration by iteration.
    fallback: Candidates,
    /// Run every step iteration by iteration (to test the fast path).
    always_iterate: bool,
    /// The largest window `alpha_max - alpha_min` for which rounding could
    /// put some feature's `x_max` behind `alpha_min` (see [`Path::step`]).
    exact_below_span: f64,
}

/// A chunk's `x`, `attr`, keys and histogram, as the zipped iterators give them.
type CatchUpChunk<'a> = (((&'a mut [f64], &'a mut [f64]), &'a mut [u16]), &'a mut [Lane]);

/// A chunk's `x`, `attr` and model input.
type ApplyChunk<'a, F> = ((&'a mut [f64], &'a mut [f64]), &'a mut [F]);

/// The path fractions a step keeps every feature between.
#[derive(Clone, Copy)]
struct Bounds {
    min: f64,
    max: f64,
}

/// A chunk of the all-zero baseline, so that both kinds of baseline take
/// the same loops.
static ZERO_BASELINE: [f64; CHUNK] = [0.0; CHUNK];

/// `n` zeros written one by one, not taken zeroed from the allocator: the
/// passes read `x` and `attr` before writing them, and a read of a fresh
/// zeroed page maps the shared zero page, so the write after it copies the
/// page and flushes every core's TLB, an interrupt that is costly on virtual
/// machines (page faults 5.0% of Guided IG's samples at 224 x 224 x 3 on
/// one, 1.3% with the zeros written). `black_box` keeps the compiler from
/// turning the writes back into a zeroed allocation.
fn written_zeros(n: usize) -> Vec<f64> {
    let mut v = Vec::with_capacity(n);
    v.extend((0..n).map(|_| std::hint::black_box(0.0)));
    v
}

impl Path {
    pub(super) fn new(input: Vec<f64>, baseline: Option<Vec<f64>>) -> Self {
        let n = input.len();
        let (delta, x, input) = match &baseline {
            Some(b) => (
                input.iter().zip(b).map(|(i, b)| i - b).collect(),
                b.clone(),
                Some(input),
            ),
            None => (input, written_zeros(n), None),
        };
        // Solving |d| * span <= 1e-12 * (|b| + |d|) for span, with a margin
        // for the rounding of the division.
        let exact_below_span = delta
            .iter()
            .enumerate()
            .filter(|&(_, &d)| d != 0.0)
            .map(|(i, &d)| {
                let b = baseline.as_ref().and_then(|b| b.get(i)).map_or(0.0, |b| b.abs());
                1e-12 * (b + d.abs()) / d.abs() * (1.0 + 1e-6)
            })
            .fold(0.0, f64::max);
        Path {
            x,
            input,
            baseline,
            delta,
            attr: written_zeros(n),
            key: vec![NOT_CANDIDATE; n],
            hist: Histogram::new(),
            fallback: Candidates::default(),
            always_iterate: false,
            exact_below_span,
        }
    }

    pub(super) fn run<F: Float>(
        &mut self,
        shape: &[usize],
        steps: usize,
        fraction: f64,
        max_dist: f64,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Vec<f64>> {
        let n = self.delta.len();
        let l1_total: f64 = self.delta.iter().map(|d| d.abs()).sum();
        if l1_total == 0.0 {
            return Ok(std::mem::take(&mut self.attr));
        }
        // Huge finite inputs or baselines (1e300, f64::MAX) overflow the path
        // length; its NaN targets would never be reached.
        if !l1_total.is_finite() {
            return Err(SaliencyError::NonFiniteResult {
                what: "the path length |input - baseline|",
                count: 1,
                first_index: 0,
            });
        }
        // NumPy's "lower" quantile index over all features.
        let k = ((n - 1) as f64 * fraction).floor() as usize;
        let key = OutputKey::InputOutputGradients;
        let mut batch_shape = vec![1];
        batch_shape.extend_from_slice(shape);
        let mut batch = ArrayD::<F>::zeros(IxDyn(&batch_shape));
        fill_model_input(batch.as_slice_mut().unwrap_or_default(), &self.x);
        for step in 0..steps {
            let mut outputs = call_model_deferring_finite_check(model, batch.view(), &[key], Some(key))?;
            let grads = outputs.take(key)?;
            let flat = match grads.as_slice() {
                Some(g) => std::borrow::Cow::Borrowed(g),
                None => std::borrow::Cow::Owned(grads.iter().copied().collect::<Vec<_>>()),
            };
            // The finiteness check rides on the scale's pass over the gradient.
            let (scale, finite) = KeyScale::of(&flat);
            if !finite && let Some(err) = non_finite_error(key, grads.shape(), &flat) {
                return Err(err);
            }
            let alpha = (step as f64 + 1.0) / steps as f64;
            let bounds = Bounds {
                min: (alpha - max_dist).max(0.0),
                max: (alpha + max_dist).min(1.0),
            };
            let l1_target = l1_total * (1.0 - (step + 1) as f64 / steps as f64);
            self.step(
                bounds,
                l1_target,
                k,
                scale,
                &flat,
                batch.as_slice_mut().unwrap_or_default(),
            );
            progress(Progress::new(Stage::GuidedIgSteps, step + 1, steps));
        }
        Ok(std::mem::take(&mut self.attr))
    }

    /// One step: the reference's iterations until the L1 distance to the
    /// input is `l1_target`; then writes the new point into `model_input`.
    /// `scale` keys the magnitudes of `grad`.
    fn step<F: Float>(
        &mut self,
        bounds: Bounds,
        l1_target: f64,
        k: usize,
        scale: KeyScale,
        grad: &[F],
        model_input: &mut [F],
    ) {
        let (l1_current, exact_path_needed) = self.catch_up(bounds, scale, grad);
        if exact_path_needed || self.always_iterate {
            self.iterate(bounds, l1_target, k, l1_current, grad);
            fill_model_input(model_input, &self.x);
            return;
        }
        // The iterations select, among the candidates sorted by |grad|,
        // consecutive runs: each ends at rank `k` of the ones left (with its
        // ties), or takes all that are left.
        let mut sorted = SortedCandidates {
            path: Features {
                key: &self.key,
                x: &self.x,
                baseline: self.baseline.as_deref(),
                delta: &self.delta,
            },
            grad,
            alpha_max: bounds.max,
            hist: &mut self.hist,
        };
        let m = sorted.prepare(k);
        let mut l1_current = l1_current;
        let (mut moved_all, mut full_cut, mut partial) = (0, f64::NEG_INFINITY, None);
        while !is_close(l1_target, l1_current, EPSILON) {
            let (threshold, end) = if k < m - moved_all {
                sorted.value_and_run_end(moved_all + k)
            } else {
                (f64::INFINITY, m)
            };
            let l1_selected = sorted.distance(moved_all, end, full_cut, threshold);
            if l1_selected <= 0.0 {
                // Nothing left to move: the reference would loop forever.
                break;
            }
            let gamma = (l1_current - l1_target) / l1_selected;
            // NaN too: the loop must end.
            if gamma.is_nan() || gamma <= 0.0 {
                // Overshot by more than rounding: the reference asserts.
                break;
            }
            if gamma <= 1.0 {
                partial = Some((threshold, gamma));
                break;
            }
            moved_all = end;
            full_cut = threshold;
            // Every candidate lies between the baseline and its x_max, which
            // lies between it and the input: moving it to x_max shortens the
            // distance to the input by its distance to x_max.
            l1_current -= l1_selected;
        }
        self.apply(bounds, full_cut, partial, grad, model_input);
    }

    /// The first iteration's pass over all features: brings those whose
    /// alpha is below `bounds.min` up to it, marks the candidates, fills the
    /// histogram and returns the L1 distance to the input, and whether a
    /// feature moved to `x_max` could be caught up again by rounding (then the
    /// step runs iteration by iteration).
    fn catch_up<F: Float>(&mut self, bounds: Bounds, scale: KeyScale, grad: &[F]) -> (f64, bool) {
        self.hist.clear(scale, self.x.len().div_ceil(CHUNK));
        let input = self.input.as_deref().unwrap_or(&self.delta);
        let (baseline, delta) = (self.baseline.as_deref(), &self.delta[..]);
        // Fixed chunks, each with its own histogram, combined in order: the
        // result does not depend on the number of threads.
        let zeros = &ZERO_BASELINE[..];
        let work = |(c, (((x, attr), key), lanes)): (usize, CatchUpChunk<'_>)| {
            let range = c * CHUNK..c * CHUNK + x.len();
            let (g, d, input) = (&grad[range.clone()], &delta[range.clone()], &input[range.clone()]);
            match baseline {
                Some(b) => catch_up_pass::<F, false>(x, attr, key, lanes, scale, g, &b[range], d, input, bounds),
                None => catch_up_pass::<F, true>(x, attr, key, lanes, scale, g, zeros, d, input, bounds),
            }
        };
        let chunk_lanes = LANES * (BUCKETS + 1);
        let chunks = self
            .x
            .chunks_mut(CHUNK)
            .zip(self.attr.chunks_mut(CHUNK))
            .zip(self.key.chunks_mut(CHUNK))
            .zip(self.hist.lanes.chunks_mut(chunk_lanes))
            .enumerate();
        let l1 = map_items(chunks, work).iter().fold(0.0, |l1, &l| l1 + l);
        // Rounding could put x_max behind alpha_min only when the window is
        // tiny next to the baseline's magnitude: |d| * span <= 1e-12 * (|b| + |d|)
        // for some moving feature (checked for all, which is only more cautious).
        let span = bounds.max - bounds.min;
        (l1, span > 0.0 && span <= self.exact_below_span)
    }

    /// Moves the candidates with `|grad| <= full_cut` to `x_max` and those
    /// with `|grad|` up to the partial threshold the fraction `gamma` of the
    /// way there, updating the attribution, and writes the new point into
    /// `model_input`.
    fn apply<F: Float>(
        &mut self,
        bounds: Bounds,
        full_cut: f64,
        partial: Option<(f64, f64)>,
        grad: &[F],
        model_input: &mut [F],
    ) {
        let (partial_cut, gamma) = partial.unwrap_or((f64::NEG_INFINITY, 0.0));
        let cut = full_cut.max(partial_cut);
        let moves = Moves {
            alpha_max: bounds.max,
            full_cut,
            cut,
            gamma,
        };
        let (baseline, delta) = (self.baseline.as_deref(), &self.delta[..]);
        let zeros = &ZERO_BASELINE[..];
        let work = |(c, ((x, attr), out)): (usize, ApplyChunk<'_, F>)| {
            let range = c * CHUNK..c * CHUNK + x.len();
            let (g, d) = (&grad[range.clone()], &delta[range.clone()]);
            match baseline {
                Some(b) => moves.apply::<F, false>(x, attr, g, &b[range], d, out),
                None => moves.apply::<F, true>(x, attr, g, zeros, d, out),
            }
        };
        // First chunk first: the scan of the keys that collects the
        // thresholds' buckets ran last to first, so the features it touched
        // last (the start of each thread's share) are the ones still in
        // cache; each chunk's moves are independent of the others', so the
        // order changes no result.
        let chunks = self
            .x
            .chunks_mut(CHUNK)
            .zip(self.attr.chunks_mut(CHUNK))
            .zip(model_input.chunks_mut(CHUNK))
            .enumerate();
        map_items(chunks, work);
    }

    /// The reference's iterations one by one, for steps where rounding can
    /// make a feature moved to `x_max` fall behind `alpha_min` again.
    fn iterate<F: Float>(&mut self, bounds: Bounds, l1_target: f64, k: usize, mut l1_current: f64, grad: &[F]) {
        let c = &mut self.fallback;
        c.index.clear();
        c.abs.clear();
        c.dist.clear();
        let baseline = self.baseline.as_deref();
        for (i, (((&key, &g), &x), &d)) in self.key.iter().zip(grad).zip(&self.x).zip(&self.delta).enumerate() {
            if key != NOT_CANDIDATE {
                let b = baseline.map_or(0.0, |b| b[i]);
                c.index.push(i);
                c.abs.push(g.as_f64().abs());
                c.dist.push((x - (b + d * bounds.max)).abs());
            }
        }
        loop {
            if is_close(l1_target, l1_current, EPSILON) {
                return;
            }
            let c = &mut self.fallback;
            let threshold = match c.abs.len() {
                m if k < m => {
                    c.scratch.clear();
                    c.scratch.extend_from_slice(&c.abs);
                    select(&mut c.scratch, k)
                }
                _ => f64::INFINITY,
            };
            let l1_selected: f64 = c
                .abs
                .iter()
                .zip(&c.dist)
                .map(|(&a, &d)| if a <= threshold { d } else { 0.0 })
                .sum();
            if l1_selected <= 0.0 {
                return;
            }
            let gamma = (l1_current - l1_target) / l1_selected;
            // NaN too: the loop must end.
            if gamma.is_nan() || gamma <= 0.0 {
                return;
            }
            l1_current += self.advance(bounds, threshold, gamma, grad);
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
    fn advance<F: Float>(&mut self, bounds: Bounds, threshold: f64, gamma: f64, grad: &[F]) -> f64 {
        let c = &mut self.fallback;
        let mut l1_change = 0.0;
        let mut kept = 0;
        for j in 0..c.index.len() {
            let (i, abs_grad, dist) = (c.index[j], c.abs[j], c.dist[j]);
            let mut keep = Some(dist);
            if abs_grad <= threshold {
                let b = self.baseline.as_deref().map_or(0.0, |b| b[i]);
                let d = self.delta[i];
                let input = self.input.as_deref().map_or(d, |x| x[i]);
                let g = grad[i].as_f64();
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
                c.index[kept] = i;
                c.abs[kept] = abs_grad;
                c.dist[kept] = dist;
                kept += 1;
            }
        }
        c.index.truncate(kept);
        c.abs.truncate(kept);
        c.dist.truncate(kept);
        l1_change
    }
}

/// A feature's baseline value: the constant 0 for the all-zero baseline,
/// whose loops then read no baseline array.
#[inline(always)]
fn base<const ZERO: bool>(b: f64) -> f64 {
    if ZERO { 0.0 } else { b }
}

/// [`Path::catch_up`]'s pass over one chunk, in blocks of [`BLOCK`]
/// features (the rest one by one, through the same code).
///
/// Selects instead of branches (which features lag or are candidates
/// follows no pattern a branch predictor could learn), so that the compiler
/// can vectorise the arithmetic; only the histogram's scattered updates are
/// one at a time.
#[allow(clippy::too_many_arguments)]
fn catch_up_pass<F: Float, const ZERO: bool>(
    x: &mut [f64],
    attr: &mut [f64],
    keys: &mut [u16],
    lanes: &mut [Lane],
    scale: KeyScale,
    grad: &[F],
    baseline: &[f64],
    delta: &[f64],
    input: &[f64],
    bounds: Bounds,
) -> f64 {
    let n = x.len().min(attr.len()).min(keys.len()).min(grad.len());
    let n = n.min(baseline.len()).min(delta.len()).min(input.len());
    let (x, attr, keys, grad) = (cut_mut(x, n), cut_mut(attr, n), cut_mut(keys, n), cut(grad, n));
    let (baseline, delta, input) = (cut(baseline, n), cut(delta, n), cut(input, n));
    lanes.fill([0.0; 2]);
    let pass = CatchUp { bounds, scale };
    let (x, x_rest) = x.as_chunks_mut::<BLOCK>();
    let (attr, attr_rest) = attr.as_chunks_mut::<BLOCK>();
    let (keys, keys_rest) = keys.as_chunks_mut::<BLOCK>();
    let (grad, grad_rest) = grad.as_chunks::<BLOCK>();
    let (baseline, baseline_rest) = baseline.as_chunks::<BLOCK>();
    let (delta, delta_rest) = delta.as_chunks::<BLOCK>();
    let (input, input_rest) = input.as_chunks::<BLOCK>();
    let mut l1 = [0.0; BLOCK];
    let blocks = x
        .iter_mut()
        .zip(attr)
        .zip(keys)
        .zip(grad)
        .zip(baseline)
        .zip(delta)
        .zip(input);
    for ((((((x, attr), keys), grad), baseline), delta), input) in blocks {
        pass.block::<F, ZERO, BLOCK>(x, attr, keys, grad, baseline, delta, input, &mut l1, lanes);
    }
    let mut l1_rest = [0.0; 1];
    let rest = x_rest.as_chunks_mut::<1>().0.iter_mut();
    let rest = rest
        .zip(attr_rest.as_chunks_mut::<1>().0)
        .zip(keys_rest.as_chunks_mut::<1>().0)
        .zip(grad_rest.as_chunks::<1>().0)
        .zip(baseline_rest.as_chunks::<1>().0)
        .zip(delta_rest.as_chunks::<1>().0)
        .zip(input_rest.as_chunks::<1>().0);
    for ((((((x, attr), keys), grad), baseline), delta), input) in rest {
        pass.block::<F, ZERO, 1>(x, attr, keys, grad, baseline, delta, input, &mut l1_rest, lanes);
    }
    l1.iter().fold(l1_rest[0], |sum, v| sum + v)
}

/// What [`catch_up_pass`] does to every feature.
#[derive(Clone, Copy)]
struct CatchUp {
    bounds: Bounds,
    scale: KeyScale,
}

impl CatchUp {
    /// Brings the features behind `alpha_min` up to it, keys the candidates
    /// (the others get [`NOT_CANDIDATE`]), adds them to the histogram's
    /// lanes and the distances to the input to `l1`.
    #[allow(clippy::too_many_arguments)]
    #[inline(always)]
    fn block<F: Float, const ZERO: bool, const N: usize>(
        self,
        x: &mut [f64; N],
        attr: &mut [f64; N],
        keys: &mut [u16; N],
        grad: &[F; N],
        baseline: &[f64; N],
        delta: &[f64; N],
        input: &[f64; N],
        l1: &mut [f64; N],
        lanes: &mut [Lane],
    ) {
        let bounds = self.bounds;
        let mut dist = [0.0; N];
        for l in 0..N {
            let (g, b, d, old) = (grad[l].as_f64(), base::<ZERO>(baseline[l]), delta[l], x[l]);
            // The reference's `(x - baseline) / (input - baseline) < alpha_min`.
            let behind = (d != 0.0) & ((old - b) / d < bounds.min);
            let caught_up = b + d * bounds.min;
            let now = if behind { caught_up } else { old };
            // A feature left alone adds a zero, which leaves `attr` as it
            // was: it is never -0 (it starts at +0, and a sum is -0 only
            // when both terms are).
            attr[l] += (now - old) * g;
            x[l] = now;
            let x_max = b + d * bounds.max;
            keys[l] = if now != x_max { self.scale.key(g) } else { NOT_CANDIDATE };
            dist[l] = (now - x_max).abs();
            l1[l] += (now - input[l]).abs();
        }
        // The candidates' count and distance to x_max per bucket (the
        // non-candidates land in the spare bucket past the last).
        for l in 0..N {
            if let Some(cell) = lanes.get_mut(LANES * usize::from(keys[l]) + l % LANES) {
                // One vector addition for both.
                let add = [1.0, dist[l]];
                for (c, a) in cell.iter_mut().zip(add) {
                    *c += a;
                }
            }
        }
    }
}

/// What a step does to the candidates: move those with `|grad| <=
/// full_cut` to `x_max`, those up to `cut` the fraction `gamma` of the way.
struct Moves {
    alpha_max: f64,
    full_cut: f64,
    cut: f64,
    gamma: f64,
}

impl Moves {
    /// [`Path::apply`]'s pass over one chunk, in blocks as
    /// [`catch_up_pass`].
    #[allow(clippy::too_many_arguments)]
    fn apply<F: Float, const ZERO: bool>(
        &self,
        x: &mut [f64],
        attr: &mut [f64],
        grad: &[F],
        baseline: &[f64],
        delta: &[f64],
        model_input: &mut [F],
    ) {
        let n = x.len().min(attr.len()).min(grad.len());
        let n = n.min(baseline.len()).min(delta.len()).min(model_input.len());
        let (x, attr, grad) = (cut_mut(x, n), cut_mut(attr, n), cut(grad, n));
        let (baseline, delta, model_input) = (cut(baseline, n), cut(delta, n), cut_mut(model_input, n));
        let (x, x_rest) = x.as_chunks_mut::<BLOCK>();
        let (attr, attr_rest) = attr.as_chunks_mut::<BLOCK>();
        let (grad, grad_rest) = grad.as_chunks::<BLOCK>();
        let (baseline, baseline_rest) = baseline.as_chunks::<BLOCK>();
        let (delta, delta_rest) = delta.as_chunks::<BLOCK>();
        let (out, out_rest) = model_input.as_chunks_mut::<BLOCK>();
        let blocks = x.iter_mut().zip(attr).zip(grad).zip(baseline).zip(delta).zip(out);
        for (((((x, attr), grad), baseline), delta), out) in blocks {
            self.block::<F, ZERO, BLOCK>(x, attr, grad, baseline, delta, out);
        }
        let rest = x_rest.as_chunks_mut::<1>().0.iter_mut();
        let rest = rest
            .zip(attr_rest.as_chunks_mut::<1>().0)
            .zip(grad_rest.as_chunks::<1>().0)
            .zip(baseline_rest.as_chunks::<1>().0)
            .zip(delta_rest.as_chunks::<1>().0)
            .zip(out_rest.as_chunks_mut::<1>().0);
        for (((((x, attr), grad), baseline), delta), out) in rest {
            self.block::<F, ZERO, 1>(x, attr, grad, baseline, delta, out);
        }
    }

    /// The moves of one block of features.
    #[inline(always)]
    fn block<F: Float, const ZERO: bool, const N: usize>(
        &self,
        x: &mut [f64; N],
        attr: &mut [f64; N],
        grad: &[F; N],
        baseline: &[f64; N],
        delta: &[f64; N],
        out: &mut [F; N],
    ) {
        for l in 0..N {
            let (g, b, d, old) = (grad[l].as_f64(), base::<ZERO>(baseline[l]), delta[l], x[l]);
            let abs = g.abs();
            let x_max = b + d * self.alpha_max;
            // `old != x_max` is what keyed the candidates (x has not changed
            // since); keys are monotonic in |grad|, so `abs <= cut` decides
            // the rest.
            let selected = (old != x_max) & (abs <= self.cut);
            // Everything computed first, so that the `if`s only pick values
            // (as branches they would not vectorise and be mispredicted).
            let part = old + (x_max - old) * self.gamma;
            let target = if abs <= self.full_cut { x_max } else { part };
            let moved = if selected { target } else { old };
            // Adds a zero to the features left alone (see `CatchUp::block`).
            attr[l] += (moved - old) * g;
            x[l] = moved;
            out[l] = F::from_f64_lossy(moved);
        }
    }
}

/// Candidate lists for [`Path::iterate`]: index, `|grad|`, `|x - x_max|`.
#[derive(Default)]
struct Candidates {
    index: Vec<usize>,
    abs: Vec<f64>,
    dist: Vec<f64>,
    scratch: Vec<f64>,
}

/// Writes the path point, rounded to `F`, as the model's input.
fn fill_model_input<F: Float>(out: &mut [F], x: &[f64]) {
    for_each_chunk_mut(out, |offset, chunk| {
        for (o, &v) in chunk.iter_mut().zip(x.iter().skip(offset)) {
            *o = F::from_f64_lossy(v);
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::BoxError;
    use crate::model::ModelOutputs;
    use ndarray::ArrayViewD;

    /// A deterministic nonlinear gradient with many ties (quantized) and
    /// zeros, for comparing the histogram path with the plain iterations.
    fn grads(
        batch: ArrayViewD<'_, f64>,
        _keys: &crate::model::ModelRequest<'_>,
    ) -> std::result::Result<ModelOutputs<f64>, BoxError> {
        let flat: Vec<f64> = batch.iter().copied().collect();
        let g = (0..flat.len())
            .map(|i| {
                let next = flat.get(i + 1).copied().unwrap_or(0.0);
                let v = (3.0 * flat[i] + next).sin() * (1.0 + (i % 7) as f64);
                if i % 11 == 0 { 0.0 } else { (v * 8.0).round() / 8.0 }
            })
            .collect::<Vec<_>>();
        Ok(ModelOutputs::new().with(
            OutputKey::InputOutputGradients,
            ArrayD::from_shape_vec(batch.raw_dim(), g)?,
        ))
    }

    #[test]
    fn histogram_path_matches_plain_iterations() {
        let n = 997;
        let mut seed = 12345_u64;
        let mut next = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let input: Vec<f64> = (0..n).map(|_| next()).collect();
        let baseline: Vec<f64> = (0..n)
            .map(|i| if i % 5 == 0 { input[i] } else { 0.3 * next() })
            .collect();
        for (steps, fraction, max_dist, with_baseline) in [
            (50, 0.25, 0.02, false),
            (40, 0.1, 0.1, true),
            (30, 0.5, 1.0, true),
            (20, 0.25, 0.0, false),
            (25, 1.0, 0.05, true),
            (35, 0.0, 0.03, true),
        ] {
            let run = |always_iterate: bool| {
                let mut path = Path::new(input.clone(), with_baseline.then(|| baseline.clone()));
                path.always_iterate = always_iterate;
                path.run(&[n], steps, fraction, max_dist, &mut grads, &mut |_| {})
                    .unwrap()
            };
            let (fast, plain) = (run(false), run(true));
            let scale = plain.iter().fold(0.0_f64, |m, v| m.max(v.abs()));
            let err = fast.iter().zip(&plain).fold(0.0_f64, |m, (a, b)| m.max((a - b).abs()));
            assert!(
                err <= 1e-12 * scale,
                "steps {steps} fraction {fraction} max_dist {max_dist}: {err} of {scale}"
            );
        }
    }

    #[test]
    fn result_does_not_depend_on_thread_count() {
        // Several chunks of features.
        let n = 3 * crate::parallel::CHUNK + 123;
        let input: Vec<f64> = (0..n).map(|i| ((i * 37) % 101) as f64 / 50.0 - 1.0).collect();
        let run = |threads: usize| {
            crate::parallel::with_threads(threads, || {
                let mut path = Path::new(input.clone(), None);
                path.run(&[n], 12, 0.25, 0.05, &mut grads, &mut |_| {}).unwrap()
            })
        };
        let one = run(1);
        assert!(one.iter().any(|&v| v != 0.0));
        assert_eq!(one, run(2));
        assert_eq!(one, run(3));
    }

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
