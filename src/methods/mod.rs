//! The saliency methods, one module each.

pub mod integrated_gradients;
pub mod smoothgrad;
pub mod vanilla;
pub mod xrai;
