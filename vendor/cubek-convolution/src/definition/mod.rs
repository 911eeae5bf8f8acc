mod blueprint;
mod cost;

pub use blueprint::*;
pub use cost::*;
