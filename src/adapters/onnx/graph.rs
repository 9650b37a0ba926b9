//! Loading a graph (decoding, checking, folding constants) and running it.

use std::collections::{HashMap, HashSet};
use std::path::Path;

use candle_core::{Device, Tensor};
use ndarray::{ArrayD, IxDyn};
use prost::Message;

use super::ops::{self, NodeId, Op, OpError, Value};
use super::proto::{ModelProto, TensorProto, ValueInfoProto, data_type};
use super::{OnnxError, shape_string};
use crate::adapters::candle::ForwardContext;

/// The lowest and highest default-domain opset the evaluator reads.
const OPSETS: std::ops::RangeInclusive<i64> = 11..=18;

/// One node, its operator read.
#[derive(Clone, Debug)]
pub(crate) struct Node {
    /// The node's name, or its first output's when it has none.
    pub(crate) name: String,
    pub(crate) op_type: String,
    pub(crate) inputs: Vec<String>,
    pub(crate) outputs: Vec<String>,
    pub(crate) op: Op,
}

/// The graph's input: its name and its declared shape (`None` for a free
/// size, such as a batch axis).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GraphInput {
    /// The input's name.
    pub name: String,
    /// The declared shape; `None` for a free (named or unknown) size.
    pub dims: Vec<Option<usize>>,
}

/// A 4-D float tensor the graph computes: a candidate Grad-CAM layer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// The tensor's name (what [`OnnxModel::layer`](super::OnnxModel::layer) takes).
    pub tensor: String,
    /// The name of the node that computes it (also accepted).
    pub node: String,
    /// That node's operator.
    pub op_type: String,
    /// The tensor's shape for the input shape asked about.
    pub shape: Vec<usize>,
}

/// An ONNX graph, loaded and checked, ready to run on candle tensors.
///
/// Load it with [`from_bytes`](Self::from_bytes) or
/// [`from_file`](Self::from_file); every problem (bytes that are no ONNX
/// model, an operator or attribute value the evaluator does not support, a
/// tensor nothing provides) is an [`OnnxError`] naming the node, never a
/// panic. The graph must have one input (besides its weights); its first
/// output is the model's output.
#[derive(Clone, Debug)]
pub struct OnnxGraph {
    nodes: Vec<Node>,
    constants: HashMap<String, Value>,
    input: GraphInput,
    outputs: Vec<String>,
    opset: i64,
    /// For each node, the values it reads for the last time (freed after it).
    frees: Vec<Vec<String>>,
}

impl OnnxGraph {
    /// Reads a model from the bytes of an `.onnx` file.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, OnnxError> {
        let model = ModelProto::decode(bytes)?;
        Self::from_proto(&model)
    }

    /// Reads a model from an `.onnx` file. Weights stored in external files
    /// are not supported.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, OnnxError> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|source| OnnxError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(&bytes)
    }

    /// Reads a model from its decoded protobuf message.
    pub fn from_proto(model: &ModelProto) -> Result<Self, OnnxError> {
        let unsupported = |reason: String| OnnxError::UnsupportedModel { reason };
        let opset = model
            .opset_import
            .iter()
            .find(|o| matches!(o.domain.as_deref(), None | Some("") | Some("ai.onnx")))
            .and_then(|o| o.version)
            .ok_or_else(|| unsupported("no opset of the default domain is imported".into()))?;
        if !OPSETS.contains(&opset) {
            return Err(unsupported(format!(
                "opset {opset} of the default domain; opsets {} to {} are supported",
                OPSETS.start(),
                OPSETS.end()
            )));
        }
        let graph = model
            .graph
            .as_ref()
            .ok_or_else(|| unsupported("the model has no graph".into()))?;

        let mut constants: HashMap<String, Value> = HashMap::new();
        for t in &graph.initializer {
            let name = t.name.clone().unwrap_or_default();
            let value = tensor_value(t, &name)?;
            constants.insert(name, value);
        }
        // Older exporters list the weights among the inputs too.
        let inputs: Vec<&ValueInfoProto> = graph
            .input
            .iter()
            .filter(|i| !constants.contains_key(i.name.as_deref().unwrap_or("")))
            .collect();
        let [input] = inputs.as_slice() else {
            let names: Vec<&str> = inputs.iter().map(|i| i.name.as_deref().unwrap_or("")).collect();
            return Err(unsupported(format!(
                "the graph has {} inputs besides its weights ({names:?}); only one-input graphs are supported",
                names.len()
            )));
        };
        let input = GraphInput {
            name: input.name.clone().unwrap_or_default(),
            dims: input
                .r#type
                .as_ref()
                .and_then(|t| t.tensor_type.as_ref())
                .and_then(|t| t.shape.as_ref())
                .map(|s| {
                    s.dim
                        .iter()
                        .map(|d| d.dim_value.filter(|&v| v > 0).and_then(|v| usize::try_from(v).ok()))
                        .collect()
                })
                .unwrap_or_default(),
        };
        if let Some(elem) = graph
            .input
            .iter()
            .find(|i| i.name.as_deref() == Some(&input.name))
            .and_then(|i| i.r#type.as_ref())
            .and_then(|t| t.tensor_type.as_ref())
            .and_then(|t| t.elem_type)
            && !matches!(elem, 0 | data_type::FLOAT | data_type::DOUBLE | data_type::FLOAT16)
        {
            return Err(unsupported(format!(
                "the graph input {:?} has element type {elem}; a float input is needed",
                input.name
            )));
        }
        let outputs: Vec<String> = graph
            .output
            .iter()
            .map(|o| o.name.clone().unwrap_or_default())
            .collect();
        if outputs.is_empty() {
            return Err(unsupported("the graph has no output".into()));
        }

        // Read the nodes in order, checking that every input exists before
        // it is read, and compute what depends on constants only.
        let mut known: HashSet<String> = constants.keys().cloned().collect();
        known.insert(input.name.clone());
        let mut nodes = Vec::new();
        for proto in &graph.node {
            let op_type = proto.op_type.clone().unwrap_or_default();
            let name = match proto.name.as_deref() {
                Some(n) if !n.is_empty() => n.to_string(),
                _ => proto.output.first().cloned().unwrap_or_default(),
            };
            let id = NodeId {
                name: &name,
                op_type: &op_type,
            };
            for i in proto.input.iter().filter(|i| !i.is_empty()) {
                if !known.contains(i) {
                    return Err(OnnxError::MissingInput {
                        node: name.clone(),
                        op_type: op_type.clone(),
                        input: i.clone(),
                    });
                }
            }
            known.extend(proto.output.iter().filter(|o| !o.is_empty()).cloned());
            if op_type == "Constant" && proto.domain.as_deref().is_none_or(|d| d.is_empty() || d == "ai.onnx") {
                let value = constant_value(&id, proto)?;
                if let Some(out) = proto.output.first() {
                    constants.insert(out.clone(), value);
                }
                continue;
            }
            let op = ops::parse_op(&id, proto, opset, &tensor_value)?;
            let node = Node {
                name,
                op_type,
                inputs: proto.input.clone(),
                outputs: proto.output.clone(),
                op,
            };
            let all_constant = node.inputs.iter().all(|i| i.is_empty() || constants.contains_key(i));
            if node.op.foldable() && all_constant && !node.inputs.is_empty() {
                let args: Vec<Option<&Value>> = node
                    .inputs
                    .iter()
                    .map(|i| if i.is_empty() { None } else { constants.get(i) })
                    .collect();
                let values = ops::eval(&node.op, &args, &|t: &Tensor| t.relu()).map_err(|e| node_error(&node, e))?;
                for (name, value) in node.outputs.iter().zip(values) {
                    if !name.is_empty() {
                        constants.insert(name.clone(), value);
                    }
                }
                continue;
            }
            nodes.push(node);
        }
        for o in &outputs {
            if !known.contains(o) {
                return Err(unsupported(format!("the graph output {o:?} is produced by no node")));
            }
        }

        // Free each computed value after the last node that reads it.
        let mut last: HashMap<&str, usize> = HashMap::new();
        for (i, n) in nodes.iter().enumerate() {
            for input in &n.inputs {
                last.insert(input, i);
            }
        }
        let mut frees = vec![Vec::new(); nodes.len()];
        for (name, i) in last {
            if !constants.contains_key(name) && !outputs.iter().any(|o| o == name) {
                frees[i].push(name.to_string());
            }
        }
        Ok(OnnxGraph {
            nodes,
            constants,
            input,
            outputs,
            opset,
            frees,
        })
    }

    /// The graph's input (its weights aside).
    pub fn input(&self) -> &GraphInput {
        &self.input
    }

    /// The names of the graph's outputs; the first is the model's output.
    pub fn outputs(&self) -> &[String] {
        &self.outputs
    }

    /// The default-domain opset the model was written for.
    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// How many `Relu` nodes the graph has (what guided backprop changes).
    pub fn relu_count(&self) -> usize {
        self.nodes.iter().filter(|n| matches!(n.op, Op::Relu)).count()
    }

    /// Runs the graph on `input` (in the graph's own layout, f32) and
    /// returns its first output, with ordinary ReLUs.
    ///
    /// A tensor whose rank or fixed sizes differ from the graph's input is
    /// [`OnnxError::InputShape`].
    pub fn forward(&self, input: &Tensor) -> Result<Tensor, OnnxError> {
        self.run(
            input,
            &|t: &Tensor| crate::adapters::candle_ops::relu(t),
            &mut |_, _, t| Ok(t),
        )
    }

    /// [`forward`](Self::forward) inside a
    /// [`CandleModel`](crate::adapters::candle::CandleModel)'s forward
    /// closure: every `Relu` node goes through [`ForwardContext::relu`] and
    /// the tensor named `layer` (a node's or a tensor's name) through
    /// [`ForwardContext::layer`].
    pub fn forward_with(&self, input: &Tensor, ctx: &ForwardContext, layer: Option<&str>) -> Result<Tensor, OnnxError> {
        let layer = layer.map(|l| self.resolve_layer(l)).transpose()?;
        self.run(input, &|t: &Tensor| ctx.relu(t), &mut |_, name, t| {
            if layer.as_deref() == Some(name) {
                ctx.layer(&t)
            } else {
                Ok(t)
            }
        })
    }

    /// The 4-D float tensors the graph computes on an input of
    /// `input_shape` (in the graph's layout, e.g. `[1, 3, 224, 224]`), in
    /// the order they are computed: the candidate Grad-CAM layers. Runs the
    /// graph once on zeros.
    pub fn layers(&self, input_shape: &[usize]) -> Result<Vec<LayerInfo>, OnnxError> {
        let zeros = Tensor::zeros(input_shape, candle_core::DType::F32, &Device::Cpu)
            .map_err(|e| OnnxError::Setting(format!("cannot make an input of shape {input_shape:?}: {e}")))?;
        let mut found = Vec::new();
        self.run(&zeros, &|t: &Tensor| t.relu(), &mut |node, name, t| {
            if t.rank() == 4 {
                found.push(LayerInfo {
                    tensor: name.to_string(),
                    node: node.name.clone(),
                    op_type: node.op_type.clone(),
                    shape: t.dims().to_vec(),
                });
            }
            Ok(t)
        })?;
        Ok(found)
    }

    /// The tensor a layer name stands for: a tensor a node computes, or a
    /// node's name (its first output).
    pub(crate) fn resolve_layer(&self, name: &str) -> Result<String, OnnxError> {
        if self.nodes.iter().any(|n| n.outputs.iter().any(|o| o == name)) {
            return Ok(name.to_string());
        }
        if let Some(n) = self.nodes.iter().find(|n| n.name == name)
            && let Some(o) = n.outputs.first()
        {
            return Ok(o.clone());
        }
        Err(OnnxError::UnknownLayer {
            name: name.to_string(),
            candidates: self.layer_candidates(),
        })
    }

    /// Names to suggest for a layer: the 4-D tensors when the input's shape
    /// is known (a free batch taken as 1), else every computed tensor.
    pub(crate) fn layer_candidates(&self) -> Vec<String> {
        let mut shape: Vec<usize> = Vec::new();
        for (i, d) in self.input.dims.iter().enumerate() {
            match d {
                Some(v) => shape.push(*v),
                None if i == 0 => shape.push(1),
                None => {
                    shape.clear();
                    break;
                }
            }
        }
        if !shape.is_empty()
            && let Ok(layers) = self.layers(&shape)
        {
            return layers
                .into_iter()
                .map(|l| format!("{} {:?}", l.tensor, l.shape))
                .collect();
        }
        self.nodes
            .iter()
            .flat_map(|n| n.outputs.iter().filter(|o| !o.is_empty()).cloned())
            .collect()
    }

    /// Checks `dims` against the graph's declared input shape.
    pub(crate) fn check_input(&self, dims: &[usize]) -> Result<(), OnnxError> {
        let declared = &self.input.dims;
        let fits = declared.is_empty()
            || (declared.len() == dims.len() && declared.iter().zip(dims).all(|(d, &a)| d.is_none_or(|v| v == a)));
        if fits {
            Ok(())
        } else {
            Err(OnnxError::InputShape {
                input: self.input.name.clone(),
                expected: shape_string(declared),
                actual: dims.to_vec(),
            })
        }
    }

    /// Runs the nodes. `visit` sees every float tensor a node computes (the
    /// node, the tensor's name, the tensor) and returns the tensor to go on
    /// with.
    fn run(
        &self,
        input: &Tensor,
        relu: ops::ReluFn<'_>,
        visit: &mut dyn FnMut(&Node, &str, Tensor) -> candle_core::Result<Tensor>,
    ) -> Result<Tensor, OnnxError> {
        self.check_input(input.dims())?;
        let mut values: HashMap<&str, Value> = HashMap::new();
        values.insert(&self.input.name, Value::F(input.clone()));
        for (node, frees) in self.nodes.iter().zip(&self.frees) {
            let args: Vec<Option<&Value>> = node
                .inputs
                .iter()
                .map(|i| {
                    if i.is_empty() {
                        None
                    } else {
                        values.get(i.as_str()).or_else(|| self.constants.get(i))
                    }
                })
                .collect();
            if let Some(missing) = node
                .inputs
                .iter()
                .zip(&args)
                .find(|(i, a)| !i.is_empty() && a.is_none())
            {
                return Err(OnnxError::MissingInput {
                    node: node.name.clone(),
                    op_type: node.op_type.clone(),
                    input: missing.0.clone(),
                });
            }
            let outs = ops::eval(&node.op, &args, relu).map_err(|e| node_error(node, e))?;
            for (name, value) in node.outputs.iter().zip(outs) {
                if name.is_empty() {
                    continue;
                }
                let value = match value {
                    Value::F(t) => Value::F(visit(node, name, t).map_err(|e| node_error(node, OpError::Candle(e)))?),
                    other => other,
                };
                values.insert(name, value);
            }
            for f in frees {
                values.remove(f.as_str());
            }
        }
        let out = &self.outputs[0];
        match values.get(out.as_str()).or_else(|| self.constants.get(out)) {
            Some(v) => ops::to_float(v).map_err(|e| OnnxError::Node {
                node: out.clone(),
                op_type: "output".into(),
                reason: format!("{e:?}"),
            }),
            None => Err(OnnxError::UnsupportedModel {
                reason: format!("the graph output {out:?} was not computed"),
            }),
        }
    }
}

fn node_error(node: &Node, e: OpError) -> OnnxError {
    match e {
        OpError::Candle(source) => OnnxError::Candle {
            node: node.name.clone(),
            op_type: node.op_type.clone(),
            source: Box::new(source),
        },
        OpError::Invalid(reason) => OnnxError::Node {
            node: node.name.clone(),
            op_type: node.op_type.clone(),
            reason,
        },
    }
}

/// A `Constant` node's value, from whichever of its attributes is set.
fn constant_value(id: &NodeId<'_>, proto: &super::proto::NodeProto) -> Result<Value, OnnxError> {
    let attr_error = |attribute: &str, reason: &str| OnnxError::UnsupportedAttribute {
        node: id.name.to_string(),
        op_type: id.op_type.to_string(),
        attribute: attribute.to_string(),
        reason: reason.to_string(),
    };
    let Some(a) = proto.attribute.first() else {
        return Err(attr_error("value", "a Constant needs a value"));
    };
    let name = a.name.as_deref().unwrap_or("");
    let tensor_err = |e: candle_core::Error| attr_error(name, &e.to_string());
    let ints = |v: Vec<i64>, shape: &[usize]| {
        ArrayD::from_shape_vec(IxDyn(shape), v).map_err(|e| attr_error(name, &e.to_string()))
    };
    match name {
        "value" => match &a.t {
            Some(t) => tensor_value(t, id.name),
            None => Err(attr_error(name, "no tensor")),
        },
        "value_float" => Ok(Value::F(
            Tensor::new(a.f.unwrap_or(0.0), &Device::Cpu).map_err(tensor_err)?,
        )),
        "value_floats" => Ok(Value::F(
            Tensor::new(a.floats.as_slice(), &Device::Cpu).map_err(tensor_err)?,
        )),
        "value_int" => Ok(Value::I(ints(vec![a.i.unwrap_or(0)], &[])?)),
        "value_ints" => Ok(Value::I(ints(a.ints.clone(), &[a.ints.len()])?)),
        other => Err(attr_error(other, "unsupported Constant attribute")),
    }
}

/// A constant tensor's values: floats as an f32 tensor, integers and
/// booleans as an i64 array.
pub(crate) fn tensor_value(t: &TensorProto, context: &str) -> Result<Value, OnnxError> {
    let name = t
        .name
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| context.to_string());
    let bad = |reason: String| OnnxError::BadTensor {
        name: name.clone(),
        reason,
    };
    if t.data_location == Some(1) || !t.external_data.is_empty() {
        return Err(bad("its values are in an external file, which is not supported".into()));
    }
    let dims = t
        .dims
        .iter()
        .map(|&d| usize::try_from(d).map_err(|_| bad(format!("negative size in dims {:?}", t.dims))))
        .collect::<Result<Vec<usize>, _>>()?;
    let count = dims
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| bad(format!("dims {:?} overflow", t.dims)))?;
    let dtype = t.data_type.unwrap_or(0);
    let raw = t.raw_data.as_deref();
    let width = match dtype {
        data_type::FLOAT | data_type::INT32 | data_type::UINT32 => 4,
        data_type::DOUBLE | data_type::INT64 | data_type::UINT64 => 8,
        data_type::FLOAT16 | data_type::INT16 | data_type::UINT16 => 2,
        data_type::INT8 | data_type::UINT8 | data_type::BOOL => 1,
        other => return Err(bad(format!("data type {other} is not supported"))),
    };
    let check = |len: usize| {
        if len == count {
            Ok(())
        } else {
            Err(bad(format!("{len} values for dims {:?} ({count} values)", t.dims)))
        }
    };
    let raw_chunks = |raw: &'_ [u8]| -> Result<Vec<[u8; 8]>, OnnxError> {
        if Some(raw.len()) != count.checked_mul(width) {
            return Err(bad(format!(
                "{} bytes of raw data for dims {:?} of {width}-byte values",
                raw.len(),
                t.dims
            )));
        }
        Ok(raw
            .chunks_exact(width)
            .map(|c| {
                let mut b = [0u8; 8];
                b[..width].copy_from_slice(c);
                b
            })
            .collect())
    };
    let float = |values: Vec<f32>| -> Result<Value, OnnxError> {
        Tensor::from_vec(values, dims.as_slice(), &Device::Cpu)
            .map(Value::F)
            .map_err(|e| bad(e.to_string()))
    };
    let int = |values: Vec<i64>| -> Result<Value, OnnxError> {
        ArrayD::from_shape_vec(IxDyn(&dims), values)
            .map(Value::I)
            .map_err(|e| bad(e.to_string()))
    };
    match (dtype, raw) {
        (data_type::FLOAT, Some(raw)) => float(
            raw_chunks(raw)?
                .iter()
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
        ),
        (data_type::FLOAT, None) => {
            check(t.float_data.len())?;
            float(t.float_data.clone())
        }
        (data_type::DOUBLE, Some(raw)) => {
            float(raw_chunks(raw)?.iter().map(|b| f64::from_le_bytes(*b) as f32).collect())
        }
        (data_type::DOUBLE, None) => {
            check(t.double_data.len())?;
            float(t.double_data.iter().map(|&v| v as f32).collect())
        }
        (data_type::FLOAT16, Some(raw)) => float(
            raw_chunks(raw)?
                .iter()
                .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
                .collect(),
        ),
        (data_type::FLOAT16, None) => {
            check(t.int32_data.len())?;
            float(t.int32_data.iter().map(|&v| f16_to_f32(v as u16)).collect())
        }
        (_, Some(raw)) => {
            let chunks = raw_chunks(raw)?;
            int(chunks
                .iter()
                .map(|b| match dtype {
                    data_type::INT64 => i64::from_le_bytes(*b),
                    data_type::UINT64 => u64::from_le_bytes(*b) as i64,
                    data_type::INT32 => i64::from(i32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    data_type::UINT32 => i64::from(u32::from_le_bytes([b[0], b[1], b[2], b[3]])),
                    data_type::INT16 => i64::from(i16::from_le_bytes([b[0], b[1]])),
                    data_type::UINT16 => i64::from(u16::from_le_bytes([b[0], b[1]])),
                    data_type::INT8 => i64::from(b[0] as i8),
                    data_type::BOOL => i64::from(b[0] != 0),
                    _ => i64::from(b[0]),
                })
                .collect())
        }
        (data_type::INT64, None) => {
            check(t.int64_data.len())?;
            int(t.int64_data.clone())
        }
        (data_type::UINT64 | data_type::UINT32, None) => {
            check(t.uint64_data.len())?;
            int(t.uint64_data.iter().map(|&v| v as i64).collect())
        }
        (_, None) => {
            check(t.int32_data.len())?;
            int(t.int32_data.iter().map(|&v| i64::from(v)).collect())
        }
    }
}

/// An IEEE half-precision value (its bits) as f32.
fn f16_to_f32(bits: u16) -> f32 {
    let sign = if bits & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f32::from(bits & 0x3ff);
    match exponent {
        0 => sign * mantissa * 2f32.powi(-24),
        31 if mantissa == 0.0 => sign * f32::INFINITY,
        31 => f32::NAN,
        e => sign * (1.0 + mantissa / 1024.0) * 2f32.powi(e - 15),
    }
}
