//! Input x Gradient: the input gradient times the input, element by element
//! ([Shrikumar et al., 2016](https://arxiv.org/abs/1605.01713)).

use ndarray::{ArrayD, ArrayViewD, Zip};

use crate::checks::{check_positive, finite_result};
use crate::core::{CoreSaliency, Progress};
use crate::error::Result;
use crate::float::Float;
use crate::methods::vanilla::gradient_of_one;
use crate::model::{CallModelFunction, OutputKey};

/// Input x Gradient: one model call for
/// [`OutputKey::InputOutputGradients`]; the mask is that gradient times the
/// input.
///
/// # Captum
///
/// Captum's `InputXGradient(model).attribute(x, target=c)`: the same
/// product. The target is the model function's (its closure, or
/// [`ModelRequest::image_of_row`](crate::ModelRequest::image_of_row) for a
/// target per image); Captum's `additional_forward_args` belong in the
/// closure too. Nothing else to map.
///
/// ```
/// use ndarray::array;
/// use saliency::{InputXGradient, ModelOutputs, OutputKey, Saliency};
///
/// let x = array![3.0, -2.0, 0.5];
/// // f(x) = sum(x^2): the gradient is 2x, so the mask is 2 x^2.
/// let mask = InputXGradient::new().get_mask(&x, &mut |batch, _keys| {
///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| 2.0 * v)))
/// })?;
/// assert_eq!(mask, array![18.0, 8.0, 0.5]);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct InputXGradient {
    batch_size: usize,
}

impl Default for InputXGradient {
    fn default() -> Self {
        InputXGradient { batch_size: 1 }
    }
}

impl InputXGradient {
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
impl<F: Float> crate::core::Saliency<F> for InputXGradient {
    type MaskDim<D: ndarray::Dimension> = D;
}

impl<F: Float> CoreSaliency<F> for InputXGradient {
    fn name(&self) -> &'static str {
        "Input x Gradient"
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
        check_positive("batch_size", self.batch_size)?;
        let mut grads = gradient_of_one(x.view(), model, OutputKey::InputOutputGradients, progress)?;
        Zip::from(&mut grads).and(&x).for_each(|g, &v| *g *= v);
        // A finite gradient times a finite input can still overflow.
        finite_result("Input x Gradient", grads)
    }
}
