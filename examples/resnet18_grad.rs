//! Times a full-size ResNet-18 (random weights, batch norm folded into the
//! convolutions as an exported model has it) on 25 images of 224 x 224:
//! forward pass plus the input gradient of one class, median of 3 runs.
//!
//! ```text
//! cargo run --release --example resnet18_grad --features candle              # candle_ops
//! cargo run --release --example resnet18_grad --features candle -- --stock   # candle's convolution and backward
//! cargo run --release --example resnet18_grad --features candle -- --profile # time per operation, forward
//! ```
//!
//! `--stock` keeps `candle_ops::max_pool2d` (candle cannot differentiate a
//! 3 x 3, stride-2 pool) and uses candle's `conv2d` and `relu` and their
//! backward passes. `--profile` adds up the forward time of each kind of
//! operation and times the backward pass as a whole. `--images N` and
//! `--runs N` change the batch and the number of runs.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::time::Instant;

use candle_core::{DType, Device, Tensor, Var};
use saliency::adapters::candle_ops::{self, conv2d, max_pool2d};

type Result<T> = candle_core::Result<T>;

/// A convolution with its folded batch norm: kernel, bias, stride, padding.
struct Conv {
    kernel: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv {
    /// He-initialised weights, so that activations keep their scale through
    /// the 20 layers.
    fn new(c_in: usize, c_out: usize, k: usize, stride: usize, padding: usize, dev: &Device) -> Result<Self> {
        let std = (2.0 / (c_in * k * k) as f64).sqrt();
        Ok(Conv {
            kernel: Tensor::randn(0f32, std as f32, (c_out, c_in, k, k), dev)?,
            bias: Tensor::randn(0f32, 0.01, c_out, dev)?,
            stride,
            padding,
        })
    }
}

struct Block {
    conv1: Conv,
    conv2: Conv,
    downsample: Option<Conv>,
}

struct ResNet18 {
    stem: Conv,
    blocks: Vec<Block>,
    fc_weight: Tensor,
    fc_bias: Tensor,
}

impl ResNet18 {
    fn new(dev: &Device) -> Result<Self> {
        let mut blocks = Vec::new();
        let mut c_in = 64;
        for (stage, c_out) in [64, 128, 256, 512].into_iter().enumerate() {
            for i in 0..2 {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let downsample = if stride != 1 || c_in != c_out {
                    Some(Conv::new(c_in, c_out, 1, stride, 0, dev)?)
                } else {
                    None
                };
                blocks.push(Block {
                    conv1: Conv::new(c_in, c_out, 3, stride, 1, dev)?,
                    conv2: Conv::new(c_out, c_out, 3, 1, 1, dev)?,
                    downsample,
                });
                c_in = c_out;
            }
        }
        Ok(ResNet18 {
            stem: Conv::new(3, 64, 7, 2, 3, dev)?,
            blocks,
            fc_weight: (Tensor::randn(0f32, 1.0, (1000, 512), dev)? / (512f64).sqrt())?,
            fc_bias: Tensor::zeros(1000, DType::F32, dev)?,
        })
    }
}

/// Runs the operations, with candle_ops or candle's own convolution, and
/// adds up the time each kind takes when profiling.
struct Ops {
    stock: bool,
    profile: bool,
    times: RefCell<BTreeMap<String, (f64, usize)>>,
}

impl Ops {
    fn timed(&self, name: impl FnOnce() -> String, f: impl FnOnce() -> Result<Tensor>) -> Result<Tensor> {
        if !self.profile {
            return f();
        }
        let start = Instant::now();
        let out = f()?;
        let entry = name();
        let mut times = self.times.borrow_mut();
        let slot = times.entry(entry).or_insert((0.0, 0));
        slot.0 += start.elapsed().as_secs_f64();
        slot.1 += 1;
        Ok(out)
    }

    fn conv(&self, x: &Tensor, c: &Conv) -> Result<Tensor> {
        let name = || {
            let (_, ci, h, _) = x.dims4().unwrap_or_default();
            let (co, _, k, _) = c.kernel.dims4().unwrap_or_default();
            format!("conv {k}x{k}/{} {ci}->{co} at {h}", c.stride)
        };
        self.timed(name, || {
            if self.stock {
                x.conv2d(&c.kernel, c.padding, c.stride, 1, 1)?
                    .broadcast_add(&c.bias.reshape((1, (), 1, 1))?)
            } else {
                conv2d(x, &c.kernel, Some(&c.bias), c.stride, [c.padding; 4], 1, 1)
            }
        })
    }

    fn relu(&self, x: &Tensor) -> Result<Tensor> {
        self.timed(
            || "relu".into(),
            || if self.stock { x.relu() } else { candle_ops::relu(x) },
        )
    }

    fn add(&self, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        self.timed(|| "residual add".into(), || a.add(b))
    }

    fn forward(&self, net: &ResNet18, x: &Tensor) -> Result<Tensor> {
        let x = self.relu(&self.conv(x, &net.stem)?)?;
        let mut x = self.timed(|| "max-pool 3x3/2".into(), || max_pool2d(&x, 3, 2, [1; 4], false))?;
        for b in &net.blocks {
            let y = self.relu(&self.conv(&x, &b.conv1)?)?;
            let y = self.conv(&y, &b.conv2)?;
            let shortcut = match &b.downsample {
                Some(d) => self.conv(&x, d)?,
                None => x.clone(),
            };
            x = self.relu(&self.add(&y, &shortcut)?)?;
        }
        let pooled = self.timed(|| "global mean".into(), || x.mean((2, 3)))?;
        self.timed(
            || "fc".into(),
            || pooled.matmul(&net.fc_weight.t()?)?.broadcast_add(&net.fc_bias),
        )
    }
}

/// CPU seconds this process has used (user and system, all threads), from
/// /proc/self/stat on Linux: on a shared machine it moves less than the
/// wall time. `None` elsewhere.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name, which is in parentheses; utime and
    // stime are fields 14 and 15, in ticks of 1/100 s (USER_HZ).
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |f: &str| args.iter().any(|a| a == f);
    let number = |f: &str, default: usize| {
        args.iter()
            .position(|a| a == f)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let (images, runs) = (number("--images", 25), number("--runs", 3));
    let dev = Device::Cpu;
    let net = ResNet18::new(&dev)?;
    let ops = Ops {
        stock: flag("--stock"),
        profile: flag("--profile"),
        times: RefCell::new(BTreeMap::new()),
    };
    let x = Tensor::randn(0f32, 1.0, (images, 3, 224, 224), &dev)?;
    let class = 7;
    let mut totals = Vec::new();
    let mut backwards = Vec::new();
    let mut cpu = Vec::new();
    for run in 0..runs {
        let cpu_start = cpu_seconds();
        let start = Instant::now();
        let var = Var::from_tensor(&x)?;
        let logits = ops.forward(&net, var.as_tensor())?;
        let forward = start.elapsed().as_secs_f64();
        let target = logits.narrow(1, class, 1)?.sum_all()?;
        let grads = target.backward()?;
        let gradient = grads
            .get(var.as_tensor())
            .ok_or_else(|| candle_core::Error::Msg("no input gradient".into()))?;
        let total = start.elapsed().as_secs_f64();
        let used = cpu_start.and_then(|s| Some(cpu_seconds()? - s));
        let norm = gradient.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
        println!(
            "run {run}: {total:.3} s (forward {forward:.3} s, backward {:.3} s), CPU {}, gradient norm {norm:.3e}",
            total - forward,
            used.map_or("unknown".into(), |c| format!("{c:.2} s"))
        );
        cpu.extend(used);
        totals.push(total);
        backwards.push(total - forward);
    }
    let mode = if ops.stock { "candle's conv2d" } else { "candle_ops" };
    println!(
        "ResNet-18, {images} images 224 x 224, forward + input gradient ({mode}): median {:.3} s (backward {:.3} s) over {runs} runs",
        median(totals),
        median(backwards)
    );
    if !cpu.is_empty() {
        println!("CPU time: median {:.2} s per run (all threads)", median(cpu));
    }
    if ops.profile {
        println!("forward time per operation, summed over {runs} runs, divided by {runs}:");
        let times = ops.times.borrow();
        let sum: f64 = times.values().map(|(t, _)| t).sum();
        let mut rows: Vec<_> = times.iter().collect();
        rows.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
        for (name, (t, n)) in rows {
            println!(
                "  {name:<28} {:>8.3} s  {:>5.1}%  ({} calls per run)",
                t / runs as f64,
                100.0 * t / sum,
                n / runs
            );
        }
        println!("  {:<28} {:>8.3} s", "total", sum / runs as f64);
    }
    Ok(())
}
