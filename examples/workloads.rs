//! The benchmark workloads of `bench/WORKLOADS.md`, timed in-process, in the
//! format of the Python reference's timing script
//! (`tests/reference/anchor_sizes.py`): one line per workload,
//! `NAME<TAB>median seconds<TAB>median seconds of its model calls alone`.
//!
//! ```text
//! cargo run --release --example workloads -- [--size S] [--repeat N] [--batch B] [--no-replay] [NAME ...]
//! cargo run --release --example workloads -- --list    # the workloads' names
//! ```
//!
//! `--batch B` sets the batch of `ig` and `occlusion`: a count of images, a
//! memory budget (`2MiB`), or `default` for the crate's default batch
//! setting; without
//! it `ig` batches 25 points (WORKLOADS.md) and `occlusion` uses the default.
//! `--no-replay` skips the model replay (its column prints `-`), for
//! comparisons of totals only.
//!
//! `--size S` draws the workload image at S x S x 3 (default 224): the same
//! picture at every size, its features scaling with S, bit-identical to
//! WORKLOADS.md's image at 224 (`common::scaled_workload_image`). Beside
//! WORKLOADS.md's list, `occlusion` occludes the full S x S image with the
//! crate's default batch setting, its model a weighted sum over the whole
//! image, so its cost grows as windows x pixels; `occlusion_own` is the same
//! with a model that reads nothing (zeros out), so its time is the method's
//! own cost alone.
//! The models are near-free, but they allocate their outputs as real ones
//! do, which costs more as images grow; so every model call of the last run
//! is recorded (batch shape, outputs asked, rows' images) and replayed to the
//! same model alone, on batches of those shapes built beforehand. The
//! crate's own cost is the difference of the two columns.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

mod common;

use common::{cam_layer, grads, occlusion_weights, scaled_workload_image, weighted_sums, weights_of_len};
use ndarray::{ArrayD, ArrayViewD, IxDyn};
use saliency::{
    BlurIg, BoxError, GradCam, GuidedIg, IntegratedGradients, ModelOutputs, ModelRequest, Occlusion, OutputKey,
    Saliency, SmoothGradParams, VanillaGradients, Xrai, XraiAlgorithm, XraiParameters,
};

/// A workload: runs once per call and returns the size of what it computed;
/// `None` when its method is not built yet.
type Workload = Box<dyn FnMut() -> saliency::Result<usize>>;

/// The size of a computed mask, so every workload has one result type.
fn len<D: ndarray::Dimension>(mask: saliency::Result<ndarray::Array<f32, D>>) -> saliency::Result<usize> {
    mask.map(|m| m.len())
}

/// A workload's model.
type ModelFn = Box<dyn FnMut(ArrayViewD<'_, f32>, &ModelRequest<'_>) -> Result<ModelOutputs<f32>, BoxError>>;

/// A run of identical model calls: the batch's shape, the outputs asked
/// for, the rows' images, and how many calls in a row were alike (so that
/// Occlusion's hundreds of thousands of calls are not a growing list the
/// timed run pays for).
struct Call {
    shape: Vec<usize>,
    keys: Vec<OutputKey>,
    images: Vec<usize>,
    count: usize,
}

/// A model that records the calls it answers, to replay them alone.
struct Recorder {
    model: ModelFn,
    calls: Vec<Call>,
}

impl Recorder {
    fn shared(model: ModelFn) -> Rc<RefCell<Recorder>> {
        Rc::new(RefCell::new(Recorder {
            model,
            calls: Vec::new(),
        }))
    }

    /// The recording model function over `recorder` (one method run).
    fn model(
        recorder: &Rc<RefCell<Recorder>>,
    ) -> impl FnMut(ArrayViewD<'_, f32>, &ModelRequest<'_>) -> Result<ModelOutputs<f32>, BoxError> + use<> {
        let recorder = Rc::clone(recorder);
        recorder.borrow_mut().calls.clear();
        move |batch, request| {
            let mut r = recorder.borrow_mut();
            match r.calls.last_mut() {
                Some(last)
                    if last.shape == batch.shape()
                        && last.keys == request.keys()
                        && last.images == request.images() =>
                {
                    last.count += 1
                }
                _ => r.calls.push(Call {
                    shape: batch.shape().to_vec(),
                    keys: request.keys().to_vec(),
                    images: request.images().to_vec(),
                    count: 1,
                }),
            }
            (r.model)(batch, request)
        }
    }

    /// Seconds taken by the recorded calls replayed to the model alone;
    /// one batch per distinct shape is built beforehand (the near-free
    /// models' cost does not depend on the values).
    fn replay(&mut self) -> Result<f64, BoxError> {
        let mut batches: HashMap<Vec<usize>, ArrayD<f32>> = HashMap::new();
        for call in &self.calls {
            batches
                .entry(call.shape.clone())
                .or_insert_with(|| ArrayD::from_elem(IxDyn(&call.shape), 0.5));
        }
        let start = Instant::now();
        for call in &self.calls {
            let request = ModelRequest::new(&call.keys, &call.images);
            let batch = batches[&call.shape].view();
            for _ in 0..call.count {
                std::hint::black_box((self.model)(batch.view(), &request)?);
            }
        }
        Ok(start.elapsed().as_secs_f64())
    }
}

/// The model of workload `name` on images of size `size`, before any call.
fn model_of(name: &str, size: usize) -> ModelFn {
    match name {
        "grad_cam" => {
            let (values, gradients) = cam_layer();
            Box::new(move |_batch, _request| {
                Ok(ModelOutputs::new()
                    .with(OutputKey::ConvolutionLayerValues, values.clone())
                    .with(OutputKey::ConvolutionOutputGradients, gradients.clone()))
            })
        }
        "occlusion64" => {
            let w = occlusion_weights();
            Box::new(move |b, _| weighted_sums(b, &w))
        }
        "occlusion" => {
            let w = weights_of_len(size * size * 3);
            Box::new(move |b, _| weighted_sums(b, &w))
        }
        "occlusion_own" => Box::new(|b, _| {
            let zeros = ndarray::Array2::<f32>::zeros((b.shape()[0], 1));
            Ok(ModelOutputs::new().with(OutputKey::OutputLayerValues, zeros))
        }),
        _ => Box::new(grads),
    }
}

/// The batch setting of `--batch`.
#[derive(Clone, Copy)]
enum Batch {
    /// The workload's own (WORKLOADS.md's count, or the crate's default).
    Workload,
    /// The crate's default batch setting.
    Default,
    /// A count of images.
    Count(usize),
    /// A memory budget in bytes.
    Bytes(usize),
}

impl Batch {
    fn apply<M: BatchSetting>(self, method: M, workload: Option<usize>) -> M {
        match (self, workload) {
            (Batch::Count(n), _) | (Batch::Workload, Some(n)) => method.batch_size(n),
            (Batch::Bytes(b), _) => method.batch_bytes(b),
            (Batch::Default, _) | (Batch::Workload, None) => method,
        }
    }
}

/// The methods whose batch `--batch` sets.
trait BatchSetting: Sized {
    fn batch_size(self, n: usize) -> Self;
    fn batch_bytes(self, bytes: usize) -> Self;
}

impl BatchSetting for IntegratedGradients<f32> {
    fn batch_size(self, n: usize) -> Self {
        IntegratedGradients::batch_size(self, n)
    }
    fn batch_bytes(self, bytes: usize) -> Self {
        IntegratedGradients::batch_bytes(self, bytes)
    }
}

impl BatchSetting for Occlusion<f32> {
    fn batch_size(self, n: usize) -> Self {
        Occlusion::batch_size(self, n)
    }
    fn batch_bytes(self, bytes: usize) -> Self {
        Occlusion::batch_bytes(self, bytes)
    }
}

/// Workload `name` on the image of size `size`, its model calls recorded in
/// `recorder`.
fn workload(name: &str, size: usize, batch: Batch, recorder: &Rc<RefCell<Recorder>>) -> Option<Workload> {
    let x = scaled_workload_image(size);
    let r = Rc::clone(recorder);
    let model = move || Recorder::model(&r);
    match name {
        "vanilla" => Some(Box::new(
            move || len(VanillaGradients::new().get_mask(&x, &mut model())),
        )),
        "ig" => Some(Box::new(move || {
            len({
                batch
                    .apply(IntegratedGradients::new().steps(25), Some(25))
                    .get_mask(&x, &mut model())
            })
        })),
        "smoothgrad_ig" => Some(Box::new(move || {
            len({
                let params = SmoothGradParams::new()
                    .stdev_spread(0.15)
                    .nsamples(25)
                    .magnitude(true)
                    .seed(0);
                IntegratedGradients::new()
                    .steps(25)
                    .batch_size(25)
                    .get_smoothed_mask(&x, &mut model(), &params)
            })
        })),
        "blur_ig" => Some(Box::new(move || {
            len({
                BlurIg::new()
                    .max_sigma(50.0)
                    .steps(100)
                    .grad_step(0.01)
                    .batch_size(25)
                    .get_mask(&x, &mut model())
            })
        })),
        "grad_cam" => Some(Box::new(move || {
            len({
                GradCam::new()
                    .should_resize(true)
                    .three_dims(true)
                    .get_mask(&x, &mut model())
            })
        })),
        "guided_ig" => Some(Box::new(move || {
            len({
                GuidedIg::new()
                    .steps(200)
                    .fraction(0.25)
                    .max_dist(0.02)
                    .get_mask(&x, &mut model())
            })
        })),
        "occlusion64" => {
            // X64 is the top-left 64 x 64 crop; windows go to the model 16 at a time.
            let x64 = x
                .slice_each_axis(|ax| ndarray::Slice::from(..if ax.axis.index() < 2 { 64 } else { 3 }))
                .to_owned();
            Some(Box::new(move || {
                len({
                    Occlusion::new()
                        .size(15)
                        .value(0.0)
                        .batch_size(16)
                        .get_mask(&x64, &mut model())
                })
            }))
        }
        "occlusion" | "occlusion_own" => Some(Box::new(move || {
            // The default batch setting, so that a change of the default shows here.
            len(batch
                .apply(Occlusion::new().size(15).value(0.0), None)
                .get_mask(&x, &mut model()))
        })),
        "segments" => Some(Box::new(move || {
            // No model; the masks are the output, their count stands in for them.
            Ok(saliency::get_segments_felzenszwalb(&x)?.len())
        })),
        "xrai_full" => Some(Box::new(move || {
            len(Xrai::new().batch_size(25).get_mask(&x, &mut model()))
        })),
        "xrai_fast" => Some(Box::new(move || {
            len({
                Xrai::new()
                    .parameters(XraiParameters::new().algorithm(XraiAlgorithm::Fast))
                    .batch_size(25)
                    .get_mask(&x, &mut model())
            })
        })),
        _ => None,
    }
}

const NAMES: [&str; 12] = [
    "vanilla",
    "ig",
    "smoothgrad_ig",
    "blur_ig",
    "guided_ig",
    "grad_cam",
    "occlusion64",
    "occlusion",
    "occlusion_own",
    "segments",
    "xrai_full",
    "xrai_fast",
];

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let mut repeat = 3usize;
    let mut size = 224usize;
    let mut batch = Batch::Workload;
    let mut replay = true;
    let mut names = Vec::new();
    while let Some(arg) = args.next() {
        if arg == "--size" {
            size = args.next().ok_or("--size needs a number")?.parse()?;
            if size < 64 {
                return Err("--size must be at least 64 (occlusion64 crops 64 x 64)".into());
            }
        } else if arg == "--list" {
            // The workload names, for scripts that run them all.
            println!("{}", NAMES.join("\n"));
            return Ok(());
        } else if arg == "--repeat" {
            repeat = args.next().ok_or("--repeat needs a number")?.parse()?;
            if repeat == 0 {
                return Err("--repeat must be at least 1".into());
            }
        } else if arg == "--batch" {
            let value = args.next().ok_or("--batch needs a count or `default`")?;
            batch = match value.as_str() {
                "default" => Batch::Default,
                n => match (n.strip_suffix("MiB").map(str::parse::<usize>), n.parse()) {
                    (Some(Ok(mib)), _) if mib > 0 => Batch::Bytes(mib << 20),
                    (None, Ok(count)) if count > 0 => Batch::Count(count),
                    _ => {
                        return Err(
                            format!("--batch takes a count or NMiB of at least 1, or `default`; not {n:?}").into(),
                        );
                    }
                },
            };
        } else if arg == "--no-replay" {
            replay = false;
        } else if NAMES.contains(&arg.as_str()) {
            names.push(arg);
        } else {
            return Err(format!("unknown workload {arg:?}; known: {}", NAMES.join(", ")).into());
        }
    }
    if names.is_empty() {
        names = NAMES.iter().map(|s| s.to_string()).collect();
    }
    let median = |mut times: Vec<f64>| {
        times.sort_by(f64::total_cmp);
        times[times.len() / 2]
    };
    for name in names {
        let recorder = Recorder::shared(model_of(&name, size));
        let Some(mut run) = workload(&name, size, batch, &recorder) else {
            println!("{name}\tnot built yet");
            continue;
        };
        let mut times = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            let start = Instant::now();
            let mask = run()?;
            times.push(start.elapsed().as_secs_f64());
            std::hint::black_box(mask);
        }
        if !replay {
            println!("{name}\t{:.6}\t-", median(times));
            continue;
        }
        let mut model_times = Vec::with_capacity(repeat);
        for _ in 0..repeat {
            model_times.push(recorder.borrow_mut().replay().map_err(|e| e.to_string())?);
        }
        println!("{name}\t{:.6}\t{:.6}", median(times), median(model_times));
    }
    Ok(())
}
