//! Performance Information Curves (SIC and AIC) of
//! [XRAI: Better Attributions Through Regions](https://arxiv.org/abs/1906.02825),
//! as `saliency.metrics.pic` computes them.

use std::borrow::Cow;

use ndarray::{Array, Array2, ArrayD, ArrayView2, ArrayViewD, AsArray, Dimension, IxDyn};
use rand::Rng;

use super::griddata::{Interpolation, griddata};
use super::libwebp::{self, Layout};
use crate::error::{BoxError, Result, SaliencyError};
use crate::float::Float;
use crate::imageops::{interp, quantile, trapz};
use crate::model::{OutputKey, find_non_finite};

mod sealed {
    pub trait Sealed {}
    impl Sealed for u8 {}
    impl Sealed for f32 {}
    impl Sealed for f64 {}
}

/// A pixel type [`create_blurred_image`] accepts: `u8`, `f32` or `f64`.
pub trait Pixel: Copy + Send + Sync + 'static + sealed::Sealed {
    /// The value as `f64` (exact for all three types).
    fn to_f64(self) -> f64;
    /// An interpolated value stored as the reference stores it: `u8` images
    /// are interpolated into a `float32` buffer and rounded half to even;
    /// `f32` rounds to nearest; `f64` keeps the value.
    fn from_interpolated(v: f64) -> Self;
}

impl Pixel for u8 {
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn from_interpolated(v: f64) -> Self {
        // Interpolation is convex, so the value is within 0..=255; `as`
        // saturates anyway.
        (v as f32).round_ties_even() as u8
    }
}

impl Pixel for f32 {
    #[inline]
    fn to_f64(self) -> f64 {
        f64::from(self)
    }
    #[inline]
    fn from_interpolated(v: f64) -> Self {
        v as f32
    }
}

impl Pixel for f64 {
    #[inline]
    fn to_f64(self) -> f64 {
        self
    }
    #[inline]
    fn from_interpolated(v: f64) -> Self {
        v
    }
}

/// Height, width and channels of a `[H, W]` or `[H, W, C]` image.
fn image_dims<P>(what: &'static str, image: &ArrayViewD<'_, P>) -> Result<(usize, usize, usize)> {
    let dims = crate::checks::image_view3(what, image)?.dim();
    if image.is_empty() {
        return Err(SaliencyError::EmptyInput {
            what,
            shape: image.shape().to_vec(),
        });
    }
    Ok(dims)
}

fn check_mask_shape(what: &'static str, mask: &ArrayView2<'_, bool>, (h, w): (usize, usize)) -> Result<()> {
    if mask.dim() != (h, w) {
        return Err(SaliencyError::ShapeMismatch {
            what,
            expected: vec![h, w],
            actual: mask.shape().to_vec(),
        });
    }
    Ok(())
}

/// Creates a blurred (interpolated) image: the pixels where `pixel_mask` is
/// `true` are kept, the others are interpolated from them, as
/// `saliency.metrics.pic.create_blurred_image`.
///
/// - `image` is `[H, W]` or `[H, W, C]` of `u8`, `f32` or `f64`; the result
///   has the same shape and type (`u8` values are rounded half to even).
/// - The four corner pixels are always kept, so every pixel lies inside the
///   triangulated area; a mask that is all `true` (after adding the corners)
///   returns a copy of the image.
/// - [`Interpolation::Linear`] (recommended) interpolates linearly over the
///   Delaunay triangulation of the kept pixels, like
///   `scipy.interpolate.griddata(method="linear")`; [`Interpolation::Nearest`]
///   copies the nearest kept pixel.
///
/// On an integer grid the Delaunay triangulation is often not unique (four or
/// more kept pixels on one circle, for example the corners of a rectangle);
/// where SciPy's Qhull and this crate pick different triangles, the
/// interpolated values differ (see the crate's parity notes). Ties in
/// `Nearest` are broken differently from SciPy's k-d tree as well.
///
/// Errors: wrong rank, empty image, non-finite values, a mask whose shape is
/// not `[H, W]`, or an image smaller than 2 x 2 that needs interpolation.
///
/// ```
/// use ndarray::{array, Array2};
/// use saliency::metrics::{create_blurred_image, Interpolation};
///
/// // Only the corners are kept; they are all 1, so everything becomes 1.
/// let image = array![[1.0, 0.0, 1.0], [0.0, 0.0, 0.0], [1.0, 0.0, 1.0]];
/// let mask = Array2::from_elem((3, 3), false);
/// let blurred = create_blurred_image(&image, mask.view(), Interpolation::Linear)?;
/// assert!(blurred.iter().all(|&v| v == 1.0));
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn create_blurred_image<'a, P: Pixel, D: Dimension>(
    image: impl AsArray<'a, P, D>,
    pixel_mask: ArrayView2<'_, bool>,
    method: Interpolation,
) -> Result<Array<P, D>> {
    blurred_image(image.into().into_dyn(), pixel_mask, method)?
        .into_dimensionality::<D>()
        .map_err(|_| SaliencyError::internal("the blurred image does not have the image's rank"))
}

/// [`create_blurred_image`] on a dynamic-dimension view.
fn blurred_image<P: Pixel>(
    image: ArrayViewD<'_, P>,
    pixel_mask: ArrayView2<'_, bool>,
    method: Interpolation,
) -> Result<ArrayD<P>> {
    let (h, w, c) = image_dims("image", &image)?;
    check_mask_shape("pixel_mask", &pixel_mask, (h, w))?;
    if let Some((count, first_index)) = find_non_finite(&image.iter().map(|v| v.to_f64()).collect::<Vec<f64>>()) {
        return Err(SaliencyError::NonFiniteInput {
            what: "image",
            count,
            first_index,
        });
    }
    let mut known: Vec<bool> = pixel_mask.iter().copied().collect();
    for corner in [0, w - 1, (h - 1) * w, h * w - 1] {
        if let Some(k) = known.get_mut(corner) {
            *k = true;
        }
    }
    if known.iter().all(|&k| k) {
        return Ok(image.to_owned());
    }
    let mut values: Vec<f64> = image.iter().map(|v| v.to_f64()).collect();
    let mut mean = vec![0.0; c];
    for pixel in values.chunks_exact(c) {
        for (m, v) in mean.iter_mut().zip(pixel) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= (h * w) as f64);
    griddata(&mut values, &known, (h, w, c), method, &mean)?;
    let out: Vec<P> = values.into_iter().map(P::from_interpolated).collect();
    ArrayD::from_shape_vec(image.raw_dim(), out)
        .map_err(|_| SaliencyError::internal("the interpolated image does not have the image's size"))
}

/// Generates a random pixel mask of `height x width` with
/// `floor(height * width * fraction)` pixels set, as
/// `saliency.metrics.pic.generate_random_mask` (seed `rng` for reproducible
/// masks). Use the result as the `random_mask` of [`PicMetric::compute`]:
/// a new mask per image, the same mask for every saliency method compared on
/// that image.
///
/// Errors when `fraction` is outside `[0, 1]` or the size overflows.
///
/// ```
/// use rand::SeedableRng;
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
/// let mask = saliency::metrics::generate_random_mask(100, 100, 0.2, &mut rng)?;
/// assert_eq!(mask.iter().filter(|&&m| m).count(), 2000);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn generate_random_mask<R: Rng + ?Sized>(
    height: usize,
    width: usize,
    fraction: f64,
    rng: &mut R,
) -> Result<Array2<bool>> {
    if !(fraction.is_finite() && (0.0..=1.0).contains(&fraction)) {
        return Err(SaliencyError::param("fraction", fraction, "must be between 0 and 1"));
    }
    // An array's non-zero sides multiply to at most isize::MAX, even when
    // another side is 0.
    height
        .max(1)
        .checked_mul(width.max(1))
        .filter(|&n| n <= isize::MAX as usize)
        .ok_or_else(|| {
            SaliencyError::param(
                "height * width",
                format!("{height} * {width}"),
                "is too large for an array",
            )
        })?;
    let size = height * width;
    // `int(size * fraction)`, at most `size` since fraction <= 1.
    let count = ((size as f64 * fraction) as usize).min(size);
    let mut mask = crate::checks::try_filled("height * width", size, size, false)?;
    for i in rand::seq::index::sample(rng, size, count) {
        if let Some(m) = mask.get_mut(i) {
            *m = true;
        }
    }
    Array2::from_shape_vec((height, width), mask)
        .map_err(|_| SaliencyError::internal("the random mask does not have height * width pixels"))
}

/// Estimates the information in an image as the size in bytes of its
/// lossless WebP encoding, as `saliency.metrics.pic.estimate_image_entropy`.
///
/// `image` is `[H, W]` (grey), or `[H, W, C]` with 1 (grey), 2 (grey and
/// alpha), 3 (RGB) or 4 (RGBA) channels. The encoder is libwebp (built from
/// its bundled source) with the settings Pillow uses for
/// `save(format="webp", lossless=True, quality=100)`: method 4, transparent
/// pixels' colours not kept (`exact` off), and grey images converted to RGB
/// (grey with alpha to RGBA) first, as Pillow converts them. The bundled
/// libwebp is version 1.6.0; against a Pillow with the same libwebp the sizes
/// are the reference's to the byte (other versions can give other sizes).
///
/// Errors on a wrong rank or channel count, an empty image, or one the
/// encoder rejects (WebP allows at most 16383 pixels per side).
///
/// ```
/// use ndarray::Array2;
/// let flat = Array2::<u8>::from_elem((32, 32), 128);
/// let noisy = Array2::<u8>::from_shape_fn((32, 32), |(i, j)| ((i * 7919 + j * 104_729) % 251) as u8);
/// let e_flat = saliency::metrics::estimate_image_entropy(&flat)?;
/// let e_noisy = saliency::metrics::estimate_image_entropy(&noisy)?;
/// assert!(e_flat < e_noisy);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn estimate_image_entropy<'a, D: Dimension>(image: impl AsArray<'a, u8, D>) -> Result<usize> {
    let image = image.into().into_dyn();
    let (h, w, c) = image_dims("image", &image)?;
    let data = image.as_standard_layout();
    let bytes = data
        .as_slice()
        .ok_or_else(|| SaliencyError::internal("a standard-layout image is not contiguous"))?;
    // Pillow encodes only RGB and RGBA: it converts L to RGB and LA to RGBA.
    let (pixels, layout): (Cow<'_, [u8]>, Layout) = match c {
        1 => (bytes.iter().flat_map(|&l| [l, l, l]).collect(), Layout::Rgb),
        2 => (
            bytes
                .chunks_exact(2)
                .flat_map(|la| match *la {
                    [l, a] => [l, l, l, a],
                    _ => [0; 4],
                })
                .collect(),
            Layout::Rgba,
        ),
        3 => (Cow::Borrowed(bytes), Layout::Rgb),
        4 => (Cow::Borrowed(bytes), Layout::Rgba),
        _ => {
            return Err(SaliencyError::param(
                "channels",
                c,
                "must be 1, 2, 3 or 4 to encode as WebP",
            ));
        }
    };
    libwebp::lossless_size(&pixels, layout, w, h).map_err(|source| SaliencyError::ImageEncoding {
        format: "lossless WebP",
        source,
    })
}

/// A fast estimate of the information in an image, in bytes: the Shannon
/// entropy of its prediction residuals, as a lossless coder would see them.
/// Opt-in replacement for [`estimate_image_entropy`] in
/// [`PicMetric::fast_entropy`].
///
/// Colour images are decorrelated as lossless WebP does (green, red minus
/// green, blue minus green, alpha); each plane is predicted from its left,
/// upper and upper-left neighbours (`clamp(left + up - upper_left)`, the
/// gradient predictor of lossless coders), and the estimate is the sum over
/// planes of `pixels * H(residuals) / 8`, `H` the entropy of the residuals'
/// histogram (modulo 256). It is about 200 times cheaper than the WebP
/// encoding: 0.033 s against 6.9 s for the 15 images of the 224 x 224 PIC
/// timing (`examples/pic_timing.rs`, one thread).
///
/// It is not the reference's measure: the SIC AUC on the PIC fixtures moves
/// by +0.025 (64 x 64), +0.005 (greyscale) and -0.008 (224 x 224) against
/// the reference's (README, "PIC timing").
///
/// Errors on a wrong rank or channel count (1 to 4), or an empty image.
///
/// ```
/// use ndarray::Array2;
/// let flat = Array2::<u8>::from_elem((32, 32), 128);
/// let noisy = Array2::<u8>::from_shape_fn((32, 32), |(i, j)| ((i * 7919 + j * 104_729) % 251) as u8);
/// let e_flat = saliency::metrics::estimate_image_entropy_fast(&flat)?;
/// let e_noisy = saliency::metrics::estimate_image_entropy_fast(&noisy)?;
/// assert!(e_flat < e_noisy);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn estimate_image_entropy_fast<'a, D: Dimension>(image: impl AsArray<'a, u8, D>) -> Result<usize> {
    let image = image.into().into_dyn();
    let (h, w, c) = image_dims("image", &image)?;
    if !(1..=4).contains(&c) {
        return Err(SaliencyError::param("channels", c, "must be 1, 2, 3 or 4"));
    }
    let data = image.as_standard_layout();
    let bytes = data
        .as_slice()
        .ok_or_else(|| SaliencyError::internal("a standard-layout image is not contiguous"))?;
    // Planes: grey (and alpha), or G, R - G, B - G (and alpha).
    let plane = |k: usize, p: usize| -> u8 {
        let px = bytes.get(p * c..(p + 1) * c).unwrap_or_default();
        let at = |i: usize| px.get(i).copied().unwrap_or(0);
        match (c, k) {
            (3 | 4, 0) => at(1),
            (3 | 4, 1) => at(0).wrapping_sub(at(1)),
            (3 | 4, 2) => at(2).wrapping_sub(at(1)),
            (_, k) => at(k),
        }
    };
    let mut bits = 0.0_f64;
    let n = h * w;
    for k in 0..c {
        let mut hist = [0_u32; 256];
        for i in 0..h {
            for j in 0..w {
                let p = i * w + j;
                let v = i32::from(plane(k, p));
                let predicted = match (i, j) {
                    (0, 0) => 0,
                    (0, _) => i32::from(plane(k, p - 1)),
                    (_, 0) => i32::from(plane(k, p - w)),
                    _ => {
                        let (a, b, d) = (
                            i32::from(plane(k, p - 1)),
                            i32::from(plane(k, p - w)),
                            i32::from(plane(k, p - w - 1)),
                        );
                        (a + b - d).clamp(0, 255)
                    }
                };
                hist[((v - predicted) & 0xff) as usize] += 1;
            }
        }
        bits -= hist
            .iter()
            .filter(|&&m| m > 0)
            .map(|&m| {
                let q = f64::from(m) / n as f64;
                f64::from(m) * q.log2()
            })
            .sum::<f64>();
    }
    Ok((bits / 8.0).ceil() as usize)
}

/// The saliency thresholds of the XRAI paper (the reference's documented
/// example): fractions of the most salient pixels revealed per step.
pub const DEFAULT_THRESHOLDS: [f64; 13] = [
    0.005, 0.01, 0.02, 0.03, 0.04, 0.05, 0.07, 0.10, 0.13, 0.21, 0.34, 0.5, 0.75,
];

/// Settings of the Performance Information Curve of one image
/// ([XRAI paper](https://arxiv.org/abs/1906.02825), section 4.1), as
/// `saliency.metrics.pic.compute_pic_metric` takes them.
///
/// The curve is the Softmax Information Curve (SIC) when the prediction
/// function returns the softmax score of the class, the Accuracy Information
/// Curve (AIC) when it returns 1 for a correct classification and 0
/// otherwise.
///
/// Steps, per image: (1) a random mask ([`generate_random_mask`], the same for
/// all methods compared on this image); (2) [`PicMetric::compute`] per method;
/// a skip error ([`SaliencyError::is_pic_skip`]) means the image is not
/// usable for the metric; (3) [`aggregate_individual_pic_results`] per method.
///
/// ```
/// use ndarray::{Array2, Array3, ArrayViewD};
/// use rand::SeedableRng;
/// use saliency::metrics::{PicMetric, generate_random_mask, estimate_image_entropy};
///
/// // A textured image and a saliency map that prefers its left half.
/// let image = Array3::<u8>::from_shape_fn((48, 48, 3), |(i, j, c)| {
///     let (y, x) = (i as f64, j as f64);
///     (128.0 + 60.0 * (0.3 * y + c as f64).sin() * (0.2 * x).cos() + 30.0 * (0.9 * y).sin()) as u8
/// });
/// let saliency = Array2::<f64>::from_shape_fn((48, 48), |(i, j)| (48 - j) as f64 + 0.01 * i as f64);
/// let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
/// let random_mask = generate_random_mask(48, 48, 0.01, &mut rng)?;
///
/// // A stand-in model: the score grows with the image's information.
/// let original = estimate_image_entropy(&image)? as f64;
/// let predict = |batch: ArrayViewD<'_, u8>| -> Result<Vec<f64>, saliency::BoxError> {
///     batch
///         .outer_iter()
///         .map(|img| Ok(estimate_image_entropy(img)? as f64 / original))
///         .collect()
/// };
/// let result = PicMetric::new().compute(&image, saliency.view(), random_mask.view(), predict)?;
/// assert_eq!(result.curve_x.len(), 1001);
/// assert!(result.auc > 0.0 && result.auc < 1.0);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct PicMetric {
    thresholds: Vec<f64>,
    min_pred_value: f64,
    keep_monotonous: bool,
    num_data_points: usize,
    batch_size: Option<usize>,
    fast_entropy: bool,
}

impl Default for PicMetric {
    /// The reference's defaults: [`DEFAULT_THRESHOLDS`], `min_pred_value`
    /// 0.8, `keep_monotonous` on, 1000 data points; all blurred images in one
    /// batch.
    fn default() -> Self {
        PicMetric {
            thresholds: DEFAULT_THRESHOLDS.to_vec(),
            min_pred_value: 0.8,
            keep_monotonous: true,
            num_data_points: 1000,
            batch_size: None,
            fast_entropy: false,
        }
    }
}

/// The curve of one image, as `PicMetricResult` of the reference.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PicMetricResult {
    /// x coordinates of the curve (normalized entropy), `num_data_points + 1`
    /// of them from 0 to 1.
    pub curve_x: Vec<f64>,
    /// y coordinates of the curve (normalized prediction).
    pub curve_y: Vec<f64>,
    /// The images shown to the model: the fully blurred image first, one per
    /// threshold, the original image last.
    pub blurred_images: Vec<ArrayD<u8>>,
    /// The model's prediction on each of `blurred_images`.
    pub predictions: Vec<f64>,
    /// The thresholds of `blurred_images`: 0, the saliency thresholds, 1.
    pub thresholds: Vec<f64>,
    /// Area under the curve.
    pub auc: f64,
}

impl PicMetric {
    /// The defaults (see [`Default`]).
    pub fn new() -> Self {
        Self::default()
    }

    /// The fractions of the most salient pixels to reveal, ascending, each in
    /// `[0, 1]`.
    #[must_use = "a setter returns the changed metric; assign or chain it"]
    pub fn thresholds(mut self, thresholds: impl Into<Vec<f64>>) -> Self {
        self.thresholds = thresholds.into();
        self
    }

    /// Images whose original prediction is below this are skipped with
    /// [`SaliencyError::PicPredictionTooLow`].
    #[must_use = "a setter returns the changed metric; assign or chain it"]
    pub fn min_pred_value(mut self, value: f64) -> Self {
        self.min_pred_value = value;
        self
    }

    /// Keeps the curve non-decreasing (the paper's choice).
    #[must_use = "a setter returns the changed metric; assign or chain it"]
    pub fn keep_monotonous(mut self, keep: bool) -> Self {
        self.keep_monotonous = keep;
        self
    }

    /// Points of the curve before the final point at x = 1 (1 to
    /// [`MAX_STEPS`](crate::MAX_STEPS)).
    #[must_use = "a setter returns the changed metric; assign or chain it"]
    pub fn num_data_points(mut self, n: usize) -> Self {
        self.num_data_points = n;
        self
    }

    /// Blurred images per call of the prediction function (at least 1);
    /// by default all of them go in one batch.
    #[must_use = "a setter returns the changed metric; assign or chain it"]
    pub fn batch_size(mut self, n: usize) -> Self {
        self.batch_size = Some(n);
        self
    }

    /// Estimates the information with [`estimate_image_entropy_fast`] instead
    /// of the lossless WebP size: far cheaper, but the AUC is no longer the
    /// reference's (on the PIC fixtures it moves by up to 0.025, see that
    /// function). Off by default.
    #[must_use = "a setter returns the changed metric; assign or chain it"]
    pub fn fast_entropy(mut self, fast: bool) -> Self {
        self.fast_entropy = fast;
        self
    }

    /// Whether the fast entropy estimate replaces the WebP size.
    pub fn get_fast_entropy(&self) -> bool {
        self.fast_entropy
    }

    /// The fractions of the most salient pixels revealed.
    pub fn get_thresholds(&self) -> &[f64] {
        &self.thresholds
    }

    /// The lowest original prediction an image may have.
    pub fn get_min_pred_value(&self) -> f64 {
        self.min_pred_value
    }

    /// Whether the curve is kept non-decreasing.
    pub fn get_keep_monotonous(&self) -> bool {
        self.keep_monotonous
    }

    /// The points of the curve before the final point.
    pub fn get_num_data_points(&self) -> usize {
        self.num_data_points
    }

    /// The blurred images per prediction call; `None`: all in one call.
    pub fn get_batch_size(&self) -> Option<usize> {
        self.batch_size
    }

    fn check(&self) -> Result<()> {
        let mut previous = 0.0;
        for &t in &self.thresholds {
            if !(t.is_finite() && (0.0..=1.0).contains(&t)) {
                return Err(SaliencyError::param(
                    "thresholds",
                    t,
                    "every threshold must be between 0 and 1",
                ));
            }
            if t < previous {
                return Err(SaliencyError::param(
                    "thresholds",
                    format!("{:?}", self.thresholds),
                    "must be in ascending order",
                ));
            }
            previous = t;
        }
        if !self.min_pred_value.is_finite() {
            return Err(SaliencyError::param(
                "min_pred_value",
                self.min_pred_value,
                "must be finite",
            ));
        }
        crate::checks::check_steps("num_data_points", self.num_data_points)?;
        if let Some(b) = self.batch_size {
            crate::checks::check_positive("batch_size", b)?;
        }
        Ok(())
    }

    /// Computes the curve for one image and one saliency map, as
    /// `saliency.metrics.pic.compute_pic_metric`.
    ///
    /// - `image`: `[H, W, C]` or `[H, W]`, `u8`.
    /// - `saliency_map`: `[H, W]`, higher is more important (apply `abs`
    ///   first if that is the order you mean).
    /// - `random_mask`: `[H, W]`, the pixels kept in every blurred image.
    /// - `predict`: called with a batch `[B, H, W, C]` (or `[B, H, W]`) of
    ///   `u8` images, returns one score per image. It must be a pure function
    ///   of each image: the original and the fully blurred image go in one
    ///   batch, the threshold images in batches of [`PicMetric::batch_size`].
    ///
    /// The blurred images of the thresholds are computed in parallel (with
    /// the `rayon` feature); the result does not depend on the thread count.
    ///
    /// Errors: the three skip conditions of the reference
    /// ([`SaliencyError::PicPredictionTooLow`],
    /// [`SaliencyError::PicBlurredEntropyNotLower`],
    /// [`SaliencyError::PicBlurredPredictionNotLower`], checked in that
    /// order); invalid settings; shape mismatches; a non-finite saliency map;
    /// a prediction function that fails ([`SaliencyError::Model`]), returns
    /// the wrong number of scores ([`SaliencyError::OutputBatchMismatch`]) or
    /// non-finite ones ([`SaliencyError::NonFiniteOutput`]), both reported
    /// under [`OutputKey::OutputLayerValues`].
    pub fn compute<'a, F, P, D>(
        &self,
        image: impl AsArray<'a, u8, D>,
        saliency_map: ArrayView2<'_, F>,
        random_mask: ArrayView2<'_, bool>,
        predict: P,
    ) -> Result<PicMetricResult>
    where
        F: Float,
        P: FnMut(ArrayViewD<'_, u8>) -> std::result::Result<Vec<f64>, BoxError>,
        D: Dimension,
    {
        self.compute_impl(
            image.into().into_dyn(),
            saliency_map,
            random_mask,
            predict,
            &|img: ArrayViewD<'_, u8>| {
                if self.fast_entropy {
                    estimate_image_entropy_fast(img)
                } else {
                    estimate_image_entropy(img)
                }
            },
        )
    }

    /// [`PicMetric::compute`] with another estimate of an image's
    /// information in place of [`estimate_image_entropy`], for example the
    /// size in another lossless format. `entropy` is called from several
    /// threads at once.
    ///
    /// Its errors are returned as [`SaliencyError::ImageEncoding`].
    pub fn compute_with_entropy<'a, F, P, E, D>(
        &self,
        image: impl AsArray<'a, u8, D>,
        saliency_map: ArrayView2<'_, F>,
        random_mask: ArrayView2<'_, bool>,
        predict: P,
        entropy: E,
    ) -> Result<PicMetricResult>
    where
        F: Float,
        P: FnMut(ArrayViewD<'_, u8>) -> std::result::Result<Vec<f64>, BoxError>,
        E: Fn(ArrayViewD<'_, u8>) -> std::result::Result<usize, BoxError> + Sync,
        D: Dimension,
    {
        let entropy = |img: ArrayViewD<'_, u8>| {
            entropy(img).map_err(|source| SaliencyError::ImageEncoding {
                format: "a custom estimator",
                source,
            })
        };
        self.compute_impl(image.into().into_dyn(), saliency_map, random_mask, predict, &entropy)
    }

    fn compute_impl<F, P>(
        &self,
        image: ArrayViewD<'_, u8>,
        saliency_map: ArrayView2<'_, F>,
        random_mask: ArrayView2<'_, bool>,
        mut predict: P,
        estimate_entropy: &(dyn Fn(ArrayViewD<'_, u8>) -> Result<usize> + Sync),
    ) -> Result<PicMetricResult>
    where
        F: Float,
        P: FnMut(ArrayViewD<'_, u8>) -> std::result::Result<Vec<f64>, BoxError>,
    {
        self.check()?;
        let (h, w, _) = image_dims("image", &image)?;
        check_mask_shape("random_mask", &random_mask, (h, w))?;
        if saliency_map.dim() != (h, w) {
            return Err(SaliencyError::ShapeMismatch {
                what: "saliency_map",
                expected: vec![h, w],
                actual: saliency_map.shape().to_vec(),
            });
        }
        crate::checks::check_finite("saliency_map", &saliency_map.into_dyn())?;
        let batch_size = self.batch_size.unwrap_or(usize::MAX);
        let image = image.as_standard_layout().into_owned();

        let (original_entropy, blurred) = crate::parallel::join(
            || estimate_entropy(image.view()),
            || -> Result<_> {
                let blurred = create_blurred_image(image.view(), random_mask, Interpolation::Linear)?;
                let entropy = estimate_entropy(blurred.view())?;
                Ok((blurred, entropy))
            },
        );
        let original_entropy = original_entropy?;
        let (fully_blurred, blurred_entropy) = blurred?;

        let (original_pred, blurred_pred) =
            match predict_batches(&mut predict, &[&image, &fully_blurred], batch_size)?[..] {
                [o, b] => (o, b),
                _ => unreachable_count()?,
            };
        if original_pred < self.min_pred_value {
            return Err(SaliencyError::PicPredictionTooLow {
                min_pred_value: self.min_pred_value,
                prediction: original_pred,
            });
        }
        if blurred_entropy >= original_entropy {
            return Err(SaliencyError::PicBlurredEntropyNotLower {
                blurred: blurred_entropy,
                original: original_entropy,
            });
        }
        if blurred_pred >= original_pred {
            return Err(SaliencyError::PicBlurredPredictionNotLower {
                blurred: blurred_pred,
                original: original_pred,
            });
        }

        // The pixels revealed per threshold: saliency >= its (1 - t) quantile.
        let saliency: Vec<F> = saliency_map.iter().copied().collect();
        let mut scratch = saliency.clone();
        let cutoffs = self
            .thresholds
            .iter()
            .map(|&t| quantile(&mut scratch, 1.0 - t))
            .collect::<Result<Vec<F>>>()?;
        let random: Vec<bool> = random_mask.iter().copied().collect();
        let blur_one = |&cutoff: &F| -> Result<(ArrayD<u8>, usize)> {
            let mut mask = random.clone();
            crate::parallel::for_each_chunk_mut(&mut mask, |offset, chunk| {
                let salient = saliency.get(offset..).unwrap_or_default();
                for (m, &s) in chunk.iter_mut().zip(salient) {
                    *m = *m || s >= cutoff;
                }
            });
            let mask = Array2::from_shape_vec((h, w), mask)
                .map_err(|_| SaliencyError::internal("the revealed pixels do not cover the image"))?;
            let blurred = create_blurred_image(image.view(), mask.view(), Interpolation::Linear)?;
            let entropy = estimate_entropy(blurred.view())?;
            Ok((blurred, entropy))
        };
        // The first error in threshold order, whatever the thread count.
        let steps: Vec<(ArrayD<u8>, usize)> = crate::parallel::map_items(&cutoffs, blur_one)
            .into_iter()
            .collect::<Result<_>>()?;

        let step_images: Vec<&ArrayD<u8>> = steps.iter().map(|(img, _)| img).collect();
        let step_preds = if step_images.is_empty() {
            Vec::new()
        } else {
            predict_batches(&mut predict, &step_images, batch_size)?
        };

        // (normalized entropy, normalized prediction) per threshold.
        let entropy_range = original_entropy as f64 - blurred_entropy as f64;
        let pred_range = original_pred - blurred_pred;
        let mut points: Vec<(f64, f64)> = Vec::with_capacity(steps.len() + 2);
        let mut max_normalized_pred = 0.0_f64;
        for ((_, entropy), &pred) in steps.iter().zip(&step_preds) {
            let normalized_entropy = ((*entropy as f64 - blurred_entropy as f64) / entropy_range).clamp(0.0, 1.0);
            let normalized_pred = ((pred - blurred_pred) / pred_range).clamp(0.0, 1.0);
            if normalized_pred > max_normalized_pred {
                max_normalized_pred = normalized_pred;
            }
            let y = if self.keep_monotonous {
                max_normalized_pred
            } else {
                normalized_pred
            };
            points.push((normalized_entropy, y));
        }
        points.push((0.0, 0.0));
        points.push((1.0, 1.0));
        // interp1d sorts by x with a stable sort.
        points.sort_by(|a, b| a.0.partial_cmp(&b.0).unwrap_or(std::cmp::Ordering::Equal));
        let (xp, fp): (Vec<f64>, Vec<f64>) = points.into_iter().unzip();

        let n = self.num_data_points;
        // np.linspace(0, 1, n, endpoint=False): i * (1 / n).
        let step = 1.0 / n as f64;
        let mut curve_x: Vec<f64> = (0..n).map(|i| i as f64 * step).collect();
        let mut curve_y: Vec<f64> = curve_x.iter().map(|&x| interp(x, &xp, &fp)).collect();
        curve_x.push(1.0);
        curve_y.push(1.0);
        let auc = trapz(&curve_y, &curve_x);

        let mut blurred_images = Vec::with_capacity(steps.len() + 2);
        blurred_images.push(fully_blurred);
        blurred_images.extend(steps.into_iter().map(|(img, _)| img));
        blurred_images.push(image);
        let mut predictions = Vec::with_capacity(step_preds.len() + 2);
        predictions.push(blurred_pred);
        predictions.extend(step_preds);
        predictions.push(original_pred);
        let mut thresholds = Vec::with_capacity(self.thresholds.len() + 2);
        thresholds.push(0.0);
        thresholds.extend(&self.thresholds);
        thresholds.push(1.0);
        Ok(PicMetricResult {
            curve_x,
            curve_y,
            blurred_images,
            predictions,
            thresholds,
            auc,
        })
    }
}

fn unreachable_count<T>() -> Result<T> {
    Err(SaliencyError::internal("batch predictions were lost"))
}

/// Stacks `images` into batches of at most `batch_size`, calls `predict`
/// on each and checks that it returns one finite score per image.
fn predict_batches<P>(predict: &mut P, images: &[&ArrayD<u8>], batch_size: usize) -> Result<Vec<f64>>
where
    P: FnMut(ArrayViewD<'_, u8>) -> std::result::Result<Vec<f64>, BoxError>,
{
    let mut out = Vec::with_capacity(images.len());
    for chunk in images.chunks(batch_size.max(1)) {
        let Some(first) = chunk.first() else { continue };
        let mut shape = vec![chunk.len()];
        shape.extend_from_slice(first.shape());
        let mut data = Vec::with_capacity(chunk.len() * first.len());
        for img in chunk {
            data.extend(img.iter().copied());
        }
        let batch = ArrayD::from_shape_vec(IxDyn(&shape), data)
            .map_err(|_| SaliencyError::internal("the images of a batch differ in shape"))?;
        let scores = predict(batch.view()).map_err(SaliencyError::Model)?;
        if scores.len() != chunk.len() {
            return Err(SaliencyError::OutputBatchMismatch {
                key: OutputKey::OutputLayerValues,
                expected_batch: chunk.len(),
                expected: vec![chunk.len()],
                actual: vec![scores.len()],
            });
        }
        if let Some((count, first_index)) = find_non_finite(&scores) {
            return Err(SaliencyError::NonFiniteOutput {
                key: OutputKey::OutputLayerValues,
                count,
                first_index,
                shape: vec![scores.len()],
            });
        }
        out.extend(scores);
    }
    Ok(out)
}

/// [`PicMetric::compute`] with the given thresholds and the other settings
/// at the reference's defaults (`min_pred_value` 0.8, `keep_monotonous` on,
/// 1000 data points).
pub fn compute_pic_metric<'a, F, P, D>(
    image: impl AsArray<'a, u8, D>,
    saliency_map: ArrayView2<'_, F>,
    random_mask: ArrayView2<'_, bool>,
    predict: P,
    saliency_thresholds: &[f64],
) -> Result<PicMetricResult>
where
    F: Float,
    P: FnMut(ArrayViewD<'_, u8>) -> std::result::Result<Vec<f64>, BoxError>,
    D: Dimension,
{
    PicMetric::new()
        .thresholds(saliency_thresholds)
        .compute(image, saliency_map, random_mask, predict)
}

/// How [`aggregate_individual_pic_results`] combines the curves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Aggregation {
    /// The mean of the curves at each point.
    Mean,
    /// The median of the curves at each point (the reference's default).
    #[default]
    Median,
}

/// The aggregated curve of many images, as `AggregateMetricResult`.
#[non_exhaustive]
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AggregateMetricResult {
    /// x coordinates (shared by all results).
    pub curve_x: Vec<f64>,
    /// Mean or median y per point.
    pub curve_y: Vec<f64>,
    /// Area under the aggregated curve.
    pub auc: f64,
}

/// Aggregates the curves of many images for one saliency method, as
/// `saliency.metrics.pic.aggregate_individual_pic_results`.
///
/// Errors: an empty list; curves of different lengths; results whose x
/// coordinates differ (the reference only detects this when it makes two x
/// columns equal; here any difference is an error); repeated x coordinates
/// (the reference's check); non-finite y values.
///
/// ```
/// use saliency::metrics::{Aggregation, PicMetricResult, aggregate_individual_pic_results};
/// let x = vec![0.0, 0.5, 1.0];
/// let a = PicMetricResult { curve_x: x.clone(), curve_y: vec![0.0, 0.2, 1.0], ..Default::default() };
/// let b = PicMetricResult { curve_x: x, curve_y: vec![0.0, 0.4, 1.0], ..Default::default() };
/// let r = aggregate_individual_pic_results(&[a, b], Aggregation::Mean)?;
/// assert_eq!(r.curve_y[1], (0.2 + 0.4) / 2.0);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn aggregate_individual_pic_results(
    results: &[PicMetricResult],
    method: Aggregation,
) -> Result<AggregateMetricResult> {
    let Some(first) = results.first() else {
        return Err(SaliencyError::EmptyInput {
            what: "results",
            shape: vec![0],
        });
    };
    let curve_x = &first.curve_x;
    let n = curve_x.len();
    for (i, r) in results.iter().enumerate() {
        for (what, len) in [
            ("curve_x of a result", r.curve_x.len()),
            ("curve_y of a result", r.curve_y.len()),
        ] {
            if len != n {
                return Err(SaliencyError::ShapeMismatch {
                    what,
                    expected: vec![n],
                    actual: vec![len],
                });
            }
        }
        if let Some((k, (a, b))) = r.curve_x.iter().zip(curve_x).enumerate().find(|(_, (a, b))| a != b) {
            return Err(SaliencyError::param(
                "results",
                format!("result {i} has x = {a} at point {k}, result 0 has {b}"),
                "individual results have different x-axis data points",
            ));
        }
        if let Some((count, first_index)) = find_non_finite(&r.curve_y) {
            return Err(SaliencyError::NonFiniteInput {
                what: "curve_y of a result",
                count,
                first_index,
            });
        }
    }
    let mut sorted_x = curve_x.clone();
    sorted_x.sort_by(f64::total_cmp);
    if let Some(pair) = sorted_x.windows(2).find(|p| p.first() == p.get(1)) {
        return Err(SaliencyError::param(
            "results",
            format!("x = {:?} appears twice", pair.first()),
            "individual results have repeated x-axis data points",
        ));
    }
    let k = results.len();
    let mut column = vec![0.0; k];
    let curve_y: Vec<f64> = (0..n)
        .map(|j| {
            for (c, r) in column.iter_mut().zip(results) {
                *c = r.curve_y.get(j).copied().unwrap_or(0.0);
            }
            match method {
                // np.mean over axis 0: a running sum down the column, divided.
                Aggregation::Mean => column.iter().fold(0.0, |acc, v| acc + v) / k as f64,
                Aggregation::Median => {
                    column.sort_by(f64::total_cmp);
                    let mid = k / 2;
                    let hi = column.get(mid).copied().unwrap_or(0.0);
                    if k % 2 == 1 {
                        hi
                    } else {
                        (column.get(mid - 1).copied().unwrap_or(0.0) + hi) / 2.0
                    }
                }
            }
        })
        .collect();
    let auc = trapz(&curve_y, curve_x);
    Ok(AggregateMetricResult {
        curve_x: curve_x.clone(),
        curve_y,
        auc,
    })
}
