//! The trait every saliency method implements, progress reports, and the
//! input checks the methods share.

use ndarray::{ArrayD, ArrayViewD};

use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::methods::smoothgrad::{self, SmoothGradParams};
use crate::model::{CallModelFunction, find_non_finite};
use crate::parallel::flat;

/// How far a long computation has come: `done` of `total` units of `stage`
/// (for example path steps of integrated gradients).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Progress {
    /// What is being counted, such as `"integrated gradients steps"`.
    pub stage: &'static str,
    /// Units finished so far.
    pub done: usize,
    /// Units in all.
    pub total: usize,
}

impl Progress {
    /// A report of `done` of `total` units of `stage`.
    pub fn new(stage: &'static str, done: usize, total: usize) -> Self {
        Progress { stage, done, total }
    }
}

/// A saliency method: turns one input (without a batch axis) and the user's
/// model into a mask.
///
/// The trait is object-safe, so different methods can be kept side by side:
///
/// ```
/// use ndarray::Array3;
/// use saliency::{CoreSaliency, IntegratedGradients, ModelOutputs, OutputKey, VanillaGradients};
///
/// let x = Array3::<f32>::from_elem((4, 4, 3), 0.5);
/// let methods: Vec<Box<dyn CoreSaliency<f32>>> =
///     vec![Box::new(VanillaGradients::new()), Box::new(IntegratedGradients::new())];
/// for method in &methods {
///     // f(x) = sum(x^2): the gradient is 2x.
///     let mask = method.get_mask(x.view().into_dyn(), &mut |batch, _keys| {
///         Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, batch.mapv(|v| 2.0 * v)))
///     })?;
///     assert_eq!(mask.shape(), x.shape());
/// }
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub trait CoreSaliency<F: Float>: Sync {
    /// A short human-readable name, such as `"Integrated Gradients"`.
    fn name(&self) -> &'static str;

    /// Computes the mask, reporting progress to `progress` as it goes.
    fn get_mask_with_progress(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>>;

    /// Computes the mask for one input `x` (no batch axis).
    fn get_mask(&self, x: ArrayViewD<'_, F>, model: &mut dyn CallModelFunction<F>) -> Result<ArrayD<F>> {
        self.get_mask_with_progress(x, model, &mut |_| {})
    }

    /// Computes the SmoothGrad average of this method's masks over noisy
    /// copies of `x` (see [`SmoothGrad`](crate::SmoothGrad)).
    fn get_smoothed_mask(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        params: &SmoothGradParams,
    ) -> Result<ArrayD<F>> {
        smoothgrad::smooth(self, x, model, params, &mut |_| {})
    }

    /// The most rows this method sends the model in one call (its
    /// `batch_size` setting; 1 for methods without one). A multi-image call
    /// ([`get_masks`](Self::get_masks)) fills every model call to this size
    /// with rows of several images.
    fn batch_size(&self) -> usize {
        1
    }

    /// Computes the masks of several images at once: `images` is `[N, ...]`
    /// (each image as [`get_mask`](Self::get_mask) takes it) and the result
    /// is `[N, ...]`, mask `i` bit-identical to `get_mask` on image `i`.
    ///
    /// The model calls carry rows of several images (path points, noise
    /// samples, occluded copies), filled to [`batch_size`](Self::batch_size)
    /// rows; [`ModelRequest::image_of_row`](crate::ModelRequest::image_of_row)
    /// tells the model which image each row belongs to, so every image can
    /// have its own target. Progress counts finished images.
    ///
    /// ```
    /// use ndarray::Array4;
    /// use saliency::{CoreSaliency, IntegratedGradients, ModelOutputs, OutputKey};
    ///
    /// // Three 4 x 4 x 1 images; image i is explained for f_i(x) = (i + 1) * sum(x).
    /// let images = Array4::<f64>::from_elem((3, 4, 4, 1), 0.5);
    /// let ig = IntegratedGradients::new().steps(10).batch_size(15);
    /// let mut calls = 0;
    /// let masks = ig.get_masks(images.view().into_dyn(), &mut |batch, request| {
    ///     calls += 1;
    ///     let mut grads = batch.to_owned();
    ///     for (row, mut g) in grads.outer_iter_mut().enumerate() {
    ///         g.fill((request.image_of_row(row) + 1) as f64);
    ///     }
    ///     Ok(ModelOutputs::new().with(OutputKey::InputOutputGradients, grads))
    /// })?;
    /// assert_eq!(masks.shape(), [3, 4, 4, 1]);
    /// assert_eq!(calls, 2); // 30 path points in calls of 15 rows
    /// assert!((masks[[2, 0, 0, 0]] - 1.5).abs() < 1e-12); // 3 * 0.5
    /// # Ok::<(), saliency::SaliencyError>(())
    /// ```
    fn get_masks(&self, images: ArrayViewD<'_, F>, model: &mut dyn CallModelFunction<F>) -> Result<ArrayD<F>> {
        self.get_masks_with_progress(images, model, &mut |_| {})
    }

    /// [`get_masks`](Self::get_masks), reporting finished images to
    /// `progress`.
    fn get_masks_with_progress(
        &self,
        images: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        crate::batching::masks_of_images(self, images, model, progress)
    }
}

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
