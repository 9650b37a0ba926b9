//! Models trained elsewhere: load an ONNX file and explain it (feature
//! `onnx`).
//!
//! [`OnnxGraph`] reads a `.onnx` file (any exporter: PyTorch, Keras via
//! tf2onnx, ...) and evaluates it on candle tensors (f32, CPU) with candle's
//! own operations, so candle's backward pass gives the gradients every
//! saliency method needs. [`OnnxModel`] wraps it into a
//! [`CallModelFunction`](crate::CallModelFunction) the way
//! [`CandleModel`](super::candle::CandleModel) wraps a hand-written forward
//! pass, and serves every [`OutputKey`]:
//!
//! - the target (a class, a class per image or any selector) through
//!   [`Target`](super::candle::Target);
//! - guided gradients, with every `Relu` node evaluated as a guided ReLU
//!   (a graph without one is refused);
//! - Grad-CAM's layer, chosen by node or tensor name with
//!   [`OnnxModel::layer`]; [`OnnxModel::layers`] lists the candidates;
//! - the input layout (NCHW or NHWC) read from the graph's input; the
//!   crate's images are `H x W x C` and the model moves the axes itself;
//! - an optional per-channel normalisation ([`OnnxModel::normalize`]),
//!   applied inside the differentiated graph.
//!
//! ```
//! use prost::Message;
//! use saliency::adapters::candle::Target;
//! use saliency::adapters::onnx::proto::{
//!     AttributeProto, Dimension, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto,
//!     TensorShapeProto, TypeProto, TypeProtoTensor, ValueInfoProto, data_type,
//! };
//! use saliency::adapters::onnx::{OnnxGraph, OnnxModel};
//! use saliency::{GuidedBackprop, Saliency};
//!
//! // A tiny classifier on 1 x 3 x 5 x 5 images (NCHW): a 1 x 1 convolution
//! // to 2 channels, a ReLU, a global average pool and a flatten.
//! let dims = |d: &[i64]| Dimension { dim_value: Some(d[0]), ..Default::default() };
//! let input = ValueInfoProto {
//!     name: Some("x".into()),
//!     r#type: Some(TypeProto {
//!         tensor_type: Some(TypeProtoTensor {
//!             elem_type: Some(data_type::FLOAT),
//!             shape: Some(TensorShapeProto { dim: [1, 3, 5, 5].iter().map(|&d| dims(&[d])).collect() }),
//!         }),
//!         ..Default::default()
//!     }),
//!     ..Default::default()
//! };
//! let weight = TensorProto {
//!     name: Some("w".into()),
//!     dims: vec![2, 3, 1, 1],
//!     data_type: Some(data_type::FLOAT),
//!     float_data: vec![1.0, -1.0, 0.5, -0.5, 1.0, 0.25],
//!     ..Default::default()
//! };
//! let node = |op: &str, inputs: &[&str], output: &str| NodeProto {
//!     name: Some(format!("{op}_0")),
//!     op_type: Some(op.into()),
//!     input: inputs.iter().map(|s| s.to_string()).collect(),
//!     output: vec![output.into()],
//!     ..Default::default()
//! };
//! let mut flatten = node("Flatten", &["pooled"], "logits");
//! flatten.attribute.push(AttributeProto { name: Some("axis".into()), i: Some(1), r#type: Some(2), ..Default::default() });
//! let graph = GraphProto {
//!     node: vec![
//!         node("Conv", &["x", "w"], "conv"),
//!         node("Relu", &["conv"], "relu"),
//!         node("GlobalAveragePool", &["relu"], "pooled"),
//!         flatten,
//!     ],
//!     initializer: vec![weight],
//!     input: vec![input],
//!     output: vec![ValueInfoProto { name: Some("logits".into()), ..Default::default() }],
//!     ..Default::default()
//! };
//! let model = ModelProto {
//!     ir_version: Some(8),
//!     graph: Some(graph),
//!     opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
//!     ..Default::default()
//! };
//! let bytes = model.encode_to_vec(); // what `std::fs::read("model.onnx")` gives
//!
//! let graph = OnnxGraph::from_bytes(&bytes)?; // or OnnxGraph::from_file("model.onnx")
//! let mut model = OnnxModel::<f32>::new(graph, Target::class(1))?.layer("relu")?;
//! let layers = model.layers()?;
//! assert_eq!(layers[0].tensor, "conv");
//! assert_eq!(layers[0].shape, [1, 2, 5, 5]);
//!
//! let image = ndarray::Array3::<f32>::from_shape_fn((5, 5, 3), |(i, j, c)| (i + 2 * j + c) as f32 / 10.0);
//! let guided = GuidedBackprop::new().get_mask(&image, &mut model.as_fn())?;
//! assert_eq!(guided.shape(), [5, 5, 3]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Operators
//!
//! Opsets 11 to 18 of the default domain: Conv (groups, dilations, strides,
//! pads, auto_pad), BatchNormalization (inference), Relu, LeakyRelu,
//! Sigmoid, Tanh, Clip, HardSigmoid, HardSwish, Gelu, Erf, MaxPool,
//! AveragePool, GlobalAveragePool, Gemm, MatMul, Add, Sub, Mul, Div (with
//! broadcasting), Concat, Flatten, Reshape, Transpose, Squeeze, Unsqueeze,
//! Shape, Gather, Slice, Cast, Constant, ConstantOfShape, Softmax,
//! ReduceMean, Pad, Dropout and Identity. Integer tensors (shapes and
//! indices) are computed on the side, and whatever depends on constants
//! only is computed once at load. Anything else is an error at load naming
//! the node ([`OnnxError::UnsupportedOperator`]).
//!
//! Convolutions, max-pooling and ReLU run on
//! [`candle_ops`](crate::adapters::candle_ops): input gradients computed
//! fast and completely (max-pooling sends each window's gradient to its
//! first maximal element, PyTorch's rule, for any kernel, stride and
//! padding; ReLU has PyTorch's zero gradient at 0). Candle users can call
//! them in their own models too.

mod graph;
mod model;
mod ops;
pub mod proto;

pub use graph::{GraphInput, LayerInfo, OnnxGraph};
pub use model::{InputLayout, OnnxModel};

use super::candle::CandleAdapterError;
use crate::model::OutputKey;

/// What can go wrong loading or running an ONNX model. Errors about a node
/// name it and its operator.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OnnxError {
    /// The bytes are not an ONNX model (truncated, garbled, not protobuf).
    #[error("not a valid ONNX model (truncated or garbled file?): {0}")]
    Decode(#[from] prost::DecodeError),
    /// The file could not be read.
    #[error("could not read the ONNX file {path}: {source}")]
    Io {
        /// The path given.
        path: std::path::PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The model is valid protobuf but not a model this loader can run: no
    /// graph, no default-domain opset, an opset outside 11 to 18, not exactly
    /// one input...
    #[error("unsupported ONNX model: {reason}")]
    UnsupportedModel {
        /// What is wrong, in words.
        reason: String,
    },
    /// A node uses an operator the evaluator does not have.
    #[error("node {node:?}: operator {op_type:?}{} is not supported", domain_note(.domain))]
    UnsupportedOperator {
        /// The node's name (its first output's name when it has none).
        node: String,
        /// The operator.
        op_type: String,
        /// The operator's domain (empty for the default one).
        domain: String,
    },
    /// A node has an attribute value the evaluator does not support (or an
    /// attribute of the wrong type).
    #[error("node {node:?} ({op_type}): attribute {attribute:?}: {reason}")]
    UnsupportedAttribute {
        /// The node's name.
        node: String,
        /// The operator.
        op_type: String,
        /// The attribute.
        attribute: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// A node reads a tensor that no earlier node, initializer or graph
    /// input provides.
    #[error(
        "node {node:?} ({op_type}): input {input:?} is not produced by any earlier node, initializer or graph input"
    )]
    MissingInput {
        /// The node's name.
        node: String,
        /// The operator.
        op_type: String,
        /// The missing tensor's name.
        input: String,
    },
    /// A constant tensor (initializer or attribute) cannot be read.
    #[error("tensor {name:?}: {reason}")]
    BadTensor {
        /// The tensor's name.
        name: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// The graph's input has a different rank or a different fixed size
    /// than the tensor given.
    #[error("graph input {input:?} expects shape {expected}, got {actual:?}")]
    InputShape {
        /// The input's name.
        input: String,
        /// The shape the graph declares (`?` for a free size).
        expected: String,
        /// The shape given.
        actual: Vec<usize>,
    },
    /// A node failed while the graph ran (shapes that do not fit, an index
    /// out of range...).
    #[error("node {node:?} ({op_type}): {reason}")]
    Node {
        /// The node's name.
        node: String,
        /// The operator.
        op_type: String,
        /// What is wrong, in words.
        reason: String,
    },
    /// candle failed inside a node.
    #[error("node {node:?} ({op_type}): {source}")]
    Candle {
        /// The node's name.
        node: String,
        /// The operator.
        op_type: String,
        /// candle's error.
        source: Box<candle_core::Error>,
    },
    /// The layer named with [`OnnxModel::layer`] is no node or tensor of the
    /// graph.
    #[error("no node or tensor named {name:?} in the graph; candidate layers: {}", candidates.join(", "))]
    UnknownLayer {
        /// The name given.
        name: String,
        /// Names that would do (4-D tensors when the input shape is known).
        candidates: Vec<String>,
    },
    /// A convolution key was asked for but no layer was chosen.
    #[error("{key} was asked for, but no layer was chosen: name one with OnnxModel::layer; candidate layers: {}", candidates.join(", "))]
    NoLayer {
        /// The key asked for.
        key: OutputKey,
        /// Names that would do.
        candidates: Vec<String>,
    },
    /// Guided gradients were asked for but the graph has no `Relu` node.
    #[error(
        "guided gradients were asked for, but the graph has no Relu node (guided backprop changes the ReLU's backward rule only)"
    )]
    NoRelu,
    /// The graph's input shape does not tell NCHW from NHWC.
    #[error(
        "cannot tell from the graph's input shape {shape} whether it is NCHW or NHWC: state it with OnnxModel::input_layout"
    )]
    AmbiguousLayout {
        /// The input shape (`?` for a free size).
        shape: String,
    },
    /// A setting does not fit the graph (a normalisation with the wrong
    /// number of channels, a shape of the wrong rank...).
    #[error("{0}")]
    Setting(String),
    /// The candle adapter's error (target, backward pass, conversions).
    #[error(transparent)]
    Adapter(Box<CandleAdapterError>),
}

impl From<CandleAdapterError> for OnnxError {
    fn from(e: CandleAdapterError) -> Self {
        OnnxError::Adapter(Box::new(e))
    }
}

fn domain_note(domain: &str) -> String {
    if domain.is_empty() || domain == "ai.onnx" {
        String::new()
    } else {
        format!(" (domain {domain:?})")
    }
}

/// Formats a shape with free sizes as `?`.
pub(crate) fn shape_string(dims: &[Option<usize>]) -> String {
    let parts: Vec<String> = dims
        .iter()
        .map(|d| d.map_or_else(|| "?".to_string(), |v| v.to_string()))
        .collect();
    format!("[{}]", parts.join(", "))
}
