pub mod args;
pub mod depthwise;
pub mod direct;
pub mod launch;
pub mod selector;

pub use depthwise::{DepthwiseStrategy, DepthwiseTensors, DepthwiseTiling, launch_depthwise};
pub use direct::{DirectTensors, launch_direct};
pub use launch::launch_kernel;
