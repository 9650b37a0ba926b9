//! The selection of the features a Guided IG step moves: the candidates'
//! `|gradient|` keyed into histogram buckets (the key scale), the bucket
//! counts and distance sums, and the few buckets collected on demand where
//! the iterations' thresholds fall.

use crate::float::Float;
use crate::parallel::{CHUNK, map_items};

/// Number of histogram buckets for the candidates' `|grad|`.
pub(super) const BUCKETS: usize = 1024;

/// Histogram lanes: consecutive features go to different lanes so that
/// updates of one bucket do not wait on each other.
pub(super) const LANES: usize = 2;

/// A histogram cell: candidate count (exact in `f64`: far below 2^53)
/// and distance sum, added to with one vector addition.
pub(super) type Lane = [f64; 2];

/// Marks a feature at `x_max` in the path's keys: the histogram's spare
/// bucket past the last.
pub(super) const NOT_CANDIDATE: u16 = BUCKETS as u16;

/// Features per block of the per-feature loops: the loops run over
/// fixed-size arrays, which the compiler unrolls and vectorises.
pub(super) const BLOCK: usize = 8;

/// `s[..n]`, or all of `s` when it is shorter.
pub(super) fn cut<T>(s: &[T], n: usize) -> &[T] {
    s.get(..n).unwrap_or(s)
}

/// `s[..n]`, or all of `s` when it is shorter.
pub(super) fn cut_mut<T>(s: &mut [T], n: usize) -> &mut [T] {
    let len = s.len().min(n);
    s.split_at_mut(len).0
}

/// Maps a gradient's magnitude to a bucket, monotonically: the magnitude,
/// rounded to `f32` (rounding keeps the order), is clamped to
/// `[lo, hi]`, where `hi` is the largest and `lo` the smallest positive
/// magnitude (at least `hi / 2^24`); the bucket is its bits (which order
/// non-negative floats) above those of `lo`, shifted to fit. Clamping with
/// float min/max and `u32` lanes keeps it to a few vector instructions.
#[derive(Clone, Copy, Debug)]
pub(super) struct KeyScale {
    lo: f32,
    hi: f32,
    lo_bits: u32,
    shift: u32,
}

impl KeyScale {
    fn new(min_pos: f32, max: f32) -> Self {
        let lo = min_pos.max(max * f32::powi(2.0, -24)).min(max);
        let range = max.to_bits().saturating_sub(lo.to_bits());
        let mut shift = 0;
        while (range >> shift) > (BUCKETS - 1) as u32 {
            shift += 1;
        }
        KeyScale {
            lo,
            hi: max,
            lo_bits: lo.to_bits(),
            shift,
        }
    }

    /// The scale for the magnitudes of `grad`, and whether they are all
    /// finite (if not, the scale is meaningless).
    pub(super) fn of<F: Float>(grad: &[F]) -> (Self, bool) {
        let extremes = |chunk: &[F]| {
            // Plain comparisons in fixed lanes (NaN only spoils a scale that
            // is not used) compile to vector min/max instructions.
            let (blocks, rest) = chunk.as_chunks::<BLOCK>();
            let mut min_pos = [f32::INFINITY; BLOCK];
            let mut max = [0.0_f32; BLOCK];
            let mut finite = [true; BLOCK];
            let mut visit = |l: usize, g: F| {
                let a = magnitude(g.as_f64());
                let pos = if a > 0.0 { a } else { f32::INFINITY };
                min_pos[l] = if pos < min_pos[l] { pos } else { min_pos[l] };
                max[l] = if a > max[l] { a } else { max[l] };
                finite[l] &= g.is_finite();
            };
            for block in blocks {
                for (l, &g) in block.iter().enumerate() {
                    visit(l, g);
                }
            }
            for &g in rest {
                visit(0, g);
            }
            let min_pos = min_pos.iter().fold(f32::INFINITY, |m, &v| m.min(v));
            let max = max.iter().fold(0.0_f32, |m, &v| m.max(v));
            (min_pos, max, finite.iter().all(|&f| f))
        };
        let both = |a: (f32, f32, bool), b: (f32, f32, bool)| (a.0.min(b.0), a.1.max(b.1), a.2 & b.2);
        // Minima, maxima and conjunctions of non-negative magnitudes: the
        // order of combining does not matter. Last chunk first: the model
        // has just written the gradient front to back, so its end is the
        // part still in cache (and the catch-up pass, front to back, then
        // starts on the part this pass read last).
        let (min_pos, max, finite) = map_items(grad.chunks(CHUNK).rev(), extremes)
            .into_iter()
            .fold((f32::INFINITY, 0.0, true), both);
        (KeyScale::new(min_pos, max), finite)
    }

    #[inline(always)]
    pub(super) fn key(self, g: f64) -> u16 {
        // Comparisons (the values are finite) that compile to min/max.
        let a = magnitude(g);
        let a = if a > self.lo { a } else { self.lo };
        let a = if a < self.hi { a } else { self.hi };
        // At most BUCKETS - 1 by the choice of `shift`.
        (a.to_bits().wrapping_sub(self.lo_bits) >> self.shift) as u16
    }
}

/// `|g|` rounded to `f32`.
#[inline(always)]
fn magnitude(g: f64) -> f32 {
    (g as f32).abs()
}

/// (|grad|, distance to `x_max`) of a candidate.
type Entry = (f64, f64);

/// Count and distance sum of the candidates per bucket, plus the buckets
/// collected on demand.
pub(super) struct Histogram {
    scale: KeyScale,
    /// Per chunk of features, bucket and lane, at
    /// `LANES * ((BUCKETS + 1) * chunk + bucket) + lane`; bucket
    /// `BUCKETS` collects the non-candidates.
    pub(super) lanes: Vec<Lane>,
    /// Candidates per bucket (exact integers).
    count: Vec<f64>,
    dist: Vec<f64>,
    /// `start[b]`: how many candidates lie in buckets below `b`.
    start: Vec<usize>,
    /// Buckets collected so far: (bucket, index in `store`).
    sorted: Vec<(usize, usize)>,
    /// Their entries, reused from step to step.
    store: Vec<Vec<Entry>>,
    /// Slot in `sorted` of each bucket being collected, or `usize::MAX`.
    wanted: Vec<usize>,
    /// Per chunk of features: what [`SortedCandidates::collect`] found.
    found: Vec<Found>,
}

impl Histogram {
    pub(super) fn new() -> Self {
        Histogram {
            scale: KeyScale::new(f32::INFINITY, 0.0),
            lanes: Vec::new(),
            count: vec![0.0; BUCKETS],
            dist: vec![0.0; BUCKETS],
            start: vec![0; BUCKETS + 1],
            sorted: Vec::new(),
            store: Vec::new(),
            wanted: vec![usize::MAX; BUCKETS],
            found: Vec::new(),
        }
    }

    /// Prepares for a step; each chunk's pass clears its own lanes.
    pub(super) fn clear(&mut self, scale: KeyScale, chunks: usize) {
        self.scale = scale;
        self.lanes.resize(chunks * LANES * (BUCKETS + 1), [0.0; 2]);
        self.sorted.clear();
    }
}

/// A chunk's features in the buckets being collected, reused from step to
/// step.
#[derive(Default)]
pub(super) struct Found {
    /// (feature, slot), from the scan of the keys.
    at: Vec<(usize, usize)>,
    /// (slot, entry), in the same order.
    entries: Vec<(usize, Entry)>,
}

/// The per-feature state [`SortedCandidates`] reads.
pub(super) struct Features<'a> {
    pub(super) key: &'a [u16],
    pub(super) x: &'a [f64],
    pub(super) baseline: Option<&'a [f64]>,
    pub(super) delta: &'a [f64],
}

/// Keys per block of [`SortedCandidates::collect`]'s scan.
const KEY_BLOCK: usize = 16;

/// Whether any of `keys` is in `group`; computed for all keys without
/// branches, so that it vectorises.
#[inline(always)]
fn any_of(keys: &[u16; KEY_BLOCK], group: &[u16; 4]) -> bool {
    let mut hit = [0_u16; KEY_BLOCK];
    for (h, &k) in hit.iter_mut().zip(keys) {
        *h = u16::from((k == group[0]) | (k == group[1]) | (k == group[2]) | (k == group[3]));
    }
    hit.iter().fold(0, |any, &h| any | h) != 0
}

/// The candidates in ascending `|grad|` order, as far as a step needs them:
/// whole buckets through the histogram, boundary buckets collected on demand.
pub(super) struct SortedCandidates<'a, F> {
    pub(super) path: Features<'a>,
    pub(super) grad: &'a [F],
    pub(super) alpha_max: f64,
    pub(super) hist: &'a mut Histogram,
}

impl<F: Float> SortedCandidates<'_, F> {
    /// Merges the histogram's lanes, computes the bucket starts, collects
    /// the buckets of the ranks the thresholds have when there are no ties
    /// (`k`, `2k + 1`, ...), and returns the number of candidates.
    pub(super) fn prepare(&mut self, k: usize) -> usize {
        let h = &mut *self.hist;
        h.count.fill(0.0);
        h.dist.fill(0.0);
        for chunk in h.lanes.chunks_exact(LANES * (BUCKETS + 1)) {
            for ((lanes, c), d) in chunk.chunks_exact(LANES).zip(&mut h.count).zip(&mut h.dist) {
                *c = lanes.iter().fold(*c, |acc, l| acc + l[0]);
                *d = lanes.iter().fold(*d, |acc, l| acc + l[1]);
            }
        }
        let mut total = 0;
        for (s, &c) in h.start.iter_mut().zip(&h.count) {
            *s = total;
            total += c as usize;
        }
        if let Some(last) = h.start.last_mut() {
            *last = total;
        }
        let mut buckets = Vec::new();
        let mut pos = k;
        while pos < total {
            let b = self.bucket_of(pos);
            if buckets.last() != Some(&b) {
                buckets.push(b);
            }
            pos += k + 1;
        }
        self.collect(&buckets);
        total
    }

    /// The bucket holding sorted position `pos` (< number of candidates).
    fn bucket_of(&self, pos: usize) -> usize {
        self.hist.start.partition_point(|&s| s <= pos).saturating_sub(1)
    }

    /// Collects the entries of `buckets` in one pass over the keys.
    fn collect(&mut self, buckets: &[usize]) {
        let h = &mut *self.hist;
        let first = h.sorted.len();
        for &b in buckets {
            let slot = h.sorted.len();
            if h.store.len() <= slot {
                h.store.push(Vec::new());
            }
            h.store[slot].clear();
            h.wanted[b] = slot;
            h.sorted.push((b, slot));
        }
        let (p, grad, alpha_max) = (&self.path, self.grad, self.alpha_max);
        let wanted = &h.wanted[..];
        // The buckets in groups of four (the last padded with a repeat),
        // compared with blocks of keys at once: only blocks with a hit are
        // looked at key by key.
        let groups: Vec<[u16; 4]> = buckets
            .chunks(4)
            .map(|g| {
                let at = |j: usize| g.get(j).or(g.first()).map_or(NOT_CANDIDATE, |&b| b as u16);
                [at(0), at(1), at(2), at(3)]
            })
            .collect();
        // Fixed chunks scanned in parallel, appended in chunk order.
        // The keys are scanned first and the entries read afterwards, in a
        // loop without unpredictable branches: the features' scattered
        // `x`, `delta` and `grad` then load in parallel rather than one
        // cache miss at a time.
        let scan = |(c, found): (usize, &mut Found)| {
            found.at.clear();
            found.entries.clear();
            let start = c * CHUNK;
            let keys = cut(p.key.get(start..).unwrap_or_default(), CHUNK);
            let at = &mut found.at;
            // Every key of a block is written and only the hits kept (no
            // branch per key: which keys hit follows no pattern).
            let mut visit = |first: usize, keys: &[u16]| {
                let mut kept = at.len();
                at.resize(kept + keys.len(), (0, usize::MAX));
                for (l, &key) in keys.iter().enumerate() {
                    // `NOT_CANDIDATE` is no bucket: `get` gives `None`.
                    let slot = wanted.get(usize::from(key)).copied().unwrap_or(usize::MAX);
                    if let Some(cell) = at.get_mut(kept) {
                        *cell = (first + l, slot);
                    }
                    kept += usize::from(slot != usize::MAX);
                }
                at.truncate(kept);
            };
            let (blocks, rest) = keys.as_chunks::<KEY_BLOCK>();
            for (j, block) in blocks.iter().enumerate() {
                if groups.iter().any(|group| any_of(block, group)) {
                    visit(start + j * KEY_BLOCK, block);
                }
            }
            visit(start + blocks.len() * KEY_BLOCK, rest);
            let entry = |&(i, slot): &(usize, usize)| {
                let x_max = p.baseline.map_or(0.0, |b| b[i]) + p.delta[i] * alpha_max;
                (slot, (grad[i].as_f64().abs(), (p.x[i] - x_max).abs()))
            };
            found.entries.extend(found.at.iter().map(entry));
        };
        h.found.resize_with(p.key.len().div_ceil(CHUNK), Found::default);
        // Last chunk first, where the catch-up pass (front to back) ended;
        // the entries are appended below in chunk order whatever the order
        // of the scan.
        map_items(h.found.iter_mut().enumerate().rev(), scan);
        for &(slot, entry) in h.found.iter().flat_map(|f| &f.entries) {
            h.store[slot].push(entry);
        }
        for &(b, _) in &h.sorted[first..] {
            h.wanted[b] = usize::MAX;
        }
    }

    /// The entries of bucket `b`, in no particular order.
    fn bucket(&mut self, b: usize) -> &mut [Entry] {
        let slot = match self.hist.sorted.iter().find(|(sb, _)| *sb == b) {
            Some(&(_, slot)) => slot,
            None => {
                self.collect(&[b]);
                self.hist.sorted.len() - 1
            }
        };
        &mut self.hist.store[slot]
    }

    /// The value at sorted position `pos` and the end of its run of equal
    /// values: the number of candidates at most that value (equal values
    /// share a bucket). A selection within the bucket, not a sort.
    pub(super) fn value_and_run_end(&mut self, pos: usize) -> (f64, usize) {
        let b = self.bucket_of(pos);
        let start = self.hist.start[b];
        let entries = self.bucket(b);
        let (_, &mut (v, _), _) = entries.select_nth_unstable_by(pos - start, |p, q| p.0.total_cmp(&q.0));
        let at_most = entries.iter().filter(|e| e.0 <= v).count();
        (v, start + at_most)
    }

    /// The sum of the distances to `x_max` over sorted positions `lo..hi`,
    /// which are the candidates with `above < |grad| <= up_to` (`lo` and
    /// `hi` end runs of equal values).
    pub(super) fn distance(&mut self, lo: usize, hi: usize, above: f64, up_to: f64) -> f64 {
        if lo >= hi {
            return 0.0;
        }
        let (first, last) = (self.bucket_of(lo), self.bucket_of(hi - 1));
        let mut total = 0.0;
        for b in first..=last {
            let (start, end) = (self.hist.start[b], self.hist.start[b + 1]);
            if lo <= start && end <= hi {
                total += self.hist.dist[b];
            } else {
                let inside = |e: &&mut Entry| above < e.0 && e.0 <= up_to;
                total += self.bucket(b).iter_mut().filter(inside).map(|e| e.1).sum::<f64>();
            }
        }
        total
    }
}
