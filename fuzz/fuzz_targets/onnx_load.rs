//! Loads raw bytes as an ONNX model and, when they load and the graph's
//! input is small and fixed, runs it on zeros. Every call must return `Ok`
//! or a typed error; a panic, abort or hang is a finding.
#![no_main]

use candle_core::{DType, Device, Tensor};
use libfuzzer_sys::fuzz_target;
use saliency::adapters::onnx::OnnxGraph;

fuzz_target!(|data: &[u8]| {
    let Ok(graph) = OnnxGraph::from_bytes(data) else {
        return;
    };
    let dims: Option<Vec<usize>> = graph.input().dims.iter().copied().collect();
    if let Some(dims) = dims
        && !dims.is_empty()
        && dims.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_some_and(|n| n <= 4096)
        && let Ok(x) = Tensor::zeros(dims.as_slice(), DType::F32, &Device::Cpu)
    {
        let _ = graph.forward(&x);
    }
});
