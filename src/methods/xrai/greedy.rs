//! The two XRAI ranking algorithms over sparse masks.
//!
//! Both reproduce the reference's choices exactly: gains are means computed
//! with NumPy's summation order over the same pixels in the same order, ties
//! go to the earlier mask, and the final ordering is a stable sort.

use crate::core::{Progress, Stage};
use crate::float::Float;
use crate::imageops::sum;

use super::masks::MaskSet;

/// What a ranking produces: the map of gains and the regions in order of
/// importance (disjoint pixel lists, the uncovered rest last).
pub(crate) struct Ranking<F> {
    /// One gain per pixel, row-major.
    pub(crate) attribution: Vec<F>,
    /// Regions, most important first.
    pub(crate) regions: Vec<Vec<u32>>,
}

/// Mean of `attr` over `pixels` (ascending), as NumPy's `attr[mask].mean()`,
/// using `scratch` for the gathered values; minus infinity when empty, like
/// the reference's gain of an empty difference.
fn density<F: Float>(attr: &[F], pixels: impl Iterator<Item = u32>, scratch: &mut Vec<F>) -> F {
    scratch.clear();
    scratch.extend(pixels.map(|p| attr[p as usize]));
    if scratch.is_empty() {
        F::neg_infinity()
    } else {
        sum(scratch) / F::from_f64_lossy(scratch.len() as f64)
    }
}

/// The full algorithm: repeatedly add the mask with the highest mean
/// attribution over the pixels it would newly cover, until `area_threshold`
/// of the image is covered.
///
/// Only masks that share a pixel with the newly covered region change their
/// gain, so only those are recomputed after each step.
pub(crate) fn full<F: Float>(
    attr: &[F],
    masks: &MaskSet,
    area_threshold: f64,
    min_pixel_diff: usize,
    progress: &mut dyn FnMut(Progress),
) -> Ranking<F> {
    let n_pixels = attr.len();
    let n_masks = masks.len();
    let (inv_offsets, inv_masks) = masks.inverse();
    let mut covered = vec![false; n_pixels];
    let mut n_covered = 0usize;
    let mut output = vec![F::neg_infinity(); n_pixels];
    let mut scratch = Vec::new();

    // Uncovered pixel count and gain of every mask.
    let mut count: Vec<usize> = (0..n_masks).map(|m| masks.mask(m).len()).collect();
    let mut gain: Vec<F> = (0..n_masks)
        .map(|m| density(attr, masks.mask(m).iter().copied(), &mut scratch))
        .collect();
    // Every mask's uncovered pixels, ascending, in one buffer.
    let mut starts = Vec::with_capacity(n_masks);
    let mut uncovered: Vec<u32> = Vec::new();
    for m in 0..n_masks {
        starts.push(uncovered.len());
        uncovered.extend_from_slice(masks.mask(m));
    }
    let mut remaining: Vec<usize> = (0..n_masks).collect();
    let mut alive = vec![true; n_masks];
    let mut stamp = vec![usize::MAX; n_masks];
    let mut touched = Vec::new();
    let mut trace: Vec<(Vec<u32>, F)> = Vec::new();

    let mut area = 0.0_f64;
    while area <= area_threshold {
        // Drop masks adding too little, then pick the first best gain.
        let mut best: Option<(usize, F)> = None;
        remaining.retain(|&m| {
            if count[m] < min_pixel_diff {
                alive[m] = false;
                return false;
            }
            if best.is_none_or(|(_, g)| gain[m] > g) && gain[m] > F::neg_infinity() {
                best = Some((m, gain[m]));
            }
            true
        });
        // With min_pixel_diff 0 only empty differences may remain; the
        // reference then fails, here the loop ends.
        let Some((chosen, best_gain)) = best else { break };

        let added: Vec<u32> = uncovered[starts[chosen]..starts[chosen] + count[chosen]].to_vec();
        for &p in &added {
            covered[p as usize] = true;
            output[p as usize] = best_gain;
        }
        n_covered += added.len();
        area = n_covered as f64 / n_pixels as f64;
        alive[chosen] = false;
        remaining.retain(|&m| m != chosen);

        // Recompute the masks that lost pixels to this step.
        let step = trace.len();
        touched.clear();
        for &p in &added {
            let p = p as usize;
            for &m in &inv_masks[inv_offsets[p]..inv_offsets[p + 1]] {
                let m = m as usize;
                if alive[m] && stamp[m] != step {
                    stamp[m] = step;
                    touched.push(m);
                }
            }
        }
        for &m in &touched {
            // Compact the mask's list to its uncovered pixels (order kept),
            // so later recomputations only see what is left.
            let list = &mut uncovered[starts[m]..starts[m] + count[m]];
            let mut kept = 0;
            for k in 0..list.len() {
                let p = list[k];
                if !covered[p as usize] {
                    list[kept] = p;
                    kept += 1;
                }
            }
            gain[m] = density(attr, list[..kept].iter().copied(), &mut scratch);
            count[m] = kept;
        }
        trace.push((added, best_gain));
        progress(Progress::new(Stage::XraiMasks, n_covered, n_pixels));
    }
    finish(attr, output, trace, &mut scratch)
}

/// The fast algorithm: masks ranked once by their own mean attribution,
/// overlaps ignored in the ranking, then added in that order.
pub(crate) fn fast<F: Float>(
    attr: &[F],
    masks: &MaskSet,
    min_pixel_diff: usize,
    progress: &mut dyn FnMut(Progress),
) -> Ranking<F> {
    let n_pixels = attr.len();
    let n_masks = masks.len();
    let mut scratch = Vec::new();
    let mut order: Vec<(usize, F)> = (0..n_masks)
        .map(|m| (m, density(attr, masks.mask(m).iter().copied(), &mut scratch)))
        .collect();
    // Stable, descending: equal gains keep their input order.
    order.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));

    let mut covered = vec![false; n_pixels];
    let mut output = vec![F::neg_infinity(); n_pixels];
    let mut trace: Vec<(Vec<u32>, F)> = Vec::new();
    let mut n_covered = 0usize;
    for (i, &(m, _)) in order.iter().enumerate() {
        let added: Vec<u32> = masks
            .mask(m)
            .iter()
            .copied()
            .filter(|&p| !covered[p as usize])
            .collect();
        if added.len() < min_pixel_diff {
            continue;
        }
        let g = density(attr, added.iter().copied(), &mut scratch);
        for &p in &added {
            covered[p as usize] = true;
            output[p as usize] = g;
        }
        n_covered += added.len();
        trace.push((added, g));
        progress(Progress::new(Stage::XraiMasks, i + 1, n_masks));
    }
    let _ = n_covered;
    finish(attr, output, trace, &mut scratch)
}

/// Gives the pixels no mask covered their own mean attribution (so the map
/// keeps the attribution's total) and orders the regions by gain.
fn finish<F: Float>(attr: &[F], mut output: Vec<F>, trace: Vec<(Vec<u32>, F)>, scratch: &mut Vec<F>) -> Ranking<F> {
    let uncomputed: Vec<u32> = output
        .iter()
        .enumerate()
        .filter(|(_, v)| **v == F::neg_infinity())
        .map(|(i, _)| i as u32)
        .collect();
    let rest = density(attr, uncomputed.iter().copied(), scratch);
    for &p in &uncomputed {
        output[p as usize] = rest;
    }
    let mut trace = trace;
    // Stable, descending by gain, as the reference's sorted(key=-gain).
    trace.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap_or(std::cmp::Ordering::Equal));
    let mut regions: Vec<Vec<u32>> = trace.into_iter().map(|(r, _)| r).collect();
    if !uncomputed.is_empty() {
        regions.push(uncomputed);
    }
    Ranking {
        attribution: output,
        regions,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(h: usize, w: usize, masks: &[&[u32]]) -> MaskSet {
        let mut s = MaskSet::new(h, w);
        for m in masks {
            s.push_sorted(m.iter().copied());
        }
        s
    }

    #[test]
    fn full_picks_densest_difference_first() {
        // 1 x 4 image; mask 0 = {0,1} (mean 2), mask 1 = {1,2,3} (mean 3).
        let attr = [1.0_f64, 3.0, 3.0, 3.0];
        let masks = set(1, 4, &[&[0, 1], &[1, 2, 3]]);
        let r = full(&attr, &masks, 1.0, 1, &mut |_| {});
        // Mask 1 first (gain 3), then mask 0 adds pixel 0 only (gain 1).
        assert_eq!(r.attribution, vec![1.0, 3.0, 3.0, 3.0]);
        assert_eq!(r.regions, vec![vec![1, 2, 3], vec![0]]);
    }

    #[test]
    fn full_stops_at_area_threshold_and_fills_rest() {
        let attr = [4.0_f64, 0.0, 1.0, 2.0];
        let masks = set(1, 4, &[&[0], &[1], &[2], &[3]]);
        // After the first mask, area 0.25 > 0.2: the rest is one region with mean 1.
        let r = full(&attr, &masks, 0.2, 1, &mut |_| {});
        assert_eq!(r.attribution, vec![4.0, 1.0, 1.0, 1.0]);
        assert_eq!(r.regions, vec![vec![0], vec![1, 2, 3]]);
    }

    #[test]
    fn fast_ignores_overlap_in_ranking() {
        let attr = [1.0_f64, 3.0, 3.0, 3.0];
        // Mask 0 = {1,2} (mean 3), mask 1 = {1,2,3} (mean 3): tie keeps order.
        let masks = set(1, 4, &[&[1, 2], &[1, 2, 3]]);
        let r = fast(&attr, &masks, 1, &mut |_| {});
        assert_eq!(r.regions, vec![vec![1, 2], vec![3], vec![0]]);
        assert_eq!(r.attribution, vec![1.0, 3.0, 3.0, 3.0]);
    }

    #[test]
    fn small_differences_are_dropped() {
        let attr = [1.0_f64, 2.0, 3.0, 4.0];
        let masks = set(1, 4, &[&[2, 3], &[1, 2, 3]]);
        // Mask 1 adds only one pixel after mask 0: below min_pixel_diff 2.
        let r = full(&attr, &masks, 1.0, 2, &mut |_| {});
        assert_eq!(r.regions, vec![vec![2, 3], vec![0, 1]]);
        assert_eq!(r.attribution, vec![1.5, 1.5, 3.5, 3.5]);
    }
}
