//! ROAD, remove and debias ([Rong et al. 2022](https://arxiv.org/abs/2202.00449)),
//! as pytorch-grad-cam 1.5.7 computes it (`pytorch_grad_cam.metrics.road`).
//!
//! The pixels a saliency map ranks highest (MoRF) or lowest (LeRF) are
//! removed and filled in by noisy linear imputation: each removed pixel is
//! the weighted mean of its eight neighbours (the solution of one sparse
//! linear system), plus a little Gaussian noise so that the shape of the
//! removed region does not leak its position. The score is the change of the
//! model's output.

use ndarray::{Array, Array2, ArrayD, ArrayView2, ArrayView3, AsArray, Dimension, IxDyn};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::percentile;
use crate::model::{CallModelFunction, OutputKey, call_model};

/// The percentiles of pytorch-grad-cam's `ROADMostRelevantFirstAverage` and
/// `ROADLeastRelevantFirstAverage`.
pub const ROAD_PERCENTILES: [f64; 9] = [10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 80.0, 90.0];

/// The neighbours of a pixel (row offset, column offset) and their weights,
/// in the reference's order (the order fixes the rounding of the sums).
const NEIGHBOURS: [((isize, isize), f64); 8] = [
    ((1, 1), 1.0 / 12.0),
    ((0, 1), 1.0 / 6.0),
    ((-1, 1), 1.0 / 12.0),
    ((1, -1), 1.0 / 12.0),
    ((0, -1), 1.0 / 6.0),
    ((-1, -1), 1.0 / 12.0),
    ((1, 0), 1.0 / 6.0),
    ((-1, 0), 1.0 / 6.0),
];

/// Which pixels ROAD removes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RoadOrder {
    /// MoRF: at percentile `p`, the pixels whose saliency is at least the
    /// map's `p`-th percentile are removed (the top `100 - p` %). A good map
    /// makes the score drop fast.
    MostRelevantFirst,
    /// LeRF: at percentile `p`, the pixels whose `1 - saliency` is at least
    /// the `p`-th percentile of `1 - saliency` are removed (the bottom
    /// `100 - p` %). A good map keeps the score.
    LeastRelevantFirst,
}

/// Settings of ROAD ([Rong et al. 2022](https://arxiv.org/abs/2202.00449)),
/// as pytorch-grad-cam 1.5.7's `ROADMostRelevantFirstAverage`,
/// `ROADLeastRelevantFirstAverage` and `ROADCombined` compute it.
///
/// For each percentile and each [`RoadOrder`], the removed pixels are
/// imputed ([`noisy_linear_impute`]) and the model's output
/// ([`OutputKey::OutputLayerValues`], the target's score) on the imputed
/// image is compared with its output on the original: the result holds
/// `score(imputed) - score(original)` per percentile.
///
/// | pytorch-grad-cam | here |
/// | --- | --- |
/// | `percentiles=[10, ..., 90]` | [`percentiles`](Self::percentiles), default [`ROAD_PERCENTILES`] |
/// | `NoisyLinearImputer(noise=0.01)` | [`noise`](Self::noise), default 0.01 |
/// | `torch.randn` (global generator) | ChaCha8 seeded with [`seed`](Self::seed) |
/// | `input_tensor` `(B, C, H, W)` | one image `[H, W, C]` or `[H, W]` |
/// | `cams` `(B, H, W)` | `saliency_map` `[H, W]` |
/// | `targets` + `model` | the model function's `OutputLayerValues` |
/// | `ROADCombined` | [`RoadResult::combined`] |
///
/// ```
/// use ndarray::{Array2, Array3};
/// use saliency::metrics::Road;
/// use saliency::{ModelOutputs, OutputKey};
///
/// // A model that scores the mean brightness of the top-left quarter.
/// let image = Array3::<f64>::from_shape_fn((16, 16, 3), |(i, j, c)| ((i * 3 + j * 5 + c) % 11) as f64 / 10.0);
/// let model = &mut |batch: ndarray::ArrayViewD<'_, f64>, _: &saliency::ModelRequest<'_>| {
///     let scores = batch.outer_iter().map(|img| {
///         img.indexed_iter().filter(|(ix, _)| ix[0] < 8 && ix[1] < 8).map(|(_, v)| v).sum::<f64>() / 192.0
///     });
///     Ok::<_, saliency::BoxError>(ModelOutputs::new().with(OutputKey::OutputLayerValues, ndarray::Array1::from_iter(scores)))
/// };
/// // A map that points at that quarter.
/// let saliency = Array2::from_shape_fn((16, 16), |(i, j)| (if i < 8 && j < 8 { 1.0 } else { 0.0 }) + 0.01 * (i + j) as f64);
/// let result = Road::new().seed(0).compute(&image, saliency.view(), model)?;
/// assert_eq!(result.most_relevant_first.len(), 9);
/// println!("MoRF {:.3}, LeRF {:.3}", result.morf_average(), result.lerf_average());
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct Road {
    percentiles: Vec<f64>,
    noise: f64,
    seed: Option<u64>,
    batch_size: Option<usize>,
}

impl Default for Road {
    /// pytorch-grad-cam's defaults: [`ROAD_PERCENTILES`], noise 0.01; no
    /// seed; all imputed images in one model call.
    fn default() -> Self {
        Road {
            percentiles: ROAD_PERCENTILES.to_vec(),
            noise: 0.01,
            seed: None,
            batch_size: None,
        }
    }
}

/// The scores of one image (see [`Road`]).
#[derive(Clone, Debug, Default, PartialEq)]
#[non_exhaustive]
pub struct RoadResult {
    /// The percentiles, as given.
    pub percentiles: Vec<f64>,
    /// The model's output on the original image.
    pub original_score: f64,
    /// `score(imputed) - score(original)` per percentile, MoRF order.
    pub most_relevant_first: Vec<f64>,
    /// `score(imputed) - score(original)` per percentile, LeRF order.
    pub least_relevant_first: Vec<f64>,
}

impl RoadResult {
    /// The mean of [`most_relevant_first`](Self::most_relevant_first), as
    /// `ROADMostRelevantFirstAverage` (lower is better).
    pub fn morf_average(&self) -> f64 {
        mean(&self.most_relevant_first)
    }

    /// The mean of [`least_relevant_first`](Self::least_relevant_first), as
    /// `ROADLeastRelevantFirstAverage` (higher is better).
    pub fn lerf_average(&self) -> f64 {
        mean(&self.least_relevant_first)
    }

    /// `(lerf_average - morf_average) / 2`, as `ROADCombined` (higher is
    /// better).
    pub fn combined(&self) -> f64 {
        (self.lerf_average() - self.morf_average()) / 2.0
    }
}

fn mean(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v.iter().sum::<f64>() / v.len() as f64
}

impl Road {
    /// The defaults (see [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The percentiles (each in `[0, 100]`) at which pixels are removed.
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn percentiles(mut self, percentiles: impl Into<Vec<f64>>) -> Self {
        self.percentiles = percentiles.into();
        self
    }

    /// The standard deviation of the Gaussian noise added to imputed pixels
    /// (absolute, in the image's units); 0 turns the noise off.
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn noise(mut self, noise: f64) -> Self {
        self.noise = noise;
        self
    }

    /// Seeds the noise: the same seed gives the same result (for a given
    /// version of this crate). Without one the generator is seeded from the
    /// operating system.
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = Some(seed);
        self
    }

    /// At most this many images per model call (default: all `2 *
    /// percentiles` imputed images in one call).
    #[must_use = "a setter returns the changed settings; assign or chain it"]
    pub fn batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = Some(batch_size);
        self
    }

    /// The percentiles.
    pub fn get_percentiles(&self) -> &[f64] {
        &self.percentiles
    }

    /// The noise's standard deviation.
    pub fn get_noise(&self) -> f64 {
        self.noise
    }

    /// The seed, if set.
    pub fn get_seed(&self) -> Option<u64> {
        self.seed
    }

    /// The largest batch, if set.
    pub fn get_batch_size(&self) -> Option<usize> {
        self.batch_size
    }

    /// Checks the settings: errors name the setting and the valid range.
    pub fn check(&self) -> Result<()> {
        if self.percentiles.is_empty() {
            return Err(SaliencyError::param(
                "percentiles",
                "[]",
                "must hold at least one percentile (ROAD_PERCENTILES is the usual list)",
            ));
        }
        if let Some(p) = self
            .percentiles
            .iter()
            .find(|p| !(p.is_finite() && (0.0..=100.0).contains(*p)))
        {
            return Err(SaliencyError::param("percentiles", p, "must each be between 0 and 100"));
        }
        if !(self.noise.is_finite() && self.noise >= 0.0) {
            return Err(SaliencyError::param(
                "noise",
                self.noise,
                "must be finite and >= 0 (0 turns the noise off)",
            ));
        }
        if self.batch_size == Some(0) {
            return Err(SaliencyError::param("batch_size", 0, "must be at least 1"));
        }
        Ok(())
    }

    /// The pixels ROAD keeps (`true`) at `percentile` in `order`, as
    /// pytorch-grad-cam's `RemoveMostRelevantFirst` /
    /// `RemoveLeastRelevantFirst` compute them: MoRF keeps `s < t` for `t`
    /// the `percentile`-th percentile of the map; LeRF keeps `1 - s < t` for
    /// `t` that of `1 - s`.
    ///
    /// Errors on a non-finite or empty map, or a percentile outside
    /// `[0, 100]`.
    pub fn keep_mask<F: Float>(
        saliency_map: ArrayView2<'_, F>,
        order: RoadOrder,
        percentile_value: f64,
    ) -> Result<Array2<bool>> {
        crate::checks::check_input("saliency_map", &saliency_map.into_dyn(), 2)?;
        let values: Vec<F> = match order {
            RoadOrder::MostRelevantFirst => saliency_map.iter().copied().collect(),
            RoadOrder::LeastRelevantFirst => saliency_map.iter().map(|&s| F::one() - s).collect(),
        };
        let mut scratch = values.clone();
        let threshold = percentile(&mut scratch, percentile_value)?;
        let keep: Vec<bool> = values.iter().map(|&v| v < threshold).collect();
        Array2::from_shape_vec(saliency_map.raw_dim(), keep)
            .map_err(|_| SaliencyError::internal("the kept pixels do not cover the map"))
    }

    /// ROAD of one image: `image` is `[H, W, C]` or `[H, W]`, the model gets
    /// batches `[B, ...image's shape]` and returns the explained target's
    /// score per row ([`OutputKey::OutputLayerValues`]); `saliency_map` is
    /// `[H, W]`.
    ///
    /// Errors: the settings' ([`check`](Self::check)); an image of the
    /// wrong rank, empty or not finite; a map of another size or not finite;
    /// a map that leaves no pixel to impute from (a constant map at a low
    /// MoRF percentile); the model's errors and malformed outputs.
    pub fn compute<'a, F: Float, D: Dimension>(
        &self,
        image: impl AsArray<'a, F, D>,
        saliency_map: ArrayView2<'_, F>,
        model: &mut dyn CallModelFunction<F>,
    ) -> Result<RoadResult> {
        self.check()?;
        let image = image.into().into_dyn();
        crate::checks::check_image("image", &image)?;
        let image3 = crate::checks::image_view3("image", &image)?;
        let (h, w, _) = image3.dim();
        crate::checks::check_shape("saliency_map", saliency_map.shape(), &[h, w])?;
        crate::checks::check_finite("saliency_map", &saliency_map.into_dyn())?;

        let seed = self.seed.unwrap_or_else(|| rand::RngExt::random(&mut rand::rng()));
        let orders = [RoadOrder::MostRelevantFirst, RoadOrder::LeastRelevantFirst];
        let jobs: Vec<(usize, RoadOrder, f64)> = orders
            .iter()
            .flat_map(|&o| self.percentiles.iter().map(move |&p| (o, p)))
            .enumerate()
            .map(|(j, (o, p))| (j, o, p))
            .collect();
        // Each imputation has its own noise stream, so the images do not
        // depend on the thread count or the order they are made in.
        let images: Vec<Vec<F>> = crate::parallel::map_items(&jobs, |&(j, order, p)| -> Result<Vec<F>> {
            let keep = Self::keep_mask(saliency_map, order, p)?;
            let keep: Vec<bool> = keep.iter().copied().collect();
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            rng.set_stream(j as u64);
            impute(image3, &keep, self.noise, &mut rng).map_err(|e| match e {
                ImputeError::NothingKnown => SaliencyError::param(
                    "saliency_map",
                    format!("{order:?} at percentile {p}"),
                    "removes every pixel, so nothing is left to impute from \
                     (is the map constant? use a map with distinct values or higher percentiles)",
                ),
                ImputeError::Other(e) => e,
            })
        })
        .into_iter()
        .collect::<Result<_>>()?;

        let original = scores_of(
            model,
            &[image.as_standard_layout().iter().copied().collect()],
            image.shape(),
            1,
        )?;
        let original_score = original
            .first()
            .copied()
            .ok_or_else(|| SaliencyError::internal("no score"))?;
        let batch = self.batch_size.unwrap_or(images.len()).max(1);
        let scores = scores_of(model, &images, image.shape(), batch)?;
        let n = self.percentiles.len();
        let diffs: Vec<f64> = scores.iter().map(|s| s - original_score).collect();
        Ok(RoadResult {
            percentiles: self.percentiles.clone(),
            original_score,
            most_relevant_first: diffs.get(..n).unwrap_or_default().to_vec(),
            least_relevant_first: diffs.get(n..).unwrap_or_default().to_vec(),
        })
    }
}

/// The model's score for each of `images` (flat, each of `shape`), in
/// batches of at most `batch`.
fn scores_of<F: Float>(
    model: &mut dyn CallModelFunction<F>,
    images: &[Vec<F>],
    shape: &[usize],
    batch: usize,
) -> Result<Vec<f64>> {
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch) {
        let mut batch_shape = vec![chunk.len()];
        batch_shape.extend_from_slice(shape);
        let data: Vec<F> = chunk.iter().flatten().copied().collect();
        let batch = ArrayD::from_shape_vec(IxDyn(&batch_shape), data)
            .map_err(|_| SaliencyError::internal("a batch of imputed images has the wrong size"))?;
        let mut outputs = call_model(model, batch.view(), &[OutputKey::OutputLayerValues])?;
        let values = outputs.take(OutputKey::OutputLayerValues)?;
        out.extend(values.iter().map(|v| v.as_f64()));
    }
    Ok(out)
}

/// Fills in the pixels of `image` (`[H, W]` or `[H, W, C]`) where `keep` is
/// `false` by noisy linear imputation, as pytorch-grad-cam's
/// `NoisyLinearImputer` (from the ROAD authors' code): every removed pixel
/// is the weighted mean of its in-image neighbours (weight 1/6 for the four
/// edge neighbours, 1/12 for the four corner ones), kept or removed, which
/// is one sparse linear system per channel; then Gaussian noise of standard
/// deviation `noise` (from `rng`) is added to the removed pixels.
///
/// The reference solves the system with SuperLU; here it is solved by
/// preconditioned conjugate gradients to a relative residual of 1e-12 (the
/// matrix is symmetric and, negated, positive definite when every region of
/// removed pixels touches a kept one). With `noise` 0 the result matches the
/// reference to a few units in the last place of `f32`.
///
/// Errors: wrong rank, empty or non-finite image; a `keep` mask not
/// `[H, W]`; no kept pixel at all (nothing to impute from); `noise`
/// negative or not finite.
///
/// ```
/// use ndarray::{array, Array2};
/// use rand::SeedableRng;
/// use saliency::metrics::noisy_linear_impute;
///
/// // The centre of a 3 x 3 image becomes the weighted mean of its ring.
/// let image = array![[1.0_f64, 2.0, 3.0], [4.0, 100.0, 6.0], [7.0, 8.0, 9.0]];
/// let mut keep = Array2::from_elem((3, 3), true);
/// keep[[1, 1]] = false;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let filled = noisy_linear_impute(&image, keep.view(), 0.0, &mut rng)?;
/// // (1 + 3 + 7 + 9) / 12 + (2 + 4 + 6 + 8) / 6 = 5
/// assert!((filled[[1, 1]] - 5.0).abs() < 1e-12);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn noisy_linear_impute<'a, F: Float, D: Dimension, R: Rng + ?Sized>(
    image: impl AsArray<'a, F, D>,
    keep: ArrayView2<'_, bool>,
    noise: f64,
    rng: &mut R,
) -> Result<Array<F, D>> {
    let image = image.into();
    let dyn_view = image.view().into_dyn();
    crate::checks::check_image("image", &dyn_view)?;
    let image3 = crate::checks::image_view3("image", &dyn_view)?;
    let (h, w, _) = image3.dim();
    crate::checks::check_shape("keep", keep.shape(), &[h, w])?;
    if !(noise.is_finite() && noise >= 0.0) {
        return Err(SaliencyError::param(
            "noise",
            noise,
            "must be finite and >= 0 (0 turns the noise off)",
        ));
    }
    let keep: Vec<bool> = keep.iter().copied().collect();
    let filled = impute(image3, &keep, noise, rng).map_err(|e| match e {
        ImputeError::NothingKnown => SaliencyError::param(
            "keep",
            "all false",
            "must keep at least one pixel to impute the others from",
        ),
        ImputeError::Other(e) => e,
    })?;
    Array::from_shape_vec(image.raw_dim(), filled)
        .map_err(|_| SaliencyError::internal("the imputed image does not have the image's size"))
}

enum ImputeError {
    NothingKnown,
    Other(SaliencyError),
}

impl From<SaliencyError> for ImputeError {
    fn from(e: SaliencyError) -> Self {
        ImputeError::Other(e)
    }
}

/// The unknowns' system: for unknown `k`, `diag[k] x_k - sum w x_j = rhs_k`
/// (the reference's `A x = b` negated, so that the matrix is positive
/// definite), the off-diagonal entries in `links[k]`.
struct System {
    diag: Vec<f64>,
    links: Vec<Vec<(usize, f64)>>,
}

impl System {
    fn apply(&self, x: &[f64], out: &mut [f64]) {
        for (k, o) in out.iter_mut().enumerate() {
            let mut v = self.diag[k] * x[k];
            for &(j, wgt) in &self.links[k] {
                v -= wgt * x[j];
            }
            *o = v;
        }
    }

    /// Jacobi-preconditioned conjugate gradients from `x` (the starting
    /// guess) to a relative residual of `tol`.
    fn solve(&self, rhs: &[f64], x: &mut [f64], tol: f64) -> Result<()> {
        let n = rhs.len();
        let norm = |v: &[f64]| v.iter().map(|a| a * a).sum::<f64>().sqrt();
        let rhs_norm = norm(rhs);
        if rhs_norm == 0.0 {
            x.iter_mut().for_each(|v| *v = 0.0);
            return Ok(());
        }
        let mut r = vec![0.0; n];
        self.apply(x, &mut r);
        for (ri, bi) in r.iter_mut().zip(rhs) {
            *ri = bi - *ri;
        }
        let mut z: Vec<f64> = r.iter().zip(&self.diag).map(|(ri, d)| ri / d).collect();
        let mut p = z.clone();
        let mut ap = vec![0.0; n];
        let mut rz: f64 = r.iter().zip(&z).map(|(a, b)| a * b).sum();
        // CG ends in at most n steps in exact arithmetic; rounding can cost
        // a few more.
        let max_iter = 2 * n + 100;
        for _ in 0..max_iter {
            if norm(&r) <= tol * rhs_norm {
                return Ok(());
            }
            self.apply(&p, &mut ap);
            let pap: f64 = p.iter().zip(&ap).map(|(a, b)| a * b).sum();
            if pap <= 0.0 {
                break;
            }
            let alpha = rz / pap;
            for ((xi, ri), (pi, api)) in x.iter_mut().zip(r.iter_mut()).zip(p.iter().zip(&ap)) {
                *xi += alpha * pi;
                *ri -= alpha * api;
            }
            for ((zi, ri), d) in z.iter_mut().zip(&r).zip(&self.diag) {
                *zi = ri / d;
            }
            let rz_new: f64 = r.iter().zip(&z).map(|(a, b)| a * b).sum();
            let beta = rz_new / rz;
            rz = rz_new;
            for (pi, zi) in p.iter_mut().zip(&z) {
                *pi = zi + beta * *pi;
            }
        }
        // Rounding can stall CG just above a very small tolerance; accept
        // what is still far below what f32 resolves.
        if norm(&r) <= 1e-9 * rhs_norm {
            Ok(())
        } else {
            Err(SaliencyError::internal(
                "the imputation's linear system did not converge",
            ))
        }
    }
}

/// The imputation on a `[H, W, C]` view; the result is flat `[H, W, C]`.
fn impute<F: Float, R: Rng + ?Sized>(
    image: ArrayView3<'_, F>,
    keep: &[bool],
    noise: f64,
    rng: &mut R,
) -> std::result::Result<Vec<F>, ImputeError> {
    let (h, w, c) = image.dim();
    let flat: Vec<F> = image.iter().copied().collect();
    let unknown: Vec<usize> = (0..h * w).filter(|&i| !keep.get(i).copied().unwrap_or(true)).collect();
    if unknown.is_empty() {
        return Ok(flat);
    }
    if unknown.len() == h * w {
        return Err(ImputeError::NothingKnown);
    }
    let mut index_of = vec![usize::MAX; h * w];
    for (k, &i) in unknown.iter().enumerate() {
        index_of[i] = k;
    }
    let n = unknown.len();
    let mut system = System {
        diag: vec![1.0; n],
        links: vec![Vec::new(); n],
    };
    let mut rhs = vec![0.0_f64; n * c];
    for (k, &i) in unknown.iter().enumerate() {
        let (row, col) = ((i / w) as isize, (i % w) as isize);
        for &((dr, dc), weight) in &NEIGHBOURS {
            let (r2, c2) = (row + dr, col + dc);
            if r2 < 0 || c2 < 0 || r2 >= h as isize || c2 >= w as isize {
                // The reference takes an outside neighbour's weight off the
                // diagonal, in list order.
                system.diag[k] -= weight;
                continue;
            }
            let j = r2 as usize * w + c2 as usize;
            if keep.get(j).copied().unwrap_or(false) {
                // `weight * img` is computed in the image's type, then
                // accumulated in f64, as NumPy does.
                let wf = F::from_f64_lossy(weight);
                for ch in 0..c {
                    rhs[ch * n + k] += (wf * flat[j * c + ch]).as_f64();
                }
            } else {
                system.links[k].push((index_of[j], weight));
            }
        }
    }
    // Some pixel is kept and the pixel grid is connected, so every region
    // of removed pixels touches a kept one: the system is not singular.

    let solutions: Vec<Result<Vec<f64>>> = crate::parallel::map_items(0..c, |ch| {
        let b = rhs.get(ch * n..(ch + 1) * n).unwrap_or_default();
        // Any start converges; this one is exact for isolated pixels.
        let mut x: Vec<f64> = b.iter().zip(&system.diag).map(|(bi, d)| bi / d).collect();
        system.solve(b, &mut x, 1e-12)?;
        Ok(x)
    });
    let mut out = flat;
    let normal = StandardNormal;
    let noise_f = F::from_f64_lossy(noise);
    for (ch, solution) in solutions.into_iter().enumerate() {
        let x = solution?;
        for (k, &i) in unknown.iter().enumerate() {
            let mut v = F::from_f64_lossy(x[k]);
            if noise > 0.0 {
                let z: f64 = normal.sample(rng);
                v += noise_f * F::from_f64_lossy(z);
            }
            out[i * c + ch] = v;
        }
    }
    Ok(out)
}
