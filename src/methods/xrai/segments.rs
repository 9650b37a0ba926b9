//! XRAI's default segmentation: Felzenszwalb segments at six scales, each
//! segment dilated by a disk (the reference's `_get_segments_felzenszwalb`).
#![allow(dead_code)]

use ndarray::{Array2, ArrayViewD};

use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::morphology::dilate_labels_disk;

use super::masks::MaskSet;

/// Felzenszwalb scales, one segmentation each.
pub(crate) const SCALES: [f64; 6] = [50.0, 100.0, 150.0, 250.0, 500.0, 1200.0];
/// Gaussian smoothing before segmenting.
pub(crate) const SIGMA: f64 = 0.8;
/// Segments smaller than this are merged into a neighbour.
pub(crate) const MIN_SIZE: usize = 150;
/// The size the image is resized to for segmenting.
pub(crate) const SIZE: usize = 224;
/// Radius of the disk every segment is dilated with.
pub(crate) const DILATION_RADIUS: usize = 5;

/// The reference's XRAI segments of an image (height x width x channels, or
/// height x width): boolean masks of the image's height x width, scale by
/// scale (50, 100, 150, 250, 500, 1200), label by label, each dilated by a
/// disk of radius 5.
pub fn get_segments_felzenszwalb<F: Float>(image: ArrayViewD<'_, F>) -> Result<Vec<Array2<bool>>> {
    let set = felzenszwalb_masks(image)?;
    Ok((0..set.len()).map(|m| set.to_dense(m)).collect())
}

/// [`get_segments_felzenszwalb`] as sparse masks.
pub(crate) fn felzenszwalb_masks<F: Float>(image: ArrayViewD<'_, F>) -> Result<MaskSet> {
    Err(SaliencyError::param(
        "segments",
        format!("{:?}", image.shape()),
        "automatic segmentation is not available yet; pass segments",
    ))
}

/// One mask per label of every label image (labels `0..=max`, as the
/// reference unpacks them), dilated by the disk.
pub(crate) fn masks_from_labels(label_maps: &[Array2<usize>], height: usize, width: usize) -> MaskSet {
    let mut set = MaskSet::new(height, width);
    for labels in label_maps {
        let flat: Vec<usize> = labels.iter().copied().collect();
        let n_labels = flat.iter().copied().max().map_or(0, |m| m + 1);
        for pixels in dilate_labels_disk(&flat, height, width, n_labels, DILATION_RADIUS) {
            set.push_sorted(pixels);
        }
    }
    set
}
