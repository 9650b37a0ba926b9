//! Guided Backpropagation: the input gradient computed with a modified ReLU
//! backward pass ([Springenberg et al., 2014](https://arxiv.org/abs/1412.6806)).
//!
//! The reference implements it only for TensorFlow 1 graphs, by swapping the
//! ReLU gradient. Here it works with any framework: the method asks the model
//! for [`OutputKey::GuidedInputOutputGradients`], and the model computes them
//! with the guided rule at every ReLU. [`guided_relu_backward`] applies that
//! rule to ndarray arrays for models whose backward pass is written by hand;
//! the `candle` adapter (feature `candle`) provides it as a candle operation.

use ndarray::{Array, ArrayD, ArrayView, ArrayViewD, Dimension, Zip};

use crate::checks::check_positive;
use crate::core::{CoreSaliency, Progress};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::methods::vanilla::gradient_of_one;
use crate::model::{CallModelFunction, OutputKey};

/// Guided Backpropagation: one model call, the mask is
/// [`OutputKey::GuidedInputOutputGradients`] for the input.
///
/// # What the model must compute
///
/// The gradient of the target output with respect to the input, by the chain
/// rule as usual, except at every ReLU `y = max(x, 0)`: there the backward
/// pass turns the incoming gradient `g = d target / d y` into
///
/// ```text
/// d target / d x  =  g   where x > 0 and g > 0
///                    0   elsewhere
/// ```
///
/// (the ordinary ReLU keeps `g` wherever `x > 0`, whatever its sign). Every
/// other layer is differentiated normally. [`guided_relu_backward`] is this
/// rule on arrays. The output has exactly the batch's shape.
///
/// It works under SmoothGrad like every method
/// ([`get_smoothed_mask`](crate::Saliency::get_smoothed_mask)).
///
/// ```
/// use ndarray::{Array1, Array2, Axis, array};
/// use saliency::methods::guided_backprop::guided_relu_backward;
/// use saliency::{GuidedBackprop, ModelOutputs, OutputKey, Saliency};
///
/// // f(x) = v . relu(W x) for one example x of 2 features and 3 hidden units.
/// let w = array![[1.0, -1.0], [2.0, 1.0], [-1.0, 0.5]];
/// let v = array![1.0, -3.0, 2.0];
/// let x = array![0.5, 0.25];
/// let mask = GuidedBackprop::new().get_mask(&x, &mut |batch, keys| {
///     assert_eq!(keys, [OutputKey::GuidedInputOutputGradients]);
///     let batch = batch.into_dimensionality::<ndarray::Ix2>()?;
///     let mut grads = Array2::<f64>::zeros(batch.raw_dim());
///     for (xb, mut gb) in batch.outer_iter().zip(grads.outer_iter_mut()) {
///         let hidden_in: Array1<f64> = w.dot(&xb);
///         // d f / d relu-output is v; the guided rule filters it.
///         let g_hidden = guided_relu_backward(hidden_in.view(), v.view())?;
///         gb.assign(&w.t().dot(&g_hidden));
///     }
///     Ok(ModelOutputs::new().with(OutputKey::GuidedInputOutputGradients, grads))
/// })?;
/// // Hidden inputs are (0.25, 1.25, -0.375): only unit 0 is active with a
/// // positive incoming gradient (1), so the mask is W's row 0 times 1.
/// assert_eq!(mask, array![1.0, -1.0]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuidedBackprop {
    batch_size: usize,
}

impl Default for GuidedBackprop {
    fn default() -> Self {
        GuidedBackprop { batch_size: 1 }
    }
}

impl GuidedBackprop {
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
impl<F: Float> crate::core::Saliency<F> for GuidedBackprop {
    type MaskDim<D: ndarray::Dimension> = D;
}

impl<F: Float> CoreSaliency<F> for GuidedBackprop {
    fn name(&self) -> &'static str {
        "Guided Backpropagation"
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
        gradient_of_one(x, model, OutputKey::GuidedInputOutputGradients, progress)
    }
}

/// The guided-ReLU backward rule on arrays: given a ReLU's input `relu_input`
/// and the gradient arriving at its output `incoming`, returns the gradient
/// to pass on, which is `incoming` where both `relu_input > 0` and
/// `incoming > 0`, and zero elsewhere.
///
/// The two arrays must have the same shape (else
/// [`SaliencyError::ShapeMismatch`]).
///
/// ```
/// use ndarray::array;
/// use saliency::methods::guided_backprop::guided_relu_backward;
///
/// let relu_input = array![1.0, 1.0, -1.0, 0.0];
/// let incoming = array![2.0, -2.0, 2.0, 2.0];
/// let passed = guided_relu_backward(relu_input.view(), incoming.view())?;
/// assert_eq!(passed, array![2.0, 0.0, 0.0, 0.0]);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn guided_relu_backward<F: Float, D: Dimension>(
    relu_input: ArrayView<'_, F, D>,
    incoming: ArrayView<'_, F, D>,
) -> Result<Array<F, D>> {
    if relu_input.shape() != incoming.shape() {
        return Err(SaliencyError::ShapeMismatch {
            what: "the incoming gradient",
            expected: relu_input.shape().to_vec(),
            actual: incoming.shape().to_vec(),
        });
    }
    let zero = F::zero();
    let rule = |x: F, g: F| if x > zero && g > zero { g } else { zero };
    // Flat loop when both are contiguous in the same order (the common case).
    if let (Some(xs), Some(gs)) = (relu_input.as_slice(), incoming.as_slice()) {
        let values: Vec<F> = xs.iter().zip(gs).map(|(&x, &g)| rule(x, g)).collect();
        return Array::from_shape_vec(relu_input.raw_dim(), values)
            .map_err(|_| SaliencyError::internal("the guided gradient does not have the ReLU input's size"));
    }
    Ok(Zip::from(&relu_input).and(&incoming).map_collect(|&x, &g| rule(x, g)))
}
