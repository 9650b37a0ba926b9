//! Saliency maps for any image model: which pixels does the model look at?
//!
//! A Rust port of the `core` and `metrics` packages of the Python library
//! [PAIR saliency](https://github.com/PAIR-code/saliency) 0.2.1, matching its
//! numbers, on `ndarray` arrays. The crate never sees the model: every method
//! calls a closure that runs it (candle, burn, tch, ONNX or anything else)
//! and returns the outputs the method asks for (see [`model`]). With the
//! `candle` feature, `adapters::candle::CandleModel` builds that closure from
//! a candle model's forward pass, guided ReLUs included.
//!
//! ```
//! use ndarray::Array3;
//! use saliency::{IntegratedGradients, ModelOutputs, OutputKey, Saliency, visualize};
//!
//! // An image, height x width x channels.
//! let image = Array3::<f32>::from_shape_fn((32, 32, 3), |(i, j, c)| ((i + 2 * j + c) % 7) as f32 / 7.0);
//!
//! // The model: f(x) = sum(w * x^2) for a fixed weight w; its gradient is 2 w x.
//! // The batch arrives as [B, 32, 32, 3]; the weight broadcasts over B.
//! let weight = image.mapv(|v| 1.0 - v);
//! let ig = IntegratedGradients::new().steps(32).batch_size(8);
//! let mask = ig.get_mask(&image, &mut |batch, keys| {
//!     assert_eq!(keys, [OutputKey::InputOutputGradients]);
//!     let grads = &batch * &weight * 2.0;
//!     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, grads))
//! })?;
//!
//! let picture = visualize::grayscale(mask.view(), 99.0)?; // 32 x 32, values in [0, 1]
//! assert_eq!(picture.dim(), (32, 32));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
// The only `unsafe` is the call into libwebp (feature `metrics`), in one
// function that allows it; everything else may not opt out.
#![cfg_attr(not(feature = "metrics"), forbid(unsafe_code))]
#![cfg_attr(feature = "metrics", deny(unsafe_code))]
#![deny(missing_docs)]

pub mod adapters;
mod batch_setting;
mod batching;
mod checks;
mod core;
pub mod error;
mod float;
pub mod imageops;
pub mod methods;
pub mod metrics;
pub mod model;
mod parallel;
pub mod visualize;

/// The README's examples, compiled and run as doctests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

/// The `ndarray` this crate is built on, re-exported: write
/// `use saliency::ndarray;` (or depend on the same `ndarray` version) so the
/// arrays you pass are the ones the methods take. An array from another
/// `ndarray` version is a different type, and the compiler's complaint
/// points far from the cause.
///
/// ```
/// use saliency::ndarray::Array3;
/// use saliency::{ModelOutputs, OutputKey, Saliency, VanillaGradients};
///
/// let image = Array3::<f32>::ones((4, 4, 3));
/// let mask = VanillaGradients::new().get_mask(&image, &mut |batch, _keys| {
///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| 2.0 * v)))
/// })?;
/// assert_eq!(mask.shape(), [4, 4, 3]);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub use ndarray;

pub use crate::batch_setting::BatchSize;
pub use crate::checks::MAX_STEPS;
pub use crate::core::{CoreSaliency, MasksDim, Progress, Saliency, Stage};
pub use error::{BoxError, Result, SaliencyError};
pub use float::Float;
pub use methods::blur_ig::BlurIg;
pub use methods::cam::{Cam, CamMethod, CamScaling};
pub use methods::grad_cam::GradCam;
pub use methods::gradient_shap::GradientShap;
pub use methods::guided_backprop::GuidedBackprop;
pub use methods::guided_grad_cam::{GuidedGradCam, Interpolation};
pub use methods::guided_ig::GuidedIg;
pub use methods::input_x_gradient::InputXGradient;
pub use methods::integrated_gradients::{IntegratedGradients, IntegrationRule, MaskWithDelta};
pub use methods::noise_tunnel::{NoiseStdev, NoiseTunnel, NoiseTunnelParams, NoiseTunnelType};
pub use methods::occlusion::Occlusion;
pub use methods::smoothgrad::{SmoothGrad, SmoothGradParams};
pub use methods::vanilla::VanillaGradients;
pub use methods::xrai::{
    Xrai, XraiAlgorithm, XraiOutput, XraiParameters, XraiSegments, get_segment_labels_felzenszwalb,
    get_segments_felzenszwalb,
};
#[cfg(feature = "metrics")]
pub use metrics::{AggregateMetricResult, Aggregation, PicMetric, PicMetricResult};
pub use model::{ActivationLayout, CallModelFunction, ModelOutputs, ModelRequest, OutputKey, model_fn};
