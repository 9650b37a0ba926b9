//! Integrated Gradients ([Sundararajan et al., 2017](https://arxiv.org/abs/1703.01365)).

use ndarray::{ArrayD, ArrayViewD, IxDyn};

use crate::parallel::{PARALLEL_MIN, flat, for_each_chunk_mut, for_each_chunk_mut_from, scratch, with_scratch};

use crate::batch_setting::BatchSize;
use crate::checks::{check_input, check_like_input, check_positive, check_steps, finite_result};
use crate::core::{CoreSaliency, Progress, Stage};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::model::{CallModelFunction, OutputKey, call_model, call_model_deferring_finite_check, non_finite_error};

/// Integrated Gradients: the gradient averaged along the straight path from a
/// baseline to the input, times (input - baseline).
///
/// Matches `saliency.core.IntegratedGradients` of PAIR saliency 0.2.1: the
/// path points are `baseline + alpha * (x - baseline)` for `alpha` in
/// `numpy.linspace(0, 1, steps)` (both ends included), and the mask is
/// `sum(gradients) * (x - baseline) / steps`.
///
/// At most one batch of path points exists at any time; the points go to the
/// model in batches set by [`batch`](Self::batch) (the last one may be
/// smaller). The reference sends one point per call (its `batch_size`
/// default of 1); the default here is a byte budget,
/// [`DEFAULT_BATCH`](Self::DEFAULT_BATCH), so that a batch of points and the
/// model's gradients for it stay small whatever the image size (6 points
/// per call at 224 x 224 x 3 `f32`, 1 from 448 x 448). The
/// mask does not
/// depend on the batch setting, bit for bit: the gradients are summed one
/// point after another in path order, which is the reference's order at its
/// default `batch_size` of 1 (with a larger `batch_size` the reference sums
/// each batch first, a difference in the last bits).
///
/// [`rule`](Self::rule) picks Captum's integration rules instead
/// ([`IntegrationRule`]): the mask is then `(x - baseline) * sum(w_i * g_i)`
/// over the rule's points `alpha_i` and weights `w_i`. The parameters map to
/// Captum 0.9's `IntegratedGradients(forward).attribute(inputs, baselines,
/// target, n_steps, method)` as: `steps` = `n_steps`, [`rule`](Self::rule) =
/// `method` (its [`captum_name`](IntegrationRule::captum_name)), the
/// [`baseline`](Self::baseline) = `baselines` (one, of the input's shape;
/// none = zeros, as Captum's default), the target is the model's (the
/// closure's) choice, and `batch_size` = `internal_batch_size`.
/// [`get_mask_with_delta`](Self::get_mask_with_delta) is
/// `return_convergence_delta=True`.
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
    batch: BatchSize,
    baseline: Option<ArrayD<F>>,
    rule: IntegrationRule,
}

impl<F> Default for IntegratedGradients<F> {
    fn default() -> Self {
        IntegratedGradients {
            steps: 25,
            batch: IntegratedGradients::<F>::DEFAULT_BATCH,
            baseline: None,
            rule: IntegrationRule::EvenlySpaced,
        }
    }
}

impl<F> IntegratedGradients<F> {
    /// The default batch setting: path points up to a batch of 4 MiB (at
    /// least one point per call). The batch and the model's gradients for
    /// it (as large again) then stay within a few MiB of cache at any image
    /// size, where a count does not: 16 points of 448 x 448 x 3 `f32` take
    /// 38.5 MB. With a near-free model (the `workloads` example, `--batch`),
    /// 4 MiB was the fastest or tied among budgets of 1 to 8 MiB and counts
    /// of 1 to 16 at 224 x 224 (6 points a call: 2.2 ms, against 2.3 ms for
    /// 4 points, 3.3 ms for 1, 4.1 ms for 8 MiB's 13) and at 448 x 448
    /// (1 point: 12 ms, 13 ms for a count of 1, 25 ms for 4). The
    /// reference's default is one point per call; the mask is the same.
    pub const DEFAULT_BATCH: BatchSize = BatchSize::Bytes(4 << 20);
}

impl<F: Float> IntegratedGradients<F> {
    /// The reference's defaults (25 steps, zero baseline) with the batch
    /// setting [`DEFAULT_BATCH`](Self::DEFAULT_BATCH) (the reference's
    /// batch size is 1; the mask is the same).
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

    crate::batch_setting::batch_accessors!("path points");

    /// The baseline to integrate from; it must have the input's shape.
    /// Without one, the baseline is all zeros.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn baseline<D: ndarray::Dimension>(mut self, baseline: ndarray::Array<F, D>) -> Self {
        self.baseline = Some(baseline.into_dyn());
        self
    }

    /// How the path integral is approximated (default: the reference's
    /// [`IntegrationRule::EvenlySpaced`]).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn rule(mut self, rule: IntegrationRule) -> Self {
        self.rule = rule;
        self
    }

    /// The integration rule.
    pub fn get_rule(&self) -> IntegrationRule {
        self.rule
    }

    /// The number of path points.
    pub fn get_steps(&self) -> usize {
        self.steps
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
        self.get_batch_size()
    }

    fn batch_rows(&self, values: usize) -> usize {
        self.batch.rows_of::<F>(values)
    }

    fn get_mask_dyn(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        let baseline = self.checked_baseline(&x)?;
        let rows = self.batch_rows(x.len());
        integrated_gradients(
            x,
            baseline.map(|b| b.view()),
            self.steps,
            self.rule,
            rows,
            model,
            progress,
        )
    }
}

impl<F: Float> IntegratedGradients<F> {
    /// Checks the settings against `x`; returns the baseline to use (`None`:
    /// zeros, which are not stored).
    fn checked_baseline(&self, x: &ArrayViewD<'_, F>) -> Result<Option<&ArrayD<F>>> {
        check_input("input", x, 1)?;
        check_steps("steps", self.steps)?;
        self.batch.check()?;
        self.rule.points_and_weights(self.steps)?;
        if let Some(b) = &self.baseline {
            check_like_input("baseline", &b.view(), x.shape())?;
        }
        Ok(self.baseline.as_ref())
    }

    /// The mask and its convergence delta (Captum's
    /// `return_convergence_delta=True`): `sum(mask) - (f(x) - f(baseline))`,
    /// where `f` is the explained output. Completeness makes it 0 for the
    /// exact integral, so it measures the integration error of the rule
    /// and the step count.
    ///
    /// The model is asked for [`OutputKey::OutputLayerValues`] once, on a
    /// batch of two rows (the baseline, then `x`), before the path; a model
    /// that does not return it gets
    /// [`SaliencyError::ConvergenceDeltaNeedsOutputValues`].
    ///
    /// ```
    /// use ndarray::array;
    /// use saliency::{IntegratedGradients, IntegrationRule, ModelOutputs, OutputKey};
    ///
    /// // f(x) = sum(x^3): f(x) - f(0) = 1 - 8 = -7.
    /// let x = array![1.0_f64, -2.0];
    /// let ig = IntegratedGradients::new().rule(IntegrationRule::GaussLegendre).steps(2);
    /// let out = ig.get_mask_with_delta(&x, &mut |batch, request| {
    ///     let mut outputs = ModelOutputs::new();
    ///     if request.wants(OutputKey::OutputLayerValues) {
    ///         let f = batch.map_axis(ndarray::Axis(1), |row| row.iter().map(|v| v * v * v).sum::<f64>());
    ///         outputs.insert(OutputKey::OutputLayerValues, f);
    ///     }
    ///     if request.wants(OutputKey::InputOutputGradients) {
    ///         outputs.insert(OutputKey::InputOutputGradients, batch.mapv(|v| 3.0 * v * v));
    ///     }
    ///     Ok(outputs)
    /// })?;
    /// // Two Gauss-Legendre points integrate the quadratic gradient exactly.
    /// assert!(out.delta.abs() < 1e-12);
    /// assert_eq!((out.output_at_input, out.output_at_baseline), (-7.0, 0.0));
    /// # Ok::<(), saliency::SaliencyError>(())
    /// ```
    pub fn get_mask_with_delta<'a, D: ndarray::Dimension>(
        &self,
        x: impl ndarray::AsArray<'a, F, D>,
        model: &mut dyn CallModelFunction<F>,
    ) -> Result<MaskWithDelta<F, D>>
    where
        F: 'a,
    {
        let x = x.into();
        let x_dyn = x.view().into_dyn();
        let baseline = self.checked_baseline(&x_dyn)?;
        let (at_baseline, at_input) = match baseline {
            Some(b) => end_values(model, b.view(), x_dyn.view())?,
            None => end_values(model, ArrayD::zeros(x_dyn.raw_dim()).view(), x_dyn.view())?,
        };
        let rows = self.batch_rows(x_dyn.len());
        let mask = integrated_gradients(
            x_dyn,
            baseline.map(|b| b.view()),
            self.steps,
            self.rule,
            rows,
            model,
            &mut |_| {},
        )?;
        MaskWithDelta::new(mask, at_input, at_baseline)
    }
}

/// How the path integral of the integrated-gradients methods is
/// approximated: the points `alpha_i` in `[0, 1]` where the gradient is
/// taken on the path `baseline + alpha * (x - baseline)`, and the weight
/// `w_i` of each. The mask is `(x - baseline) * sum(w_i * g_i)`.
///
/// Besides the reference's rule, the five rules of Captum 0.9
/// (`captum.attr._utils.approximation_methods`), with Captum's points and
/// weights for `n` steps:
///
/// | rule | Captum `method` | points | weights |
/// | --- | --- | --- | --- |
/// | `EvenlySpaced` (default) | none (PAIR saliency's) | `linspace(0, 1, n)` | `1 / n` |
/// | `RiemannLeft` | `riemann_left` | `linspace(0, 1 - 1/n, n)` | `1 / n` |
/// | `RiemannRight` | `riemann_right` | `linspace(1/n, 1, n)` | `1 / n` |
/// | `RiemannMiddle` | `riemann_middle` | `linspace(1/(2n), 1 - 1/(2n), n)` | `1 / n` |
/// | `RiemannTrapezoid` | `riemann_trapezoid` | `linspace(0, 1, n)` | `1 / n`, the two ends `1 / (2n)` |
/// | `GaussLegendre` | `gausslegendre` | Gauss-Legendre nodes on `[0, 1]` | their weights |
///
/// Captum's trapezoid weights sum to `(n - 1) / n`, not 1 (a true
/// trapezoid rule on `n` points has spacing `1 / (n - 1)`); it is kept as
/// Captum has it, so that the masks match. Captum's Riemann rules need at
/// least 2 steps. Captum computes the Riemann points in `float32`
/// (`torch.linspace`); here they are computed in `f64`, a difference of at
/// most one `float32` rounding of `alpha`.
///
/// ```
/// use saliency::IntegrationRule;
/// let (points, weights) = IntegrationRule::RiemannMiddle.points_and_weights(4)?;
/// assert_eq!(points, [0.125, 0.375, 0.625, 0.875]);
/// assert_eq!(weights, [0.25; 4]);
/// assert_eq!(IntegrationRule::RiemannMiddle.captum_name(), Some("riemann_middle"));
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum IntegrationRule {
    /// PAIR saliency's rule: `n` evenly spaced points from 0 to 1, both
    /// included, each weighted `1 / n`.
    #[default]
    EvenlySpaced,
    /// Captum's `riemann_left`: the left ends of `n` equal intervals.
    RiemannLeft,
    /// Captum's `riemann_right`: the right ends of `n` equal intervals.
    RiemannRight,
    /// Captum's `riemann_middle`: the midpoints of `n` equal intervals.
    RiemannMiddle,
    /// Captum's `riemann_trapezoid` (its default).
    RiemannTrapezoid,
    /// Captum's `gausslegendre`: `n`-point Gauss-Legendre quadrature.
    GaussLegendre,
}

impl IntegrationRule {
    /// Every rule, the default first.
    pub const ALL: [IntegrationRule; 6] = [
        IntegrationRule::EvenlySpaced,
        IntegrationRule::RiemannLeft,
        IntegrationRule::RiemannRight,
        IntegrationRule::RiemannMiddle,
        IntegrationRule::RiemannTrapezoid,
        IntegrationRule::GaussLegendre,
    ];

    /// Captum's name for the rule (its `method` argument); `None` for the
    /// reference's rule, which Captum does not have.
    pub fn captum_name(self) -> Option<&'static str> {
        match self {
            IntegrationRule::EvenlySpaced => None,
            IntegrationRule::RiemannLeft => Some("riemann_left"),
            IntegrationRule::RiemannRight => Some("riemann_right"),
            IntegrationRule::RiemannMiddle => Some("riemann_middle"),
            IntegrationRule::RiemannTrapezoid => Some("riemann_trapezoid"),
            IntegrationRule::GaussLegendre => Some("gausslegendre"),
        }
    }

    /// The points `alpha_i` (ascending) and weights `w_i` for `steps`
    /// points. Errors when `steps` is 0 or above [`MAX_STEPS`](crate::MAX_STEPS),
    /// or 1 for Captum's Riemann rules.
    pub fn points_and_weights(self, steps: usize) -> Result<(Vec<f64>, Vec<f64>)> {
        check_steps("steps", steps)?;
        let n = steps as f64;
        let even = |start: f64, end: f64| -> Vec<f64> {
            // As linspace: start + i * step, the last point exactly `end`.
            let step = (end - start) / (n - 1.0);
            (0..steps)
                .map(|i| if i + 1 == steps { end } else { start + i as f64 * step })
                .collect()
        };
        let riemann = |points: Vec<f64>| (points, vec![1.0 / n; steps]);
        if steps < 2 && !matches!(self, IntegrationRule::EvenlySpaced | IntegrationRule::GaussLegendre) {
            return Err(SaliencyError::param(
                "steps",
                steps,
                "must be at least 2 for Captum's Riemann rules (as in Captum)",
            ));
        }
        Ok(match self {
            IntegrationRule::EvenlySpaced => (linspace_0_1(steps).collect(), vec![1.0 / n; steps]),
            IntegrationRule::RiemannLeft => riemann(even(0.0, 1.0 - 1.0 / n)),
            IntegrationRule::RiemannRight => riemann(even(1.0 / n, 1.0)),
            IntegrationRule::RiemannMiddle => riemann(even(1.0 / (2.0 * n), 1.0 - 1.0 / (2.0 * n))),
            IntegrationRule::RiemannTrapezoid => {
                let mut weights = vec![1.0 / n; steps];
                weights[0] /= 2.0;
                weights[steps - 1] /= 2.0;
                (linspace_0_1(steps).collect(), weights)
            }
            IntegrationRule::GaussLegendre => crate::imageops::gauss_legendre_unit(steps),
        })
    }
}

impl std::fmt::Display for IntegrationRule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.captum_name().unwrap_or("evenly_spaced"))
    }
}

/// A mask with its convergence delta, from the `get_mask_with_delta` of
/// [`IntegratedGradients`], [`BlurIg`](crate::BlurIg) and
/// [`GuidedIg`](crate::GuidedIg).
///
/// `delta = sum(mask) - (output_at_input - output_at_baseline)` (Captum's
/// convergence delta), summed in `f64`; `output_*` are the model's
/// [`OutputKey::OutputLayerValues`] at the two ends of the path.
#[non_exhaustive]
#[derive(Clone, Debug, PartialEq)]
pub struct MaskWithDelta<F, D: ndarray::Dimension> {
    /// The mask, as `get_mask` returns it.
    pub mask: ndarray::Array<F, D>,
    /// `sum(mask) - (output_at_input - output_at_baseline)`.
    pub delta: F,
    /// The explained output at the input, `f(x)`.
    pub output_at_input: F,
    /// The explained output at the start of the path, `f(baseline)`.
    pub output_at_baseline: F,
}

impl<F: Float, D: ndarray::Dimension> MaskWithDelta<F, D> {
    pub(crate) fn new(mask: ArrayD<F>, at_input: F, at_baseline: F) -> Result<Self> {
        let sum: f64 = mask.iter().map(|v| v.as_f64()).sum();
        let delta = sum - (at_input.as_f64() - at_baseline.as_f64());
        let mask = mask
            .into_dimensionality::<D>()
            .map_err(|_| SaliencyError::internal("a mask does not have the rank its method promises"))?;
        Ok(MaskWithDelta {
            mask,
            delta: F::from_f64_lossy(delta),
            output_at_input: at_input,
            output_at_baseline: at_baseline,
        })
    }

    /// `|delta| / |output_at_input - output_at_baseline|`: the delta as a
    /// fraction of the change it should sum to (infinite or NaN when the two
    /// outputs are equal).
    pub fn relative_delta(&self) -> f64 {
        self.delta.as_f64().abs() / (self.output_at_input.as_f64() - self.output_at_baseline.as_f64()).abs()
    }
}

/// The explained output at `start` and at `end` (same shape), from one model
/// call of two rows asking for [`OutputKey::OutputLayerValues`] only.
pub(crate) fn end_values<F: Float>(
    model: &mut dyn CallModelFunction<F>,
    start: ArrayViewD<'_, F>,
    end: ArrayViewD<'_, F>,
) -> Result<(F, F)> {
    let key = OutputKey::OutputLayerValues;
    let batch = ndarray::stack(ndarray::Axis(0), &[start, end])
        .map_err(|_| SaliencyError::internal("the two ends of a path differ in shape"))?;
    let mut outputs = call_model(model, batch.view(), &[key]).map_err(|e| match e {
        SaliencyError::MissingOutput {
            key: OutputKey::OutputLayerValues,
        } => SaliencyError::ConvergenceDeltaNeedsOutputValues,
        e => e,
    })?;
    let values = outputs.take(key)?;
    let mut values = values.iter().copied();
    match (values.next(), values.next()) {
        (Some(a), Some(b)) => Ok((a, b)),
        _ => Err(SaliencyError::internal(
            "the output values of the path's ends are not two",
        )),
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
/// the caller: a baseline of another shape gives an internal error; `None`:
/// zeros) with `rule`, used by [`IntegratedGradients`] and by XRAI.
pub(crate) fn integrated_gradients<F: Float>(
    x: ArrayViewD<'_, F>,
    baseline: Option<ArrayViewD<'_, F>>,
    steps: usize,
    rule: IntegrationRule,
    batch_size: usize,
    model: &mut dyn CallModelFunction<F>,
    progress: &mut dyn FnMut(Progress),
) -> Result<ArrayD<F>> {
    check_steps("steps", steps)?;
    check_positive("batch_size", batch_size)?;
    let (alphas, weights) = rule.points_and_weights(steps)?;
    // The reference's rule sums the gradients and divides once at the end,
    // as the reference does; the others weight each gradient.
    let weights: Option<Vec<F>> =
        (rule != IntegrationRule::EvenlySpaced).then(|| weights.iter().map(|&w| F::from_f64_lossy(w)).collect());
    let too_large = || SaliencyError::param("batch_size", batch_size, "gives a batch too large to allocate");
    // Flat copies: the hot loops below run over contiguous slices.
    let base = baseline.as_ref().map(flat);
    let x_flat = flat(&x);
    let len = x_flat.len();
    // `x - 0` is `x`, bit for bit: the zero baseline needs neither array.
    // Otherwise the difference lives in a kept buffer, so that runs from
    // several baselines (XRAI) or noisy copies (SmoothGrad) reuse it.
    let mut diff_buffer;
    let diff: &[F] = match &base {
        None => &x_flat,
        Some(base) => {
            if base.len() != len {
                return Err(SaliencyError::internal("a baseline differs from the input in size"));
            }
            diff_buffer = scratch(len).ok_or_else(too_large)?;
            for_each_chunk_mut(&mut diff_buffer, |offset, out| {
                for ((d, &x), &b) in out.iter_mut().zip(&x_flat[offset..]).zip(&base[offset..]) {
                    *d = x - b;
                }
            });
            &diff_buffer
        }
    };
    // Finite inputs far apart (1e300 and -1e300) overflow here; the path
    // would hand the model infinities.
    if let Some((count, first_index)) = crate::model::find_non_finite(diff) {
        return Err(SaliencyError::NonFiniteResult {
            what: "input - baseline",
            count,
            first_index,
        });
    }

    // One buffer of at most `batch_size` path points, reused for every batch.
    let capacity = steps.min(batch_size);
    let mut total = vec![F::zero(); len];
    let scratch_len = capacity.checked_mul(len).ok_or_else(too_large)?;
    with_scratch(scratch_len, |buffer: &mut [F]| -> Result<()> {
        let key = OutputKey::InputOutputGradients;

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
                    match &base {
                        Some(base) => {
                            for ((p, &b), &d) in piece.iter_mut().zip(&base[i0..]).zip(&diff[i0..]) {
                                *p = b + alpha * d;
                            }
                        }
                        // `0 + alpha * d`, as with a stored zero (it turns -0 into +0).
                        None => {
                            for (p, &d) in piece.iter_mut().zip(&diff[i0..]) {
                                *p = F::zero() + alpha * d;
                            }
                        }
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
            // Add the gradients one point after another, in path order, so
            // that the sum is the same for every batch size (the reference's
            // order at its batch size of 1); row by row, so that every pass
            // is a contiguous, vectorised one over a piece of the total that
            // stays in cache.
            let batch_weights = weights.as_ref().map(|w| &w[done..done + rows]);
            for_each_chunk_mut_from(PARALLEL_MIN / rows, &mut total, |offset, out| {
                let n = out.len();
                let rows_of_chunk = grads.chunks(len).map(|row| &row[offset..offset + n]);
                match batch_weights {
                    None => {
                        for row in rows_of_chunk {
                            out.iter_mut().zip(row).for_each(|(t, &g)| *t += g);
                        }
                    }
                    Some(w) => {
                        for (row, &w) in rows_of_chunk.zip(w) {
                            out.iter_mut().zip(row).for_each(|(t, &g)| *t += w * g);
                        }
                    }
                }
                // NaN and infinities survive the sum: checking it checks every
                // gradient without another pass over the batch (a total that
                // overflowed with finite gradients is found by that pass and
                // by the final check).
                if !out.iter().fold(true, |ok, t| ok & t.is_finite()) {
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
    let weighted = weights.is_some();
    for_each_chunk_mut(&mut total, |offset, out| {
        for (t, &d) in out.iter_mut().zip(&diff[offset..]) {
            *t = if weighted { *t * d } else { *t * d / n };
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
