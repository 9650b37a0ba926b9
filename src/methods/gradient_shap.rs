//! GradientSHAP (expected gradients): the mean over random samples of
//! `(x' - b) * gradient(b + alpha (x' - b))`, with `b` drawn from a set of
//! baselines, `alpha` uniform in [0, 1) and `x'` the input plus optional
//! Gaussian noise ([Lundberg and Lee, 2017](https://arxiv.org/abs/1705.07874);
//! [Erion et al., 2019](https://arxiv.org/abs/1906.10670)).

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal, Uniform};

use crate::checks::{check_finite, check_input, check_positive, check_shape, finite_result};
use crate::core::{CoreSaliency, Progress, Stage};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::model::{CallModelFunction, OutputKey, call_model};
use crate::parallel::flat;

/// GradientSHAP, as Captum's `GradientShap` computes it.
///
/// For each of [`samples`](Self::samples) samples `k`: a baseline `b_k`
/// drawn uniformly from the [`baselines`](Self::baselines) (`[K, ...]`, the
/// input's shape after the first axis; by default one all-zero baseline), a
/// coefficient `alpha_k` uniform in [0, 1), and the input with Gaussian noise
/// of deviation [`stdev`](Self::stdev) added, `x_k` (no noise by default).
/// The model gives the input gradient at `alpha_k x_k + (1 - alpha_k) b_k`,
/// [`batch_size`](Self::batch_size) points per call, and the mask is the
/// mean over the samples of `(x_k - b_k) * gradient`.
///
/// The draws come from a ChaCha8 generator seeded with [`seed`](Self::seed)
/// (from the operating system without one), in the calling thread, sample
/// after sample: the same seed gives bit-identical masks whatever the thread
/// count and `batch_size`. [`draws`](Self::draws) gives the `(b_k, alpha_k)`
/// pairs instead (the noise, if any, is still drawn), so results can be
/// compared with another implementation's draws.
///
/// # Captum
///
/// `GradientShap(model).attribute(x, baselines, n_samples=n, stdevs=s, target=c)`
/// is `GradientShap::new().baselines(baselines).samples(n).stdev(s)`, with
/// the target in the model function. Captum draws with NumPy's and torch's
/// global generators (`np.random.choice` for the baselines,
/// `np.random.uniform` for `alpha`, `torch.normal` for the noise), so the
/// same seed cannot give the same samples; both are unbiased estimates of
/// the same expectation, and [`draws`](Self::draws) reproduces Captum's
/// result exactly when its draws are recorded. Captum's
/// `return_convergence_delta` is not provided.
///
/// ```
/// use ndarray::{Array1, Array2, array};
/// use saliency::{GradientShap, ModelOutputs, OutputKey, Saliency};
///
/// // A linear model f(x) = w . x: every sample gives (x - b) * w, so the
/// // mask is (x - mean of the drawn baselines) * w.
/// let w = array![1.0, -2.0, 0.5];
/// let x = array![1.0, 1.0, 1.0];
/// let baselines = Array2::<f64>::zeros((1, 3));
/// let shap = GradientShap::new().baselines(baselines.into_dyn()).samples(8).seed(3);
/// let mask: Array1<f64> = shap.get_mask(&x, &mut |batch, _keys| {
///     let mut g = batch.to_owned();
///     for mut row in g.outer_iter_mut() {
///         row.assign(&w.view().into_dyn());
///     }
///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
/// })?;
/// assert!((mask[1] + 2.0).abs() < 1e-12);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct GradientShap<F> {
    baselines: Option<ArrayD<F>>,
    samples: usize,
    stdev: f64,
    seed: Option<u64>,
    batch_size: usize,
    draws: Option<Vec<(usize, f64)>>,
}

impl<F> Default for GradientShap<F> {
    fn default() -> Self {
        GradientShap {
            baselines: None,
            samples: 5,
            stdev: 0.0,
            seed: None,
            batch_size: 5,
            draws: None,
        }
    }
}

impl<F: Float> GradientShap<F> {
    /// Captum's defaults: 5 samples, no noise; one all-zero baseline; all 5
    /// samples in one model call.
    pub fn new() -> Self {
        Self::default()
    }

    /// The baselines to draw from, `[K, ...]` with the input's shape after
    /// the first axis (Captum's `baselines`); `None`: one all-zero baseline.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn baselines(mut self, baselines: impl Into<Option<ArrayD<F>>>) -> Self {
        self.baselines = baselines.into();
        self
    }

    /// The number of samples (Captum's `n_samples`, default 5).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn samples(mut self, samples: usize) -> Self {
        self.samples = samples;
        self
    }

    /// The deviation of the Gaussian noise added to the input, in the
    /// input's units (Captum's `stdevs`, default 0: no noise).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn stdev(mut self, stdev: f64) -> Self {
        self.stdev = stdev;
        self
    }

    /// The seed of the draws (default: from the operating system).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// The most path points per model call (default 5).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// The `(baseline index, alpha)` of every sample, instead of random
    /// ones: one pair per sample, indices below the number of baselines,
    /// `alpha` in [0, 1]. `None` (the default): drawn from the seed.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn draws(mut self, draws: impl Into<Option<Vec<(usize, f64)>>>) -> Self {
        self.draws = draws.into();
        self
    }

    /// The baselines, if set.
    pub fn get_baselines(&self) -> Option<&ArrayD<F>> {
        self.baselines.as_ref()
    }

    /// The number of samples.
    pub fn get_samples(&self) -> usize {
        self.samples
    }

    /// The noise's deviation.
    pub fn get_stdev(&self) -> f64 {
        self.stdev
    }

    /// The seed, if set.
    pub fn get_seed(&self) -> Option<u64> {
        self.seed
    }

    /// The most path points per model call.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }

    /// The given draws, if any.
    pub fn get_draws(&self) -> Option<&[(usize, f64)]> {
        self.draws.as_deref()
    }
}

/// The mask: the input's shape.
impl<F: Float> crate::core::Saliency<F> for GradientShap<F> {
    type MaskDim<D: ndarray::Dimension> = D;
}

impl<F: Float> CoreSaliency<F> for GradientShap<F> {
    fn name(&self) -> &'static str {
        "GradientSHAP"
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
        check_positive("samples", self.samples)?;
        check_positive("batch_size", self.batch_size)?;
        if !(self.stdev.is_finite() && self.stdev >= 0.0) {
            return Err(SaliencyError::param(
                "stdev",
                self.stdev,
                "must be finite and not negative",
            ));
        }
        let len = x.len();
        let zero_baseline;
        let (count, base): (usize, std::borrow::Cow<'_, [F]>) = match &self.baselines {
            Some(b) => {
                let mut expected = vec![b.shape().first().copied().unwrap_or(0).max(1)];
                expected.extend_from_slice(x.shape());
                check_shape("baselines", b.shape(), &expected)?;
                check_finite("baselines", &b.view())?;
                let view = b.view();
                (expected[0], flat(&view).into_owned().into())
            }
            None => {
                zero_baseline = vec![F::zero(); len];
                (1, zero_baseline.as_slice().into())
            }
        };
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed.unwrap_or_else(|| rand::RngExt::random(&mut rand::rng())));
        let draws: Vec<(usize, f64)> = match &self.draws {
            Some(d) => {
                if d.len() != self.samples {
                    return Err(SaliencyError::param(
                        "draws",
                        d.len(),
                        "must give one (baseline, alpha) pair per sample",
                    ));
                }
                if let Some(&(i, _)) = d.iter().find(|(i, _)| *i >= count) {
                    return Err(SaliencyError::param("draws", i, "names a baseline past the last one"));
                }
                if let Some(&(_, a)) = d.iter().find(|(_, a)| !(0.0..=1.0).contains(a)) {
                    return Err(SaliencyError::param("draws", a, "has an alpha outside [0, 1]"));
                }
                d.clone()
            }
            None => {
                let index = Uniform::new(0, count).map_err(|_| SaliencyError::internal("no baseline to draw from"))?;
                let unit = Uniform::new(0.0, 1.0).map_err(|_| SaliencyError::internal("an empty unit interval"))?;
                (0..self.samples)
                    .map(|_| (index.sample(&mut rng), unit.sample(&mut rng)))
                    .collect()
            }
        };
        let normal = Normal::new(0.0, self.stdev)
            .map_err(|_| SaliencyError::param("stdev", self.stdev, "gives an invalid noise deviation"))?;
        let x_view = x.view();
        let x_flat = flat(&x_view);
        let key = OutputKey::InputOutputGradients;
        let mut total = vec![F::zero(); len];
        let mut points: Vec<F> = Vec::new();
        let mut diffs: Vec<F> = Vec::new();
        let mut done = 0;
        for chunk in draws.chunks(self.batch_size) {
            points.clear();
            diffs.clear();
            for &(index, alpha) in chunk {
                let b = &base[index * len..(index + 1) * len];
                let a = F::from_f64_lossy(alpha);
                let one_minus = F::from_f64_lossy(1.0 - alpha);
                for (&v, &bv) in x_flat.iter().zip(b) {
                    let noisy = if self.stdev > 0.0 {
                        F::from_f64_lossy(v.as_f64() + normal.sample(&mut rng))
                    } else {
                        v
                    };
                    points.push(a * noisy + one_minus * bv);
                    diffs.push(noisy - bv);
                }
            }
            let mut shape = vec![chunk.len()];
            shape.extend_from_slice(x.shape());
            let batch = ArrayViewD::from_shape(IxDyn(&shape), &points)
                .map_err(|_| SaliencyError::internal("the GradientSHAP batch does not fill its shape"))?;
            let mut outputs = call_model(model, batch, &[key])?;
            let grads = outputs.take(key)?;
            let grads = grads.as_standard_layout();
            let grads = grads
                .as_slice()
                .ok_or_else(|| SaliencyError::internal("a standard-layout gradient is not contiguous"))?;
            for (row_g, row_d) in grads.chunks_exact(len).zip(diffs.chunks_exact(len)) {
                for ((t, &g), &d) in total.iter_mut().zip(row_g).zip(row_d) {
                    *t += d * g;
                }
            }
            done += chunk.len();
            progress(Progress::new(Stage::ModelCalls, done, self.samples));
        }
        let n = F::from_f64_lossy(self.samples as f64);
        total.iter_mut().for_each(|t| *t /= n);
        let mask = ArrayD::from_shape_vec(x.raw_dim(), total)
            .map_err(|_| SaliencyError::internal("the GradientSHAP mask does not have the input's size"))?;
        finite_result("GradientSHAP", mask)
    }
}
