//! The examples' toy task: 24 x 24 RGB noise with one bar, horizontal for
//! class 0 and vertical for class 1, shared by `burn_cnn` and `candle_cnn`
//! so both frameworks learn and explain the same images.
#![allow(dead_code)]

use ndarray::Array4;
use rand::RngExt;
use rand_chacha::ChaCha8Rng;

pub const SIZE: usize = 24;
pub const CHANNELS: usize = 3;
pub const BAR_LEN: usize = 10;
pub const BAR_WIDTH: usize = 3;

/// One generated image (channels-last) and where its bar is:
/// (class, top, left, height, width).
pub fn sample(rng: &mut ChaCha8Rng) -> (Array4<f32>, usize, (usize, usize, usize, usize)) {
    let class = rng.random_range(0..2_usize);
    let (h, w) = if class == 0 {
        (BAR_WIDTH, BAR_LEN)
    } else {
        (BAR_LEN, BAR_WIDTH)
    };
    let top = rng.random_range(0..=SIZE - h);
    let left = rng.random_range(0..=SIZE - w);
    let colour: [f32; CHANNELS] = [
        rng.random_range(0.5..1.0),
        rng.random_range(0.5..1.0),
        rng.random_range(0.5..1.0),
    ];
    let mut image = Array4::<f32>::zeros((1, SIZE, SIZE, CHANNELS));
    for ((_, i, j, c), v) in image.indexed_iter_mut() {
        let on_bar = (top..top + h).contains(&i) && (left..left + w).contains(&j);
        *v = rng.random_range(0.0..0.35) + if on_bar { colour[c] * 0.6 } else { 0.0 };
    }
    (image, class, (top, left, h, w))
}
