//! XRAI's default segmentation: Felzenszwalb segments at six scales, each
//! segment dilated by a disk (the reference's `_get_segments_felzenszwalb`).

use ndarray::{Array2, ArrayViewD, AsArray, Axis, Dimension, Ix2, Ix3};

use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::felzenszwalb::{FelzenszwalbGraph, smooth};
use crate::imageops::morphology::dilate_labels_disk;
use crate::imageops::resize::{AntiAliasing, ResizeMode, ResizeOptions, resize};

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
/// scale, label by label, each dilated by a disk of radius 5.
///
/// As PAIR saliency's `_get_segments_felzenszwalb`: the image is rescaled to
/// [-1, 1], resized to 224 x 224 (bicubic, anti-aliased, constant mode),
/// segmented by [`felzenszwalb`](crate::imageops::felzenszwalb::felzenszwalb)
/// at scales 50, 100, 150, 250, 500 and 1200 (sigma 0.8, minimum size 150),
/// and the label images are resized back with nearest-neighbour sampling.
/// The scales run in parallel (feature `rayon`); the result does not depend
/// on the thread count.
///
/// ```
/// use ndarray::Array3;
/// let image = Array3::<f32>::from_shape_fn((32, 32, 3), |(i, j, c)| ((i / 8 + j / 8 + c) % 3) as f32);
/// let masks = saliency::get_segments_felzenszwalb(&image)?;
/// assert!(masks.iter().all(|m| m.dim() == (32, 32)));
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn get_segments_felzenszwalb<'a, F: Float, D: Dimension>(
    image: impl AsArray<'a, F, D>,
) -> Result<Vec<Array2<bool>>> {
    let set = felzenszwalb_masks(image.into().into_dyn())?;
    Ok((0..set.len()).map(|m| set.to_dense(m)).collect())
}

/// [`get_segments_felzenszwalb`] as sparse masks.
pub(crate) fn felzenszwalb_masks<F: Float>(image: ArrayViewD<'_, F>) -> Result<MaskSet> {
    // The labels' call checks the rank before the shape is read.
    let label_maps = get_segment_labels_felzenszwalb(image.view())?;
    let (height, width) = (image.shape()[0], image.shape()[1]);
    Ok(masks_from_labels(&label_maps, height, width))
}

/// The label images behind [`get_segments_felzenszwalb`], one per scale, at
/// the image's height x width (labels from 0, before dilation).
///
/// ```
/// use ndarray::Array2;
/// let image = Array2::<f64>::from_shape_fn((40, 40), |(i, j)| if i < 20 && j < 20 { 1.0 } else { 0.0 });
/// let labels = saliency::get_segment_labels_felzenszwalb(&image)?;
/// assert_eq!(labels.len(), 6);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn get_segment_labels_felzenszwalb<'a, F: Float, D: Dimension>(
    image: impl AsArray<'a, F, D>,
) -> Result<Vec<Array2<usize>>> {
    let image = image.into().into_dyn();
    crate::checks::check_image("image", &image)?;
    let (height, width) = (image.shape()[0], image.shape()[1]);
    // Rescale to [-1, 1] in the image's own float type, as NumPy does.
    let (lo, hi) = crate::imageops::min_max_of(&image);
    let two = F::from_f64_lossy(2.0);
    // A range wider than the float type (max - min overflows, where the
    // reference's image becomes NaN) is rescaled from halves: the same unit
    // values, as halving is exact. Ordinary images take the reference's
    // arithmetic.
    let (lo, hi, scale) = if (hi - lo).is_finite() {
        (lo, hi, F::one())
    } else {
        (lo / two, hi / two, F::one() / two)
    };
    let span = hi - lo;
    let normalised = image.mapv(|v| {
        // A constant image (the reference divides by zero) is one segment
        // either way; map it to -1.
        let unit = if span > F::zero() {
            (v * scale - lo) / span
        } else {
            F::zero()
        };
        unit * two - F::one()
    });
    let options = ResizeOptions::default()
        .order(3)
        .mode(ResizeMode::Constant)
        .preserve_range(true)
        .anti_aliasing(AntiAliasing::On);
    let resized = resize(normalised.view(), &[SIZE, SIZE], &options)?;
    let mut resized = resized.mapv(|v| v.as_f64());
    if resized.ndim() == 2 {
        resized = resized.insert_axis(Axis(2));
    }
    let smoothed = smooth(resized.view(), SIGMA)?;
    let smoothed = smoothed
        .into_dimensionality::<Ix3>()
        .map_err(|_| SaliencyError::internal("the smoothed image lost its channel axis"))?;
    let graph = FelzenszwalbGraph::new(smoothed.view())?;
    let back = ResizeOptions::default()
        .order(0)
        .mode(ResizeMode::Constant)
        .preserve_range(true)
        .anti_aliasing(AntiAliasing::Off);
    let one_scale = |scale: &f64| -> Result<Array2<usize>> {
        let labels = graph.segment(*scale, MIN_SIZE)?;
        if (height, width) == (SIZE, SIZE) {
            // Nearest-neighbour resizing to the same shape is the identity.
            return Ok(labels);
        }
        let as_float = labels.mapv(|l| l as f64).into_dyn();
        let sized = resize(as_float.view(), &[height, width], &back)?;
        // Nearest-neighbour sampling keeps the integer values exactly.
        sized
            .mapv(|v| v as usize)
            .into_dimensionality::<Ix2>()
            .map_err(|_| SaliencyError::internal("resized segment labels are not an image"))
    };
    // The first error in scale order, whatever the thread count.
    crate::parallel::map_items(&SCALES, one_scale).into_iter().collect()
}

/// One mask per label of every label image (labels `0..=max`, as the
/// reference unpacks them), dilated by the disk.
pub(crate) fn masks_from_labels(label_maps: &[Array2<usize>], height: usize, width: usize) -> MaskSet {
    let mut set = MaskSet::new(height, width);
    for labels in label_maps {
        let copy: Vec<usize>;
        let flat: &[usize] = match labels.as_slice() {
            Some(flat) => flat,
            None => {
                copy = labels.iter().copied().collect();
                &copy
            }
        };
        let n_labels = flat.iter().copied().max().map_or(0, |m| m + 1);
        for pixels in dilate_labels_disk(flat, height, width, n_labels, DILATION_RADIUS) {
            set.push_sorted(pixels);
        }
    }
    set
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    fn image() -> Array3<f32> {
        Array3::from_shape_fn((60, 70, 3), |(i, j, c)| {
            let (i, j, c) = (i as f32, j as f32, c as f32);
            (0.3 * i + 0.1 * c).sin() * (0.2 * j).cos() + if i > 30.0 && j < 35.0 { 0.8 } else { 0.0 }
        })
    }

    #[test]
    fn masks_are_dilated_labels() {
        let x = image();
        let labels = get_segment_labels_felzenszwalb(x.view().into_dyn()).unwrap();
        let masks = get_segments_felzenszwalb(x.view().into_dyn()).unwrap();
        let n: usize = labels.iter().map(|l| l.iter().max().unwrap() + 1).sum();
        assert_eq!(masks.len(), n);
        // Every mask contains its own segment.
        let first = labels[0].mapv(|l| l == 0);
        assert!(first.iter().zip(masks[0].iter()).all(|(&s, &m)| !s || m));
    }

    #[test]
    fn result_does_not_depend_on_thread_count() {
        let x = image();
        let many = felzenszwalb_masks(x.view().into_dyn()).unwrap();
        let one = crate::parallel::with_threads(1, || felzenszwalb_masks(x.view().into_dyn()).unwrap());
        assert_eq!(many, one);
    }
}
