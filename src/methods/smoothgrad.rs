//! SmoothGrad ([Smilkov et al., 2017](https://arxiv.org/abs/1706.03825)):
//! average any method's masks over noisy copies of the input.

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::batching::{RowImages, run_packed};
use crate::checks::{check_input, check_positive, check_steps, finite_result, try_filled};
use crate::core::{CoreSaliency, Progress, Stage};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::model::CallModelFunction;
use crate::parallel::{CHUNK, flat, for_each_chunk_mut, for_each_chunk_mut_from};

/// SmoothGrad's parameters; the defaults are the reference's.
///
/// The noise is Gaussian with standard deviation
/// `stdev_spread * (max(x) - min(x))`, drawn from a ChaCha8 generator seeded
/// with `seed`: the same seed gives bit-identical masks (for a given version
/// of this crate). Without a seed, the generator is seeded from the operating
/// system.
#[derive(Clone, Debug, PartialEq)]
pub struct SmoothGradParams {
    stdev_spread: f64,
    nsamples: usize,
    magnitude: bool,
    seed: Option<u64>,
    batch_size: Option<usize>,
}

impl Default for SmoothGradParams {
    fn default() -> Self {
        SmoothGradParams {
            stdev_spread: 0.15,
            nsamples: 25,
            magnitude: true,
            seed: None,
            batch_size: None,
        }
    }
}

impl SmoothGradParams {
    /// Defaults: spread 0.15, 25 samples, magnitude (mean of squares) on, no seed.
    pub fn new() -> Self {
        Self::default()
    }

    /// Noise standard deviation as a fraction of the input's range
    /// (finite, non-negative).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn stdev_spread(mut self, stdev_spread: f64) -> Self {
        self.stdev_spread = stdev_spread;
        self
    }

    /// Number of noisy samples to average (1 to [`MAX_STEPS`](crate::MAX_STEPS)).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn nsamples(mut self, nsamples: usize) -> Self {
        self.nsamples = nsamples;
        self
    }

    /// Average the squared masks (`true`) or the masks themselves (`false`).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn magnitude(mut self, magnitude: bool) -> Self {
        self.magnitude = magnitude;
        self
    }

    /// Seed for the noise, for reproducible masks.
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Packs the noisy samples' model calls into calls of this many rows
    /// (for Vanilla Gradients, `batch_size` samples per call). Without it,
    /// as the reference: one sample after another, each calling the model
    /// as the wrapped method does (and a multi-image call packs rows of
    /// several images up to the wrapped method's batch size). The masks do
    /// not depend on it.
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    fn check(&self) -> Result<()> {
        check_steps("nsamples", self.nsamples)?;
        if let Some(b) = self.batch_size {
            check_positive("batch_size", b)?;
        }
        if !(self.stdev_spread.is_finite() && self.stdev_spread >= 0.0) {
            return Err(SaliencyError::param(
                "stdev_spread",
                self.stdev_spread,
                "must be finite and >= 0",
            ));
        }
        Ok(())
    }

    /// The noise standard deviation as a fraction of the input's range.
    pub fn get_stdev_spread(&self) -> f64 {
        self.stdev_spread
    }

    /// The number of noisy samples.
    pub fn get_nsamples(&self) -> usize {
        self.nsamples
    }

    /// Whether the squared masks are averaged.
    pub fn get_magnitude(&self) -> bool {
        self.magnitude
    }

    /// The seed of the noise; `None`: seeded from the operating system.
    pub fn get_seed(&self) -> Option<u64> {
        self.seed
    }

    /// The rows per packed model call; `None`: the samples call the model one after another.
    pub fn get_batch_size(&self) -> Option<usize> {
        self.batch_size
    }
}

/// SmoothGrad around any method: the mean of `method`'s masks (or of their
/// squares) over `nsamples` noisy copies of the input.
///
/// Matches `CoreSaliency.GetSmoothedMask` of PAIR saliency 0.2.1 in
/// distribution (the random numbers differ).
///
/// ```
/// use ndarray::array;
/// use saliency::{ModelOutputs, OutputKey, Saliency, SmoothGrad, SmoothGradParams, VanillaGradients};
///
/// let x = array![1.0_f64, 2.0, 3.0];
/// let params = SmoothGradParams::new().magnitude(false).seed(7);
/// let smooth = SmoothGrad::new(VanillaGradients::new(), params);
/// // A linear model: every noisy gradient is the same, so is their mean.
/// let mask = smooth.get_mask(&x, &mut |batch, _keys| {
///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|_| 0.5)))
/// })?;
/// assert!(mask.iter().all(|&g| g == 0.5));
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct SmoothGrad<M> {
    method: M,
    params: SmoothGradParams,
}

impl<M> SmoothGrad<M> {
    /// Wraps `method` with the given parameters.
    pub fn new(method: M, params: SmoothGradParams) -> Self {
        SmoothGrad { method, params }
    }

    /// The wrapped method.
    pub fn method(&self) -> &M {
        &self.method
    }

    /// The parameters.
    pub fn params(&self) -> &SmoothGradParams {
        &self.params
    }
}

/// The mask: the wrapped method's.
impl<F: Float, M: crate::core::Saliency<F>> crate::core::Saliency<F> for SmoothGrad<M> {
    type MaskDim<D: ndarray::Dimension> = M::MaskDim<D>;
}

impl<F: Float, M: CoreSaliency<F>> CoreSaliency<F> for SmoothGrad<M> {
    fn name(&self) -> &'static str {
        "SmoothGrad"
    }

    fn get_mask_dyn(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        smooth(&self.method, x, model, &self.params, progress)
    }

    fn batch_size(&self) -> usize {
        self.params.batch_size.unwrap_or_else(|| self.method.batch_size())
    }

    fn batch_rows(&self, values: usize) -> usize {
        self.params.batch_size.unwrap_or_else(|| self.method.batch_rows(values))
    }
}

/// The SmoothGrad loop, shared by [`SmoothGrad`] and
/// [`CoreSaliency::get_smoothed_mask`].
pub(crate) fn smooth<F: Float, M: CoreSaliency<F> + ?Sized>(
    method: &M,
    x: ArrayViewD<'_, F>,
    model: &mut dyn CallModelFunction<F>,
    params: &SmoothGradParams,
    progress: &mut dyn FnMut(Progress),
) -> Result<ArrayD<F>> {
    params.check()?;
    check_input("input", &x, 1)?;
    let (lo, hi) = crate::imageops::min_max(x.iter().copied());
    let stdev = params.stdev_spread * (hi.as_f64() - lo.as_f64());
    let noise = Noise {
        stdev,
        stdev_name: "stdev_spread",
        nsamples: params.nsamples,
        seed: params.seed,
        batch_size: params.batch_size,
    };
    let aggregate = if params.magnitude {
        Aggregate::MeanOfSquares
    } else {
        Aggregate::Mean
    };
    noisy_masks(method, x, model, &noise, aggregate, progress)
}

/// The noise of a SmoothGrad or NoiseTunnel run, its settings checked.
pub(crate) struct Noise {
    /// The absolute standard deviation.
    pub stdev: f64,
    /// The setting `stdev` came from, for the error of an invalid one.
    pub stdev_name: &'static str,
    pub nsamples: usize,
    pub seed: Option<u64>,
    pub batch_size: Option<usize>,
}

/// How the masks of the noisy samples are combined.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Aggregate {
    Mean,
    MeanOfSquares,
    /// `mean(m^2) - mean(m)^2`, as Captum's VarGrad.
    Variance,
}

/// `method`'s masks of `nsamples` noisy copies of `x`, combined by
/// `aggregate`. Shared by SmoothGrad and NoiseTunnel.
pub(crate) fn noisy_masks<F: Float, M: CoreSaliency<F> + ?Sized>(
    method: &M,
    x: ArrayViewD<'_, F>,
    model: &mut dyn CallModelFunction<F>,
    noise: &Noise,
    aggregate: Aggregate,
    progress: &mut dyn FnMut(Progress),
) -> Result<ArrayD<F>> {
    let stdev = noise.stdev;
    let normal = Normal::new(0.0, stdev)
        .map_err(|_| SaliencyError::param(noise.stdev_name, stdev, "gives an invalid noise deviation"))?;
    // Every block of `CHUNK` values has its own ChaCha stream, so the noise
    // is the same however many threads draw it.
    let seed = noise.seed.unwrap_or_else(|| rand::RngExt::random(&mut rand::rng()));
    let nsamples = noise.nsamples;
    let x_flat = flat(&x);
    let len = x_flat.len();
    // Each sample is one task: its noisy copy (a function of the seed and
    // the sample number alone) and the wrapped method's mask of it. Their
    // model calls are packed into batches; the masks are summed in sample
    // order, so the result does not depend on the packing.
    let sample_mask = |sample: usize, model: &mut dyn CallModelFunction<F>| -> Result<ArrayD<F>> {
        let mut noisy = try_filled("input", len, len, F::zero())?;
        for_each_chunk_mut_from(2 * CHUNK, &mut noisy, |offset, out| {
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(((sample as u64) << 32) | (offset / CHUNK) as u64);
            for (o, &v) in out.iter_mut().zip(&x_flat[offset..]) {
                *o = F::from_f64_lossy(v.as_f64() + Distribution::<f64>::sample(&normal, &mut rng));
            }
        });
        let view = ArrayViewD::from_shape(x.raw_dim(), &noisy)
            .map_err(|_| SaliencyError::internal("the noisy input does not have the input's size"))?;
        method.get_mask_dyn(view, model, &mut |_| {})
    };
    // The sum of the masks (or of their squares), and for the variance the
    // sum of squares beside the sum.
    let mut total: Option<(Vec<usize>, Vec<F>, Vec<F>)> = None;
    let squares_first = aggregate == Aggregate::MeanOfSquares;
    let with_squares = aggregate == Aggregate::Variance;
    let mut add = |sample: usize, mask: ArrayD<F>| -> Result<()> {
        let mask_view = mask.view();
        let mask_flat = flat(&mask_view);
        match &mut total {
            None => {
                let mut first = mask_flat.into_owned();
                let squares = if with_squares {
                    first.iter().map(|&g| g * g).collect()
                } else {
                    Vec::new()
                };
                if squares_first {
                    first.iter_mut().for_each(|g| *g = *g * *g);
                }
                total = Some((mask.shape().to_vec(), first, squares));
            }
            Some((shape, t, sq)) => {
                if shape.as_slice() != mask.shape() {
                    return Err(SaliencyError::ShapeMismatch {
                        what: "a SmoothGrad sample's mask",
                        expected: shape.clone(),
                        actual: mask.shape().to_vec(),
                    });
                }
                for_each_chunk_mut(t, |offset, out| {
                    for (t, &g) in out.iter_mut().zip(&mask_flat[offset..]) {
                        *t += if squares_first { g * g } else { g };
                    }
                });
                if with_squares {
                    for_each_chunk_mut(sq, |offset, out| {
                        for (s, &g) in out.iter_mut().zip(&mask_flat[offset..]) {
                            *s += g * g;
                        }
                    });
                }
            }
        }
        progress(Progress::new(Stage::SmoothGradSamples, sample + 1, nsamples));
        Ok(())
    };
    match noise.batch_size {
        Some(batch_size) => run_packed(nsamples, batch_size, RowImages::Single, model, &sample_mask, &mut add)?,
        // As the reference: one sample after another, each calling the
        // model as the wrapped method does.
        None => {
            for sample in 0..nsamples {
                add(sample, sample_mask(sample, model)?)?;
            }
        }
    }
    let n = F::from_f64_lossy(nsamples as f64);
    // `nsamples` was checked to be at least 1.
    let (shape, mut total, squares) = total.ok_or_else(|| SaliencyError::internal("SmoothGrad averaged no sample"))?;
    total.iter_mut().for_each(|t| *t /= n);
    if with_squares {
        for (t, &s) in total.iter_mut().zip(&squares) {
            *t = s / n - *t * *t;
        }
    }
    let mask = ArrayD::from_shape_vec(IxDyn(&shape), total)
        .map_err(|_| SaliencyError::internal("the SmoothGrad mask does not have its samples' size"))?;
    // Squares and sums of huge finite masks overflow.
    finite_result("SmoothGrad mask", mask)
}
