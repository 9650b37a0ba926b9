//! The saliency methods, one module each.
//!
//! Every method is configured the same way: `new()` gives the reference's
//! defaults, a builder setter named after each setting returns the changed
//! method (`IntegratedGradients::new().steps(50)`; the result must be used),
//! and a getter named `get_` and the setter's name reads the setting back
//! (`get_steps()`). Settings are checked when a mask is asked for, before
//! the first model call. Parameter structs ([`SmoothGradParams`](smoothgrad::SmoothGradParams),
//! [`XraiParameters`](xrai::XraiParameters)) follow the same pattern.
//!
//! ```
//! use saliency::IntegratedGradients;
//! let ig = IntegratedGradients::<f32>::new().steps(50).batch_size(10);
//! assert_eq!((ig.get_steps(), ig.get_batch_size()), (50, 10));
//! ```
//!
//! A setter whose result is dropped changes nothing (the methods are
//! `Copy`), so it is a warning, here made an error:
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! let blur = saliency::BlurIg::new();
//! blur.steps(10); // the changed method is dropped; `blur` keeps 100 steps
//! ```
//!
//! ```
//! #![deny(unused_must_use)]
//! let blur = saliency::BlurIg::new();
//! let blur = blur.steps(10);
//! assert_eq!(blur.get_steps(), 10);
//! ```

pub mod blur_ig;
pub mod cam;
pub mod grad_cam;
pub mod gradient_shap;
pub mod guided_backprop;
pub mod guided_grad_cam;
pub mod guided_ig;
pub mod input_x_gradient;
pub mod integrated_gradients;
pub mod noise_tunnel;
pub mod occlusion;
pub mod smoothgrad;
pub mod vanilla;
pub mod xrai;
