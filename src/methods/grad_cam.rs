//! Grad-CAM: class activation maps from a convolution layer's activations
//! weighted by their gradients ([Selvaraju et al., 2017](https://arxiv.org/abs/1610.02391)).

use ndarray::{ArrayD, ArrayViewD, Axis, Ix4};

use crate::checks::{check_channels_last, check_input, check_positive, finite_result};
use crate::core::{CoreSaliency, Progress, Stage};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::resize::{ResizeOptions, resize};
use crate::model::{CallModelFunction, OutputKey, call_model};

pub use crate::model::ActivationLayout;

/// Grad-CAM: each channel of the explained convolution layer is weighted by
/// the mean of its gradient over the layer's height and width; the weighted
/// sum over channels, through a ReLU, is the map.
///
/// Matches `saliency.core.GradCam` of PAIR saliency 0.2.1: with
/// `should_resize` the map is divided by its maximum (when that is positive)
/// and resized to the input's height and width with
/// `skimage.transform.resize`'s defaults (bilinear); with `three_dims` it is
/// repeated into 3 channels. An all-zero or all-negative map stays zero.
/// The reference accumulates the map in `float32` whatever the input type;
/// here it is accumulated in `F` (same channel order), so `f32` results
/// match it exactly and `f64` results agree to `float32` precision.
///
/// The model is called once, with the input as a batch of one, and must
/// return [`OutputKey::ConvolutionLayerValues`] and
/// [`OutputKey::ConvolutionOutputGradients`] of rank 4. The input is
/// `H x W x C` (or `H x W`).
///
/// # The layer's layout
///
/// The layout of the layer is the one the model states with
/// [`ModelOutputs::with_layout`](crate::ModelOutputs::with_layout) (the
/// candle adapter states it), or channels-last, the reference's, when the
/// model states none. Setting [`layout`](Self::layout) is needed only for a
/// channels-first model that states nothing; a setting that contradicts the
/// model's statement is [`SaliencyError::LayoutConflict`], never a silently
/// wrong map.
///
/// ```
/// use ndarray::{Array3, Array4};
/// use saliency::{ActivationLayout, GradCam, ModelOutputs, OutputKey, Saliency};
///
/// let image = Array3::<f32>::zeros((8, 8, 3));
/// // A 2 x 2 layer with one channel (channels first: [1, 1, 2, 2]).
/// let values = Array4::from_shape_vec((1, 1, 2, 2), vec![1.0_f32, 0.0, 0.0, 2.0]).unwrap();
/// let grads = Array4::from_elem((1, 1, 2, 2), 0.5_f32);
/// let cam = GradCam::new().three_dims(false);
/// let mask = cam.get_mask(&image, &mut |_batch, _keys| {
///     Ok(ModelOutputs::new()
///         .with(OutputKey::ConvolutionLayerValues, values.clone())
///         .with(OutputKey::ConvolutionOutputGradients, grads.clone())
///         .with_layout(ActivationLayout::ChannelsFirst))
/// })?;
/// assert_eq!(mask.shape(), &[8, 8]);
/// // Normalised to a maximum of 1 before the (bilinear) resize.
/// let max = mask.iter().fold(0.0_f32, |m, &v| m.max(v));
/// assert!(max <= 1.0 && max > 0.5);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GradCam {
    should_resize: bool,
    three_dims: bool,
    /// `None`: the layout the model states, else channels-last.
    layout: Option<ActivationLayout>,
    batch_size: usize,
}

impl Default for GradCam {
    fn default() -> Self {
        GradCam {
            should_resize: true,
            three_dims: true,
            layout: None,
            batch_size: 1,
        }
    }
}

impl GradCam {
    /// The reference's defaults: resize, three channels; the layer's layout
    /// is the one the model states, else channels-last.
    pub fn new() -> Self {
        Self::default()
    }

    /// Normalise the map to a maximum of 1 and resize it to the input's
    /// height and width (default true).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn should_resize(mut self, should_resize: bool) -> Self {
        self.should_resize = should_resize;
        self
    }

    /// Repeat the map into 3 channels, `H x W x 3` (default true).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn three_dims(mut self, three_dims: bool) -> Self {
        self.three_dims = three_dims;
        self
    }

    /// The layout of the layer's activations and gradients, for a model
    /// that does not state it. By default the layout the model states with
    /// [`ModelOutputs::with_layout`](crate::ModelOutputs::with_layout) is
    /// used, else channels-last; a model that states a different layout
    /// than the one set here is an error ([`SaliencyError::LayoutConflict`]).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn layout(mut self, layout: ActivationLayout) -> Self {
        self.layout = Some(layout);
        self
    }

    /// The most images per model call in a multi-image call
    /// ([`Saliency::get_masks`](crate::Saliency::get_masks)); default 1. A one-image call always
    /// sends one row.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// Whether the map is normalised and resized to the input.
    pub fn get_should_resize(&self) -> bool {
        self.should_resize
    }

    /// Whether the map is repeated into 3 channels.
    pub fn get_three_dims(&self) -> bool {
        self.three_dims
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

/// The mask: height x width, or height x width x 3 with `three_dims`: dynamic.
impl<F: Float> crate::core::Saliency<F> for GradCam {
    type MaskDim<D: ndarray::Dimension> = ndarray::IxDyn;
}

impl<F: Float> CoreSaliency<F> for GradCam {
    fn name(&self) -> &'static str {
        "Grad-CAM"
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
        check_cam_input(&x, self.batch_size)?;
        let layer = explained_layer("Grad-CAM", x.view(), model, self.layout, true, progress, true)?;
        let (values, layout) = (layer.values, layer.layout);
        let grads = layer
            .gradients
            .ok_or_else(|| SaliencyError::internal("Grad-CAM's layer came without its gradients"))?;
        let (_, a, b, c) = values.dim();
        let (channels, h, w) = match layout {
            ActivationLayout::ChannelsLast => (c, a, b),
            ActivationLayout::ChannelsFirst => (a, b, c),
        };
        if channels == 0 || h == 0 || w == 0 {
            return Err(SaliencyError::EmptyInput {
                what: "convolution layer values",
                shape: values.shape().to_vec(),
            });
        }
        // The first example of each, as flat row-major slices.
        let (values, grads) = (values.as_standard_layout(), grads.as_standard_layout());
        let size = channels * h * w;
        let (Some(values), Some(grads)) = (values.as_slice(), grads.as_slice()) else {
            return Err(SaliencyError::internal(
                "a standard-layout layer output is not contiguous",
            ));
        };
        let (values, grads) = (&values[..size], &grads[..size]);

        // Channel weights: the mean gradient over height and width, summed
        // pixel by pixel as NumPy reduces the leading axes. Then the map: the
        // weighted sum over channels, in channel order, as the reference
        // accumulates it.
        let count = F::from_f64_lossy((h * w) as f64);
        let mut weights = vec![F::zero(); channels];
        let mut cam = vec![F::zero(); h * w];
        match layout {
            ActivationLayout::ChannelsLast => {
                for g in grads.chunks_exact(channels) {
                    weights.iter_mut().zip(g).for_each(|(s, &v)| *s += v);
                }
                weights.iter_mut().for_each(|s| *s /= count);
                for (m, v) in cam.iter_mut().zip(values.chunks_exact(channels)) {
                    *m = weights.iter().zip(v).fold(F::zero(), |acc, (&wc, &x)| acc + wc * x);
                }
            }
            ActivationLayout::ChannelsFirst => {
                for (s, g) in weights.iter_mut().zip(grads.chunks_exact(h * w)) {
                    *s = g.iter().fold(F::zero(), |acc, &v| acc + v) / count;
                }
                for (&wc, plane) in weights.iter().zip(values.chunks_exact(h * w)) {
                    cam.iter_mut().zip(plane).for_each(|(m, &x)| *m += wc * x);
                }
            }
        }
        // The ReLU keeps NaN, as `numpy.maximum(cam, 0)` does: an overflow
        // (inf - inf) must not pass as a zero. A hugely negative sum (-inf)
        // is rightly 0.
        cam.iter_mut()
            .for_each(|v| *v = if *v > F::zero() || v.is_nan() { *v } else { F::zero() });
        let cam = ndarray::Array2::from_shape_vec((h, w), cam)
            .map_err(|_| SaliencyError::internal("the Grad-CAM map does not have the layer's size"))?;
        // Weighted sums of huge activations overflow. Checked before the
        // normalisation and the resize, which would report an overflowed map
        // as a non-finite input; a finite map stays finite through both.
        let cam = finite_result("Grad-CAM map", cam.into_dyn())?;
        finish_reference(cam, self.should_resize, self.three_dims, &x.shape()[..2])
    }
}

/// The checks of every CAM-family method before its model call: an image
/// `H x W` or `H x W x C`, channels-last, and a positive batch size.
pub(crate) fn check_cam_input<F: Float>(x: &ArrayViewD<'_, F>, batch_size: usize) -> Result<()> {
    check_input("input", x, 2)?;
    check_channels_last("input", x.shape())?;
    // Unused by one image, but checked here too: a setting is valid or
    // not whatever the call.
    check_positive("batch_size", batch_size)
}

/// One image's explained layer: its values, its gradients when asked for,
/// both of rank 4, and the layout to read them in.
pub(crate) struct ExplainedLayer<F> {
    pub(crate) values: ndarray::Array4<F>,
    pub(crate) gradients: Option<ndarray::Array4<F>>,
    pub(crate) layout: ActivationLayout,
}

/// Calls the model once, on `x` as a batch of one, for the layer's values
/// (and its gradients with `gradients`), checks them to rank 4 and resolves
/// their layout from `set` and the model's statement ([`resolve_layout`]).
/// With `report`, the call is reported to `progress` as the method's only
/// one.
pub(crate) fn explained_layer<F: Float>(
    method: &'static str,
    x: ArrayViewD<'_, F>,
    model: &mut dyn CallModelFunction<F>,
    set: Option<ActivationLayout>,
    gradients: bool,
    progress: &mut dyn FnMut(Progress),
    report: bool,
) -> Result<ExplainedLayer<F>> {
    let keys: &[OutputKey] = if gradients {
        &[OutputKey::ConvolutionLayerValues, OutputKey::ConvolutionOutputGradients]
    } else {
        &[OutputKey::ConvolutionLayerValues]
    };
    let mut outputs = call_model(model, x.insert_axis(Axis(0)), keys)?;
    if report {
        progress(Progress::new(Stage::ModelCalls, 1, 1));
    }
    let stated = outputs.layout();
    let values = layer_output(outputs.take(keys[0])?, keys[0])?;
    let gradients = match keys.get(1) {
        Some(&key) => Some(layer_output(outputs.take(key)?, key)?),
        None => None,
    };
    let layout = resolve_layout(method, set, stated, values.shape())?;
    Ok(ExplainedLayer {
        values,
        gradients,
        layout,
    })
}

/// PAIR saliency's finish of a `h x w` map: with `should_resize`, divided by
/// its maximum (when positive) and resized to `input_hw` with
/// `skimage.transform.resize`'s defaults; with `three_dims`, repeated into 3
/// channels.
pub(crate) fn finish_reference<F: Float>(
    mut cam: ArrayD<F>,
    should_resize: bool,
    three_dims: bool,
    input_hw: &[usize],
) -> Result<ArrayD<F>> {
    let (h, w) = (cam.shape()[0], cam.shape()[1]);
    if should_resize {
        let max = cam.iter().fold(F::zero(), |m, &v| if v > m { v } else { m });
        if max > F::zero() {
            cam.mapv_inplace(|v| v / max);
        }
    }
    if three_dims {
        // Repeated into 3 channels before the resize, which leaves the
        // channel axis alone and treats each channel identically: the
        // same values as resizing first, with one large buffer less.
        let mut tiled = Vec::with_capacity(3 * cam.len());
        match cam.as_slice() {
            Some(flat) => flat.iter().for_each(|&v| tiled.extend_from_slice(&[v; 3])),
            None => cam.iter().for_each(|&v| tiled.extend_from_slice(&[v; 3])),
        }
        cam = ArrayD::from_shape_vec(ndarray::IxDyn(&[h, w, 3]), tiled)
            .map_err(|_| SaliencyError::internal("the repeated Grad-CAM map does not have three channels"))?;
    }
    if should_resize {
        cam = resize(cam.view(), input_hw, &ResizeOptions::default())?;
    }
    Ok(cam)
}

/// The layout to use given the one set on the method and the one the model
/// stated.
///
/// With neither stated, the layer is read channels-last (the
/// reference's layout), unless its shape `[B, a, b, c]` looks
/// channels-first: square in its last two axes (`b == c`) but not in the
/// first two (`a != b`), as `[1, 512, 7, 7]`. Read channels-last, that
/// would be a 512 x 7 map of 7 channels, a plausible but wrong picture;
/// it is an error asking for the layout instead.
pub(crate) fn resolve_layout(
    method: &'static str,
    set: Option<ActivationLayout>,
    stated: Option<ActivationLayout>,
    shape: &[usize],
) -> Result<ActivationLayout> {
    match (set, stated) {
        (Some(set), Some(stated)) if set != stated => Err(SaliencyError::LayoutConflict { method, set, stated }),
        (Some(layout), _) | (None, Some(layout)) => Ok(layout),
        (None, None) => match shape {
            [_, a, b, c] if b == c && a != b => Err(SaliencyError::LayerLayoutUnstated {
                method,
                shape: shape.to_vec(),
            }),
            _ => Ok(ActivationLayout::ChannelsLast),
        },
    }
}

/// Checks that a layer output has rank 4.
pub(crate) fn layer_output<F: Float>(a: ArrayD<F>, key: OutputKey) -> Result<ndarray::Array4<F>> {
    let shape = a.shape().to_vec();
    a.into_dimensionality::<Ix4>().map_err(|_| SaliencyError::InvalidRank {
        what: match key {
            OutputKey::ConvolutionLayerValues => "convolution layer values",
            _ => "convolution output gradients",
        },
        expected: "rank 4 ([B, H, W, C] or [B, C, H, W])",
        actual: shape.len(),
        shape,
    })
}
