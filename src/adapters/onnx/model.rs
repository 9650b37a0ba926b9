//! [`OnnxModel`]: an ONNX graph as a model the saliency methods can call.

use std::marker::PhantomData;
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Tensor, WithDType};
use ndarray::ArrayViewD;

use super::graph::{LayerInfo, OnnxGraph};
use super::{OnnxError, shape_string};
use crate::adapters::candle::{CandleModel, ForwardContext, Target};
use crate::error::BoxError;
use crate::float::Float;
use crate::model::{ActivationLayout, ModelOutputs, ModelRequest, OutputKey};

/// The axis order of the graph's image input.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum InputLayout {
    /// `[N, C, H, W]`, as PyTorch exports.
    Nchw,
    /// `[N, H, W, C]`, as Keras exports.
    Nhwc,
}

/// The settings the forward closure reads, shared with the model so the
/// builder methods can change them.
#[derive(Debug, Default)]
struct Shared {
    /// The Grad-CAM layer, as a tensor name.
    layer: Option<String>,
    /// Per-channel mean and std, in the graph's layout, broadcastable.
    normalize: Option<(Tensor, Tensor)>,
    /// The graph's error in the last call, kept to be reported as itself.
    error: Option<OnnxError>,
}

type ForwardFn = Box<dyn FnMut(&Tensor, &ForwardContext) -> candle_core::Result<Tensor> + Send>;

/// An ONNX model as a [`CallModelFunction<F>`](crate::CallModelFunction):
/// see the [module docs](super).
///
/// Built on [`CandleModel`]: the same [`Target`]s, the same keys, the same
/// batching. Images are `H x W x C` (batches `[B, H, W, C]`); the model
/// moves the channel axis for an NCHW graph itself.
pub struct OnnxModel<F> {
    graph: Arc<OnnxGraph>,
    shared: Arc<Mutex<Shared>>,
    inner: CandleModel<F, ForwardFn>,
    layout: InputLayout,
    layer_layout: Option<ActivationLayout>,
    _float: PhantomData<fn() -> F>,
}

impl<F> std::fmt::Debug for OnnxModel<F> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("input", self.graph.input())
            .field("layout", &self.layout)
            .field("layer", &lock(&self.shared).layer)
            .finish_non_exhaustive()
    }
}

fn lock(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    // A panic elsewhere while holding the lock leaves the settings intact.
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

/// The layout the graph's input shape shows: channels first when axis 1 is
/// 1, 3 or 4 and the last axis is not; channels last the other way round.
fn detect_layout(dims: &[Option<usize>]) -> Result<InputLayout, OnnxError> {
    let channels = |d: Option<usize>| matches!(d, Some(1 | 3 | 4));
    match dims {
        [_, c, _, last] if channels(*c) && !channels(*last) => Ok(InputLayout::Nchw),
        [_, c, _, last] if channels(*last) && !channels(*c) => Ok(InputLayout::Nhwc),
        _ => Err(OnnxError::AmbiguousLayout {
            shape: shape_string(dims),
        }),
    }
}

impl<F> OnnxModel<F>
where
    F: Float + WithDType,
{
    /// A model from a loaded graph and the target to explain. The input
    /// layout is read from the graph's input shape; a shape that does not
    /// tell (for example a free channel axis, or `[N, 3, H, 3]`) is
    /// [`OnnxError::AmbiguousLayout`]: state it with
    /// [`input_layout`](Self::input_layout) on a model built with
    /// [`with_layout`](Self::with_layout).
    pub fn new(graph: OnnxGraph, target: Target) -> Result<Self, OnnxError> {
        let layout = detect_layout(&graph.input().dims)?;
        Ok(Self::with_layout(graph, target, layout))
    }

    /// A model from a loaded graph, the target and the graph's input layout.
    pub fn with_layout(graph: OnnxGraph, target: Target, layout: InputLayout) -> Self {
        let graph = Arc::new(graph);
        let shared = Arc::new(Mutex::new(Shared::default()));
        let forward: ForwardFn = {
            let graph = Arc::clone(&graph);
            let shared = Arc::clone(&shared);
            Box::new(move |x: &Tensor, ctx: &ForwardContext| {
                let (layer, normalize) = {
                    let s = lock(&shared);
                    (s.layer.clone(), s.normalize.clone())
                };
                let result = match &normalize {
                    Some((mean, std)) => x
                        .broadcast_sub(mean)
                        .and_then(|y| y.broadcast_div(std))
                        .map_err(|e| OnnxError::Setting(format!("normalize: {e}"))),
                    None => Ok(x.clone()),
                }
                .and_then(|x| graph.forward_with(&x, ctx, layer.as_deref()));
                result.map_err(|e| {
                    let message = e.to_string();
                    lock(&shared).error = Some(e);
                    candle_core::Error::Msg(message)
                })
            })
        };
        let inner = CandleModel::new(forward, target)
            .dtype(DType::F32)
            .channels_first(layout == InputLayout::Nchw);
        OnnxModel {
            graph,
            shared,
            inner,
            layout,
            layer_layout: None,
            _float: PhantomData,
        }
    }

    /// Loads the model in `path` (see [`OnnxGraph::from_file`]) with the
    /// layout read from the graph.
    pub fn from_file(path: impl AsRef<std::path::Path>, target: Target) -> Result<Self, OnnxError> {
        Self::new(OnnxGraph::from_file(path)?, target)
    }

    /// States the graph's input layout (when [`new`](Self::new) could not
    /// tell, or told wrong).
    #[must_use = "a setter returns the changed model; assign or chain it"]
    pub fn input_layout(mut self, layout: InputLayout) -> Self {
        self.layout = layout;
        self.inner = self.inner.channels_first(layout == InputLayout::Nchw);
        self
    }

    /// Chooses the Grad-CAM layer by a node's name (its first output) or a
    /// tensor's name. A name the graph does not have is
    /// [`OnnxError::UnknownLayer`], listing the candidates.
    pub fn layer(self, name: &str) -> Result<Self, OnnxError> {
        let tensor = self.graph.resolve_layer(name)?;
        lock(&self.shared).layer = Some(tensor);
        Ok(self)
    }

    /// The layout stated for the layer's values and gradients, when it is
    /// not the input's (by default: channels-first for an NCHW graph, as
    /// ONNX convolutions compute; channels-last for an NHWC one).
    #[must_use = "a setter returns the changed model; assign or chain it"]
    pub fn layer_layout(mut self, layout: ActivationLayout) -> Self {
        self.layer_layout = Some(layout);
        self
    }

    /// Normalises each input channel, `(x - mean[c]) / std[c]`, inside the
    /// differentiated graph (so gradients are with respect to the
    /// un-normalised image). `mean` and `std` have one value per channel;
    /// a `std` value that is not positive and finite is refused.
    pub fn normalize(self, mean: &[f32], std: &[f32]) -> Result<Self, OnnxError> {
        if mean.len() != std.len() || mean.is_empty() {
            return Err(OnnxError::Setting(format!(
                "normalize needs one mean and one std per channel, got {} and {}",
                mean.len(),
                std.len()
            )));
        }
        if let Some(&s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(OnnxError::Setting(format!(
                "normalize: std {s} is not positive and finite"
            )));
        }
        if mean.iter().any(|m| !m.is_finite()) {
            return Err(OnnxError::Setting("normalize: a mean is not finite".into()));
        }
        let channel_axis = match self.layout {
            InputLayout::Nchw => 1,
            InputLayout::Nhwc => 3,
        };
        if let Some(Some(c)) = self.graph.input().dims.get(channel_axis)
            && *c != mean.len()
        {
            return Err(OnnxError::Setting(format!(
                "normalize has {} channels, the graph's input {}",
                mean.len(),
                c
            )));
        }
        let shape: Vec<usize> = (0..4).map(|a| if a == channel_axis { mean.len() } else { 1 }).collect();
        let make = |v: &[f32]| {
            Tensor::from_slice(v, shape.as_slice(), &candle_core::Device::Cpu)
                .map_err(|e| OnnxError::Setting(format!("normalize: {e}")))
        };
        let pair = (make(mean)?, make(std)?);
        lock(&self.shared).normalize = Some(pair);
        Ok(self)
    }

    /// Changes the target.
    pub fn set_target(&mut self, target: Target) {
        self.inner.set_target(target);
    }

    /// The loaded graph.
    pub fn graph(&self) -> &OnnxGraph {
        &self.graph
    }

    /// The graph's input layout.
    pub fn get_input_layout(&self) -> InputLayout {
        self.layout
    }

    /// The chosen Grad-CAM layer (a tensor name), if any.
    pub fn get_layer(&self) -> Option<String> {
        lock(&self.shared).layer.clone()
    }

    /// The candidate Grad-CAM layers (4-D tensors) and their shapes, for one
    /// image of the graph's declared input shape (a free batch size taken
    /// as 1). A graph with other free sizes needs
    /// [`layers_for`](Self::layers_for).
    pub fn layers(&self) -> Result<Vec<LayerInfo>, OnnxError> {
        let dims = &self.graph.input().dims;
        let mut shape = Vec::with_capacity(dims.len());
        for (i, d) in dims.iter().enumerate() {
            match (i, d) {
                (_, Some(v)) => shape.push(*v),
                (0, None) => shape.push(1),
                _ => {
                    return Err(OnnxError::Setting(format!(
                        "the graph's input shape {} has free sizes: give an image shape to layers_for",
                        shape_string(dims)
                    )));
                }
            }
        }
        self.graph.layers(&shape)
    }

    /// [`layers`](Self::layers) for one image of `image_shape`
    /// (`[H, W, C]`, the crate's layout).
    pub fn layers_for(&self, image_shape: &[usize]) -> Result<Vec<LayerInfo>, OnnxError> {
        let &[h, w, c] = image_shape else {
            return Err(OnnxError::Setting(format!(
                "layers_for takes an image shape [H, W, C], got {image_shape:?}"
            )));
        };
        let shape = match self.layout {
            InputLayout::Nchw => [1, c, h, w],
            InputLayout::Nhwc => [1, h, w, c],
        };
        self.graph.layers(&shape)
    }

    crate::adapters::common::model_calls!(
        OnnxError,
        BoxError::from,
        /// Runs the model on `batch` (`[B, H, W, C]`) and returns the outputs
        /// for `keys`.
    );

    /// [`call`](Self::call) for a batch whose rows may belong to several
    /// images, each explained for its own target.
    pub fn call_request(
        &mut self,
        batch: ArrayViewD<'_, F>,
        request: &ModelRequest<'_>,
    ) -> Result<ModelOutputs<F>, OnnxError> {
        if request.wants(OutputKey::GuidedInputOutputGradients) && self.graph.relu_count() == 0 {
            return Err(OnnxError::NoRelu);
        }
        let layer_key = [OutputKey::ConvolutionLayerValues, OutputKey::ConvolutionOutputGradients]
            .into_iter()
            .find(|&k| request.wants(k));
        if let Some(key) = layer_key
            && lock(&self.shared).layer.is_none()
        {
            return Err(OnnxError::NoLayer {
                key,
                candidates: self.graph.layer_candidates(),
            });
        }
        // The graph's own shape check names its input: run it on the
        // batch in the graph's layout before any work.
        let shape = batch.shape();
        if shape.len() == 4 {
            let graph_shape = match self.layout {
                InputLayout::Nchw => [shape[0], shape[3], shape[1], shape[2]],
                InputLayout::Nhwc => [shape[0], shape[1], shape[2], shape[3]],
            };
            self.graph.check_input(&graph_shape)?;
        } else {
            self.graph.check_input(shape)?;
        }
        let stated = self.layer_layout.unwrap_or(match self.layout {
            InputLayout::Nchw => ActivationLayout::ChannelsFirst,
            InputLayout::Nhwc => ActivationLayout::ChannelsLast,
        });
        lock(&self.shared).error = None;
        let result = self.inner.call_request(batch, request);
        match result {
            Ok(outputs) => Ok(outputs.with_layout(stated)),
            Err(e) => match lock(&self.shared).error.take() {
                Some(graph_error) => Err(graph_error),
                None => Err(e.into()),
            },
        }
    }
}
