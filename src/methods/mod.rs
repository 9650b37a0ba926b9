//! The saliency methods, one module each.

pub mod blur_ig;
pub mod grad_cam;
pub mod integrated_gradients;
pub mod smoothgrad;
pub mod vanilla;
pub mod xrai;
