//! Times the ONNX evaluator: forward pass plus the input gradient of one
//! class for a batch stored as a `.npy` file (float32, the model's layout),
//! median of `--runs` runs after one warm-up, printed last as
//! `seconds: <median>`.
//!
//! ```text
//! cargo run --release --features onnx --example onnx_grad_timing -- --model m.onnx --input x.npy [--class K] [--runs 3]
//! ```
//!
//! `tests/reference/onnx/time_resnet18.py --crate-cmd` runs it beside
//! PyTorch on a full-size ResNet-18 exported to a temporary folder.

use std::time::Instant;

use candle_core::{Device, Tensor, Var};
use ndarray::ArrayD;
use ndarray_npy::ReadNpyExt;
use saliency::adapters::onnx::OnnxGraph;

type BoxResult<T> = Result<T, Box<dyn std::error::Error>>;

fn main() -> BoxResult<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let model = value("--model").ok_or("--model PATH is required")?;
    let input = value("--input").ok_or("--input PATH (a float32 .npy batch) is required")?;
    let class: usize = value("--class").map_or(Ok(0), |v| v.parse())?;
    let runs: usize = value("--runs").map_or(Ok(3), |v| v.parse())?;
    if runs == 0 {
        return Err("--runs must be at least 1".into());
    }
    let graph = OnnxGraph::from_file(&model)?;
    let batch = ArrayD::<f32>::read_npy(std::fs::File::open(&input)?)?;
    let x = Tensor::from_slice(
        batch
            .as_standard_layout()
            .as_slice()
            .ok_or("a standard-layout array is contiguous")?,
        batch.shape(),
        &Device::Cpu,
    )?;
    let mut times = Vec::new();
    for run in 0..=runs {
        let start = Instant::now();
        let var = Var::from_tensor(&x)?;
        let logits = graph.forward(var.as_tensor())?;
        let grads = logits.narrow(1, class, 1)?.sum_all()?.backward()?;
        let gradient = grads.get(var.as_tensor()).ok_or("no input gradient")?;
        let norm = gradient.sqr()?.sum_all()?.to_scalar::<f32>()?.sqrt();
        let t = start.elapsed().as_secs_f64();
        println!(
            "run {run}{}: {t:.3} s, gradient norm {norm:.3e}",
            if run == 0 { " (warm-up)" } else { "" }
        );
        if run > 0 {
            times.push(t);
        }
    }
    times.sort_by(f64::total_cmp);
    println!(
        "{} images {:?}, forward + input gradient of class {class}",
        batch.shape()[0],
        &batch.shape()[1..]
    );
    println!("seconds: {:.6}", times[times.len() / 2]);
    Ok(())
}
