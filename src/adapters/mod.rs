//! Ready-made [`CallModelFunction`](crate::CallModelFunction)s for deep
//! learning frameworks, each behind a feature of the same name.
//!
//! - `candle` (feature `candle`): `candle::CandleModel` runs a candle model's
//!   forward and backward passes and serves every [`OutputKey`](crate::OutputKey),
//!   guided gradients included.
//! - `candle_ops` (feature `candle`): convolution, pooling and ReLU for
//!   candle models with fast and complete input gradients.

#[cfg(feature = "candle")]
pub mod candle;
#[cfg(feature = "candle")]
pub mod candle_ops;
