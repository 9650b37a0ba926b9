//! The trait every saliency method implements, and its progress reports.

use ndarray::{Array, ArrayD, ArrayViewD, AsArray, Dimension, IxDyn};

use crate::error::{Result, SaliencyError};
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
    /// ([`Saliency::get_masks`]): "images".
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

/// A saliency method, object-safe: turns one input (without a batch axis)
/// and the user's model into a mask, on arrays of dynamic dimension.
///
/// Every method implements it, so different methods can be kept side by
/// side as `Box<dyn CoreSaliency<F>>`. Call them through [`Saliency`] (also
/// implemented for the boxes), which takes arrays of any dimension and
/// returns the mask in the method's dimension:
///
/// ```
/// use ndarray::Array3;
/// use saliency::{CoreSaliency, IntegratedGradients, ModelOutputs, OutputKey, Saliency, VanillaGradients};
///
/// let x = Array3::<f32>::from_elem((4, 4, 3), 0.5);
/// let methods: Vec<Box<dyn CoreSaliency<f32>>> =
///     vec![Box::new(VanillaGradients::new()), Box::new(IntegratedGradients::new())];
/// for method in &methods {
///     // f(x) = sum(x^2): the gradient is 2x.
///     let mask = method.get_mask(&x, &mut |batch, _keys| {
///         Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| 2.0 * v)))
///     })?;
///     assert_eq!(mask.shape(), x.shape());
/// }
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub trait CoreSaliency<F: Float>: Sync {
    /// A short human-readable name, such as `"Integrated Gradients"`.
    fn name(&self) -> &'static str;

    /// Computes the mask of one input `x` (no batch axis), reporting
    /// progress to `progress` as it goes. [`Saliency::get_mask`] is the
    /// same for arrays of any dimension.
    fn get_mask_dyn(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>>;

    /// The most rows this method sends the model in one call (its
    /// `batch_size` setting; 1 for methods without one). A multi-image call
    /// ([`Saliency::get_masks`]) fills every model call to this size with
    /// rows of several images.
    fn batch_size(&self) -> usize {
        1
    }

    /// The rows this method sends the model in one call when each row holds
    /// `values` values (an input of that size): its batch setting applied to
    /// rows of that size, which for a byte budget
    /// ([`BatchSize::Bytes`](crate::BatchSize::Bytes)) depends on `values`.
    /// [`batch_size`](Self::batch_size) unless the method overrides it; a
    /// multi-image call fills its model calls to this size.
    fn batch_rows(&self, values: usize) -> usize {
        let _ = values;
        self.batch_size()
    }

    /// The masks of several images `[N, ...]` at once, as `[N, ...]`;
    /// [`Saliency::get_masks`] is the same for arrays of any dimension.
    fn get_masks_dyn(
        &self,
        images: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        crate::batching::masks_of_images(self, images, model, progress)
    }

    /// The SmoothGrad average of this method's masks over noisy copies of
    /// `x`; [`Saliency::get_smoothed_mask`] is the same for arrays of any
    /// dimension.
    fn get_smoothed_mask_dyn(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        params: &SmoothGradParams,
    ) -> Result<ArrayD<F>> {
        smoothgrad::smooth(self, x, model, params, &mut |_| {})
    }

    /// [`Saliency::get_masks_for_targets`] on a dynamic-rank input.
    fn get_masks_for_targets_dyn(
        &self,
        x: ArrayViewD<'_, F>,
        targets: usize,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        crate::batching::masks_of_targets(self, x, targets, model, progress)
    }
}

/// The dimension of the masks [`Saliency::get_masks`] returns for images
/// `[N, ...]` of dimension `D`: one axis more than a mask of one image.
pub type MasksDim<M, F, D> = <<M as Saliency<F>>::MaskDim<<D as Dimension>::Smaller> as Dimension>::Larger;

/// The methods' calls on arrays of any dimension: a view or a reference to
/// an array goes in (`image.view()` or `&image`), the mask comes out in the
/// method's dimension ([`MaskDim`](Self::MaskDim)): the input's for the
/// gradient methods and Occlusion (`Array3` in, `Array3` out), `Array2` for
/// XRAI, dynamic for Grad-CAM (its channel axis is a setting).
///
/// Each call forwards to the object-safe [`CoreSaliency`], so the two give
/// the same masks; `Box<dyn CoreSaliency<F>>` implements this trait too, with
/// masks of dynamic dimension.
///
/// ```
/// use ndarray::{Array2, Array3};
/// use saliency::{ModelOutputs, OutputKey, Saliency, VanillaGradients, Xrai, XraiParameters};
///
/// let image = Array3::<f64>::from_shape_fn((16, 16, 3), |(i, j, c)| ((i * j + c) % 5) as f64 / 5.0);
/// let gradient = |batch: ndarray::ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| {
///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| 1.0 - v)))
/// };
/// let mask: Array3<f64> = VanillaGradients::new().get_mask(&image, &mut gradient.clone())?;
/// let map: Array2<f64> = Xrai::new()
///     .parameters(XraiParameters::new().steps(4))
///     .get_mask(&image, &mut gradient.clone())?;
/// assert_eq!((mask.dim(), map.dim()), ((16, 16, 3), (16, 16)));
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub trait Saliency<F: Float>: CoreSaliency<F> {
    /// The dimension of the mask of an input of dimension `D`.
    type MaskDim<D: Dimension>: Dimension;

    /// Computes the mask for one input `x` (no batch axis).
    fn get_mask<'a, D: Dimension>(
        &self,
        x: impl AsArray<'a, F, D>,
        model: &mut dyn CallModelFunction<F>,
    ) -> Result<Array<F, Self::MaskDim<D>>>
    where
        F: 'a,
    {
        self.get_mask_with_progress(x, model, &mut |_| {})
    }

    /// [`get_mask`](Self::get_mask), reporting progress to `progress` as it
    /// goes.
    fn get_mask_with_progress<'a, D: Dimension>(
        &self,
        x: impl AsArray<'a, F, D>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Array<F, Self::MaskDim<D>>>
    where
        F: 'a,
    {
        in_dimension(self.get_mask_dyn(x.into().into_dyn(), model, progress)?)
    }

    /// Computes the SmoothGrad average of this method's masks over noisy
    /// copies of `x` (see [`SmoothGrad`](crate::SmoothGrad)).
    fn get_smoothed_mask<'a, D: Dimension>(
        &self,
        x: impl AsArray<'a, F, D>,
        model: &mut dyn CallModelFunction<F>,
        params: &SmoothGradParams,
    ) -> Result<Array<F, Self::MaskDim<D>>>
    where
        F: 'a,
    {
        in_dimension(self.get_smoothed_mask_dyn(x.into().into_dyn(), model, params)?)
    }

    /// The masks of one input for `targets` targets, `[targets, ...mask]`,
    /// from one run whose model calls carry the rows of every target (up to
    /// the method's batch size per call: with `batch_size >= targets * steps`
    /// Integrated Gradients asks the model once for all path points of all
    /// targets).
    ///
    /// The rows of target `t` are labelled image `t` in the request
    /// ([`ModelRequest::image_of_row`](crate::ModelRequest::image_of_row)),
    /// so a model explains each row for its target: with the candle and ONNX
    /// adapters, `Target::classes(classes)` explains target `t` for class
    /// `classes[t]` (every class: `targets` = the class count and
    /// `Target::classes((0..count).collect())`). Mask `t` equals, bit for
    /// bit, the one-input call for target `t`, whatever the batch size.
    ///
    /// ```
    /// use ndarray::{array, Array2};
    /// use saliency::{IntegratedGradients, ModelOutputs, OutputKey, Saliency};
    ///
    /// // A linear model with three outputs: target t's gradient is row t of w.
    /// let w = Array2::from_shape_vec((3, 2), vec![1.0_f64, 0.0, 0.0, 2.0, -1.0, 1.0])?;
    /// let x = array![3.0_f64, 4.0];
    /// let ig = IntegratedGradients::new().steps(10).batch_size(30);
    /// let mut calls = 0;
    /// let masks = ig.get_masks_for_targets(&x, 3, &mut |batch, request| {
    ///     calls += 1;
    ///     let mut grads = batch.to_owned();
    ///     for (row, mut g) in grads.outer_iter_mut().enumerate() {
    ///         g.assign(&w.row(request.image_of_row(row)));
    ///     }
    ///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, grads))
    /// })?;
    /// assert_eq!(calls, 1);
    /// assert_eq!(masks, array![[3.0, 0.0], [0.0, 8.0], [-3.0, 4.0]]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    fn get_masks_for_targets<'a, D: Dimension>(
        &self,
        x: impl AsArray<'a, F, D>,
        targets: usize,
        model: &mut dyn CallModelFunction<F>,
    ) -> Result<Array<F, <Self::MaskDim<D> as Dimension>::Larger>>
    where
        F: 'a,
    {
        in_dimension(self.get_masks_for_targets_dyn(x.into().into_dyn(), targets, model, &mut |_| {})?)
    }

    /// Computes the masks of several images at once: `images` is `[N, ...]`
    /// (each image as [`get_mask`](Self::get_mask) takes it) and the result
    /// is `[N, ...]`, mask `i` bit-identical to `get_mask` on image `i`.
    ///
    /// The model calls carry rows of several images (path points, noise
    /// samples, occluded copies), filled to
    /// [`batch_rows`](CoreSaliency::batch_rows) rows;
    /// [`ModelRequest::image_of_row`](crate::ModelRequest::image_of_row)
    /// tells the model which image each row belongs to, so every image can
    /// have its own target. Progress counts finished images.
    ///
    /// ```
    /// use ndarray::Array4;
    /// use saliency::{IntegratedGradients, ModelOutputs, OutputKey, Saliency};
    ///
    /// // Three 4 x 4 x 1 images; image i is explained for f_i(x) = (i + 1) * sum(x).
    /// let images = Array4::<f64>::from_elem((3, 4, 4, 1), 0.5);
    /// let ig = IntegratedGradients::new().steps(10).batch_size(15);
    /// let mut calls = 0;
    /// let masks = ig.get_masks(&images, &mut |batch, request| {
    ///     calls += 1;
    ///     let mut grads = batch.to_owned();
    ///     for (row, mut g) in grads.outer_iter_mut().enumerate() {
    ///         g.fill((request.image_of_row(row) + 1) as f64);
    ///     }
    ///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, grads))
    /// })?;
    /// assert_eq!(masks.dim(), (3, 4, 4, 1));
    /// assert_eq!(calls, 2); // 30 path points in calls of 15 rows
    /// assert!((masks[[2, 0, 0, 0]] - 1.5).abs() < 1e-12); // 3 * 0.5
    /// # Ok::<(), saliency::SaliencyError>(())
    /// ```
    fn get_masks<'a, D: Dimension>(
        &self,
        images: impl AsArray<'a, F, D>,
        model: &mut dyn CallModelFunction<F>,
    ) -> Result<Array<F, MasksDim<Self, F, D>>>
    where
        F: 'a,
    {
        self.get_masks_with_progress(images, model, &mut |_| {})
    }

    /// [`get_masks`](Self::get_masks), reporting finished images to
    /// `progress`.
    fn get_masks_with_progress<'a, D: Dimension>(
        &self,
        images: impl AsArray<'a, F, D>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<Array<F, MasksDim<Self, F, D>>>
    where
        F: 'a,
    {
        in_dimension(self.get_masks_dyn(images.into().into_dyn(), model, progress)?)
    }
}

/// A mask of dynamic dimension in the dimension its method promises.
fn in_dimension<F: Float, E: Dimension>(mask: ArrayD<F>) -> Result<Array<F, E>> {
    mask.into_dimensionality::<E>().map_err(|_| SaliencyError::Internal {
        what: "a mask does not have the rank its method promises",
    })
}

/// Implements both traits for a pointer to a method (`Box<M>`, `&M`) by
/// forwarding to the method, so a `Box<dyn CoreSaliency<F>>` or a
/// `&dyn CoreSaliency<F>` is a method too, with masks of dynamic dimension.
macro_rules! forward_to_pointee {
    ($($pointer:ty),*) => {$(
        impl<F: Float, M: CoreSaliency<F> + ?Sized> CoreSaliency<F> for $pointer {
            fn name(&self) -> &'static str {
                (**self).name()
            }

            fn get_mask_dyn(
                &self,
                x: ArrayViewD<'_, F>,
                model: &mut dyn CallModelFunction<F>,
                progress: &mut dyn FnMut(Progress),
            ) -> Result<ArrayD<F>> {
                (**self).get_mask_dyn(x, model, progress)
            }

            fn batch_size(&self) -> usize {
                (**self).batch_size()
            }

            fn batch_rows(&self, values: usize) -> usize {
                (**self).batch_rows(values)
            }

            fn get_masks_dyn(
                &self,
                images: ArrayViewD<'_, F>,
                model: &mut dyn CallModelFunction<F>,
                progress: &mut dyn FnMut(Progress),
            ) -> Result<ArrayD<F>> {
                (**self).get_masks_dyn(images, model, progress)
            }

            fn get_smoothed_mask_dyn(
                &self,
                x: ArrayViewD<'_, F>,
                model: &mut dyn CallModelFunction<F>,
                params: &SmoothGradParams,
            ) -> Result<ArrayD<F>> {
                (**self).get_smoothed_mask_dyn(x, model, params)
            }

            fn get_masks_for_targets_dyn(
                &self,
                x: ArrayViewD<'_, F>,
                targets: usize,
                model: &mut dyn CallModelFunction<F>,
                progress: &mut dyn FnMut(Progress),
            ) -> Result<ArrayD<F>> {
                (**self).get_masks_for_targets_dyn(x, targets, model, progress)
            }
        }

        impl<F: Float, M: CoreSaliency<F> + ?Sized> Saliency<F> for $pointer {
            type MaskDim<D: Dimension> = IxDyn;
        }
    )*};
}

forward_to_pointee!(Box<M>, &M);

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
