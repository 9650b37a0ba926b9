//! Integrated Gradients ([Sundararajan et al., 2017](https://arxiv.org/abs/1703.01365)).

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::parallel::{PARALLEL_MIN, flat, for_each_chunk_mut, for_each_chunk_mut_from, with_scratch};

use crate::checks::{check_input, check_like_input, check_positive, check_steps, finite_result};
use crate::core::{CoreSaliency, Progress, Stage};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::model::{CallModelFunction, OutputKey, call_model_deferring_finite_check, non_finite_error};

/// Integrated Gradients: the gradient averaged along the straight path from a
/// baseline to the input, times (input - baseline).
///
/// Matches `saliency.core.IntegratedGradients` of PAIR saliency 0.2.1: the
/// path points are `baseline + alpha * (x - baseline)` for `alpha` in
/// `numpy.linspace(0, 1, steps)` (both ends included), and the mask is
/// `sum(gradients) * (x - baseline) / steps`.
///
/// At most `batch_size` path points exist at any time; they are sent to the
/// model in batches of `batch_size` (the last one may be smaller). The result
/// does not depend on `batch_size` beyond floating-point summation order.
///
/// ```
/// use ndarray::array;
/// use saliency::{IntegratedGradients, ModelOutputs, OutputKey, Saliency};
///
/// // f(x) = sum(x^2) from the zero baseline: IG gives x^2 up to the Riemann error.
/// let x = array![1.0_f64, -2.0];
/// let ig = IntegratedGradients::new().steps(100).batch_size(10);
/// let mask = ig.get_mask(&x, &mut |batch, _keys| {
///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| 2.0 * v)))
/// })?;
/// assert!((mask[[1]] - 4.0).abs() < 1e-12);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct IntegratedGradients<F> {
    steps: usize,
    batch_size: usize,
    baseline: Option<ArrayD<F>>,
}

impl<F> Default for IntegratedGradients<F> {
    fn default() -> Self {
        IntegratedGradients {
            steps: 25,
            batch_size: 1,
            baseline: None,
        }
    }
}

impl<F: Float> IntegratedGradients<F> {
    /// The reference's defaults: 25 steps, batch size 1, zero baseline.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of path points between the baseline and the input, both
    /// included (1 to [`MAX_STEPS`](crate::MAX_STEPS)).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// Maximum number of path points per model call (at least 1).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// The baseline to integrate from; it must have the input's shape.
    /// Without one, the baseline is all zeros.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn baseline<D: ndarray::Dimension>(mut self, baseline: ndarray::Array<F, D>) -> Self {
        self.baseline = Some(baseline.into_dyn());
        self
    }

    /// The number of path points.
    pub fn get_steps(&self) -> usize {
        self.steps
    }

    /// The most path points per model call.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }

    /// The baseline set with [`baseline`](Self::baseline); `None` means all zeros.
    pub fn get_baseline(&self) -> Option<&ArrayD<F>> {
        self.baseline.as_ref()
    }
}

/// The mask: the input's shape.
impl<F: Float> crate::core::Saliency<F> for IntegratedGradients<F> {
    type MaskDim<D: ndarray::Dimension> = D;
}

impl<F: Float> CoreSaliency<F> for IntegratedGradients<F> {
    fn name(&self) -> &'static str {
        "Integrated Gradients"
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
        check_input("input", &x, 1)?;
        let baseline = match &self.baseline {
            Some(b) => {
                check_like_input("baseline", &b.view(), x.shape())?;
                std::borrow::Cow::Borrowed(b)
            }
            None => std::borrow::Cow::Owned(ArrayD::zeros(x.raw_dim())),
        };
        integrated_gradients(x, baseline.view(), self.steps, self.batch_size, model, progress)
    }
}

/// The values of `numpy.linspace(0, 1, steps)`, computed as numpy does
/// (`i * (1 / (steps - 1))`, the last set to exactly 1) so that path points
/// are bit-identical to the reference's.
pub(crate) fn linspace_0_1(steps: usize) -> impl Iterator<Item = f64> {
    let step = if steps > 1 { 1.0 / (steps - 1) as f64 } else { 0.0 };
    (0..steps).map(move |i| {
        if steps > 1 && i == steps - 1 {
            1.0
        } else {
            i as f64 * step
        }
    })
}

/// Integrated gradients of `x` from `baseline` (same shape, both checked by
/// the caller: a baseline of another shape gives an internal error), used
/// by [`IntegratedGradients`] and by XRAI.
pub(crate) fn integrated_gradients<F: Float>(
    x: ArrayViewD<'_, F>,
    baseline: ArrayViewD<'_, F>,
    steps: usize,
    batch_size: usize,
    model: &mut dyn CallModelFunction<F>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ArrayD<F>> {
    check_steps("steps", steps)?;
    check_positive("batch_size", batch_size)?;
    // Flat copies: the hot loops below run over contiguous slices.
    let base = flat(&baseline);
    let x_flat = flat(&x);
    let diff: Vec<F> = x_flat.iter().zip(base.iter()).map(|(&x, &b)| x - b).collect();
    let len = diff.len();
    // Finite inputs far apart (1e300 and -1e300) overflow here; the path
    // would hand the model infinities.
    if let Some((count, first_index)) = crate::model::find_non_finite(&diff) {
        return Err(SaliencyError::NonFiniteResult {
            what: "input - baseline",
            count,
            first_index,
        });
    }

    // One buffer of at most `batch_size` path points, reused for every batch.
    let capacity = steps.min(batch_size);
    let mut total = vec![F::zero(); len];
    let too_large = || SaliencyError::param("batch_size", batch_size, "gives a batch too large to allocate");
    let scratch_len = capacity.checked_mul(len).ok_or_else(too_large)?;
    with_scratch(scratch_len, |buffer: &mut [F]| -> Result<()> {
        let key = OutputKey::InputOutputGradients;

        let alphas: Vec<f64> = linspace_0_1(steps).collect();
        let mut done = 0;
        for chunk in alphas.chunks(batch_size) {
            // baseline + alpha * diff, as the reference computes it (for f32
            // numpy 2 would promote to f64; the difference is one rounding).
            // One parallel pass over the whole batch; pieces split at rows.
            let alphas_f: Vec<F> = chunk.iter().map(|&a| F::from_f64_lossy(a)).collect();
            for_each_chunk_mut(&mut buffer[..chunk.len() * len], |offset, out| {
                let mut pos = offset;
                let mut rest = out;
                while !rest.is_empty() {
                    let (row, i0) = (pos / len, pos % len);
                    let (piece, tail) = rest.split_at_mut(rest.len().min(len - i0));
                    let alpha = alphas_f[row];
                    for ((p, &b), &d) in piece.iter_mut().zip(&base[i0..]).zip(&diff[i0..]) {
                        *p = b + alpha * d;
                    }
                    pos += piece.len();
                    rest = tail;
                }
            });
            let mut batch_shape = vec![chunk.len()];
            batch_shape.extend_from_slice(x.shape());
            let batch = ArrayViewD::from_shape(IxDyn(&batch_shape), &buffer[..chunk.len() * len])
                .map_err(|_| SaliencyError::internal("the integrated gradients batch does not fill its shape"))?;
            let mut outputs = call_model_deferring_finite_check(model, batch, &[key], Some(key))?;
            let grads = outputs.take(key)?;
            let grads = grads.as_standard_layout();
            let grads = grads.as_slice().unwrap_or(&[]);
            let rows = chunk.len();
            let finite = std::sync::atomic::AtomicBool::new(true);
            // Sum the batch first, then add, in the reference's order; row by row
            // so that every pass is a contiguous, vectorised one.
            for_each_chunk_mut_from(PARALLEL_MIN / rows, &mut total, |offset, out| {
                let n = out.len();
                let mut rows_of_chunk = grads.chunks(len).map(|row| &row[offset..offset + n]);
                let mut sum: Vec<F> = rows_of_chunk.next().map(<[F]>::to_vec).unwrap_or_default();
                for row in rows_of_chunk {
                    sum.iter_mut().zip(row).for_each(|(s, &g)| *s += g);
                }
                out.iter_mut().zip(&sum).for_each(|(t, &s)| *t += s);
                // NaN and infinities survive the sum: checking it checks every
                // gradient without another pass over the batch.
                if !sum.iter().fold(true, |ok, s| ok & s.is_finite()) {
                    finite.store(false, std::sync::atomic::Ordering::Relaxed);
                }
            });
            if !finite.load(std::sync::atomic::Ordering::Relaxed)
                && let Some(err) = non_finite_error(key, &batch_shape, grads)
            {
                return Err(err);
            }
            done += rows;
            progress(Progress::new(Stage::IntegratedGradientsSteps, done, steps));
        }
        Ok(())
    })
    .ok_or_else(too_large)??;
    let n = F::from_f64_lossy(steps as f64);
    for_each_chunk_mut(&mut total, |offset, out| {
        for (t, &d) in out.iter_mut().zip(&diff[offset..]) {
            *t = *t * d / n;
        }
    });
    let mask = ArrayD::from_shape_vec(x.raw_dim(), total)
        .map_err(|_| SaliencyError::internal("the integrated gradients mask does not have the input's size"))?;
    finite_result("integrated gradients", mask)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linspace_matches_numpy_construction() {
        // numpy.linspace(0, 1, 5) = [0, 0.25, 0.5, 0.75, 1]
        assert_eq!(linspace_0_1(5).collect::<Vec<_>>(), vec![0.0, 0.25, 0.5, 0.75, 1.0]);
        assert_eq!(linspace_0_1(1).collect::<Vec<_>>(), vec![0.0]);
    }
}
