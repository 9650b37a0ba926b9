//! Captum 0.9's `infidelity` ([Yeh et al. 2019](https://arxiv.org/abs/1901.09392))
//! and `sensitivity_max` (`captum/metrics/_core/`), for one input at a time.

use ndarray::{ArrayD, ArrayViewD, AsArray, Axis, Dimension, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::core::CoreSaliency;
use crate::error::{BoxError, Result, SaliencyError};
use crate::float::Float;
use crate::model::{CallModelFunction, OutputKey, call_model};

fn random_seed(seed: Option<u64>) -> u64 {
    seed.unwrap_or_else(|| rand::RngExt::random(&mut rand::rng()))
}

fn check_samples(samples: usize) -> Result<()> {
    if samples == 0 {
        return Err(SaliencyError::param("samples", 0, "must be at least 1"));
    }
    Ok(())
}

fn check_batch(batch_size: Option<usize>) -> Result<()> {
    if batch_size == Some(0) {
        return Err(SaliencyError::param("batch_size", 0, "must be at least 1"));
    }
    Ok(())
}

/// Checks an array returned by a perturbation function: the input's shape,
/// finite values.
fn check_returned<F: Float>(what: &'static str, a: &ArrayD<F>, shape: &[usize]) -> Result<()> {
    crate::checks::check_like_input(what, &a.view(), shape)
}

/// Stacks `rows` (each of `shape`) into `[rows, ...shape]`.
fn stack<F: Float>(rows: &[ArrayD<F>], shape: &[usize]) -> Result<ArrayD<F>> {
    let mut batch_shape = vec![rows.len()];
    batch_shape.extend_from_slice(shape);
    let data: Vec<F> = rows.iter().flat_map(|r| r.iter().copied()).collect();
    ArrayD::from_shape_vec(IxDyn(&batch_shape), data)
        .map_err(|_| SaliencyError::internal("perturbed inputs of different sizes were stacked"))
}

/// The model's outputs on `rows`, in batches of at most `batch`.
fn outputs_of<F: Float>(
    model: &mut dyn CallModelFunction<F>,
    rows: &[ArrayD<F>],
    shape: &[usize],
    batch: usize,
) -> Result<Vec<F>> {
    let mut out = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(batch.max(1)) {
        let batch = stack(chunk, shape)?;
        let mut outputs = call_model(model, batch.view(), &[OutputKey::OutputLayerValues])?;
        out.extend(outputs.take(OutputKey::OutputLayerValues)?.iter().copied());
    }
    Ok(out)
}

/// Explanation infidelity ([Yeh et al. 2019](https://arxiv.org/abs/1901.09392)),
/// as Captum 0.9's `captum.metrics.infidelity` computes it for one input:
/// the mean over perturbations `I` of
/// `(sum(attribution * I) - (f(x) - f(x - I)))^2` (lower is better), where
/// `f` is the model's [`OutputKey::OutputLayerValues`] (the target's score).
///
/// The perturbation is the user's ([`compute_with`](Self::compute_with)),
/// as in Captum; [`compute`](Self::compute) uses the one of Captum's
/// documentation: Gaussian noise `I` of standard deviation
/// [`noise_std`](Self::noise_std) (0.003), the perturbed input `x - I`.
///
/// | Captum | here |
/// | --- | --- |
/// | `forward_func`, `target` | the model function's `OutputLayerValues` |
/// | `perturb_func` returning `(perturbation, perturbed)` | `perturb(sample, x)` of [`compute_with`](Self::compute_with), same pair |
/// | `inputs`, `attributions` (batch of one) | `x`, `attribution` (no batch axis) |
/// | `n_perturb_samples=10` | [`samples`](Self::samples) |
/// | `max_examples_per_batch` | [`batch_size`](Self::batch_size) |
/// | `normalize=False` | [`normalize`](Self::normalize) |
///
/// A plain gradient map is local: perturb the input directly (as here), and
/// do not multiply the attribution by the input. For global maps (Integrated
/// Gradients and the like) Captum's `infidelity_perturb_func_decorator(True)`
/// divides the perturbation by `x - baseline`; pass that pair to
/// `compute_with`.
///
/// ```
/// use ndarray::Array1;
/// use saliency::metrics::Infidelity;
/// use saliency::{ModelOutputs, OutputKey};
///
/// // f(x) = sum(w * x) is linear: its gradient explains every perturbation
/// // exactly, so the infidelity of the gradient is 0 (up to rounding).
/// let w = Array1::from_vec(vec![0.5, -1.0, 2.0, 0.25]);
/// let x = Array1::from_vec(vec![1.0, 2.0, 3.0, 4.0]);
/// let model = &mut |batch: ndarray::ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| {
///     let scores = batch.outer_iter().map(|row| row.iter().zip(&w).map(|(a, b)| a * b).sum::<f64>());
///     Ok::<_, saliency::BoxError>(ModelOutputs::new().with(OutputKey::OutputLayerValues, Array1::from_iter(scores)))
/// };
/// let infidelity = Infidelity::new().seed(3).compute(&x, &w, model)?;
/// assert!(infidelity < 1e-20);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Infidelity {
    samples: usize,
    noise_std: f64,
    normalize: bool,
    seed: Option<u64>,
    batch_size: Option<usize>,
}

impl Default for Infidelity {
    /// Captum's defaults (10 samples, not normalized) and its documented
    /// perturbation (noise 0.003); no seed; all samples in one model call.
    fn default() -> Self {
        Infidelity {
            samples: 10,
            noise_std: 0.003,
            normalize: false,
            seed: None,
            batch_size: None,
        }
    }
}

impl Infidelity {
    /// The defaults (see [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of perturbations (Captum's `n_perturb_samples`).
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn samples(mut self, samples: usize) -> Self {
        self.samples = samples;
        self
    }

    /// The standard deviation of the default perturbation's Gaussian noise.
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn noise_std(mut self, noise_std: f64) -> Self {
        self.noise_std = noise_std;
        self
    }

    /// Scales the attribution by the best factor first (Captum's
    /// `normalize`), so the score does not change when the map is scaled.
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn normalize(mut self, normalize: bool) -> Self {
        self.normalize = normalize;
        self
    }

    /// Seeds the default perturbation (the same seed, the same score).
    /// Without one the generator is seeded from the operating system.
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// At most this many perturbed inputs per model call (Captum's
    /// `max_examples_per_batch`; default all in one call).
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    /// The number of perturbations.
    pub fn get_samples(&self) -> usize {
        self.samples
    }

    /// The default perturbation's noise deviation.
    pub fn get_noise_std(&self) -> f64 {
        self.noise_std
    }

    /// Whether the attribution is normalized.
    pub fn get_normalize(&self) -> bool {
        self.normalize
    }

    /// The seed, if set.
    pub fn get_seed(&self) -> Option<u64> {
        self.seed
    }

    /// The largest batch, if set.
    pub fn get_batch_size(&self) -> Option<usize> {
        self.batch_size
    }

    /// Checks the settings: errors name the setting and the valid range.
    pub fn check(&self) -> Result<()> {
        check_samples(self.samples)?;
        check_batch(self.batch_size)?;
        if !(self.noise_std.is_finite() && self.noise_std > 0.0) {
            return Err(SaliencyError::param(
                "noise_std",
                self.noise_std,
                "must be finite and > 0",
            ));
        }
        Ok(())
    }

    /// The infidelity of `attribution` (the input's shape) for input `x`
    /// (no batch axis), with the default perturbation: Gaussian noise of
    /// standard deviation [`noise_std`](Self::noise_std), drawn from a
    /// ChaCha8 generator seeded with [`seed`](Self::seed).
    ///
    /// Errors: see [`compute_with`](Self::compute_with).
    pub fn compute<'a, 'b, F: Float + 'a + 'b, D: Dimension>(
        &self,
        x: impl AsArray<'a, F, D>,
        attribution: impl AsArray<'b, F, D>,
        model: &mut dyn CallModelFunction<F>,
    ) -> Result<f64> {
        self.check()?;
        let seed = random_seed(self.seed);
        let normal = Normal::new(0.0, self.noise_std)
            .map_err(|_| SaliencyError::param("noise_std", self.noise_std, "must be finite and > 0"))?;
        let perturb = |sample: usize, x: ArrayViewD<'_, F>| -> std::result::Result<(ArrayD<F>, ArrayD<F>), BoxError> {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(sample as u64);
            let noise = x.mapv(|_| F::from_f64_lossy(normal.sample(&mut rng)));
            let perturbed = &x - &noise;
            Ok((noise, perturbed))
        };
        self.compute_with(x, attribution, model, perturb)
    }

    /// The infidelity with the user's perturbation: `perturb(sample, x)`
    /// returns `(I, x')` for sample `0..samples`, the perturbation and the
    /// perturbed input (Captum's `perturb_func` pair; usually `x' = x - I`).
    ///
    /// Errors: the settings' ([`check`](Self::check)); an empty or non-finite
    /// `x`; an attribution of another shape or not finite; a perturbation
    /// pair of another shape or not finite; the perturbation's and the
    /// model's errors and malformed outputs.
    pub fn compute_with<'a, 'b, F: Float + 'a + 'b, D: Dimension, P>(
        &self,
        x: impl AsArray<'a, F, D>,
        attribution: impl AsArray<'b, F, D>,
        model: &mut dyn CallModelFunction<F>,
        mut perturb: P,
    ) -> Result<f64>
    where
        P: FnMut(usize, ArrayViewD<'_, F>) -> std::result::Result<(ArrayD<F>, ArrayD<F>), BoxError>,
    {
        self.check()?;
        let x = x.into().into_dyn();
        let attribution = attribution.into().into_dyn();
        crate::checks::check_input("x", &x, 1)?;
        crate::checks::check_like_input("attribution", &attribution, x.shape())?;
        let shape = x.shape().to_vec();

        let mut perturbations = Vec::with_capacity(self.samples);
        let mut perturbed = Vec::with_capacity(self.samples);
        for sample in 0..self.samples {
            let (i, xp) = perturb(sample, x.view()).map_err(SaliencyError::Model)?;
            check_returned("perturbation", &i, &shape)?;
            check_returned("perturbed input", &xp, &shape)?;
            perturbations.push(i);
            perturbed.push(xp);
        }
        let original = outputs_of(model, &[x.to_owned()], &shape, 1)?;
        let fx = original
            .first()
            .copied()
            .ok_or_else(|| SaliencyError::internal("the model returned no score"))?;
        let batch = self.batch_size.unwrap_or(self.samples);
        let fxp = outputs_of(model, &perturbed, &shape, batch)?;

        // In the input's type, as Captum: for f32 the normalized score is a
        // difference of nearly equal terms and keeps Captum's rounding (use
        // f64 inputs for more digits).
        let (mut s_aa, mut s_ab, mut s_bb, mut s_diff) = (F::zero(), F::zero(), F::zero(), F::zero());
        for (i, &fp) in perturbations.iter().zip(&fxp) {
            let a = i
                .iter()
                .zip(attribution.iter())
                .fold(F::zero(), |acc, (&p, &at)| acc + at * p);
            let b = fx - fp;
            s_aa += a * a;
            s_ab += a * b;
            s_bb += b * b;
            s_diff += (a - b) * (a - b);
        }
        let n = F::from_f64_lossy(self.samples as f64);
        let two = F::from_f64_lossy(2.0);
        let value = if self.normalize {
            // Captum's `safe_div`: a zero denominator counts as 1.
            let beta = s_ab / if s_aa == F::zero() { F::one() } else { s_aa };
            (beta * beta * s_aa - two * beta * s_ab + s_bb) / n
        } else {
            s_diff / n
        };
        Ok(value.as_f64())
    }
}

/// Sensitivity ([Yeh et al. 2019](https://arxiv.org/abs/1901.09392)), as
/// Captum 0.9's `captum.metrics.sensitivity_max` computes it for one input:
/// the largest change of an explanation under small perturbations of the
/// input, `max_k ||e(x + d_k) - e(x)|| / ||e(x)||` (Frobenius norms over all
/// entries; a zero `||e(x)||` counts as 1). Lower is better.
///
/// The explanation is any saliency method ([`CoreSaliency`]) run on the
/// same model; the perturbation is the user's
/// ([`compute_with`](Self::compute_with)) or Captum's default: uniform noise
/// in `[-radius, radius]` added to every entry ([`radius`](Self::radius),
/// 0.02).
///
/// | Captum | here |
/// | --- | --- |
/// | `explanation_func` | a [`CoreSaliency`] method and the model function |
/// | `perturb_func=default_perturb_func` | `perturb(sample, x)` of [`compute_with`](Self::compute_with), the perturbed input |
/// | `perturb_radius=0.02` | [`radius`](Self::radius) |
/// | `n_perturb_samples=10` | [`samples`](Self::samples) |
/// | `norm_ord="fro"` | always the Frobenius norm |
/// | `max_examples_per_batch` | the method's own `batch_size` (the perturbed inputs go in one multi-image call) |
///
/// ```
/// use ndarray::Array1;
/// use saliency::metrics::SensitivityMax;
/// use saliency::{ModelOutputs, OutputKey, VanillaGradients};
///
/// // f(x) = sum(x^2): the gradient 2x changes by 2d under a perturbation d.
/// let x = Array1::from_vec(vec![1.0, -2.0, 3.0]);
/// let model = &mut |batch: ndarray::ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| {
///     Ok::<_, saliency::BoxError>(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| 2.0 * v)))
/// };
/// let s = SensitivityMax::new().seed(1).compute(&VanillaGradients::new(), &x, model)?;
/// // ||2d|| / ||2x|| <= sqrt(3) * 0.02 / sqrt(14).
/// assert!(s > 0.0 && s <= 3f64.sqrt() * 0.02 / 14f64.sqrt());
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SensitivityMax {
    samples: usize,
    radius: f64,
    seed: Option<u64>,
}

impl Default for SensitivityMax {
    /// Captum's defaults: 10 samples, radius 0.02; no seed.
    fn default() -> Self {
        SensitivityMax {
            samples: 10,
            radius: 0.02,
            seed: None,
        }
    }
}

impl SensitivityMax {
    /// The defaults (see [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The number of perturbations (Captum's `n_perturb_samples`).
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn samples(mut self, samples: usize) -> Self {
        self.samples = samples;
        self
    }

    /// The half-width of the default perturbation's uniform noise (Captum's
    /// `perturb_radius`).
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn radius(mut self, radius: f64) -> Self {
        self.radius = radius;
        self
    }

    /// Seeds the default perturbation (the same seed, the same score).
    /// Without one the generator is seeded from the operating system.
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The number of perturbations.
    pub fn get_samples(&self) -> usize {
        self.samples
    }

    /// The default perturbation's radius.
    pub fn get_radius(&self) -> f64 {
        self.radius
    }

    /// The seed, if set.
    pub fn get_seed(&self) -> Option<u64> {
        self.seed
    }

    /// Checks the settings: errors name the setting and the valid range.
    pub fn check(&self) -> Result<()> {
        check_samples(self.samples)?;
        if !(self.radius.is_finite() && self.radius > 0.0) {
            return Err(SaliencyError::param("radius", self.radius, "must be finite and > 0"));
        }
        Ok(())
    }

    /// The sensitivity of `method`'s explanation of `x` (no batch axis),
    /// with Captum's default perturbation: uniform noise in `[-radius,
    /// radius]` from a ChaCha8 generator seeded with [`seed`](Self::seed).
    ///
    /// Errors: see [`compute_with`](Self::compute_with).
    pub fn compute<'a, F: Float + 'a, D: Dimension>(
        &self,
        method: &dyn CoreSaliency<F>,
        x: impl AsArray<'a, F, D>,
        model: &mut dyn CallModelFunction<F>,
    ) -> Result<f64> {
        self.check()?;
        let seed = random_seed(self.seed);
        let uniform = Uniform::new_inclusive(-self.radius, self.radius)
            .map_err(|_| SaliencyError::param("radius", self.radius, "must be finite and > 0"))?;
        let perturb = |sample: usize, x: ArrayViewD<'_, F>| -> std::result::Result<ArrayD<F>, BoxError> {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(sample as u64);
            Ok(x.mapv(|v| v + F::from_f64_lossy(uniform.sample(&mut rng))))
        };
        self.compute_with(method, x, model, perturb)
    }

    /// The sensitivity with the user's perturbation: `perturb(sample, x)`
    /// returns the perturbed input for sample `0..samples`.
    ///
    /// Errors: the settings' ([`check`](Self::check)); an empty or non-finite
    /// `x`; a perturbed input of another shape or not finite; the
    /// perturbation's and the method's errors.
    pub fn compute_with<'a, F: Float + 'a, D: Dimension, P>(
        &self,
        method: &dyn CoreSaliency<F>,
        x: impl AsArray<'a, F, D>,
        model: &mut dyn CallModelFunction<F>,
        mut perturb: P,
    ) -> Result<f64>
    where
        P: FnMut(usize, ArrayViewD<'_, F>) -> std::result::Result<ArrayD<F>, BoxError>,
    {
        self.check()?;
        let x = x.into().into_dyn();
        crate::checks::check_input("x", &x, 1)?;
        let shape = x.shape().to_vec();
        let mut perturbed = Vec::with_capacity(self.samples);
        for sample in 0..self.samples {
            let xp = perturb(sample, x.view()).map_err(SaliencyError::Model)?;
            check_returned("perturbed input", &xp, &shape)?;
            perturbed.push(xp);
        }
        let explanation = method.get_mask_dyn(x.view(), model, &mut |_| {})?;
        let stacked = stack(&perturbed, &shape)?;
        // One multi-image call: the method packs the rows of all perturbed
        // inputs into its batches; the masks do not depend on the packing.
        let masks = method.get_masks_dyn(stacked.view(), model, &mut |_| {})?;
        let norm = explanation.iter().map(|v| v.as_f64() * v.as_f64()).sum::<f64>().sqrt();
        let norm = if norm == 0.0 { 1.0 } else { norm };
        let mut worst = f64::NEG_INFINITY;
        for mask in masks.axis_iter(Axis(0)) {
            let d = mask
                .iter()
                .zip(explanation.iter())
                .map(|(&p, &e)| {
                    // Captum subtracts in the explanation's type.
                    let d = (e - p).as_f64();
                    d * d
                })
                .sum::<f64>()
                .sqrt();
            worst = worst.max(d / norm);
        }
        Ok(worst)
    }
}
