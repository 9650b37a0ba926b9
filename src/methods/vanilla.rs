//! Vanilla Gradients: the gradient of the target output with respect to the
//! input ([Simonyan et al., 2013](https://arxiv.org/abs/1312.6034)).

use ndarray::{ArrayD, ArrayViewD, Axis};

use crate::checks::{check_input, check_positive};
use crate::core::{CoreSaliency, Progress, Stage};
use crate::error::Result;
use crate::float::Float;
use crate::model::{CallModelFunction, OutputKey, call_model};

/// Vanilla Gradients: one model call, the mask is
/// [`OutputKey::InputOutputGradients`] for the input.
///
/// Matches `saliency.core.GradientSaliency` of PAIR saliency 0.2.1.
///
/// ```
/// use ndarray::array;
/// use saliency::{ModelOutputs, OutputKey, Saliency, VanillaGradients};
///
/// let x = array![3.0, 2.0, 1.0];
/// // f(x) = 5 x0 + x1^2 + sin(x2)
/// let mask = VanillaGradients::new().get_mask(&x, &mut |batch, _keys| {
///     let mut g = batch.to_owned();
///     for mut row in g.outer_iter_mut() {
///         let (x1, x2) = (row[1], row[2]);
///         row[0] = 5.0;
///         row[1] = 2.0 * x1;
///         row[2] = f64::cos(x2);
///     }
///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, g))
/// })?;
/// assert_eq!(mask[[1]], 4.0);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VanillaGradients {
    batch_size: usize,
}

impl Default for VanillaGradients {
    fn default() -> Self {
        VanillaGradients { batch_size: 1 }
    }
}

impl VanillaGradients {
    /// The method. Its one setting, [`batch_size`](Self::batch_size),
    /// matters only when explaining several images in one call.
    pub fn new() -> Self {
        Self::default()
    }

    /// The most images per model call in a multi-image call
    /// ([`Saliency::get_masks`](crate::Saliency::get_masks)); default 1. A one-image call always
    /// sends one row.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// The most images per model call in a multi-image call.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }
}

/// The mask: the input's shape.
impl<F: Float> crate::core::Saliency<F> for VanillaGradients {
    type MaskDim<D: ndarray::Dimension> = D;
}

impl<F: Float> CoreSaliency<F> for VanillaGradients {
    fn name(&self) -> &'static str {
        "Vanilla Gradients"
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
        // Unused by one image, but checked here too: a setting is valid or
        // not whatever the call.
        check_positive("batch_size", self.batch_size)?;
        gradient_of_one(x, model, OutputKey::InputOutputGradients, progress)
    }
}

/// One model call on `x` as a batch of one; the mask is the gradient output
/// `key` without its batch axis. Shared by Vanilla Gradients and Guided
/// Backpropagation, which differ only in the key they ask for.
pub(crate) fn gradient_of_one<F: Float>(
    x: ArrayViewD<'_, F>,
    model: &mut dyn CallModelFunction<F>,
    key: OutputKey,
    progress: &mut dyn FnMut(Progress),
) -> Result<ArrayD<F>> {
    check_input("input", &x, 1)?;
    let mut outputs = call_model(model, x.insert_axis(Axis(0)), &[key])?;
    progress(Progress::new(Stage::ModelCalls, 1, 1));
    Ok(outputs.take(key)?.index_axis_move(Axis(0), 0))
}
