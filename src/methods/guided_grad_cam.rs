//! Guided Grad-CAM: Guided Backpropagation times the Grad-CAM map resized to
//! the input ([Selvaraju et al., 2017](https://arxiv.org/abs/1610.02391)).

use ndarray::{ArrayD, ArrayViewD};

use crate::checks::finite_result;
use crate::core::{CoreSaliency, Progress};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::bilinear::{resize_half_pixel, resize_nearest};
use crate::methods::grad_cam::{GradCam, check_cam_input};
use crate::methods::vanilla::gradient_of_one;
use crate::model::{ActivationLayout, CallModelFunction, OutputKey};

/// How [`GuidedGradCam`] brings the layer-sized Grad-CAM map to the input's
/// height and width (Captum's `interpolate_mode`).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Interpolation {
    /// PyTorch's `nearest` (Captum's default):
    /// [`resize_nearest`].
    #[default]
    Nearest,
    /// PyTorch's `bilinear` with `align_corners=False`:
    /// [`resize_half_pixel`].
    Bilinear,
}

/// Guided Grad-CAM: two model calls, one for the layer's values and
/// gradients (the Grad-CAM map, through its ReLU, at the layer's size,
/// unscaled), one for [`OutputKey::GuidedInputOutputGradients`]; the mask is
/// the guided gradient with every pixel (all its channels) multiplied by the
/// Grad-CAM map resized to the input.
///
/// # Captum
///
/// Captum's `GuidedGradCam(model, layer).attribute(x, target=c)`:
/// `layer` is the layer the model function exposes (as for
/// [`GradCam`]); `interpolate_mode` is [`interpolation`](Self::interpolation)
/// (`"nearest"` by default, `"bilinear"`; others are not provided);
/// `attribute_to_layer_input=False` (the layer's output) is what the model
/// exposes. Captum's guided backpropagation overrides every `nn.ReLU`; the
/// model's guided gradient must do the same (see
/// [`GuidedBackprop`](crate::GuidedBackprop)).
///
/// ```
/// use ndarray::{Array3, Array4};
/// use saliency::{ActivationLayout, GuidedGradCam, ModelOutputs, OutputKey, Saliency};
///
/// let image = Array3::<f32>::ones((4, 4, 1));
/// // A 2 x 2 layer with one channel: Grad-CAM is relu(mean(G) * A) = A here.
/// let values = Array4::from_shape_vec((1, 1, 2, 2), vec![1.0_f32, 0.0, 0.0, 2.0]).unwrap();
/// let grads = Array4::from_elem((1, 1, 2, 2), 1.0_f32);
/// let mask = GuidedGradCam::new().get_mask(&image, &mut |batch, keys| {
///     let mut out = ModelOutputs::new().with_layout(ActivationLayout::ChannelsFirst);
///     if keys.wants(OutputKey::GuidedInputOutputGradients) {
///         out = out.with(OutputKey::GuidedInputOutputGradients, batch.mapv(|_| 0.5_f32));
///     } else {
///         out = out
///             .with(OutputKey::ConvolutionLayerValues, values.clone())
///             .with(OutputKey::ConvolutionOutputGradients, grads.clone());
///     }
///     Ok(out)
/// })?;
/// // Each layer pixel covers a 2 x 2 block (nearest): 0.5 * A.
/// assert_eq!(mask[[0, 0, 0]], 0.5);
/// assert_eq!(mask[[3, 3, 0]], 1.0);
/// assert_eq!(mask[[0, 3, 0]], 0.0);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuidedGradCam {
    interpolation: Interpolation,
    layout: Option<ActivationLayout>,
    batch_size: usize,
}

impl Default for GuidedGradCam {
    fn default() -> Self {
        GuidedGradCam {
            interpolation: Interpolation::default(),
            layout: None,
            batch_size: 1,
        }
    }
}

impl GuidedGradCam {
    /// Captum's defaults: nearest interpolation; the layer's layout is the
    /// one the model states, else channels-last.
    pub fn new() -> Self {
        Self::default()
    }

    /// How the Grad-CAM map is resized to the input (default nearest).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn interpolation(mut self, interpolation: Interpolation) -> Self {
        self.interpolation = interpolation;
        self
    }

    /// The layout of the layer, for a model that does not state it (see
    /// [`GradCam::layout`]).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn layout(mut self, layout: ActivationLayout) -> Self {
        self.layout = Some(layout);
        self
    }

    /// The most images per model call in a multi-image call
    /// ([`Saliency::get_masks`](crate::Saliency::get_masks)); default 1.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// How the Grad-CAM map is resized to the input.
    pub fn get_interpolation(&self) -> Interpolation {
        self.interpolation
    }

    /// The layout set with [`layout`](Self::layout); `None`: the model's, else channels-last.
    pub fn get_layout(&self) -> Option<ActivationLayout> {
        self.layout
    }

    /// The most images per model call in a multi-image call.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }
}

/// The mask: the input's shape.
impl<F: Float> crate::core::Saliency<F> for GuidedGradCam {
    type MaskDim<D: ndarray::Dimension> = D;
}

impl<F: Float> CoreSaliency<F> for GuidedGradCam {
    fn name(&self) -> &'static str {
        "Guided Grad-CAM"
    }

    fn batch_size(&self) -> usize {
        self.get_batch_size()
    }

    fn get_mask_dyn(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        check_cam_input(&x, self.get_batch_size())?;
        let mut grad_cam = GradCam::new().should_resize(false).three_dims(false);
        if let Some(layout) = self.layout {
            grad_cam = grad_cam.layout(layout);
        }
        let cam = CoreSaliency::<F>::get_mask_dyn(&grad_cam, x.view(), model, progress)?;
        let (h, w) = (cam.shape()[0], cam.shape()[1]);
        let cam = cam.as_standard_layout();
        let cam = cam
            .as_slice()
            .ok_or_else(|| SaliencyError::internal("a standard-layout map is not contiguous"))?;
        let (height, width) = (x.shape()[0], x.shape()[1]);
        let up = match self.interpolation {
            Interpolation::Nearest => resize_nearest(cam, h, w, height, width),
            Interpolation::Bilinear => resize_half_pixel(cam, h, w, height, width),
        };
        let guided = gradient_of_one(x.view(), model, OutputKey::GuidedInputOutputGradients, progress)?;
        let mut guided = guided.as_standard_layout().into_owned();
        let inner = guided.len() / (height * width).max(1);
        let flat = guided
            .as_slice_mut()
            .ok_or_else(|| SaliencyError::internal("a standard-layout gradient is not contiguous"))?;
        for (pixel, &m) in flat.chunks_exact_mut(inner.max(1)).zip(&up) {
            pixel.iter_mut().for_each(|v| *v *= m);
        }
        finite_result("Guided Grad-CAM", guided)
    }
}
