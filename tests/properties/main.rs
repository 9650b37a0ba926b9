//! Property tests: no public function panics or hangs on any input. A
//! method returns its mask (of the documented shape, with finite values)
//! whenever the input, the parameters and the model's answers are in order,
//! and otherwise the `SaliencyError` variant that names what is wrong: each
//! bad input or parameter, and each fault of the model, has its own (see
//! `expect`). Proptest reports a panic as a failure.
//!
//! Inputs of any rank (0 to 5) and shape (zero-sized axes included), values
//! with NaN, infinities, huge and subnormal numbers, parameters at and far
//! beyond their limits, and models that fail, omit outputs, return wrong
//! shapes or non-finite values. Images are tiny and case counts fixed, so
//! the whole file takes seconds.

mod arb;
mod expect;
mod methods;
mod ops;
mod regressions;
