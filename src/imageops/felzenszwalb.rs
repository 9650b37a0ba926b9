//! Felzenszwalb and Huttenlocher's graph-based segmentation
//! ([IJCV 2004](https://doi.org/10.1023/B:VISI.0000022288.19776.77)), as
//! `skimage.segmentation.felzenszwalb` computes it.
//!
//! The image graph joins every pixel to its 8 neighbours; an edge weighs the
//! Euclidean distance between the two pixels' colours. Edges are visited in
//! ascending weight and two components merge when the edge is lighter than
//! both components' internal difference plus `scale / 255 / size`. Components
//! smaller than `min_size` are then merged along the same edge order, and
//! the labels are numbered by their first pixel in row-major order.
//!
//! The edge list and its order depend on the image only, so one
//! [`FelzenszwalbGraph`] serves any number of scales.

use ndarray::{Array2, ArrayD, ArrayView3, ArrayViewD, Ix3};

use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::gaussian::{BoundaryMode, DEFAULT_TRUNCATE, gaussian_filter};

/// `skimage.segmentation.felzenszwalb(image, scale, sigma, min_size)`: labels
/// (from 0) of an image of height x width x channels or height x width.
///
/// The image is taken as `f64`, smoothed by a Gaussian of `sigma` over the
/// two spatial axes (mode reflect), and segmented by a
/// [`FelzenszwalbGraph`]. Equal edge weights are visited in scikit-image's
/// listing order; scikit-image's unstable sort may visit them otherwise,
/// which can move a few boundary pixels.
///
/// ```
/// use ndarray::Array3;
/// use saliency::imageops::felzenszwalb;
/// let image = Array3::from_shape_fn((20, 30, 3), |(_, j, c)| if j < 15 { 0.0 } else { 1.0 + c as f64 });
/// let labels = felzenszwalb(&image, 100.0, 0.8, 20)?;
/// // The halves fall into different segments.
/// assert_eq!(labels[[0, 0]], labels[[19, 0]]);
/// assert_ne!(labels[[0, 0]], labels[[19, 29]]);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn felzenszwalb<'a, F: Float, D: ndarray::Dimension>(
    image: impl ndarray::AsArray<'a, F, D>,
    scale: f64,
    sigma: f64,
    min_size: usize,
) -> Result<Array2<usize>> {
    let image = image.into().into_dyn();
    crate::checks::check_image("image", &image)?;
    // Before the smoothing, whose own objections would hide this one.
    check_scale(scale)?;
    let image = crate::checks::image_view3("image", &image)?
        .mapv(|v| v.as_f64())
        .into_dyn();
    // Values near f64::MAX can overflow the smoothing (the symmetric kernel
    // adds two neighbours before weighting them); the graph would call the
    // result a non-finite input.
    let smoothed = crate::checks::finite_result("smoothed image", smooth(image.view(), sigma)?)?;
    let smoothed = smoothed
        .into_dimensionality::<Ix3>()
        .map_err(|_| SaliencyError::internal("the smoothed image lost its channel axis"))?;
    FelzenszwalbGraph::new(smoothed.view())?.segment(scale, min_size)
}

fn check_scale(scale: f64) -> Result<()> {
    if !scale.is_finite() || scale < 0.0 {
        return Err(SaliencyError::param("scale", scale, "must be finite and at least 0"));
    }
    Ok(())
}

/// The smoothing `felzenszwalb` applies: a Gaussian of `sigma` over the two
/// spatial axes of a height x width x channels image, mode reflect.
pub(crate) fn smooth(image: ArrayViewD<'_, f64>, sigma: f64) -> Result<ArrayD<f64>> {
    gaussian_filter(image, &[sigma, sigma, 0.0], BoundaryMode::Reflect, DEFAULT_TRUNCATE)
}

/// The sorted 8-connected edge list of a (smoothed) image, ready to be
/// segmented at any scale.
#[derive(Clone, Debug)]
pub struct FelzenszwalbGraph {
    height: usize,
    width: usize,
    /// Edge end points (flat pixel indices), in ascending weight.
    ends: Vec<[u32; 2]>,
    /// Edge weights, ascending.
    weights: Vec<f64>,
}

impl FelzenszwalbGraph {
    /// Builds the graph of an image that is already smoothed (height x width
    /// x channels).
    ///
    /// Edges are listed as scikit-image lists them (horizontal, vertical,
    /// down-right diagonal, up-right diagonal; row-major within each group)
    /// and sorted by weight; equal weights keep that order.
    ///
    /// ```
    /// use ndarray::Array3;
    /// use saliency::imageops::FelzenszwalbGraph;
    /// // Two flat halves: any scale splits them apart.
    /// let image = Array3::from_shape_fn((4, 6, 1), |(_, j, _)| if j < 3 { 0.0 } else { 1.0 });
    /// let labels = FelzenszwalbGraph::new(image.view())?.segment(1.0, 1)?;
    /// assert_eq!(labels.row(0).to_vec(), vec![0, 0, 0, 1, 1, 1]);
    /// # Ok::<(), saliency::SaliencyError>(())
    /// ```
    pub fn new(image: ArrayView3<'_, f64>) -> Result<Self> {
        let (height, width, channels) = image.dim();
        if image.is_empty() {
            return Err(SaliencyError::EmptyInput {
                what: "image",
                shape: image.shape().to_vec(),
            });
        }
        if height.saturating_mul(width) >= u32::MAX as usize {
            return Err(SaliencyError::param(
                "image",
                format!("{height} x {width}"),
                "has too many pixels",
            ));
        }
        if image.iter().any(|v| !v.is_finite()) {
            let count = image.iter().filter(|v| !v.is_finite()).count();
            let first_index = image.iter().position(|v| !v.is_finite()).unwrap_or(0);
            return Err(SaliencyError::NonFiniteInput {
                what: "image",
                count,
                first_index,
            });
        }
        let standard = image.as_standard_layout();
        let px = standard.as_slice().unwrap_or(&[]);
        let dist = |a: usize, b: usize| -> f64 {
            // sqrt of the channel sum of squared differences, summed in
            // channel order as NumPy does for a short axis.
            let mut s = 0.0;
            for c in 0..channels {
                let d = px[a * channels + c] - px[b * channels + c];
                s += d * d;
            }
            s.sqrt()
        };
        let idx = |i: usize, j: usize| i * width + j;
        let n_edges = height * (width - 1) + (height - 1) * width + 2 * (height - 1) * (width - 1);
        let mut ends = Vec::with_capacity(n_edges);
        let mut weights = Vec::with_capacity(n_edges);
        let mut push = |a: usize, b: usize| {
            weights.push(dist(a, b));
            ends.push([a as u32, b as u32]);
        };
        for i in 0..height {
            for j in 1..width {
                push(idx(i, j), idx(i, j - 1));
            }
        }
        for i in 1..height {
            for j in 0..width {
                push(idx(i, j), idx(i - 1, j));
            }
        }
        for i in 1..height {
            for j in 1..width {
                push(idx(i, j), idx(i - 1, j - 1));
            }
        }
        for i in 0..height.saturating_sub(1) {
            for j in 1..width {
                push(idx(i, j), idx(i + 1, j - 1));
            }
        }
        // Weights are non-negative, so their bit patterns sort like the
        // values; the edge index breaks ties in listing order.
        let order = radix_sort(
            weights
                .iter()
                .enumerate()
                .map(|(e, w)| (w.to_bits(), e as u32))
                .collect(),
        );
        let ends = order.iter().map(|&(_, e)| ends[e as usize]).collect();
        let weights = order.iter().map(|&(w, _)| f64::from_bits(w)).collect();
        Ok(FelzenszwalbGraph {
            height,
            width,
            ends,
            weights,
        })
    }

    /// Segments at one `scale` (larger: larger segments), merging segments
    /// smaller than `min_size` pixels afterwards. Labels run from 0, in
    /// row-major order of each segment's first pixel.
    pub fn segment(&self, scale: f64, min_size: usize) -> Result<Array2<usize>> {
        check_scale(scale)?;
        let n = self.height * self.width;
        let scale = scale / 255.0;
        let mut forest: Vec<u32> = (0..n as u32).collect();
        let mut size = vec![1u32; n];
        // The merge threshold of every root: its internal difference plus
        // scale / size, kept in single precision as scikit-image does, and
        // updated only when the root changes.
        let mut threshold = vec![scale as f32; n];
        // No threshold ever exceeds the largest one assigned so far; edges
        // come in ascending weight, so once one reaches it nothing merges.
        let mut ceiling = scale as f32;
        for (&[a, b], &w) in self.ends.iter().zip(&self.weights) {
            if w >= f64::from(ceiling) {
                break;
            }
            // Most late edges join pixels with the same parent: skip those
            // without walking the trees.
            if forest[a as usize] == forest[b as usize] {
                continue;
            }
            let Some((ra, rb)) = distinct_roots(&mut forest, a, b) else {
                continue;
            };
            if w < f64::from(threshold[ra].min(threshold[rb])) {
                let root = join(&mut forest, &mut size, ra, rb);
                threshold[root] = (w + scale / f64::from(size[root])) as f32;
                ceiling = ceiling.max(threshold[root]);
            }
        }
        // Sizes only grow, so an edge between pixels whose components are
        // already large enough can never merge anything: skip it without
        // walking the trees.
        flatten(&mut forest);
        let large: Vec<bool> = forest.iter().map(|&r| size[r as usize] as usize >= min_size).collect();
        // Once no component is small, nothing is left to merge.
        let mut small = (0..n)
            .filter(|&p| forest[p] as usize == p && (size[p] as usize) < min_size)
            .count();
        for &[a, b] in &self.ends {
            if small == 0 {
                break;
            }
            if large[a as usize] && large[b as usize] {
                continue;
            }
            let Some((ra, rb)) = distinct_roots(&mut forest, a, b) else {
                continue;
            };
            let (small_a, small_b) = ((size[ra] as usize) < min_size, (size[rb] as usize) < min_size);
            if small_a || small_b {
                let root = join(&mut forest, &mut size, ra, rb);
                small =
                    small + usize::from((size[root] as usize) < min_size) - usize::from(small_a) - usize::from(small_b);
            }
        }
        // Labels in order of each segment's first pixel, as scikit-image's
        // numbering of its roots (each its segment's smallest pixel) gives.
        flatten(&mut forest);
        let mut label_of_root = vec![usize::MAX; n];
        let mut next = 0;
        let mut labels = Vec::with_capacity(n);
        for &root in &forest {
            let slot = &mut label_of_root[root as usize];
            if *slot == usize::MAX {
                *slot = next;
                next += 1;
            }
            labels.push(*slot);
        }
        Array2::from_shape_vec((self.height, self.width), labels)
            .map_err(|_| SaliencyError::internal("the segment labels do not cover the image"))
    }
}

/// Sorts (key, payload) pairs by key, then payload (for distinct payloads,
/// a stable sort by key when the payloads ascend). A radix sort on the key's
/// upper 32 bits (three passes of 11 bits, so the buckets stay in cache;
/// digits shared by every key are skipped), then each run of equal upper
/// bits, short in practice, is sorted by the whole pair.
fn radix_sort(mut items: Vec<(u64, u32)>) -> Vec<(u64, u32)> {
    const BITS: u32 = 11;
    let mut buffer = items.clone();
    for shift in [32u32, 43, 54] {
        let digit = |k: u64| ((k >> shift) & ((1 << BITS) - 1)) as usize;
        let mut counts = vec![0usize; 1 << BITS];
        for &(k, _) in &items {
            counts[digit(k)] += 1;
        }
        if counts.contains(&items.len()) {
            continue;
        }
        let mut next = 0;
        for c in counts.iter_mut() {
            let n = *c;
            *c = next;
            next += n;
        }
        for &item in &items {
            let slot = &mut counts[digit(item.0)];
            buffer[*slot] = item;
            *slot += 1;
        }
        std::mem::swap(&mut items, &mut buffer);
    }
    let mut start = 0;
    while start < items.len() {
        let high = items[start].0 >> 32;
        let mut end = start + 1;
        while end < items.len() && items[end].0 >> 32 == high {
            end += 1;
        }
        if end - start > 1 {
            items[start..end].sort_unstable();
        }
        start = end;
    }
    items
}

/// Points every pixel straight at its root.
fn flatten(forest: &mut [u32]) {
    for p in 0..forest.len() as u32 {
        let root = find_root(forest, p);
        forest[p as usize] = root;
    }
}

/// The root of `p`'s tree, halving the path on the way (writing only where
/// it shortens the path).
fn find_root(forest: &mut [u32], mut p: u32) -> u32 {
    loop {
        let parent = forest[p as usize];
        if parent == p {
            return p;
        }
        let grandparent = forest[parent as usize];
        if grandparent == parent {
            return parent;
        }
        forest[p as usize] = grandparent;
        p = grandparent;
    }
}

/// Joins two roots, the smaller tree under the larger (which keeps the trees
/// shallow; which root survives does not change the segmentation), gives
/// it the sum of their sizes and returns it.
fn join(forest: &mut [u32], size: &mut [u32], ra: usize, rb: usize) -> usize {
    let (root, child) = if size[ra] >= size[rb] { (ra, rb) } else { (rb, ra) };
    forest[child] = root as u32;
    size[root] = size[ra] + size[rb];
    root
}

/// The roots of the trees of pixels `a` and `b`, or `None` when they are
/// in the same tree.
#[inline]
fn distinct_roots(forest: &mut [u32], a: u32, b: u32) -> Option<(usize, usize)> {
    let ra = find_root(forest, a);
    let rb = find_root(forest, b);
    (ra != rb).then_some((ra as usize, rb as usize))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array3;

    #[test]
    fn radix_sort_is_a_stable_sort() {
        let items: Vec<(u64, u32)> = (0..5000u32)
            .map(|i| ((u64::from(i) * 2_654_435_761) % 977 * 0x0001_0001_0001, i))
            .collect();
        let mut expected = items.clone();
        expected.sort_by_key(|&(k, _)| k);
        assert_eq!(radix_sort(items), expected);
    }

    #[test]
    fn edge_count_and_order() {
        let image = Array3::from_shape_fn((3, 4, 2), |(i, j, c)| (i * 4 + j) as f64 * (c + 1) as f64);
        let g = FelzenszwalbGraph::new(image.view()).unwrap();
        // 3*3 horizontal + 2*4 vertical + 2*2*3 diagonal = 29 edges.
        assert_eq!(g.weights.len(), 29);
        assert!(g.weights.windows(2).all(|w| w[0] <= w[1]));
        // The lightest edges are horizontal neighbours: |1 - 0| * sqrt(1 + 4).
        assert_eq!(g.ends[0], [1, 0]);
        assert!((g.weights[0] - 5.0_f64.sqrt()).abs() < 1e-15);
    }

    #[test]
    fn min_size_merges_small_segments() {
        // A flat image with one bright pixel: the flat part merges (weight 0
        // is below 255 / 255 / size), the bright pixel stays apart
        // (weight 10), until min_size 2 absorbs it.
        let mut image = Array3::zeros((3, 3, 1));
        image[[1, 1, 0]] = 10.0;
        let g = FelzenszwalbGraph::new(image.view()).unwrap();
        let split = g.segment(255.0, 1).unwrap();
        assert_eq!(split.iter().filter(|&&l| l == 1).count(), 1);
        assert_eq!(split[[1, 1]], 1);
        let merged = g.segment(255.0, 2).unwrap();
        assert!(merged.iter().all(|&l| l == 0));
    }
}
