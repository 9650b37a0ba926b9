//! Guided Integrated Gradients
//! ([Kapishnikov et al., 2021](https://arxiv.org/abs/2106.09788)).

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

use crate::core::{CoreSaliency, Progress, check_finite, check_input, check_positive};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::quantile_lower;
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
    /// `|grad|`, or infinity for features already at `alpha + max_dist`.
    abs_grad: Vec<f64>,
    /// Selection scratch.
    scratch: Vec<f64>,
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
            abs_grad: vec![0.0; n],
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
        let l1_total: f64 = self.delta.iter().map(|d| d.abs()).sum();
        if l1_total == 0.0 {
            return Ok(std::mem::take(&mut self.attr));
        }
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
            let grads = outputs.take(key)?.index_axis_move(Axis(0), 0);
            for ((g, a), &v) in self.grad.iter_mut().zip(&mut self.abs_grad).zip(grads.iter()) {
                *g = v.as_f64();
                *a = g.abs();
            }
            let alpha = (step as f64 + 1.0) / steps as f64;
            let bounds = Bounds {
                min: (alpha - max_dist).max(0.0),
                max: (alpha + max_dist).min(1.0),
            };
            let l1_target = l1_total * (1.0 - (step + 1) as f64 / steps as f64);
            self.step(bounds, l1_target, fraction)?;
            progress(Progress::new("guided integrated gradients steps", step + 1, steps));
        }
        Ok(std::mem::take(&mut self.attr))
    }

    /// One step: iterate until the L1 distance to the input is `l1_target`.
    fn step(&mut self, bounds: Bounds, l1_target: f64, fraction: f64) -> Result<()> {
        loop {
            let l1_current = self.catch_up(bounds.min);
            if is_close(l1_target, l1_current, EPSILON) {
                return Ok(());
            }
            let threshold = self.threshold(bounds.max, fraction)?;
            let l1_selected = self.selected_distance(bounds.max, threshold);
            if l1_selected <= 0.0 {
                // Nothing left to move: the reference would loop forever.
                return Ok(());
            }
            let gamma = (l1_current - l1_target) / l1_selected;
            if gamma <= 0.0 {
                // Overshot by more than rounding: the reference asserts.
                return Ok(());
            }
            self.advance(bounds.max, threshold, gamma);
            if gamma <= 1.0 {
                return Ok(());
            }
        }
    }

    /// Brings features whose alpha is below `alpha_min` up to it and returns
    /// the L1 distance to the input.
    fn catch_up(&mut self, alpha_min: f64) -> f64 {
        let mut l1 = 0.0;
        for ((((x, a), &g), &b), (&d, &i)) in self
            .x
            .iter_mut()
            .zip(&mut self.attr)
            .zip(&self.grad)
            .zip(&self.baseline)
            .zip(self.delta.iter().zip(&self.input))
        {
            // Features equal to the baseline have alpha NaN, read as
            // alpha_max by the reference: never behind.
            if d != 0.0 && (*x - b) / d < alpha_min {
                let moved = b + d * alpha_min;
                *a += (moved - *x) * g;
                *x = moved;
            }
            l1 += (*x - i).abs();
        }
        l1
    }

    /// Marks features at `x_max` as excluded and returns the `fraction`
    /// quantile ("lower") of `|grad|` with excluded features counting as
    /// infinite (returned as `f64::MAX`, which selects every feature left).
    fn threshold(&mut self, alpha_max: f64, fraction: f64) -> Result<f64> {
        self.scratch.clear();
        for (((a, &x), &b), &d) in self
            .abs_grad
            .iter_mut()
            .zip(&self.x)
            .zip(&self.baseline)
            .zip(&self.delta)
        {
            if x == b + d * alpha_max {
                *a = f64::INFINITY;
            }
            self.scratch.push(a.min(f64::MAX));
        }
        quantile_lower(&mut self.scratch, fraction)
    }

    /// L1 distance from the selected features to `x_max`.
    fn selected_distance(&self, alpha_max: f64, threshold: f64) -> f64 {
        let mut l1 = 0.0;
        for (((&a, &x), &b), &d) in self.abs_grad.iter().zip(&self.x).zip(&self.baseline).zip(&self.delta) {
            if a <= threshold {
                l1 += (x - (b + d * alpha_max)).abs();
            }
        }
        l1
    }

    /// Moves the selected features all the way to `x_max` (`gamma > 1`) or
    /// the fraction `gamma` of the way, and updates the attribution.
    fn advance(&mut self, alpha_max: f64, threshold: f64, gamma: f64) {
        for (((((x, a), &g), &ag), &b), &d) in self
            .x
            .iter_mut()
            .zip(&mut self.attr)
            .zip(&self.grad)
            .zip(&self.abs_grad)
            .zip(&self.baseline)
            .zip(&self.delta)
        {
            if ag <= threshold {
                let x_max = b + d * alpha_max;
                let moved = if gamma > 1.0 { x_max } else { *x + (x_max - *x) * gamma };
                *a += (moved - *x) * g;
                *x = moved;
            }
        }
    }
}

#[derive(Clone, Copy)]
struct Bounds {
    min: f64,
    max: f64,
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
