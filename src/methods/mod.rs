//! The saliency methods, one module each.

pub mod blur_ig;
pub mod grad_cam;
pub mod guided_backprop;
pub mod guided_ig;
pub mod integrated_gradients;
pub mod occlusion;
pub mod smoothgrad;
pub mod vanilla;
pub mod xrai;
