//! The operators: their attributes, read once at load, and their evaluation
//! on candle tensors (floats, differentiable) or ndarray arrays (integers:
//! shapes and indices).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use ndarray::{ArrayD, Axis, IxDyn};

use super::OnnxError;
use super::proto::{AttributeProto, AttributeType, NodeProto, TensorProto, data_type};

/// The largest tensor an operator may create from sizes it reads from the
/// graph (ConstantOfShape, broadcasting, padding): a garbled file asking for
/// more is an error rather than an allocation failure.
const MAX_ELEMENTS: usize = 1 << 28;

/// A value flowing through the graph: floats as candle tensors (the
/// differentiated part) or integers as arrays (shapes, indices, booleans).
#[derive(Clone, Debug)]
pub(crate) enum Value {
    F(Tensor),
    I(ArrayD<i64>),
}

impl Value {
    pub(crate) fn dims(&self) -> Vec<usize> {
        match self {
            Value::F(t) => t.dims().to_vec(),
            Value::I(a) => a.shape().to_vec(),
        }
    }
}

/// An operator's failure, before the graph adds the node's name.
#[derive(Debug)]
pub(crate) enum OpError {
    Candle(candle_core::Error),
    Invalid(String),
}

impl From<candle_core::Error> for OpError {
    fn from(e: candle_core::Error) -> Self {
        OpError::Candle(e)
    }
}

pub(crate) type R<T> = Result<T, OpError>;

fn invalid<T>(msg: impl Into<String>) -> R<T> {
    Err(OpError::Invalid(msg.into()))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AutoPad {
    NotSet,
    SameUpper,
    SameLower,
    Valid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PadMode {
    Constant,
    Reflect,
    Edge,
}

/// A 2-D window: kernel, strides, dilations, pads `[top, left, bottom, right]`.
#[derive(Clone, Debug)]
pub(crate) struct Window {
    kernel: Option<[usize; 2]>,
    strides: [usize; 2],
    dilations: [usize; 2],
    pads: [usize; 4],
    auto_pad: AutoPad,
    ceil_mode: bool,
}

/// An operator with its attributes.
#[derive(Clone, Debug)]
pub(crate) enum Op {
    Conv {
        window: Window,
        group: usize,
    },
    BatchNorm {
        epsilon: f64,
    },
    Relu,
    LeakyRelu {
        alpha: f64,
    },
    Sigmoid,
    Tanh,
    Erf,
    Gelu {
        tanh: bool,
    },
    Clip {
        min: Option<f64>,
        max: Option<f64>,
    },
    HardSigmoid {
        alpha: f64,
        beta: f64,
    },
    HardSwish,
    MaxPool {
        window: Window,
    },
    AveragePool {
        window: Window,
        count_include_pad: bool,
    },
    GlobalAveragePool,
    Gemm {
        alpha: f64,
        beta: f64,
        trans_a: bool,
        trans_b: bool,
    },
    MatMul,
    Binary(BinOp),
    Concat {
        axis: i64,
    },
    Flatten {
        axis: i64,
    },
    Reshape {
        allowzero: bool,
    },
    Transpose {
        perm: Option<Vec<i64>>,
    },
    Squeeze {
        axes: Option<Vec<i64>>,
    },
    Unsqueeze {
        axes: Option<Vec<i64>>,
    },
    Shape {
        start: i64,
        end: Option<i64>,
    },
    Gather {
        axis: i64,
    },
    Slice,
    Cast {
        to: i32,
    },
    ConstantOfShape {
        value: Value,
    },
    Softmax {
        axis: i64,
        legacy: bool,
    },
    ReduceMean {
        axes: Option<Vec<i64>>,
        keepdims: bool,
        noop_with_empty_axes: bool,
    },
    Pad {
        mode: PadMode,
    },
    Identity,
}

impl Op {
    /// Whether the operator may be computed once at load when all its
    /// inputs are constants (the shape arithmetic exporters write).
    pub(crate) fn foldable(&self) -> bool {
        matches!(
            self,
            Op::Binary(_)
                | Op::Concat { .. }
                | Op::Flatten { .. }
                | Op::Reshape { .. }
                | Op::Transpose { .. }
                | Op::Squeeze { .. }
                | Op::Unsqueeze { .. }
                | Op::Gather { .. }
                | Op::Slice
                | Op::Cast { .. }
                | Op::ConstantOfShape { .. }
                | Op::Identity
        )
    }
}

/// A node's identity for error messages.
pub(crate) struct NodeId<'a> {
    pub(crate) name: &'a str,
    pub(crate) op_type: &'a str,
}

impl NodeId<'_> {
    fn attr_error(&self, attribute: &str, reason: impl Into<String>) -> OnnxError {
        OnnxError::UnsupportedAttribute {
            node: self.name.to_string(),
            op_type: self.op_type.to_string(),
            attribute: attribute.to_string(),
            reason: reason.into(),
        }
    }
}

/// A node's attributes by name, read with their expected type.
struct Attrs<'a> {
    id: &'a NodeId<'a>,
    map: HashMap<&'a str, &'a AttributeProto>,
}

/// The attribute's declared type, or the one its filled field implies for
/// files that leave it out.
fn attr_type(a: &AttributeProto) -> Option<AttributeType> {
    if let Some(t) = a.r#type.and_then(|t| AttributeType::try_from(t).ok())
        && t != AttributeType::Undefined
    {
        return Some(t);
    }
    if a.f.is_some() {
        Some(AttributeType::Float)
    } else if a.i.is_some() {
        Some(AttributeType::Int)
    } else if a.s.is_some() {
        Some(AttributeType::String)
    } else if a.t.is_some() {
        Some(AttributeType::Tensor)
    } else if !a.floats.is_empty() {
        Some(AttributeType::Floats)
    } else if !a.ints.is_empty() {
        Some(AttributeType::Ints)
    } else {
        None
    }
}

impl<'a> Attrs<'a> {
    fn new(id: &'a NodeId<'a>, node: &'a NodeProto) -> Result<Self, OnnxError> {
        let mut map = HashMap::new();
        for a in &node.attribute {
            let name = a.name.as_deref().unwrap_or("");
            if a.ref_attr_name.is_some() {
                return Err(id.attr_error(name, "references a function attribute (functions are not supported)"));
            }
            map.insert(name, a);
        }
        Ok(Attrs { id, map })
    }

    fn get(&self, name: &str, want: AttributeType) -> Result<Option<&'a AttributeProto>, OnnxError> {
        let Some(a) = self.map.get(name).copied() else {
            return Ok(None);
        };
        let found = attr_type(a);
        // An empty list has no filled field to show its type.
        let empty_list = found.is_none() && matches!(want, AttributeType::Ints | AttributeType::Floats);
        if found != Some(want) && !empty_list {
            return Err(self
                .id
                .attr_error(name, format!("expected type {want:?}, found {found:?}")));
        }
        Ok(Some(a))
    }

    fn int(&self, name: &str, default: i64) -> Result<i64, OnnxError> {
        Ok(self.get(name, AttributeType::Int)?.and_then(|a| a.i).unwrap_or(default))
    }

    fn float(&self, name: &str, default: f64) -> Result<f64, OnnxError> {
        Ok(self
            .get(name, AttributeType::Float)?
            .and_then(|a| a.f)
            .map_or(default, f64::from))
    }

    fn ints(&self, name: &str) -> Result<Option<Vec<i64>>, OnnxError> {
        Ok(self.get(name, AttributeType::Ints)?.map(|a| a.ints.clone()))
    }

    fn string(&self, name: &str) -> Result<Option<String>, OnnxError> {
        Ok(self
            .get(name, AttributeType::String)?
            .map(|a| String::from_utf8_lossy(a.s.as_deref().unwrap_or(&[])).into_owned()))
    }

    fn tensor(&self, name: &str) -> Result<Option<&'a TensorProto>, OnnxError> {
        Ok(self.get(name, AttributeType::Tensor)?.and_then(|a| a.t.as_ref()))
    }

    fn usize_pair(&self, name: &str, default: usize) -> Result<[usize; 2], OnnxError> {
        match self.ints(name)? {
            None => Ok([default, default]),
            Some(v) => {
                let ok = v.len() == 2 && v.iter().all(|&x| x >= 1 && x <= i64::from(u32::MAX));
                if !ok {
                    return Err(self
                        .id
                        .attr_error(name, format!("expected two positive values (a 2-D window), got {v:?}")));
                }
                Ok([v[0] as usize, v[1] as usize])
            }
        }
    }

    fn window(&self, pool: bool) -> Result<Window, OnnxError> {
        let kernel = match self.ints("kernel_shape")? {
            None if pool => return Err(self.id.attr_error("kernel_shape", "missing")),
            None => None,
            Some(_) => Some(self.usize_pair("kernel_shape", 1)?),
        };
        let pads = match self.ints("pads")? {
            None => [0; 4],
            Some(v) => {
                let ok = v.len() == 4 && v.iter().all(|&x| (0..=i64::from(u32::MAX)).contains(&x));
                if !ok {
                    return Err(self
                        .id
                        .attr_error("pads", format!("expected four non-negative values, got {v:?}")));
                }
                [v[0] as usize, v[1] as usize, v[2] as usize, v[3] as usize]
            }
        };
        let auto_pad = match self.string("auto_pad")?.as_deref() {
            None | Some("NOTSET") | Some("") => AutoPad::NotSet,
            Some("SAME_UPPER") => AutoPad::SameUpper,
            Some("SAME_LOWER") => AutoPad::SameLower,
            Some("VALID") => AutoPad::Valid,
            Some(other) => return Err(self.id.attr_error("auto_pad", format!("unknown value {other:?}"))),
        };
        let ceil_mode = match self.int("ceil_mode", 0)? {
            0 => false,
            1 => true,
            v => return Err(self.id.attr_error("ceil_mode", format!("expected 0 or 1, got {v}"))),
        };
        Ok(Window {
            kernel,
            strides: self.usize_pair("strides", 1)?,
            dilations: self.usize_pair("dilations", 1)?,
            pads,
            auto_pad,
            ceil_mode,
        })
    }

    fn flag(&self, name: &str, default: i64) -> Result<bool, OnnxError> {
        match self.int(name, default)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(self.id.attr_error(name, format!("expected 0 or 1, got {v}"))),
        }
    }

    fn unsupported(&self, name: &str, reason: &str) -> OnnxError {
        self.id.attr_error(name, reason)
    }
}

/// Reads a node's operator and attributes. `opset` is the model's default
/// opset (Softmax changed meaning at 13; axes moved from attributes to
/// inputs over the versions, and both forms are read).
pub(crate) fn parse_op(
    id: &NodeId<'_>,
    node: &NodeProto,
    opset: i64,
    tensor: &dyn Fn(&TensorProto, &str) -> Result<Value, OnnxError>,
) -> Result<Op, OnnxError> {
    let a = Attrs::new(id, node)?;
    let domain = node.domain.as_deref().unwrap_or("");
    let unsupported = || OnnxError::UnsupportedOperator {
        node: id.name.to_string(),
        op_type: id.op_type.to_string(),
        domain: domain.to_string(),
    };
    if !(domain.is_empty() || domain == "ai.onnx") {
        return Err(unsupported());
    }
    let op = match id.op_type {
        "Conv" => {
            let window = a.window(false)?;
            if window.ceil_mode {
                return Err(a.unsupported("ceil_mode", "Conv has no ceil_mode"));
            }
            if window.dilations[0] != window.dilations[1] {
                return Err(a.unsupported("dilations", "different dilations along height and width"));
            }
            let group = a.int("group", 1)?;
            if !(1..=i64::from(u32::MAX)).contains(&group) {
                return Err(a.unsupported("group", "must be positive"));
            }
            Op::Conv {
                window,
                group: group as usize,
            }
        }
        "BatchNormalization" => {
            if a.int("training_mode", 0)? != 0 {
                return Err(a.unsupported("training_mode", "only inference (training_mode 0) is supported"));
            }
            Op::BatchNorm {
                epsilon: a.float("epsilon", 1e-5)?,
            }
        }
        "Relu" => Op::Relu,
        "LeakyRelu" => Op::LeakyRelu {
            alpha: a.float("alpha", 0.01)?,
        },
        "Sigmoid" => Op::Sigmoid,
        "Tanh" => Op::Tanh,
        "Erf" => Op::Erf,
        "Gelu" => match a.string("approximate")?.as_deref() {
            None | Some("none") => Op::Gelu { tanh: false },
            Some("tanh") => Op::Gelu { tanh: true },
            Some(other) => return Err(a.unsupported("approximate", &format!("unknown value {other:?}"))),
        },
        "Clip" => {
            // Before opset 11 the bounds were attributes.
            let min = a.get("min", AttributeType::Float)?.and_then(|x| x.f).map(f64::from);
            let max = a.get("max", AttributeType::Float)?.and_then(|x| x.f).map(f64::from);
            Op::Clip { min, max }
        }
        "HardSigmoid" => Op::HardSigmoid {
            alpha: a.float("alpha", 0.2)?,
            beta: a.float("beta", 0.5)?,
        },
        "HardSwish" => Op::HardSwish,
        "MaxPool" => {
            if a.int("storage_order", 0)? != 0 {
                return Err(a.unsupported("storage_order", "only row-major (0) is supported"));
            }
            if node.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(a.unsupported("Indices", "the Indices output is not supported"));
            }
            Op::MaxPool {
                window: a.window(true)?,
            }
        }
        "AveragePool" => {
            let window = a.window(true)?;
            if window.ceil_mode {
                return Err(a.unsupported("ceil_mode", "AveragePool with ceil_mode 1 is not supported"));
            }
            if window.dilations != [1, 1] {
                return Err(a.unsupported("dilations", "AveragePool with dilations is not supported"));
            }
            Op::AveragePool {
                window,
                count_include_pad: a.flag("count_include_pad", 0)?,
            }
        }
        "GlobalAveragePool" => Op::GlobalAveragePool,
        "Gemm" => Op::Gemm {
            alpha: a.float("alpha", 1.0)?,
            beta: a.float("beta", 1.0)?,
            trans_a: a.flag("transA", 0)?,
            trans_b: a.flag("transB", 0)?,
        },
        "MatMul" => Op::MatMul,
        "Add" => Op::Binary(BinOp::Add),
        "Sub" => Op::Binary(BinOp::Sub),
        "Mul" => Op::Binary(BinOp::Mul),
        "Div" => Op::Binary(BinOp::Div),
        "Concat" => Op::Concat {
            axis: match a.get("axis", AttributeType::Int)?.and_then(|x| x.i) {
                Some(axis) => axis,
                None => return Err(a.unsupported("axis", "missing")),
            },
        },
        "Flatten" => Op::Flatten {
            axis: a.int("axis", 1)?,
        },
        "Reshape" => Op::Reshape {
            allowzero: a.flag("allowzero", 0)?,
        },
        "Transpose" => Op::Transpose { perm: a.ints("perm")? },
        "Squeeze" => Op::Squeeze { axes: a.ints("axes")? },
        "Unsqueeze" => Op::Unsqueeze { axes: a.ints("axes")? },
        "Shape" => Op::Shape {
            start: a.int("start", 0)?,
            end: a.get("end", AttributeType::Int)?.and_then(|x| x.i),
        },
        "Gather" => Op::Gather {
            axis: a.int("axis", 0)?,
        },
        "Slice" => Op::Slice,
        "Cast" => Op::Cast {
            to: match a.get("to", AttributeType::Int)?.and_then(|x| x.i) {
                Some(to) => match i32::try_from(to) {
                    Ok(
                        t @ (data_type::FLOAT
                        | data_type::DOUBLE
                        | data_type::FLOAT16
                        | data_type::INT64
                        | data_type::INT32
                        | data_type::INT16
                        | data_type::INT8
                        | data_type::UINT8
                        | data_type::UINT16
                        | data_type::UINT32
                        | data_type::UINT64
                        | data_type::BOOL),
                    ) => t,
                    _ => return Err(a.unsupported("to", &format!("unsupported data type {to}"))),
                },
                None => return Err(a.unsupported("to", "missing")),
            },
        },
        "ConstantOfShape" => {
            let value = match a.tensor("value")? {
                None => Value::F(
                    Tensor::zeros((), DType::F32, &Device::Cpu).map_err(|e| a.unsupported("value", &e.to_string()))?,
                ),
                Some(t) => {
                    let v = tensor(t, id.name)?;
                    if v.dims().iter().product::<usize>() != 1 {
                        return Err(a.unsupported("value", "must hold exactly one value"));
                    }
                    v
                }
            };
            Op::ConstantOfShape { value }
        }
        "Softmax" => {
            let legacy = opset < 13;
            Op::Softmax {
                axis: a.int("axis", if legacy { 1 } else { -1 })?,
                legacy,
            }
        }
        "ReduceMean" => Op::ReduceMean {
            axes: a.ints("axes")?,
            keepdims: a.flag("keepdims", 1)?,
            noop_with_empty_axes: a.flag("noop_with_empty_axes", 0)?,
        },
        "Pad" => Op::Pad {
            mode: match a.string("mode")?.as_deref() {
                None | Some("constant") => PadMode::Constant,
                Some("reflect") => PadMode::Reflect,
                Some("edge") => PadMode::Edge,
                Some(other) => return Err(a.unsupported("mode", &format!("unsupported mode {other:?}"))),
            },
        },
        "Dropout" => {
            if node.output.iter().skip(1).any(|o| !o.is_empty()) {
                return Err(a.unsupported("mask", "the mask output is not supported"));
            }
            Op::Identity
        }
        "Identity" => Op::Identity,
        _ => return Err(unsupported()),
    };
    Ok(op)
}

/// What the graph lets a node do besides computing: the ReLU to use.
pub(crate) type ReluFn<'a> = &'a dyn Fn(&Tensor) -> candle_core::Result<Tensor>;

/// Evaluates one operator; `inputs` holds `None` for an omitted optional input.
pub(crate) fn eval(op: &Op, inputs: &[Option<&Value>], relu: ReluFn<'_>) -> R<Vec<Value>> {
    let input = |i: usize| -> R<&Value> {
        match inputs.get(i).copied().flatten() {
            Some(v) => Ok(v),
            None => invalid(format!("input {i} is missing")),
        }
    };
    let float = |i: usize| -> R<Tensor> { to_float(input(i)?) };
    let opt_float = |i: usize| -> R<Option<Tensor>> { inputs.get(i).copied().flatten().map(to_float).transpose() };
    let ints = |i: usize| -> R<Vec<i64>> { to_ints(input(i)?) };
    let opt_ints = |i: usize| -> R<Option<Vec<i64>>> { inputs.get(i).copied().flatten().map(to_ints).transpose() };
    let one = |t: Tensor| Ok(vec![Value::F(t)]);
    match op {
        Op::Conv { window, group } => one(conv(&float(0)?, &float(1)?, opt_float(2)?.as_ref(), window, *group)?),
        Op::BatchNorm { epsilon } => {
            let x = float(0)?;
            let shape = channel_shape(&x, "BatchNormalization")?;
            let [scale, bias, mean, var] =
                [1, 2, 3, 4].map(|i| float(i).and_then(|t| Ok(t.reshape(shape.as_slice())?)));
            let factor = scale?.broadcast_div(&(var? + *epsilon)?.sqrt()?)?;
            let shift = bias?.broadcast_sub(&mean?.broadcast_mul(&factor)?)?;
            one(x.broadcast_mul(&factor)?.broadcast_add(&shift)?)
        }
        Op::Relu => one(relu(&float(0)?)?),
        Op::LeakyRelu { alpha } => {
            let x = float(0)?;
            // The slope is 1 where x > 0 and alpha elsewhere (PyTorch's
            // gradient at 0 is alpha too).
            let positive = x.gt(0f64)?.to_dtype(x.dtype())?;
            let slope = ((&positive * (1.0 - alpha))? + *alpha)?;
            one(x.mul(&slope)?)
        }
        Op::Sigmoid => one(candle_nn::ops::sigmoid(&float(0)?)?),
        Op::Tanh => one(float(0)?.tanh()?),
        Op::Erf => one(float(0)?.erf()?),
        Op::Gelu { tanh } => {
            let x = float(0)?;
            one(if *tanh { x.gelu()? } else { x.gelu_erf()? })
        }
        Op::Clip { min, max } => {
            let bound = |i: usize, attr: Option<f64>| -> R<Option<f64>> {
                match opt_float(i)? {
                    Some(t) => Ok(Some(scalar(&t, "Clip bound")?)),
                    None => Ok(attr),
                }
            };
            one(clip(&float(0)?, bound(1, *min)?, bound(2, *max)?)?)
        }
        Op::HardSigmoid { alpha, beta } => one(clip(&float(0)?.affine(*alpha, *beta)?, Some(0.0), Some(1.0))?),
        Op::HardSwish => {
            let x = float(0)?;
            let gate = clip(&x.affine(1.0 / 6.0, 0.5)?, Some(0.0), Some(1.0))?;
            one(x.mul(&gate)?)
        }
        Op::MaxPool { window } => one(max_pool(&float(0)?, window)?),
        Op::AveragePool {
            window,
            count_include_pad,
        } => one(average_pool(&float(0)?, window, *count_include_pad)?),
        Op::GlobalAveragePool => {
            let x = float(0)?;
            if x.rank() < 3 {
                return invalid(format!(
                    "GlobalAveragePool needs an input [N, C, ...], got {:?}",
                    x.dims()
                ));
            }
            let mut y = x;
            for d in 2..y.rank() {
                y = y.mean_keepdim(d)?;
            }
            one(y)
        }
        Op::Gemm {
            alpha,
            beta,
            trans_a,
            trans_b,
        } => {
            let (a, b) = (float(0)?, float(1)?);
            if a.rank() != 2 || b.rank() != 2 {
                return invalid(format!("Gemm needs 2-D inputs, got {:?} and {:?}", a.dims(), b.dims()));
            }
            let a = if *trans_a { a.t()?.contiguous()? } else { a };
            let b = if *trans_b { b.t()?.contiguous()? } else { b };
            if a.dim(1)? != b.dim(0)? {
                return invalid(format!("Gemm: {:?} times {:?} do not fit", a.dims(), b.dims()));
            }
            let mut y = a.matmul(&b)?;
            if *alpha != 1.0 {
                y = (y * *alpha)?;
            }
            if let Some(c) = opt_float(2)? {
                let c = if *beta != 1.0 { (c * *beta)? } else { c };
                y = broadcast_binary(&y, &c, BinOp::Add)?;
            }
            one(y)
        }
        Op::MatMul => one(matmul(&float(0)?, &float(1)?)?),
        Op::Binary(op) => match (input(0)?, input(1)?) {
            (Value::I(a), Value::I(b)) => Ok(vec![Value::I(int_binary(a, b, *op)?)]),
            (a, b) => one(broadcast_binary(&to_float(a)?, &to_float(b)?, *op)?),
        },
        Op::Concat { axis } => {
            let values: Vec<&Value> = inputs.iter().copied().flatten().collect();
            let Some(first) = values.first() else {
                return invalid("Concat has no inputs");
            };
            let rank = first.dims().len();
            let axis = norm_axis(*axis, rank)?;
            if values.iter().any(|v| v.dims().len() != rank) {
                return invalid("Concat inputs differ in rank");
            }
            if values.iter().all(|v| matches!(v, Value::I(_))) {
                let arrays: Vec<_> = values
                    .iter()
                    .filter_map(|v| match v {
                        Value::I(a) => Some(a.view()),
                        Value::F(_) => None,
                    })
                    .collect();
                let out = ndarray::concatenate(Axis(axis), &arrays).map_err(|e| OpError::Invalid(e.to_string()))?;
                Ok(vec![Value::I(out)])
            } else {
                let tensors = values.iter().map(|v| to_float(v)).collect::<R<Vec<_>>>()?;
                one(Tensor::cat(&tensors, axis)?)
            }
        }
        Op::Flatten { axis } => {
            let v = input(0)?;
            let dims = v.dims();
            let axis = norm_axis_inclusive(*axis, dims.len())?;
            let shape = vec![dims[..axis].iter().product(), dims[axis..].iter().product()];
            Ok(vec![reshape(v, &shape)?])
        }
        Op::Reshape { allowzero } => {
            let v = input(0)?;
            let shape = reshape_target(&v.dims(), &ints(1)?, *allowzero)?;
            Ok(vec![reshape(v, &shape)?])
        }
        Op::Transpose { perm } => {
            let v = input(0)?;
            let rank = v.dims().len();
            let perm: Vec<usize> = match perm {
                None => (0..rank).rev().collect(),
                Some(p) => {
                    let mut seen = vec![false; rank];
                    let mut out = Vec::with_capacity(rank);
                    for &axis in p {
                        let a = norm_axis(axis, rank)?;
                        if seen[a] {
                            return invalid(format!("perm {p:?} is not a permutation of the {rank} axes"));
                        }
                        seen[a] = true;
                        out.push(a);
                    }
                    if out.len() != rank {
                        return invalid(format!("perm {p:?} is not a permutation of the {rank} axes"));
                    }
                    out
                }
            };
            Ok(vec![match v {
                Value::F(t) => Value::F(t.permute(perm)?.contiguous()?),
                Value::I(a) => Value::I(a.clone().permuted_axes(IxDyn(&perm)).as_standard_layout().into_owned()),
            }])
        }
        Op::Squeeze { axes } => {
            let v = input(0)?;
            let dims = v.dims();
            let axes = match opt_ints(1)? {
                Some(a) => Some(a),
                None => axes.clone(),
            };
            let shape: Vec<usize> = match axes {
                None => dims.iter().copied().filter(|&d| d != 1).collect(),
                Some(axes) => {
                    let axes = axes.iter().map(|&a| norm_axis(a, dims.len())).collect::<R<Vec<_>>>()?;
                    for &a in &axes {
                        if dims[a] != 1 {
                            return invalid(format!("cannot squeeze axis {a} of size {} (shape {dims:?})", dims[a]));
                        }
                    }
                    dims.iter()
                        .enumerate()
                        .filter(|(i, _)| !axes.contains(i))
                        .map(|(_, &d)| d)
                        .collect()
                }
            };
            Ok(vec![reshape(v, &shape)?])
        }
        Op::Unsqueeze { axes } => {
            let v = input(0)?;
            let dims = v.dims();
            let axes = match opt_ints(1)? {
                Some(a) => a,
                None => match axes {
                    Some(a) => a.clone(),
                    None => return invalid("Unsqueeze needs axes"),
                },
            };
            let rank = dims.len() + axes.len();
            let mut axes = axes.iter().map(|&a| norm_axis(a, rank)).collect::<R<Vec<_>>>()?;
            axes.sort_unstable();
            axes.dedup();
            if axes.len() + dims.len() != rank {
                return invalid("Unsqueeze axes repeat");
            }
            let mut rest = dims.iter();
            let shape: Vec<usize> = (0..rank)
                .map(|i| {
                    if axes.contains(&i) {
                        1
                    } else {
                        rest.next().copied().unwrap_or(1)
                    }
                })
                .collect();
            Ok(vec![reshape(v, &shape)?])
        }
        Op::Shape { start, end } => {
            let dims = input(0)?.dims();
            let rank = dims.len() as i64;
            let clampi = |v: i64| -> usize { (if v < 0 { v.saturating_add(rank) } else { v }).clamp(0, rank) as usize };
            let (s, e) = (clampi(*start), clampi(end.unwrap_or(rank)));
            let values: Vec<i64> = dims[s..e.max(s)].iter().map(|&d| d as i64).collect();
            Ok(vec![Value::I(
                ArrayD::from_shape_vec(IxDyn(&[values.len()]), values).map_err(shape_err)?,
            )])
        }
        Op::Gather { axis } => gather(input(0)?, input(1)?, *axis).map(|v| vec![v]),
        Op::Slice => {
            let v = input(0)?;
            let (starts, ends) = (ints(1)?, ints(2)?);
            slice(v, &starts, &ends, opt_ints(3)?, opt_ints(4)?).map(|v| vec![v])
        }
        Op::Cast { to } => Ok(vec![cast(input(0)?, *to)?]),
        Op::ConstantOfShape { value } => {
            let shape = ints(0)?;
            let shape = shape
                .iter()
                .map(|&d| usize::try_from(d).map_err(|_| OpError::Invalid(format!("negative size in shape {shape:?}"))))
                .collect::<R<Vec<_>>>()?;
            check_size(&shape)?;
            Ok(vec![match value {
                Value::F(t) => {
                    let v = scalar(t, "value")?;
                    Value::F(Tensor::full(v as f32, shape.as_slice(), &Device::Cpu)?)
                }
                Value::I(a) => Value::I(ArrayD::from_elem(IxDyn(&shape), a.iter().next().copied().unwrap_or(0))),
            }])
        }
        Op::Softmax { axis, legacy } => {
            let x = float(0)?;
            let dims = x.dims().to_vec();
            if *legacy {
                // Before opset 13: the input is seen as 2-D, [prod(dims[..axis]), prod(dims[axis..])].
                let axis = norm_axis_inclusive(*axis, dims.len())?;
                let rows: usize = dims[..axis].iter().product();
                let flat = x.reshape((rows, dims[axis..].iter().product::<usize>()))?;
                one(softmax(&flat, 1)?.reshape(dims)?)
            } else {
                one(softmax(&x, norm_axis(*axis, dims.len())?)?)
            }
        }
        Op::ReduceMean {
            axes,
            keepdims,
            noop_with_empty_axes,
        } => {
            let x = float(0)?;
            let axes = match opt_ints(1)? {
                Some(a) => Some(a),
                None => axes.clone(),
            };
            let rank = x.rank();
            let axes: Vec<usize> = match axes {
                Some(a) if !a.is_empty() => {
                    let mut v = a.iter().map(|&a| norm_axis(a, rank)).collect::<R<Vec<_>>>()?;
                    v.sort_unstable();
                    v.dedup();
                    v
                }
                _ if *noop_with_empty_axes => return one(x),
                _ => (0..rank).collect(),
            };
            let mut y = x;
            for &a in &axes {
                y = y.mean_keepdim(a)?;
            }
            if !*keepdims {
                for &a in axes.iter().rev() {
                    y = y.squeeze(a)?;
                }
            }
            one(y)
        }
        Op::Pad { mode } => {
            let x = float(0)?;
            let pads = ints(1)?;
            let value = match opt_float(2)? {
                Some(t) if t.elem_count() > 0 => scalar(&t, "constant_value")?,
                _ => 0.0,
            };
            one(pad(&x, &pads, opt_ints(3)?, *mode, value)?)
        }
        Op::Identity => Ok(vec![input(0)?.clone()]),
    }
}

fn shape_err(e: ndarray::ShapeError) -> OpError {
    OpError::Invalid(e.to_string())
}

pub(crate) fn to_float(v: &Value) -> R<Tensor> {
    match v {
        Value::F(t) => Ok(t.clone()),
        Value::I(a) => {
            let data: Vec<f32> = a.iter().map(|&x| x as f32).collect();
            Ok(Tensor::from_vec(data, a.shape(), &Device::Cpu)?)
        }
    }
}

fn to_ints(v: &Value) -> R<Vec<i64>> {
    match v {
        Value::I(a) => Ok(a.iter().copied().collect()),
        Value::F(t) => invalid(format!(
            "expected an integer tensor, got a float tensor of shape {:?}",
            t.dims()
        )),
    }
}

fn scalar(t: &Tensor, what: &str) -> R<f64> {
    let values = t.to_dtype(DType::F64)?.flatten_all()?.to_vec1::<f64>()?;
    match values.as_slice() {
        [v] => Ok(*v),
        _ => invalid(format!("{what} must be a single value, got shape {:?}", t.dims())),
    }
}

fn check_size(shape: &[usize]) -> R<()> {
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d));
    match count {
        Some(c) if c <= MAX_ELEMENTS => Ok(()),
        _ => invalid(format!(
            "shape {shape:?} is too large (more than {MAX_ELEMENTS} elements)"
        )),
    }
}

fn norm_axis(axis: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis.saturating_add(r) } else { axis };
    if (0..r).contains(&a) {
        Ok(a as usize)
    } else {
        invalid(format!("axis {axis} is out of range for rank {rank}"))
    }
}

/// An axis in `[-rank, rank]` (Flatten's and legacy Softmax's split point).
fn norm_axis_inclusive(axis: i64, rank: usize) -> R<usize> {
    let r = rank as i64;
    let a = if axis < 0 { axis.saturating_add(r) } else { axis };
    if (0..=r).contains(&a) {
        Ok(a as usize)
    } else {
        invalid(format!("axis {axis} is out of range for rank {rank}"))
    }
}

/// `[1, C, 1, ...]` for a per-channel parameter of `x` (`[N, C, ...]`).
fn channel_shape(x: &Tensor, what: &str) -> R<Vec<usize>> {
    if x.rank() < 2 {
        return invalid(format!("{what} needs an input [N, C, ...], got {:?}", x.dims()));
    }
    let mut shape = vec![1; x.rank()];
    shape[1] = x.dim(1)?;
    Ok(shape)
}

fn reshape(v: &Value, shape: &[usize]) -> R<Value> {
    Ok(match v {
        Value::F(t) => Value::F(t.reshape(shape)?),
        Value::I(a) => {
            let count: usize = shape.iter().product();
            if count != a.len() {
                return invalid(format!("cannot reshape {:?} to {shape:?}", a.shape()));
            }
            Value::I(
                a.as_standard_layout()
                    .into_owned()
                    .into_shape_with_order(IxDyn(shape))
                    .map_err(shape_err)?,
            )
        }
    })
}

/// Reshape's target: 0 copies the input's size (unless `allowzero`), -1 is
/// inferred.
fn reshape_target(dims: &[usize], target: &[i64], allowzero: bool) -> R<Vec<usize>> {
    let total: usize = dims.iter().product();
    let mut out = Vec::with_capacity(target.len());
    let mut infer = None;
    for (i, &t) in target.iter().enumerate() {
        match t {
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            0 if !allowzero => match dims.get(i) {
                Some(&d) => out.push(d),
                None => {
                    return invalid(format!(
                        "shape {target:?}: 0 at axis {i} copies no input axis ({dims:?})"
                    ));
                }
            },
            t if t >= 0 => out.push(usize::try_from(t).map_err(|_| OpError::Invalid(format!("size {t} too large")))?),
            _ => return invalid(format!("invalid target shape {target:?}")),
        }
    }
    let known = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if let Some(i) = infer {
        match known {
            Some(k) if k > 0 && total.is_multiple_of(k) => out[i] = total / k,
            _ => return invalid(format!("cannot reshape {dims:?} to {target:?}")),
        }
    }
    if out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) != Some(total) {
        return invalid(format!("cannot reshape {dims:?} to {target:?}"));
    }
    Ok(out)
}

fn broadcast_shape(a: &[usize], b: &[usize]) -> R<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank { a[i + a.len() - rank] } else { 1 };
        let db = if i + b.len() >= rank { b[i + b.len() - rank] } else { 1 };
        out[i] = match (da, db) {
            (x, y) if x == y => x,
            (1, y) => y,
            (x, 1) => x,
            _ => return invalid(format!("shapes {a:?} and {b:?} do not broadcast")),
        };
    }
    check_size(&out)?;
    Ok(out)
}

fn broadcast_binary(a: &Tensor, b: &Tensor, op: BinOp) -> R<Tensor> {
    broadcast_shape(a.dims(), b.dims())?;
    Ok(match op {
        BinOp::Add => a.broadcast_add(b)?,
        BinOp::Sub => a.broadcast_sub(b)?,
        BinOp::Mul => a.broadcast_mul(b)?,
        BinOp::Div => a.broadcast_div(b)?,
    })
}

fn int_binary(a: &ArrayD<i64>, b: &ArrayD<i64>, op: BinOp) -> R<ArrayD<i64>> {
    let shape = broadcast_shape(a.shape(), b.shape())?;
    let (Some(a), Some(b)) = (a.broadcast(IxDyn(&shape)), b.broadcast(IxDyn(&shape))) else {
        return invalid("shapes do not broadcast");
    };
    let mut out = Vec::with_capacity(a.len());
    for (&x, &y) in a.iter().zip(b.iter()) {
        out.push(match op {
            BinOp::Add => x.wrapping_add(y),
            BinOp::Sub => x.wrapping_sub(y),
            BinOp::Mul => x.wrapping_mul(y),
            BinOp::Div => match x.checked_div(y) {
                Some(v) => v,
                None => return invalid("integer division by zero"),
            },
        });
    }
    ArrayD::from_shape_vec(IxDyn(&shape), out).map_err(shape_err)
}

fn matmul(a: &Tensor, b: &Tensor) -> R<Tensor> {
    if a.rank() == 0 || b.rank() == 0 {
        return invalid("MatMul needs inputs of rank 1 or more");
    }
    // NumPy's rule: a vector is a row on the left and a column on the right.
    let a1 = a.rank() == 1;
    let b1 = b.rank() == 1;
    let a = if a1 { a.unsqueeze(0)? } else { a.clone() };
    let b = if b1 { b.unsqueeze(1)? } else { b.clone() };
    let (k_a, k_b) = (a.dim(a.rank() - 1)?, b.dim(b.rank() - 2)?);
    if k_a != k_b {
        return invalid(format!("MatMul: {:?} times {:?} do not fit", a.dims(), b.dims()));
    }
    broadcast_shape(&a.dims()[..a.rank() - 2], &b.dims()[..b.rank() - 2])?;
    let mut y = if a.rank() == 2 && b.rank() == 2 {
        a.contiguous()?.matmul(&b.contiguous()?)?
    } else {
        a.contiguous()?.broadcast_matmul(&b.contiguous()?)?
    };
    if b1 {
        y = y.squeeze(y.rank() - 1)?;
    }
    if a1 {
        y = y.squeeze(y.rank() - if b1 { 1 } else { 2 })?;
    }
    Ok(y)
}

/// `min(max(x, min), max)` whose gradient is 1 inside the closed interval and
/// 0 outside (no split of the gradient at a bound, unlike candle's
/// maximum/minimum).
fn clip(x: &Tensor, min: Option<f64>, max: Option<f64>) -> R<Tensor> {
    let mut y = x.clone();
    if let Some(lo) = min {
        let below = x.lt(lo)?.to_dtype(x.dtype())?;
        let keep = (1.0 - &below)?;
        y = (y.mul(&keep)? + (below * lo)?)?;
    }
    if let Some(hi) = max {
        let above = x.gt(hi)?.to_dtype(x.dtype())?;
        let keep = (1.0 - &above)?;
        y = (y.mul(&keep)? + (above * hi)?)?;
    }
    Ok(y)
}

fn softmax(x: &Tensor, dim: usize) -> R<Tensor> {
    // Shifting by the (constant) maximum changes nothing but the range.
    let max = x.max_keepdim(dim)?.detach();
    let e = x.broadcast_sub(&max)?.exp()?;
    Ok(e.broadcast_div(&e.sum_keepdim(dim)?)?)
}

/// Picks `indices` along `dim` (a strided or reversed slice, a reflection),
/// differentiably.
fn select(x: &Tensor, dim: usize, indices: &[usize]) -> R<Tensor> {
    let n = x.dim(dim)?;
    if indices.iter().any(|&i| i >= n) {
        return invalid("index out of range");
    }
    let contiguous = indices.windows(2).all(|w| w[1] == w[0] + 1);
    if contiguous && let Some(&first) = indices.first() {
        return Ok(x.narrow(dim, first, indices.len())?);
    }
    let idx: Vec<u32> = indices.iter().map(|&i| i as u32).collect();
    let idx = Tensor::from_vec(idx, indices.len(), x.device())?;
    Ok(x.contiguous()?.index_select(&idx, dim)?)
}

fn gather(data: &Value, indices: &Value, axis: i64) -> R<Value> {
    let dims = data.dims();
    let axis = norm_axis(axis, dims.len())?;
    let Value::I(idx) = indices else {
        return invalid("Gather indices must be integers");
    };
    let n = dims[axis] as i64;
    let flat = idx
        .iter()
        .map(|&i| {
            let j = if i < 0 { i.saturating_add(n) } else { i };
            if (0..n).contains(&j) {
                Ok(j as usize)
            } else {
                invalid(format!("index {i} out of range for axis {axis} of size {n}"))
            }
        })
        .collect::<R<Vec<usize>>>()?;
    let mut shape = dims[..axis].to_vec();
    shape.extend_from_slice(idx.shape());
    shape.extend_from_slice(&dims[axis + 1..]);
    check_size(&shape)?;
    match data {
        Value::F(t) => {
            let i = Tensor::from_vec(
                flat.iter().map(|&i| i as u32).collect::<Vec<_>>(),
                flat.len(),
                t.device(),
            )?;
            Ok(Value::F(t.contiguous()?.index_select(&i, axis)?.reshape(shape)?))
        }
        Value::I(a) => Ok(Value::I(
            a.select(Axis(axis), &flat)
                .as_standard_layout()
                .into_owned()
                .into_shape_with_order(IxDyn(&shape))
                .map_err(shape_err)?,
        )),
    }
}

fn slice(v: &Value, starts: &[i64], ends: &[i64], axes: Option<Vec<i64>>, steps: Option<Vec<i64>>) -> R<Value> {
    let dims = v.dims();
    let rank = dims.len();
    let axes = match axes {
        Some(a) => a.iter().map(|&a| norm_axis(a, rank)).collect::<R<Vec<_>>>()?,
        None => (0..starts.len()).collect(),
    };
    let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
    if ends.len() != starts.len() || axes.len() != starts.len() || steps.len() != starts.len() {
        return invalid("Slice: starts, ends, axes and steps differ in length");
    }
    let mut out = v.clone();
    for (i, &axis) in axes.iter().enumerate() {
        let n = i128::from(dims[axis] as i64);
        let step = i128::from(steps[i]);
        let fix = |x: i64| -> i128 {
            let x = i128::from(x);
            if x < 0 { x + n } else { x }
        };
        let (start, end) = (fix(starts[i]), fix(ends[i]));
        let indices: Vec<usize> = if step > 0 {
            let (s, e) = (start.clamp(0, n), end.clamp(0, n));
            let mut v = Vec::new();
            let mut k = s;
            while k < e {
                v.push(k as usize);
                k += step;
            }
            v
        } else if step < 0 {
            let (s, e) = (start.clamp(0, n - 1), end.clamp(-1, n - 1));
            let mut v = Vec::new();
            let mut k = s;
            while k > e {
                v.push(k as usize);
                k += step;
            }
            v
        } else {
            return invalid("Slice step 0");
        };
        out = match out {
            Value::F(t) => {
                if indices.is_empty() {
                    let mut shape = t.dims().to_vec();
                    shape[axis] = 0;
                    Value::F(Tensor::zeros(shape, t.dtype(), t.device())?)
                } else {
                    Value::F(select(&t, axis, &indices)?)
                }
            }
            Value::I(a) => Value::I(a.select(Axis(axis), &indices)),
        };
    }
    Ok(out)
}

fn cast(v: &Value, to: i32) -> R<Value> {
    let to_float = matches!(to, data_type::FLOAT | data_type::DOUBLE | data_type::FLOAT16);
    Ok(match (v, to_float) {
        (Value::F(t), true) => Value::F(t.clone()),
        (Value::I(_), true) => Value::F(self::to_float(v)?),
        (Value::I(a), false) => Value::I(if to == data_type::BOOL {
            a.mapv(|x| i64::from(x != 0))
        } else {
            a.clone()
        }),
        (Value::F(t), false) => {
            let values = t.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
            let ints: Vec<i64> = values
                .iter()
                .map(|&x| {
                    if to == data_type::BOOL {
                        i64::from(x != 0.0)
                    } else {
                        x as i64
                    }
                })
                .collect();
            Value::I(ArrayD::from_shape_vec(IxDyn(t.dims()), ints).map_err(shape_err)?)
        }
    })
}

/// Pads of a window for an input of `size` along one axis, from auto_pad.
fn same_pads(size: usize, kernel: usize, stride: usize, dilation: usize, upper: bool) -> (usize, usize) {
    let effective = dilation.saturating_mul(kernel.saturating_sub(1)).saturating_add(1);
    let out = size.div_ceil(stride.max(1));
    let total = (out.saturating_sub(1))
        .saturating_mul(stride)
        .saturating_add(effective)
        .saturating_sub(size);
    let small = total / 2;
    if upper {
        (small, total - small)
    } else {
        (total - small, small)
    }
}

/// The window's pads `[top, left, bottom, right]` for an input of `h x w`.
fn window_pads(window: &Window, kernel: [usize; 2], h: usize, w: usize) -> [usize; 4] {
    match window.auto_pad {
        AutoPad::NotSet => window.pads,
        AutoPad::Valid => [0; 4],
        AutoPad::SameUpper | AutoPad::SameLower => {
            let upper = window.auto_pad == AutoPad::SameUpper;
            let (t, b) = same_pads(h, kernel[0], window.strides[0], window.dilations[0], upper);
            let (l, r) = same_pads(w, kernel[1], window.strides[1], window.dilations[1], upper);
            [t, l, b, r]
        }
    }
}

/// Output size along one axis; `None` when the window does not fit.
fn out_size(size: usize, pads: [usize; 2], kernel: usize, stride: usize, dilation: usize, ceil: bool) -> Option<usize> {
    let padded = size.checked_add(pads[0])?.checked_add(pads[1])?;
    let effective = dilation.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
    let span = padded.checked_sub(effective)?;
    let mut out = if ceil { span.div_ceil(stride) } else { span / stride } + 1;
    // PyTorch's rule: the last window must start inside the input or the
    // leading padding.
    if ceil && out > 1 && (out - 1) * stride >= size + pads[0] {
        out -= 1;
    }
    Some(out)
}

/// Checks the size of a pooling or convolution output of `x` before it is
/// allocated (pads come from the file: a garbled one is an error, not an
/// allocation failure).
fn check_window_output(
    x: &Tensor,
    channels: usize,
    window: &Window,
    kernel: [usize; 2],
    pads: [usize; 4],
    dilation: usize,
) -> R<()> {
    let (n, h, w) = (x.dim(0)?, x.dim(2)?, x.dim(3)?);
    let size = |len: usize, pad: [usize; 2], k: usize, s: usize| out_size(len, pad, k, s, dilation, window.ceil_mode);
    match (
        size(h, [pads[0], pads[2]], kernel[0], window.strides[0]),
        size(w, [pads[1], pads[3]], kernel[1], window.strides[1]),
    ) {
        (Some(oh), Some(ow)) => check_size(&[n, channels, oh, ow]),
        _ => invalid(format!(
            "the window {kernel:?} (dilation {dilation}) does not fit the padded input {:?}",
            x.dims()
        )),
    }
}

fn conv(x: &Tensor, w: &Tensor, bias: Option<&Tensor>, window: &Window, group: usize) -> R<Tensor> {
    if x.rank() != 4 || w.rank() != 4 {
        return invalid(format!(
            "Conv supports 2-D convolutions: input [N, C, H, W] and weight [M, C/group, kH, kW], got {:?} and {:?}",
            x.dims(),
            w.dims()
        ));
    }
    let (c, m, cg) = (x.dim(1)?, w.dim(0)?, w.dim(1)?);
    if cg.checked_mul(group) != Some(c) || m % group != 0 {
        return invalid(format!(
            "input of {c} channels, weight {:?} and group {group} do not fit",
            w.dims()
        ));
    }
    let kernel = [w.dim(2)?, w.dim(3)?];
    if let Some(k) = window.kernel
        && k != kernel
    {
        return invalid(format!("kernel_shape {k:?} differs from the weight's {kernel:?}"));
    }
    let pads = window_pads(window, kernel, x.dim(2)?, x.dim(3)?);
    let dilation = window.dilations[0];
    check_window_output(x, m, window, kernel, pads, dilation)?;
    let bias = match bias {
        Some(b) if b.elem_count() != m => {
            return invalid(format!("bias of shape {:?} for {m} output channels", b.dims()));
        }
        Some(b) => Some(b.flatten_all()?),
        None => None,
    };
    // Fast, complete input gradients; the weights are constants.
    Ok(crate::adapters::candle_ops::conv2d(
        x,
        w,
        bias.as_ref(),
        (window.strides[0], window.strides[1]),
        pads,
        dilation,
        group,
    )?)
}

fn average_pool(x: &Tensor, window: &Window, count_include_pad: bool) -> R<Tensor> {
    let (h, w) = match x.dims() {
        &[_, _, h, w] => (h, w),
        other => {
            return invalid(format!(
                "AveragePool supports 2-D pooling of [N, C, H, W], got {other:?}"
            ));
        }
    };
    let kernel = window.kernel.unwrap_or([1, 1]);
    let pads = window_pads(window, kernel, h, w);
    check_window_output(x, x.dim(1)?, window, kernel, pads, 1)?;
    Ok(crate::adapters::candle_ops::avg_pool2d(
        x,
        (kernel[0], kernel[1]),
        (window.strides[0], window.strides[1]),
        pads,
        false,
        count_include_pad,
    )?)
}

fn pad(x: &Tensor, pads: &[i64], axes: Option<Vec<i64>>, mode: PadMode, value: f64) -> R<Tensor> {
    let rank = x.rank();
    let axes = match axes {
        Some(a) => a.iter().map(|&a| norm_axis(a, rank)).collect::<R<Vec<_>>>()?,
        None => (0..rank).collect(),
    };
    if pads.len() != 2 * axes.len() {
        return invalid(format!(
            "pads {pads:?} must have two values for each of the {} axes",
            axes.len()
        ));
    }
    let mut y = x.clone();
    for (i, &axis) in axes.iter().enumerate() {
        let (before, after) = (pads[i], pads[i + axes.len()]);
        let n = y.dim(axis)? as i64;
        // Negative pads crop.
        let (crop_b, crop_a) = ((-before).max(0), (-after).max(0));
        if crop_b > 0 || crop_a > 0 {
            let keep = n - crop_b - crop_a;
            if keep < 0 {
                return invalid(format!("pads {pads:?} crop more than the axis holds"));
            }
            y = y.narrow(axis, crop_b as usize, keep as usize)?;
        }
        let (b, a) = (before.max(0) as usize, after.max(0) as usize);
        if b == 0 && a == 0 {
            continue;
        }
        let n = y.dim(axis)?;
        let mut shape = y.dims().to_vec();
        shape[axis] = n.saturating_add(b).saturating_add(a);
        check_size(&shape)?;
        y = match mode {
            PadMode::Constant => {
                let mut side = y.dims().to_vec();
                let mut parts = Vec::with_capacity(3);
                if b > 0 {
                    side[axis] = b;
                    parts.push(Tensor::full(value as f32, side.as_slice(), y.device())?.to_dtype(y.dtype())?);
                }
                parts.push(y.clone());
                if a > 0 {
                    side[axis] = a;
                    parts.push(Tensor::full(value as f32, side.as_slice(), y.device())?.to_dtype(y.dtype())?);
                }
                Tensor::cat(&parts, axis)?
            }
            PadMode::Reflect | PadMode::Edge => {
                if n == 0 || (mode == PadMode::Reflect && (b >= n || a >= n)) {
                    return invalid(format!("cannot pad an axis of size {n} by {b} and {a} in this mode"));
                }
                let last = n as i64 - 1;
                let indices: Vec<usize> = (-(b as i64)..n as i64 + a as i64)
                    .map(|i| {
                        let j = match mode {
                            PadMode::Edge => i.clamp(0, last),
                            _ if i < 0 => -i,
                            _ if i > last => 2 * last - i,
                            _ => i,
                        };
                        j as usize
                    })
                    .collect();
                select(&y, axis, &indices)?
            }
        };
    }
    Ok(y)
}

/// `MaxPool` on [`candle_ops::max_pool2d`](crate::adapters::candle_ops::max_pool2d):
/// any kernel, stride and padding, each window's gradient to its first
/// maximal element (PyTorch's rule).
fn max_pool(x: &Tensor, window: &Window) -> R<Tensor> {
    let (h, w) = match x.dims() {
        &[_, _, h, w] => (h, w),
        other => return invalid(format!("MaxPool supports 2-D pooling of [N, C, H, W], got {other:?}")),
    };
    if window.dilations != [1, 1] {
        return invalid(format!(
            "MaxPool with dilations {:?} is not supported",
            window.dilations
        ));
    }
    let kernel = window.kernel.unwrap_or([1, 1]);
    let pads = window_pads(window, kernel, h, w);
    check_window_output(x, x.dim(1)?, window, kernel, pads, 1)?;
    Ok(crate::adapters::candle_ops::max_pool2d(
        x,
        (kernel[0], kernel[1]),
        (window.strides[0], window.strides[1]),
        pads,
        window.ceil_mode,
    )?)
}
