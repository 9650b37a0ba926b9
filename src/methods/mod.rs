//! The saliency methods, one module each.

pub mod guided_ig;
pub mod integrated_gradients;
pub mod occlusion;
pub mod smoothgrad;
pub mod vanilla;
