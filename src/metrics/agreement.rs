//! How far two saliency maps of the same image agree: two methods on one
//! model, or one method on two models.
//!
//! - [`spearman`]: the Spearman rank correlation of the pixels' values, ties
//!   given their average rank, as `scipy.stats.spearmanr` computes it: 1 when
//!   both maps order the pixels alike, about 0 when the orders are unrelated.
//! - [`top_percent_iou`]: the intersection over union of the two maps' most
//!   salient `k` % of pixels.
//! - [`agreement_matrix`]: both, for every pair of several maps.
//!
//! Maps are compared as given: reduce masks with channels to `H x W` first
//! (for example with [`saliency_energy`](super::saliency_energy), which the
//! region scores use too).

use ndarray::{Array2, ArrayView2};

use crate::checks::check_finite;
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::percentile;

/// The top-k % set of `map`: the pixels at or above its `(100 - k)`-th
/// percentile (NumPy's linear rule), `map >= numpy.percentile(map, 100 - k)`.
/// Pixels tied at the threshold are all in, so a flat top (an XRAI region,
/// a clipped map) is neither split nor dropped; the set holds about `k` % of
/// the pixels, more when values tie at the threshold.
pub(crate) fn top_set<F: Float>(map: ArrayView2<'_, F>, top_percent: f64) -> Result<Array2<bool>> {
    if !(top_percent.is_finite() && top_percent > 0.0 && top_percent <= 100.0) {
        return Err(SaliencyError::param(
            "top_percent",
            top_percent,
            "must be above 0 and at most 100",
        ));
    }
    let mut values: Vec<F> = map.iter().copied().collect();
    let threshold = percentile(&mut values, 100.0 - top_percent)?;
    Ok(map.mapv(|v| v >= threshold))
}

fn check_map<F: Float>(map: &ArrayView2<'_, F>) -> Result<()> {
    if map.is_empty() {
        return Err(SaliencyError::EmptyInput {
            what: "saliency map",
            shape: map.shape().to_vec(),
        });
    }
    check_finite("saliency map", &map.view().into_dyn())
}

fn check_pair<F: Float>(a: &ArrayView2<'_, F>, b: &ArrayView2<'_, F>) -> Result<()> {
    check_map(a)?;
    check_map(b)?;
    if a.dim() != b.dim() {
        return Err(SaliencyError::ShapeMismatch {
            what: "second saliency map",
            expected: a.shape().to_vec(),
            actual: b.shape().to_vec(),
        });
    }
    Ok(())
}

/// The ranks (1 to n, in row-major order of the pixels) of a map's values,
/// tied values sharing the average of their ranks (`scipy.stats.rankdata`'s
/// default), minus their mean `(n + 1) / 2`. Errors on a constant map, which
/// ranks no pixel above another.
fn centred_ranks<F: Float>(map: &ArrayView2<'_, F>) -> Result<Vec<f64>> {
    let values: Vec<f64> = map.iter().map(|v| v.as_f64()).collect();
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let value = values[order[start]];
        // -0.0 and 0.0 are one value; total_cmp orders them apart but
        // adjacent, so the run still gathers both.
        let end = start + order[start..].iter().take_while(|&&i| values[i] == value).count();
        // Positions start..end hold ranks start + 1 ..= end; their mean:
        let average = (start + 1 + end) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = average;
        }
        start = end;
    }
    if start > 0 && ranks.iter().all(|&r| r == ranks[0]) {
        return Err(SaliencyError::param(
            "saliency map",
            "a constant map",
            "ranks no pixel above another, so its rank correlation is undefined; leave it out of the comparison",
        ));
    }
    let mean = (values.len() + 1) as f64 / 2.0;
    Ok(ranks.into_iter().map(|r| r - mean).collect())
}

fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let (mut ab, mut aa, mut bb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        ab += x * y;
        aa += x * x;
        bb += y * y;
    }
    (ab / (aa * bb).sqrt()).clamp(-1.0, 1.0)
}

fn iou(a: &Array2<bool>, b: &Array2<bool>) -> f64 {
    let (both, either) = a.iter().zip(b).fold((0usize, 0usize), |(n, u), (&x, &y)| {
        (n + usize::from(x && y), u + usize::from(x || y))
    });
    // Top sets are never empty (the maximum is always in), so `either > 0`.
    both as f64 / either.max(1) as f64
}

/// The Spearman rank correlation of two maps of the same shape, in
/// `[-1, 1]`: the Pearson correlation of their pixels' ranks, tied values
/// sharing their average rank, as `scipy.stats.spearmanr(a.ravel(), b.ravel())`.
///
/// Errors: empty or non-finite maps, shapes that differ, a constant map
/// (its rank correlation is undefined; SciPy returns NaN).
///
/// ```
/// use ndarray::array;
/// use saliency::metrics::spearman;
///
/// // Ranks [1, 2.5, 2.5, 4] and [1, 2, 3, 4]: rho = 4.5 / sqrt(4.5 * 5).
/// let a = array![[0.0, 1.0], [1.0, 2.0]];
/// let b = array![[0.0, 1.0], [2.0, 3.0]];
/// assert!((spearman(a.view(), b.view())? - 0.9486832980505138).abs() < 1e-15);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn spearman<F: Float>(a: ArrayView2<'_, F>, b: ArrayView2<'_, F>) -> Result<f64> {
    check_pair(&a, &b)?;
    Ok(correlation(&centred_ranks(&a)?, &centred_ranks(&b)?))
}

/// The intersection over union of the top `top_percent` % pixels of two
/// maps of the same shape, in `[0, 1]`. A map's top set is the pixels at or
/// above its `(100 - top_percent)`-th percentile (NumPy's linear rule): ties
/// at the threshold are all in, so a flat top is never split or dropped.
///
/// Errors: `top_percent` outside `(0, 100]`, empty or non-finite maps,
/// shapes that differ.
///
/// ```
/// use ndarray::array;
/// use saliency::metrics::top_percent_iou;
///
/// // The top half: {1, 3} and {2, 3} (flat indices); they share one of three.
/// let a = array![[0.0, 5.0], [1.0, 9.0]];
/// let b = array![[0.0, 1.0], [5.0, 9.0]];
/// assert_eq!(top_percent_iou(a.view(), b.view(), 50.0)?, 1.0 / 3.0);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn top_percent_iou<F: Float>(a: ArrayView2<'_, F>, b: ArrayView2<'_, F>, top_percent: f64) -> Result<f64> {
    check_pair(&a, &b)?;
    Ok(iou(&top_set(a, top_percent)?, &top_set(b, top_percent)?))
}

/// The pairwise agreement of several maps, as [`agreement_matrix`] returns
/// it: entry `[i, j]` compares map `i` with map `j`; both matrices are
/// symmetric with ones on the diagonal.
#[derive(Clone, Debug, PartialEq)]
pub struct Agreement {
    /// [`spearman`] of each pair.
    pub spearman: Array2<f64>,
    /// [`top_percent_iou`] of each pair.
    pub top_iou: Array2<f64>,
}

/// [`spearman`] and [`top_percent_iou`] for every pair of `maps` (all of one
/// shape), each map ranked once.
///
/// Errors: no maps, and those of [`spearman`] and [`top_percent_iou`].
///
/// ```
/// use ndarray::array;
/// use saliency::metrics::agreement_matrix;
///
/// let a = array![[0.0, 1.0], [2.0, 3.0]];
/// let reversed = a.mapv(|v| 3.0 - v);
/// let m = agreement_matrix(&[a.view(), reversed.view(), a.view()], 25.0)?;
/// assert_eq!(m.spearman[[0, 1]], -1.0);
/// assert_eq!(m.spearman[[0, 2]], 1.0);
/// assert_eq!(m.top_iou[[0, 1]], 0.0);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn agreement_matrix<F: Float>(maps: &[ArrayView2<'_, F>], top_percent: f64) -> Result<Agreement> {
    let first = maps.first().ok_or(SaliencyError::EmptyInput {
        what: "saliency maps",
        shape: vec![0],
    })?;
    for map in maps {
        check_pair(first, map)?;
    }
    let ranks = maps.iter().map(centred_ranks).collect::<Result<Vec<_>>>()?;
    let tops = maps
        .iter()
        .map(|m| top_set(m.view(), top_percent))
        .collect::<Result<Vec<_>>>()?;
    let n = maps.len();
    let mut spearman = Array2::<f64>::eye(n);
    let mut top_iou = Array2::<f64>::eye(n);
    for i in 0..n {
        for j in i + 1..n {
            let rho = correlation(&ranks[i], &ranks[j]);
            let overlap = iou(&tops[i], &tops[j]);
            spearman[[i, j]] = rho;
            spearman[[j, i]] = rho;
            top_iou[[i, j]] = overlap;
            top_iou[[j, i]] = overlap;
        }
    }
    Ok(Agreement { spearman, top_iou })
}
