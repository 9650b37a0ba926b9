//! The argument checks and fallible allocations shared by the methods, the
//! image operations, the visualisations and the metrics: each error is
//! worded once, here.

use ndarray::{ArrayD, ArrayView3, ArrayViewD, Axis, Ix3};

use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::model::find_non_finite;
use crate::parallel::flat;

/// Checks that an input array is non-empty, finite and of rank at least
/// `min_rank`.
pub(crate) fn check_input<F: Float>(what: &'static str, x: &ArrayViewD<'_, F>, min_rank: usize) -> Result<()> {
    if x.ndim() < min_rank {
        return Err(SaliencyError::InvalidRank {
            what,
            expected: if min_rank == 1 {
                "rank 1 or more"
            } else {
                "rank 2 or more"
            },
            actual: x.ndim(),
            shape: x.shape().to_vec(),
        });
    }
    if x.is_empty() {
        return Err(SaliencyError::EmptyInput {
            what,
            shape: x.shape().to_vec(),
        });
    }
    check_finite(what, x)
}

/// Checks that every value of an input array is finite.
pub(crate) fn check_finite<F: Float>(what: &'static str, x: &ArrayViewD<'_, F>) -> Result<()> {
    match find_non_finite(&flat(x)) {
        None => Ok(()),
        Some((count, first_index)) => Err(SaliencyError::NonFiniteInput {
            what,
            count,
            first_index,
        }),
    }
}

/// An empty vector with room for `len` elements, or an error (instead of an
/// abort) when that much memory cannot be had.
pub(crate) fn try_vec_with_capacity<T>(len: usize) -> std::result::Result<Vec<T>, std::collections::TryReserveError> {
    let mut v = Vec::new();
    v.try_reserve_exact(len)?;
    Ok(v)
}

/// The largest step or sample count a method accepts (2^24). Beyond it a
/// path in `f32` can no longer tell neighbouring points apart and an `f32`
/// average no longer moves; a mistaken huge count fails at once instead of
/// calling the model for days.
pub const MAX_STEPS: usize = 1 << 24;

/// Checks that a step or sample count is between 1 and [`MAX_STEPS`].
pub(crate) fn check_steps(name: &'static str, value: usize) -> Result<()> {
    check_positive(name, value)?;
    if value > MAX_STEPS {
        return Err(SaliencyError::param(name, value, "must be at most 2^24 (16777216)"));
    }
    Ok(())
}

/// Returns `mask` if all its values are finite, else the error saying that
/// the computation overflowed.
pub(crate) fn finite_result<F: Float>(what: &'static str, mask: ArrayD<F>) -> Result<ArrayD<F>> {
    match find_non_finite(&flat(&mask.view())) {
        None => Ok(mask),
        Some((count, first_index)) => Err(SaliencyError::NonFiniteResult {
            what,
            count,
            first_index,
        }),
    }
}

/// A vector of `len` copies of `value`, or an error about parameter `name`
/// (shown with `shown`) instead of an abort when `len` elements cannot be
/// allocated.
pub(crate) fn try_filled<T: Clone>(
    name: &'static str,
    shown: impl std::fmt::Display,
    len: usize,
    value: T,
) -> Result<Vec<T>> {
    let mut v = try_vec_with_capacity(len)
        .map_err(|_| SaliencyError::param(name, shown, "needs more memory than can be allocated"))?;
    v.resize(len, value);
    Ok(v)
}

/// Checks that a count-like parameter is at least one.
pub(crate) fn check_positive(name: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        Err(SaliencyError::param(name, value, "must be at least 1"))
    } else {
        Ok(())
    }
}

/// The ranks an image may have, as every rank error words them.
const IMAGE_RANKS: &str = "rank 2 (height x width) or 3 (height x width x channels)";

/// Whether an image of `shape` (no batch axis) looks channels-first: three
/// axes, the first of 1, 3 or 4 (grey, RGB, RGBA) and the other two larger
/// than 4, as `[3, 224, 224]`. Read as height x width x channels it would be
/// an image 3 pixels high with 224 channels; methods that treat the axes as
/// space and channels would give a plausible but wrong map.
pub(crate) fn looks_channels_first(shape: &[usize]) -> bool {
    matches!(shape, [c, h, w] if matches!(c, 1 | 3 | 4) && *h > 4 && *w > 4)
}

/// Refuses an image that looks channels-first (see [`looks_channels_first`]).
pub(crate) fn check_channels_last(what: &'static str, shape: &[usize]) -> Result<()> {
    if looks_channels_first(shape) {
        Err(SaliencyError::ChannelsFirstImage {
            what,
            shape: shape.to_vec(),
        })
    } else {
        Ok(())
    }
}

/// Checks that `shape` is that of an image: height x width, or height x
/// width x channels (and not a channels-first one, see
/// [`check_channels_last`]).
pub(crate) fn check_image_rank(what: &'static str, shape: &[usize]) -> Result<()> {
    if matches!(shape.len(), 2 | 3) {
        check_channels_last(what, shape)
    } else {
        Err(SaliencyError::InvalidRank {
            what,
            expected: IMAGE_RANKS,
            actual: shape.len(),
            shape: shape.to_vec(),
        })
    }
}

/// Checks that an input is a non-empty, finite image (see
/// [`check_image_rank`]).
pub(crate) fn check_image<F: Float>(what: &'static str, x: &ArrayViewD<'_, F>) -> Result<()> {
    check_image_rank(what, x.shape())?;
    check_input(what, x, 2)
}

/// `image` as height x width x channels (one channel for a height x width
/// image), or the error of [`check_image_rank`].
pub(crate) fn image_view3<'a, T>(what: &'static str, image: &ArrayViewD<'a, T>) -> Result<ArrayView3<'a, T>> {
    check_image_rank(what, image.shape())?;
    let image = image.clone();
    let image = if image.ndim() == 2 {
        image.insert_axis(Axis(2))
    } else {
        image
    };
    image
        .into_dimensionality::<Ix3>()
        .map_err(|_| SaliencyError::internal("an image of checked rank is not 3-D"))
}

/// Checks that an array that must agree in shape with another does.
pub(crate) fn check_shape(what: &'static str, actual: &[usize], expected: &[usize]) -> Result<()> {
    if actual == expected {
        Ok(())
    } else {
        Err(SaliencyError::ShapeMismatch {
            what,
            expected: expected.to_vec(),
            actual: actual.to_vec(),
        })
    }
}

/// Checks a companion of the input (a baseline, a given attribution): the
/// input's shape and finite values.
pub(crate) fn check_like_input<F: Float>(
    what: &'static str,
    a: &ArrayViewD<'_, F>,
    input_shape: &[usize],
) -> Result<()> {
    check_shape(what, a.shape(), input_shape)?;
    check_finite(what, a)
}
