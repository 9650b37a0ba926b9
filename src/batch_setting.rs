//! How many rows (path points, occluded copies) a method sends the model in
//! one call: a fixed count, or as many as fit in a memory budget.

use crate::error::{Result, SaliencyError};

/// The batch setting of [`IntegratedGradients`](crate::IntegratedGradients)
/// and [`Occlusion`](crate::Occlusion): how many rows go to the model in one
/// call.
///
/// A count in rows ignores how big the rows are: 16 copies of a 224 x 224 x 3
/// `f32` image take 9.6 MB, of a 448 x 448 x 3 image 38.5 MB. A byte budget
/// gives as many rows as fit in it, so the batch (and the model's outputs of
/// the same size) stays within the cache or memory it was meant for, whatever
/// the image size. A budget smaller than one row sends one row per call.
///
/// The setting changes only how rows are grouped into model calls: masks are
/// bit-identical for every setting (with a model whose rows do not depend on
/// each other, as every model's should not).
///
/// ```
/// use saliency::BatchSize;
///
/// // 224 x 224 x 3 f32 rows take 602,112 bytes each.
/// let row = 224 * 224 * 3 * 4;
/// assert_eq!(BatchSize::Bytes(4 << 20).rows(row), 6);
/// assert_eq!(BatchSize::Bytes(1000).rows(row), 1); // at least one row
/// assert_eq!(BatchSize::Count(16).rows(row), 16);
/// assert!(BatchSize::Bytes(0).check().is_err());
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BatchSize {
    /// At most this many rows per model call (at least 1).
    Count(usize),
    /// As many rows per model call as fit in this many bytes (rows x values
    /// per row x bytes per value; at least 1), and never fewer than one row.
    Bytes(usize),
}

impl BatchSize {
    /// Checks the setting: a count or a budget of 0 is an error (the
    /// setting that names it is `batch_size` or `batch_bytes`).
    pub fn check(self) -> Result<()> {
        match self {
            BatchSize::Count(0) => Err(SaliencyError::param("batch_size", 0, "must be at least 1")),
            BatchSize::Bytes(0) => Err(SaliencyError::param(
                "batch_bytes",
                0,
                "must be at least 1 (a budget below one row's size sends one row per call)",
            )),
            _ => Ok(()),
        }
    }

    /// The rows per model call for rows of `row_bytes` bytes each: the count,
    /// or the rows the budget holds, at least 1.
    pub fn rows(self, row_bytes: usize) -> usize {
        match self {
            BatchSize::Count(n) => n,
            BatchSize::Bytes(b) => (b / row_bytes.max(1)).max(1),
        }
    }

    /// [`rows`](Self::rows) for rows of `values` values of type `F`.
    pub(crate) fn rows_of<F>(self, values: usize) -> usize {
        self.rows(values.saturating_mul(std::mem::size_of::<F>()))
    }

    /// The most rows one call can carry: the count, or for a budget the rows
    /// of the smallest input (one value of type `F` per row).
    pub(crate) fn max_rows<F>(self) -> usize {
        self.rows_of::<F>(1)
    }
}

impl From<usize> for BatchSize {
    /// A count of rows.
    fn from(count: usize) -> Self {
        BatchSize::Count(count)
    }
}

/// The batch setters and getters of a method with a `batch: BatchSize`
/// field, in an `impl<F: Float>` block; `$rows` names its rows in the docs
/// ("path points").
macro_rules! batch_accessors {
    ($rows:literal) => {
        #[doc = concat!("Maximum number of ", $rows, " per model call (at least 1); the same as")]
        /// [`batch`](Self::batch)`(BatchSize::Count(batch_size))`.
        #[must_use = "a setter returns the changed method; assign or chain it"]
        pub fn batch_size(mut self, batch_size: usize) -> Self {
            self.batch = $crate::BatchSize::Count(batch_size);
            self
        }

        #[doc = concat!("The ", $rows, " per model call as a memory budget: as many as fit in")]
        /// `bytes` bytes (at least 1), and at least one per call; the same as
        /// [`batch`](Self::batch)`(BatchSize::Bytes(bytes))`.
        #[must_use = "a setter returns the changed method; assign or chain it"]
        pub fn batch_bytes(mut self, bytes: usize) -> Self {
            self.batch = $crate::BatchSize::Bytes(bytes);
            self
        }

        #[doc = concat!("The batch setting: a count of ", $rows, " or a byte budget (default")]
        /// [`DEFAULT_BATCH`](Self::DEFAULT_BATCH)). The mask does not depend
        /// on it.
        #[must_use = "a setter returns the changed method; assign or chain it"]
        pub fn batch(mut self, batch: $crate::BatchSize) -> Self {
            self.batch = batch;
            self
        }

        #[doc = concat!("The most ", $rows, " per model call: the count set with")]
        /// [`batch_size`](Self::batch_size), or for a byte budget the most it
        /// can give (rows of a single value). The rows per call for an input
        /// of `n` values are
        /// [`batch_rows`](crate::CoreSaliency::batch_rows)`(n)`.
        pub fn get_batch_size(&self) -> usize {
            self.batch.max_rows::<F>()
        }

        /// The batch setting.
        pub fn get_batch(&self) -> $crate::BatchSize {
            self.batch
        }
    };
}

pub(crate) use batch_accessors;
