//! `skimage.transform.resize` for float images.

use ndarray::{ArrayD, IxDyn};

use crate::checks::try_filled;
use crate::error::{Result, SaliencyError};
use crate::float::Float;
use crate::imageops::gaussian::{BoundaryMode, DEFAULT_TRUNCATE, check_kernel_radius, filter_f64};

/// How `resize` extends the image beyond its edges, in scikit-image's
/// (`numpy.pad`) names, for an edge `a b c d`.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ResizeMode {
    /// `k k | a b c d | k k` with `k` = [`ResizeOptions::cval`].
    Constant,
    /// `a a | a b c d | d d`.
    Edge,
    /// `b a | a b c d | d c`: the edge sample repeated.
    Symmetric,
    /// `c b | a b c d | c b`: reflection about the edge sample (the default).
    #[default]
    Reflect,
    /// `c d | a b c d | a b`.
    Wrap,
}

/// Whether `resize` smooths the image before sampling it
/// (scikit-image's `anti_aliasing`).
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum AntiAliasing {
    /// scikit-image's rule (its `None`): on when any axis shrinks.
    #[default]
    Auto,
    /// Always smooth (`True`).
    On,
    /// Never smooth (`False`).
    Off,
}

/// The options of `skimage.transform.resize`; [`Default`] gives
/// scikit-image's defaults (order 1, mode reflect, cval 0, clip, automatic
/// anti-aliasing).
///
/// A setter and a getter for each setting:
///
/// ```
/// use saliency::imageops::{AntiAliasing, ResizeMode, ResizeOptions};
/// let bicubic = ResizeOptions::default().order(3).mode(ResizeMode::Constant).anti_aliasing(AntiAliasing::On);
/// assert_eq!(bicubic.get_order(), 3);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct ResizeOptions {
    order: usize,
    mode: ResizeMode,
    cval: f64,
    clip: bool,
    preserve_range: bool,
    anti_aliasing: AntiAliasing,
    anti_aliasing_sigma: Option<Vec<f64>>,
}

impl Default for ResizeOptions {
    fn default() -> Self {
        ResizeOptions {
            order: 1,
            mode: ResizeMode::Reflect,
            cval: 0.0,
            clip: true,
            preserve_range: false,
            anti_aliasing: AntiAliasing::Auto,
            anti_aliasing_sigma: None,
        }
    }
}

impl ResizeOptions {
    /// Spline order: 0 nearest, 1 bilinear, 3 bicubic (2, 4 and 5 work
    /// too). scikit-image's default for float images is 1.
    #[must_use = "a setter returns the changed options; assign or chain it"]
    pub fn order(mut self, order: usize) -> Self {
        self.order = order;
        self
    }

    /// Boundary mode, also used by the anti-aliasing filter (default
    /// [`ResizeMode::Reflect`]).
    #[must_use = "a setter returns the changed options; assign or chain it"]
    pub fn mode(mut self, mode: ResizeMode) -> Self {
        self.mode = mode;
        self
    }

    /// The constant of [`ResizeMode::Constant`] (default 0).
    #[must_use = "a setter returns the changed options; assign or chain it"]
    pub fn cval(mut self, cval: f64) -> Self {
        self.cval = cval;
        self
    }

    /// Clip the output to the input's value range (widened to `cval` when
    /// the constant mode brings it in), as scikit-image does (default on).
    #[must_use = "a setter returns the changed options; assign or chain it"]
    pub fn clip(mut self, clip: bool) -> Self {
        self.clip = clip;
        self
    }

    /// scikit-image's `preserve_range` (default off); float images keep
    /// their range either way, so it changes nothing here and exists for
    /// completeness.
    #[must_use = "a setter returns the changed options; assign or chain it"]
    pub fn preserve_range(mut self, preserve_range: bool) -> Self {
        self.preserve_range = preserve_range;
        self
    }

    /// Gaussian smoothing before sampling; [`AntiAliasing::Auto`] (the
    /// default) is scikit-image's rule: on when any axis shrinks.
    #[must_use = "a setter returns the changed options; assign or chain it"]
    pub fn anti_aliasing(mut self, anti_aliasing: AntiAliasing) -> Self {
        self.anti_aliasing = anti_aliasing;
        self
    }

    /// The smoothing's sigma, one value for all axes or one per axis of the
    /// output. `None` (the default): `max(0, (factor - 1) / 2)` per axis,
    /// `factor` being input size / output size.
    #[must_use = "a setter returns the changed options; assign or chain it"]
    pub fn anti_aliasing_sigma(mut self, sigma: Option<Vec<f64>>) -> Self {
        self.anti_aliasing_sigma = sigma;
        self
    }

    /// The spline order.
    pub fn get_order(&self) -> usize {
        self.order
    }

    /// The boundary mode.
    pub fn get_mode(&self) -> ResizeMode {
        self.mode
    }

    /// The constant of the constant mode.
    pub fn get_cval(&self) -> f64 {
        self.cval
    }

    /// Whether the output is clipped to the input's range.
    pub fn get_clip(&self) -> bool {
        self.clip
    }

    /// scikit-image's `preserve_range`.
    pub fn get_preserve_range(&self) -> bool {
        self.preserve_range
    }

    /// The anti-aliasing setting.
    pub fn get_anti_aliasing(&self) -> AntiAliasing {
        self.anti_aliasing
    }

    /// The anti-aliasing sigma; `None`: derived from the scale factors.
    pub fn get_anti_aliasing_sigma(&self) -> Option<&[f64]> {
        self.anti_aliasing_sigma.as_deref()
    }
}

/// The `scipy.ndimage` mode scikit-image hands to `gaussian_filter` and `zoom`.
#[derive(Clone, Copy, Debug, PartialEq)]
enum NdMode {
    GridConstant,
    Nearest,
    Mirror,
    Reflect,
    GridWrap,
}

impl NdMode {
    fn of(mode: ResizeMode) -> Self {
        match mode {
            ResizeMode::Constant => NdMode::GridConstant,
            ResizeMode::Edge => NdMode::Nearest,
            ResizeMode::Symmetric => NdMode::Reflect,
            ResizeMode::Reflect => NdMode::Mirror,
            ResizeMode::Wrap => NdMode::GridWrap,
        }
    }

    fn filter_mode(self, cval: f64) -> BoundaryMode {
        match self {
            NdMode::GridConstant => BoundaryMode::Constant(cval),
            NdMode::Nearest => BoundaryMode::Nearest,
            NdMode::Mirror => BoundaryMode::Mirror,
            NdMode::Reflect => BoundaryMode::Reflect,
            NdMode::GridWrap => BoundaryMode::Wrap,
        }
    }
}

/// `skimage.transform.resize(image, output_shape, order, mode, cval, clip,
/// preserve_range, anti_aliasing, anti_aliasing_sigma)` for a float image of
/// any rank (2-D, or H x W x C with `output_shape` of length 2 or 3).
///
/// As scikit-image does it: optional Gaussian anti-aliasing
/// ([`gaussian_filter`](crate::imageops::gaussian_filter), truncate 4), then
/// `scipy.ndimage.zoom` with `grid_mode=True` (pixel centres at `i + 0.5`),
/// spline pre-filtering for orders above 1 (with SciPy's 12-sample padding
/// in the constant and edge modes), then clipping. The interpolation is
/// applied one axis at a time (equal to SciPy's tensor-product sum up to
/// rounding). One deliberate difference: the [`ResizeMode::Symmetric`]
/// spline pre-filter (orders 2 to 5) uses SciPy 1.18's corrected start value,
/// which differs from SciPy 1.17's by about `0.43^(2n)` on lines of `n`
/// samples.
///
/// Errors: an empty or non-finite image, an `output_shape` of the wrong
/// length or with a zero, `order` above 5, a non-finite `cval`, a negative or
/// misshapen `anti_aliasing_sigma`.
///
/// ```
/// use ndarray::array;
/// use saliency::imageops::{resize, ResizeOptions};
///
/// let x = array![[0.0_f64, 1.0], [2.0, 3.0]];
/// let y = resize(&x, &[4, 4], &ResizeOptions::default())?;
/// // skimage.transform.resize(x, (4, 4))[0] == [0.75, 0.75, 1.25, 1.25]
/// assert_eq!(y.shape(), &[4, 4]);
/// assert!((y[[0, 0]] - 0.75).abs() < 1e-12 && (y[[0, 3]] - 1.25).abs() < 1e-12);
/// # Ok::<(), saliency::SaliencyError>(())
/// ```
pub fn resize<'a, F: Float, D: ndarray::Dimension>(
    image: impl ndarray::AsArray<'a, F, D>,
    output_shape: &[usize],
    options: &ResizeOptions,
) -> Result<ArrayD<F>> {
    let image = image.into().into_dyn();
    if image.ndim() == 0 {
        return Err(SaliencyError::InvalidRank {
            what: "image",
            expected: "rank 1 or more",
            actual: 0,
            shape: vec![],
        });
    }
    crate::checks::check_input("image", &image, 1)?;
    let mut out_shape = output_shape.to_vec();
    if out_shape.len() + 1 == image.ndim() {
        out_shape.push(image.shape()[image.ndim() - 1]);
    }
    if out_shape.len() != image.ndim() {
        return Err(SaliencyError::param(
            "output_shape",
            format!("{output_shape:?}"),
            "must have the image's rank, or one less (the channels are kept)",
        ));
    }
    if out_shape.contains(&0) {
        return Err(SaliencyError::param(
            "output_shape",
            format!("{output_shape:?}"),
            "every size must be at least 1",
        ));
    }
    if options.order > 5 {
        return Err(SaliencyError::param("order", options.order, "must be between 0 and 5"));
    }
    if !options.cval.is_finite() {
        return Err(SaliencyError::param("cval", options.cval, "must be finite"));
    }
    let in_shape = image.shape().to_vec();
    let factors: Vec<f64> = in_shape
        .iter()
        .zip(&out_shape)
        .map(|(&i, &o)| i as f64 / o as f64)
        .collect();
    let mode = NdMode::of(options.mode);
    let anti_aliasing = match options.anti_aliasing {
        AntiAliasing::Auto => out_shape.iter().zip(&in_shape).any(|(o, i)| o < i),
        AntiAliasing::On => true,
        AntiAliasing::Off => false,
    };

    let input = super::to_f64_vec(&image);
    let mut data = if anti_aliasing {
        let sigma: Vec<f64> = match &options.anti_aliasing_sigma {
            None => factors.iter().map(|f| ((f - 1.0) / 2.0).max(0.0)).collect(),
            Some(s) if s.len() == 1 => vec![s[0]; factors.len()],
            Some(s) if s.len() == factors.len() => s.clone(),
            Some(s) => {
                return Err(SaliencyError::param(
                    "anti_aliasing_sigma",
                    format!("{s:?}"),
                    "must have one value, or one per axis",
                ));
            }
        };
        if let Some(s) = sigma.iter().find(|s| !(s.is_finite() && **s >= 0.0)) {
            return Err(SaliencyError::param(
                "anti_aliasing_sigma",
                s,
                "must be finite and >= 0",
            ));
        }
        for &s in &sigma {
            check_kernel_radius("anti_aliasing_sigma", s, DEFAULT_TRUNCATE)?;
        }
        filter_f64(
            input.clone(),
            &in_shape,
            &sigma,
            mode.filter_mode(options.cval),
            DEFAULT_TRUNCATE,
            |v| F::from_f64_lossy(v).as_f64(),
        )
    } else {
        input.clone()
    };

    let mut shape = in_shape.clone();
    // The last axis resampled writes `F` directly (one large buffer less).
    let final_axis = (0..shape.len()).find(|&a| in_shape[a] != out_shape[a]);
    let mut values: Option<Vec<F>> = None;
    // Last axis first: it is resampled while the other axes still have
    // their input sizes, and later axes move whole contiguous rows.
    for axis in (0..shape.len()).rev() {
        // Zoom 1 along an axis samples the input at its own pixels.
        if in_shape[axis] == out_shape[axis] {
            continue;
        }
        let (padded, len) = if options.order > 1 {
            prefilter_axis(&data, &shape, axis, options.order, mode, options.cval)?
        } else {
            (data, shape[axis])
        };
        let mut padded_shape = shape.clone();
        padded_shape[axis] = len;
        let taps = axis_taps(in_shape[axis], out_shape[axis], len, options.order, mode)?;
        let per = options.order + 1;
        if Some(axis) == final_axis {
            values = Some(interpolate_axis(
                &padded,
                &padded_shape,
                axis,
                &taps,
                per,
                options.cval,
                F::from_f64_lossy,
            )?);
            data = Vec::new();
        } else {
            data = interpolate_axis(&padded, &padded_shape, axis, &taps, per, options.cval, |v| v)?;
        }
        shape[axis] = out_shape[axis];
    }
    let mut values = values.unwrap_or_else(|| data.into_iter().map(F::from_f64_lossy).collect());

    if options.clip {
        clip_to_input_range(&mut values, &input, options);
    }
    ArrayD::from_shape_vec(IxDyn(&out_shape), values)
        .map_err(|_| SaliencyError::internal("the resized values do not fill the output shape"))
}

/// scikit-image's clipping: to the input's range, widened to `cval` when the
/// constant mode brought it into the output.
fn clip_to_input_range<F: Float>(data: &mut [F], image: &[f64], options: &ResizeOptions) {
    // The input's values are exact in `F`, so are these bounds; clipping
    // after the conversion to `F` equals clipping before it.
    let (mut lo, mut hi) = super::min_max(image.iter().copied());
    let cval = F::from_f64_lossy(options.cval).as_f64();
    if options.mode == ResizeMode::Constant && !(lo <= cval && cval <= hi) {
        let (olo, ohi) = super::min_max(data.iter().map(|v| v.as_f64()));
        if olo <= cval && cval <= ohi {
            lo = lo.min(cval);
            hi = hi.max(cval);
        }
    }
    let (lo, hi) = (F::from_f64_lossy(lo), F::from_f64_lossy(hi));
    data.iter_mut().for_each(|v| {
        if *v < lo {
            *v = lo;
        } else if *v > hi {
            *v = hi;
        }
    });
}

/// SciPy's `map_coordinate`: folds a coordinate outside `0..len` back in.
fn map_coordinate(x: f64, len: usize, mode: NdMode) -> f64 {
    let n = len as f64;
    if len <= 1 && mode != NdMode::GridConstant {
        return if x < 0.0 || x > n - 1.0 { 0.0 } else { x };
    }
    if x < 0.0 {
        match mode {
            NdMode::Mirror => {
                let sz2 = 2.0 * n - 2.0;
                let y = sz2 * ((-x / sz2) as i64) as f64 + x;
                if y <= 1.0 - n { y + sz2 } else { -y }
            }
            NdMode::Reflect => {
                let sz2 = 2.0 * n;
                let y = if x < -sz2 {
                    sz2 * ((-x / sz2) as i64) as f64 + x
                } else {
                    x
                };
                if y < -n {
                    y + sz2
                } else {
                    (if y > -1e-15 { 1e-15 } else { -y }) - 1.0
                }
            }
            NdMode::GridWrap => x + n * (((-1.0 - x) / n) as i64 + 1) as f64,
            NdMode::Nearest => 0.0,
            NdMode::GridConstant => x,
        }
    } else if x > n - 1.0 {
        match mode {
            NdMode::Mirror => {
                let sz2 = 2.0 * n - 2.0;
                let y = x - sz2 * ((x / sz2) as i64) as f64;
                if y >= n { sz2 - y } else { y }
            }
            NdMode::Reflect => {
                let sz2 = 2.0 * n;
                let y = x - sz2 * ((x / sz2) as i64) as f64;
                if y >= n { sz2 - y - 1.0 } else { y }
            }
            NdMode::GridWrap => x - n * ((x / n) as i64) as f64,
            NdMode::Nearest => n - 1.0,
            NdMode::GridConstant => x,
        }
    } else {
        x
    }
}

/// The B-spline weights of the `order + 1` samples around `x`, as SciPy
/// computes them (the last weight is 1 minus the others).
fn spline_weights(x: f64, order: usize, w: &mut [f64]) {
    let x = x - (if order & 1 == 1 { x } else { x + 0.5 }).floor();
    let (y, z) = (x, 1.0 - x);
    match order {
        1 => w[0] = 1.0 - x,
        2 => {
            w[1] = 0.75 - x * x;
            let y = 0.5 - x;
            w[0] = 0.5 * y * y;
        }
        3 => {
            w[1] = (y * y * (y - 2.0) * 3.0 + 4.0) / 6.0;
            w[2] = (z * z * (z - 2.0) * 3.0 + 4.0) / 6.0;
            w[0] = z * z * z / 6.0;
        }
        4 => {
            let t = x * x;
            w[2] = t * (t * 0.25 - 0.625) + 115.0 / 192.0;
            let y = 1.0 + x;
            w[1] = y * (y * (y * (5.0 - y) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
            w[3] = z * (z * (z * (5.0 - z) / 6.0 - 1.25) + 5.0 / 24.0) + 55.0 / 96.0;
            let y = 0.5 - x;
            let t = y * y;
            w[0] = t * t / 24.0;
        }
        5 => {
            let t = y * y;
            w[2] = t * (t * (0.25 - y / 12.0) - 0.5) + 0.55;
            let t = z * z;
            w[3] = t * (t * (0.25 - z / 12.0) - 0.5) + 0.55;
            let y1 = y + 1.0;
            w[1] = y1 * (y1 * (y1 * (y1 * (y1 / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
            let z1 = z + 1.0;
            w[4] = z1 * (z1 * (z1 * (z1 * (z1 / 24.0 - 0.375) + 1.25) - 1.75) + 0.625) + 0.425;
            let y = 1.0 - x;
            let t = y * y;
            w[0] = y * t * t / 120.0;
        }
        _ => {}
    }
    if order > 0 {
        // SciPy subtracts one weight at a time.
        let mut last = 1.0;
        for v in &w[..order] {
            last -= v;
        }
        w[order] = last;
    } else {
        w[0] = 1.0;
    }
}

/// One output sample along an axis: the source sample (`None`: the
/// constant) and weight of each of the `order + 1` taps.
type Tap = (Option<usize>, f64);

/// `scipy.ndimage.zoom`'s sampling along one axis (`grid_mode=True`): input
/// `n` samples (`len` after padding), output `m`.
fn axis_taps(n: usize, m: usize, len: usize, order: usize, mode: NdMode) -> Result<Vec<Tap>> {
    let zoom = n as f64 / m as f64;
    let npad = (len - n) / 2;
    let mut taps = crate::checks::try_vec_with_capacity(buffer_len(&[m, order + 1])?)
        .map_err(|_| SaliencyError::param("output_shape", m, "needs more memory than can be allocated"))?;
    let mut w = [0.0; 6];
    for k in 0..m {
        let mut cc = k as f64;
        cc += 0.5;
        cc *= zoom;
        cc -= 0.5;
        cc += npad as f64;
        if mode != NdMode::GridConstant && mode != NdMode::Nearest {
            cc = map_coordinate(cc, len, mode);
        }
        let start = if order & 1 == 1 { cc.floor() } else { (cc + 0.5).floor() } as i64 - (order / 2) as i64;
        spline_weights(cc, order, &mut w);
        let at_edge = start < 0 || start + order as i64 >= len as i64;
        for (h, &weight) in w.iter().enumerate().take(order + 1) {
            let idx = start + h as i64;
            let source = if !at_edge {
                Some(idx as usize)
            } else if mode == NdMode::GridConstant {
                (0..len as i64).contains(&idx).then_some(idx as usize)
            } else {
                Some(map_coordinate(idx as f64, len, mode) as usize)
            };
            taps.push((source.filter(|&s| s < len), weight));
        }
    }
    Ok(taps)
}

/// Resamples the standard-layout array `src` along `axis` with `taps`
/// (`per` taps per output sample).
/// The product of `sizes`, or an error when it overflows.
fn buffer_len(sizes: &[usize]) -> Result<usize> {
    sizes
        .iter()
        .try_fold(1_usize, |a, &b| a.checked_mul(b))
        .ok_or_else(|| SaliencyError::param("output_shape", format!("{sizes:?}"), "is too large"))
}

/// A buffer of `fill` for an array of `shape` whose axis `axis` has `len`
/// elements instead, and the number of elements after that axis.
fn axis_buffer<T: Clone>(shape: &[usize], axis: usize, len: usize, fill: T) -> Result<(Vec<T>, usize)> {
    let (outer, inner) = super::outer_inner(shape, axis);
    let out = try_filled(
        "output_shape",
        format!("{shape:?}"),
        buffer_len(&[outer, len, inner])?,
        fill,
    )?;
    Ok((out, inner))
}

fn interpolate_axis<T: Copy + Default + Send>(
    src: &[f64],
    shape: &[usize],
    axis: usize,
    taps: &[Tap],
    per: usize,
    cval: f64,
    store: impl Fn(f64) -> T + Sync,
) -> Result<Vec<T>> {
    let n = shape[axis];
    let m = taps.len() / per;
    let (mut out, inner) = axis_buffer(shape, axis, m, T::default())?;
    // Sums in `f64` (into `row`), stored as `T` in `dst`.
    let task = |idx: usize, row: &mut [f64], dst: &mut [T]| {
        let (o, k) = (idx / m, idx % m);
        let taps = &taps[k * per..(k + 1) * per];
        if let [value] = dst {
            // One element per row (the last axis): a plain weighted sum.
            let line = &src[o * n..(o + 1) * n];
            *value = store(taps.iter().fold(0.0, |acc, &(source, weight)| {
                acc + source.and_then(|s| line.get(s)).copied().unwrap_or(cval) * weight
            }));
            return;
        }
        for (h, &(source, weight)) in taps.iter().enumerate() {
            match source {
                Some(s) => {
                    let x = &src[(o * n + s) * inner..(o * n + s + 1) * inner];
                    if h == 0 {
                        row.iter_mut().zip(x).for_each(|(r, v)| *r = 0.0 + v * weight);
                    } else {
                        row.iter_mut().zip(x).for_each(|(r, v)| *r += v * weight);
                    }
                }
                None => {
                    if h == 0 {
                        row.iter_mut().for_each(|r| *r = 0.0 + cval * weight);
                    } else {
                        row.iter_mut().for_each(|r| *r += cval * weight);
                    }
                }
            }
        }
        dst.iter_mut().zip(row.iter()).for_each(|(d, &v)| *d = store(v));
    };
    // Tasks of at least CHUNK elements: small resizes (a Grad-CAM map) run
    // on one thread, which costs less than waking others.
    let rows_per_task = (crate::parallel::CHUNK / inner).max(1);
    let chunk = |c: usize, rows: &mut [T]| {
        let mut row = vec![0.0; if inner > 1 { inner } else { 0 }];
        for (r, dst) in rows.chunks_mut(inner).enumerate() {
            task(c * rows_per_task + r, &mut row, dst);
        }
    };
    // A few taps per sample are cheap: below about a million multiplications
    // handing the work to other threads costs more than it saves.
    let parallel = out.len() * per >= PARALLEL_WORK;
    crate::parallel::for_each_sized_chunk(&mut out, rows_per_task * inner, parallel, chunk);
    Ok(out)
}

/// Multiplications below which a resampling pass runs on one thread.
const PARALLEL_WORK: usize = 1 << 20;

/// SciPy's spline pre-filter along `axis`, after SciPy's padding (12
/// samples of the constant or the edge value in those modes). Returns the
/// coefficients and the padded length.
fn prefilter_axis(
    src: &[f64],
    shape: &[usize],
    axis: usize,
    order: usize,
    mode: NdMode,
    cval: f64,
) -> Result<(Vec<f64>, usize)> {
    let n = shape[axis];
    let npad = if matches!(mode, NdMode::GridConstant | NdMode::Nearest) {
        12
    } else {
        0
    };
    let len = n + 2 * npad;
    let (mut out, inner) = axis_buffer(shape, axis, len, 0.0)?;
    let poles: &[f64] = match order {
        2 => &[-0.171_572_875_253_809_9],
        3 => &[-0.267_949_192_431_122_7],
        4 => &[-0.361_341_225_900_220_2, -0.013_725_429_297_339_121],
        _ => &[-0.430_575_347_099_973_8, -0.043_096_288_203_264_65],
    };
    let task = |o: usize, slab: &mut [f64], line: &mut Vec<f64>| {
        for c in 0..inner {
            line.clear();
            line.extend((0..len).map(|i| {
                let k = i as i64 - npad as i64;
                if (0..n as i64).contains(&k) {
                    src[(o * n + k as usize) * inner + c]
                } else if mode == NdMode::GridConstant {
                    cval
                } else {
                    src[(o * n + k.clamp(0, n as i64 - 1) as usize) * inner + c]
                }
            }));
            if len > 1 {
                spline_filter_line(line, poles, mode);
            }
            for (i, v) in line.iter().enumerate() {
                slab[i * inner + c] = *v;
            }
        }
    };
    crate::parallel::for_each_sized_chunk_init(&mut out, len * inner, true, Vec::new, |line, o, slab| {
        task(o, slab, line)
    });
    Ok((out, len))
}

/// The B-spline coefficients of one line (Unser, Aldroubi & Eden 1991): a
/// gain, then per pole a causal and an anti-causal recursion whose first
/// values follow the boundary mode.
fn spline_filter_line(c: &mut [f64], poles: &[f64], mode: NdMode) {
    let n = c.len();
    let gain: f64 = poles.iter().fold(1.0, |g, &z| g * ((1.0 - z) * (1.0 - 1.0 / z)));
    c.iter_mut().for_each(|v| *v *= gain);
    for &z in poles {
        match mode {
            NdMode::GridWrap => causal_init_wrap(c, z),
            NdMode::Nearest | NdMode::Reflect => causal_init_reflect(c, z),
            _ => causal_init_mirror(c, z),
        }
        for i in 1..n {
            c[i] += z * c[i - 1];
        }
        match mode {
            NdMode::GridWrap => anticausal_init_wrap(c, z),
            NdMode::Nearest | NdMode::Reflect => c[n - 1] *= z / (z - 1.0),
            _ => c[n - 1] = (z * c[n - 2] + c[n - 1]) * z / (z * z - 1.0),
        }
        for i in (0..n - 1).rev() {
            c[i] = z * (c[i + 1] - c[i]);
        }
    }
}

/// First causal coefficient for the whole-sample symmetric extension.
fn causal_init_mirror(c: &mut [f64], z: f64) {
    let n = c.len();
    let z_n_1 = z.powi(n as i32 - 1);
    let mut z_i = z;
    c[0] += z_n_1 * c[n - 1];
    for i in 1..n - 1 {
        c[0] += z_i * (c[i] + z_n_1 * c[n - 1 - i]);
        z_i *= z;
    }
    c[0] /= 1.0 - z_n_1 * z_n_1;
}

/// First causal coefficient for the half-sample symmetric extension. The
/// sum is kept apart from `c[0]`, as SciPy does since version 1.18 (earlier
/// versions updated `c[0]` in place and read the updated value once, an
/// error of about `z^(2n-1)`).
fn causal_init_reflect(c: &mut [f64], z: f64) {
    let n = c.len();
    let z_n = z.powi(n as i32);
    let mut z_i = z;
    let mut sum = c[0] + z_n * c[n - 1];
    for i in 1..n {
        sum += z_i * (c[i] + z_n * c[n - 1 - i]);
        z_i *= z;
    }
    c[0] += sum * z / (1.0 - z_n * z_n);
}

/// First causal coefficient for the periodic extension.
fn causal_init_wrap(c: &mut [f64], z: f64) {
    let n = c.len();
    let mut z_i = z;
    for i in 1..n {
        c[0] += z_i * c[n - i];
        z_i *= z;
    }
    c[0] /= 1.0 - z_i;
}

/// Last anti-causal coefficient for the periodic extension.
fn anticausal_init_wrap(c: &mut [f64], z: f64) {
    let n = c.len();
    let mut z_i = z;
    for i in 0..n - 1 {
        c[n - 1] += z_i * c[i];
        z_i *= z;
    }
    c[n - 1] *= z / (z_i - 1.0);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spline_weights_sum_to_one() {
        let mut w = [0.0; 6];
        for order in 1..=5 {
            for x in [0.0, 0.3, 0.5, 0.99, 7.25] {
                spline_weights(x, order, &mut w);
                let s: f64 = w[..=order].iter().sum();
                assert!((s - 1.0).abs() < 1e-15, "order {order} x {x}");
            }
        }
    }

    #[test]
    fn map_coordinate_folds_like_scipy() {
        // Mirror (skimage "reflect") on 4 samples: -1 -> 1, 4 -> 2, 3.5 -> 2.5.
        assert_eq!(map_coordinate(-1.0, 4, NdMode::Mirror), 1.0);
        assert_eq!(map_coordinate(4.0, 4, NdMode::Mirror), 2.0);
        assert_eq!(map_coordinate(3.5, 4, NdMode::Mirror), 3.5);
        assert_eq!(map_coordinate(-0.25, 2, NdMode::Mirror), 0.25);
        // Reflect (skimage "symmetric"): -1 -> 0, 4 -> 3.
        assert_eq!(map_coordinate(-1.0, 4, NdMode::Reflect), 0.0);
        assert_eq!(map_coordinate(4.0, 4, NdMode::Reflect), 3.0);
        // Grid wrap: -1 -> 3, 4 -> 0.
        assert_eq!(map_coordinate(-1.0, 4, NdMode::GridWrap), 3.0);
        assert_eq!(map_coordinate(4.0, 4, NdMode::GridWrap), 0.0);
    }

    #[test]
    fn bad_arguments_are_errors() {
        let x = ArrayD::<f64>::zeros(IxDyn(&[4, 5]));
        let o = ResizeOptions::default();
        assert!(resize(x.view(), &[], &o).is_err());
        assert!(resize(x.view(), &[2, 2, 2], &o).is_err());
        assert!(resize(x.view(), &[0, 2], &o).is_err());
        assert!(resize(x.view(), &[3, 3], &o.clone().order(6)).is_err());
        assert!(resize(x.view(), &[3, 3], &o.clone().anti_aliasing_sigma(Some(vec![-1.0]))).is_err());
        assert!(resize(x.view(), &[3, 3], &o.clone().anti_aliasing_sigma(Some(vec![1.0; 3]))).is_err());
        let empty = ArrayD::<f64>::zeros(IxDyn(&[0, 5]));
        assert!(matches!(
            resize(empty.view(), &[3, 3], &o),
            Err(SaliencyError::EmptyInput { .. })
        ));
        let mut nan = x.clone();
        nan[[1, 1]] = f64::NAN;
        assert!(matches!(
            resize(nan.view(), &[3, 3], &o),
            Err(SaliencyError::NonFiniteInput { .. })
        ));
    }
}
