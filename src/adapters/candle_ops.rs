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
use candle_core::{CpuStorage, CustomOp1, DType, Layout, Shape, Storage, Tensor, ToUsize2, WithDType, bail};

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
        let bias = match bias {
            Some(bias) => Some(bias.detach().reshape(o)?.to_dtype(x.dtype())?.contiguous()?),
            None => None,
        };
        x.contiguous()?.apply_op1(Conv2dOp {
            kernel: kernel.detach().contiguous()?,
            bias,
            geometry,
        })?
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

/// The shape of one convolution.
#[derive(Clone, Copy, Debug)]
struct ConvGeometry {
    /// Input channels.
    channels: usize,
    groups: usize,
    rows: Axis,
    cols: Axis,
}

impl ConvGeometry {
    /// Output positions per image and channel.
    fn positions(&self) -> usize {
        self.rows.output * self.cols.output
    }

    /// Kernel taps per channel.
    fn taps(&self) -> usize {
        self.rows.kernel * self.cols.kernel
    }

    /// How many images are unfolded at a time: about 8 MiB of columns. A
    /// whole batch's would take hundreds, and memory that large comes fresh
    /// from the system (page faults and zeroing) on every call.
    fn images_per_chunk(&self, batch: usize, elem: usize) -> usize {
        let per_image = self.channels * self.taps() * self.positions() * elem;
        ((8 << 20) / per_image.max(1)).clamp(1, batch.max(1))
    }
}

/// The convolution of [`conv2d`]'s fast path as one candle operation: the
/// forward pass unfolds the input and multiplies by the kernel, adding the
/// bias while copying the product into place; the backward pass gives the
/// input its gradient only (kernel and bias are constants).
struct Conv2dOp {
    /// `[O, C / groups, KH, KW]`, contiguous.
    kernel: Tensor,
    /// `[O]`, contiguous, in the input's dtype.
    bias: Option<Tensor>,
    geometry: ConvGeometry,
}

impl CustomOp1 for Conv2dOp {
    fn name(&self) -> &'static str {
        "conv2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let b = match layout.dims() {
            [b, _, _, _] => *b,
            dims => bail!("conv2d: expected a [B, C, H, W] tensor, got {dims:?}"),
        };
        let o = self.kernel.dim(0)?;
        let (ks, kl) = self.kernel.storage_and_layout();
        let Storage::Cpu(ks) = &*ks else {
            bail!("conv2d: the kernel is not on the CPU")
        };
        let bias = self.bias.as_ref().map(|t| t.storage_and_layout());
        let bias = match &bias {
            Some((s, l)) => match &**s {
                Storage::Cpu(s) => Some((s, *l)),
                _ => bail!("conv2d: the bias is not on the CPU"),
            },
            None => None,
        };
        let geo = &self.geometry;
        let out = match storage {
            CpuStorage::F32(_) => {
                let bias = bias.map(|(s, l)| contiguous_slice::<f32>(s, l)).transpose()?;
                CpuStorage::F32(conv_forward(
                    contiguous_slice(storage, layout)?,
                    b,
                    (ks, kl),
                    bias,
                    o,
                    geo,
                )?)
            }
            CpuStorage::F64(_) => {
                let bias = bias.map(|(s, l)| contiguous_slice::<f64>(s, l)).transpose()?;
                CpuStorage::F64(conv_forward(
                    contiguous_slice(storage, layout)?,
                    b,
                    (ks, kl),
                    bias,
                    o,
                    geo,
                )?)
            }
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), self.name())),
        };
        Ok((out, Shape::from((b, o, geo.rows.output, geo.cols.output))))
    }

    fn bwd(&self, _arg: &Tensor, _res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        conv_input_gradient(grad, &self.kernel, &self.geometry).map(Some)
    }
}

thread_local! {
    /// The unfolded input of the last convolution run on this thread, kept
    /// for the next one: fresh buffers of this size cost page faults and
    /// zeroing on every call. Every element is overwritten before it is read.
    static COLUMNS: std::cell::RefCell<Option<CpuStorage>> = const { std::cell::RefCell::new(None) };
}

/// A buffer of `len` elements for the unfolded input, reusing this thread's
/// last one (its contents are stale).
fn take_columns<T: WithDType>(len: usize) -> Vec<T> {
    let mut v = COLUMNS
        .with(|c| c.borrow_mut().take())
        .and_then(|s| T::cpu_storage_data(s).ok())
        .unwrap_or_default();
    v.resize(len, T::zero());
    v
}

fn keep_columns(s: CpuStorage) {
    COLUMNS.with(|c| *c.borrow_mut() = Some(s));
}

/// The batch of matrix products `lhs (m x k) * rhs (k x n)`, `[batch, m,
/// n]`, of two CPU buffers read through `(start, [batch, row, column]
/// strides)`, on candle's matrix product. One product per image, so an
/// image's result does not depend on the others in the batch.
fn matmul_strided<T: WithDType>(
    lhs: &CpuStorage,
    (l_start, l_strides): (usize, [usize; 3]),
    rhs: &CpuStorage,
    (r_start, r_strides): (usize, [usize; 3]),
    (batch, m, n, k): (usize, usize, usize, usize),
) -> candle_core::Result<Vec<T>> {
    let lhs_l = Layout::new(Shape::from((batch, m, k)), l_strides.to_vec(), l_start);
    let rhs_l = Layout::new(Shape::from((batch, k, n)), r_strides.to_vec(), r_start);
    T::cpu_storage_data(lhs.matmul(rhs, (batch, m, n, k), &lhs_l, &rhs_l)?)
}

/// The convolution as matrix products, a chunk of images at a time: each
/// image unfolded into columns (`[C * KH * KW, HO * WO]`) is multiplied by
/// each group's kernel block (`[O / groups, C / groups * KH * KW]`), and
/// the products are copied into the `[B, O, HO, WO]` output with the bias
/// added.
fn conv_forward<T: WithDType>(
    x: &[T],
    batch: usize,
    (ks, kl): (&CpuStorage, &Layout),
    bias: Option<&[T]>,
    o: usize,
    geo: &ConvGeometry,
) -> candle_core::Result<Vec<T>> {
    let (c, groups, hw) = (geo.channels, geo.groups, geo.positions());
    let (og, cg) = (o / groups, c / groups);
    let rows_per_group = cg * geo.taps();
    let in_image = c * geo.rows.input * geo.cols.input;
    let chunk = geo.images_per_chunk(batch, std::mem::size_of::<T>());
    let mut out = Vec::with_capacity(batch * o * hw);
    for start in (0..batch).step_by(chunk) {
        let n = chunk.min(batch - start);
        let mut cols = take_columns::<T>(n * c * geo.taps() * hw);
        im2col(&x[start * in_image..(start + n) * in_image], geo, &mut cols);
        let cols = T::to_cpu_storage_owned(cols);
        let products = (0..groups)
            .map(|j| {
                matmul_strided::<T>(
                    ks,
                    // The kernel block, the same for every image.
                    (kl.start_offset() + j * og * rows_per_group, [0, rows_per_group, 1]),
                    &cols,
                    (j * rows_per_group * hw, [c * geo.taps() * hw, hw, 1]),
                    (n, og, hw, rows_per_group),
                )
            })
            .collect::<candle_core::Result<Vec<_>>>();
        keep_columns(cols);
        let products = products?;
        for image in 0..n {
            for (j, product) in products.iter().enumerate() {
                for oc in 0..og {
                    let at = (image * og + oc) * hw;
                    let src = &product[at..at + hw];
                    match bias {
                        Some(bias) => {
                            let add = bias[j * og + oc];
                            out.extend(src.iter().map(|v| *v + add));
                        }
                        None => out.extend_from_slice(src),
                    }
                }
            }
        }
    }
    Ok(out)
}

/// The gradient of a convolution with respect to its input, from the
/// gradient `g` (`[B, O, HO, WO]`) of its output, a chunk of images at a
/// time: each group's transposed kernel block times the output gradient
/// gives the gradient of every column of the unfolded input, and folding
/// the columns back sums them into the pixels they came from.
fn conv_input_gradient(g: &Tensor, kernel: &Tensor, geo: &ConvGeometry) -> candle_core::Result<Tensor> {
    let (b, o, _, _) = g.dims4()?;
    let shape = (b, geo.channels, geo.rows.input, geo.cols.input);
    let g = g.contiguous()?;
    let (gs, gl) = g.storage_and_layout();
    let (ks, kl) = kernel.storage_and_layout();
    let (Storage::Cpu(gs), Storage::Cpu(ks)) = (&*gs, &*ks) else {
        bail!("conv2d: the gradient and the kernel must be on the CPU")
    };
    match gs {
        CpuStorage::F32(_) => {
            let dx = conv_backward::<f32>((gs, gl), (b, o), (ks, kl), geo)?;
            Tensor::from_vec(dx, shape, g.device())
        }
        CpuStorage::F64(_) => {
            let dx = conv_backward::<f64>((gs, gl), (b, o), (ks, kl), geo)?;
            Tensor::from_vec(dx, shape, g.device())
        }
        other => Err(candle_core::Error::UnsupportedDTypeForOp(
            other.dtype(),
            "conv2d-input-gradient",
        )),
    }
}

fn conv_backward<T: WithDType>(
    (gs, gl): (&CpuStorage, &Layout),
    (batch, o): (usize, usize),
    (ks, kl): (&CpuStorage, &Layout),
    geo: &ConvGeometry,
) -> candle_core::Result<Vec<T>> {
    let (c, groups, hw) = (geo.channels, geo.groups, geo.positions());
    let (og, cg) = (o / groups, c / groups);
    let rows_per_group = cg * geo.taps();
    let in_image = c * geo.rows.input * geo.cols.input;
    let chunk = geo.images_per_chunk(batch, std::mem::size_of::<T>());
    let mut dx = vec![T::zero(); batch * in_image];
    for start in (0..batch).step_by(chunk) {
        let n = chunk.min(batch - start);
        let mut blocks = (0..groups)
            .map(|j| {
                matmul_strided::<T>(
                    ks,
                    // The transposed kernel block, the same for every image.
                    (kl.start_offset() + j * og * rows_per_group, [0, 1, rows_per_group]),
                    gs,
                    (gl.start_offset() + (start * o + j * og) * hw, [o * hw, hw, 1]),
                    (n, rows_per_group, hw, og),
                )
            })
            .collect::<candle_core::Result<Vec<_>>>()?;
        let cols = if groups == 1 {
            blocks.remove(0)
        } else {
            // [images, C * KH * KW, HO * WO]: the groups' rows side by side.
            let per_block = rows_per_group * hw;
            let mut cols = Vec::with_capacity(n * groups * per_block);
            for image in 0..n {
                for block in &blocks {
                    cols.extend_from_slice(&block[image * per_block..(image + 1) * per_block]);
                }
            }
            cols
        };
        col2im(&cols, geo, &mut dx[start * in_image..(start + n) * in_image]);
    }
    Ok(dx)
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

/// Unfolds images (`[n, C, H, W]`) into `dst`, `[n, C * KH * KW, HO *
/// WO]`: row `(c, p, q)` of an image holds, for every output position, the
/// input pixel that kernel tap `(p, q)` of channel `c` meets (zero in the
/// padding). Every element of `dst` is written.
fn im2col<T: WithDType>(src: &[T], geo: &ConvGeometry, dst: &mut [T]) {
    let (rows, cols) = (&geo.rows, &geo.cols);
    let (h, w) = (rows.input, cols.input);
    let (kh, kw, ho, wo) = (rows.kernel, cols.kernel, rows.output, cols.output);
    let hw = ho * wo;
    for_each_plane(dst, kh * kw * hw, |plane, block| {
        let src = &src[plane * h * w..(plane + 1) * h * w];
        for p in 0..kh {
            let (ilo, ihi) = tap_range(rows, p);
            let roff = (p * rows.dilation) as isize - rows.pad_before as isize;
            for q in 0..kw {
                let (jlo, jhi) = tap_range(cols, q);
                let coff = (q * cols.dilation) as isize - cols.pad_before as isize;
                let tap = &mut block[(p * kw + q) * hw..(p * kw + q + 1) * hw];
                for (i, dst_row) in tap.chunks_exact_mut(wo).enumerate() {
                    if i < ilo || i >= ihi || jlo >= jhi {
                        dst_row.fill(T::zero());
                        continue;
                    }
                    dst_row[..jlo].fill(T::zero());
                    dst_row[jhi..].fill(T::zero());
                    let r = (i * rows.stride) as isize + roff;
                    let src_row = &src[r as usize * w..(r as usize + 1) * w];
                    let c0 = ((jlo * cols.stride) as isize + coff) as usize;
                    if cols.stride == 1 {
                        dst_row[jlo..jhi].copy_from_slice(&src_row[c0..c0 + (jhi - jlo)]);
                    } else {
                        for (k, d) in dst_row[jlo..jhi].iter_mut().enumerate() {
                            *d = src_row[c0 + k * cols.stride];
                        }
                    }
                }
            }
        }
    });
}

/// The reverse of [`im2col`]: sums the columns `[n, C * KH * KW, HO * WO]`
/// into the pixels of the images (`[n, C, H, W]`, zeros on entry) they were
/// read from.
fn col2im<T: WithDType>(src: &[T], geo: &ConvGeometry, dst: &mut [T]) {
    let (rows, cols) = (&geo.rows, &geo.cols);
    let (h, w) = (rows.input, cols.input);
    let (kh, kw, ho, wo) = (rows.kernel, cols.kernel, rows.output, cols.output);
    let hw = ho * wo;
    for_each_plane(dst, h * w, |plane, dst| {
        let src = &src[plane * kh * kw * hw..(plane + 1) * kh * kw * hw];
        for p in 0..kh {
            let (ilo, ihi) = tap_range(rows, p);
            let roff = (p * rows.dilation) as isize - rows.pad_before as isize;
            for q in 0..kw {
                let (jlo, jhi) = tap_range(cols, q);
                if jlo >= jhi {
                    continue;
                }
                let coff = (q * cols.dilation) as isize - cols.pad_before as isize;
                let tap = &src[(p * kw + q) * hw..(p * kw + q + 1) * hw];
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
    let (rows, cols) = pool_axes("max_pool2d", x, kernel, stride, padding, ceil_mode)?;
    x.contiguous()?.apply_op1(MaxPool2d {
        rows,
        cols,
        argmax: std::sync::Mutex::new(None),
    })
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
    let (rows, cols) = pool_axes("avg_pool2d", x, kernel, stride, padding, ceil_mode)?;
    x.contiguous()?.apply_op1(AvgPool2d {
        rows,
        cols,
        count_include_pad,
    })
}

/// The window axes of a pooling of `x` (`[B, C, H, W]`), checked.
fn pool_axes(
    op: &'static str,
    x: &Tensor,
    kernel: impl ToUsize2,
    stride: impl ToUsize2,
    padding: [usize; 4],
    ceil_mode: bool,
) -> candle_core::Result<(Axis, Axis)> {
    let (_, _, h, w) = x.dims4()?;
    window_axes(
        op,
        (h, w),
        kernel.to_usize2(),
        stride.to_usize2(),
        (1, 1),
        padding,
        ceil_mode,
    )
}

/// Calls `f(k, oi, oj)` for every output `(oi, oj)` of a pooling, `k`
/// being its flat index in the output plane, in row-major order.
#[inline]
fn for_each_window(rows: &Axis, cols: &Axis, mut f: impl FnMut(usize, usize, usize)) {
    for oi in 0..rows.output {
        for oj in 0..cols.output {
            f(oi * cols.output + oj, oi, oj);
        }
    }
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
#[derive(Debug)]
struct MaxPool2d {
    rows: Axis,
    cols: Axis,
    /// Where each output's maximum was, as its flat index in its input
    /// plane (`u32::MAX`: a window without input), recorded by the forward
    /// pass so that the backward pass is a scatter; `None` before the
    /// forward pass or for planes too large for `u32` indices.
    argmax: std::sync::Mutex<Option<Vec<u32>>>,
}

impl MaxPool2d {
    /// The maximum of every window of plane `x` into `y`, and its position
    /// into `at`.
    fn forward<T: WithDType + num_traits::Float>(&self, x: &[T], y: &mut [T], at: &mut [u32]) {
        let (rows, cols) = (&self.rows, &self.cols);
        for_each_window(rows, cols, |k, oi, oj| {
            (y[k], at[k]) = match max_index(x, cols.input, rows, cols, oi, oj) {
                // The plane fits u32 indices (checked before).
                Some(i) => (x[i], i as u32),
                None => (T::neg_infinity(), u32::MAX),
            };
        });
    }

    /// The backward pass without recorded positions: the windows walked
    /// again.
    fn backward<T: WithDType + num_traits::Float>(&self, x: &[T], g: &[T], dx: &mut [T]) {
        let (rows, cols) = (&self.rows, &self.cols);
        for_each_window(rows, cols, |k, oi, oj| {
            if let Some(at) = max_index(x, cols.input, rows, cols, oi, oj) {
                dx[at] += g[k];
            }
        });
    }

    fn run_forward<T: WithDType + num_traits::Float>(&self, x: &[T], planes: usize) -> Vec<T> {
        let (in_plane, out_plane) = (self.rows.input * self.cols.input, self.rows.output * self.cols.output);
        let mut y = vec![T::zero(); planes * out_plane];
        let mut at = vec![0u32; planes * out_plane];
        if out_plane > 0 {
            let f =
                |p: usize, (y, at): (&mut [T], &mut [u32])| self.forward(&x[p * in_plane..(p + 1) * in_plane], y, at);
            #[cfg(feature = "rayon")]
            {
                use rayon::prelude::*;
                y.par_chunks_mut(out_plane)
                    .zip(at.par_chunks_mut(out_plane))
                    .enumerate()
                    .for_each(|(p, pair)| f(p, pair));
            }
            #[cfg(not(feature = "rayon"))]
            y.chunks_mut(out_plane)
                .zip(at.chunks_mut(out_plane))
                .enumerate()
                .for_each(|(p, pair)| f(p, pair));
        }
        if let Ok(mut slot) = self.argmax.lock() {
            *slot = (in_plane < u32::MAX as usize).then_some(at);
        }
        y
    }

    /// The gradient `g` sent to the recorded positions.
    fn scatter<T: WithDType>(&self, at: &[u32], g: &[T], planes: usize) -> Vec<T> {
        let (in_plane, out_plane) = (self.rows.input * self.cols.input, self.rows.output * self.cols.output);
        let mut dx = vec![T::zero(); planes * in_plane];
        for_each_plane(&mut dx, in_plane, |p, dx| {
            let range = p * out_plane..(p + 1) * out_plane;
            for (i, g) in at[range.clone()].iter().zip(&g[range]) {
                if let Some(d) = dx.get_mut(*i as usize) {
                    *d += *g;
                }
            }
        });
        dx
    }
}

impl CustomOp1 for MaxPool2d {
    fn name(&self) -> &'static str {
        "max-pool2d"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> candle_core::Result<(CpuStorage, Shape)> {
        let (b, c) = match layout.dims() {
            [b, c, h, w] if (*h, *w) == (self.rows.input, self.cols.input) => (*b, *c),
            dims => bail!("{}: expected a [B, C, H, W] tensor, got {dims:?}", self.name()),
        };
        let out = match storage {
            CpuStorage::F32(_) => CpuStorage::F32(self.run_forward(contiguous_slice(storage, layout)?, b * c)),
            CpuStorage::F64(_) => CpuStorage::F64(self.run_forward(contiguous_slice(storage, layout)?, b * c)),
            other => return Err(candle_core::Error::UnsupportedDTypeForOp(other.dtype(), self.name())),
        };
        Ok((out, Shape::from((b, c, self.rows.output, self.cols.output))))
    }

    fn bwd(&self, arg: &Tensor, res: &Tensor, grad: &Tensor) -> candle_core::Result<Option<Tensor>> {
        let recorded = self.argmax.lock().ok();
        if let Some(at) = recorded.as_ref().and_then(|r| r.as_ref())
            && at.len() == res.elem_count()
            && grad.dims() == res.dims()
        {
            let (b, c, h, w) = arg.dims4()?;
            let grad = grad.contiguous()?;
            let shape = (b, c, h, w);
            let dx = match grad.dtype() {
                DType::F32 => {
                    let dx = with_cpu_slice::<f32, _>(&grad, |g| Ok(self.scatter(at, g, b * c)))?;
                    Tensor::from_vec(dx, shape, arg.device())?
                }
                DType::F64 => {
                    let dx = with_cpu_slice::<f64, _>(&grad, |g| Ok(self.scatter(at, g, b * c)))?;
                    Tensor::from_vec(dx, shape, arg.device())?
                }
                other => return Err(candle_core::Error::UnsupportedDTypeForOp(other, self.name())),
            };
            return Ok(Some(dx));
        }
        drop(recorded);
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
        let w = self.cols.input;
        for_each_window(&self.rows, &self.cols, |k, oi, oj| {
            let (rr, cr, count) = self.window(oi, oj);
            if count == 0 {
                return;
            }
            let mut sum = T::zero();
            for r in rr {
                for v in &x[r * w + cr.start..r * w + cr.end] {
                    sum += *v;
                }
            }
            y[k] = sum / T::from_f64(count as f64);
        });
    }

    fn backward<T: WithDType>(&self, g: &[T], dx: &mut [T]) {
        let w = self.cols.input;
        for_each_window(&self.rows, &self.cols, |k, oi, oj| {
            let (rr, cr, count) = self.window(oi, oj);
            if count == 0 {
                return;
            }
            let share = g[k] / T::from_f64(count as f64);
            for r in rr {
                for d in &mut dx[r * w + cr.start..r * w + cr.end] {
                    *d += share;
                }
            }
        });
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
