//! The trait every saliency method implements, and its progress reports.

use ndarray::{ArrayD, ArrayViewD};

use crate::error::Result;
use crate::float::Float;
use crate::methods::smoothgrad::{self, SmoothGradParams};
use crate::model::CallModelFunction;

/// How far a long computation has come: `done` of `total` units of `stage`
/// (for example path steps of integrated gradients).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// What is being counted, such as `"integrated gradients steps"`.
    pub stage: &'static str,
    /// Units finished so far.
    pub done: usize,
    /// Units in all.
    pub total: usize,
}

impl Progress {
    /// A report of `done` of `total` units of `stage`.
    pub fn new(stage: &'static str, done: usize, total: usize) -> Self {
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
