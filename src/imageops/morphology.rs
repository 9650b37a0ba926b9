//! Binary dilation and the disk footprint, as `skimage.morphology.disk` and
//! `skimage.morphology.dilation` / `scipy.ndimage.binary_dilation` compute
//! them for boolean images.

use ndarray::{Array2, ArrayView2};

use crate::error::{Result, SaliencyError};

/// The disk footprint of `skimage.morphology.disk(radius)`: a
/// (2 radius + 1)-square boolean array, true where `dy^2 + dx^2 <= radius^2`.
///
/// Errors (instead of aborting) when the footprint cannot be allocated.
///
/// ```
/// let d = saliency::imageops::disk(1)?;
/// assert_eq!(d.iter().filter(|&&b| b).count(), 5); // a plus sign
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn disk(radius: usize) -> Result<Array2<bool>> {
    let too_large = || SaliencyError::param("radius", radius, "gives a footprint too large to allocate");
    let n = radius
        .checked_mul(2)
        .and_then(|d| d.checked_add(1))
        .ok_or_else(too_large)?;
    let r = i64::try_from(radius).map_err(|_| too_large())?;
    let mut values =
        crate::checks::try_vec_with_capacity(n.checked_mul(n).ok_or_else(too_large)?).map_err(|_| too_large())?;
    // n fits in memory squared, so every coordinate and r * r fit in i64.
    for i in 0..n as i64 {
        values.extend((0..n as i64).map(|j| (i - r) * (i - r) + (j - r) * (j - r) <= r * r));
    }
    Array2::from_shape_vec((n, n), values).map_err(|_| too_large())
}

/// Binary dilation of `mask` by a centred `footprint` (odd side lengths):
/// a pixel is set when the footprint, centred on it, meets a set pixel of
/// the mask. Pixels outside the image count as unset.
///
/// For a footprint symmetric about its centre, such as [`disk`], this equals
/// `skimage.morphology.dilation` (whose default border mode, `reflect`, never
/// adds a pixel for such footprints) and `scipy.ndimage.binary_dilation`.
///
/// ```
/// use ndarray::Array2;
/// use saliency::imageops::{binary_dilation, disk};
/// let mut dot = Array2::from_elem((5, 5), false);
/// dot[[2, 2]] = true;
/// let grown = binary_dilation(dot.view(), disk(1)?.view())?;
/// assert_eq!(grown.iter().filter(|&&b| b).count(), 5);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn binary_dilation(mask: ArrayView2<'_, bool>, footprint: ArrayView2<'_, bool>) -> Result<Array2<bool>> {
    let (fh, fw) = footprint.dim();
    if fh % 2 == 0 || fw % 2 == 0 {
        return Err(SaliencyError::param(
            "footprint",
            format!("{fh} x {fw}"),
            "must have odd side lengths",
        ));
    }
    let (h, w) = mask.dim();
    let (cy, cx) = (fh / 2, fw / 2);
    let offsets: Vec<(isize, isize)> = footprint
        .indexed_iter()
        .filter(|(_, b)| **b)
        .map(|((i, j), _)| (i as isize - cy as isize, j as isize - cx as isize))
        .collect();
    let mut out = Array2::from_elem((h, w), false);
    for ((i, j), &set) in mask.indexed_iter() {
        if !set {
            continue;
        }
        // A set pixel reaches the footprint mirrored about the centre.
        for &(dy, dx) in &offsets {
            let (y, x) = (i as isize - dy, j as isize - dx);
            if y >= 0 && x >= 0 && (y as usize) < h && (x as usize) < w {
                out[[y as usize, x as usize]] = true;
            }
        }
    }
    Ok(out)
}

/// Every label of a row-major `height` x `width` label image (labels
/// `0..n_labels`) dilated by a disk of `radius`, as ascending flat pixel
/// lists: the same pixels as [`binary_dilation`] of `labels == l` with
/// [`disk`].
///
/// Works on runs: a label's horizontal runs, widened by the disk's half-width
/// at each vertical offset, are merged row by row, so the cost follows the
/// number of runs and output pixels rather than the segments' bounding boxes.
pub(crate) fn dilate_labels_disk(
    labels: &[usize],
    height: usize,
    width: usize,
    n_labels: usize,
    radius: usize,
) -> Vec<Vec<u32>> {
    // Runs (row, first column, last column) of every label, in row order.
    let mut runs: Vec<Vec<(usize, usize, usize)>> = vec![Vec::new(); n_labels];
    for (i, row) in labels.chunks_exact(width).enumerate() {
        let mut start = 0;
        for j in 1..=width {
            if j == width || row[j] != row[start] {
                if let Some(r) = runs.get_mut(row[start]) {
                    r.push((i, start, j - 1));
                }
                start = j;
            }
        }
    }
    // Half-width of the disk's row at vertical offset dy.
    let r = radius as i64;
    let half: Vec<usize> = (0..=radius)
        .map(|dy| {
            let dy = dy as i64;
            let mut k = 0;
            while (k + 1) * (k + 1) + dy * dy <= r * r {
                k += 1;
            }
            k as usize
        })
        .collect();
    let one = |runs: &Vec<(usize, usize, usize)>| -> Vec<u32> {
        let (Some(first), Some(last)) = (runs.first(), runs.last()) else {
            return Vec::new();
        };
        let (r0, r1) = (first.0, last.0);
        // Index of the first run of every row r0..=r1 (and one past the end).
        let mut row_start = vec![0usize; r1 - r0 + 2];
        for &(row, _, _) in runs {
            row_start[row - r0 + 1] += 1;
        }
        for k in 1..row_start.len() {
            row_start[k] += row_start[k - 1];
        }
        let mut out = Vec::new();
        let mut spans: Vec<(usize, usize)> = Vec::new();
        for y in r0.saturating_sub(radius)..=(r1 + radius).min(height - 1) {
            spans.clear();
            let lo = y.saturating_sub(radius).max(r0);
            let hi = (y + radius).min(r1);
            if lo > hi {
                continue;
            }
            for &(row, a, b) in &runs[row_start[lo - r0]..row_start[hi - r0 + 1]] {
                let h = half[row.abs_diff(y)];
                spans.push((a.saturating_sub(h), (b + h).min(width - 1)));
            }
            spans.sort_unstable();
            let mut current: Option<(usize, usize)> = None;
            for &(a, b) in &spans {
                match current {
                    Some((ca, cb)) if a <= cb + 1 => current = Some((ca, cb.max(b))),
                    _ => {
                        if let Some((ca, cb)) = current {
                            out.extend((y * width + ca) as u32..=(y * width + cb) as u32);
                        }
                        current = Some((a, b));
                    }
                }
            }
            if let Some((ca, cb)) = current {
                out.extend((y * width + ca) as u32..=(y * width + cb) as u32);
            }
        }
        out
    };
    crate::parallel::map_items(&runs, one)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn disk_five_matches_skimage_row_widths() {
        // skimage.morphology.disk(5) row sums: 1 7 9 9 9 11 9 9 9 7 1.
        let d = disk(5).unwrap();
        let rows: Vec<usize> = d.rows().into_iter().map(|r| r.iter().filter(|&&b| b).count()).collect();
        assert_eq!(rows, vec![1, 7, 9, 9, 9, 11, 9, 9, 9, 7, 1]);
    }

    #[test]
    fn label_dilation_equals_dense_dilation() {
        let (h, w) = (23, 31);
        let labels: Vec<usize> = (0..h * w)
            .map(|p| {
                let (i, j) = (p / w, p % w);
                ((i * 7 + j * 3) / 17 + (i * j) % 3) % 5
            })
            .collect();
        for radius in [0, 3, 5] {
            let fp = disk(radius).unwrap();
            let sparse = dilate_labels_disk(&labels, h, w, 6, radius);
            for (l, pixels) in sparse.iter().enumerate() {
                let mask = Array2::from_shape_fn((h, w), |(i, j)| labels[i * w + j] == l);
                let dense = binary_dilation(mask.view(), fp.view()).unwrap();
                let expected: Vec<u32> = dense
                    .iter()
                    .enumerate()
                    .filter(|(_, b)| **b)
                    .map(|(p, _)| p as u32)
                    .collect();
                assert_eq!(pixels, &expected, "label {l}, radius {radius}");
            }
        }
    }
}
