//! The CAM family beside Grad-CAM, as pytorch-grad-cam 1.5.7 computes it:
//! Grad-CAM++, XGrad-CAM, LayerCAM, HiResCAM, Eigen-CAM and Score-CAM, each
//! from a convolution layer's activations (and, for all but Eigen-CAM and
//! Score-CAM, their gradients).

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn};

use crate::checks::finite_result;
use crate::core::{CoreSaliency, Progress, Stage};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::bilinear::{resize_align_corners, resize_half_pixel};
use crate::imageops::eigen::top_eigen_symmetric;
use crate::methods::grad_cam::{check_cam_input, explained_layer, finish_reference};
use crate::model::{ActivationLayout, CallModelFunction, OutputKey, call_model};

/// Which member of the CAM family [`Cam`] computes. With `A_k` the layer's
/// channel `k` (an `h x w` plane), `G_k` the target's gradient with respect
/// to it and sums over the plane's pixels, the map before the ReLU is:
///
/// | variant | map | pytorch-grad-cam 1.5.7 | paper |
/// | --- | --- | --- | --- |
/// | `GradCam` | `sum_k mean(G_k) A_k` | `GradCAM` | [Selvaraju et al., 2017](https://arxiv.org/abs/1610.02391) |
/// | `GradCamPlusPlus` | `sum_k w_k A_k`, `w_k = sum relu(G_k) a_k`, `a_k = G_k^2 / (2 G_k^2 + sum(A_k) G_k^3 + 1e-6)` (0 where `G_k = 0`) | `GradCAMPlusPlus` | [Chattopadhay et al., 2018](https://arxiv.org/abs/1710.11063) |
/// | `XGradCam` | `sum_k w_k A_k`, `w_k = sum(G_k A_k) / (sum(A_k) + 1e-7)` | `XGradCAM` | [Fu et al., 2020](https://arxiv.org/abs/2008.02312) |
/// | `LayerCam` | `sum_k relu(G_k) A_k` (pixel by pixel) | `LayerCAM` | [Jiang et al., 2021](https://ieeexplore.ieee.org/document/9462463) |
/// | `HiResCam` | `sum_k G_k A_k` (pixel by pixel) | `HiResCAM` | [Draelos and Carin, 2020](https://arxiv.org/abs/2011.08891) |
/// | `EigenCam` | the activations' first principal component (below) | `EigenCAM` | [Muhammad and Yeasin, 2020](https://arxiv.org/abs/2008.00299) |
/// | `ScoreCam` | `sum_k w_k A_k`, `w = softmax_k(f(x * m_k))` (below) | `ScoreCAM` | [Wang et al., 2020](https://arxiv.org/abs/1910.01279) |
///
/// **Eigen-CAM** centres the `hw x C` matrix of activations (each channel
/// minus its mean over the pixels) and projects it on its first right
/// singular vector, as pytorch-grad-cam's `get_2d_projection` does. The sign
/// of a singular vector is arbitrary; pytorch-grad-cam keeps the one LAPACK's
/// `gesdd` happens to return, which no rule reproduces. Here the sign is
/// pytorch-grad-cam's own correction (`get_2d_projection_with_sign_correction`,
/// Seg-Eigen-CAM's Eq. 13): the projection is negated when `|min| > |max|`,
/// so the strongest response is positive. Where LAPACK's sign agrees, the map
/// equals `EigenCAM`'s; else it is the map of the negated projection.
///
/// **Score-CAM** resizes each channel to the input's height and width with
/// corner-aligned bilinear interpolation (`nn.UpsamplingBilinear2d`), scales
/// it to [0, 1] (`(a - min) / (max - min + 1e-8)`), multiplies the input by
/// it (every input channel alike) and asks the model for
/// [`OutputKey::OutputLayerValues`] on these masked copies,
/// [`batch_size`](Cam::batch_size) per call; the channels' weights are the
/// softmax of those outputs over the channels.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CamMethod {
    /// Grad-CAM (pytorch-grad-cam's `GradCAM`; [`GradCam`](crate::GradCam)
    /// is the same map with PAIR saliency's finish).
    GradCam,
    /// Grad-CAM++ (`GradCAMPlusPlus`).
    GradCamPlusPlus,
    /// XGrad-CAM (`XGradCAM`).
    XGradCam,
    /// LayerCAM (`LayerCAM`).
    LayerCam,
    /// HiResCAM (`HiResCAM`).
    HiResCam,
    /// Eigen-CAM (`EigenCAM`): activations only, no gradients.
    EigenCam,
    /// Score-CAM (`ScoreCAM`): activations and masked forward passes, no
    /// gradients.
    ScoreCam,
}

impl CamMethod {
    fn name(self) -> &'static str {
        match self {
            CamMethod::GradCam => "Grad-CAM",
            CamMethod::GradCamPlusPlus => "Grad-CAM++",
            CamMethod::XGradCam => "XGrad-CAM",
            CamMethod::LayerCam => "LayerCAM",
            CamMethod::HiResCam => "HiResCAM",
            CamMethod::EigenCam => "Eigen-CAM",
            CamMethod::ScoreCam => "Score-CAM",
        }
    }

    fn uses_gradients(self) -> bool {
        !matches!(self, CamMethod::EigenCam | CamMethod::ScoreCam)
    }
}

/// How [`Cam`] finishes the map (always after a ReLU, as pytorch-grad-cam
/// and PAIR saliency both apply one).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum CamScaling {
    /// pytorch-grad-cam 1.5.7's `scale_cam_image` as `BaseCAM.__call__`
    /// applies it to one layer: scaled to [0, 1] (`m - min`, then divided by
    /// `1e-7 + max`), resized to the input's height and width as
    /// `cv2.resize` does (`INTER_LINEAR`: half-pixel centres, edges clamped;
    /// [`resize_half_pixel`]), then scaled to [0, 1] again (its
    /// `aggregate_multi_layers`). The result compares directly with
    /// pytorch-grad-cam's output.
    #[default]
    PytorchGradCam,
    /// PAIR saliency's `GradCam` finish (as [`GradCam`](crate::GradCam)
    /// with `should_resize`): divided by its maximum when positive, resized
    /// with `skimage.transform.resize`'s defaults.
    Reference,
    /// The map at the layer's size, unscaled.
    Raw,
}

/// A member of the CAM family on the convolution layer the model exposes
/// through [`OutputKey::ConvolutionLayerValues`] (and
/// [`OutputKey::ConvolutionOutputGradients`] for the gradient-based ones),
/// as pytorch-grad-cam 1.5.7 computes it; [`CamMethod`] lists the members
/// and their formulas.
///
/// The input is `H x W x C` (or `H x W`); the mask is `H x W` (`H x W x 3`
/// with [`three_dims`](Self::three_dims)), or the layer's `h x w` with
/// [`CamScaling::Raw`]. The layer's layout is resolved as for
/// [`GradCam`](crate::GradCam): the one the model states, else the one set
/// here, else channels-last; a contradiction is
/// [`SaliencyError::LayoutConflict`].
///
/// # pytorch-grad-cam
///
/// `Cam::new(m)` with the default [`CamScaling::PytorchGradCam`] gives
/// `CAM(model, target_layers=[layer])(input_tensor=x, targets=[ClassifierOutputTarget(c)])[0]`
/// for the class (`CAM` the class named in [`CamMethod`]):
///
/// - `target_layers`: the one layer the model function exposes (one layer;
///   pytorch-grad-cam averages several, which here is a mean of masks);
/// - `targets`: the model function's target (its closure, or
///   [`ModelRequest::image_of_row`](crate::ModelRequest::image_of_row) for
///   a target per image); `ClassifierOutputTarget(c)` is the logit of class
///   `c`, as the candle and ONNX adapters' `Target::class(c)`;
/// - `reshape_transform`: the model function returns the layer as
///   `[1, C, h, w]` or `[1, h, w, C]` (see [`layout`](Self::layout));
/// - `aug_smooth`, `eigen_smooth`: not provided;
/// - Score-CAM's `batch_size` attribute (default 16): [`batch_size`](Self::batch_size).
///
/// ```
/// use ndarray::{Array3, Array4};
/// use saliency::{ActivationLayout, Cam, CamMethod, CamScaling, ModelOutputs, OutputKey, Saliency};
///
/// let image = Array3::<f32>::zeros((8, 8, 3));
/// // A 2 x 2 layer with two channels (channels first: [1, 2, 2, 2]).
/// let values = Array4::from_shape_vec((1, 2, 2, 2), vec![1.0_f32, 0.0, 0.0, 2.0, 0.5, 0.5, 0.5, 0.5]).unwrap();
/// let grads = Array4::from_shape_vec((1, 2, 2, 2), vec![1.0_f32, -1.0, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0]).unwrap();
/// let cam = Cam::new(CamMethod::LayerCam).scaling(CamScaling::Raw);
/// let map = cam.get_mask(&image, &mut |_batch, _keys| {
///     Ok(ModelOutputs::new()
///         .with(OutputKey::ConvolutionLayerValues, values.clone())
///         .with(OutputKey::ConvolutionOutputGradients, grads.clone())
///         .with_layout(ActivationLayout::ChannelsFirst))
/// })?;
/// // LayerCAM: relu(G) * A summed over channels, pixel by pixel.
/// assert_eq!(map.into_raw_vec_and_offset().0, vec![1.0, 0.0, 0.0, 2.0]);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cam {
    method: CamMethod,
    scaling: CamScaling,
    three_dims: bool,
    layout: Option<ActivationLayout>,
    batch_size: usize,
}

impl Cam {
    /// The method `method` with pytorch-grad-cam's defaults: its scaling and
    /// resize, an `H x W` mask, 16 masked copies per Score-CAM call.
    pub fn new(method: CamMethod) -> Self {
        Cam {
            method,
            scaling: CamScaling::default(),
            three_dims: false,
            layout: None,
            batch_size: 16,
        }
    }

    /// How the map is finished (default [`CamScaling::PytorchGradCam`]).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn scaling(mut self, scaling: CamScaling) -> Self {
        self.scaling = scaling;
        self
    }

    /// Repeat the map into 3 channels, `H x W x 3` (default false).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn three_dims(mut self, three_dims: bool) -> Self {
        self.three_dims = three_dims;
        self
    }

    /// The layout of the layer, for a model that does not state it (see
    /// [`GradCam::layout`](crate::GradCam::layout)).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn layout(mut self, layout: ActivationLayout) -> Self {
        self.layout = Some(layout);
        self
    }

    /// The most rows per model call: Score-CAM's masked copies of one image
    /// (pytorch-grad-cam's `batch_size`, default 16), and the images of a
    /// multi-image call ([`Saliency::get_masks`](crate::Saliency::get_masks)) for the others.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    /// The member of the family.
    pub fn get_method(&self) -> CamMethod {
        self.method
    }

    /// How the map is finished.
    pub fn get_scaling(&self) -> CamScaling {
        self.scaling
    }

    /// Whether the map is repeated into 3 channels.
    pub fn get_three_dims(&self) -> bool {
        self.three_dims
    }

    /// The layout set with [`layout`](Self::layout); `None`: the model's, else channels-last.
    pub fn get_layout(&self) -> Option<ActivationLayout> {
        self.layout
    }

    /// The most rows per model call.
    pub fn get_batch_size(&self) -> usize {
        self.batch_size
    }
}

/// The mask: height x width, or height x width x 3 with `three_dims`: dynamic.
impl<F: Float> crate::core::Saliency<F> for Cam {
    type MaskDim<D: ndarray::Dimension> = IxDyn;
}

impl<F: Float> CoreSaliency<F> for Cam {
    fn name(&self) -> &'static str {
        self.method.name()
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
        let explained = explained_layer(
            self.method.name(),
            x.view(),
            model,
            self.layout,
            self.method.uses_gradients(),
            progress,
            // Score-CAM reports its calls once it knows how many it makes.
            self.method != CamMethod::ScoreCam,
        )?;
        let layout = explained.layout;
        let layer = Planes::of(explained.values.into_dyn(), layout)?;
        let grads = match explained.gradients {
            Some(g) => Some(Planes::of(g.into_dyn(), layout)?.data),
            None => None,
        };
        let (c, hw) = (layer.channels, layer.h * layer.w);
        let a = &layer.data;
        let g = grads.as_deref().unwrap_or(&[]);
        let zero = F::zero();
        let mut cam = vec![zero; hw];
        let weighted = |cam: &mut [F], weights: &[F]| {
            for (&wk, plane) in weights.iter().zip(a.chunks_exact(hw)) {
                cam.iter_mut().zip(plane).for_each(|(m, &v)| *m += wk * v);
            }
        };
        match self.method {
            CamMethod::GradCam => {
                let n = F::from_f64_lossy(hw as f64);
                let weights: Vec<F> = g.chunks_exact(hw).map(|gk| sum(gk) / n).collect();
                weighted(&mut cam, &weights);
            }
            CamMethod::GradCamPlusPlus => {
                let eps = F::from_f64_lossy(1e-6);
                let two = F::from_f64_lossy(2.0);
                let weights: Vec<F> = a
                    .chunks_exact(hw)
                    .zip(g.chunks_exact(hw))
                    .map(|(ak, gk)| {
                        let s = sum(ak);
                        gk.iter().fold(zero, |acc, &gv| {
                            let g2 = gv * gv;
                            let aij = if gv != zero {
                                g2 / (two * g2 + s * (g2 * gv) + eps)
                            } else {
                                zero
                            };
                            acc + gv.max(zero) * aij
                        })
                    })
                    .collect();
                weighted(&mut cam, &weights);
            }
            CamMethod::XGradCam => {
                let eps = F::from_f64_lossy(1e-7);
                let weights: Vec<F> = a
                    .chunks_exact(hw)
                    .zip(g.chunks_exact(hw))
                    .map(|(ak, gk)| {
                        let s = sum(ak) + eps;
                        ak.iter().zip(gk).fold(zero, |acc, (&av, &gv)| acc + gv * av / s)
                    })
                    .collect();
                weighted(&mut cam, &weights);
            }
            CamMethod::LayerCam | CamMethod::HiResCam => {
                let relu = self.method == CamMethod::LayerCam;
                for (ak, gk) in a.chunks_exact(hw).zip(g.chunks_exact(hw)) {
                    for ((m, &av), &gv) in cam.iter_mut().zip(ak).zip(gk) {
                        let gv = if relu { gv.max(zero) } else { gv };
                        *m += gv * av;
                    }
                }
            }
            CamMethod::EigenCam => cam = eigen_projection(a, c, hw),
            CamMethod::ScoreCam => {
                let weights = score_cam_weights(x.view(), &layer, self.batch_size, model, progress)?;
                weighted(&mut cam, &weights);
            }
        }
        // The ReLU keeps NaN (`numpy.maximum`), so an overflow is reported.
        cam.iter_mut()
            .for_each(|v| *v = if *v > zero || v.is_nan() { *v } else { zero });
        let cam = ArrayD::from_shape_vec(IxDyn(&[layer.h, layer.w]), cam)
            .map_err(|_| SaliencyError::internal("a CAM map does not have the layer's size"))?;
        let cam = finite_result("CAM map", cam)?;
        let (height, width) = (x.shape()[0], x.shape()[1]);
        let map = match self.scaling {
            CamScaling::Reference => return finish_reference(cam, true, self.three_dims, &[height, width]),
            CamScaling::Raw => cam,
            CamScaling::PytorchGradCam => {
                let mut flat = cam.into_raw_vec_and_offset().0;
                scale_cam_image(&mut flat);
                let mut up = resize_half_pixel(&flat, layer.h, layer.w, height, width);
                scale_cam_image(&mut up);
                ArrayD::from_shape_vec(IxDyn(&[height, width]), up)
                    .map_err(|_| SaliencyError::internal("a resized CAM map does not have the input's size"))?
            }
        };
        if !self.three_dims {
            return Ok(map);
        }
        let (h, w) = (map.shape()[0], map.shape()[1]);
        let mut tiled = Vec::with_capacity(3 * map.len());
        map.iter().for_each(|&v| tiled.extend_from_slice(&[v; 3]));
        ArrayD::from_shape_vec(IxDyn(&[h, w, 3]), tiled)
            .map_err(|_| SaliencyError::internal("a repeated CAM map does not have three channels"))
    }
}

/// The first example of a rank-4 layer output as `channels` planes of
/// `h x w`, channel after channel, whatever its layout.
pub(crate) struct Planes<F> {
    pub(crate) channels: usize,
    pub(crate) h: usize,
    pub(crate) w: usize,
    pub(crate) data: Vec<F>,
}

impl<F: Float> Planes<F> {
    pub(crate) fn of(a: ArrayD<F>, layout: ActivationLayout) -> Result<Self> {
        let shape = a.shape().to_vec();
        let (channels, h, w) = match (layout, shape.as_slice()) {
            (ActivationLayout::ChannelsLast, &[_, h, w, c]) => (c, h, w),
            (ActivationLayout::ChannelsFirst, &[_, c, h, w]) => (c, h, w),
            _ => return Err(SaliencyError::internal("a layer output of rank 4 has no four axes")),
        };
        if channels == 0 || h == 0 || w == 0 || shape[0] == 0 {
            return Err(SaliencyError::EmptyInput {
                what: "convolution layer values",
                shape,
            });
        }
        let first = a.index_axis(Axis(0), 0);
        let chw = match layout {
            ActivationLayout::ChannelsFirst => first,
            ActivationLayout::ChannelsLast => first.permuted_axes(IxDyn(&[2, 0, 1])),
        };
        let data = chw.as_standard_layout().iter().copied().collect();
        Ok(Planes { channels, h, w, data })
    }
}

/// Sum in order, as the reductions above are small (one plane).
fn sum<F: Float>(values: &[F]) -> F {
    values.iter().fold(F::zero(), |acc, &v| acc + v)
}

/// pytorch-grad-cam's `scale_cam_image` without the resize: `m - min`, then
/// divided by `1e-7 + max` (in `F`, as it computes in `float32`).
fn scale_cam_image<F: Float>(map: &mut [F]) {
    let (lo, _) = crate::imageops::min_max(map.iter().copied());
    map.iter_mut().for_each(|v| *v -= lo);
    let (_, hi) = crate::imageops::min_max(map.iter().copied());
    let denominator = F::from_f64_lossy(1e-7) + hi;
    map.iter_mut().for_each(|v| *v /= denominator);
}

/// Eigen-CAM's projection of the centred `hw x c` activations on their
/// first right singular vector, with pytorch-grad-cam's sign correction.
fn eigen_projection<F: Float>(a: &[F], c: usize, hw: usize) -> Vec<F> {
    // Centred, channel-major: m[k][p].
    let mut m: Vec<f64> = a.iter().map(|v| v.as_f64()).collect();
    for plane in m.chunks_exact_mut(hw) {
        let mean = plane.iter().sum::<f64>() / hw as f64;
        plane.iter_mut().for_each(|v| *v -= mean);
    }
    let at = |k: usize, p: usize| m[k * hw + p];
    let projection: Vec<f64> = if c <= hw {
        // The c x c matrix M^T M: its top eigenvector is the singular vector.
        let mut gram = vec![0.0; c * c];
        for i in 0..c {
            for j in i..c {
                let v: f64 = (0..hw).map(|p| at(i, p) * at(j, p)).sum();
                gram[i * c + j] = v;
                gram[j * c + i] = v;
            }
        }
        let (_, v) = top_eigen_symmetric(&gram, c);
        (0..hw).map(|p| (0..c).map(|k| at(k, p) * v[k]).sum()).collect()
    } else {
        // The hw x hw matrix M M^T: M v = sqrt(lambda) u.
        let mut gram = vec![0.0; hw * hw];
        for p in 0..hw {
            for q in p..hw {
                let v: f64 = (0..c).map(|k| at(k, p) * at(k, q)).sum();
                gram[p * hw + q] = v;
                gram[q * hw + p] = v;
            }
        }
        let (lambda, u) = top_eigen_symmetric(&gram, hw);
        let s = lambda.max(0.0).sqrt();
        u.iter().map(|&v| s * v).collect()
    };
    let (lo, hi) = projection
        .iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
    let sign = if lo.abs() > hi.abs() { -1.0 } else { 1.0 };
    projection.iter().map(|&v| F::from_f64_lossy(sign * v)).collect()
}

/// Score-CAM's channel weights: the softmax over channels of the model's
/// output on the input masked by each channel, resized and scaled to [0, 1].
fn score_cam_weights<F: Float>(
    x: ArrayViewD<'_, F>,
    layer: &Planes<F>,
    batch_size: usize,
    model: &mut dyn CallModelFunction<F>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Vec<F>> {
    let (height, width) = (x.shape()[0], x.shape()[1]);
    let pixels = height * width;
    let x_std = x.as_standard_layout();
    let x_flat = x_std
        .as_slice()
        .ok_or_else(|| SaliencyError::internal("a standard-layout input is not contiguous"))?;
    let inner = x_flat.len() / pixels.max(1);
    let hw = layer.h * layer.w;
    let eps = F::from_f64_lossy(1e-8);
    let c = layer.channels;
    let calls = c.div_ceil(batch_size);
    let mut scores = Vec::with_capacity(c);
    let mut batch: Vec<F> = Vec::new();
    for (call, first) in (0..c).step_by(batch_size).enumerate() {
        let rows = batch_size.min(c - first);
        batch.clear();
        for plane in layer.data[first * hw..(first + rows) * hw].chunks_exact(hw) {
            let mut mask = resize_align_corners(plane, layer.h, layer.w, height, width);
            let (lo, hi) = crate::imageops::min_max(mask.iter().copied());
            let range = hi - lo + eps;
            mask.iter_mut().for_each(|v| *v = (*v - lo) / range);
            for (pixel, &m) in x_flat.chunks_exact(inner).zip(&mask) {
                batch.extend(pixel.iter().map(|&v| v * m));
            }
        }
        let mut shape = vec![rows];
        shape.extend_from_slice(x.shape());
        let view = ArrayViewD::from_shape(IxDyn(&shape), &batch)
            .map_err(|_| SaliencyError::internal("the Score-CAM batch does not fill its shape"))?;
        let key = OutputKey::OutputLayerValues;
        let mut outputs = call_model(model, view, &[key])?;
        let values = outputs.take(key)?;
        scores.extend(values.iter().map(|v| v.as_f64()));
        progress(Progress::new(Stage::ModelCalls, call + 2, calls + 1));
    }
    let top = scores.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v));
    let exps: Vec<f64> = scores.iter().map(|&s| (s - top).exp()).collect();
    let total: f64 = exps.iter().sum();
    Ok(exps.iter().map(|&e| F::from_f64_lossy(e / total)).collect())
}
