//! Occlusion ([Zeiler and Fergus, 2014](https://arxiv.org/abs/1311.2901)):
//! how much does the score drop when a square of the image is hidden?

use std::marker::PhantomData;

use ndarray::{ArrayD, ArrayViewD, Axis, IxDyn, Slice};

use crate::batch_setting::BatchSize;
use crate::checks::{check_image, check_positive, finite_result, try_vec_with_capacity};
use crate::core::{CoreSaliency, Progress, Stage};
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::model::{CallModelFunction, OutputKey, call_model};

/// Occlusion: slide a `size` x `size` window over the image, replace the
/// pixels under it (all channels) by `value`, and credit every pixel of the
/// window with the score difference `f(x) - f(x occluded)`.
///
/// Matches `saliency.core.Occlusion` of PAIR saliency 0.2.1 with the default
/// `stride` of 1. The mask at a pixel is the sum, over every window that
/// contains it, of `f(x) - f(x with that window occluded)`; windows start at
/// rows and columns `0, stride, 2 * stride, ...` up to `height - size`
/// (resp. `width - size`) inclusive, so with a stride above 1 the last rows
/// or columns may be covered by no window and stay 0. For an
/// `H x W x C` input the value is the same in every channel.
///
/// The model is asked for [`OutputKey::OutputLayerValues`] (one score per
/// example, shape `[B]` or `[B, 1]`): once for the input, then for the
/// occluded copies in batches set by [`batch`](Self::batch). The reference
/// sends them one at a time; the default here is a byte budget,
/// [`DEFAULT_BATCH`](Self::DEFAULT_BATCH), so that a batch of copies stays
/// in cache at any image size (it was 32 copies, 77 MB at 448 x 448 x 3
/// `f32`). The mask does not depend on the batch setting, bit for bit: each
/// window's score difference is added in window order whatever the batches.
/// Sums are accumulated in `f64` and rounded to `F` once.
///
/// Inputs are `H x W` or `H x W x C`; a window larger than the image is an
/// error (the reference silently returns zeros).
///
/// ```
/// use ndarray::Array2;
/// use saliency::{ModelOutputs, Occlusion, OutputKey, Saliency};
///
/// // The score is 3 * sum(x); two bright pixels on a dark 5 x 5 image.
/// let mut img = Array2::<f64>::zeros((5, 5));
/// img[[1, 1]] = 1.0;
/// img[[3, 3]] = 1.0;
/// let mask = Occlusion::new().size(3).get_mask(&img, &mut |batch, _keys| {
///     let scores = batch.outer_iter().map(|x| 3.0 * x.sum()).collect::<ndarray::Array1<f64>>();
///     Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, scores))
/// })?;
/// // The centre lies in all nine windows; six of them hide one bright pixel
/// // and one hides both (the reference's own test expects 24).
/// assert_eq!(mask[[2, 2]], 24.0);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Occlusion<F> {
    size: usize,
    value: f64,
    stride: usize,
    batch: BatchSize,
    float: PhantomData<fn() -> F>,
}

impl<F: Float> Default for Occlusion<F> {
    fn default() -> Self {
        Occlusion {
            size: 15,
            value: 0.0,
            stride: 1,
            batch: Occlusion::<F>::DEFAULT_BATCH,
            float: PhantomData,
        }
    }
}

impl<F> Occlusion<F> {
    /// The default batch setting: occluded copies up to a batch of 1 MiB
    /// (at least one copy per call): one copy of a 224 x 224 x 3 `f32`
    /// image (602 KB), read by a model that reads as much again (weights of
    /// the image's size), stays within a core's 2 MiB L2 cache. Each copy
    /// differs from the image in one window only, so larger batches save
    /// little but calls and cost cache: with such a near-free model, 4
    /// copies per call cost 1.4 times as much as 1 at 224 x 224 on one
    /// machine and tied with 1 on another (within 6%), and 32 copies cost
    /// 1.8 to 2.6 times as much. Small images still go several to a call (21 at
    /// 64 x 64 x 3). The reference sends one copy per call; the mask is
    /// the same.
    pub const DEFAULT_BATCH: BatchSize = BatchSize::Bytes(1 << 20);
}

impl<F: Float> Occlusion<F> {
    /// The reference's defaults (window 15, value 0, stride 1), with the
    /// batch setting [`DEFAULT_BATCH`](Self::DEFAULT_BATCH).
    pub fn new() -> Self {
        Self::default()
    }

    /// Height and width of the square window (at least 1, at most the
    /// image's height and width).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn size(mut self, size: usize) -> Self {
        self.size = size;
        self
    }

    /// The value written under the window (finite, and finite in the
    /// input's float type), converted to that type as other scalar settings
    /// are.
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn value(mut self, value: f64) -> Self {
        self.value = value;
        self
    }

    /// Distance between consecutive window positions, in rows and in
    /// columns (at least 1; 1 is the reference's behaviour).
    #[must_use = "a setter returns the changed method; assign or chain it"]
    pub fn stride(mut self, stride: usize) -> Self {
        self.stride = stride;
        self
    }

    crate::batch_setting::batch_accessors!("occluded copies");

    /// The height and width of the window.
    pub fn get_size(&self) -> usize {
        self.size
    }

    /// The value written under the window.
    pub fn get_value(&self) -> f64 {
        self.value
    }

    /// The distance between consecutive window positions.
    pub fn get_stride(&self) -> usize {
        self.stride
    }
}

/// The mask: the input's shape.
impl<F: Float> crate::core::Saliency<F> for Occlusion<F> {
    type MaskDim<D: ndarray::Dimension> = D;
}

impl<F: Float> CoreSaliency<F> for Occlusion<F> {
    fn name(&self) -> &'static str {
        "Occlusion"
    }

    fn batch_size(&self) -> usize {
        self.get_batch_size()
    }

    fn batch_rows(&self, values: usize) -> usize {
        self.batch.rows_of::<F>(values)
    }

    fn get_mask_dyn(
        &self,
        x: ArrayViewD<'_, F>,
        model: &mut dyn CallModelFunction<F>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<ArrayD<F>> {
        check_image("input", &x)?;
        check_positive("size", self.size)?;
        check_positive("stride", self.stride)?;
        self.batch.check()?;
        if !self.value.is_finite() {
            return Err(SaliencyError::param("value", self.value, "must be finite"));
        }
        let value = F::from_f64_lossy(self.value);
        if !value.is_finite() {
            return Err(SaliencyError::param(
                "value",
                self.value,
                "overflows the input's float type",
            ));
        }
        let shape = x.shape();
        let (h, w) = (shape[0], shape[1]);
        let channels = shape.get(2).copied().unwrap_or(1);
        if self.size > h || self.size > w {
            return Err(SaliencyError::param(
                "size",
                format!("{} (image {h} x {w})", self.size),
                "must not exceed the image's height and width",
            ));
        }

        let key = OutputKey::OutputLayerValues;
        let base = x.as_standard_layout();
        let base_flat = base.as_slice().ok_or(SaliencyError::EmptyInput {
            what: "input",
            shape: shape.to_vec(),
        })?;
        let mut outputs = call_model(model, base.view().insert_axis(Axis(0)), &[key])?;
        let original = outputs.take(key)?.iter().next().map_or(0.0, |v| v.as_f64());

        let starts = |extent: usize| (0..=extent - self.size).step_by(self.stride);
        let windows: Vec<(usize, usize)> = starts(h).flat_map(|r| starts(w).map(move |c| (r, c))).collect();
        let window = Window {
            size: self.size,
            width: w,
            channels,
        };

        // Every slot of the batch holds the base image with one window
        // occluded; moving to the next window restores only the previous one.
        let batch_rows = self.batch_rows(x.len());
        let slots = windows.len().min(batch_rows);
        let mut batch_shape = vec![slots];
        batch_shape.extend_from_slice(shape);
        let image_len = base_flat.len();
        let too_large = || SaliencyError::param("batch_size", batch_rows, "gives a batch too large to allocate");
        let mut batch_flat = slots
            .checked_mul(image_len)
            .and_then(|n| try_vec_with_capacity(n).ok())
            .ok_or_else(too_large)?;
        for _ in 0..slots {
            batch_flat.extend_from_slice(base_flat);
        }
        let mut batch = ArrayD::from_shape_vec(IxDyn(&batch_shape), batch_flat)
            .map_err(|_| SaliencyError::internal("the occlusion batch does not fill its shape"))?;
        let mut occluded: Vec<Option<(usize, usize)>> = vec![None; slots];

        // Window sums through a 2-D difference array: each window adds its
        // score difference at its four corners, prefix sums spread it.
        let mut diff = vec![0.0_f64; (h + 1) * (w + 1)];
        let mut done = 0;
        for chunk in windows.chunks(batch_rows) {
            let flat = batch.as_slice_mut().unwrap_or_default();
            for ((slot, previous), &(r, c)) in flat.chunks_exact_mut(image_len).zip(&mut occluded).zip(chunk) {
                if let Some((pr, pc)) = previous.replace((r, c)) {
                    window.for_each_row(pr, pc, |range| slot[range.clone()].copy_from_slice(&base_flat[range]));
                }
                window.for_each_row(r, c, |range| slot[range].fill(value));
            }
            let points = batch.slice_axis(Axis(0), Slice::from(..chunk.len()));
            let mut outputs = call_model(model, points, &[key])?;
            for (&(r, c), y) in chunk.iter().zip(outputs.take(key)?.iter()) {
                let d = original - y.as_f64();
                let (r1, c1) = (r + self.size, c + self.size);
                diff[r * (w + 1) + c] += d;
                diff[r * (w + 1) + c1] -= d;
                diff[r1 * (w + 1) + c] -= d;
                diff[r1 * (w + 1) + c1] += d;
            }
            done += chunk.len();
            progress(Progress::new(Stage::OcclusionWindows, done, windows.len()));
        }

        prefix_sums_2d(&mut diff, w + 1);
        let mut mask = Vec::with_capacity(image_len);
        for row in diff.chunks_exact(w + 1).take(h) {
            for &v in &row[..w] {
                let v = F::from_f64_lossy(v);
                mask.extend(std::iter::repeat_n(v, channels));
            }
        }
        let mask = ArrayD::from_shape_vec(x.raw_dim(), mask)
            .map_err(|_| SaliencyError::internal("the occlusion mask does not have the input's size"))?;
        // Score differences of huge model outputs overflow.
        finite_result("occlusion mask", mask)
    }
}

/// A square window in a row-major `height x width x channels` image.
struct Window {
    size: usize,
    width: usize,
    channels: usize,
}

impl Window {
    /// Calls `f` with the flat index range of each image row the window at
    /// `(row, col)` covers (all channels; contiguous within a row).
    fn for_each_row(&self, row: usize, col: usize, mut f: impl FnMut(std::ops::Range<usize>)) {
        for r in row..row + self.size {
            let start = (r * self.width + col) * self.channels;
            f(start..start + self.size * self.channels);
        }
    }
}

/// In-place inclusive 2-D prefix sums of a row-major array with `width`
/// columns: `a[i][j]` becomes the sum of `a[..=i][..=j]`.
fn prefix_sums_2d(a: &mut [f64], width: usize) {
    let mut above = vec![0.0_f64; width];
    for row in a.chunks_exact_mut(width) {
        let mut run = 0.0;
        for (v, up) in row.iter_mut().zip(above.iter_mut()) {
            run += *v;
            *up += run;
            *v = *up;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_sums_match_direct_sums() {
        let mut a: Vec<f64> = (0..12).map(f64::from).collect();
        let orig = a.clone();
        prefix_sums_2d(&mut a, 4);
        for i in 0..3 {
            for j in 0..4 {
                let direct: f64 = (0..=i)
                    .flat_map(|ii| (0..=j).map(move |jj| (ii, jj)))
                    .map(|(ii, jj)| orig[ii * 4 + jj])
                    .sum();
                assert_eq!(a[i * 4 + j], direct);
            }
        }
    }
}
