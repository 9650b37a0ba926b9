//! The trait every saliency method implements, and its progress reports.

use ndarray::{ArrayD, ArrayViewD};

use crate::error::Result;
use crate::float::Float;
use crate::methods::smoothgrad::{self, SmoothGradParams};
use crate::model::CallModelFunction;

/// What a [`Progress`] report counts.
///
/// Its `Display` is a short lower-case description, such as "integrated
/// gradients steps". More stages may come with new methods, so a `match`
/// needs a wildcard arm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Calls of a model that a method calls once (Vanilla Gradients,
    /// Grad-CAM): "model calls".
    ModelCalls,
    /// Path points of Integrated Gradients, also those XRAI computes:
    /// "integrated gradients steps".
    IntegratedGradientsSteps,
    /// Path points of Blur IG: "blur ig steps".
    BlurIgSteps,
    /// Steps of Guided IG: "guided integrated gradients steps".
    GuidedIgSteps,
    /// Occluded windows: "occlusion windows".
    OcclusionWindows,
    /// Noisy samples of SmoothGrad: "SmoothGrad samples".
    SmoothGradSamples,
    /// XRAI's ranking of the segment masks: "xrai masks" (pixels covered
    /// for the full algorithm, masks ranked for the fast one).
    XraiMasks,
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Stage::ModelCalls => "model calls",
            Stage::IntegratedGradientsSteps => "integrated gradients steps",
            Stage::BlurIgSteps => "blur ig steps",
            Stage::GuidedIgSteps => "guided integrated gradients steps",
            Stage::OcclusionWindows => "occlusion windows",
            Stage::SmoothGradSamples => "SmoothGrad samples",
            Stage::XraiMasks => "xrai masks",
        })
    }
}

/// How far a long computation has come: `done` of `total` units of `stage`
/// (for example path steps of integrated gradients).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// What is being counted, such as [`Stage::IntegratedGradientsSteps`].
    pub stage: Stage,
    /// Units finished so far.
    pub done: usize,
    /// Units in all.
    pub total: usize,
}

impl Progress {
    /// A report of `done` of `total` units of `stage`.
    pub fn new(stage: Stage, done: usize, total: usize) -> Self {
        Progress { stage, done, total }
    }
}

/// A saliency method: turns one input (without a batch axis) and the user's
/// model into a mask.
///
/// The trait is object-safe, so different methods can be kept side by side:
///
/// ```
/// use ndarray::Array3;
/// use saliency::{CoreSaliency, IntegratedGradients, ModelOutputs, OutputKey, VanillaGradients};
///
/// let x = Array3::<f32>::from_elem((4, 4, 3), 0.5);
/// let methods: Vec<Box<dyn CoreSaliency<f32>>> =
///     vec![Box::new(VanillaGradients::new()), Box::new(IntegratedGradients::new())];
/// for method in &methods {
///     // f(x) = sum(x^2): the gradient is 2x.
///     let mask = method.get_mask(x.view().into_dyn(), &mut |batch, _keys| {
///         Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| 2.0 * v)))
///     })?;
///     assert_eq!(mask.shape(), x.shape());
/// }
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub trait CoreSaliency<F: Float> {
    /// A short human-readable name, such as `"Integrated Gradients"`.
    fn name(&self) -> &'static str;

    /// Computes the mask, reporting progress to `progress` as it goes.
    fn get_mask_with_progress(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>>;

    /// Computes the mask for one input `x` (no batch axis).
    fn get_mask(&self, x: ArrayViewD<'_, F>, model: &mut dyn CallModelFunction<F>) -> Result<ArrayD<F>> {
        self.get_mask_with_progress(x, model, &mut |_| {})
    }

    /// Computes the SmoothGrad average of this method's masks over noisy
    /// copies of `x` (see [`SmoothGrad`](crate::SmoothGrad)).
    fn get_smoothed_mask(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        params: &SmoothGradParams,
    ) -> Result<ArrayD<F>> {
        smoothgrad::smooth(self, x, model, params, &mut |_| {})
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_display_as_before_they_were_an_enum() {
        assert_eq!(
            Stage::IntegratedGradientsSteps.to_string(),
            "integrated gradients steps"
        );
        assert_eq!(Stage::GuidedIgSteps.to_string(), "guided integrated gradients steps");
        assert_eq!(Stage::XraiMasks.to_string(), "xrai masks");
    }
}
