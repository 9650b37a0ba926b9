//! Differentiable image operations for candle models whose backward passes
//! candle lacks or runs slowly (feature `candle`).
//!
//! - [`conv2d`]: candle's convolution forward, any padding on each side;
//!   the input gradient is computed as a forward convolution of the output
//!   gradient with the flipped, transposed kernel, which candle's CPU
//!   backend runs several times faster than its own transposed convolution.
//! - [`max_pool2d`]: any kernel, stride and padding (candle refuses the
//!   backward pass unless kernel and stride are equal); the gradient goes to
//!   the first maximal element of each window, as PyTorch's does.
//! - [`avg_pool2d`]: any kernel, stride and padding, with or without the
//!   padding in the divisor.
//! - [`relu`]: PyTorch's gradient (none at 0), in one pass.
//!
//! Only the gradients with respect to the input are computed: kernels and
//! biases are treated as constants (no gradient flows to them), which is
//! what saliency methods need and keeps the backward pass to the work that
//! matters. Train with candle-nn's layers instead.
//!
//! The fast paths run on the CPU in f32 and f64; [`conv2d`] on another
//! device or dtype falls back to candle's own convolution and backward, and
//! the pooling operations return candle's "no implementation" error there.
//!
//! ```
//! use candle_core::{Device, Tensor, Var};
//! use saliency::adapters::candle_ops::{conv2d, max_pool2d};
//!
//! let x = Var::from_tensor(&Tensor::arange(0f32, 2.0 * 36.0, &Device::Cpu)?.reshape((1, 2, 6, 6))?)?;
//! let kernel = Tensor::ones((4, 2, 3, 3), candle_core::DType::F32, &Device::Cpu)?;
//! // 3 x 3 convolution, stride 1, one pixel of padding on every side.
//! let y = conv2d(x.as_tensor(), &kernel, None, 1, [1, 1, 1, 1], 1, 1)?;
//! // ResNet's 3 x 3, stride 2 max-pool with one pixel of padding.
//! let z = max_pool2d(&y, (3, 3), (2, 2), [1, 1, 1, 1], false)?;
//! assert_eq!(z.dims(), [1, 4, 3, 3]);
//! let grads = z.sum_all()?.backward()?;
//! assert_eq!(grads.get(x.as_tensor()).map(|g| g.dims().to_vec()), Some(vec![1, 2, 6, 6]));
//! # Ok::<(), candle_core::Error>(())
//! ```

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp1, CustomOp2, DType, Layout, Shape, Storage, Tensor, ToUsize2, WithDType, bail};

/// The sizes of one 2-D window operation (convolution or pooling) along
/// one spatial axis.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Axis {
    /// Input length.
    input: usize,
    /// Kernel length.
    kernel: usize,
    stride: usize,
    dilation: usize,
    /// Padding before and after.
    pad_before: usize,
    pad_after: usize,
    /// Output length.
    output: usize,
}

impl Axis {
    /// The axis of a window operation; `None` when the dilated kernel is
    /// longer than the padded input (no output).
    fn new(
        input: usize,
        kernel: usize,
        stride: usize,
        dilation: usize,
        pads: (usize, usize),
        ceil: bool,
    ) -> Option<Self> {
        let padded = input.checked_add(pads.0)?.checked_add(pads.1)?;
        let span = dilation.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)?;
        if stride == 0 || padded < span {
            return None;
        }
        let room = padded - span;
        let mut output = if ceil { room.div_ceil(stride) } else { room / stride } + 1;
        // PyTorch's rule for ceil mode: the last window must start inside
        // the input or its leading padding.
        if ceil && output > 1 && (output - 1) * stride >= input + pads.0 {
            output -= 1;
        }
        Some(Axis {
            input,
            kernel,
            stride,
            dilation,
            pad_before: pads.0,
            pad_after: pads.1,
            output,
        })
    }

    /// Where window `o` starts, in input coordinates (negative in the
    /// leading padding).
    fn start(&self, o: usize) -> isize {
        (o * self.stride) as isize - self.pad_before as isize
    }
}

fn window_axes(
    op: &str,
    (h, w): (usize, usize),
    (kh, kw): (usize, usize),
    (sh, sw): (usize, usize),
    (dh, dw): (usize, usize),
    [pt, pl, pb, pr]: [usize; 4],
    ceil: bool,
) -> candle_core::Result<(Axis, Axis)> {
    if kh == 0 || kw == 0 || sh == 0 || sw == 0 || dh == 0 || dw == 0 {
        bail!("{op}: kernel ({kh}, {kw}), stride ({sh}, {sw}) and dilation ({dh}, {dw}) must be positive")
    }
    let rows = Axis::new(h, kh, sh, dh, (pt, pb), ceil);
    let cols = Axis::new(w, kw, sw, dw, (pl, pr), ceil);
    match (rows, cols) {
        (Some(rows), Some(cols)) => Ok((rows, cols)),
        _ => bail!(
            "{op}: the kernel ({kh}, {kw}) dilated by ({dh}, {dw}) does not fit the input ({h}, {w}) padded by [{pt}, {pl}, {pb}, {pr}]"
        ),
    }
}

/// The elements of a contiguous CPU tensor.
fn with_cpu_slice<T: WithDType, R>(
    t: &Tensor,
    f: impl FnOnce(&[T]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let (storage, layout) = t.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(contiguous_slice(cpu, layout)?),
        _ => bail!("expected a tensor on the CPU"),
    }
}

fn contiguous_slice<'a, T: WithDType>(storage: &'a CpuStorage, layout: &Layout) -> candle_core::Result<&'a [T]> {
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&storage.as_slice::<T>()?[start..end]),
        None => bail!("expected a contiguous tensor"),
    }
}

/// Runs `f` on every plane (one image, one channel) of the output in
/// parallel when the `rayon` feature is on: planes are independent, so the
/// result is the same for any thread count.
fn for_each_plane<T: Send>(out: &mut [T], plane: usize, f: impl Fn(usize, &mut [T]) + Send + Sync) {
    if plane == 0 {
        return;
    }
    #[cfg(feature = "rayon")]
    {
        use rayon::prelude::*;
        out.par_chunks_mut(plane).enumerate().for_each(|(i, p)| f(i, p));
    }
    #[cfg(not(feature = "rayon"))]
    out.chunks_mut(plane).enumerate().for_each(|(i, p)| f(i, p));
}

// ---------------------------------------------------------------------------
// Convolution
// ---------------------------------------------------------------------------

/// 2-D convolution of `x` (`[B, C, H, W]`) with `kernel`
/// (`[O, C / groups, KH, KW]`), plus `bias` (`[O]`) when given, as
/// PyTorch's and ONNX's `Conv`: `padding` is `[top, left, bottom, right]`
/// (zeros), `stride` and `dilation` a number or a `(vertical, horizontal)`
/// pair.
///
/// On the CPU in f32 and f64 the gradient with respect to `x` is computed
/// by the forward convolution of the output gradient with the flipped,
/// transposed kernel; `kernel` and `bias` get no gradient. Elsewhere this is
/// candle's convolution with candle's backward pass. Unequal dilations are
/// refused (candle's convolution takes one).
pub fn conv2d(
    x: &Tensor,
    kernel: &Tensor,
    bias: Option<&Tensor>,
    stride: impl ToUsize2,
    padding: [usize; 4],
    dilation: impl ToUsize2,
    groups: usize,
) -> candle_core::Result<Tensor> {
    let (stride, dilation) = (stride.to_usize2(), dilation.to_usize2());
    let (_, c, h, w) = x.dims4()?;
    let (o, cg, kh, kw) = kernel.dims4()?;
    if groups == 0 || c != cg * groups || o % groups != 0 {
        bail!(
            "conv2d: input channels {c}, kernel {:?} and groups {groups} do not agree",
            kernel.dims()
        )
    }
    if dilation.0 != dilation.1 {
        bail!("conv2d: unequal dilations {dilation:?} are not supported")
    }
    let (rows, cols) = window_axes("conv2d", (h, w), (kh, kw), stride, dilation, padding, false)?;
    // candle's convolution takes one stride: unequal strides run at stride 1
    // and keep every stride-th row and column.
    let conv_stride = if stride.0 == stride.1 { stride.0 } else { 1 };
    let geometry = ConvGeometry {
        channels: c,
        groups,
        rows: Axis {
            stride: conv_stride,
            output: (rows.output - 1) * rows.stride / conv_stride + 1,
            ..rows
        },
        cols: Axis {
            stride: conv_stride,
            output: (cols.output - 1) * cols.stride / conv_stride + 1,
            ..cols
        },
    };
    let fast = x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64);
    let mut y = if fast {
        let mut y = conv_forward(&x.detach(), &kernel.detach(), &geometry)?;
        // Added before the gradient operation, so that the backward pass
        // does not go through the addition.
        if let Some(bias) = bias {
            y = y.broadcast_add(&bias.detach().reshape((1, o, 1, 1))?)?;
        }
        x.apply_op2(
            &y,
            ConvInputGradient {
                kernel: kernel.detach(),
                geometry,
            },
        )?
    } else {
        // candle pads every side alike: the excess is padded here.
        let common = padding.iter().copied().min().unwrap_or(0);
        let [pt, pl, pb, pr] = padding.map(|p| p - common);
        let mut input = x.clone();
        if pt > 0 || pb > 0 {
            input = input.pad_with_zeros(2, pt, pb)?;
        }
        if pl > 0 || pr > 0 {
            input = input.pad_with_zeros(3, pl, pr)?;
        }
        let y = input.conv2d(kernel, common, conv_stride, dilation.0, groups)?;
        match bias {
            Some(bias) => y.broadcast_add(&bias.reshape((1, o, 1, 1))?)?,
            None => y,
        }
    };
    if stride.0 != stride.1 {
        let keep = |step: usize, len: usize| {
            let idx: Vec<u32> = (0..len).step_by(step).map(|i| i as u32).collect();
            Tensor::new(idx.as_slice(), x.device())
        };
        y = y.index_select(&keep(stride.0, geometry.rows.output)?, 2)?;
        y = y.index_select(&keep(stride.1, geometry.cols.output)?, 3)?;
    }
    Ok(y)
}

/// The shape of one convolution, as the input gradient needs it.
#[derive(Clone, Copy, Debug)]
struct ConvGeometry {
    /// Input channels.
    channels: usize,
    groups: usize,
    rows: Axis,
    cols: Axis,
}

impl ConvGeometry {
    /// A 1 x 1 kernel at stride 1 without padding: the unfolded input is
    /// the input itself.
    fn is_pointwise(&self) -> bool {
        [self.rows, self.cols]
            .iter()
            .all(|a| a.kernel == 1 && a.stride == 1 && a.pad_before == 0 && a.pad_after == 0)
    }
}

/// Passes the convolution's output (its second argument, computed without
/// gradient) through unchanged, and gives its first argument, the
/// convolution's input, the input gradient.
struct ConvInputGradient {
    kernel: Tensor,
    geometry: ConvGeometry,
}

impl CustomOp2 for ConvInputGradient {
    fn name(&self) -> &'static str {
        "conv2d-input-gradient"
    }

    fn cpu_fwd(
        &self,
        _: &CpuStorage,
        _: &Layout,
        y: &CpuStorage,
        y_layout: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let out = match y {
            CpuStorage::F32(_) => CpuStorage::F32(contiguous_slice::<f32>(y, y_layout)?.to_vec()),
            CpuStorage::F64(_) => CpuStorage::F64(contiguous_slice::<f64>(y, y_layout)?.to_vec()),
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), self.name())),
        };
        Ok((out, y_layout.shape().clone()))
    }

    fn bwd(
        &self,
        _x: &Tensor,
        _y: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>)> {
        Ok((Some(conv_input_gradient(grad, &self.kernel, &self.geometry)?), None))
    }
}

/// The convolution as a matrix product: the input unfolded into columns
/// (`[B, C * KH * KW, HO * WO]`) multiplied by the kernel
/// (`[O, C * KH * KW]`) per group.
fn conv_forward(x: &Tensor, kernel: &Tensor, geo: &ConvGeometry) -> candle_core::Result<Tensor> {
    let (b, _, _, _) = x.dims4()?;
    let (o, _, _, _) = kernel.dims4()?;
    let x = x.contiguous()?;
    if geo.is_pointwise() {
        let y = grouped_matmul(kernel, &x.flatten_from(2)?, geo.groups, false)?;
        return y.reshape((b, o, geo.rows.output, geo.cols.output));
    }
    let chunks = by_chunks(b, geo, |start, n| {
        let cols = im2col(&x.narrow(0, start, n)?, geo)?;
        grouped_matmul(kernel, &cols, geo.groups, false)
    })?;
    Tensor::cat(&chunks, 0)?.reshape((b, o, geo.rows.output, geo.cols.output))
}

/// The gradient of a convolution with respect to its input, from the
/// gradient `g` (`[B, O, HO, WO]`) of its output: the transposed kernel
/// times the output gradient gives the gradient of every column of the
/// unfolded input, and folding the columns back sums them into the pixels
/// they came from.
fn conv_input_gradient(g: &Tensor, kernel: &Tensor, geo: &ConvGeometry) -> candle_core::Result<Tensor> {
    let (b, o, ho, wo) = g.dims4()?;
    let g = g.contiguous()?.reshape((b, o, ho * wo))?;
    if geo.is_pointwise() {
        let cols = grouped_matmul(kernel, &g, geo.groups, true)?;
        return cols.reshape((b, cols.dim(1)?, geo.rows.input, geo.cols.input));
    }
    let chunks = by_chunks(b, geo, |start, n| {
        let cols = grouped_matmul(kernel, &g.narrow(0, start, n)?, geo.groups, true)?;
        col2im(&cols.contiguous()?, geo)
    })?;
    Tensor::cat(&chunks, 0)
}

/// Runs `f(first image, images)` on consecutive chunks of the batch whose
/// unfolded input takes about 8 MiB: a whole batch's would take hundreds,
/// and memory that large comes fresh from the system (page faults and
/// zeroing) on every call.
fn by_chunks(
    batch: usize,
    geo: &ConvGeometry,
    mut f: impl FnMut(usize, usize) -> candle_core::Result<Tensor>,
) -> candle_core::Result<Vec<Tensor>> {
    let per_image = geo.channels * geo.rows.kernel * geo.cols.kernel * geo.rows.output * geo.cols.output * 4;
    let n = ((8 << 20) / per_image.max(1)).clamp(1, batch.max(1));
    (0..batch)
        .step_by(n)
        .map(|start| f(start, n.min(batch - start)))
        .collect()
}

/// Per group `j`: kernel block `j` (`[O / groups, C / groups * KH * KW]`,
/// transposed when `transpose`) times rows block `j` of `rhs`
/// (`[B, rows, N]`), the blocks' results stacked along the rows.
fn grouped_matmul(kernel: &Tensor, rhs: &Tensor, groups: usize, transpose: bool) -> candle_core::Result<Tensor> {
    let (o, cg, kh, kw) = kernel.dims4()?;
    let (og, cols) = (o / groups, cg * kh * kw);
    let kmat = kernel.reshape((o, cols))?;
    let rows_in = if transpose { og } else { cols };
    let mut blocks = Vec::with_capacity(groups);
    for j in 0..groups {
        let k = kmat.narrow(0, j * og, og)?;
        let k = if transpose { k.t()? } else { k };
        let r = if groups == 1 {
            rhs.clone()
        } else {
            rhs.narrow(1, j * rows_in, rows_in)?
        };
        // A stride-0 batch of the kernel: broadcast_matmul would copy it
        // once per image.
        let b = r.dim(0)?;
        let rows = k.dim(0)?;
        blocks.push(k.broadcast_as((b, rows, k.dim(1)?))?.matmul(&r)?);
    }
    if groups == 1 {
        Ok(blocks.remove(0))
    } else {
        Tensor::cat(&blocks, 1)
    }
}

/// The offsets of one axis of the unfolding: for kernel tap `p`, the output
/// positions whose window reads inside the input, and where the first of
/// them reads.
fn tap_range(a: &Axis, p: usize) -> (usize, usize) {
    let offset = (p * a.dilation) as isize - a.pad_before as isize;
    // Output o reads input o * stride + offset.
    let lo = if offset >= 0 {
        0
    } else {
        ((-offset) as usize).div_ceil(a.stride)
    };
    let last = a.input as isize - 1 - offset;
    let hi = if last < 0 {
        0
    } else {
        (last as usize / a.stride + 1).min(a.output)
    };
    (lo.min(hi), hi)
}

/// Unfolds `x` (`[B, C, H, W]`, contiguous) into `[B, C * KH * KW, HO * WO]`:
/// row `(c, p, q)` holds, for every output position, the input pixel that
/// kernel tap `(p, q)` of channel `c` meets (zero in the padding).
fn im2col(x: &Tensor, geo: &ConvGeometry) -> candle_core::Result<Tensor> {
    let (b, c, h, w) = x.dims4()?;
    let (rows, cols) = (geo.rows, geo.cols);
    let (kh, kw) = (rows.kernel, cols.kernel);
    let (ho, wo) = (rows.output, cols.output);
    fn run<T: WithDType>(src: &[T], (h, w): (usize, usize), rows: &Axis, cols: &Axis, planes: usize) -> Vec<T> {
        let (kh, kw, ho, wo) = (rows.kernel, cols.kernel, rows.output, cols.output);
        let mut out = vec![T::zero(); planes * kh * kw * ho * wo];
        for_each_plane(&mut out, kh * kw * ho * wo, |plane, dst| {
            let src = &src[plane * h * w..(plane + 1) * h * w];
            for p in 0..kh {
                let (ilo, ihi) = tap_range(rows, p);
                let roff = (p * rows.dilation) as isize - rows.pad_before as isize;
                for q in 0..kw {
                    let (jlo, jhi) = tap_range(cols, q);
                    let coff = (q * cols.dilation) as isize - cols.pad_before as isize;
                    let tap = &mut dst[(p * kw + q) * ho * wo..(p * kw + q + 1) * ho * wo];
                    for i in ilo..ihi {
                        let r = (i * rows.stride) as isize + roff;
                        let src_row = &src[r as usize * w..(r as usize + 1) * w];
                        let dst_row = &mut tap[i * wo..(i + 1) * wo];
                        if jlo >= jhi {
                            continue;
                        }
                        let c0 = (jlo * cols.stride) as isize + coff;
                        if cols.stride == 1 {
                            let c0 = c0 as usize;
                            dst_row[jlo..jhi].copy_from_slice(&src_row[c0..c0 + (jhi - jlo)]);
                        } else {
                            for (k, d) in dst_row[jlo..jhi].iter_mut().enumerate() {
                                *d = src_row[c0 as usize + k * cols.stride];
                            }
                        }
                    }
                }
            }
        });
        out
    }
    let shape = (b, c * kh * kw, ho * wo);
    match x.dtype() {
        DType::F32 => {
            let v = with_cpu_slice::<f32, _>(x, |s| Ok(run(s, (h, w), &rows, &cols, b * c)))?;
            Tensor::from_vec(v, shape, x.device())
        }
        DType::F64 => {
            let v = with_cpu_slice::<f64, _>(x, |s| Ok(run(s, (h, w), &rows, &cols, b * c)))?;
            Tensor::from_vec(v, shape, x.device())
        }
        other => Err(candle_core::Error::UnsupportedDTypeForOp(other, "conv2d")),
    }
}

/// The reverse of [`im2col`]: sums the columns `[B, C * KH * KW, HO * WO]`
/// (contiguous) into the input pixels they were read from,
/// `[B, C, H, W]`.
fn col2im(cols_t: &Tensor, geo: &ConvGeometry) -> candle_core::Result<Tensor> {
    let (b, ckk, _) = cols_t.dims3()?;
    let (rows, cols) = (geo.rows, geo.cols);
    let (kh, kw) = (rows.kernel, cols.kernel);
    let c = ckk / (kh * kw);
    let (h, w) = (rows.input, cols.input);
    fn run<T: WithDType>(src: &[T], (h, w): (usize, usize), rows: &Axis, cols: &Axis, planes: usize) -> Vec<T> {
        let (kh, kw, ho, wo) = (rows.kernel, cols.kernel, rows.output, cols.output);
        let mut out = vec![T::zero(); planes * h * w];
        for_each_plane(&mut out, h * w, |plane, dst| {
            let src = &src[plane * kh * kw * ho * wo..(plane + 1) * kh * kw * ho * wo];
            for p in 0..kh {
                let (ilo, ihi) = tap_range(rows, p);
                let roff = (p * rows.dilation) as isize - rows.pad_before as isize;
                for q in 0..kw {
                    let (jlo, jhi) = tap_range(cols, q);
                    if jlo >= jhi {
                        continue;
                    }
                    let coff = (q * cols.dilation) as isize - cols.pad_before as isize;
                    let tap = &src[(p * kw + q) * ho * wo..(p * kw + q + 1) * ho * wo];
                    for i in ilo..ihi {
                        let r = (i * rows.stride) as isize + roff;
                        let dst_row = &mut dst[r as usize * w..(r as usize + 1) * w];
                        let src_row = &tap[i * wo..(i + 1) * wo];
                        let c0 = ((jlo * cols.stride) as isize + coff) as usize;
                        if cols.stride == 1 {
                            for (d, s) in dst_row[c0..c0 + (jhi - jlo)].iter_mut().zip(&src_row[jlo..jhi]) {
                                *d += *s;
                            }
                        } else {
                            for (k, s) in src_row[jlo..jhi].iter().enumerate() {
                                dst_row[c0 + k * cols.stride] += *s;
                            }
                        }
                    }
                }
            }
        });
        out
    }
    let shape = (b, c, h, w);
    match cols_t.dtype() {
        DType::F32 => {
            let v = with_cpu_slice::<f32, _>(cols_t, |s| Ok(run(s, (h, w), &rows, &cols, b * c)))?;
            Tensor::from_vec(v, shape, cols_t.device())
        }
        DType::F64 => {
            let v = with_cpu_slice::<f64, _>(cols_t, |s| Ok(run(s, (h, w), &rows, &cols, b * c)))?;
            Tensor::from_vec(v, shape, cols_t.device())
        }
        other => Err(candle_core::Error::UnsupportedDTypeForOp(
            other,
            "conv2d-input-gradient",
        )),
    }
}

// ---------------------------------------------------------------------------
// Pooling
// ---------------------------------------------------------------------------

/// 2-D max-pooling of `x` (`[B, C, H, W]`) as PyTorch's and ONNX's
/// `MaxPool`: `kernel` and `stride` a number or a `(vertical, horizontal)`
/// pair, `padding` `[top, left, bottom, right]` (padded with -inf, so it
/// never wins), `ceil_mode` as PyTorch's (windows that start in the input
/// or its leading padding are kept at the end).
///
/// The gradient of each output goes to the first maximal element of its
/// window in row-major order (PyTorch's rule: on a constant image every
/// window ties, and the first element takes it), summed where windows
/// overlap. A NaN counts as the maximum, as in PyTorch.
pub fn max_pool2d(
    x: &Tensor,
    kernel: impl ToUsize2,
    stride: impl ToUsize2,
    padding: [usize; 4],
    ceil_mode: bool,
) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (rows, cols) = window_axes(
        "max_pool2d",
        (h, w),
        kernel.to_usize2(),
        stride.to_usize2(),
        (1, 1),
        padding,
        ceil_mode,
    )?;
    x.contiguous()?.apply_op1(MaxPool2d { rows, cols })
}

/// 2-D average pooling of `x` (`[B, C, H, W]`) as PyTorch's and ONNX's
/// `AveragePool`: `kernel` and `stride` a number or a pair, `padding`
/// `[top, left, bottom, right]`, `ceil_mode` as in [`max_pool2d`]. The
/// divisor counts the padding when `count_include_pad` (windows that run
/// past the padding in ceil mode are cut at its end), else the input
/// elements of the window only.
///
/// For a global average use `x.mean_keepdim((2, 3))`, which candle
/// differentiates.
pub fn avg_pool2d(
    x: &Tensor,
    kernel: impl ToUsize2,
    stride: impl ToUsize2,
    padding: [usize; 4],
    ceil_mode: bool,
    count_include_pad: bool,
) -> candle_core::Result<Tensor> {
    let (_, _, h, w) = x.dims4()?;
    let (rows, cols) = window_axes(
        "avg_pool2d",
        (h, w),
        kernel.to_usize2(),
        stride.to_usize2(),
        (1, 1),
        padding,
        ceil_mode,
    )?;
    x.contiguous()?.apply_op1(AvgPool2d {
        rows,
        cols,
        count_include_pad,
    })
}

/// The input rows (or columns) that window `o` along axis `a` covers,
/// padding left out.
fn window(a: &Axis, o: usize) -> std::ops::Range<usize> {
    let start = a.start(o);
    let end = (start + a.kernel as isize).min(a.input as isize);
    let start = start.max(0);
    if end <= start {
        0..0
    } else {
        start as usize..end as usize
    }
}

/// The divisor of window `o` along `a` counting the padding: the window cut
/// at the end of the trailing padding.
fn padded_window_len(a: &Axis, o: usize) -> usize {
    let start = a.start(o);
    let end = (start + a.kernel as isize).min((a.input + a.pad_after) as isize);
    (end - start).max(0) as usize
}

/// The flat index (within its plane) of the maximum of each window, first
/// in row-major order on ties; `None` for a window with no input element.
fn max_index<T: WithDType + num_traits::Float>(
    plane: &[T],
    w: usize,
    rows: &Axis,
    cols: &Axis,
    oi: usize,
    oj: usize,
) -> Option<usize> {
    let (rr, cr) = (window(rows, oi), window(cols, oj));
    if rr.is_empty() || cr.is_empty() {
        return None;
    }
    let mut best = T::neg_infinity();
    let mut at = rr.start * w + cr.start;
    for r in rr {
        for c in cr.clone() {
            let v = plane[r * w + c];
            if v > best || v.is_nan() {
                best = v;
                at = r * w + c;
            }
        }
    }
    Some(at)
}

/// Runs a pooling kernel over each plane of a contiguous f32 or f64 input.
fn per_plane<F32, F64>(
    op: &'static str,
    storage: &CpuStorage,
    layout: &Layout,
    out_plane: usize,
    f32_kernel: F32,
    f64_kernel: F64,
) -> candle_core::Result<CpuStorage>
where
    F32: Fn(&[f32], &mut [f32]) + Send + Sync,
    F64: Fn(&[f64], &mut [f64]) + Send + Sync,
{
    let dims = layout.dims();
    let (b, c, h, w) = match dims {
        [b, c, h, w] => (*b, *c, *h, *w),
        _ => bail!("{op}: expected a [B, C, H, W] tensor, got {dims:?}"),
    };
    fn run<T: WithDType>(
        src: &[T],
        planes: usize,
        in_plane: usize,
        out_plane: usize,
        f: impl Fn(&[T], &mut [T]) + Send + Sync,
    ) -> Vec<T> {
        let mut out = vec![T::zero(); planes * out_plane];
        for_each_plane(&mut out, out_plane, |p, dst| {
            f(&src[p * in_plane..(p + 1) * in_plane], dst)
        });
        out
    }
    Ok(match storage {
        CpuStorage::F32(_) => CpuStorage::F32(run(
            contiguous_slice(storage, layout)?,
            b * c,
            h * w,
            out_plane,
            f32_kernel,
        )),
        CpuStorage::F64(_) => CpuStorage::F64(run(
            contiguous_slice(storage, layout)?,
            b * c,
            h * w,
            out_plane,
            f64_kernel,
        )),
        other => return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), op)),
    })
}

/// Applies a backward kernel plane by plane: `f(input plane, gradient
/// plane, input-gradient plane)`; the result has the input's shape.
fn backward_per_plane<F32, F64>(
    op: &'static str,
    arg: &Tensor,
    grad: &Tensor,
    f32_kernel: F32,
    f64_kernel: F64,
) -> candle_core::Result<Tensor>
where
    F32: Fn(&[f32], &[f32], &mut [f32]) + Send + Sync,
    F64: Fn(&[f64], &[f64], &mut [f64]) + Send + Sync,
{
    let (b, c, h, w) = arg.dims4()?;
    let (_, _, ho, wo) = grad.dims4()?;
    let (arg, grad) = (arg.contiguous()?, grad.contiguous()?);
    fn run<T: WithDType>(
        x: &[T],
        g: &[T],
        planes: usize,
        (in_plane, out_plane): (usize, usize),
        f: impl Fn(&[T], &[T], &mut [T]) + Send + Sync,
    ) -> Vec<T> {
        let mut out = vec![T::zero(); planes * in_plane];
        for_each_plane(&mut out, in_plane, |p, dst| {
            f(
                &x[p * in_plane..(p + 1) * in_plane],
                &g[p * out_plane..(p + 1) * out_plane],
                dst,
            )
        });
        out
    }
    let sizes = (h * w, ho * wo);
    match arg.dtype() {
        DType::F32 => {
            let v = with_cpu_slice::<f32, _>(&arg, |x| {
                with_cpu_slice::<f32, _>(&grad, |g| Ok(run(x, g, b * c, sizes, f32_kernel)))
            })?;
            Tensor::from_vec(v, (b, c, h, w), arg.device())
        }
        DType::F64 => {
            let v = with_cpu_slice::<f64, _>(&arg, |x| {
                with_cpu_slice::<f64, _>(&grad, |g| Ok(run(x, g, b * c, sizes, f64_kernel)))
            })?;
            Tensor::from_vec(v, (b, c, h, w), arg.device())
        }
        other => Err(candle_core::Error::UnsupportedDTypeForOp(other, op)),
    }
}

/// The candle operation behind [`max_pool2d`].
#[derive(Clone, Copy, Debug)]
struct MaxPool2d {
    rows: Axis,
    cols: Axis,
}

impl MaxPool2d {
    fn forward<T: WithDType + num_traits::Float>(&self, x: &[T], y: &mut [T]) {
        let (rows, cols) = (&self.rows, &self.cols);
        for oi in 0..rows.output {
            for oj in 0..cols.output {
                y[oi * cols.output + oj] = match max_index(x, cols.input, rows, cols, oi, oj) {
                    Some(at) => x[at],
                    None => T::neg_infinity(),
                };
            }
        }
    }

    fn backward<T: WithDType + num_traits::Float>(&self, x: &[T], g: &[T], dx: &mut [T]) {
        let (rows, cols) = (&self.rows, &self.cols);
        for oi in 0..rows.output {
            for oj in 0..cols.output {
                if let Some(at) = max_index(x, cols.input, rows, cols, oi, oj) {
                    dx[at] += g[oi * cols.output + oj];
                }
            }
        }
    }
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out_plane = self.rows.output * self.cols.output;
        let out = per_plane(
            self.name(),
            storage,
            layout,
            out_plane,
            |x, y| self.forward::<f32>(x, y),
            |x, y| self.forward::<f64>(x, y),
        )?;
        let dims = layout.dims();
        Ok((out, Shape::from((dims[0], dims[1], self.rows.output, self.cols.output))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        backward_per_plane(
            self.name(),
            arg,
            grad,
            |x, g, dx| self.backward::<f32>(x, g, dx),
            |x, g, dx| self.backward::<f64>(x, g, dx),
        )
        .map(Some)
    }
}

/// The candle operation behind [`avg_pool2d`].
#[derive(Clone, Copy, Debug)]
struct AvgPool2d {
    rows: Axis,
    cols: Axis,
    count_include_pad: bool,
}

impl AvgPool2d {
    /// The input window of output `(oi, oj)` and its divisor (0: no input
    /// element).
    fn window(&self, oi: usize, oj: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>, usize) {
        let (rr, cr) = (window(&self.rows, oi), window(&self.cols, oj));
        let count = if rr.is_empty() || cr.is_empty() {
            0
        } else if self.count_include_pad {
            padded_window_len(&self.rows, oi) * padded_window_len(&self.cols, oj)
        } else {
            rr.len() * cr.len()
        };
        (rr, cr, count)
    }

    fn forward<T: WithDType>(&self, x: &[T], y: &mut [T]) {
        let (w, wo) = (self.cols.input, self.cols.output);
        for oi in 0..self.rows.output {
            for oj in 0..wo {
                let (rr, cr, count) = self.window(oi, oj);
                if count == 0 {
                    continue;
                }
                let mut sum = T::zero();
                for r in rr {
                    for v in &x[r * w + cr.start..r * w + cr.end] {
                        sum += *v;
                    }
                }
                y[oi * wo + oj] = sum / T::from_f64(count as f64);
            }
        }
    }

    fn backward<T: WithDType>(&self, g: &[T], dx: &mut [T]) {
        let (w, wo) = (self.cols.input, self.cols.output);
        for oi in 0..self.rows.output {
            for oj in 0..wo {
                let (rr, cr, count) = self.window(oi, oj);
                if count == 0 {
                    continue;
                }
                let share = g[oi * wo + oj] / T::from_f64(count as f64);
                for r in rr {
                    for d in &mut dx[r * w + cr.start..r * w + cr.end] {
                        *d += share;
                    }
                }
            }
        }
    }
}

impl CustomOp1 for AvgPool2d {
    fn name(&self) -> &'static str {
        "avg-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let out_plane = self.rows.output * self.cols.output;
        let out = per_plane(
            self.name(),
            storage,
            layout,
            out_plane,
            |x, y| self.forward::<f32>(x, y),
            |x, y| self.forward::<f64>(x, y),
        )?;
        let dims = layout.dims();
        Ok((out, Shape::from((dims[0], dims[1], self.rows.output, self.cols.output))))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        backward_per_plane(
            self.name(),
            arg,
            grad,
            |_, g, dx| self.backward::<f32>(g, dx),
            |_, g, dx| self.backward::<f64>(g, dx),
        )
        .map(Some)
    }
}

// ---------------------------------------------------------------------------
// ReLU
// ---------------------------------------------------------------------------

/// `max(x, 0)` with PyTorch's gradient: zero where `x <= 0` (candle's own
/// `relu` passes the gradient at exactly 0, where a zero image meets a
/// convolution without bias), in one pass over the tensor instead of
/// candle's four (zeros, comparison, conversion, product).
///
/// The operation runs on the CPU, in f32 and f64; elsewhere this is
/// candle's `relu`.
pub fn relu(x: &Tensor) -> candle_core::Result<Tensor> {
    if x.device().is_cpu() && matches!(x.dtype(), DType::F32 | DType::F64) {
        x.apply_op1(Relu)
    } else {
        x.relu()
    }
}

/// The candle operation behind [`relu`].
#[derive(Clone, Copy, Debug)]
struct Relu;

impl CustomOp1 for Relu {
    fn name(&self) -> &'static str {
        "relu"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        use candle_core::cpu_backend::unary_map;
        fn relu<T: WithDType>(v: T) -> T {
            if v > T::zero() { v } else { T::zero() }
        }
        let out = match storage {
            CpuStorage::F32(s) => CpuStorage::F32(unary_map(s, layout, relu)),
            CpuStorage::F64(s) => CpuStorage::F64(unary_map(s, layout, relu)),
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), self.name())),
        };
        Ok((out, layout.shape().clone()))
    }

    fn bwd(&self, arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        fn run<T: WithDType>(x: &[T], g: &[T]) -> Vec<T> {
            x.iter()
                .zip(g)
                .map(|(x, g)| if *x > T::zero() { *g } else { T::zero() })
                .collect()
        }
        let (x, g) = (arg.contiguous()?, grad.contiguous()?);
        let out = match x.dtype() {
            DType::F32 => {
                let v = with_cpu_slice::<f32, _>(&x, |x| with_cpu_slice::<f32, _>(&g, |g| Ok(run(x, g))))?;
                Tensor::from_vec(v, x.shape(), x.device())?
            }
            DType::F64 => {
                let v = with_cpu_slice::<f64, _>(&x, |x| with_cpu_slice::<f64, _>(&g, |g| Ok(run(x, g))))?;
                Tensor::from_vec(v, x.shape(), x.device())?
            }
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other, self.name())),
        };
        Ok(Some(out))
    }
}
