//! Property tests: no public function panics or hangs on any input. Every
//! case returns `Ok` (with the documented shape and finite values) or a
//! typed `SaliencyError`; proptest reports a panic as a failure.
//!
//! Inputs of any rank (0 to 5) and shape (zero-sized axes included), values
//! with NaN, infinities, huge and subnormal numbers, parameters at and far
//! beyond their limits, and models that fail, omit outputs, return wrong
//! shapes or non-finite values. Images are tiny and case counts fixed, so
//! the whole file takes seconds.

mod arb;
mod methods;
mod ops;
mod regressions;
