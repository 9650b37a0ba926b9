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
    /// Images finished in a multi-image call
    /// ([`CoreSaliency::get_masks`]): "images".
    Images,
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
            Stage::Images => "images",
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
pub trait CoreSaliency<F: Float>: Sync {
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

    /// The most rows this method sends the model in one call (its
    /// `batch_size` setting; 1 for methods without one). A multi-image call
    /// ([`get_masks`](Self::get_masks)) fills every model call to this size
    /// with rows of several images.
    fn batch_size(&self) -> usize {
        1
    }

    /// Computes the masks of several images at once: `images` is `[N, ...]`
    /// (each image as [`get_mask`](Self::get_mask) takes it) and the result
    /// is `[N, ...]`, mask `i` bit-identical to `get_mask` on image `i`.
    ///
    /// The model calls carry rows of several images (path points, noise
    /// samples, occluded copies), filled to [`batch_size`](Self::batch_size)
    /// rows; [`ModelRequest::image_of_row`](crate::ModelRequest::image_of_row)
    /// tells the model which image each row belongs to, so every image can
    /// have its own target. Progress counts finished images.
    ///
    /// ```
    /// use ndarray::Array4;
    /// use saliency::{CoreSaliency, IntegratedGradients, ModelOutputs, OutputKey};
    ///
    /// // Three 4 x 4 x 1 images; image i is explained for f_i(x) = (i + 1) * sum(x).
    /// let images = Array4::<f64>::from_elem((3, 4, 4, 1), 0.5);
    /// let ig = IntegratedGradients::new().steps(10).batch_size(15);
    /// let mut calls = 0;
    /// let masks = ig.get_masks(images.view().into_dyn(), &mut |batch, request| {
    ///     calls += 1;
    ///     let mut grads = batch.to_owned();
    ///     for (row, mut g) in grads.outer_iter_mut().enumerate() {
    ///         g.fill((request.image_of_row(row) + 1) as f64);
    ///     }
    ///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, grads))
    /// })?;
    /// assert_eq!(masks.shape(), [3, 4, 4, 1]);
    /// assert_eq!(calls, 2); // 30 path points in calls of 15 rows
    /// assert!((masks[[2, 0, 0, 0]] - 1.5).abs() < 1e-12); // 3 * 0.5
    /// # Ok::<(), saliency::SaliencyError>(())
    /// ```
    fn get_masks(&self, images: ArrayViewD<'_, F>, model: &mut dyn CallModelFunction<F>) -> Result<ArrayD<F>> {
        self.get_masks_with_progress(images, model, &mut |_| {})
    }

    /// [`get_masks`](Self::get_masks), reporting finished images to
    /// `progress`.
    fn get_masks_with_progress(
        &self,
        images: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        crate::batching::masks_of_images(self, images, model, progress)
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
