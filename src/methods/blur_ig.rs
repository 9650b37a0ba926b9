//! Blur IG: integrated gradients along a path of increasingly blurred images
//! ([Xu et al., 2020](https://arxiv.org/abs/2004.03383)).

use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::checks::{check_image, check_positive, check_steps, finite_result};
use crate::core::{CoreSaliency, Progress, Stage};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::gaussian::{
    BoundaryMode, DEFAULT_TRUNCATE, Scratch, check_kernel_radius, filter_f64_with, round_to,
};
use crate::imageops::gaussian_series::{GaussianSeries, SeriesWorkspace};
use crate::model::{
    CallModelFunction, OutputKey, call_model_deferring_finite_check, find_non_finite, non_finite_error,
};
use crate::parallel::{for_each_chunk_mut, for_each_grouped, scratch};

/// Blur IG: the path runs from a fully blurred image (Gaussian blur of
/// `max_sigma`) to the input; the mask is minus the sum over the path of
/// the gradient times the change of the image per unit of sigma (a finite
/// difference with step `grad_step`) times the sigma step.
///
/// Matches `saliency.core.BlurIG` of PAIR saliency 0.2.1: `steps` points at
/// sigmas `i * max_sigma / steps` (or their square roots with `sqrt`), the
/// blur is `scipy.ndimage.gaussian_filter` over height and width with mode
/// `"constant"` (see [`gaussian_filter`](crate::imageops::gaussian_filter)),
/// and the input is `H x W x C` (or `H x W`).
///
/// One defect of the reference is fixed: with `sqrt` and `batch_size > 1`
/// the reference multiplies a whole batch by the sigma step of its last
/// point; here every point uses its own, so the result does not depend on
/// `batch_size` (and equals the reference's for `batch_size` 1).
///
/// At most `batch_size` path points (with their finite differences) exist at
/// any time; progress is reported after every batch. On images whose sides
/// are both at least 128 pixels, the kernels of radius 12 and up blur
/// through the FFT, and the spectra of the image's columns are computed once
/// per call and kept for all its blurs: at most about 16 bytes per input
/// value for one transform length, twice that when the narrower kernels get
/// a shorter length of their own (with `max_sigma` 50: 27 bytes at
/// 224 x 224, two lengths; 12 at 448 x 448 and 10 at 896 x 896, one).
/// Each thread also keeps the blurs' intermediate results (16 bytes per
/// input value) from batch to batch. A point or difference that overflows
/// (blurs of values near `f64::MAX`) is [`SaliencyError::NonFiniteResult`]
/// before the model sees it.
///
/// ```
/// use ndarray::Array3;
/// use saliency::{BlurIg, ModelOutputs, OutputKey, Saliency};
///
/// let mut x = Array3::<f64>::zeros((5, 5, 1));
/// x[[2, 2, 0]] = 1.0;
/// // f(x) = sum(sin(x)); the gradient is cos(x).
/// let mask = BlurIg::new().max_sigma(10.0).steps(200).batch_size(50).get_mask(
///     &x,
///     &mut |batch, _keys| Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(f64::cos))),
/// )?;
/// // Completeness: the mask sums to f(x) - f(fully blurred x), here about
/// // sin(1) minus the sine of a nearly flat image.
/// assert!((mask[[2, 2, 0]] - 0.8).abs() < 0.05);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BlurIg {
    max_sigma: f64,
    steps: usize,
    grad_step: f64,
    sqrt: bool,
    batch_size: usize,
}

impl Default for BlurIg {
    fn default() -> Self {
        BlurIg {
            max_sigma: 50.0,
            steps: 100,
            grad_step: 0.01,
            sqrt: false,
            batch_size: 1,
        }
    }
}

impl BlurIg {
    /// The reference's defaults: max sigma 50, 100 steps, gradient step
    /// 0.01, linear sigma spacing, batch size 1.
    pub fn new() -> Self {
        Self::default()
    }

    /// The blur of the path's start (finite, at least 0).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn max_sigma(mut self, max_sigma: f64) -> Self {
        self.max_sigma = max_sigma;
        self
    }

    /// Number of path points (1 to [`MAX_STEPS`](crate::MAX_STEPS)).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// The sigma step of the finite difference that estimates the change of
    /// the image with sigma (finite, above 0).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn grad_step(mut self, grad_step: f64) -> Self {
        self.grad_step = grad_step;
        self
    }

    /// Space the sigmas as square roots of evenly spaced values.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn sqrt(mut self, sqrt: bool) -> Self {
        self.sqrt = sqrt;
        self
    }

    /// Maximum number of path points per model call (at least 1).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// The path's sigmas, `steps + 1` of them, computed as the reference does.
    fn sigmas(&self) -> Vec<f64> {
        (0..=self.steps)
            .map(|i| {
                let s = i as f64 * self.max_sigma / self.steps as f64;
                if self.sqrt { s.sqrt() } else { s }
            })
            .collect()
    }

    fn check(&self) -> Result<()> {
        check_steps("steps", self.steps)?;
        check_positive("batch_size", self.batch_size)?;
        if !(self.max_sigma.is_finite() && self.max_sigma >= 0.0) {
            return Err(SaliencyError::param(
                "max_sigma",
                self.max_sigma,
                "must be finite and >= 0",
            ));
        }
        if !(self.grad_step.is_finite() && self.grad_step > 0.0) {
            return Err(SaliencyError::param(
                "grad_step",
                self.grad_step,
                "must be finite and > 0",
            ));
        }
        check_kernel_radius("max_sigma", self.max_sigma + self.grad_step, DEFAULT_TRUNCATE)?;
        Ok(())
    }

    /// The blur of the path's start.
    pub fn get_max_sigma(&self) -> f64 {
        self.max_sigma
    }

    /// The number of path points.
    pub fn get_steps(&self) -> usize {
        self.steps
    }

    /// The sigma step of the finite difference.
    pub fn get_grad_step(&self) -> f64 {
        self.grad_step
    }

    /// Whether the sigmas are spaced as square roots.
    pub fn get_sqrt(&self) -> bool {
        self.sqrt
    }

    /// The most path points per model call.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }
}

/// The reference's blur of `x` (row-major `f64` values of `shape`): none at
/// sigma 0, else a Gaussian over height and width with the constant 0 beyond
/// the edges, stored as `F`. `scratch` is reused between calls.
impl BlurIg {
    /// The mask and its convergence delta: `sum(mask) - (f(x) - f(baseline))`
    /// (Captum's convergence delta), where the baseline is the start of the
    /// path, the input blurred with the path's largest sigma (`max_sigma`, or
    /// its square root with `sqrt`), computed as the path's points are. The
    /// reference's path never evaluates the model there (its last point is
    /// one sigma step short of it), so `f(baseline)` comes from one extra
    /// call: the model is asked for [`OutputKey::OutputLayerValues`] once, on
    /// a batch of two rows (the blurred baseline, then `x`), before the path.
    /// A model that does not return it gets
    /// [`SaliencyError::ConvergenceDeltaNeedsOutputValues`].
    ///
    /// ```
    /// use ndarray::{Array3, Axis};
    /// use saliency::{BlurIg, ModelOutputs, OutputKey};
    ///
    /// let x = Array3::<f64>::from_shape_fn((6, 6, 1), |(i, j, _)| ((i * j) % 5) as f64 / 5.0);
    /// // f(x) = sum(sin(x)).
    /// let out = BlurIg::new().max_sigma(3.0).steps(400).get_mask_with_delta(&x, &mut |batch, request| {
    ///     let mut outputs = ModelOutputs::new();
    ///     if request.wants(OutputKey::OutputLayerValues) {
    ///         let f = batch.map_axis(Axis(1), |r| r.iter().map(|v| v.sin()).sum::<f64>()).sum_axis(Axis(1)).sum_axis(Axis(1));
    ///         outputs.insert(OutputKey::OutputLayerValues, f);
    ///     }
    ///     if request.wants(OutputKey::InputOutputGradients) {
    ///         outputs.insert(OutputKey::InputOutputGradients, batch.mapv(f64::cos));
    ///     }
    ///     Ok(outputs)
    /// })?;
    /// assert!(out.relative_delta() < 0.01, "{}", out.relative_delta());
    /// # Ok::<(), saliency::SaliencyError>(())
    /// ```
    pub fn get_mask_with_delta<'a, F: Float + 'a, D: ndarray::Dimension>(
        &self,
        x: impl ndarray::AsArray<'a, F, D>,
        model: &mut dyn CallModelFunction<F>,
    ) -> Result<crate::MaskWithDelta<F, D>> {
        let x = x.into();
        let x = x.view().into_dyn();
        self.check()?;
        check_image("input", &x)?;
        let shape = x.shape().to_vec();
        let x_f64 = crate::imageops::to_f64_vec(&x);
        let sigma = self.sigmas().last().copied().unwrap_or(0.0);
        let mut start = vec![F::zero(); x_f64.len()];
        blur(&x_f64, &shape, sigma, &mut start, &mut Scratch::default());
        if let Some((count, first_index)) = find_non_finite(&start) {
            return Err(SaliencyError::NonFiniteResult {
                what: "blurred input",
                count,
                first_index,
            });
        }
        let start = ArrayD::from_shape_vec(IxDyn(&shape), start)
            .map_err(|_| SaliencyError::internal("the blurred baseline does not have the input's size"))?;
        let (at_baseline, at_input) = crate::methods::integrated_gradients::end_values(model, start.view(), x.view())?;
        let mask = self.get_mask_dyn(x, model, &mut |_| {})?;
        crate::MaskWithDelta::new(mask, at_input, at_baseline)
    }
}

fn blur<F: Float>(x: &[f64], shape: &[usize], sigma: f64, out: &mut [F], scratch: &mut Scratch) {
    let sigmas = [sigma, sigma, 0.0];
    // Sigma 0 filters no axis: the result is `x` itself.
    let blurred = filter_f64_with(
        x,
        shape,
        &sigmas[..shape.len()],
        BoundaryMode::Constant(0.0),
        DEFAULT_TRUNCATE,
        round_to::<F>,
        scratch,
    );
    out.iter_mut()
        .zip(blurred)
        .for_each(|(o, v)| *o = F::from_f64_lossy(*v));
}

/// The error for a batch whose points (`len` values each) or finite
/// differences overflowed: the first point in path order with a non-finite
/// value, else the first non-finite difference; indices within one image.
fn overflow_error<F: Float>(points: &[F], slopes: &[F], len: usize) -> SaliencyError {
    let first = |what: &'static str, values: &[F]| {
        values.chunks(len.max(1)).find_map(|one| {
            find_non_finite(one).map(|(count, first_index)| SaliencyError::NonFiniteResult {
                what,
                count,
                first_index,
            })
        })
    };
    first("blurred input", points)
        .or_else(|| first("blurred input's finite difference", slopes))
        .unwrap_or_else(|| SaliencyError::internal("a Blur IG batch overflowed without a non-finite value"))
}

/// The mask: the input's shape.
impl<F: Float> crate::core::Saliency<F> for BlurIg {
    type MaskDim<D: ndarray::Dimension> = D;
}

impl<F: Float> CoreSaliency<F> for BlurIg {
    fn name(&self) -> &'static str {
        "Blur IG"
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
        self.check()?;
        check_image("input", &x)?;
        let shape = x.shape().to_vec();
        let x = crate::imageops::to_f64_vec(&x);
        let len = x.len();
        let sigmas = self.sigmas();
        let grad_step = F::from_f64_lossy(self.grad_step);
        if grad_step == F::zero() {
            return Err(SaliencyError::param(
                "grad_step",
                self.grad_step,
                "rounds to zero in the input's float type",
            ));
        }
        let key = OutputKey::InputOutputGradients;

        // The current batch of path points and their finite differences.
        let capacity = self.batch_size.min(self.steps);
        let batch_len = capacity.checked_mul(len).ok_or_else(|| {
            SaliencyError::param("batch_size", self.batch_size, "gives a batch too large to allocate")
        })?;
        // Kept buffers (every value is written before it is read): a call
        // after another does not fault in fresh pages for its batches.
        let too_large =
            || SaliencyError::param("batch_size", self.batch_size, "needs more memory than can be allocated");
        let mut points = scratch::<F>(batch_len).ok_or_else(too_large)?;
        let mut slopes = scratch::<F>(batch_len).ok_or_else(too_large)?;
        let mut total = vec![F::zero(); len];
        let mut batch_shape = vec![0];
        batch_shape.extend_from_slice(&shape);

        // One path point and its finite difference, from the blurs at
        // sigma and sigma + grad_step. Blurs of values near f64::MAX can
        // overflow (the symmetric kernel adds two neighbours before weighting
        // them), and so can the difference. A non-finite point makes its
        // difference non-finite too, so one check of the differences, folded
        // into the pass that computes them, covers both.
        let grad_step_f64 = self.grad_step;
        let finite = AtomicBool::new(true);
        // Every blur of the call starts from `x`: what they share is done once.
        let series = GaussianSeries::new(
            x,
            &shape,
            sigmas[..self.steps].iter().flat_map(|&s| [s, s + grad_step_f64]),
            DEFAULT_TRUNCATE,
        );
        let make_point = |ws: &mut SeriesWorkspace<F>, i: usize, point: &mut [F], slope: &mut [F]| {
            series.blur_each(
                &[sigmas[i], sigmas[i] + grad_step_f64],
                &mut [&mut *point, &mut *slope],
                ws,
            );
            // The division and the check as two simple loops (a little
            // faster than one loop doing both, in alternated runs).
            slope
                .iter_mut()
                .zip(point.iter())
                .for_each(|(s, &p)| *s = (*s - p) / grad_step);
            if !slope.iter().fold(true, |ok, s| ok & s.is_finite()) {
                finite.store(false, Ordering::Relaxed);
            }
        };
        // One workspace per thread, kept for all batches.
        let mut workspaces = Vec::new();
        let mut start = 0;
        while start < self.steps {
            let end = (start + self.batch_size).min(self.steps);
            let count = end - start;
            // The points of a batch are independent: one group of points
            // per thread, each with its own buffers (the grouping does not
            // change any result).
            let mut items: Vec<_> = points[..count * len]
                .chunks_mut(len)
                .zip(slopes[..count * len].chunks_mut(len))
                .enumerate()
                .collect();
            for_each_grouped(
                &mut items,
                &mut workspaces,
                || SeriesWorkspace::new(true),
                |ws, several, (b, (point, slope))| {
                    // With several groups the groups are the parallelism:
                    // each filter runs on its group's thread, with no
                    // hand-offs.
                    ws.set_sequential(several);
                    make_point(ws, start + *b, point, slope)
                },
            );
            if !finite.load(Ordering::Relaxed) {
                // Before the model is handed an overflowed point.
                return Err(overflow_error(&points[..count * len], &slopes[..count * len], len));
            }
            batch_shape[0] = count;
            let batch = ArrayViewD::from_shape(IxDyn(&batch_shape), &points[..count * len])
                .map_err(|_| SaliencyError::internal("the Blur IG batch does not fill its shape"))?;
            // The gradients' finiteness is checked on the batch's sum below.
            let mut outputs = call_model_deferring_finite_check(model, batch, &[key], Some(key))?;
            let grads = outputs.take(key)?;
            let grads = grads.as_standard_layout();
            let grads = grads.as_slice().unwrap_or(&[]);
            // Every point has its own sigma step (the reference uses the
            // batch's last one for all).
            let diffs: Vec<F> = (start..end)
                .map(|i| F::from_f64_lossy(sigmas[i + 1] - sigmas[i]))
                .collect();
            let slopes = &slopes;
            let finite_sum = AtomicBool::new(true);
            for_each_chunk_mut(&mut total, |offset, chunk| {
                // The batch's sum first, then added to the total, in the
                // reference's order; contiguous loops per point.
                let mut sum = vec![F::zero(); chunk.len()];
                for (b, &d) in diffs.iter().enumerate() {
                    let at = b * len + offset..b * len + offset + chunk.len();
                    for ((s, &slope), &g) in sum.iter_mut().zip(&slopes[at.clone()]).zip(&grads[at]) {
                        *s += d * (slope * g);
                    }
                }
                // NaN and infinities in the gradients survive the sum (an
                // infinity times a zero slope is NaN): checking it checks
                // every gradient without another pass over the batch. A sum
                // that overflowed from finite gradients is no gradient's
                // fault; the final check reports it.
                if !sum.iter().fold(true, |ok, s| ok & s.is_finite()) {
                    finite_sum.store(false, Ordering::Relaxed);
                }
                for (t, s) in chunk.iter_mut().zip(sum) {
                    *t += s;
                }
            });
            if !finite_sum.load(Ordering::Relaxed)
                && let Some(err) = non_finite_error(key, &batch_shape, grads)
            {
                return Err(err);
            }
            start = end;
            progress(Progress::new(Stage::BlurIgSteps, end, self.steps));
        }
        let data: Vec<F> = total.into_iter().map(|t| -t).collect();
        let mask = ArrayD::from_shape_vec(IxDyn(&shape), data)
            .map_err(|_| SaliencyError::internal("the Blur IG mask does not have the input's size"))?;
        finite_result("Blur IG mask", mask)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::Saliency;
    use crate::model::ModelOutputs;

    #[test]
    fn results_do_not_depend_on_the_thread_count() {
        let x = ArrayD::from_shape_fn(IxDyn(&[20, 18, 3]), |i| {
            ((i[0] * 5 + i[1] * 3 + i[2]) % 11) as f32 / 11.0
        });
        let run = |threads: usize| {
            crate::parallel::with_threads(threads, || {
                BlurIg::new()
                    .max_sigma(15.0)
                    .steps(12)
                    .batch_size(5)
                    .get_mask(x.view(), &mut |b, _| {
                        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, b.mapv(|v| v * v)))
                    })
            })
        };
        let one = run(1).unwrap();
        for threads in [2, 3] {
            assert_eq!(one, run(threads).unwrap());
        }
    }

    /// Non-finite gradients are the model's error, also where the path
    /// does not move (a zero slope times an infinity): the check folded into
    /// the batch's sum must find them all, each batch on its own.
    #[test]
    fn non_finite_gradients_are_the_models_error() {
        let ramp = ArrayD::from_shape_fn(IxDyn(&[12, 10]), |i| (i[0] * 10 + i[1]) as f64 / 120.0);
        let zeros = ArrayD::<f64>::zeros(IxDyn(&[12, 10]));
        for (x, bad) in [(&ramp, f64::NAN), (&ramp, f64::INFINITY), (&zeros, f64::NEG_INFINITY)] {
            for batch_size in [1, 3] {
                let mut calls = 0;
                let err = BlurIg::new()
                    .max_sigma(4.0)
                    .steps(5)
                    .batch_size(batch_size)
                    .get_mask(x.view(), &mut |b, _| {
                        calls += 1;
                        let mut g = b.mapv(|_| 1.0);
                        // One bad value, in the second call's last point.
                        if calls == 2 {
                            g.iter_mut().last().into_iter().for_each(|v| *v = bad);
                        }
                        Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
                    })
                    .unwrap_err();
                assert!(
                    matches!(err, SaliencyError::NonFiniteOutput { count: 1, .. }),
                    "{bad} batch {batch_size}: {err}"
                );
                // Nothing after the failing call.
                assert_eq!(calls, 2, "{bad} batch {batch_size}");
            }
        }
    }
}
