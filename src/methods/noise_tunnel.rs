//! NoiseTunnel: SmoothGrad ([Smilkov et al., 2017](https://arxiv.org/abs/1706.03825)),
//! SmoothGrad-squared and VarGrad ([Adebayo et al., 2018](https://arxiv.org/abs/1810.03307))
//! around any method, named as Captum names them.

use ndarray::{ArrayD, ArrayViewD};

use crate::checks::{check_input, check_positive, check_steps};
use crate::core::{CoreSaliency, Progress};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::methods::smoothgrad::{Aggregate, Noise, noisy_masks};
use crate::model::CallModelFunction;

/// How NoiseTunnel combines the masks of the noisy samples (Captum's
/// `nt_type`).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum NoiseTunnelType {
    /// `smoothgrad`: the mean of the masks (the reference's SmoothGrad with
    /// `magnitude` off).
    #[default]
    SmoothGrad,
    /// `smoothgrad_sq`: the mean of the squared masks (the reference's
    /// SmoothGrad with `magnitude` on, its default).
    SmoothGradSquared,
    /// `vargrad`: the variance of the masks, `mean(m^2) - mean(m)^2`
    /// (divided by the sample count, as Captum computes it).
    VarGrad,
}

impl NoiseTunnelType {
    /// Captum's name (`nt_type`).
    pub fn captum_name(self) -> &'static str {
        match self {
            NoiseTunnelType::SmoothGrad => "smoothgrad",
            NoiseTunnelType::SmoothGradSquared => "smoothgrad_sq",
            NoiseTunnelType::VarGrad => "vargrad",
        }
    }
}

/// The standard deviation of NoiseTunnel's Gaussian noise.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum NoiseStdev {
    /// As Captum's `stdevs`: the standard deviation itself.
    Absolute(f64),
    /// As the reference's `stdev_spread`: a fraction of the input's range,
    /// `stdev = spread * (max(x) - min(x))`.
    Spread(f64),
}

impl Default for NoiseStdev {
    fn default() -> Self {
        NoiseStdev::Spread(0.15)
    }
}

/// NoiseTunnel's parameters.
///
/// Defaults: [`NoiseTunnelType::SmoothGrad`] (Captum's default), the
/// reference's noise (spread 0.15) and sample count (25), no seed. They map
/// to Captum 0.9's `NoiseTunnel(method).attribute(inputs, nt_type, nt_samples,
/// stdevs, ...)` as: [`nt_type`](Self::nt_type) = `nt_type`,
/// [`nsamples`](Self::nsamples) = `nt_samples`, [`stdev`](Self::stdev) with
/// [`NoiseStdev::Absolute`] = `stdevs`, [`batch_size`](Self::batch_size)
/// (in rows) ~ `nt_samples_batch_size` (in samples). The noise is drawn as
/// SmoothGrad's: a ChaCha8 stream per seed, so the masks match Captum's in
/// distribution, not in value.
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseTunnelParams {
    nt_type: NoiseTunnelType,
    stdev: NoiseStdev,
    nsamples: usize,
    seed: Option<u64>,
    batch_size: Option<usize>,
}

impl Default for NoiseTunnelParams {
    fn default() -> Self {
        NoiseTunnelParams {
            nt_type: NoiseTunnelType::SmoothGrad,
            stdev: NoiseStdev::default(),
            nsamples: 25,
            seed: None,
            batch_size: None,
        }
    }
}

impl NoiseTunnelParams {
    /// The defaults: SmoothGrad (mean), spread 0.15, 25 samples, no seed.
    pub fn new() -> Self {
        Self::default()
    }

    /// How the noisy masks are combined.
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn nt_type(mut self, nt_type: NoiseTunnelType) -> Self {
        self.nt_type = nt_type;
        self
    }

    /// The noise's standard deviation, absolute or as a spread (finite, >= 0).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn stdev(mut self, stdev: NoiseStdev) -> Self {
        self.stdev = stdev;
        self
    }

    /// Number of noisy samples (1 to [`MAX_STEPS`](crate::MAX_STEPS)).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn nsamples(mut self, nsamples: usize) -> Self {
        self.nsamples = nsamples;
        self
    }

    /// Seed for the noise, for reproducible masks.
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// Packs the samples' model calls into calls of this many rows, as
    /// [`SmoothGradParams::batch_size`](crate::SmoothGradParams::batch_size).
    #[must_use = "a setter returns the changed parameters; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    /// How the noisy masks are combined.
    pub fn get_nt_type(&self) -> NoiseTunnelType {
        self.nt_type
    }

    /// The noise's standard deviation.
    pub fn get_stdev(&self) -> NoiseStdev {
        self.stdev
    }

    /// The number of noisy samples.
    pub fn get_nsamples(&self) -> usize {
        self.nsamples
    }

    /// The seed; `None`: seeded from the operating system.
    pub fn get_seed(&self) -> Option<u64> {
        self.seed
    }

    /// The rows per packed model call; `None`: one sample after another.
    pub fn get_batch_size(&self) -> Option<usize> {
        self.batch_size
    }

    /// The noise for input `x`, every setting checked.
    fn noise<F: Float>(&self, x: &ArrayViewD<'_, F>) -> Result<Noise> {
        check_steps("nsamples", self.nsamples)?;
        if let Some(b) = self.batch_size {
            check_positive("batch_size", b)?;
        }
        let (name, value) = match self.stdev {
            NoiseStdev::Absolute(s) => ("stdev", s),
            NoiseStdev::Spread(s) => ("stdev_spread", s),
        };
        if !(value.is_finite() && value >= 0.0) {
            return Err(SaliencyError::param(name, value, "must be finite and >= 0"));
        }
        let stdev = match self.stdev {
            NoiseStdev::Absolute(s) => s,
            NoiseStdev::Spread(s) => {
                let (lo, hi) = crate::imageops::min_max(x.iter().copied());
                s * (hi.as_f64() - lo.as_f64())
            }
        };
        Ok(Noise {
            stdev,
            stdev_name: name,
            nsamples: self.nsamples,
            seed: self.seed,
            batch_size: self.batch_size,
        })
    }
}

/// NoiseTunnel around any method: its masks of `nsamples` noisy copies
/// `x + N(0, stdev^2)` of the input, combined as the mean (SmoothGrad), the
/// mean of squares (SmoothGrad-squared) or the variance (VarGrad).
///
/// Captum 0.9's `NoiseTunnel` with the same names; see
/// [`NoiseTunnelParams`] for the parameter mapping. [`SmoothGrad`](crate::SmoothGrad)
/// is this with the reference's parameter names (`magnitude` picks
/// SmoothGrad-squared) and draws the same noise for the same seed.
///
/// ```
/// use ndarray::array;
/// use saliency::{ModelOutputs, NoiseStdev, NoiseTunnel, NoiseTunnelParams, NoiseTunnelType, OutputKey, Saliency, VanillaGradients};
///
/// // f(x) = sum(x^2 / 2): the gradient is the noisy input itself, so
/// // VarGrad estimates the noise variance, 0.5^2.
/// let x = array![1.0_f64, 2.0, 3.0];
/// let params = NoiseTunnelParams::new()
///     .nt_type(NoiseTunnelType::VarGrad)
///     .stdev(NoiseStdev::Absolute(0.5))
///     .nsamples(4000)
///     .seed(3);
/// let tunnel = NoiseTunnel::new(VanillaGradients::new(), params);
/// let mask = tunnel.get_mask(&x, &mut |batch, _keys| {
///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.to_owned()))
/// })?;
/// assert!(mask.iter().all(|&v| (v - 0.25).abs() < 0.03), "{mask}");
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct NoiseTunnel<M> {
    method: M,
    params: NoiseTunnelParams,
}

impl<M> NoiseTunnel<M> {
    /// Wraps `method` with the given parameters.
    pub fn new(method: M, params: NoiseTunnelParams) -> Self {
        NoiseTunnel { method, params }
    }

    /// The wrapped method.
    pub fn method(&self) -> &M {
        &self.method
    }

    /// The parameters.
    pub fn params(&self) -> &NoiseTunnelParams {
        &self.params
    }
}

/// The mask: the wrapped method's.
impl<F: Float, M: crate::core::Saliency<F>> crate::core::Saliency<F> for NoiseTunnel<M> {
    type MaskDim<D: ndarray::Dimension> = M::MaskDim<D>;
}

impl<F: Float, M: CoreSaliency<F>> CoreSaliency<F> for NoiseTunnel<M> {
    fn name(&self) -> &'static str {
        match self.params.nt_type {
            NoiseTunnelType::SmoothGrad => "NoiseTunnel (SmoothGrad)",
            NoiseTunnelType::SmoothGradSquared => "NoiseTunnel (SmoothGrad-squared)",
            NoiseTunnelType::VarGrad => "NoiseTunnel (VarGrad)",
        }
    }

    fn get_mask_dyn(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        let noise = self.params.noise(&x)?;
        check_input("input", &x, 1)?;
        let aggregate = match self.params.nt_type {
            NoiseTunnelType::SmoothGrad => Aggregate::Mean,
            NoiseTunnelType::SmoothGradSquared => Aggregate::MeanOfSquares,
            NoiseTunnelType::VarGrad => Aggregate::Variance,
        };
        noisy_masks(&self.method, x, model, &noise, aggregate, progress)
    }

    fn batch_size(&self) -> usize {
        self.params.batch_size.unwrap_or_else(|| self.method.batch_size())
    }

    fn batch_rows(&self, values: usize) -> usize {
        self.params.batch_size.unwrap_or_else(|| self.method.batch_rows(values))
    }
}
