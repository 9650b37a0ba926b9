//! SmoothGrad ([Smilkov et al., 2017](https://arxiv.org/abs/1706.03825)):
//! average any method's masks over noisy copies of the input.

use ndarray::{ArrayD, ArrayViewD};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::core::{CoreSaliency, Progress, check_input, check_positive};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::model::CallModelFunction;
use crate::parallel::par_for_each;

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
}

impl Default for SmoothGradParams {
    fn default() -> Self {
        SmoothGradParams {
            stdev_spread: 0.15,
            nsamples: 25,
            magnitude: true,
            seed: None,
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
    pub fn stdev_spread(mut self, stdev_spread: f64) -> Self {
        self.stdev_spread = stdev_spread;
        self
    }

    /// Number of noisy samples to average (at least 1).
    pub fn nsamples(mut self, nsamples: usize) -> Self {
        self.nsamples = nsamples;
        self
    }

    /// Average the squared masks (`true`) or the masks themselves (`false`).
    pub fn magnitude(mut self, magnitude: bool) -> Self {
        self.magnitude = magnitude;
        self
    }

    /// Seed for the noise, for reproducible masks.
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    fn check(&self) -> Result<()> {
        check_positive("nsamples", self.nsamples)?;
        if !(self.stdev_spread.is_finite() && self.stdev_spread >= 0.0) {
            return Err(SaliencyError::param(
                "stdev_spread",
                self.stdev_spread,
                "must be finite and >= 0",
            ));
        }
        Ok(())
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
/// use saliency::{CoreSaliency, ModelOutputs, OutputKey, SmoothGrad, SmoothGradParams, VanillaGradients};
///
/// let x = array![1.0_f64, 2.0, 3.0];
/// let params = SmoothGradParams::new().magnitude(false).seed(7);
/// let smooth = SmoothGrad::new(VanillaGradients::new(), params);
/// // A linear model: every noisy gradient is the same, so is their mean.
/// let mask = smooth.get_mask(x.view().into_dyn(), &mut |batch, _keys| {
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

impl<F: Float, M: CoreSaliency<F>> CoreSaliency<F> for SmoothGrad<M> {
    fn name(&self) -> &'static str {
        "SmoothGrad"
    }

    fn get_mask_with_progress(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        smooth(&self.method, x, model, &self.params, progress)
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
    let (lo, hi) = x.iter().fold((F::infinity(), F::neg_infinity()), |(lo, hi), &v| {
        (lo.min(v), hi.max(v))
    });
    let stdev = params.stdev_spread * (hi.as_f64() - lo.as_f64());
    let normal = Normal::new(0.0, stdev)
        .map_err(|_| SaliencyError::param("stdev_spread", stdev, "gives an invalid noise deviation"))?;
    let mut rng = match params.seed {
        Some(seed) => ChaCha8Rng::seed_from_u64(seed),
        None => ChaCha8Rng::from_rng(&mut rand::rng()),
    };

    let mut noisy = x.to_owned();
    let mut total: Option<ArrayD<F>> = None;
    for sample in 0..params.nsamples {
        // Drawn sequentially so the noise never depends on the thread count.
        for (out, &v) in noisy.iter_mut().zip(x.iter()) {
            *out = F::from_f64_lossy(v.as_f64() + normal.sample(&mut rng));
        }
        let mask = method.get_mask(noisy.view(), model)?;
        match &mut total {
            None => total = Some(if params.magnitude { mask.mapv(|g| g * g) } else { mask }),
            Some(t) => {
                if t.shape() != mask.shape() {
                    return Err(SaliencyError::ShapeMismatch {
                        what: "a SmoothGrad sample's mask",
                        expected: t.shape().to_vec(),
                        actual: mask.shape().to_vec(),
                    });
                }
                let magnitude = params.magnitude;
                par_for_each!(ndarray::Zip::from(t).and(&mask), |t, &g| *t +=
                    if magnitude { g * g } else { g });
            }
        }
        progress(Progress::new("SmoothGrad samples", sample + 1, params.nsamples));
    }
    let n = F::from_f64_lossy(params.nsamples as f64);
    let mut total = total.ok_or(SaliencyError::param("nsamples", 0, "must be at least 1"))?;
    total.mapv_inplace(|t| t / n);
    Ok(total)
}
