//! Ready-made [`CallModelFunction`](crate::CallModelFunction)s for deep
//! learning frameworks, each behind a feature of the same name.
//!
//! - `candle` (feature `candle`): `candle::CandleModel` runs a candle model's
//!   forward and backward passes and serves every [`OutputKey`](crate::OutputKey),
//!   guided gradients included.
//! - `candle_ops` (feature `candle`): convolution, pooling and ReLU for
//!   candle models with fast and complete input gradients.
//! - `burn` (feature `burn`): `burn::BurnModel` does the same for a burn
//!   model on burn's Flex CPU backend with autodiff, guided gradients included.
//! - `onnx` (feature `onnx`): `onnx::OnnxModel` loads an ONNX file and serves
//!   every key the same way, on candle.

#[cfg(any(feature = "candle", feature = "burn"))]
mod common;

#[cfg(feature = "candle")]
pub mod candle;
#[cfg(feature = "candle")]
pub mod candle_ops;

#[cfg(feature = "onnx")]
pub mod onnx;

#[cfg(feature = "burn")]
pub mod burn;
