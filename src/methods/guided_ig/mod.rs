//! Guided Integrated Gradients
//! ([Kapishnikov et al., 2021](https://arxiv.org/abs/2106.09788)).

//!
//! This module holds the public part; the path and its steps are in
//! `path`, the selection of the features each step moves in `selection`
//! (which depends on neither).

mod path;
mod selection;

use ndarray::{ArrayD, ArrayViewD};

use crate::checks::{check_input, check_like_input, check_positive, check_steps, finite_result};
use crate::core::{CoreSaliency, Progress};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::model::CallModelFunction;

use path::Path;

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
/// [`OutputKey::InputOutputGradients`](crate::OutputKey::InputOutputGradients);
/// for `f32` the path point is rounded to `f32` for the model.
///
/// Where the reference cannot continue, this stops the step instead: when
/// every feature has reached `alpha + max_dist` but the target is still not
/// met (only possible through rounding; the reference loops forever) and when
/// the target was overshot (the reference fails an assertion).
///
/// The crate's own cost per step is two passes over the features and a scan
/// of their histogram buckets (the reference makes about thirty NumPy passes
/// per iteration, several iterations per step), parallel with the `rayon`
/// feature; the result does not depend on the number of threads.
///
/// ```
/// use ndarray::array;
/// use saliency::{GuidedIg, ModelOutputs, OutputKey, Saliency};
///
/// // f(x) = 2 x0 + x1 is linear, so Guided IG equals Integrated Gradients:
/// // (x - baseline) * gradient (the reference's own test).
/// let x = array![10.0_f64, 5.0];
/// let gig = GuidedIg::new().steps(10).fraction(0.1).max_dist(0.5).baseline(array![-1.0, -3.0]);
/// let mask = gig.get_mask(&x, &mut |batch, _keys| {
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
    batch_size: usize,
}

impl<F> Default for GuidedIg<F> {
    fn default() -> Self {
        GuidedIg {
            steps: 200,
            fraction: 0.25,
            max_dist: 0.02,
            baseline: None,
            batch_size: 1,
        }
    }
}

impl<F: Float> GuidedIg<F> {
    /// The reference's defaults: 200 steps, fraction 0.25, maximum distance
    /// 0.02, zero baseline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of steps of the path (1 to [`MAX_STEPS`](crate::MAX_STEPS));
    /// one model call each.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// Fraction (0..=1) of the features, by smallest `|gradient|`, moved at
    /// each iteration within a step.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn fraction(mut self, fraction: f64) -> Self {
        self.fraction = fraction;
        self
    }

    /// How far (0..=1, as a fraction of the path) a feature may run ahead of
    /// or lag behind the straight line; 0 gives Integrated Gradients on the
    /// straight line, 1 an unbounded path.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn max_dist(mut self, max_dist: f64) -> Self {
        self.max_dist = max_dist;
        self
    }

    /// The baseline the path starts from; it must have the input's shape.
    /// Without one, the baseline is all zeros.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn baseline<D: ndarray::Dimension>(mut self, baseline: ndarray::Array<F, D>) -> Self {
        self.baseline = Some(baseline.into_dyn());
        self
    }

    /// The most rows per model call in a multi-image call
    /// ([`Saliency::get_masks`](crate::Saliency::get_masks)), default 1. Each step depends on the
    /// previous one, so one image sends one row per call; several images
    /// share calls.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// The number of steps of the path.
    pub fn get_steps(&self) -> usize {
        self.steps
    }

    /// The fraction of the features moved at each iteration.
    pub fn get_fraction(&self) -> f64 {
        self.fraction
    }

    /// How far a feature may leave the straight line, as a fraction of the path.
    pub fn get_max_dist(&self) -> f64 {
        self.max_dist
    }

    /// The baseline set with [`baseline`](Self::baseline); `None` means all zeros.
    pub fn get_baseline(&self) -> Option<&ArrayD<F>> {
        self.baseline.as_ref()
    }

    /// The most rows per model call in a multi-image call.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }
}

/// The mask: the input's shape.
impl<F: Float> crate::core::Saliency<F> for GuidedIg<F> {
    type MaskDim<D: ndarray::Dimension> = D;
}

impl<F: Float> CoreSaliency<F> for GuidedIg<F> {
    fn name(&self) -> &'static str {
        "Guided Integrated Gradients"
    }

    fn batch_size(&self) -> usize {
        self.batch_size
    }

    fn get_mask_dyn(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        self.check(&x)?;
        let input: Vec<f64> = x.iter().map(|v| v.as_f64()).collect();
        let baseline: Vec<f64> = match &self.baseline {
            Some(b) => b.iter().map(|v| v.as_f64()).collect(),
            None => Vec::new(),
        };
        // An all-zero baseline (the default) is not stored: the passes then
        // read two arrays fewer.
        let baseline = (!baseline.iter().all(|b| b.to_bits() == 0)).then_some(baseline);
        let mut path = Path::new(input, baseline);
        let attr = path.run(x.shape(), self.steps, self.fraction, self.max_dist, model, progress)?;
        let attr = attr.into_iter().map(F::from_f64_lossy).collect();
        let mask = ArrayD::from_shape_vec(x.raw_dim(), attr)
            .map_err(|_| SaliencyError::internal("the Guided IG attribution does not have the input's size"))?;
        finite_result("guided integrated gradients", mask)
    }
}

impl<F: Float> GuidedIg<F> {
    fn check(&self, x: &ArrayViewD<'_, F>) -> Result<()> {
        check_input("input", x, 1)?;
        check_steps("steps", self.steps)?;
        check_unit("fraction", self.fraction)?;
        check_unit("max_dist", self.max_dist)?;
        // One image sends one row per call, but the setting is checked
        // whatever the call.
        check_positive("batch_size", self.batch_size)?;
        if let Some(b) = &self.baseline {
            check_like_input("baseline", &b.view(), x.shape())?;
        }
        Ok(())
    }

    /// The mask and its convergence delta: `sum(mask) - (f(x) - f(baseline))`
    /// (Captum's convergence delta; Guided IG's path runs from the baseline to
    /// `x`, so completeness holds as for Integrated Gradients). The model is
    /// asked for [`OutputKey::OutputLayerValues`](crate::OutputKey::OutputLayerValues)
    /// once, on a batch of two rows (the baseline, then `x`), before the path;
    /// a model that does not return it gets
    /// [`SaliencyError::ConvergenceDeltaNeedsOutputValues`].
    ///
    /// ```
    /// use ndarray::{array, Axis};
    /// use saliency::{GuidedIg, ModelOutputs, OutputKey};
    ///
    /// // f(x) = sum(x^2) from the zero baseline.
    /// let x = array![1.0_f64, -2.0, 0.5];
    /// let out = GuidedIg::new().steps(400).get_mask_with_delta(&x, &mut |batch, request| {
    ///     let mut outputs = ModelOutputs::new();
    ///     if request.wants(OutputKey::OutputLayerValues) {
    ///         outputs.insert(OutputKey::OutputLayerValues, batch.map_axis(Axis(1), |r| r.dot(&r)));
    ///     }
    ///     if request.wants(OutputKey::InputOutputGradients) {
    ///         outputs.insert(OutputKey::InputOutputGradients, batch.mapv(|v| 2.0 * v));
    ///     }
    ///     Ok(outputs)
    /// })?;
    /// assert_eq!(out.output_at_input, 5.25);
    /// assert!(out.relative_delta() < 0.01, "{}", out.relative_delta());
    /// # Ok::<(), saliency::SaliencyError>(())
    /// ```
    pub fn get_mask_with_delta<'a, D: ndarray::Dimension>(
        &self,
        x: impl ndarray::AsArray<'a, F, D>,
        model: &mut dyn CallModelFunction<F>,
    ) -> Result<crate::MaskWithDelta<F, D>>
    where
        F: 'a,
    {
        let x = x.into();
        let x = x.view().into_dyn();
        self.check(&x)?;
        let zeros;
        let start = match &self.baseline {
            Some(b) => b.view(),
            None => {
                zeros = ArrayD::zeros(x.raw_dim());
                zeros.view()
            }
        };
        let (at_baseline, at_input) = crate::methods::integrated_gradients::end_values(model, start, x.view())?;
        let mask = self.get_mask_dyn(x, model, &mut |_| {})?;
        crate::MaskWithDelta::new(mask, at_input, at_baseline)
    }
}

fn check_unit(name: &'static str, v: f64) -> Result<()> {
    if v.is_finite() && (0.0..=1.0).contains(&v) {
        Ok(())
    } else {
        Err(SaliencyError::param(name, v, "must be between 0 and 1"))
    }
}
