//! Segment masks stored sparsely: each mask is the sorted list of the flat
//! (row-major) indices of its pixels, all masks in one buffer.
//!
//! A dilated segment covers a few percent of the image, so the lists are far
//! smaller than dense boolean masks, and XRAI's per-mask work is
//! proportional to the mask, not to the image.

use ndarray::{Array2, ArrayView2};

/// Masks over an image of `height` x `width` pixels, in compressed rows:
/// mask `m` holds `pixels[offsets[m]..offsets[m + 1]]`, ascending.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct MaskSet {
    pub(crate) height: usize,
    pub(crate) width: usize,
    offsets: Vec<usize>,
    pixels: Vec<u32>,
}

impl MaskSet {
    /// An empty set for an image of the given size.
    pub(crate) fn new(height: usize, width: usize) -> Self {
        MaskSet {
            height,
            width,
            offsets: vec![0],
            pixels: Vec::new(),
        }
    }

    /// Number of pixels of the image.
    pub(crate) fn image_len(&self) -> usize {
        self.height * self.width
    }

    /// Number of masks.
    pub(crate) fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// The pixels of mask `m`, ascending.
    pub(crate) fn mask(&self, m: usize) -> &[u32] {
        &self.pixels[self.offsets[m]..self.offsets[m + 1]]
    }

    /// Appends a mask given by its ascending pixel indices.
    pub(crate) fn push_sorted(&mut self, pixels: impl IntoIterator<Item = u32>) {
        self.pixels.extend(pixels);
        self.offsets.push(self.pixels.len());
    }

    /// Appends a dense boolean mask (of this set's size, checked by the caller).
    pub(crate) fn push_dense(&mut self, mask: ArrayView2<'_, bool>) {
        match mask.as_slice() {
            Some(flat) => self.push_sorted(flat.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| i as u32)),
            None => self.push_sorted(mask.iter().enumerate().filter(|(_, b)| **b).map(|(i, _)| i as u32)),
        }
    }

    /// Mask `m` as a dense boolean image.
    pub(crate) fn to_dense(&self, m: usize) -> Array2<bool> {
        dense(self.height, self.width, self.mask(m))
    }

    /// For every pixel, the masks containing it (compressed rows, indexed by
    /// pixel): the inverse of this set.
    pub(crate) fn inverse(&self) -> (Vec<usize>, Vec<u32>) {
        let n = self.image_len();
        let mut counts = vec![0usize; n + 1];
        for &p in &self.pixels {
            counts[p as usize + 1] += 1;
        }
        for i in 0..n {
            counts[i + 1] += counts[i];
        }
        let offsets = counts.clone();
        let mut next = counts;
        let mut masks = vec![0u32; self.pixels.len()];
        for m in 0..self.len() {
            for &p in self.mask(m) {
                let slot = &mut next[p as usize];
                masks[*slot] = m as u32;
                *slot += 1;
            }
        }
        (offsets, masks)
    }
}

/// A dense boolean image with the given flat pixels set.
pub(crate) fn dense(height: usize, width: usize, pixels: &[u32]) -> Array2<bool> {
    let mut out = Array2::from_elem((height, width), false);
    if let Some(flat) = out.as_slice_mut() {
        for &p in pixels {
            flat[p as usize] = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dense_round_trip_and_inverse() {
        let a = Array2::from_shape_fn((3, 4), |(i, j)| i == j);
        let b = Array2::from_shape_fn((3, 4), |(i, _)| i == 1);
        let mut set = MaskSet::new(3, 4);
        set.push_dense(a.view());
        set.push_dense(b.t().t());
        assert_eq!(set.len(), 2);
        assert_eq!(set.mask(0), &[0, 5, 10]);
        assert_eq!(set.to_dense(1), b);
        let (off, masks) = set.inverse();
        // Pixel 5 (row 1, column 1) is in both masks; pixel 4 only in mask 1.
        assert_eq!(&masks[off[5]..off[6]], &[0, 1]);
        assert_eq!(&masks[off[4]..off[5]], &[1]);
        assert_eq!(off[3], off[4]);
    }
}
