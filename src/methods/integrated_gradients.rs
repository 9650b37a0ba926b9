//! Integrated Gradients ([Sundararajan et al., 2017](https://arxiv.org/abs/1703.01365)).

use ndarray::{ArrayD, ArrayViewD, ArrayViewMutD, Axis, IxDyn, Slice};

use crate::parallel::for_each_chunk_mut;

use crate::core::{CoreSaliency, Progress, check_finite, check_input, check_positive};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::model::{CallModelFunction, OutputKey, call_model};

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
/// use saliency::{CoreSaliency, IntegratedGradients, ModelOutputs, OutputKey};
///
/// // f(x) = sum(x^2) from the zero baseline: IG gives x^2 up to the Riemann error.
/// let x = array![1.0_f64, -2.0];
/// let ig = IntegratedGradients::new().steps(100).batch_size(10);
/// let mask = ig.get_mask(x.view().into_dyn(), &mut |batch, _keys| {
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
    /// included (at least 1).
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// Maximum number of path points per model call (at least 1).
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// The baseline to integrate from; it must have the input's shape.
    /// Without one, the baseline is all zeros.
    pub fn baseline<D: ndarray::Dimension>(mut self, baseline: ndarray::Array<F, D>) -> Self {
        self.baseline = Some(baseline.into_dyn());
        self
    }
}

impl<F: Float> CoreSaliency<F> for IntegratedGradients<F> {
    fn name(&self) -> &'static str {
        "Integrated Gradients"
    }

    fn get_mask_with_progress(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        check_input("input", &x, 1)?;
        let baseline = match &self.baseline {
            Some(b) => {
                if b.shape() != x.shape() {
                    return Err(SaliencyError::ShapeMismatch {
                        what: "baseline",
                        expected: x.shape().to_vec(),
                        actual: b.shape().to_vec(),
                    });
                }
                check_finite("baseline", &b.view())?;
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
/// the caller), used by [`IntegratedGradients`] and by XRAI.
pub(crate) fn integrated_gradients<F: Float>(
    x: ArrayViewD<'_, F>,
    baseline: ArrayViewD<'_, F>,
    steps: usize,
    batch_size: usize,
    model: &mut dyn CallModelFunction<F>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ArrayD<F>> {
    integrated_gradients_in(x, baseline, steps, batch_size, model, progress, &mut Vec::new())
}

/// [`integrated_gradients`] with the batch buffer supplied, so that several
/// runs (XRAI's baselines) share one allocation.
pub(crate) fn integrated_gradients_in<F: Float>(
    x: ArrayViewD<'_, F>,
    baseline: ArrayViewD<'_, F>,
    steps: usize,
    batch_size: usize,
    model: &mut dyn CallModelFunction<F>,
    progress: &mut dyn FnMut(Progress),
    buffer: &mut Vec<F>,
) -> Result<ArrayD<F>> {
    check_positive("steps", steps)?;
    check_positive("batch_size", batch_size)?;
    // Flat row-major data: every loop below runs on contiguous slices.
    let x_copy: Vec<F>;
    let xs: &[F] = match x.as_slice() {
        Some(flat) => flat,
        None => {
            x_copy = x.iter().copied().collect();
            &x_copy
        }
    };
    let b_copy: Vec<F>;
    let bs: &[F] = match baseline.as_slice() {
        Some(flat) => flat,
        None => {
            b_copy = baseline.iter().copied().collect();
            &b_copy
        }
    };
    let diff: Vec<F> = xs.iter().zip(bs).map(|(&a, &b)| a - b).collect();
    let n = xs.len();

    // One buffer of at most `batch_size` path points, reused for every batch.
    let mut batch_shape = vec![steps.min(batch_size)];
    batch_shape.extend_from_slice(x.shape());
    let len = batch_shape.iter().product::<usize>();
    buffer.resize(len, F::zero());
    let mut batch = ArrayViewMutD::from_shape(IxDyn(&batch_shape), &mut buffer[..len])
        .map_err(|_| SaliencyError::param("batch", len, "does not fit its shape"))?;
    let mut total = vec![F::zero(); n];
    let key = OutputKey::InputOutputGradients;

    let alphas: Vec<f64> = linspace_0_1(steps).collect();
    let mut done = 0;
    for chunk in alphas.chunks(batch_size) {
        let mut points = batch.slice_axis_mut(Axis(0), Slice::from(..chunk.len()));
        let flat = points
            .as_slice_mut()
            .ok_or_else(|| SaliencyError::param("batch", n, "is not contiguous"))?;
        // As the reference computes it (numpy promotes to f64).
        for_each_chunk_mut(flat, |offset, out| {
            // The chunk spans one or more path points: fill it point by
            // point so the inner loop is a plain zip.
            let (mut step, mut i) = (offset / n, offset % n);
            let mut rest = out;
            while !rest.is_empty() {
                let take = rest.len().min(n - i);
                let (head, tail) = rest.split_at_mut(take);
                let alpha = chunk[step];
                for ((p, &b), &d) in head.iter_mut().zip(&bs[i..i + take]).zip(&diff[i..i + take]) {
                    *p = F::from_f64_lossy(b.as_f64() + alpha * d.as_f64());
                }
                rest = tail;
                i = 0;
                step += 1;
            }
        });
        let mut outputs = call_model(model, points.view(), &[key])?;
        let grads = outputs.take(key)?;
        let grads = grads.as_standard_layout();
        let g = grads.as_slice().unwrap_or(&[]);
        let rows = chunk.len();
        // Sum the batch first, then add, in the reference's order.
        for_each_chunk_mut(&mut total, |offset, out| {
            // Partial sums in a small stack block that stays in L1.
            const BLOCK: usize = 1024;
            let mut s = [F::zero(); BLOCK];
            for (b, t_block) in out.chunks_mut(BLOCK).enumerate() {
                let start = offset + b * BLOCK;
                let len = t_block.len();
                let acc = &mut s[..len];
                acc.fill(F::zero());
                for r in 0..rows {
                    let row = &g[r * n + start..r * n + start + len];
                    for (a, &v) in acc.iter_mut().zip(row) {
                        *a += v;
                    }
                }
                for (t, &v) in t_block.iter_mut().zip(acc.iter()) {
                    *t += v;
                }
            }
        });
        done += chunk.len();
        progress(Progress::new("integrated gradients steps", done, steps));
    }
    let steps_f = F::from_f64_lossy(steps as f64);
    for_each_chunk_mut(&mut total, |offset, out| {
        for (k, t) in out.iter_mut().enumerate() {
            *t = *t * diff[offset + k] / steps_f;
        }
    });
    ArrayD::from_shape_vec(x.raw_dim(), total)
        .map_err(|_| SaliencyError::param("input", n, "has an inconsistent shape"))
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
